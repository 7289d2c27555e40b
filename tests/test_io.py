"""Tests of ptyanalysis.io: dataset NPZ read/write/validation and xarray views."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptyanalysis import io as pio
from ptyanalysis.errors import PtyAnalysisError

N = 8
n = 12


def _make(n=n, N=N, seed=0, with_optional=True) -> pio.PtychoData:
    rng = np.random.default_rng(seed)
    H = W = 32
    obj = (rng.uniform(0.5, 1, (H, W)) * np.exp(1j * rng.uniform(-1, 1, (H, W)))).astype(np.complex64)
    yy, xx = np.mgrid[:N, :N] - N // 2
    probe = np.exp(-(xx**2 + yy**2) / 8.0).astype(np.complex64)
    x = rng.uniform(N, W - N, n)
    y = rng.uniform(N, H - N, n)
    diff = rng.uniform(0, 2, (n, N, N)).astype(np.float32)
    meta = pio.make_metadata(1e4, N, gridsize=1, probe_scale=4.0)
    kw = {}
    if with_optional:
        kw = dict(
            obj=obj,
            Y=(rng.normal(size=(n, N, N)) + 1j * rng.normal(size=(n, N, N))).astype(np.complex64),
            scan_index=np.arange(n, dtype=np.int64),
            xcoords_start=np.round(x),
            ycoords_start=np.round(y),
        )
    return pio.PtychoData(diffraction=diff, xcoords=x, ycoords=y, probe=probe, metadata=meta, **kw)


def _raw(data: pio.PtychoData) -> dict:
    """The dict of arrays save_dataset would write (for hand-made broken files)."""
    raw = {
        "diffraction": data.diffraction,
        "xcoords": data.xcoords,
        "ycoords": data.ycoords,
        "probeGuess": data.probe,
        "objectGuess": data.obj,
        "_metadata": np.array(json.dumps(data.metadata), dtype=object),
    }
    return {k: v for k, v in raw.items() if v is not None}


def _assert_same(a: pio.PtychoData, b: pio.PtychoData):
    for f in ("diffraction", "xcoords", "ycoords", "probe", "obj", "Y", "scan_index",
              "xcoords_start", "ycoords_start"):
        va, vb = getattr(a, f), getattr(b, f)
        if va is None or vb is None:
            assert va is None and vb is None, f
            continue
        assert va.dtype == vb.dtype, f
        np.testing.assert_array_equal(va, vb, err_msg=f)
    assert a.metadata == b.metadata


def _err(path, match_key, **kw):
    with pytest.raises(PtyAnalysisError) as ei:
        pio.load_dataset(path, **kw)
    msg = str(ei.value)
    assert str(path) in msg, msg
    if match_key:
        assert f"'{match_key}'" in msg, msg
    return msg


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    data = _make()
    out = pio.save_dataset(tmp_path / "d.npz", data, compress=compress)
    assert out == tmp_path / "d.npz"
    back = pio.load_dataset(out)
    _assert_same(data, back)
    assert back.path == out
    assert back.diffraction.dtype == np.float32 and back.probe.dtype == np.complex64
    assert back.n == n and back.N == N and back.nphotons == 1e4
    np.testing.assert_array_equal(back.positions, np.stack([data.ycoords, data.xcoords], 1))
    with np.load(out, allow_pickle=True) as z:
        assert set(z.files) == {"diffraction", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
                                "probeGuess", "objectGuess", "Y", "scan_index", "_metadata"}
        assert z["_metadata"].dtype == object and z["_metadata"].shape == ()
        assert json.loads(z["_metadata"].item()) == data.metadata


def test_minimal_round_trip_and_start_defaults(tmp_path):
    data = _make(with_optional=False)
    data = data.replace(metadata={})
    p = pio.save_dataset(tmp_path / "m.npz", data)
    with np.load(p, allow_pickle=True) as z:
        np.testing.assert_array_equal(z["xcoords_start"], data.xcoords)
        np.testing.assert_array_equal(z["ycoords_start"], data.ycoords)
        assert "Y" not in z.files and "objectGuess" not in z.files
    back = pio.load_dataset(p)
    assert back.obj is None and back.Y is None and back.scan_index is None
    assert back.metadata == {} and back.nphotons is None


def test_xarray_round_trip(tmp_path):
    data = pio.load_dataset(pio.save_dataset(tmp_path / "d.npz", _make()))
    ds = pio.to_xarray(data)
    assert ds["diffraction"].dims == ("scan", "y", "x")
    assert ds["probe"].dims == ("probe_y", "probe_x")
    assert ds["object"].dims == ("obj_y", "obj_x")
    assert ds["Y"].dims == ("scan", "y", "x")
    np.testing.assert_array_equal(ds["row"].values, data.ycoords)
    np.testing.assert_array_equal(ds["col"].values, data.xcoords)
    assert ds.attrs["N"] == N and ds.attrs["nphotons"] == 1e4
    assert ds.attrs["source"] == str(tmp_path / "d.npz")
    assert json.loads(ds.attrs["metadata"]) == data.metadata
    _assert_same(data, pio.from_xarray(ds))
    # a dataset without optional parts round-trips too (start coords stay absent)
    bare = _make(with_optional=False)
    _assert_same(bare, pio.from_xarray(pio.to_xarray(bare)))
    assert np.isnan(pio.to_xarray(bare.replace(metadata={})).attrs["nphotons"])


def test_subset_and_replace():
    data = _make()
    sub = data.subset([3, 1])
    assert sub.n == 2
    np.testing.assert_array_equal(sub.diffraction, data.diffraction[[3, 1]])
    np.testing.assert_array_equal(sub.Y, data.Y[[3, 1]])
    np.testing.assert_array_equal(sub.scan_index, [3, 1])
    np.testing.assert_array_equal(sub.xcoords_start, data.xcoords_start[[3, 1]])
    assert sub.probe is data.probe and sub.obj is data.obj and sub.metadata is data.metadata
    mask = np.zeros(n, bool)
    mask[::3] = True
    assert data.subset(mask).n == mask.sum()
    assert data.subset(slice(0, 5)).n == 5
    with pytest.raises(PtyAnalysisError):
        data.subset([n])
    with pytest.raises(PtyAnalysisError):
        data.subset(np.ones(n - 1, bool))
    r = data.replace(diffraction=data.diffraction.astype(np.float64), probe=data.probe.astype(np.complex128))
    assert r.diffraction.dtype == np.float32 and r.probe.dtype == np.complex64


def test_metadata_helpers():
    meta = pio.make_metadata(1e3, 64, gridsize=2, probe_scale=4)
    assert meta == {"physics_parameters": {"nphotons": 1000.0, "N": 64, "gridsize": 2, "probe_scale": 4},
                    "data_transformations": []}
    m2 = pio.add_transformation(meta, "subsample", {"fraction": 0.8, "seed": 1})
    assert meta["data_transformations"] == []  # input untouched
    entry = m2["data_transformations"][-1]
    assert entry["tool"] == "ptyanalysis" and entry["operation"] == "subsample"
    assert entry["parameters"] == {"fraction": 0.8, "seed": 1}
    assert entry["timestamp"].endswith("Z")
    assert pio.add_transformation({}, "x", {}, tool="t")["data_transformations"][0]["tool"] == "t"
    for bad in (0, -1, float("nan"), "many"):
        with pytest.raises(PtyAnalysisError):
            pio.make_metadata(bad, 64)
    with pytest.raises(PtyAnalysisError):
        pio.make_metadata(1e3, 0)


# --------------------------------------------------------------------------- legacy inputs


def test_legacy_diff3d_and_NNn_layout(tmp_path):
    data = _make(with_optional=False)
    raw = _raw(data)
    raw["diff3d"] = np.transpose(raw.pop("diffraction"), (1, 2, 0)).astype(np.float64)  # (N, N, n)
    np.savez(tmp_path / "legacy.npz", **raw)
    back = pio.load_dataset(tmp_path / "legacy.npz")
    assert back.diffraction.shape == (n, N, N) and back.diffraction.dtype == np.float32
    np.testing.assert_array_equal(back.diffraction, data.diffraction)
    # (N, N, n) under the modern key, complex128 probe -> complex64
    raw = _raw(data)
    raw["diffraction"] = np.transpose(raw["diffraction"], (1, 2, 0))
    raw["probeGuess"] = data.probe.astype(np.complex128)
    np.savez(tmp_path / "legacy2.npz", **raw)
    back = pio.load_dataset(tmp_path / "legacy2.npz")
    np.testing.assert_array_equal(back.diffraction, data.diffraction)
    assert back.probe.dtype == np.complex64


def test_ambiguous_layout_is_canonical(tmp_path):
    data = _make(n=N, with_optional=False)  # (N, N, N): canonical by rule
    pio.save_dataset(tmp_path / "a.npz", data)
    np.testing.assert_array_equal(pio.load_dataset(tmp_path / "a.npz").diffraction, data.diffraction)


def test_metadata_forms(tmp_path):
    data = _make(with_optional=False)
    meta = data.metadata
    forms = {
        "str": np.array(json.dumps(meta)),  # 0-d unicode array, no pickle
        "bytes": np.array(json.dumps(meta).encode()),
        "object": np.array(json.dumps(meta), dtype=object),
    }
    for name, value in forms.items():
        raw = _raw(data)
        raw["_metadata"] = value
        np.savez(tmp_path / f"{name}.npz", **raw)
        assert pio.load_dataset(tmp_path / f"{name}.npz").metadata == meta, name
    raw = _raw(data)
    del raw["_metadata"]
    np.savez(tmp_path / "none.npz", **raw)
    assert pio.load_dataset(tmp_path / "none.npz").metadata == {}


def test_mmap(tmp_path):
    data = _make()
    p = pio.save_dataset(tmp_path / "d.npz", data)
    back = pio.load_dataset(p, mmap=True)
    assert isinstance(back.diffraction, np.memmap) and isinstance(back.Y, np.memmap)
    _assert_same(data, back)
    assert back.subset([0, 2]).n == 2
    # compressed: loads normally
    pc = pio.save_dataset(tmp_path / "c.npz", data, compress=True)
    backc = pio.load_dataset(pc, mmap=True)
    assert not isinstance(backc.diffraction, np.memmap)
    _assert_same(data, backc)
    # float64 on disk: converted in memory
    raw = _raw(data)
    raw["diffraction"] = raw["diffraction"].astype(np.float64)
    np.savez(tmp_path / "f64.npz", **raw)
    b64 = pio.load_dataset(tmp_path / "f64.npz", mmap=True)
    assert b64.diffraction.dtype == np.float32


# --------------------------------------------------------------------------- bad inputs


def _write(tmp_path, name, data=None, **changes):
    raw = _raw(data if data is not None else _make(with_optional=False))
    for k, v in changes.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    raw = {k: v for k, v in raw.items() if v is not None}
    p = tmp_path / name
    np.savez(p, **raw)
    return p


def test_missing_file_directory_and_non_npz(tmp_path):
    msg = _err(tmp_path / "nope.npz", None)
    assert "not found" in msg
    _err(tmp_path, None)
    txt = tmp_path / "notes.npz"
    txt.write_text("hello, this is not a zip file\n")
    assert "not a readable NPZ" in _err(txt, None)
    np.save(tmp_path / "single.npy", np.zeros(3))
    assert ".npy" in _err(tmp_path / "single.npy", None)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file(tmp_path, compress):
    p = pio.save_dataset(tmp_path / "t.npz", _make(), compress=compress)
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    _err(p, None)


def test_corrupt_member(tmp_path):
    p = pio.save_dataset(tmp_path / "c.npz", _make(), compress=True)
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("diffraction.npy")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 4
    blob = bytearray(p.read_bytes())
    for i in range(start + 40, start + 400):
        blob[i] ^= 0x5A
    p.write_bytes(bytes(blob))
    _err(p, "diffraction")


@pytest.mark.parametrize("key", ["diffraction", "xcoords", "ycoords", "probeGuess"])
def test_missing_key(tmp_path, key):
    p = _write(tmp_path, "mk.npz", **{key: None})
    msg = _err(p, key)
    assert "missing" in msg


def test_bad_shapes(tmp_path):
    data = _make(with_optional=False)
    assert "expected (n, N, N)" in _err(_write(tmp_path, "a.npz", diffraction=np.zeros((n, N), np.float32)), "diffraction")
    assert "expected (n, N, N)" in _err(_write(tmp_path, "b.npz", diffraction=np.zeros((n, N, N + 1), np.float32)), "diffraction")
    assert f"({N}, {N})" in _err(_write(tmp_path, "c.npz", probeGuess=np.ones((N + 2, N + 2), np.complex64)), "probeGuess")
    _err(_write(tmp_path, "d.npz", probeGuess=np.ones((N,), np.complex64)), "probeGuess")
    _err(_write(tmp_path, "e.npz", Y=np.ones((n, N, N - 1), np.complex64)), "Y")
    # a Y whose first axis is not n is ignored with a notice (PtychoPINN's rule; tests below)
    with pytest.warns(pio.DatasetNotice, match="key 'Y' has shape"):
        assert pio.load_dataset(_write(tmp_path, "f.npz", Y=np.ones((n - 1, N, N), np.complex64))).Y is None
    _err(_write(tmp_path, "g.npz", objectGuess=np.ones((5,), np.complex64)), "objectGuess")
    _err(_write(tmp_path, "h.npz", xcoords=np.zeros((n, 3))), "xcoords")
    _err(_write(tmp_path, "i.npz", scan_index=np.arange(n - 1)), "scan_index")
    _err(_write(tmp_path, "j.npz", xcoords_start=data.xcoords), "ycoords_start")


def test_bad_counts(tmp_path):
    data = _make(with_optional=False)
    msg = _err(_write(tmp_path, "a.npz", xcoords=data.xcoords[:-1], ycoords=data.ycoords[:-1]), "xcoords")
    assert f"{n - 1} entries" in msg and f"{n} patterns" in msg
    msg = _err(_write(tmp_path, "b.npz", ycoords=data.ycoords[:-2]), "xcoords")
    assert "'ycoords'" in msg
    # (N, N, n) layout whose last axis does not match the coordinate count
    _err(_write(tmp_path, "c.npz", diffraction=np.zeros((N, N, n + 1), np.float32)), "diffraction")


def test_bad_dtypes(tmp_path):
    data = _make(with_optional=False)
    msg = _err(_write(tmp_path, "a.npz", diffraction=data.diffraction.astype(np.complex64)), "diffraction")
    assert "complex" in msg
    msg = _err(_write(tmp_path, "b.npz", diffraction=np.ones((n, N, N), np.int32)), "diffraction")
    assert "counts" in msg
    _err(_write(tmp_path, "c.npz", probeGuess=np.ones((N, N), np.int64)), "probeGuess")
    _err(_write(tmp_path, "d.npz", xcoords=np.array([str(v) for v in data.xcoords])), "xcoords")
    _err(_write(tmp_path, "e.npz", objectGuess=np.array(["a", "b"])), "objectGuess")
    _err(_write(tmp_path, "f.npz", diff3d=data.diffraction.astype(np.complex128), diffraction=None), "diff3d")
    # a pickled object array is refused without unpickling
    obj = np.empty(n, dtype=object)
    obj[:] = list(data.ycoords)
    msg = _err(_write(tmp_path, "g.npz", ycoords=obj), "ycoords")
    assert "object array" in msg


@pytest.mark.parametrize("key,field", [("diffraction", "diffraction"), ("xcoords", "xcoords"),
                                       ("ycoords", "ycoords"), ("probeGuess", "probe"), ("Y", "Y")])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite(tmp_path, key, field, bad):
    data = _make()
    arr = getattr(data, field).copy()
    arr.reshape(-1)[arr.size // 2] = bad
    p = _write(tmp_path, "nf.npz", data=data, **{"Y": data.Y, key: arr})
    msg = _err(p, key)
    assert "NaN/Inf" in msg and "allow_nonfinite=True" in msg
    loaded = pio.load_dataset(p, allow_nonfinite=True)
    assert not np.all(np.isfinite(getattr(loaded, field)))
    pio.load_dataset(p, validate=False)


def test_negative_amplitudes(tmp_path):
    data = _make(with_optional=False)
    d = data.diffraction.copy()
    d[4, 2, 3] = -0.5
    msg = _err(_write(tmp_path, "neg.npz", diffraction=d), "diffraction")
    assert "negative" in msg and "pattern 4" in msg


def test_bad_metadata(tmp_path):
    for i, value in enumerate([np.array("{not json", dtype=object), np.array("[1, 2]", dtype=object),
                               np.array(b"\xff\xfe"), np.array(["{}", "{}"])]):
        _err(_write(tmp_path, f"m{i}.npz", _metadata=value), "_metadata")


def test_save_refuses_bad_data(tmp_path):
    data = _make(with_optional=False)
    bad = data.replace(xcoords=data.xcoords[:-1], ycoords=data.ycoords[:-1])
    with pytest.raises(PtyAnalysisError, match="xcoords"):
        pio.save_dataset(tmp_path / "x.npz", bad)
    assert not list(tmp_path.iterdir())
    d = data.diffraction.copy()
    d[0, 0, 0] = np.nan
    poisoned = data.replace(diffraction=d)
    with pytest.raises(PtyAnalysisError, match="allow_nonfinite"):
        pio.save_dataset(tmp_path / "p.npz", poisoned)
    p = pio.save_dataset(tmp_path / "p.npz", poisoned, allow_nonfinite=True)
    assert np.isnan(pio.load_dataset(p, allow_nonfinite=True).diffraction[0, 0, 0])


def test_in_memory_dtype_rules():
    data = _make(with_optional=False)
    with pytest.raises(PtyAnalysisError, match="'diffraction'"):
        data.replace(diffraction=data.diffraction.astype(np.complex64))
    with pytest.raises(PtyAnalysisError, match="'probeGuess'"):
        data.replace(probe=np.ones((N, N), int))
    with pytest.raises(PtyAnalysisError, match="<memory>: key 'probeGuess'"):
        pio.validate_dataset(data.replace(probe=np.ones((N + 1, N + 1), np.complex64)))


# --------------------------------------------------------------------------- atomic save


def test_atomic_save(tmp_path, monkeypatch):
    target = tmp_path / "d.npz"
    first = _make(seed=1)
    pio.save_dataset(target, first)
    before = target.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 partial garbage" * 100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="simulated"):
        pio.save_dataset(target, _make(seed=2))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["d.npz"]
    _assert_same(first, pio.load_dataset(target))


def test_save_keeps_name(tmp_path):
    p = pio.save_dataset(tmp_path / "data.bin", _make(with_optional=False))
    assert p.exists() and not Path(str(p) + ".npz").exists()
    assert pio.load_dataset(p).n == n


# --------------------------------------------------------------------------- physics


def test_recover_counts_poisson():
    rng = np.random.default_rng(7)
    Nn, npat, nphotons = 16, 200, 1e3
    H = W = 48
    obj = rng.uniform(0.6, 1, (H, W)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (H, W)))
    yy, xx = np.mgrid[:Nn, :Nn] - Nn // 2
    probe = np.exp(-(xx**2 + yy**2) / 18.0) * np.exp(1j * 0.05 * (xx**2 + yy**2))
    rows = rng.integers(Nn // 2, H - Nn // 2, npat)
    cols = rng.integers(Nn // 2, W - Nn // 2, npat)
    patches = np.stack([obj[r - Nn // 2:r + Nn // 2, c - Nn // 2:c + Nn // 2] for r, c in zip(rows, cols)])
    op = patches * probe
    s = np.sqrt(nphotons / np.mean(np.sum(np.abs(op) ** 2, axis=(1, 2))))
    amp = np.abs(np.fft.fftshift(np.fft.fft2(s * op, norm="ortho"), axes=(1, 2)))
    counts = rng.poisson(amp**2)
    data = pio.PtychoData(
        diffraction=(np.sqrt(counts) / s).astype(np.float32), xcoords=cols, ycoords=rows,
        probe=probe, obj=obj, metadata=pio.make_metadata(nphotons, Nn))
    pio.validate_dataset(data)
    rec = pio.recover_counts(data)
    assert rec.shape == (npat, Nn, Nn) and rec.dtype == np.float64
    # the smallest-nonzero rule: the counts themselves, and their mean total is the realised dose
    np.testing.assert_allclose(rec, counts, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(rec.sum(axis=(1, 2)).mean(), counts.sum(axis=(1, 2)).mean(), rtol=1e-6)
    assert abs(counts.sum(axis=(1, 2)).mean() / nphotons - 1) < 0.03  # the data's own dose
    # the mean rule (method="mean") puts the mean total at nphotons by construction
    mean_rule = pio.recover_counts(data, method="mean")
    np.testing.assert_allclose(mean_rule.sum(axis=(1, 2)).mean(), nphotons, rtol=1e-6)
    np.testing.assert_allclose(mean_rule, counts, rtol=0.03, atol=1e-3)
    # no metadata is no problem where low counts exist; the mean rule then needs the dose
    np.testing.assert_allclose(pio.recover_counts(data.replace(metadata={})), rec, rtol=1e-12)
    np.testing.assert_allclose(pio.recover_counts(data.replace(metadata={}), method="mean", nphotons=nphotons),
                               mean_rule, rtol=1e-6)
    with pytest.raises(PtyAnalysisError, match="nphotons"):
        pio.recover_counts(data.replace(metadata={}), method="mean")



# --------------------------------------------------------------------------- files PtychoPINN writes

_spec = importlib.util.spec_from_file_location(
    "ptychopinn_files", Path(__file__).parent / "data" / "ptychopinn" / "ptychopinn_files.py")
ppf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ppf)


def _shape_pattern(shape, n, N, obj):
    names = {n: "n", N: "N"}
    if len(shape) == 2 and tuple(shape) == tuple(obj):
        return ("H", "W")
    return tuple(names.get(v, v) for v in shape)


def test_generated_files_are_shaped_like_ptychopinns_own(tmp_path):
    """Keys (in order), dtypes, shapes (up to n, N, H, W) and zip storage as in PtychoPINN's real files."""
    manifest = json.loads((Path(__file__).parent / "data" / "ptychopinn" / "MANIFEST.json").read_text())
    paths, _sim, _idx = ppf.write_patched_splits(tmp_path)
    ppf.write_simulated(tmp_path / "simulate_and_save_output.npz")
    ppf.write_legacy(tmp_path / "legacy_train_rawdata_to_file.npz")
    mine = {"patched_train.npz": paths["train"], "patched_test.npz": paths["test"],
            "simulate_and_save_output.npz": tmp_path / "simulate_and_save_output.npz",
            "legacy_train_rawdata_to_file.npz": tmp_path / "legacy_train_rawdata_to_file.npz"}
    for name, real in manifest.items():
        keys = real["keys"]
        rn = keys["xcoords"]["shape"][0]
        rN = keys["probeGuess"]["shape"][0]
        with np.load(mine[name], allow_pickle=True) as z, zipfile.ZipFile(mine[name]) as zf:
            assert list(z.files) == list(keys), name
            gn, gN = z["xcoords"].shape[0], z["probeGuess"].shape[0]
            for key, info in keys.items():
                assert str(z[key].dtype) == info["dtype"], (name, key)
                assert (_shape_pattern(z[key].shape, gn, gN, z["objectGuess"].shape)
                        == _shape_pattern(info["shape"], rn, rN, keys["objectGuess"]["shape"])), (name, key)
            stored = {i.compress_type for i in zf.infolist()}
            assert stored == ({zipfile.ZIP_STORED} if name.startswith("legacy") else {zipfile.ZIP_DEFLATED}), name
            if "_metadata" in z.files:
                tools = [r["tool"] for r in json.loads(z["_metadata"].item())["data_transformations"]]
                assert tools == real.get("metadata_tools", []), name


def test_ptychopinn_split_Y_is_ignored_with_a_notice_and_ground_truth_patches_used(tmp_path):
    paths, sim, idx = ppf.write_patched_splits(tmp_path)
    for split, p in paths.items():
        with pytest.warns(pio.DatasetNotice) as rec:
            data = pio.load_dataset(p)
        msgs = [str(w.message) for w in rec]
        assert len(msgs) == 1, msgs
        # names the file and the shape as written, says it is ignored and where ground truth comes from
        assert str(p) in msgs[0] and "key 'Y' has shape (1, 16, 16, 1)" in msgs[0]
        assert f"not the {len(idx[split])} patterns" in msgs[0] and "ignored" in msgs[0]
        assert "'ground_truth_patches'" in msgs[0]
        assert data.Y_key == "ground_truth_patches" and pio.ground_truth_source(data) == "ground_truth_patches"
        assert data.Y.shape == (len(idx[split]), 16, 16) and data.Y.dtype == np.complex64
        np.testing.assert_array_equal(pio.ground_truth_patches(data), sim["gt"][idx[split]])
        np.testing.assert_array_equal(pio.ground_truth_patches(data, [2, 0]), sim["gt"][idx[split]][[2, 0]])
        assert data.metadata["physics_parameters"]["nphotons"] == 1e4
        # the subset keeps the key; a save/load round trip writes it as Y (docs/formats.md#ground-truth)
        assert data.subset([0, 1]).Y_key == "ground_truth_patches"
        back = pio.load_dataset(pio.save_dataset(tmp_path / f"again_{split}.npz", data))
        assert back.Y_key == "Y"
        np.testing.assert_array_equal(back.Y, data.Y)
        ds = pio.to_xarray(data)
        assert pio.from_xarray(ds).Y_key == "ground_truth_patches"


def test_ground_truth_cut_from_objectGuess_when_no_per_pattern_patches(tmp_path):
    paths, sim, idx = ppf.write_patched_splits(tmp_path)
    with np.load(paths["train"], allow_pickle=True) as z:
        raw = {k: z[k] for k in z.files if k != "ground_truth_patches"}
    np.savez(tmp_path / "no_gtp.npz", **raw)
    with pytest.warns(pio.DatasetNotice, match=r"ground truth comes from 'objectGuess' \(cut at the scan positions\)"):
        data = pio.load_dataset(tmp_path / "no_gtp.npz")
    assert data.Y is None and pio.ground_truth_source(data) == "objectGuess"
    gt = pio.ground_truth_patches(data)
    assert gt.shape == (len(idx["train"]), 16, 16) and gt.dtype == np.complex64
    np.testing.assert_allclose(gt, sim["gt"][idx["train"]], atol=1e-5)  # bilinear, at float positions
    # PtychoPINN's legacy RawData.to_file: no Y, no ground_truth_patches, no _metadata; nothing to say
    sim2 = ppf.write_legacy(tmp_path / "legacy.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        legacy = pio.load_dataset(tmp_path / "legacy.npz", mmap=True)
    assert isinstance(legacy.diffraction, np.memmap) and legacy.metadata == {} and legacy.nphotons is None
    assert pio.ground_truth_source(legacy) == "objectGuess"
    np.testing.assert_allclose(pio.ground_truth_patches(legacy), sim2["gt"], atol=1e-5)
    # no ground truth at all, or a patch outside the object: errors naming the file
    raw.pop("objectGuess")
    np.savez(tmp_path / "no_obj.npz", **raw)
    with pytest.warns(pio.DatasetNotice, match="ground truth comes from nowhere"):
        bare = pio.load_dataset(tmp_path / "no_obj.npz")
    assert pio.ground_truth_source(bare) is None
    with pytest.raises(PtyAnalysisError, match=re.escape(str(tmp_path / "no_obj.npz")) + ".*no ground truth"):
        pio.ground_truth_patches(bare)
    far = legacy.replace(xcoords=legacy.xcoords + 100.0)
    with pytest.raises(PtyAnalysisError, match="key 'objectGuess'.*outside"):
        pio.ground_truth_patches(far)


def test_other_ground_truth_shape_disagreements_stay_errors(tmp_path):
    paths, _sim, idx = ppf.write_patched_splits(tmp_path)
    with np.load(paths["train"], allow_pickle=True) as z:
        raw = {k: z[k] for k in z.files}
    k = len(idx["train"])

    def err(name, key, **changes):
        arrays = dict(raw, **changes)
        np.savez(tmp_path / name, **arrays)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pio.DatasetNotice)
            msg = _err(tmp_path / name, key)
        return msg

    gtp = raw["ground_truth_patches"]
    assert f"({k}, 16, 16)" in err("a.npz", "ground_truth_patches", ground_truth_patches=gtp[1:])
    err("b.npz", "ground_truth_patches", ground_truth_patches=np.zeros((k, 16, 15, 1), np.complex64))
    err("c.npz", "ground_truth_patches", ground_truth_patches=np.zeros((k, 16, 16, 2), np.complex64))
    assert "dtype" in err("d.npz", "ground_truth_patches", ground_truth_patches=np.zeros((k, 16, 16, 1), np.int32))
    # a per-pattern Y with the wrong patch size is an error, not ignored
    err("e.npz", "Y", Y=np.zeros((k, 16, 12, 1), np.complex64))
    # a per-pattern Y wins over ground_truth_patches
    np.savez(tmp_path / "f.npz", **dict(raw, Y=gtp * 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = pio.load_dataset(tmp_path / "f.npz")
    assert both.Y_key == "Y"
    np.testing.assert_array_equal(both.Y, gtp[..., 0] * 2)
    # NaN in ground_truth_patches is reported under that key
    bad = gtp.copy()
    bad[3, 5, 5, 0] = np.nan
    msg = err("g.npz", "ground_truth_patches", ground_truth_patches=bad)
    assert "1 NaN/Inf value(s)" in msg and "first in patch 3" in msg


def test_nonfinite_error_names_file_key_count_and_first_index(tmp_path):
    data = _make(n=20)
    d = data.diffraction.copy()
    d[7, 1, 2] = np.nan
    d[7, 3, 3] = np.inf
    d[12, 0, 0] = np.nan
    p = _write(tmp_path, "nan.npz", data=data, diffraction=d)
    msg = _err(p, "diffraction")
    assert f"3 NaN/Inf value(s) among {d.size}" in msg and "first in pattern 7" in msg
    assert "allow_nonfinite=True" in msg and "ptyanalysis simulate" in msg
    # where the command goes on: a warning with statistics over the finite values, saying so
    with pytest.warns(pio.DatasetNotice) as rec:
        loaded = pio.load_dataset(p, allow_nonfinite=True)
    (w,) = [str(r.message) for r in rec]
    fin = d[np.isfinite(d)]
    assert str(p) in w and "key 'diffraction'" in w and "3 NaN/Inf value(s)" in w and "first in pattern 7" in w
    assert f"over {fin.size}" in w and f"mean {fin.astype(np.float64).mean():.6g}" in w
    assert "finite values only" in w
    assert np.isnan(loaded.diffraction[7, 1, 2])


def test_nonfinite_diffraction_normalisation_uses_the_finite_values(tmp_path):
    from ptyanalysis.inference import feeds

    data = _make(n=20)
    d = data.diffraction.astype(np.float64)
    good = feeds.mean_total_intensity(d)
    d2 = data.diffraction.copy()
    d2[4, 2, 2] = np.nan
    p = _write(tmp_path, "nan.npz", data=data, diffraction=d2)
    with pytest.warns(pio.DatasetNotice):
        loaded = pio.load_dataset(p, allow_nonfinite=True)
    with pytest.warns(pio.DatasetNotice) as rec:
        mt = feeds.mean_total_intensity(loaded.diffraction, source=loaded.path)
    msg = str(rec[0].message)
    assert str(p) in msg and "key 'diffraction'" in msg and "1 NaN/Inf value(s)" in msg and "pattern 4" in msg
    expected = (np.sum(d ** 2) - d[4, 2, 2] ** 2) / d.shape[0]
    assert mt == pytest.approx(expected, rel=1e-6) and mt < good
    with pytest.warns(pio.DatasetNotice):
        x = feeds.scale_diffraction(loaded.diffraction, 2.0)
    assert np.isfinite(x).sum() == x.size - 1


def test_dose_from_the_amplitudes_alone(tmp_path):
    sim = ppf.write_legacy(tmp_path / "legacy.npz", n=30, nphotons=1e4)
    data = pio.load_dataset(tmp_path / "legacy.npz")
    assert data.metadata == {}
    est = pio.estimate_dose(data)
    realised = sim["counts"].sum(axis=(1, 2)).mean()
    assert est.method == "smallest_nonzero" and est.smallest_count == 1
    assert est.dose == pytest.approx(realised, rel=1e-3)
    assert est.scale == pytest.approx(sim["s"], rel=1e-6)
    assert est.integer_deviation < 1e-3
    assert est.nphotons is None and est.agrees is None and est.relative_difference is None
    assert "smallest-nonzero rule" in est.note and "no nphotons in _metadata" in est.note
    assert json.loads(json.dumps(est.to_dict()))["method"] == "smallest_nonzero"
    # checked against _metadata where both exist; a split's own dose is a few per cent off nphotons
    paths, sim2, idx = ppf.write_patched_splits(tmp_path)
    for split, p in paths.items():
        with pytest.warns(pio.DatasetNotice):
            d = pio.load_dataset(p)
        e = pio.estimate_dose(d)
        real = sim2["counts"][idx[split]].sum(axis=(1, 2)).mean()
        assert e.dose == pytest.approx(real, rel=1e-3) and e.nphotons == 1e4
        assert e.relative_difference == pytest.approx(real / 1e4 - 1, abs=1e-3) and e.agrees is True
        assert e.scale_mean_rule == pytest.approx(np.sqrt(1e4 / np.mean(np.sum(
            d.diffraction.astype(np.float64) ** 2, axis=(1, 2)))))
    # a mislabelled file: the disagreement is reported
    mis, _, _ = ppf.write_patched_splits(tmp_path / "..", metadata_nphotons=1e3)
    with pytest.warns(pio.DatasetNotice):
        d = pio.load_dataset(mis["train"])
    with pytest.warns(pio.DatasetNotice, match="DISAGREES"):
        e = pio.estimate_dose(d)
    assert e.agrees is False and e.relative_difference > 5


def test_dose_without_low_counts_says_so(tmp_path):
    # amplitudes that are not sqrt(integer)/s (no low counts to calibrate on)
    rng = np.random.default_rng(1)
    data = _make(n=20).replace(diffraction=rng.uniform(3.0, 5.0, (20, N, N)).astype(np.float32))
    est = pio.estimate_dose(data)  # _make's metadata has nphotons 1e4
    assert est.method == "mean" and "less reliable" in est.note and est.dose == 1e4
    assert est.scale == pytest.approx(np.sqrt(1e4 / np.mean(np.sum(data.diffraction.astype(float) ** 2, axis=(1, 2)))))
    none = pio.estimate_dose(data.replace(metadata={}))
    assert none.method == "unavailable" and none.scale is None and none.dose is None and "nphotons" in none.note
    with pytest.warns(pio.DatasetNotice, match="mean rule"):
        pio.recover_counts(data)
    with pytest.raises(PtyAnalysisError, match="smallest-nonzero rule does not hold"):
        pio.recover_counts(data, method="smallest_nonzero")
    with pytest.raises(PtyAnalysisError, match="nphotons"):
        pio.recover_counts(data.replace(metadata={}))
    # the smallest amplitude holding 2 counts (no 1-count pixel) is found too
    counts = rng.poisson(3.0, (20, N, N))
    counts[counts == 1] = 0  # 0, 2, 3, ... counts
    s = 3.0
    two = _make(n=20).replace(diffraction=(np.sqrt(counts) / s).astype(np.float32), metadata={})
    e2 = pio.estimate_dose(two)
    assert e2.method == "smallest_nonzero" and e2.smallest_count == 2 and e2.scale == pytest.approx(s, rel=1e-6)


def test_recover_counts_unbiased_on_ptychopinn_splits(tmp_path):
    paths, sim, idx = ppf.write_patched_splits(tmp_path, n=40)
    for split, p in paths.items():
        with pytest.warns(pio.DatasetNotice):
            data = pio.load_dataset(p)
        true = sim["counts"][idx[split]]
        rec = pio.recover_counts(data)
        assert np.max(np.abs(rec - true)) <= 3e-4 * max(1.0, float(true.max())) ** 0.5 + 1e-4
        assert np.abs(rec.sum() / true.sum() - 1) < 1e-6
        # the mean rule is biased on a split (its realised dose is not nphotons)
        biased = pio.recover_counts(data, method="mean")
        assert abs(biased.sum() / true.sum() - 1) > 0.01


# --------------------------------------------------------------------------- the one NPZ-member reader


def _stored_npz_with_short_member(path, key="diffraction", rows=10, claimed=40):
    """A stored NPZ whose ``key`` member's header declares ``claimed`` rows but holds ``rows``."""
    data = _make(n=claimed)
    raw = _raw(data)
    np.savez(path, **raw)
    arr = np.ascontiguousarray(raw[key])
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array(buf, arr)
    blob = buf.getvalue()
    cut = len(blob) - (claimed - rows) * arr[0].nbytes
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    members[key + ".npy"] = blob[:cut]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, b in members.items():
            zf.writestr(name, b)
    return path


def test_one_npz_member_reader_for_datasets_and_streaming(tmp_path):
    from ptyanalysis.inference import sources

    data = _make()
    p = pio.save_dataset(tmp_path / "d.npz", data)
    with zipfile.ZipFile(p) as zf:
        m = pio.locate_npy_member(p, zf.getinfo("diffraction.npy"))
    assert m.stored and m.shape == (n, N, N) and m.dtype == np.float32 and m.nbytes == data.diffraction.nbytes
    with open(p, "rb") as fh:
        fh.seek(m.offset)
        np.testing.assert_array_equal(np.frombuffer(fh.read(m.nbytes), np.float32).reshape(m.shape), data.diffraction)
    srcs = sources.open_npz(p)
    np.testing.assert_array_equal(srcs["diffraction"].read(2, 5), data.diffraction[2:5])
    assert srcs["diffraction"].offset == m.offset
    # a truncated stored member: the same error from both readers, naming the file and the key
    bad = _stored_npz_with_short_member(tmp_path / "short.npz")
    with pytest.raises(PtyAnalysisError, match=r"short\.npz: key 'diffraction'.*truncated"):
        sources.open_npz(bad)
    with pytest.raises(PtyAnalysisError, match=r"short\.npz: key 'diffraction'.*truncated"):
        pio.load_dataset(bad, mmap=True)
    _err(bad, "diffraction")  # without mmap numpy's reader fails; still named
    # compressed members are not located (read by numpy instead)
    pc = pio.save_dataset(tmp_path / "c.npz", data, compress=True)
    with zipfile.ZipFile(pc) as zf:
        assert not pio.locate_npy_member(pc, zf.getinfo("diffraction.npy")).stored
    # a plain .npy: the same reader
    np.save(tmp_path / "x.npy", data.diffraction)
    f = pio.locate_npy_file(tmp_path / "x.npy")
    assert f.shape == (n, N, N) and f.key == "x"
    blob = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "y.npy").write_bytes(blob[:-100])
    with pytest.raises(PtyAnalysisError, match="truncated"):
        pio.locate_npy_file(tmp_path / "y.npy")
    with pytest.raises(PtyAnalysisError, match="input 'input'.*truncated"):
        sources._npy_source("input", tmp_path / "y.npy")


def test_the_one_member_reader_is_not_copied():
    from ptyanalysis.inference import sources

    text = Path(sources.__file__).read_text()
    assert "read_array_header" not in text and "PK\\x03\\x04" not in text


def test_open_npz_skips_pickled_members_with_a_notice(tmp_path, caplog):
    from ptyanalysis.inference import sources

    data = _make()
    for compress in (False, True):
        p = pio.save_dataset(tmp_path / f"d{compress}.npz", data, compress=compress)
        with caplog.at_level("WARNING", logger="ptyanalysis.inference"):
            srcs = sources.open_npz(p)
        assert "_metadata" not in srcs and "diffraction" in srcs
        assert "'_metadata' holds a pickled object array" in caplog.text
        np.testing.assert_array_equal(srcs["Y"].read(0, 3), data.Y[:3])


def test_diagnosis_ground_truth_uses_the_one_rule(tmp_path):
    from ptyanalysis.diagnosis.inputs import split_ground_truth

    paths, sim, idx = ppf.write_patched_splits(tmp_path)
    ppf.write_legacy(tmp_path / "legacy.npz", seed=5)
    with pytest.warns(pio.DatasetNotice):
        a = pio.load_dataset(paths["train"])
    b = pio.load_dataset(tmp_path / "legacy.npz")
    said = []
    gt = split_ground_truth({"a": a, "b": b}, {"a": "train", "b": "legacy"}, say=said.append)
    np.testing.assert_array_equal(gt["train"], sim["gt"][idx["train"]])
    np.testing.assert_array_equal(gt["legacy"], pio.ground_truth_patches(b))
    assert "key 'ground_truth_patches'" in said[0] and "key 'objectGuess'" in said[1]
    said.clear()
    assert split_ground_truth({"a": a, "b": b.replace(obj=None)}, {"a": "train", "b": "legacy"}, say=said.append) is None
    assert "no ground truth" in said[-1] and "legacy.npz" in said[-1]


def test_a_view_of_consecutive_rows_stays_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    n, N = 40, 8
    data = pio.PtychoData(diffraction=rng.random((n, N, N)).astype(np.float32), xcoords=rng.random(n) * 50,
                          ycoords=rng.random(n) * 50, probe=np.ones((N, N), np.complex64))
    path = pio.save_dataset(tmp_path / "d.npz", data)
    back = pio.load_dataset(path, mmap=True)
    assert isinstance(back.diffraction, np.memmap)
    whole, run, picked = back.subset(np.arange(n)), back.subset(np.arange(5, 25)), back.subset([3, 1, 7])
    assert isinstance(whole.diffraction, np.memmap) and isinstance(run.diffraction, np.memmap)
    assert not whole.diffraction.flags.writeable
    assert not isinstance(picked.diffraction, np.memmap)
    np.testing.assert_array_equal(run.diffraction, data.diffraction[5:25])
    np.testing.assert_array_equal(picked.diffraction, data.diffraction[[3, 1, 7]])
    np.testing.assert_array_equal(run.xcoords, back.xcoords[5:25])
    mem = data.subset(np.arange(n))  # in memory: a copy, never a view that writes through
    assert not np.shares_memory(mem.diffraction, data.diffraction)

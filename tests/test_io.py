"""Tests of ptyanalysis.io: dataset NPZ read/write/validation and xarray views."""

from __future__ import annotations

import json
import os
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
    _err(_write(tmp_path, "f.npz", Y=np.ones((n - 1, N, N), np.complex64)), "Y")
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
    np.testing.assert_allclose(rec.sum(axis=(1, 2)).mean(), nphotons, rtol=1e-6)  # by construction
    assert abs(counts.sum(axis=(1, 2)).mean() / nphotons - 1) < 0.03  # the data's own dose
    low = rec < 20
    assert np.max(np.abs(rec[low] - np.round(rec[low]))) < 0.1
    np.testing.assert_allclose(rec, counts, rtol=0.02, atol=1e-3)
    assert np.mean(np.abs(rec - np.round(rec)) < 0.1) > 0.95
    # dose from the argument; missing dose is a clear error
    np.testing.assert_allclose(pio.recover_counts(data.replace(metadata={}), nphotons=nphotons), rec, rtol=1e-6)
    with pytest.raises(PtyAnalysisError, match="nphotons"):
        pio.recover_counts(data.replace(metadata={}))

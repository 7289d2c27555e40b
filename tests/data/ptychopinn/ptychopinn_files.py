"""Tiny dataset NPZ files shaped exactly as PtychoPINN writes them (a test fixture generator).

The real files (PtychoPINN HEAD 712c23f run by its own pipeline, 2026-12: ``simulate_and_save``
-> ``transpose_rename_convert`` -> ``generate_patches(k=7, nsamples=1)`` -> ``split_dataset(0.5,
'y')``, and ``RawData.to_file``) are 0.5-1.3 MB each, too big to commit; ``MANIFEST.json`` next
to this file lists every key, shape and dtype they hold, and ``test_io.py`` checks that the files
written here have the same keys, in the same order, with the same dtypes, shapes (up to n, N and
the object size) and zip storage.

What is imitated (docs/formats.md#dataset-npz):

* ``patched_{train,test}.npz`` (``split_dataset``; ``np.savez_compressed``): ``xcoords``,
  ``ycoords``, ``xcoords_start``, ``ycoords_start`` (n,) float64, ``diffraction`` (n, N, N)
  float32, ``probeGuess`` (N, N) complex64, ``objectGuess`` (H, W) complex64, ``scan_index`` (n,)
  int64 (all 0), ``ground_truth_patches`` (n, N, N, 1) complex64, ``Y`` (1, N, N, 1) complex64
  (the patch of ONE random position of the whole set, the same in both splits),
  ``coords_start_offsets`` (1, 1, 2, 1) float64 (that position as [x, y]),
  ``coords_start_relative`` (1, 1, 2, 1) float64 zeros, ``_metadata`` (0-d object array holding
  the JSON string, with the records of the three tools).
* ``simulate_and_save`` output: the same per-scan keys with ``diff3d`` instead of
  ``diffraction``, ``ground_truth_patches``, ``_metadata`` with no transformations.
* ``RawData.to_file`` (legacy): ``np.savez`` (stored), ``xcoords``, ``ycoords``,
  ``xcoords_start``, ``ycoords_start``, ``diff3d``, ``probeGuess``, ``objectGuess``,
  ``scan_index``; no ``_metadata``, no ``ground_truth_patches``, no ``Y``.

Physics: patch = object at the (float) scan centre, cut with bilinear interpolation (as
PtychoPINN's ``translate``; written here independently of ptyanalysis); exit wave = s O P;
counts ~ Poisson(|FFT_ortho(exit)|^2) (fftshifted), stored amplitude sqrt(counts) / s with s =
sqrt(nphotons / mean over ALL patterns of sum |O P|^2): the *expected* photon count, so each
split's realised dose differs from nphotons.
"""

from __future__ import annotations

import json

import numpy as np

#: The keys of each file, in the order PtychoPINN writes them.
PATCHED_KEYS = ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "diffraction", "probeGuess",
                "objectGuess", "scan_index", "ground_truth_patches", "Y", "coords_start_offsets",
                "coords_start_relative", "_metadata")
SIMULATED_KEYS = ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "diff3d", "probeGuess",
                  "objectGuess", "scan_index", "ground_truth_patches", "_metadata")
LEGACY_KEYS = ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "diff3d", "probeGuess",
               "objectGuess", "scan_index")


def _object(H, rng):
    f = np.fft.fft2(rng.standard_normal((H, H)))
    k = np.fft.fftfreq(H)
    g = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) * (2 * np.pi * 2.0) ** 2 / 2)
    r = np.real(np.fft.ifft2(f * g))
    r = (r - r.mean()) / r.std()
    return (np.clip(0.75 + 0.15 * r, 0.3, 1.0) * np.exp(0.8j * np.tanh(r[::-1]))).astype(np.complex64)


def _probe(N):
    yy, xx = np.mgrid[:N, :N] - N // 2
    return (np.exp(-(xx ** 2 + yy ** 2) / (2 * (N / 8) ** 2)) * np.exp(0.02j * (xx ** 2 + yy ** 2))).astype(np.complex64)


def bilinear_patches(obj, xcoords, ycoords, N):
    """Patches (n, N, N) of ``obj`` centred at float (y, x), pixel ``N // 2`` on the centre, bilinear."""
    out = np.empty((len(xcoords), N, N), np.complex128)
    grid = np.arange(N) - N // 2
    for i, (x, y) in enumerate(zip(xcoords, ycoords)):
        r, c = y + grid, x + grid
        r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
        fr, fc = (r - r0)[:, None], (c - c0)[None, :]
        o = obj.astype(np.complex128)
        out[i] = ((1 - fr) * (1 - fc) * o[np.ix_(r0, c0)] + (1 - fr) * fc * o[np.ix_(r0, c0 + 1)]
                  + fr * (1 - fc) * o[np.ix_(r0 + 1, c0)] + fr * fc * o[np.ix_(r0 + 1, c0 + 1)])
    return out.astype(np.complex64)


def simulate(n=40, N=16, H=48, nphotons=1e4, seed=0):
    """The arrays of one simulated set, as ``simulate_and_save`` makes them, plus the true counts."""
    rng = np.random.default_rng(seed)
    obj, probe = _object(H, rng), _probe(N)
    x = rng.uniform(N / 2, H - N / 2 - 1, n)
    y = rng.uniform(N / 2, H - N / 2 - 1, n)
    gt = bilinear_patches(obj, x, y, N)
    op = gt.astype(np.complex128) * probe
    s = np.sqrt(nphotons / np.mean(np.sum(np.abs(op) ** 2, axis=(1, 2))))
    far = np.abs(np.fft.fftshift(np.fft.fft2(s * op, norm="ortho"), axes=(1, 2))) ** 2
    counts = rng.poisson(far)
    return {
        "xcoords": x, "ycoords": y, "obj": obj, "probe": probe, "gt": gt, "counts": counts, "s": s,
        "diffraction": (np.sqrt(counts) / s).astype(np.float32), "nphotons": float(nphotons), "N": N,
        "rng": rng,
    }


def metadata(n, N, nphotons, tools=("transpose_rename_convert", "generate_patches", "split_dataset_tool.py"),
             counts=None) -> dict:
    """``_metadata`` as PtychoPINN writes it (records of the tools that ran, in order)."""
    records = {
        "transpose_rename_convert": {"tool": "transpose_rename_convert", "timestamp": "2026-12-01T20:58:30.842199Z",
                                     "operation": "canonicalize", "parameters": {"flipx": False, "flipy": False}},
        "generate_patches": {"tool": "generate_patches", "timestamp": "2026-12-01T20:58:31.007890Z",
                             "operation": "generate_patches",
                             "parameters": {"patch_size": N, "k_neighbors": 7, "nsamples": 1}},
        "split_dataset_tool.py": {"tool": "split_dataset_tool.py", "timestamp": "2026-12-01T20:58:31.088292Z",
                                  "operation": "train_test_split",
                                  "parameters": {"split_fraction": 0.5, "split_axis": "y",
                                                 "parent_file": "/data/patched.npz", "split_point": 0.0,
                                                 "train_count": (counts or (0, 0))[0],
                                                 "test_count": (counts or (0, 0))[1]}},
    }
    return {
        "schema_version": "1.0.0",
        "creation_info": {"timestamp": "2026-12-01T20:58:30.712786Z", "script": "simulate_and_save.py",
                          "hostname": "vm", "ptychopinn_version": "2.0.0"},
        "physics_parameters": {"nphotons": float(nphotons), "gridsize": 1, "N": N, "probe_trainable": False,
                               "intensity_scale_trainable": True, "nll_weight": 1.0, "model_type": "pinn"},
        "training_parameters": {"n_images": n, "batch_size": 16, "nepochs": 50},
        "data_transformations": [records[t] for t in tools],
        "additional_parameters": {"input_file": "/data/base.npz", "buffer": N // 2, "seed": 42,
                                  "simulation_type": "coordinate_based"},
    }


def _meta_array(meta):
    return np.array(json.dumps(meta), dtype=object)


def write_patched_splits(folder, n=40, N=16, H=48, nphotons=1e4, seed=0, metadata_nphotons=None):
    """Write ``patched_train.npz`` and ``patched_test.npz`` (split at the median y) into ``folder``.

    Returns ``({"train": path, "test": path}, sim, {"train": index, "test": index})`` where ``sim``
    is :func:`simulate`'s dict (true counts included) and the indices select each split's rows.
    ``metadata_nphotons`` writes another dose into ``_metadata`` (a mislabelled file).
    """
    from pathlib import Path

    sim = simulate(n, N, H, nphotons, seed)
    y = sim["ycoords"]
    split_point = float(np.median(y))
    idx = {"train": np.flatnonzero(y < split_point), "test": np.flatnonzero(y >= split_point)}
    one = int(sim["rng"].integers(n))  # generate_patches(nsamples=1): ONE position's patch
    Y = sim["gt"][one][None, ..., None]
    offsets = np.array([sim["xcoords"][one], sim["ycoords"][one]], np.float64).reshape(1, 1, 2, 1)
    meta = metadata(n, N, nphotons if metadata_nphotons is None else metadata_nphotons,
                    counts=(len(idx["train"]), len(idx["test"])))
    meta["data_transformations"][-1]["parameters"]["split_point"] = split_point
    paths = {}
    for split, rows in idx.items():
        arrays = {
            "xcoords": sim["xcoords"][rows], "ycoords": sim["ycoords"][rows],
            "xcoords_start": sim["xcoords"][rows].copy(), "ycoords_start": sim["ycoords"][rows].copy(),
            "diffraction": sim["diffraction"][rows], "probeGuess": sim["probe"], "objectGuess": sim["obj"],
            "scan_index": np.zeros(len(rows), np.int64), "ground_truth_patches": sim["gt"][rows][..., None],
            "Y": Y, "coords_start_offsets": offsets, "coords_start_relative": np.zeros((1, 1, 2, 1)),
            "_metadata": _meta_array(meta),
        }
        assert tuple(arrays) == PATCHED_KEYS
        paths[split] = Path(folder) / f"patched_{split}.npz"
        np.savez_compressed(paths[split], **arrays)
    return paths, sim, idx


def write_simulated(path, n=40, N=16, H=48, nphotons=1e4, seed=0):
    """Write ``simulate_and_save``'s output (key ``diff3d``); return :func:`simulate`'s dict."""
    sim = simulate(n, N, H, nphotons, seed)
    arrays = {
        "xcoords": sim["xcoords"], "ycoords": sim["ycoords"], "xcoords_start": sim["xcoords"].copy(),
        "ycoords_start": sim["ycoords"].copy(), "diff3d": sim["diffraction"], "probeGuess": sim["probe"],
        "objectGuess": sim["obj"], "scan_index": np.zeros(n, np.int64), "ground_truth_patches": sim["gt"][..., None],
        "_metadata": _meta_array(metadata(n, N, nphotons, tools=())),
    }
    assert tuple(arrays) == SIMULATED_KEYS
    np.savez_compressed(path, **arrays)
    return sim


def write_legacy(path, n=40, N=16, H=48, nphotons=1e4, seed=0):
    """Write what ``RawData.to_file`` writes (stored, ``diff3d``, no ``_metadata``); return the sim dict."""
    sim = simulate(n, N, H, nphotons, seed)
    arrays = {
        "xcoords": sim["xcoords"], "ycoords": sim["ycoords"], "xcoords_start": sim["xcoords"].copy(),
        "ycoords_start": sim["ycoords"].copy(), "diff3d": sim["diffraction"], "probeGuess": sim["probe"],
        "objectGuess": sim["obj"], "scan_index": np.zeros(n, np.int64),
    }
    assert tuple(arrays) == LEGACY_KEYS
    np.savez(path, **arrays)
    return sim

"""Benchmarks: ``python -m ptyanalysis.bench [--only SECTION] [--quick] [--json PATH]``.

Each section is a function in :data:`SECTIONS` that takes ``quick`` and
returns a list of result rows (dicts); :func:`main` prints them as a table and
optionally writes them as JSON. Add a section by adding an entry to
:data:`SECTIONS`.

Sections
--------
``stitching``
    Dense random scan (uniform positions at the study's density: 10,304
    positions over 336 x 336 px), 64 x 64 complex64 patches, n = 20,000 and
    80,000: the plain integer slice-add loop and the copy bound (``np.copyto``
    of the same bytes), then nearest, bilinear and Fourier placement with the
    CPU kernel on every core and on one thread, each as a ratio to both
    (:func:`bench_stitching`); a GPU array backend's rows where one is usable;
    :func:`~ptyanalysis.imaging.stitching.ptychopinn_reassemble` against the
    study's own implementation (a whole-canvas shift per patch,
    :func:`~ptyanalysis.imaging.stitching._naive_reassemble`) at n = 1,000 and
    5,000. Throughput in patches/s (best of 5 rounds); peak extra memory from
    ``tracemalloc`` (numpy allocations during the stitch, excluding the input
    patches), measured in a separate run from the timing.
``inference``
    :func:`~ptyanalysis.inference.run_inference` streaming a ``.npy`` split
    from disk through a small conv encoder-decoder (64 x 64 x 1) against
    ``model.predict`` on the same 20,000 samples in memory (throughput ratio,
    target >= 0.9), then a ~4 GB split written chunk-wise to a temp dir with
    the process's peak RSS (psutil, sampled in a thread; target < 1.5 GB).
``grid``
    The study grid runner on 4 CPU-bound cells: 2 Dask workers against one
    after another (:func:`ptyanalysis.pipeline.grid.bench_grid`).
``models``
    Model reuse across the ci comparison grid's 12 cells (a reused kernel per
    worker against a fresh kernel per cell: model loads, load time saved, wall
    time); at the study's size, one comparison job's time and peak RSS (target
    <= 2 GB) and the 12-cell comparison grid on 2 workers (target <= 6 min), with its compute
    floor: the model FLOPs of its cells (TensorFlow's profiler) over this machine's float32 rate
    (a matrix product measured in the same run) (:func:`bench_models`). The study-size hub is prepared once and kept
    (``--study-hub``, default :func:`default_study_hub`); each run says what
    preparing it cost.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

#: Positions per square pixel in the study's scan (10,304 positions in [64, 400]^2).
STUDY_DENSITY = 10304 / 336.0**2
_POOL = 4096


def dense_scan(n: int, seed: int = 0) -> np.ndarray:
    """Uniform random (row, col) positions at the study's scan density.

    Parameters
    ----------
    n : int
        Number of positions.
    seed : int

    Returns
    -------
    ndarray, shape (n, 2)
    """
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n / STUDY_DENSITY))
    return rng.uniform(0.0, side, size=(n, 2))


def _patch_pool(N: int, k: int = _POOL, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.empty((k, N, N), np.complex64)
    p.real = rng.standard_normal((k, N, N))
    p.imag = rng.standard_normal((k, N, N))
    return p


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _peak_mib(fn, *args, **kw) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn(*args, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _run_stitch(pool, pos, method, backend, chunk=_POOL, crop=None, threads=None):
    """Stitch len(pos) patches cycled from ``pool`` through one Stitcher (result taken too)."""
    from .imaging.stitching import Stitcher, scan_frame

    N = pool.shape[1]
    origin, shape = scan_frame(pos, N, crop=crop, method=method)
    st = Stitcher(shape, origin, N, dtype=np.complex64, method=method, crop=crop, backend=backend,
                  threads=threads)
    n = pos.shape[0]
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        st.add(pool[:k], pos[s:s + k])
    return st, st.result()


def _plain_loop(pool, pos, chunk=_POOL):
    """The plain integer slice-add loop a user would write (rounded positions, one thread)."""
    N = pool.shape[1]
    tl = np.rint(pos).astype(np.int64) - N // 2
    tl -= tl.min(axis=0)
    H, W = (tl.max(axis=0) + N).tolist()
    canvas = np.zeros((H, W), pool.dtype)
    n = pos.shape[0]
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        for p, (y, x) in zip(pool[:k], tl[s:s + k].tolist()):
            canvas[y:y + N, x:x + N] += p
    return canvas


def _copy_bound(pool, n, dst, chunk=_POOL):
    """Copy n patches' bytes into ``dst`` (np.copyto, chunk by chunk): the memory-bandwidth bound.

    ``dst`` is allocated and touched beforehand, so no page faults are timed.
    """
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        np.copyto(dst[:k], pool[:k])
    return dst


def _best(fn, repeats, *args, **kw):
    """(first result, best wall time) over ``repeats`` runs."""
    runs = [_timed(fn, *args, **kw) for _ in range(max(1, repeats))]
    return runs[0][0], min(r[1] for r in runs)


def bench_stitching(sizes=(20000, 80000), N: int = 64, quick: bool = False,
                    naive_sizes=(1000, 5000), methods=("nearest", "bilinear", "fourier"),
                    repeats: int = 5) -> list:
    """Stitching throughput against the plain loop and the copy bound, in one run.

    At each size, on the same patches (64 x 64 complex64, cycled from a
    4,096-patch pool, so they stream from memory) and positions: the plain
    integer slice-add loop (``canvas[y:y+N, x:x+N] += p``, one thread, rounded
    positions), the copy bound (``np.copyto`` of the same bytes), then each
    method through :class:`~ptyanalysis.imaging.stitching.Stitcher` (coverage
    and normalisation included) with every core and with one thread. Each
    row's note gives its speed as a ratio to the plain loop and to the copy
    bound measured in this run; the nearest mode's raw sum is checked
    bit-identical to the plain loop's canvas.

    Parameters
    ----------
    sizes : sequence of int
        Numbers of patches (the first is the main comparison; 20,000 and
        80,000 also give a linearity ratio).
    N : int
        Patch size.
    quick : bool
        Small sizes only (1,000 and 5,000; the study's implementation at 1,000).
    naive_sizes : sequence of int
        Sizes at which the study's implementation (a whole-canvas shift per
        patch) is timed against :func:`~ptyanalysis.imaging.stitching.ptychopinn_reassemble`.
    methods : sequence of str
        Placement methods timed with the CPU kernel.
    repeats : int
        Timings are the best of this many rounds; each round runs every case
        once (interleaved, so a changing load on a shared machine affects all
        of them alike).

    Returns
    -------
    list of dict
        One row per measurement: ``section, case, n, canvas, seconds,
        patches_per_s, peak_extra_mib, note``.
    """
    from .imaging.stitching import (
        _default_threads,
        _naive_reassemble,
        gpu_backend,
        ptychopinn_reassemble,
    )

    if quick:
        sizes, naive_sizes, repeats = (1000, 5000), (1000,), 1
    pool = _patch_pool(N)
    dst = np.ones_like(pool)  # the copy bound's target, touched once here
    rows = []
    gpu = gpu_backend()
    T = _default_threads()
    nan = float("nan")
    _run_stitch(pool[:64], dense_scan(64), "bilinear", "numpy")  # compile (or load) the kernel
    for n in sizes:
        pos = dense_scan(n)
        # Every case runs once per round, rounds repeated: on a shared machine the load changes
        # over minutes, and interleaving exposes every case to the same conditions.
        cases = {"plain": lambda pos=pos: _plain_loop(pool, pos), "copy": lambda n=n: _copy_bound(pool, n, dst)}
        for method in methods:
            for threads in (T, 1) if (method != "fourier" and T > 1) else (T,):
                cases[(method, threads)] = (
                    lambda m=method, t=threads, pos=pos: _run_stitch(pool, pos, m, "numpy", threads=t))
        out, best = {}, {}
        for _ in range(max(1, repeats)):
            for key, fn in cases.items():
                res, dt = _timed(fn)
                out.setdefault(key, res)
                best[key] = min(best.get(key, float("inf")), dt)
        canvas, t_plain, t_copy = out["plain"], best["plain"], best["copy"]
        shape = "x".join(map(str, canvas.shape))
        rows.append(dict(section="stitching", case="plain integer slice-add loop (reference)", n=n, canvas=shape,
                         seconds=t_plain, patches_per_s=n / t_plain, peak_extra_mib=nan,
                         note="for p, (y, x) in ...: canvas[y:y+N, x:x+N] += p; one thread"))
        gbs = 2 * n * pool[0].nbytes / t_copy / 1e9
        rows.append(dict(section="stitching", case="copy bound: np.copyto of the patches' bytes", n=n, canvas="",
                         seconds=t_copy, patches_per_s=n / t_copy, peak_extra_mib=nan,
                         note=f"{gbs:.1f} GB/s read + write; {t_plain / t_copy:.2f}x the plain loop"))
        for key in [k for k in cases if isinstance(k, tuple)]:
            method, threads = key
            (st, res), dt = out[key], best[key]
            mem = _peak_mib(_run_stitch, pool, pos, method, "numpy", threads=threads) if threads == T else nan
            note = (f"{t_plain / dt:.2f}x the plain loop, {t_copy / dt:.2f} of the copy bound; "
                    f"canvas {res.image.nbytes / 2**20:.1f} MiB")
            if method == "nearest":
                same = np.array_equal(st.weighted_sum(), canvas)
                note += f"; raw sum {'bit-identical to' if same else 'DIFFERS from'} the plain loop"
                note += " (target: faster than it)" if threads == T else ""
            if method == "bilinear" and threads == T:
                note += " (target: at least as fast as it)"
            rows.append(dict(section="stitching", case=f"stitch {method} (numpy, {threads} thread{'s' * (threads > 1)})",
                             n=n, canvas="x".join(map(str, res.shape)), seconds=dt, patches_per_s=n / dt,
                             peak_extra_mib=mem, note=note))
            if gpu is not None and threads == T and method != "fourier":
                rows += _gpu_rows(gpu, pool, pos, method, res, dt, t_plain, repeats)
    for n in naive_sizes:
        pos = dense_scan(n)
        offs = np.stack([pos[:, 1], pos[:, 0]], axis=1)[:, None, :, None]  # [x, y]
        patches = np.concatenate([pool] * (n // len(pool) + 1))[:n] if n > len(pool) else pool[:n]
        fast, dtf = _timed(ptychopinn_reassemble, patches, offs, 20)
        memf = _peak_mib(ptychopinn_reassemble, patches, offs, 20)
        naive, dtn = _timed(_naive_reassemble, patches, offs, 20)
        memn = _peak_mib(_naive_reassemble, patches[: min(n, 200)], offs[: min(n, 200)], 20)
        err = float(np.max(np.abs(fast.image - naive)) / max(np.max(np.abs(naive)), 1e-30))
        side = "x".join(map(str, fast.shape))
        rows.append(dict(section="stitching", case="ptychopinn_reassemble M=20", n=n, canvas=side,
                         seconds=dtf, patches_per_s=n / dtf, peak_extra_mib=memf,
                         note=f"{dtn / dtf:.0f}x the study's implementation (next row; not the plain loop); "
                              f"max rel. diff {err:.1e}"))
        rows.append(dict(section="stitching", case="study's reassemble_position (whole-canvas shift per patch)",
                         n=n, canvas=side, seconds=dtn, patches_per_s=n / dtn, peak_extra_mib=memn,
                         note="scipy.ndimage.shift of the whole canvas per patch; memory on 200 patches"))
    lin = {r["n"]: r["seconds"] for r in rows if r["case"] == f"stitch bilinear (numpy, {T} thread{'s' * (T > 1)})"}
    if 20000 in lin and 80000 in lin:
        rows.append(dict(section="stitching", case="linearity bilinear: t(80k)/t(20k)", n=80000, canvas="",
                         seconds=lin[80000] / lin[20000], patches_per_s=nan,
                         peak_extra_mib=nan, note="target <= 4.5"))
    return rows


def _gpu_rows(be, pool, pos, method, ref, t_cpu, t_plain, repeats) -> list:
    """GPU rows: host patches, and patches already on the device, against the CPU kernel."""
    n = pos.shape[0]

    def run(src):
        out = _run_stitch(src, pos, method, be)
        be.synchronize()
        return out

    (_, res), dt = _best(run, repeats, pool)
    dev_pool = be.asarray(pool)
    _, dtd = _best(run, repeats, dev_pool)
    err = float(np.max(np.abs(res.image - ref.image)) / max(float(np.max(np.abs(ref.image))), 1e-30))
    shape = "x".join(map(str, res.shape))
    return [dict(section="stitching", case=f"stitch {method} ({be.label}, host patches)", n=n, canvas=shape,
                 seconds=dt, patches_per_s=n / dt, peak_extra_mib=float("nan"),
                 note=f"{t_cpu / dt:.2f}x the CPU kernel, {t_plain / dt:.2f}x the plain loop; "
                      f"max rel. diff to the CPU {err:.1e}"),
            dict(section="stitching", case=f"stitch {method} ({be.label}, patches on the device)", n=n,
                 canvas=shape, seconds=dtd, patches_per_s=n / dtd, peak_extra_mib=float("nan"),
                 note=f"{t_cpu / dtd:.2f}x the CPU kernel (no host-to-device copy)")]


def _bench_model(N: int = 64):
    """A small conv encoder-decoder on N x N x 1 inputs (Baseline-like shape)."""
    from .inference.backends import import_keras

    keras = import_keras()

    keras.utils.set_random_seed(0)
    x = keras.Input((N, N, 1), name="input")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.UpSampling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.UpSampling2D()(h)
    return keras.Model(x, keras.layers.Conv2D(1, 3, padding="same", name="amplitude")(h))


def _write_npy_chunked(path, n: int, N: int, chunk: int = 4096, seed: int = 0) -> None:
    """Write an (n, N, N, 1) float32 .npy chunk by chunk (never the whole array in memory)."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (n, N, N, 1)})
        for s in range(0, n, chunk):
            rng.random((min(chunk, n - s), N, N, 1), dtype=np.float32).tofile(fh)


def _peak_rss(fn, interval: float = 0.02):
    """Run ``fn()``; return (result, peak RSS bytes sampled every ``interval`` s in a thread)."""
    import threading

    import psutil

    proc, peak, done = psutil.Process(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(interval)

    t = threading.Thread(target=sample, daemon=True)
    peak[0] = proc.memory_info().rss
    t.start()
    try:
        out = fn()
    finally:
        done.set()
        t.join()
    return out, max(peak[0], proc.memory_info().rss)


def _inference_child(path: str, N: int, batch_size: int) -> dict:
    """Stream ``path`` through the bench model in this (fresh) process; time it and sample RSS."""
    import psutil

    from .inference.runtime import RuntimeConfig
    from .inference.streaming import run_inference

    model = _bench_model(N)
    rt = RuntimeConfig(batch_size=batch_size)
    run_inference(model, np.zeros((batch_size + 7, N, N, 1), np.float32), rt,
                  consumers=[lambda o, s: None], progress=False)  # trace both batch shapes
    base = psutil.Process().memory_info().rss
    (_, dt), peak = _peak_rss(
        lambda: _timed(run_inference, model, path, rt, consumers=[lambda o, s: None], progress=False))
    return {"seconds": dt, "peak_rss": peak, "base_rss": base, "load": os.getloadavg()[0]}


def bench_inference(quick: bool = False, N: int = 64, batch_size: int = 256,
                    n_mem: int = 20000, big_bytes: float = 4e9, repeats: int = 2) -> list:
    """Streaming inference (:func:`ptyanalysis.inference.run_inference`) against ``model.predict``.

    Parameters
    ----------
    quick : bool
        Small sizes (2,000 in memory, a 128 MiB split), one repeat.
    N : int
        Input size (N x N x 1 float32).
    batch_size : int
        Batch size of both paths.
    n_mem : int
        Samples of the in-memory comparison (``model.predict`` on an array vs
        streaming the same samples from a ``.npy`` on disk, stats on, outputs
        to a consumer that drops them); best of ``repeats`` each, interleaved.
    big_bytes : float
        Size of the large split (float32 inputs, written chunk-wise to a temp
        dir); streamed once, with peak RSS sampled by psutil every 20 ms in a
        thread (target < 1.5 GB).
    repeats : int

    Returns
    -------
    list of dict
        Rows as in :func:`bench_stitching`; ``patches_per_s`` holds samples/s
        and ``peak_extra_mib`` the peak RSS of the process (MiB) where measured.
    """
    import tempfile

    from .inference.backends import executor_for
    from .inference.loading import load_model
    from .inference.runtime import RuntimeConfig
    from .inference.streaming import run_inference

    if quick:
        n_mem, big_bytes, repeats = 2000, 2**27, 1
    per = N * N * 4
    n_big = int(big_bytes // per)
    model = _bench_model(N)
    rt = RuntimeConfig(batch_size=batch_size)
    ex = executor_for(load_model(model))
    dev = f"{ex.name}, {'GPU' if any(d.startswith('gpu') for d in ex.devices()) else 'CPU'}"
    rows = []

    def drop(outs, start):
        pass

    with tempfile.TemporaryDirectory(prefix="ptyanalysis-bench-") as tmp:
        small = Path(tmp) / "split_small.npy"
        big = Path(tmp) / "split_big.npy"
        _write_npy_chunked(small, n_mem, N)
        x_mem = np.load(small)
        # warm-up: trace / compile both paths (full and partial batch shapes)
        model.predict(x_mem[: batch_size + 7], batch_size=batch_size, verbose=0)
        run_inference(model, x_mem[: batch_size + 7], rt, consumers=[drop], progress=False)
        t_pred, t_stream = [], []
        for _ in range(max(1, repeats)):
            t_pred.append(_timed(model.predict, x_mem, batch_size=batch_size, verbose=0)[1])
            res, dt = _timed(run_inference, model, small, rt, consumers=[drop], progress=False)
            t_stream.append(dt)
        tp, ts = min(t_pred), min(t_stream)
        rows.append(dict(section="inference", case=f"model.predict in memory ({dev})", n=n_mem,
                         canvas=f"{N}x{N}x1", seconds=tp, patches_per_s=n_mem / tp,
                         peak_extra_mib=float("nan"), note=f"batch {batch_size}; best of {repeats}"))
        rows.append(dict(section="inference", case=f"run_inference .npy stream ({dev})", n=n_mem,
                         canvas=f"{N}x{N}x1", seconds=ts, patches_per_s=n_mem / ts,
                         peak_extra_mib=float("nan"),
                         note=f"{tp / ts:.2f}x predict throughput (target >= 0.9); stats on; "
                              f"device {res.runtime['device']}"))
        del x_mem
        _write_npy_chunked(big, n_big, N)
        # The large run goes to a fresh process so that its peak RSS is the streaming
        # run's own (this process still holds what the in-memory comparison allocated).
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            child = ex.submit(_inference_child, str(big), N, batch_size).result()
        dt, peak = child["seconds"], child["peak_rss"]
        rows.append(dict(section="inference", case=f"run_inference {big_bytes / 1e9:.2g} GB split ({dev})",
                         n=n_big, canvas=f"{N}x{N}x1", seconds=dt, patches_per_s=n_big / dt,
                         peak_extra_mib=peak / 2**20,
                         note=f"fresh process: peak RSS {peak / 1e9:.2f} GB (psutil, 20 ms thread sampling; "
                              f"target < 1.5 GB), {child['base_rss'] / 1e9:.2f} GB before the run; "
                              f"{n_big / dt / (n_mem / tp):.2f}x the in-memory predict rate; split in page "
                              f"cache; load avg {child['load']:.1f}"))
    return rows


def bench_grid_section(quick: bool = False) -> list:
    """The study grid runner: sequential vs 2 Dask workers on cells of CPU-bound work.

    Wraps :func:`ptyanalysis.pipeline.grid.bench_grid` (4 cells of 5 s of pure-Python
    work each, or 2 s with ``quick``): the wall-time ratio parallel/sequential
    (target <= 0.65 on 2 cores), the runner's own overhead per cell outside
    papermill (target < 2 s) and the time to rerun the complete grid.
    """
    from .pipeline.grid import bench_grid

    r = bench_grid(work_s=2.0 if quick else 5.0, n_cells=4, workers=2, kind="cpu")
    return [dict(section="grid", case="4 cells, sequential vs 2 Dask workers", n=4, canvas="",
                 seconds=r["parallel_s"], patches_per_s=float("nan"), peak_extra_mib=float("nan"),
                 note=(f"{r['ratio']:.2f}x sequential ({r['sequential_s']:.1f} s -> {r['parallel_s']:.1f} s; "
                       f"target <= 0.65); runner overhead/cell mean {r['overhead_s_mean']:.3f} s, "
                       f"max {r['overhead_s_max']:.3f} s (target < 2 s); rerun of complete grid "
                       f"{r['resume_s']:.2f} s"))]


def _comparison_loads(results) -> dict:
    """Model loads and reuses recorded in each cell's ``comparison.nc`` (``arm_details[arm].model_load``)."""
    import xarray as xr

    out = {"loads": 0, "hits": 0, "load_s": 0.0, "saved_s": 0.0}
    for r in results:
        with xr.open_dataset(r.output_dir / "comparison.nc", engine="h5netcdf") as ds:
            details = json.loads(ds.attrs["arm_details"])
        for d in details.values():
            ml = d.get("model_load")
            if ml:
                out["hits" if ml["cached"] else "loads"] += 1
                out["saved_s" if ml["cached"] else "load_s"] += float(ml["load_s"])
    return out


def _study_train_child(hub: str, steps: int) -> None:
    """Train a study-size hub's networks for ``steps`` steps and run a 3-pass iterative arm (in a fresh process).

    The benchmark measures the comparison job, not training: the study preset's 100 rPIE passes
    per split would take most of an hour on 2 cores, and the job only needs an iterative result.
    """
    import contextlib
    import io
    from dataclasses import replace

    from .synthetic import training

    config = replace(training.TRAIN_CONFIGS["study"], baseline_steps=steps, pinn_steps=steps, iterations=3)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        training.train_study(hub, config)


def _study_job_child(hub: str, dose: float, view: str, split: str) -> dict:
    """Run one comparison job in a fresh process; its time and the process's peak RSS (VmHWM)."""
    import resource

    from .pipeline.compare import compare_job

    t = time.perf_counter()
    ds = compare_job(hub, dose, view, split)
    details = json.loads(ds.attrs["arm_details"])
    return {"seconds": time.perf_counter() - t, "status": {str(a): str(s) for a, s in zip(ds["arm"].values, ds["status"].values)},
            "batching": {a: (d["batching"]["batch_size"], d["batching"]["chunk"]) for a, d in details.items()
                         if d.get("batching")},
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def _matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 rate now: the best of ``repeats`` n x n matrix products (BLAS, every core), GFLOP/s.

    The practical peak a compute-bound float32 workload (a convolutional network's inference) can reach.
    """
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b  # warm: threads started, pages touched
    return 2.0 * n**3 / min(_timed(np.matmul, a, b)[1] for _ in range(repeats)) / 1e9


def _op_flops(op) -> float:
    """FLOPs of a transposed convolution or an einsum, from its static shapes (ops TensorFlow's profiler leaves out)."""
    if op.type == "Conv2DBackpropInput":  # each value of the gradient input scatters a kh x kw x C_out window
        kh, kw, c_out, _ = (int(v) for v in op.inputs[1].shape)
        return 2.0 * float(np.prod([int(v) for v in op.inputs[2].shape])) * kh * kw * c_out
    lhs = op.get_attr("equation").decode().replace(" ", "").split("->")[0].split(",")
    dims = {}
    for letters, t in zip(lhs, op.inputs):
        dims.update({c: int(v) for c, v in zip(letters, t.shape)})
    return 2.0 * float(np.prod(list(dims.values())))


def _graph_flops(model, input_shapes) -> float:
    """Floating-point operations of one call of a Keras model on one sample, from its traced TensorFlow graph.

    TensorFlow's profiler counts the operations TensorFlow registers a cost for (convolutions, matrix
    products, bias adds, pooling); transposed convolutions and einsums, which it leaves out, are counted
    from their shapes (:func:`_op_flops`). Elementwise work is not counted: a lower bound on the call's work.
    """
    import tensorflow as tf

    specs = [tf.TensorSpec((1,) + tuple(int(v) for v in s[1:]), tf.float32) for s in input_shapes]
    graph = tf.function(lambda *xs: model(list(xs), training=False)).get_concrete_function(*specs).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    prof = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=opts)
    counted = {c.name for c in prof.children if c.total_float_ops}
    extra = sum(_op_flops(op) for op in graph.get_operations()
                if op.type in ("Conv2DBackpropInput", "Einsum") and op.type not in counted)
    return float(prof.total_float_ops) + extra


def _study_floor_child(hub: str, doses, views, splits) -> dict:
    """The model FLOPs of the study grid's cells (in a fresh process: TensorFlow is imported to trace the models).

    Each network arm of a cell runs its model on one sample per pattern of the cell's view of the split
    (a PtychoPINN group is seeded at every pattern; the Baseline takes each pattern); the iterative arm is
    read from its file.
    """
    from . import hub as H
    from .inference.loading import load_model

    per_model, total, samples = {}, 0.0, {"PtychoPINN": 0, "Baseline": 0}
    for dose in doses:
        views_idx = H.load_views(hub, dose)
        for view in views:
            for split in splits:
                n = len(views_idx[view][split])
                for arm in samples:
                    path = H.model_dir(hub, dose, arm, view)
                    if (arm, path) not in per_model:
                        loaded = load_model(path)
                        per_model[arm, path] = _graph_flops(loaded.model, loaded.input_shapes)
                    total += per_model[arm, path] * n
                    samples[arm] += n
    per_sample = {arm: max(v for (a, _), v in per_model.items() if a == arm) / 1e9 for arm in samples}
    return {"flops": total, "samples": samples, "gflop_per_sample": per_sample}


#: Where the models section keeps its prepared study-size hub between runs (``--study-hub`` overrides it).
STUDY_HUB_ENV = "PTYANALYSIS_BENCH_STUDY_HUB"
#: The record of a prepared study hub: what made it and what preparing it cost.
STUDY_STAMP = "bench_prepared.json"


def default_study_hub() -> Path:
    """``$PTYANALYSIS_BENCH_STUDY_HUB``, else ``$XDG_CACHE_HOME/ptyanalysis/bench_study_hub`` (``~/.cache``)."""
    if os.environ.get(STUDY_HUB_ENV):
        return Path(os.environ[STUDY_HUB_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "ptyanalysis" / "bench_study_hub"


def prepare_study_hub(study, steps: int, doses=(1000, 10000, 100000), *, say=print) -> dict:
    """The study-size hub the models section measures on: reused when its record matches, else made anew.

    The hub is ``simulate --size study`` at ``doses``, its networks trained for ``steps`` steps and a
    3-pass iterative arm (:func:`_study_train_child`). It is prepared in a temporary folder next to
    ``study`` and swapped in only when complete, with :data:`STUDY_STAMP` recording the doses, steps,
    ptyanalysis version and the seconds each step took; a later run whose request matches that record
    reuses the hub and reports what preparing it cost.

    Parameters
    ----------
    study : str or Path
    steps : int
    doses : sequence of float
    say : callable

    Returns
    -------
    dict
        The record, with ``reused`` (bool).
    """
    import subprocess
    from concurrent.futures import ProcessPoolExecutor

    from . import __version__
    from .fileutil import atomic_dir, write_json

    study = Path(study)
    want = {"size": "study", "doses": [float(d) for d in doses], "steps": int(steps), "iterations": 3,
            "ptyanalysis": __version__}
    try:
        have = json.loads((study / STUDY_STAMP).read_text())
    except (OSError, ValueError):
        have = None
    if have and {k: have.get(k) for k in want} == want and (study / "study.json").is_file():
        return {**have, "reused": True}
    say(f"bench: preparing the study-size hub in {study} (simulate {len(want['doses'])} doses, train {steps} "
        "steps, 3 rPIE passes); later runs reuse it")
    cli = [sys.executable, "-m", "ptyanalysis.cli"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with atomic_dir(study) as tmp:
        t = time.perf_counter()
        subprocess.run(cli + ["simulate", str(tmp), "--size", "study", "--doses", *map(str, doses)], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        simulate_s = time.perf_counter() - t
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no forked threads, honest peak RSS
        with ProcessPoolExecutor(1, mp_context=spawn) as ex:  # networks for `steps` steps, 3 rPIE passes
            ex.submit(_study_train_child, str(tmp), steps).result()
        train_s = time.perf_counter() - t - simulate_s
        record = {**want, "simulate_s": round(simulate_s, 1), "train_and_iterative_s": round(train_s, 1),
                  "prepared_s": round(simulate_s + train_s, 1), "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                              time.gmtime())}
        write_json(tmp / STUDY_STAMP, record)
    return {**record, "reused": False}


def _bench_study(study, steps: int) -> list:
    """One study-size comparison job in a fresh process, then the 12-cell study-size comparison grid.

    The hub (:func:`prepare_study_hub`, kept between runs) is ``simulate --size study`` (three doses), its
    networks trained for ``steps`` steps and a 3-pass iterative arm; the job and the grid measure comparison,
    not training, and their cost does not depend on how well the networks are trained.
    """
    from concurrent.futures import ProcessPoolExecutor

    from .pipeline import grid as G
    from .pipeline.notebook import template_path

    doses = [1000, 10000, 100000]
    prep = prepare_study_hub(study, steps, doses)
    prep_text = (f"study hub {'reused' if prep['reused'] else 'prepared now'} ({study}; preparing it took "
                 f"{prep['prepared_s']:.0f} s: simulate {prep['simulate_s']:.0f} s, train {steps} steps + 3 rPIE "
                 f"passes {prep['train_and_iterative_s']:.0f} s)")
    spawn = multiprocessing.get_context("spawn")
    rate_before = _matmul_gflops()  # the machine's float32 rate, quiet, before the grid (again after it)
    with ProcessPoolExecutor(1, mp_context=spawn) as ex:
        job = ex.submit(_study_job_child, str(study), 1000.0, "dense", "test").result()
    rows = [dict(section="models", case="study-size comparison job (dose 1000, dense, test)", n=1,
                 canvas="", seconds=job["seconds"], patches_per_s=float("nan"),
                 peak_extra_mib=job["peak_rss_mib"],
                 note=f"peak RSS {job['peak_rss_mib'] * 2**20 / 1e9:.2f} GB = {job['peak_rss_mib'] / 1024:.2f} GiB "
                      f"(target <= 2 GB); batching {job['batching']}; arms {job['status']}; {prep_text}")]
    spec = G.spec_from_dict({"hub": str(study), "notebook": str(template_path("00_compare_arms")), "doses": doses,
                             "views": ["dense", "sparse"], "splits": ["train", "test"], "retries": 0,
                             "outputs": ["comparison_metrics.csv", "comparison.nc"]}, source="bench_models study")
    r = G.run_grid(spec, force=True, workers=2)
    if not r.ok:
        raise RuntimeError(f"the study-size grid failed; nothing measured:\n{r.table()}")
    peaks = [x.peak_rss_bytes or 0 for x in r.results]
    loads = _comparison_loads(r.results)
    plan = (json.loads(r.manifest_path.read_text()).get("memory") if r.manifest_path else None) or {}
    rows.append(dict(section="models", case="study-size comparison grid, 12 cells, 2 workers", n=len(r.results),
                     canvas="", seconds=r.wall_s, patches_per_s=float("nan"), peak_extra_mib=max(peaks) / 2**20,
                     note=f"{r.wall_s / 60:.1f} min (target <= 6 min on 2 cores); {len(r.results)} cells ok; "
                          f"memory plan: {plan.get('workers')} of {plan.get('requested_workers')} workers, "
                          f"largest estimate {plan.get('max_cell_bytes', 0) / 1e9:.2f} GB, budget "
                          f"{plan.get('budget_bytes', 0) / 1e9:.1f} GB; largest cell peak RSS "
                          f"{max(peaks) / 1e9:.2f} GB; {loads['loads']} model loads, {loads['hits']} reused"))
    rate_after = _matmul_gflops()
    with ProcessPoolExecutor(1, mp_context=spawn) as ex:
        fl = ex.submit(_study_floor_child, str(study), doses, ["dense", "sparse"], ["train", "test"]).result()
    rate = max(rate_before, rate_after)  # the practical peak: the best seen (a busy moment only lowers it)
    floor_s = fl["flops"] / (rate * 1e9)
    per = ", ".join(f"{a} {v:.2f} GFLOP per sample x {fl['samples'][a]:,}" for a, v in fl["gflop_per_sample"].items())
    rows.append(dict(section="models", case="study-size grid: compute floor", n=len(r.results), canvas="",
                     seconds=floor_s, patches_per_s=float("nan"), peak_extra_mib=float("nan"),
                     note=f"{fl['flops'] / 1e12:.0f} TFLOP of model inference ({per}; TensorFlow's profiler) at "
                          f"{rate:.0f} GFLOP/s (float32 matrix product, every core; the best of {rate_before:.0f} before the "
                          f"grid and {rate_after:.0f} after it) = "
                          f"{floor_s / 60:.1f} min: no schedule runs the grid faster; the grid took "
                          f"{r.wall_s / floor_s:.2f}x the floor"))
    return rows


def bench_models(quick: bool = False, hub=None, study_steps: int = 5, study_hub=None) -> list:
    """Model reuse across the comparison grid's cells, and one study-size comparison job.

    1. The ci comparison grid (12 cells of ``notebooks/00_compare_arms.ipynb``,
       2 LocalCluster workers) run twice on the same trained hub: each worker
       reusing one kernel (models loaded once per worker, from the comparison
       job's model cache), then a fresh kernel per cell. Reports the model
       loads and reuses recorded by the jobs, the load time saved, and the
       wall time of both runs. The hub is ``PTYANALYSIS_CI_HUB`` (or ``hub``),
       else a ci study is trained in a temporary folder (a few minutes).
    2. At the study's size (``simulate --size study``, three doses, the networks trained
       for ``study_steps`` steps and a 3-pass iterative arm; :func:`_bench_study`): one
       comparison job (dose 1000 / dense / test) in a fresh process, its time and peak RSS
       (target <= 2 GB), then the 12-cell comparison grid on 2 workers with its memory plan
       (target <= 6 minutes on 2 cores), and the grid's compute floor (its cells' model FLOPs at
       the float32 rate of a matrix product measured in the same run). The prepared hub is kept in ``study_hub`` (default
       :func:`default_study_hub`) and reused by later runs (:func:`prepare_study_hub`). Skipped with
       ``quick``.
    """
    import shutil
    import tempfile

    from .pipeline import grid as G

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="ptyanalysis-bench-models-"))
    try:
        src = hub or os.environ.get("PTYANALYSIS_CI_HUB")
        ci = tmp / "ci_hub"
        if src:
            shutil.copytree(src, ci, ignore=shutil.ignore_patterns("analysis"))
        else:
            from .synthetic.demo import ensure_study

            ensure_study(ci, size="ci")
        from .pipeline.notebook import template_path

        nb = template_path("00_compare_arms")  # the package's own template: works after a plain pip install
        spec = G.spec_from_dict({"hub": str(ci), "notebook": str(nb), "doses": [1000, 10000, 100000],
                                 "views": ["dense", "sparse"], "splits": ["train", "test"], "retries": 0,
                                 "outputs": ["comparison_metrics.csv", "comparison.nc"]}, source="bench_models")
        runs = {}
        for name, reuse in (("reused kernel per worker", True), ("fresh kernel per cell", False)):
            r = G.run_grid(spec, force=True, workers=2, reuse_kernel=reuse)
            if not r.ok:
                raise RuntimeError(f"the ci grid failed ({name}); nothing measured:\n{r.table()}")
            runs[name] = (r, _comparison_loads(r.results))
        (ra, la), (rb, lb) = runs["reused kernel per worker"], runs["fresh kernel per cell"]
        for name, (r, ld) in runs.items():
            peak = max((x.peak_rss_bytes or 0) for x in r.results) / 2**20
            rows.append(dict(section="models", case=f"ci grid 12 cells, {name}", n=12, canvas="", seconds=r.wall_s,
                             patches_per_s=float("nan"), peak_extra_mib=peak,
                             note=f"{ld['loads']} model loads ({ld['load_s']:.1f} s), {ld['hits']} reused "
                                  f"(saving {ld['saved_s']:.1f} s of loading); largest cell peak RSS {peak:.0f} MiB"))
        rows.append(dict(section="models", case="ci grid: reuse vs fresh", n=12, canvas="", seconds=ra.wall_s,
                         patches_per_s=float("nan"), peak_extra_mib=float("nan"),
                         note=f"{ra.wall_s / rb.wall_s:.2f}x the fresh-kernel wall time; model loads "
                              f"{la['loads']} vs {lb['loads']} ({la['loads'] / max(lb['loads'], 1):.2f}x)"))
        if not quick:
            rows += _bench_study(study_hub or default_study_hub(), study_steps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


#: Named benchmark sections; each takes ``quick`` and returns a list of row dicts.
SECTIONS = {"stitching": bench_stitching, "inference": bench_inference, "grid": bench_grid_section,
            "models": bench_models}


def format_table(rows) -> str:
    """Render result rows as a fixed-width text table.

    Parameters
    ----------
    rows : list of dict

    Returns
    -------
    str
    """
    cols = ["section", "case", "n", "canvas", "seconds", "patches_per_s", "peak_extra_mib", "note"]
    heads = ["section", "case", "n", "canvas", "seconds", "patches/s", "peak MiB", "note"]

    def fmt(v):
        if isinstance(v, float):
            if v != v:
                return "-"
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c[i].ljust(widths[i]) for i in range(len(cols))) for c in cells]
    return "\n".join(out)


def machine_info() -> dict:
    """Where the numbers were measured."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "loadavg_at_start": load}


def main(argv=None) -> int:
    """Run the selected benchmark sections and print (and optionally save) the results.

    Parameters
    ----------
    argv : list of str, optional
        Benchmark options (default: ``sys.argv[1:]``; ``--help`` lists them).

    Returns
    -------
    int
    """
    parser = argparse.ArgumentParser(prog="python -m ptyanalysis.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS),
                        help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--study-hub", metavar="PATH",
                        help=f"where the models section keeps its prepared study-size hub (default "
                             f"${STUDY_HUB_ENV}, else ~/.cache/ptyanalysis/bench_study_hub)")
    args = parser.parse_args(argv)
    if args.study_hub:
        os.environ[STUDY_HUB_ENV] = str(Path(args.study_hub).resolve())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    info = machine_info()
    print(f"# {info}")
    rows = []
    for name in args.only or list(SECTIONS):
        rows += SECTIONS[name](quick=args.quick)
        print(format_table([r for r in rows if r["section"] == name]))
        print()
    if args.json:
        from .fileutil import write_json

        write_json(args.json, {"machine": info, "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU check: ``python -m ptyanalysis.gpu_check [--keras-backend jax|torch|both] [--n N] [--json PATH]``.

A prepared run for a GPU machine that has PyTorch, JAX or CuPy but no
TensorFlow: it needs only this package and Keras 3 on top of them, and never
imports TensorFlow (it checks, and fails if something did). It measures, in
one run:

1. **stitching** (n patches of 64 x 64 complex64 on the benchmark's dense
   scan, :mod:`ptyanalysis.bench`): the CPU kernel on every core against the
   GPU array backend that ``backend="auto"`` picks, with the patches on the
   host and already on the device, for each method, and the largest difference
   to the CPU result (relative to the image's largest value); each rate also as
   a fraction of the device's copy rate (patches on the device) or of the
   page-locked host-to-device rate (host patches), both measured in the same
   run (:func:`check_stitching`);
2. **inference**: the synthetic study network
   (:func:`ptyanalysis.synthetic.networks.build_models`, ``diffraction_to_obj``,
   random weights: a throughput check, not a reconstruction) run by the
   product's own runner (:func:`ptyanalysis.inference.run_inference`, what
   compare, bisect and the grid use) under Keras's JAX or PyTorch backend, on
   the GPU and on a CPU copy of it (checked to have run on the CPU), and the
   difference of their outputs on the same inputs; ``--keras-backend both``
   runs it under each in its own process and reports Keras-torch's rate over
   Keras-JAX's;
3. **inference + stitching**: network outputs stitched where they are on the
   GPU (the runner's device consumers, as compare does), against the outputs
   copied to the host and the CPU kernel.

``--dry-run-cpu`` runs the same code on the CPU (torch CPU tensors, or numpy
through :class:`~ptyanalysis.imaging.stitching.ArrayBackend`) at small sizes,
so the script is tested without a GPU; its figures are not GPU figures and are
labelled so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback

import numpy as np

#: Keras backends this check runs under (TensorFlow is what it is meant to do without).
KERAS_BACKENDS = ("jax", "torch")


def _row(section, case, n, seconds, note="", **extra) -> dict:
    return {"section": section, "case": case, "n": int(n), "seconds": float(seconds),
            "per_s": (n / seconds) if seconds > 0 else float("nan"), "note": note, **extra}


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def environment(be, keras_backend: str) -> dict:
    """Versions, devices, and what ``backend="auto"`` picks."""
    import numba

    from .imaging.stitching import _default_threads, gpu_backend

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
            "numba": numba.__version__, "cpu_threads": _default_threads(), "keras_backend": keras_backend,
            "array_backend": be.label}
    auto = gpu_backend()
    info["auto_backend"] = auto.label if auto is not None else "numpy"
    from .provenance import software_versions

    info.update(software_versions(("keras", "torch", "jax", "cupy-cuda13x", "cupy-cuda12x")))  # metadata: no import
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        info["gpu"] = sys.modules["torch"].cuda.get_device_name(0)
    elif be.name == "cupy":
        import cupy

        info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return info


#: Bytes a stitched 64 x 64 complex64 patch counts for the copy-rate comparison: its pixels
#: read once and added (written) once, as a device-to-device copy of the same bytes does.
_PATCH_BYTES = 64 * 64 * 8


def _fmt_rate(gbs: float) -> str:
    return "n/a" if not np.isfinite(gbs) else f"{gbs:.1f} GB/s"


def _ratio(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.2f}"


def _copy_rates(be, nbytes: int, repeats: int = 5) -> dict:
    """Reference rates on ``be``'s device, best of ``repeats`` (GB/s, 1e9 bytes).

    ``"device_copy"``: a copy of a complex64 buffer of ``nbytes`` within the
    device, counted as bytes read + written (``2 * nbytes`` per copy);
    ``"h2d_pinned"`` / ``"h2d_pageable"``: a copy of ``nbytes`` from page-locked
    / ordinary host memory to the device, counted once (bytes moved). Host
    backends (numpy, PyTorch on the CPU) copy within host memory, and have no
    host-to-device rates (NaN).
    """
    n = max(1, nbytes // 8)
    gpu = be.device != "cpu"

    def best(fn):
        fn()
        be.synchronize()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            be.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times)

    src = be.zeros((n,), np.complex64)
    dst = be.empty((n,), np.complex64)
    if be.name == "torch":
        t = best(lambda: dst.copy_(src))
    elif be.name == "cupy":
        t = best(lambda: be.xp.copyto(dst, src))
    else:
        t = best(lambda: np.copyto(dst, src))
    rates = {"device_copy": 2 * n * 8 / t / 1e9, "h2d_pinned": float("nan"), "h2d_pageable": float("nan")}
    if not gpu:
        return rates
    host = np.ones(n, np.complex64)  # pageable, touched
    if be.name == "torch":
        torch = be.xp
        pinned = torch.empty((n,), dtype=torch.complex64, pin_memory=True)
        pinned.numpy()[:] = 1
        rates["h2d_pinned"] = n * 8 / best(lambda: dst.copy_(pinned, non_blocking=True)) / 1e9
        th = torch.from_numpy(host)
        rates["h2d_pageable"] = n * 8 / best(lambda: dst.copy_(th)) / 1e9
    else:
        import cupyx

        pinned = cupyx.empty_pinned((n,), np.complex64)
        pinned[:] = 1
        rates["h2d_pinned"] = n * 8 / best(lambda: dst.set(pinned)) / 1e9
        rates["h2d_pageable"] = n * 8 / best(lambda: dst.set(host)) / 1e9
    return rates


def _plain_index_add(be, dev_pool, pos, repeats: int = 3) -> dict:
    """Seconds of a plain scatter-add of the nearest stitch, flat indices precomputed on the device.

    The floor of what the package's nearest path does (no coverage, no
    normalisation, no per-chunk work, no copy back): the 64 x 64 patches of
    ``dev_pool``, cycled, added at their rounded positions with one
    ``index_add_`` per 4,096 patches, into a complex accumulator
    (``"complex"``, one index per pixel) and into its (re, im) real view
    (``"real"``, rows of two floats). CuPy: ``cupyx.scatter_add`` on the real
    view only. Best of ``repeats``, waited for.
    """
    n, N = pos.shape[0], dev_pool.shape[1]
    tl = np.rint(pos).astype(np.int64) - N // 2
    tl -= tl.min(axis=0)
    H, W = (tl.max(axis=0) + N).tolist()
    grid = (np.arange(N)[:, None] * W + np.arange(N)[None, :]).reshape(-1)
    idx = be.asarray((tl[:, 0] * W + tl[:, 1])[:, None] + grid[None, :], np.int64)  # (n, N * N)
    acc = be.zeros((H * W,), np.complex64)
    chunk = min(4096, dev_pool.shape[0])

    def plain(real: bool):
        for s in range(0, n, chunk):
            k = min(chunk, n - s)
            ix, v = idx[s:s + k].reshape(-1), dev_pool[:k].reshape(-1)
            if be.name == "torch":
                if real:
                    be.xp.view_as_real(acc).index_add_(0, ix, be.xp.view_as_real(v))
                else:
                    acc.index_add_(0, ix, v)
            else:
                be.scatter_add(acc, ix, v)

    out = {}
    for kind in (("complex", "real") if be.name == "torch" else ("real",)):
        plain(kind == "real")
        be.synchronize()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            plain(kind == "real")
            be.synchronize()
            times.append(time.perf_counter() - t0)
        out[kind] = min(times)
    return out


def check_stitching(be, n: int, repeats: int = 3) -> list:
    """CPU kernel vs the array backend, host and device-resident patches, every method; and how near the hardware.

    For each method: the CPU kernel (reference), the array backend with the
    patches in host memory (numpy) and with them already on its device, each
    with its largest difference to the CPU result, patches/s, and two numeric
    fields that say how near the hardware it runs, measured against rates
    taken in the same run (:func:`_copy_rates`, reported in three extra rows
    for a GPU backend):

    * ``copy_rate_fraction`` (the device row): patches/s x 64 x 64 x 8 bytes x 2
      (each complex64 pixel read once and added (written) once) over the
      device's copy rate (a device-to-device copy of a 256 MiB complex64 buffer,
      bytes read + written). 1 would stitch at copy speed.
    * ``h2d_fraction`` (the host row): patches/s x 64 x 64 x 8 bytes (the bytes
      that must cross to the device) over the page-locked host-to-device copy
      rate. 1 would stitch as fast as the patches can be moved; NaN on a host
      backend.

    For a GPU backend one more row times the bilinear method's alternative
    split (four corner scatter-adds, ``_BILINEAR_CORNERS``) with the patches on
    the device, so the faster of the two can be chosen on that GPU, and two
    rows time a plain scatter-add of the nearest stitch with precomputed flat
    indices (:func:`_plain_index_add`), the floor the nearest path is measured
    against.

    Parameters
    ----------
    be : ArrayBackend
        The array backend checked (a GPU one, or a CPU one for a dry run or a test).
    n : int
        Patches stitched (64 x 64 complex64, cycled from a pool, on the benchmark's dense scan).
    repeats : int
        Timed runs per case (the best counts).

    Returns
    -------
    list of dict
        Rows (:func:`_row`): three per method (CPU kernel, host patches, patches
        on the device), then, for a GPU backend, the corner-scatter row, the
        plain scatter-add rows and the three reference rates.
    """
    from .bench import _best, _patch_pool, _run_stitch, dense_scan
    from .imaging import stitching

    pool = _patch_pool(64)
    pos = dense_scan(n)
    dev_pool = be.asarray(pool)
    gpu = be.device != "cpu"
    rates = _copy_rates(be, (256 << 20) if gpu else min(256 << 20, max(16 << 20, n * _PATCH_BYTES)),
                        repeats=5 if gpu else 2)
    dev_bytes, h2d = rates["device_copy"] * 1e9, rates["h2d_pinned"] * 1e9
    rows, extra = [], []
    for method in ("nearest", "bilinear", "fourier"):
        _run_stitch(pool[:64], pos[:64], method, "numpy")  # compile / warm up both
        _run_stitch(pool[:64], pos[:64], method, be)
        (_, ref), t_cpu = _best(_run_stitch, repeats, pool, pos, method, "numpy")

        def on_device(src, method=method):
            out = _run_stitch(src, pos, method, be)
            be.synchronize()
            return out

        (_, host), t_host = _best(on_device, repeats, pool)
        (_, dev), t_dev = _best(on_device, repeats, dev_pool)
        err_h, err_d = _rel_err(host.image, ref.image), _rel_err(dev.image, ref.image)
        cov = float(np.max(np.abs(dev.coverage - ref.coverage)))
        r_host, r_dev = n / t_host, n / t_dev
        copy_frac = r_dev * 2 * _PATCH_BYTES / dev_bytes
        h2d_frac = r_host * _PATCH_BYTES / h2d if np.isfinite(h2d) else float("nan")
        rows.append(_row("stitching", f"{method}: CPU kernel", n, t_cpu, "reference"))
        rows.append(_row("stitching", f"{method}: {be.label}, host patches", n, t_host,
                         f"{t_cpu / t_host:.2f}x the CPU; {r_host:,.0f} patches/s from the host = "
                         f"{r_host * _PATCH_BYTES / 1e9:.1f} GB/s moved, {_ratio(h2d_frac)} of the page-locked "
                         f"host-to-device rate; max rel. diff {err_h:.1e}",
                         max_rel_diff=err_h, h2d_fraction=h2d_frac))
        rows.append(_row("stitching", f"{method}: {be.label}, patches on the device", n, t_dev,
                         f"{t_cpu / t_dev:.2f}x the CPU; {r_dev:,.0f} patches/s on the device = "
                         f"{r_dev * 2 * _PATCH_BYTES / 1e9:.1f} GB/s read + written, {_ratio(copy_frac)} of the "
                         f"device copy rate; max rel. diff {err_d:.1e}; coverage diff {cov:.1e}",
                         max_rel_diff=err_d, copy_rate_fraction=copy_frac))
        if gpu and method == "bilinear":  # the alternative split, timed the same way
            keep = stitching._BILINEAR_CORNERS
            try:
                stitching._BILINEAR_CORNERS = not keep
                _run_stitch(pool[:64], pos[:64], method, be)
                (_, alt), t_alt = _best(on_device, repeats, dev_pool)
            finally:
                stitching._BILINEAR_CORNERS = keep
            err_a = _rel_err(alt.image, ref.image)
            frac_a = n / t_alt * 2 * _PATCH_BYTES / dev_bytes
            name = "four corner scatter-adds" if not keep else "one scatter-add of the split"
            extra.append(_row("stitching", f"{method} ({name}): {be.label}, patches on the device", n, t_alt,
                              f"{t_cpu / t_alt:.2f}x the CPU; {n / t_alt:,.0f} patches/s, {_ratio(frac_a)} of the "
                              f"device copy rate ({t_dev / t_alt:.2f}x the default); max rel. diff {err_a:.1e}",
                              max_rel_diff=err_a, copy_rate_fraction=frac_a))
    rows += extra
    if gpu:
        nb = 256 << 20
        t_near = next(r["seconds"] for r in rows if r["case"].startswith("nearest:") and "on the device" in r["case"])
        for kind, t in _plain_index_add(be, dev_pool, pos, repeats).items():
            rows.append(_row("stitching", f"reference: plain scatter-add of the nearest stitch, {kind} ({be.label})", n,
                             t, f"flat indices precomputed on the device, no coverage or copy back; the package's "
                             f"nearest (patches on the device) runs at {t / t_near:.2f} of this rate"))
        rows.append(_row("stitching", f"reference: device-to-device copy ({be.label})", 2 * nb,
                         2 * nb / rates["device_copy"] / 1e9,
                         f"{_fmt_rate(rates['device_copy'])} read + written (256 MiB complex64); "
                         "n = bytes, per s = bytes/s", gbs=rates["device_copy"]))
        for kind in ("pinned", "pageable"):
            g = rates[f"h2d_{kind}"]
            rows.append(_row("stitching", f"reference: host-to-device copy, {kind} ({be.label})", nb,
                             nb / g / 1e9 if np.isfinite(g) and g > 0 else float("nan"),
                             f"{_fmt_rate(g)} (256 MiB); n = bytes, per s = bytes/s", gbs=g))
    return rows


def _network(N: int, C: int):
    """The synthetic study network (random weights), or why it could not be built."""
    from .synthetic.networks import build_models

    return build_models(N, gridsize=round(C ** 0.5), input_rms=1.0)["diffraction_to_obj"]


def _inputs(n: int, N: int, C: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, N, N, C), dtype=np.float32)
    offs = rng.uniform(-4, 4, size=(n, 1, 2, C)).astype(np.float32)
    return x, offs


class _Last:
    """A device consumer that keeps only the last output (the runner then copies nothing to the host)."""

    def __init__(self):
        self.last = None

    def __call__(self, outs, start):
        self.last = outs[0]


def check_inference(be, keras_backend: str, n_dev: int, n_cpu: int, N: int = 64, C: int = 4,
                    batch: int = 256, device: str = "gpu") -> list:
    """The study network through the product's own runner on the device and on the CPU; then inference + stitching.

    Both runs use :func:`ptyanalysis.inference.run_inference`, as compare,
    bisect and the grid do. The CPU reference is a copy of the network built
    on the CPU (``keras.device("cpu")``) and run with ``device="cpu"``; its
    runtime record must say ``cpu:0`` (it is checked). The device run feeds a
    consumer that keeps nothing, so no output is copied to the host.
    """
    import keras

    from .bench import dense_scan
    from .imaging.stitching import Stitcher, scan_frame
    from .inference.backends import executor_for
    from .inference.loading import load_model
    from .inference.runtime import RuntimeConfig
    from .inference.streaming import predict, run_inference

    rows = []
    try:
        model = _network(N, C)
        label = f"synthetic study network diffraction_to_obj, N={N}, C={C}, {model.count_params():,} params"
    except Exception as exc:
        raise RuntimeError(f"the study network could not be built under Keras {keras_backend}: {exc}") from exc
    with keras.device("cpu"):
        cpu_model = _network(N, C)
    cpu_model.set_weights(model.get_weights())
    dev, cpu = load_model(model), load_model(cpu_model)
    rt_dev, rt_cpu = RuntimeConfig(batch_size=batch, device=device), RuntimeConfig(batch_size=batch, device="cpu")
    x, p = _inputs(max(n_dev, n_cpu, batch), N, C)

    def run(loaded, rt, n):
        keep = _Last()
        res = run_inference(loaded, [x[:n], p[:n]], rt, device_consumers=[keep], stats=False, progress=False)
        executor_for(loaded).wait(keep.last)  # asynchronous backends: the work is done when the last output is
        return res

    run(dev, rt_dev, 2 * batch)  # compile / capture both batch shapes
    run(cpu, rt_cpu, batch)
    res_dev, t_dev = _timed(run, dev, rt_dev, n_dev)
    res_cpu, t_cpu = _timed(run, cpu, rt_cpu, n_cpu)
    if res_cpu.runtime["device"] != "cpu:0":
        raise RuntimeError(f"the CPU reference ran on {res_cpu.runtime['device']}, not on the CPU")
    first = [x[:batch], p[:batch]]
    err = _rel_err(predict(dev, first, rt_dev)[0], predict(cpu, first, rt_cpu)[0])
    compiled = res_dev.runtime.get("compiled")
    rows.append(_row("inference", f"network on {res_dev.runtime['device']} ({keras_backend}, product runner)", n_dev,
                     t_dev, f"{label}; batch {batch}; {n_dev / t_dev / (n_cpu / t_cpu):.1f}x the CPU rate; "
                     f"max rel. diff to the CPU on batch 0: {err:.1e}" + (f"; {compiled}" if compiled else ""),
                     max_rel_diff=err, keras_backend=keras_backend, device=res_dev.runtime["device"]))
    rows.append(_row("inference", f"network on {res_cpu.runtime['device']} ({keras_backend}, product runner)",
                     n_cpu, t_cpu, "reference", keras_backend=keras_backend, device=res_cpu.runtime["device"]))
    # inference + stitching, as compare does it: outputs stitched where they are, or copied to the host first
    pos = dense_scan(n_dev)
    origin, shape = scan_frame(pos, N, method="bilinear")

    def pipeline(where):
        st = Stitcher(shape, origin, N, method="bilinear", backend=be if where == "device" else "numpy")

        def add(outs, start):
            st.add(outs[0][..., 0], pos[start:start + int(outs[0].shape[0])])

        hooks = {"device_consumers": [add]} if where == "device" else {"consumers": [add]}
        run_inference(dev, [x[:n_dev], p[:n_dev]], rt_dev, stats=False, progress=False, **hooks)
        be.synchronize()  # the stitcher's queue; it waited on the network outputs it used
        return st.result()

    pipeline("device")
    pipeline("host")  # both warm (the CPU kernel compiles at its first call)
    res_d, t_pd = _timed(pipeline, "device")
    res_h, t_ph = _timed(pipeline, "host")
    err = _rel_err(res_d.image, res_h.image)
    rows.append(_row("inference+stitching", f"network + stitch on the device ({be.label})", n_dev, t_pd,
                     f"{t_ph / t_pd:.2f}x the host-stitching pipeline; max rel. diff {err:.1e}",
                     max_rel_diff=err))
    rows.append(_row("inference+stitching", "network on the device, outputs to host, CPU kernel", n_dev, t_ph,
                     "reference"))
    return rows


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def format_rows(rows) -> str:
    """Fixed-width table of the result rows."""
    heads = ("section", "case", "n", "seconds", "per s", "note")
    cells = [(r["section"], r["case"], f"{r['n']:,}", f"{r['seconds']:.4g}", f"{r['per_s']:,.0f}", r["note"])
             for r in rows]
    w = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(heads)), "-" * (sum(w) + 2 * len(w))]
    return "\n".join(lines + ["  ".join(c[i].ljust(w[i]) for i in range(len(heads))) for c in cells])


def _child_inference(kb: str, args, tmp: str) -> tuple:
    """Run the inference section under Keras ``kb`` in a fresh process (the backend is process-wide)."""
    import json
    import subprocess

    out = os.path.join(tmp, f"inference_{kb}.json")
    cmd = [sys.executable, "-m", "ptyanalysis.gpu_check", "--keras-backend", kb, "--only", "inference",
           "--n-infer", str(args.n_infer), "--n-infer-cpu", str(args.n_infer_cpu), "--batch", str(args.batch),
           "--json", out] + (["--dry-run-cpu"] if args.dry_run_cpu else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": kb}, check=False)
    print(r.stdout, end="")
    if not os.path.exists(out):
        return [], [f"inference under {kb}: no result (rc {r.returncode}): {r.stderr.strip()[-500:]}"]
    res = json.loads(open(out).read())
    return res["rows"], [f"[{kb}] {f}" for f in res["failures"]]


def _backend_ratio(rows) -> list:
    """Keras-torch's device rate over Keras-JAX's, from the inference rows of one run."""
    rate = {r.get("keras_backend"): r["per_s"] for r in rows
            if r["section"] == "inference" and r.get("device", "").startswith(("gpu", "cpu")) and r["note"] != "reference"}
    if "torch" in rate and "jax" in rate and rate["jax"] > 0:
        q = rate["torch"] / rate["jax"]
        return [_row("inference", "Keras-torch / Keras-JAX on the device", 0, 0.0,
                     f"{q:.2f}x (target >= 0.6): torch {rate['torch']:,.0f}/s, jax {rate['jax']:,.0f}/s",
                     torch_over_jax=q)]
    return []


def main(argv=None) -> int:
    """Run the check; print the table; return 0 when every section ran and TensorFlow stayed out.

    Parameters
    ----------
    argv : list of str, optional
        Check options (default: ``sys.argv[1:]``; ``--help`` lists them).

    Returns
    -------
    int
        0 on success, 1 if a section failed or TensorFlow was imported, 2 without a GPU.
    """
    ap = argparse.ArgumentParser(prog="python -m ptyanalysis.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--keras-backend", choices=(*KERAS_BACKENDS, "both"), default=None,
                    help="Keras backend of the inference section; 'both' runs it under JAX and under PyTorch, each "
                         "in its own process, and reports their ratio (default: $KERAS_BACKEND if it is one of "
                         "these, else jax)")
    ap.add_argument("--only", choices=("stitching", "inference"), default=None, help="run one section")
    ap.add_argument("--n", type=int, default=20000, help="patches stitched (default 20,000)")
    ap.add_argument("--n-infer", type=int, default=8192, help="network inputs on the GPU (default 8,192)")
    ap.add_argument("--n-infer-cpu", type=int, default=512, help="network inputs on the CPU (default 512)")
    ap.add_argument("--batch", type=int, default=256, help="network batch size (default 256)")
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="no GPU: run the same code on the CPU at small sizes (a test, not GPU figures)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    env_kb = os.environ.get("KERAS_BACKEND")
    kb = args.keras_backend or (env_kb if env_kb in KERAS_BACKENDS else "jax")
    run_inference_here = args.only != "stitching" and kb != "both"
    if run_inference_here:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != kb:
            print(f"error: Keras is already imported with the {sys.modules['keras'].backend.backend()} backend",
                  file=sys.stderr)
            return 1
        if env_kb and env_kb != kb:
            print(f"note: KERAS_BACKEND={env_kb} replaced by {kb} for this check")
        os.environ["KERAS_BACKEND"] = kb
        try:
            import keras  # noqa: F401 - imported here, after the backend is set
        except ImportError as exc:
            print(f"error: Keras with the {kb} backend cannot be imported ({exc}); install keras==3.15.1 and "
                  f"{kb}, or choose --keras-backend", file=sys.stderr)
            return 1

    from .imaging.stitching import ArrayBackend, gpu_backend

    if args.dry_run_cpu:
        have_torch = importlib.util.find_spec("torch") is not None
        be = ArrayBackend("torch" if have_torch else "numpy", "cpu")
        device = "cpu"
        n, n_dev, n_cpu = min(args.n, 2000), min(args.n_infer, 512), min(args.n_infer_cpu, 256)
        repeats = 1
        print("DRY RUN on the CPU: the device path runs on CPU arrays; these are not GPU figures")
    else:
        be = gpu_backend()
        if be is None:
            print("no GPU usable by CuPy or PyTorch here; use --dry-run-cpu to exercise the code on the CPU",
                  file=sys.stderr)
            return 2
        device = "gpu"
        n, n_dev, n_cpu = args.n, args.n_infer, args.n_infer_cpu
        repeats = 3
    info = environment(be, kb)
    print(f"# {info}")
    sections = []
    if args.only != "inference":
        sections.append(("stitching", lambda: check_stitching(be, n, repeats)))
    if run_inference_here:
        sections.append(("inference", lambda: check_inference(be, kb, n_dev, n_cpu, batch=args.batch, device=device)))
    rows, failures = [], []
    for name, fn in sections:
        try:
            got = fn()
        except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            continue
        rows += got
        print(format_rows(got))
        print()
    if kb == "both" and args.only != "stitching":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="ptyanalysis-gpu-check-") as tmp:
            for child in ("jax", "torch"):
                got, bad = _child_inference(child, args, tmp)
                rows += got
                failures += bad
        ratio = _backend_ratio(rows)
        rows += ratio
        if ratio:
            print(format_rows(ratio))
    tf_imported = "tensorflow" in sys.modules
    info["tensorflow_imported"] = tf_imported
    print(f"TensorFlow imported: {tf_imported}")
    if tf_imported:
        failures.append("TensorFlow was imported (the GPU path must not need it)")
    for f in failures:
        print(f"FAILED {f}")
    if args.json:
        from .fileutil import write_json

        write_json(args.json, {"machine": info, "dry_run_cpu": bool(args.dry_run_cpu), "rows": rows,
                               "failures": failures})
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

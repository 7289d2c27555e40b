"""GPU check: ``python -m ptyanalysis.gpu_check [--keras-backend torch|jax] [--n N] [--json PATH]``.

A prepared run for a GPU machine that has PyTorch, JAX or CuPy but no
TensorFlow: it needs only this package and Keras 3 on top of them, and never
imports TensorFlow (it checks, and fails if something did). It measures, in
one run:

1. **stitching** (n patches of 64 x 64 complex64 on the benchmark's dense
   scan, :mod:`ptyanalysis.bench`): the CPU kernel on every core against the
   GPU array backend that ``backend="auto"`` picks, with the patches on the
   host and already on the device, for each method, and the largest difference
   to the CPU result (relative to the image's largest value);
2. **inference**: the synthetic study network
   (:func:`ptyanalysis.synthetic.networks.build_models`, ``diffraction_to_obj``,
   random weights: a throughput check, not a reconstruction) under Keras's
   PyTorch or JAX backend, on the GPU and on the CPU, and the difference of
   their outputs on the same inputs;
3. **inference + stitching**: network outputs stitched where they are on the
   GPU, against GPU inference followed by host copy and the CPU kernel.

``--dry-run-cpu`` runs the same code on the CPU (torch CPU tensors, or numpy
through :class:`~ptyanalysis.imaging.stitching.ArrayBackend` with Keras's
numpy backend) at small sizes, so the script is tested without a GPU; its
figures are not GPU figures and are labelled so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

import numpy as np

#: Keras backends this check runs under (TensorFlow is what it is meant to do without).
KERAS_BACKENDS = ("torch", "jax", "numpy")


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
    for mod in ("keras", "torch", "jax", "cupy"):
        if mod in sys.modules or mod == "keras":
            try:
                info[mod] = __import__(mod).__version__
            except ImportError:
                info[mod] = None
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        info["gpu"] = sys.modules["torch"].cuda.get_device_name(0)
    elif be.name == "cupy":
        import cupy

        info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return info


def check_stitching(be, n: int, repeats: int = 3) -> list:
    """CPU kernel vs the array backend, host and device-resident patches, every method."""
    from .bench import _best, _patch_pool, _run_stitch, dense_scan

    pool = _patch_pool(64)
    pos = dense_scan(n)
    dev_pool = be.asarray(pool)
    rows = []
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
        rows.append(_row("stitching", f"{method}: CPU kernel", n, t_cpu, "reference"))
        rows.append(_row("stitching", f"{method}: {be.label}, host patches", n, t_host,
                         f"{t_cpu / t_host:.2f}x the CPU; max rel. diff {err_h:.1e}", max_rel_diff=err_h))
        rows.append(_row("stitching", f"{method}: {be.label}, patches on the device", n, t_dev,
                         f"{t_cpu / t_dev:.2f}x the CPU; max rel. diff {err_d:.1e}; coverage diff {cov:.1e}",
                         max_rel_diff=err_d))
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


class _Runner:
    """Forward passes of one model on one device under the active Keras backend."""

    def __init__(self, model, keras_backend: str, device: str):
        self.model, self.kb, self.device = model, keras_backend, device
        if keras_backend == "jax":
            import jax

            self._dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            self._vars = (jax.device_put(tv, self._dev), jax.device_put(ntv, self._dev))

            @jax.jit
            def fwd(tv, ntv, x, p):
                return model.stateless_call(tv, ntv, [x, p], training=False)[0]

            self._fwd = fwd

    def to_device(self, a):
        if self.kb == "torch":
            import torch

            return torch.as_tensor(a, device=self.device)
        if self.kb == "jax":
            import jax

            return jax.device_put(a, self._dev)
        return a

    def __call__(self, x, p):
        """Outputs on the device (native arrays of the Keras backend)."""
        if self.kb == "torch":
            import torch

            with torch.no_grad():
                return self.model([x, p], training=False)
        if self.kb == "jax":
            return self._fwd(*self._vars, x, p)
        return self.model([x, p], training=False)

    def sync(self, y):
        if self.kb == "torch" and self.device != "cpu":
            import torch

            torch.cuda.synchronize()
        elif self.kb == "jax":
            y.block_until_ready()
        return y


def _to_numpy(y) -> np.ndarray:
    if hasattr(y, "detach"):
        return y.detach().cpu().numpy()
    return np.asarray(y)


def check_inference(be, keras_backend: str, n_dev: int, n_cpu: int, N: int = 64, C: int = 4,
                    batch: int = 256, device: str = "cuda") -> list:
    """Network throughput on the device and the CPU, their difference, and inference + stitching."""
    import keras

    from .bench import dense_scan
    from .imaging.stitching import Stitcher, scan_frame

    rows = []
    try:
        model = _network(N, C)
        label = f"synthetic study network diffraction_to_obj, N={N}, C={C}, {model.count_params():,} params"
    except Exception as exc:
        raise RuntimeError(f"the study network could not be built under Keras {keras_backend}: {exc}") from exc
    with keras.device("cpu"):
        cpu_model = _network(N, C)
    cpu_model.set_weights(model.get_weights())
    dev = _Runner(model, keras_backend, device)
    cpu = _Runner(cpu_model, keras_backend, "cpu")
    x, p = _inputs(max(n_dev, n_cpu), N, C)

    def run(r, n):
        outs = []
        for s in range(0, n, batch):
            outs.append(r(r.to_device(x[s:s + batch]), r.to_device(p[s:s + batch])))
        r.sync(outs[-1])
        return outs

    run(dev, 2 * batch)
    run(cpu, batch)
    outs_dev, t_dev = _timed(run, dev, n_dev)
    outs_cpu, t_cpu = _timed(run, cpu, n_cpu)
    err = _rel_err(_to_numpy(outs_dev[0]), _to_numpy(outs_cpu[0]))
    rows.append(_row("inference", f"network on {device} ({keras_backend})", n_dev, t_dev,
                     f"{label}; batch {batch}; {n_dev / t_dev / (n_cpu / t_cpu):.1f}x the CPU rate; "
                     f"max rel. diff to the CPU on batch 0: {err:.1e}", max_rel_diff=err))
    rows.append(_row("inference", f"network on cpu ({keras_backend})", n_cpu, t_cpu, "reference"))
    # inference + stitching: the outputs stitched where they are, or copied to the host first
    pos = dense_scan(n_dev)
    origin, shape = scan_frame(pos, N, method="bilinear")

    def pipeline(where):
        st = Stitcher(shape, origin, N, method="bilinear", backend=be if where == "device" else "numpy")
        for s in range(0, n_dev, batch):
            y = dev(dev.to_device(x[s:s + batch]), dev.to_device(p[s:s + batch]))
            st.add(y if where == "device" else _to_numpy(y), pos[s:s + y.shape[0]])  # y: device array
        be.synchronize()
        return st.result()

    pipeline("device")
    res_d, t_pd = _timed(pipeline, "device")
    res_h, t_ph = _timed(pipeline, "host")
    err = _rel_err(res_d.image, res_h.image)
    rows.append(_row("inference+stitching", f"network + stitch on {device} ({be.label})", n_dev, t_pd,
                     f"{t_ph / t_pd:.2f}x the host-stitching pipeline; max rel. diff {err:.1e}",
                     max_rel_diff=err))
    rows.append(_row("inference+stitching", f"network on {device}, outputs to host, CPU kernel", n_dev, t_ph,
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
    ap.add_argument("--keras-backend", choices=KERAS_BACKENDS, default=None,
                    help="Keras backend (default: $KERAS_BACKEND if it is one of these, else torch)")
    ap.add_argument("--n", type=int, default=20000, help="patches stitched (default 20,000)")
    ap.add_argument("--n-infer", type=int, default=8192, help="network inputs on the GPU (default 8,192)")
    ap.add_argument("--n-infer-cpu", type=int, default=512, help="network inputs on the CPU (default 512)")
    ap.add_argument("--batch", type=int, default=256, help="network batch size (default 256)")
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="no GPU: run the same code on the CPU at small sizes (a test, not GPU figures)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    env_kb = os.environ.get("KERAS_BACKEND")
    kb = args.keras_backend or (env_kb if env_kb in KERAS_BACKENDS else "torch")
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
              f"{'jax' if kb == 'numpy' else kb} (Keras's numpy backend needs jax), or choose --keras-backend",
              file=sys.stderr)
        return 1

    from .imaging.stitching import ArrayBackend, gpu_backend

    if args.dry_run_cpu:
        be = ArrayBackend("torch" if kb == "torch" else "numpy", "cpu")
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
        device = "cuda"
        n, n_dev, n_cpu = args.n, args.n_infer, args.n_infer_cpu
        repeats = 3
    info = environment(be, kb)
    print(f"# {info}")
    rows, failures = [], []
    for name, fn in (("stitching", lambda: check_stitching(be, n, repeats)),
                     ("inference", lambda: check_inference(be, kb, n_dev, n_cpu, batch=args.batch,
                                                           device=device))):
        try:
            got = fn()
        except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            continue
        rows += got
        print(format_rows(got))
        print()
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

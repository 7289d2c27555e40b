"""Streaming inference: the one runner of every model, on every backend and device.

Chunks are read (ahead, in a thread) and fed through the model into
consumers, with out-of-memory and rows-per-sample back-off and a runtime
record. Everything backend-specific (devices, compiling, moving arrays,
recognising out-of-memory, determinism) is the model's
:class:`~ptyanalysis.inference.backends.Executor`'s, so the same loop runs
TensorFlow, Keras-on-JAX, Keras-on-PyTorch and plain PyTorch models on the
CPU or a GPU.

Process-wide state: each model's compiled functions and the batch-size limit
an earlier run found (rows per sample) are cached on the model
(:class:`~ptyanalysis.inference.model.LoadedModel`, or weakly per raw model
object); :func:`clear_inference_caches` empties them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PtyAnalysisError
from ..fileutil import atomic_path
from ..inference.backends import executor_for
from ..inference.model import _as_loaded, _function_cache
from ..inference.runtime import RuntimeConfig
from ..inference.sources import _resolve_inputs
from ..inference.stats import _StatsAccumulator
from ..provenance import software_versions, utc_now
from ..state import clear_caches

#: The one logger of the inference subpackage.
log = logging.getLogger("ptyanalysis.inference")


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OOMEvent:
    """One out-of-memory on a batch: where, and the batch size before and after halving."""

    start: int
    batch_before: int
    batch_after: int
    error: str


@dataclass(frozen=True)
class RowsEvent:
    """One batch whose outputs did not have one row per sample: where, the batch size that gave
    them and the one tried next (half of it while halving; the next midpoint, or the size finally
    kept, while bisecting between the last good and first bad size: ``search`` says which), and
    each output's row count (None for a 0-d output)."""

    start: int
    batch_before: int
    batch_after: int
    rows: tuple
    search: str = "halving"

    def to_dict(self) -> dict:
        """Return the event as a JSON-safe dict."""
        return {"start": self.start, "batch_before": self.batch_before, "batch_after": self.batch_after,
                "rows": list(self.rows), "search": self.search}


@dataclass(frozen=True)
class InferenceResult:
    """What :func:`run_inference` returns.

    Attributes
    ----------
    outputs : list of np.ndarray or None
        Outputs in memory (only when neither consumers nor out_dir were given).
    output_names : list of str
    paths : dict or None
        ``{output name: .npy path}`` when ``out_dir`` was given.
    stats : dict or None
        ``{output name: OutputStats}``.
    runtime : dict
        Device used, batch sizes, jit/eager/dtype/determinism, versions,
        elapsed seconds, samples/s; ``batch_size_limit`` (the largest batch
        that gave one output row per sample, when a larger one did not; None
        otherwise), ``batch_size_limit_source`` (``"this run"`` or ``"an
        earlier run on this model"``) and ``row_mismatch_events``.
    oom_events : tuple of OOMEvent
    n_samples : int
    row_events : tuple of RowsEvent
        Batches whose outputs did not have one row per sample (rerun smaller).
    """

    outputs: list | None
    output_names: list
    paths: dict | None
    stats: dict | None
    runtime: dict
    oom_events: tuple
    n_samples: int
    row_events: tuple = ()

    def to_dict(self) -> dict:
        """JSON-safe summary (no arrays): runtime record, statistics, OOM events, paths."""
        return {
            "n_samples": self.n_samples,
            "output_names": list(self.output_names),
            "paths": {k: str(v) for k, v in (self.paths or {}).items()} or None,
            "stats": {k: v.to_dict() for k, v in (self.stats or {}).items()} or None,
            "runtime": dict(self.runtime),
            "oom_events": [e.__dict__.copy() for e in self.oom_events],
            "row_events": [e.to_dict() for e in self.row_events],
        }


class _ChunkReader:
    """Reads input chunks in order, optionally one chunk ahead in a thread."""

    def __init__(self, sources, n, prefetch):
        self.sources, self.n = sources, n
        self._buf = None
        self._buf_start = None
        self._future = None
        self._future_start = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ptyanalysis-read") if prefetch else None

    def _read(self, a, b):
        return [s.read(a, b) for s in self.sources]

    def take(self, pos, size):
        if self._buf is None or self._buf_start != pos:
            if self._future is not None and self._future_start == pos:
                self._buf = self._future.result()
            else:
                if self._future is not None:
                    self._future.result()
                self._buf = self._read(pos, min(pos + size, self.n))
            self._buf_start, self._future = pos, None
        if len(self._buf[0]) > size:
            out = [b[:size] for b in self._buf]
            self._buf = [b[size:] for b in self._buf]
            self._buf_start = pos + size
        else:
            out, self._buf = self._buf, None
        nxt = pos + len(out[0])
        if self._pool is not None and self._buf is None and self._future is None and nxt < self.n:
            self._future = self._pool.submit(self._read, nxt, min(nxt + size, self.n))
            self._future_start = nxt
        return out

    def unget(self, pos, arrays):
        self._buf, self._buf_start = arrays, pos

    def forget(self):
        """Drop the buffered samples: the next :meth:`take` reads them again (a prefetch is kept)."""
        self._buf, self._buf_start = None, None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def clear_inference_caches(model=None) -> None:
    """Forget compiled functions and remembered batch-size limits.

    Parameters
    ----------
    model : LoadedModel or model object, optional
        Only this model's (default: every raw model object's; a
        :class:`LoadedModel`'s caches go with it).
    """
    if model is None:
        clear_caches("compiled_functions")
    else:
        _function_cache(_as_loaded(model)).clear()


class _Progress:
    def __init__(self, n, enabled, desc):
        self.n, self.done, self.desc = n, 0, desc
        self._bar = None
        self._next_log = 0.1
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=n, unit="sample", desc=desc, leave=False)

    def update(self, k):
        self.done += k
        if self._bar is not None:
            self._bar.update(k)
        elif self.n and self.done / self.n >= self._next_log:
            log.info("%s: %d/%d samples (%.0f%%)", self.desc, self.done, self.n, 100 * self.done / self.n)
            while self._next_log <= self.done / self.n:
                self._next_log += 0.1

    def close(self):
        if self._bar is not None:
            self._bar.close()


def _row_counts(arrays) -> list:
    return [None if a.ndim == 0 else int(a.shape[0]) for a in arrays]


def _output_labels(loaded, k: int) -> list:
    return list(loaded.output_names) if len(loaded.output_names) == k else [f"output_{i}" for i in range(k)]


def _limit_key(sources) -> tuple:
    """Cache key of a model's rows-per-sample batch limit: the inputs' per-sample shapes."""
    return ("rows_batch_limit",) + tuple(tuple(int(d) for d in s.shape[1:]) for s in sources)


def known_batch_size_limit(model, inputs) -> int | None:
    """The largest batch size giving one output row per sample that an earlier run found on this model.

    Parameters
    ----------
    model : LoadedModel or keras.Model
    inputs : sequence of arrays (or anything with ``.shape``)
        Inputs in the model's order; only their per-sample shapes matter (the
        limit is remembered per per-sample input shapes, as the runs store it).

    Returns
    -------
    int or None
        None when no run on this model has needed to reduce the batch.
    """
    v = _function_cache(_as_loaded(model)).get(_limit_key(list(inputs)))
    return None if v is None else int(v)


def _stream(loaded, sources, runtime, on_chunk, *, progress, prefetch, record, desc="inference", host=True):
    """Core loop: read chunks, call the model, hand outputs to ``on_chunk(outs, start, native)``.

    ``outs`` are host numpy arrays; ``native`` the same outputs as the backend
    returned them (device arrays on a GPU), for consumers that use them where
    they are. With ``host=False`` nothing is copied to the host: ``outs`` are
    the native outputs too (a device-only pipeline).

    Returns ``(oom_events, row_events)``. A batch whose outputs do not have one
    row per sample is never handed on: with ``runtime.adapt_batch`` it is run
    again with half the batch until the rows match; then the sizes between
    that good size and the bad one above it are bisected on the same chunk
    (:func:`_largest_good_batch`), so the size kept is the largest that gives
    one row per sample (for a model that merges a call of >= 64 patches with
    4 patches per sample: 15, not the halving 8). That size is kept for the
    rest of the run and remembered on the model (later runs with the same
    per-sample input shapes start from it), with one notice.
    """
    ex = executor_for(loaded)
    device = ex.resolve_device(runtime.device, loaded)
    n = int(sources[0].shape[0]) if sources else 0
    events, row_events, sizes, devices, probes = [], [], [], [], []
    cast = np.dtype(runtime.dtype) if runtime.dtype else None
    bar = _Progress(n, progress, desc)
    reader = _ChunkReader(sources, n, prefetch)
    adapt = bool(getattr(runtime, "adapt_batch", True))
    cache = _function_cache(loaded)
    key = _limit_key(sources)
    limit, limit_source = None, None
    fn_info = {}
    if adapt and cache.get(key) is not None:
        limit, limit_source = int(cache[key]), "an earlier run on this model"
    t0 = time.perf_counter()
    try:
        with ex.scope(device, bool(runtime.deterministic), record):
            fkey = ("function", ex.name, device, bool(runtime.run_eagerly), bool(runtime.jit_compile))
            fn = cache.get(fkey)
            if fn is None:
                fn = cache[fkey] = ex.function(loaded, runtime, device)
            fn_info["describe"] = getattr(fn, "describe", lambda: None)
            bs, pos = int(runtime.batch_size), 0
            if limit is not None and limit < bs:
                log.info("%s: batch size %d (not %d): an earlier run on this model found that larger batches "
                         "do not give one output row per sample", loaded.source, limit, bs)
                bs = limit
            pending = None  # (rows seen, output, batch, chunk) of the last mismatch, until a batch matches

            def call(xs):
                outs = fn([x.astype(cast, copy=False) if cast is not None and x.dtype.kind == "f" else x
                           for x in xs])
                return outs, ([ex.to_numpy(o) for o in outs] if host else outs)

            def oom(exc):
                return ex.is_oom(exc) and not isinstance(exc, PtyAnalysisError)

            while pos < n:
                xs = reader.take(pos, bs)
                m = len(xs[0])
                try:
                    outs, arrays = call(xs)
                except Exception as exc:
                    if not oom(exc) or m <= 1:
                        raise
                    new = max(1, m // 2)
                    events.append(OOMEvent(pos, m, new, f"{type(exc).__name__}: {str(exc)[:300]}"))
                    log.warning("out of memory on a batch of %d at sample %d; retrying with %d", m, pos, new)
                    del exc
                    bs = new
                    reader.unget(pos, xs)
                    continue
                rows = _row_counts(arrays)
                bad = [i for i, r in enumerate(rows) if r != m]
                if bad:  # never hand on outputs whose rows do not match the samples (no broadcast)
                    names = _output_labels(loaded, len(arrays))
                    what = (f"model {loaded.source}: output {names[bad[0]]!r} has shape {arrays[bad[0]].shape} "
                            f"for a batch of {m} samples at sample {pos}")
                    if not adapt or m <= 1:
                        tried = ", ".join(str(e.batch_before) for e in row_events)
                        raise PtyAnalysisError(
                            what + "; every output needs one row per input sample (outputs per group member, "
                            "or aggregated outputs, cannot be matched to their inputs)"
                            + (f"; batches of {tried} and 1 were tried" if tried and m <= 1 else "")
                            + ("" if adapt else "; the run asked for this exact batch size (adapt_batch=False)")
                        )
                    new = m // 2
                    row_events.append(RowsEvent(pos, m, new, tuple(rows)))
                    log.debug("%s; retrying with %d", what, new)
                    pending = (rows[bad[0]], names[bad[0]], m, xs)
                    bs = new
                    reader.unget(pos, xs)
                    continue
                if pending is not None:  # the first matching batch after a mismatch: refine, then the new limit
                    good = m
                    m, outs, arrays = _largest_good_batch(call, pending[3], m, outs, arrays, pos=pos, oom=oom,
                                                          row_events=row_events, probes=probes)
                    if m > good:  # the buffered rest of the chunk is shorter than a batch now: read afresh
                        reader.forget()
                    bs = m
                    limit, limit_source = m, "this run"
                    cache[key] = m
                    log.warning(
                        "%s returned %s row(s) of %r for a batch of %d samples (it merges a batch into fewer "
                        "outputs; a PtychoPINN bundle merges a call of >= 64 patches, batch x gridsize^2, into "
                        "one); using batch size %d, the largest that gives one row per sample (found by halving "
                        "to %d, then bisecting up to %d), for the rest of the run (recorded as batch_size_limit; "
                        "pass a batch size of at most %d to skip the search)",
                        loaded.source, pending[0], pending[1], pending[2], m, good, pending[2] - 1, m)
                    pending = None
                dev = ex.device_of(outs[0]) if outs else None
                if dev and dev not in devices:
                    devices.append(dev)
                if m not in sizes:
                    sizes.append(m)
                on_chunk(arrays, pos, outs)
                pos += m
                bar.update(m)
    finally:
        reader.close()
        bar.close()
        for s in sources:
            s.close()
    elapsed = time.perf_counter() - t0
    record.update(
        device=devices[0] if devices else device, devices=devices, **ex.describe(),
        batch_sizes=sorted(sizes, reverse=True), elapsed_s=elapsed, host_copies=bool(host),
        compiled=fn_info.get("describe", lambda: None)(),
        samples_per_s=(n / elapsed) if elapsed > 0 else None, n_samples=n,
        batch_size_limit=limit, batch_size_limit_source=limit_source,
        row_mismatch_events=[e.to_dict() for e in row_events],
        batch_size_probes=probes,
    )
    return tuple(events), tuple(row_events)


def _largest_good_batch(call, chunk, good, outs, arrays, *, pos, oom, row_events, probes):
    """Bisect the batch sizes between ``good`` (one row per sample) and ``len(chunk)`` (not).

    ``oom(exc)`` tells whether an exception is an out-of-memory error. Each
    size is tried on the first samples of the same chunk (the one that
    gave the mismatch), so no sample is read twice and the probes see the
    same data. Returns ``(size, outs, arrays)``: the largest good size found
    and its outputs (the first ``size`` samples of the chunk, ready to hand
    on). A size that mismatches is a :class:`RowsEvent` with
    ``search="bisection"``; every probe is appended to ``probes`` as
    ``{"start", "batch", "one_row_per_sample"}`` (an out-of-memory probe
    counts as not usable, with ``"oom": True``). This assumes, as the halving
    does, that a size works when a larger one does.
    """
    lo, hi = int(good), len(chunk[0])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        xs = [x[:mid] for x in chunk]
        try:
            o, a = call(xs)
        except Exception as exc:
            if not oom(exc):
                raise
            probes.append({"start": int(pos), "batch": mid, "one_row_per_sample": False, "oom": True})
            hi = mid
            continue
        rows = _row_counts(a)
        ok = all(r == mid for r in rows)
        probes.append({"start": int(pos), "batch": mid, "one_row_per_sample": ok})
        if ok:
            lo, outs, arrays = mid, o, a
        else:
            hi = mid
            row_events.append(RowsEvent(int(pos), mid, (lo + hi) // 2 if hi - lo > 1 else lo, tuple(rows),
                                        "bisection"))
    return lo, outs, arrays


def _runtime_record(runtime: RuntimeConfig) -> dict:
    return {
        "requested_device": runtime.device,
        "batch_size": int(runtime.batch_size),
        "jit_compile": bool(runtime.jit_compile),
        "mode": "eager" if runtime.run_eagerly else "graph",
        "dtype": runtime.dtype,
        "deterministic": bool(runtime.deterministic),
        "adapt_batch": bool(getattr(runtime, "adapt_batch", True)),
    }


class _Collector:
    """Collects streamed outputs into preallocated arrays."""

    def __init__(self, n):
        self.n, self.arrays = n, None

    def __call__(self, outs, start, native=None):
        if self.arrays is None:
            self.arrays = [np.empty((self.n,) + o.shape[1:], dtype=o.dtype) for o in outs]
        for dst, o in zip(self.arrays, outs):
            dst[start:start + len(o)] = o


class _NpyWriter:
    """Writes one output as ``.npy`` sequentially, under a temporary name until done."""

    def __init__(self, path, n, stack: contextlib.ExitStack):
        self.path, self.n, self.stack = Path(path), n, stack
        self.fh = None
        self.written = 0

    def write(self, chunk, start):
        if self.fh is None:
            tmp = self.stack.enter_context(atomic_path(self.path))
            self.fh = self.stack.enter_context(open(tmp, "wb"))
            self.dtype, self.sample_shape = chunk.dtype, chunk.shape[1:]
            header = {"descr": np.lib.format.dtype_to_descr(chunk.dtype), "fortran_order": False,
                      "shape": (self.n,) + tuple(chunk.shape[1:])}
            try:
                np.lib.format.write_array_header_1_0(self.fh, header)
            except ValueError:
                np.lib.format.write_array_header_2_0(self.fh, header)
        if chunk.dtype != self.dtype or chunk.shape[1:] != self.sample_shape or start != self.written:
            raise PtyAnalysisError(
                f"output {self.path.stem}: chunk at {start} has shape {chunk.shape[1:]} / dtype "
                f"{chunk.dtype}, earlier chunks {self.sample_shape} / {self.dtype}"
            )
        self.fh.write(np.ascontiguousarray(chunk).data)
        self.written += len(chunk)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def run_inference(model, inputs, runtime: RuntimeConfig = RuntimeConfig(), *, consumers: Sequence = (),
                  device_consumers: Sequence = (), out_dir=None, out_names=None, progress=None,
                  stats: bool = True) -> InferenceResult:
    """Stream inputs through a model in chunks.

    Parameters
    ----------
    model : LoadedModel or keras.Model
    inputs : dict, list, array, or path
        ``{input name: array}`` (names must match the model's exactly), a
        list in input order, one array for a one-input model, or a path to an
        ``.npz`` (arrays named like the inputs) or ``.npy``. Arrays may be
        ``np.memmap`` and dict values may be ``.npy`` paths: file-backed
        inputs are read chunk by chunk. All inputs need the same sample count.
    runtime : RuntimeConfig
    consumers : sequence of callables
        Each is called as ``consumer(chunk_outputs, start)`` with the list of
        output arrays of samples ``start : start + len(chunk)``, in order.
    device_consumers : sequence of callables
        Called the same way with the outputs as the backend returned them
        (``torch`` tensors, JAX or TensorFlow arrays; on the device the model
        ran on), for consumers that use them where they are (e.g. a
        :class:`~ptyanalysis.imaging.stitching.Stitcher` on the GPU); the host
        copies still feed ``consumers`` and the statistics.
    out_dir : str or Path, optional
        Write each output to ``out_dir/<name>.npy`` (temporary name until the
        run succeeds).
    out_names : list of str, optional
        File names (without ``.npy``) of the outputs; default the model's
        output names.
    progress : bool, optional
        tqdm progress bar; default when stderr is a terminal, plain log lines
        (logger ``ptyanalysis.inference``, INFO) otherwise.
    stats : bool
        Keep running per-output statistics (:class:`OutputStats`).

    Returns
    -------
    InferenceResult
        Outputs are kept in memory only when neither ``consumers`` nor
        ``out_dir`` is given.

    Notes
    -----
    An output row is only ever paired with its own sample. A batch whose
    outputs have a row count different from its sample count (a model that
    merges a batch into fewer outputs, e.g. a PtychoPINN bundle given a call
    of >= 64 patches) is discarded and run again with half the samples, until
    the rows match; that batch size is used for the rest of the run, recorded
    in the runtime record (``batch_size_limit``, ``row_mismatch_events``),
    remembered on the model for later runs, and announced once (logger
    ``ptyanalysis.inference``, WARNING).

    Raises
    ------
    PtyAnalysisError
        Inputs that do not match the model, unavailable device, outputs
        without one row per sample even for a batch of one (or at all, with
        ``runtime.adapt_batch=False``).
    Exception
        The backend's out-of-memory error (``tf.errors.ResourceExhaustedError``,
        ``torch.cuda.OutOfMemoryError``, JAX's ``RESOURCE_EXHAUSTED``,
        ``MemoryError``) when even a batch of one sample runs out of memory
        (smaller batches are retried with half the size; each halving is recorded).
    """
    loaded = _as_loaded(model)
    sources = _resolve_inputs(loaded, inputs)
    n = int(sources[0].shape[0])
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    record = {"started": utc_now(), **_runtime_record(runtime)}
    versions = software_versions(("tensorflow", "jax", "torch", "keras", "numpy", "ptyanalysis"))
    record.update(tensorflow=versions.get("tensorflow"), keras=versions.get("keras"), versions=versions)

    accs: list | None = [] if stats else None
    collector = _Collector(n) if not consumers and not device_consumers and out_dir is None else None
    writers: list | None = None
    names_box: dict = {}

    with contextlib.ExitStack() as stack:
        def on_chunk(outs, start, native):
            nonlocal writers
            if "names" not in names_box:
                names = list(loaded.output_names) if len(loaded.output_names) == len(outs) else \
                    [f"output_{i}" for i in range(len(outs))]
                names_box["names"] = names
                if accs is not None:
                    accs.extend(_StatsAccumulator(nm) for nm in names)
                if out_dir is not None:
                    files = list(out_names) if out_names is not None else [_SAFE_NAME.sub("_", nm) for nm in names]
                    if len(files) != len(outs) or len(set(files)) != len(files):
                        raise PtyAnalysisError(
                            f"out_names {files} must give one unique name per output "
                            f"({len(outs)} outputs: {', '.join(names)})"
                        )
                    writers = [_NpyWriter(Path(out_dir) / f"{f}.npy", n, stack) for f in files]
            if accs is not None:
                for acc, o in zip(accs, outs):
                    acc.update(o, start)
            if writers is not None:
                for w, o in zip(writers, outs):
                    w.write(o, start)
            if collector is not None:
                collector(outs, start)
            for c in consumers:
                c(outs, start)
            for c in device_consumers:
                c(native, start)

        host = bool(accs is not None or collector is not None or out_dir is not None or consumers)
        events, row_events = _stream(loaded, sources, runtime, on_chunk, progress=progress, prefetch=True, host=host,
                                     record=record, desc=f"inference {Path(loaded.source).name}")
        for w in writers or ():
            if w.written != n:  # pragma: no cover - the loop covers every sample
                raise PtyAnalysisError(f"{w.path}: wrote {w.written} of {n} samples")
    names = names_box.get("names", list(loaded.output_names))
    record["oom_events"] = len(events)
    if n == 0:
        log.warning("run_inference: the inputs hold no samples")
    return InferenceResult(
        outputs=collector.arrays if collector is not None else None,
        output_names=names,
        paths={nm: w.path for nm, w in zip(names, writers)} if writers else None,
        stats={a.name: a.result(n) for a in accs} if accs is not None else None,
        runtime=record,
        oom_events=events,
        n_samples=n,
        row_events=row_events,
    )


def predict(model, inputs, runtime: RuntimeConfig = RuntimeConfig(), *, progress=None,
            record: dict | None = None) -> list:
    """Run a model on small in-memory inputs and return its outputs.

    The cheap path the diagnosis engines call repeatedly: no statistics, no
    runtime record, no read-ahead thread; the compiled function (per backend,
    device and jit flag) is built once per model and reused.

    Parameters
    ----------
    model : LoadedModel or keras.Model
    inputs : dict, list or array
        As for :func:`run_inference`.
    runtime : RuntimeConfig
    progress : bool, optional
        Show a tqdm bar (default: off; this is called in loops).
    record : dict, optional
        Filled with the run's runtime facts (batch sizes used,
        ``batch_size_limit``, ``row_mismatch_events``, device, seconds), as in
        :attr:`InferenceResult.runtime`.

    Returns
    -------
    list of np.ndarray
        One array per model output, in the model's output order; row ``i``
        always belongs to sample ``i`` (see :func:`run_inference`, Notes).
    """
    loaded = _as_loaded(model)
    sources = _resolve_inputs(loaded, inputs)
    collector = _Collector(int(sources[0].shape[0]))
    rec = record if record is not None else {}
    if record is not None:
        rec.update(_runtime_record(runtime))
    _stream(loaded, sources, runtime, collector, progress=bool(progress), prefetch=False, record=rec)
    if collector.arrays is None:  # zero samples: run once on nothing is impossible; say so
        raise PtyAnalysisError("predict: the inputs hold no samples")
    return collector.arrays

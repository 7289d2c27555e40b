"""Running one cell of the grid: its attempts, their logs, and the completion marker that makes it final."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...conventions import dose_label
from ...fileutil import atomic_path, write_json, write_text
from ...provenance import utc_now
from .. import notebook as nbk
from .spec import LOG_NAME, GridCell

#: Completion marker of a cell.
MARKER_NAME = "job_done.json"
#: Extra tries for a kernel that fails to start (port race, slow start), on top of ``retries``.
START_RETRIES = 2
#: Folder of a cell's attempts: ``attempts/<n>/`` holds each attempt's ``attempt.json``, ``run.log`` and notebook.
ATTEMPTS_DIR = "attempts"
#: Record of one attempt.
ATTEMPT_NAME = "attempt.json"


@dataclass(frozen=True)
class RunSettings:
    """What a worker needs to run a cell (picklable)."""

    notebook: str
    kernel: str
    outputs: tuple
    retries: int
    timeout_s: float | None
    start_timeout_s: float
    run_id: str = ""
    kernel_log_dir: str | None = None
    reuse_kernel: bool = True


@dataclass(frozen=True)
class CellResult:
    """Outcome of one cell.

    ``status`` is ``"success"`` (ran now), ``"skipped"`` (already complete),
    ``"failed"`` or, in a dry run, ``"pending"``.
    """

    dose: int
    view: str
    split: str
    status: str
    output_dir: Path
    attempts: int = 0
    elapsed_s: float = 0.0
    papermill_s: float = 0.0
    error_name: str | None = None
    error_value: str | None = None
    cell_index: int | None = None
    exec_count: int | None = None
    peak_rss_bytes: int | None = None
    lost_attempts: int = 0

    @property
    def label(self) -> str:
        """``dose_<D>/<view>/<split>``."""
        return f"{dose_label(self.dose)}/{self.view}/{self.split}"

    @property
    def returncode(self) -> int:
        """0 for a complete cell, 1 otherwise (the study manifest's convention)."""
        return 0 if self.status in ("success", "skipped") else 1

    @property
    def overhead_s(self) -> float:
        """Runner time outside papermill (validation, marker, output checks)."""
        return max(0.0, self.elapsed_s - self.papermill_s)


# --------------------------------------------------------------------------- completion and attempts


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def cell_status(cell: GridCell) -> tuple[bool, str]:
    """Whether a cell is complete: ``(complete, reason)``.

    Complete means: ``job_done.json`` is valid JSON, its ``param_hash`` equals
    the cell's, and every file it lists exists and is non-empty.

    Parameters
    ----------
    cell : GridCell

    Returns
    -------
    complete : bool
    reason : str
        ``"complete"`` or why not (``"no job_done.json"``, ``"parameters changed"``, ...).
    """
    marker = cell.output_dir / MARKER_NAME
    if not marker.is_file():
        return False, "no job_done.json"
    try:
        m = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, "job_done.json unreadable"
    if m.get("param_hash") != cell.param_hash:
        return False, "parameters changed"
    for rel in (m.get("files") or {}):
        f = cell.output_dir / rel
        if not f.is_file() or f.stat().st_size == 0:
            return False, f"{rel} missing or empty"
    return True, "complete"


def cell_attempts(cell: GridCell, run_id: str | None = None) -> list[dict]:
    """Every recorded attempt of a cell (``attempts/<n>/attempt.json``), oldest first.

    Parameters
    ----------
    cell : GridCell
    run_id : str, optional
        Only the attempts of this grid run.

    Returns
    -------
    list of dict
        Each with ``n``, ``run_id``, ``status`` (``running`` while it runs;
        ``success``, ``failed``, or ``lost`` when its worker stopped before it
        finished), ``started_at``, ``host``, ``pid``, ``worker``, ``log``
        (relative to the cell folder), ``kernel_reused`` once it has a kernel
        and, once finished, ``peak_rss_bytes`` (and, after a success,
        ``elapsed_s``: the notebook's run on its kernel, kernel start excluded).
    """
    root = cell.output_dir / ATTEMPTS_DIR
    out = []
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and d.name.isdigit():
                a = _read_json(d / ATTEMPT_NAME)
                if a is not None and (run_id is None or a.get("run_id") == run_id):
                    out.append(a)
    return sorted(out, key=lambda a: int(a.get("n", 0)))


def _new_attempt(cell: GridCell, run_id: str) -> tuple[int, Path, dict]:
    """Claim the next attempt number (atomic ``mkdir``: two workers never get the same one)."""
    from ..kernels import host_info  # imports distributed: only where a cell runs

    root = cell.output_dir / ATTEMPTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit()), default=0)
    while True:
        try:
            (root / str(n)).mkdir()
            break
        except FileExistsError:
            n += 1
    rec = {"n": n, "run_id": run_id, "status": "running", "started_at": utc_now(), **host_info(),
           "log": f"{ATTEMPTS_DIR}/{n}/{LOG_NAME}"}
    write_json(root / str(n) / ATTEMPT_NAME, rec)
    return n, root / str(n), rec


def _mark_lost_attempts(cell: GridCell, run_id: str) -> None:
    """Attempts of this run still ``running`` belonged to a worker that stopped: record them ``lost``."""
    for a in cell_attempts(cell, run_id):
        if a.get("status") == "running":
            write_json(cell.output_dir / ATTEMPTS_DIR / str(a["n"]) / ATTEMPT_NAME,
                       {**a, "status": "lost", "error": "its worker stopped before the attempt finished"})


def _write_cell_log(cell: GridCell) -> None:
    """``run.log``: every attempt's log of the cell, oldest first, each under a header (atomic)."""
    parts = []
    for a in cell_attempts(cell):
        body = ""
        p = cell.output_dir / a.get("log", "")
        if p.is_file():
            body = p.read_text(encoding="utf-8", errors="replace")
        parts.append(f"##### attempt {a.get('n')} ({a.get('status')}; run {a.get('run_id')}; "
                     f"{a.get('host')} pid {a.get('pid')}; worker {a.get('worker')}) started {a.get('started_at')}\n"
                     + body + ("" if body.endswith("\n") or not body else "\n"))
    write_text(cell.log, "".join(parts) or "(no attempt recorded)\n")


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _skipped_result(cell: GridCell, status: str = "skipped", elapsed_s: float | None = None) -> CellResult:
    m = _read_json(cell.output_dir / MARKER_NAME) or {}
    return CellResult(cell.dose, cell.view, cell.split, status, cell.output_dir, int(m.get("attempts", 0)),
                      float(m.get("elapsed_s", 0.0)) if elapsed_s is None else elapsed_s,
                      float(m.get("papermill_s", 0.0)), peak_rss_bytes=m.get("peak_rss_bytes"),
                      lost_attempts=int(m.get("lost_attempts", 0)))


# --------------------------------------------------------------------------- running a cell


@dataclass
class _Tries:
    """The state of one :func:`run_cell` call across its attempts."""

    t0: float
    tries: int = 0
    start_fails: int = 0
    pm_s: float = 0.0
    peak: int | None = None
    err: dict = field(default_factory=dict)
    nb_out: Path | None = None


_RETRY_START = object()  # an attempt whose kernel did not start: tried again, not counted


def _is_start_failure(exc) -> bool:
    name = type(exc).__name__
    msg = str(exc).lower()
    return name in ("ZMQError",) or (isinstance(exc, (RuntimeError, TimeoutError)) and "kernel" in msg
                                     and "died" not in msg)


def run_cell(cell: GridCell, settings: RunSettings, pool=None) -> CellResult:
    """Execute one cell with papermill, retrying; never raises for a notebook failure.

    Runs on a Dask worker (or in-process with ``--serial``). Each attempt
    claims ``attempts/<n>/`` in the cell folder and writes there its
    ``attempt.json`` (run id, host, process, worker, status, peak memory), its
    ``run.log`` and its executed notebook. On success the notebook is copied
    to the cell folder, ``run.log`` (every attempt's log, oldest first) is
    rewritten and ``job_done.json`` is written last, atomically: from then on
    the cell is final. A cell already finished in this grid run (a task that
    Dask reran after losing the worker that held its result) is not run
    again: its marker is returned.

    Parameters
    ----------
    cell : GridCell
    settings : RunSettings
    pool : KernelPool, optional
        Kernels to run on (default: the Dask worker's pool, else a fresh kernel
        per attempt).

    Returns
    -------
    CellResult
        ``"success"`` or ``"failed"`` with the last error's name, message and
        notebook cell index; ``attempts`` counts every attempt of this grid
        run, lost ones included.
    """
    from ..kernels import KernelPool, worker_pool  # imports distributed: only where a cell runs

    st = _Tries(t0=time.perf_counter())
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    marker = cell.output_dir / MARKER_NAME
    done = _read_json(marker)
    if done is not None and done.get("run_id") == settings.run_id and cell_status(cell)[0]:
        return _skipped_result(cell, status="success")  # finished earlier in this run: final
    marker.unlink(missing_ok=True)
    _mark_lost_attempts(cell, settings.run_id)
    own_pool = None
    if pool is None:
        pool = worker_pool()
    if pool is None:
        pool = own_pool = KernelPool(reuse=False)
    try:
        done = _run_attempts(cell, settings, pool, st)
    finally:
        if own_pool is not None:
            own_pool.close()
    return done if done is not None else _failed_result(cell, settings, st)


def _run_attempts(cell: GridCell, settings: RunSettings, pool, st: _Tries) -> CellResult | None:
    """Attempt the cell up to ``1 + retries`` times (kernel-start failures not counted): its result, None if all failed."""
    from ..kernels import register_engine

    engine = register_engine()
    while st.tries <= settings.retries:
        st.tries += 1
        n, adir, rec = _new_attempt(cell, settings.run_id)
        st.nb_out = adir / cell.output_notebook.name
        with open(adir / LOG_NAME, "w", encoding="utf-8") as log:
            log.write(f"=== attempt {n} at {utc_now()}: {Path(settings.notebook).name} "
                      f"dose={cell.dose} view={cell.view} split={cell.split} (run {settings.run_id})\n")
            log.flush()
            outcome = _attempt(cell, settings, pool, engine, st, log, n, adir, rec)
        if outcome is _RETRY_START:
            continue
        if outcome is not None:
            return outcome
        write_json(adir / ATTEMPT_NAME, {**rec, "status": "failed", "finished_at": utc_now(),
                                         "error": f"{st.err['error_name']}: {st.err['error_value']}"[:2000]})
        pool.discard()  # a failed attempt leaves the kernel in an unknown state: the retry gets a fresh one
    return None


def _attempt(cell, settings, pool, engine, st: _Tries, log, n: int, adir: Path, rec: dict):
    """One attempt on a kernel of ``pool``: the cell's result, :data:`_RETRY_START`, or None (failed; ``st.err``)."""
    from papermill.exceptions import PapermillExecutionError

    from ..kernels import PeakMemory

    log_dir = Path(settings.kernel_log_dir) if settings.kernel_log_dir else None
    t1 = time.perf_counter()
    kernel = None
    try:
        # the kernel's environment from its start (or, reused, set before the notebook): the folder its
        # relative paths resolve against, as execute() gives the kernels papermill starts
        kernel, reused = pool.acquire(settings.kernel, cell.output_dir, settings.start_timeout_s, log_dir,
                                      env=nbk.kernel_env(cell.output_dir))
        t2, rec["kernel_reused"] = time.perf_counter(), reused
        log.write(f"--- kernel pid {kernel.pid}: " + (f"reused (cell {kernel.cells + 1} on it)" if reused
                  else f"started in {kernel.start_s:.1f} s")
                  + (f"; its process output: {kernel.log_path}" if kernel.log_path else "") + "\n")
        log.flush()
        with PeakMemory(kernel.pid) as mem:
            try:
                # the one papermill runner, on this worker's kernel (parameters were validated once for the grid)
                nbk.execute(settings.notebook, st.nb_out, parameters=cell.parameters,
                            cwd=cell.output_dir, kernel=settings.kernel, log=log,
                            timeout=settings.timeout_s, start_timeout=settings.start_timeout_s,
                            validate=False, engine_name=engine, km=kernel.km)
            finally:
                kernel.cells += 1
        st.peak = mem.peak
        rec["peak_rss_bytes"], rec["peak_rss_method"] = mem.peak, mem.method
    except PapermillExecutionError as exc:
        st.err = {"error_name": exc.ename, "error_value": str(exc.evalue), "cell_index": exc.cell_index,
                  "exec_count": exc.exec_count}
    except Exception as exc:  # DeadKernelError, kernel start failures, timeouts, I/O
        st.err = {"error_name": type(exc).__name__, "error_value": str(exc)}
        if kernel is None and _is_start_failure(exc) and st.start_fails < START_RETRIES:
            _start_failed(st, log, adir, rec, pool)
            return _RETRY_START
    else:
        st.pm_s += time.perf_counter() - t1
        missing = [o for o in settings.outputs
                   if not (cell.output_dir / o).is_file() or (cell.output_dir / o).stat().st_size == 0]
        if not missing:
            return _succeeded(cell, settings, st, log, adir, {**rec, "elapsed_s": round(time.perf_counter() - t2, 3)})
        st.err = {"error_name": "MissingOutputs",
                  "error_value": f"the notebook finished but did not write: {', '.join(missing)}"}
    log.write(f"--- attempt {n} failed: {st.err['error_name']}: {st.err['error_value']}\n")
    log.flush()
    return None


def _start_failed(st: _Tries, log, adir: Path, rec: dict, pool) -> None:
    """A kernel that did not start: record the attempt, drop the kernel, wait a little; the try is not counted."""
    st.start_fails += 1
    st.tries -= 1
    log.write(f"--- kernel start failed ({st.err['error_name']}: {st.err['error_value']}); retrying\n")
    write_json(adir / ATTEMPT_NAME, {**rec, "status": "failed", "finished_at": utc_now(),
                                     "error": f"kernel start: {st.err['error_name']}"})
    pool.discard()
    time.sleep(0.5 + st.start_fails)


def _succeeded(cell: GridCell, settings: RunSettings, st: _Tries, log, adir: Path, rec: dict) -> CellResult:
    """Make the cell final: its notebook, the attempt's record, ``run.log``, and ``job_done.json`` last."""
    peak = st.peak
    log.write(f"=== success after {st.tries} attempt(s) in this call"
              + (f"; peak memory {peak / 2**20:.0f} MiB ({rec['peak_rss_method']})" if peak else "") + "\n")
    log.flush()
    _copy_atomic(st.nb_out, cell.output_notebook)
    write_json(adir / ATTEMPT_NAME, {**rec, "status": "success", "finished_at": utc_now()})
    _write_cell_log(cell)
    files = {p: (cell.output_dir / p).stat().st_size for p in (cell.output_notebook.name, *settings.outputs, LOG_NAME)}
    mine = cell_attempts(cell, settings.run_id)
    elapsed = time.perf_counter() - st.t0
    write_json(cell.output_dir / MARKER_NAME, {
        "param_hash": cell.param_hash, "parameters": cell.parameters, "notebook": settings.notebook, "files": files,
        "attempts": len(mine), "attempt_numbers": [a["n"] for a in mine],
        "lost_attempts": sum(a.get("status") == "lost" for a in mine), "run_id": settings.run_id,
        "elapsed_s": round(elapsed, 3), "papermill_s": round(st.pm_s, 3), "peak_rss_bytes": peak,
        "peak_rss_method": rec.get("peak_rss_method"), "host": rec["host"], "worker": rec["worker"],
        "finished_at": utc_now()})
    return _skipped_result(cell, status="success", elapsed_s=elapsed)


def _failed_result(cell: GridCell, settings: RunSettings, st: _Tries) -> CellResult:
    """Every attempt failed: ``run.log`` rewritten, the failed notebook (with its traceback) in the cell folder."""
    _write_cell_log(cell)
    failed_nb = nbk.failed_path(st.nb_out)
    if failed_nb.is_file():  # the failed attempt's notebook, with its traceback, where the cell's notebook goes
        _copy_atomic(failed_nb, cell.output_notebook)
    mine = cell_attempts(cell, settings.run_id)
    err = st.err
    return CellResult(cell.dose, cell.view, cell.split, "failed", cell.output_dir, len(mine),
                      time.perf_counter() - st.t0, st.pm_s, err.get("error_name"), err.get("error_value"),
                      err.get("cell_index"), err.get("exec_count"), peak_rss_bytes=st.peak,
                      lost_attempts=sum(a.get("status") == "lost" for a in mine))

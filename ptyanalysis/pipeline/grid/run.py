"""``run_grid``: validate, skip what is complete, run the rest (in process or on Dask), write the manifest and log."""

from __future__ import annotations

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ... import hub as _hub
from ...errors import PtyAnalysisError
from ...fileutil import write_json
from ...provenance import utc_now
from .. import notebook as nbk
from .cell import CellResult, RunSettings, _read_json, _skipped_result, cell_status, run_cell
from .dask_backend import _run_dask, _start_local_cluster
from .lanes import cell_costs
from .manifest import _manifest, merge_manifest
from .memory import plan_memory
from .progress import _Log, _log_path, _Progress
from .spec import GridSpec, check_hub, expand, validate_grid_parameters

#: Last line of the orchestrator log of a fully successful run.
SUCCESS_SENTINEL = "SUCCESS: all cells completed"


@dataclass(frozen=True)
class GridResult:
    """Outcome of :func:`run_grid`."""

    spec: GridSpec
    results: tuple
    wall_s: float
    backend: str
    manifest_path: Path | None = None
    log_path: Path | None = None
    notices: tuple = ()

    @property
    def n_success(self) -> int:
        """Cells complete (run now or skipped)."""
        return sum(r.returncode == 0 for r in self.results)

    @property
    def n_failed(self) -> int:
        """Cells that failed."""
        return sum(r.status == "failed" for r in self.results)

    @property
    def n_skipped(self) -> int:
        """Cells already complete, not rerun."""
        return sum(r.status == "skipped" for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no cell failed."""
        return self.n_failed == 0

    def table(self) -> str:
        """A fixed-width summary table, one row per cell, failures with their error."""
        rows = [("dose", "view", "split", "status", "tries", "time_s", "error")]
        for r in self.results:
            err = ""
            if r.error_name:
                where = f" (cell {r.cell_index})" if r.cell_index is not None else ""
                err = f"{r.error_name}{where}: {(r.error_value or '').strip().splitlines()[0] if r.error_value else ''}"[:100]
            rows.append((str(r.dose), r.view, r.split, r.status, str(r.attempts), f"{r.elapsed_s:.1f}", err))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row[:6], widths)) + ("  " + row[6] if row[6] else "") for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"{self.n_success}/{len(self.results)} complete ({self.n_skipped} skipped), "
                     f"{self.n_failed} failed; wall {self.wall_s:.1f} s on {self.backend}")
        return "\n".join(lines)


def default_workers(n_cells: int) -> int:
    """``min(n_cells, os.cpu_count())`` (at least 1).

    Parameters
    ----------
    n_cells : int
        Cells to run.

    Returns
    -------
    int
    """
    return max(1, min(n_cells, os.cpu_count() or 1))


def _fast_parameter_names(notebook: Path):
    """Names the notebook's parameters cell declares (read without a kernel or papermill), or None.

    Only used to decide early whether a cluster will be needed; ``None`` when unsure.
    """
    try:
        return set(nbk.declared_parameters(notebook))
    except PtyAnalysisError:
        return None


def run_grid(spec: GridSpec, scheduler: str | None = None, workers: int | None = None, force: bool = False,
             retries: int | None = None, dry_run: bool = False, serial: bool = False,
             echo: bool = False, memory_bytes: int | None = None, reuse_kernel: bool = True,
             job=None) -> GridResult:
    """Run the notebook over every cell of the grid (the user guide: ``docs/grid.md``).

    Parameters
    ----------
    spec : GridSpec
        From :func:`~.spec.load_spec` or :func:`~.spec.spec_from_dict`.
    scheduler : str, optional
        Address of a running Dask scheduler (default: start a LocalCluster).
    workers : int, optional
        LocalCluster workers (default ``spec.workers`` or ``min(cells to run, CPU count)``),
        lowered when the cells' estimated peak memory does not fit (:func:`~.memory.plan_memory`).
    force : bool
        Rerun complete cells.
    retries : int, optional
        Override ``spec.retries``.
    dry_run : bool
        Validate (parameters, and doses / views / splits against the hub) and
        report what would run; write nothing.
    serial : bool
        Run in this process, one cell after the other, without Dask.
    echo : bool
        Echo the orchestrator log to stdout (with a progress bar on a terminal).
    memory_bytes : int, optional
        Memory the grid may use (default: :func:`~.memory.machine_memory`).
    reuse_kernel : bool
        Run a worker's cells in one kernel, one after the other
        (:mod:`ptyanalysis.pipeline.kernels`); False: a fresh kernel per cell.
    job : JobProfile, optional
        What the notebook's job reads and how much work each cell is, for the
        memory plan and the workers' lanes (default: the comparison job,
        :data:`ptyanalysis.pipeline.compare.COMPARISON_JOB`).

    Returns
    -------
    GridResult
        Its manifest and log paths are set unless ``dry_run``.

    Raises
    ------
    PtyAnalysisError
        Invalid spec or parameters, or a dose / view / split the hub lacks (before any cell runs).
    """
    t0 = time.perf_counter()
    if retries is not None:
        if retries < 0:
            raise PtyAnalysisError(f"--retries must be >= 0, got {retries}")
        spec = replace(spec, retries=retries)
    if memory_bytes is not None and memory_bytes <= 0:
        raise PtyAnalysisError(f"--memory must be a positive number of GB, got {memory_bytes / 1e9:g}")
    # Start the LocalCluster early, in a thread, when cells will run: the workers' start-up (and their
    # papermill import) then overlaps the parameter validation below.
    cluster_future, pool, plan = None, None, None
    names = None if (dry_run or serial or scheduler) else _fast_parameter_names(spec.notebook)
    if names is not None:
        pre = expand(spec, dict.fromkeys(names))
        pre_todo = pre if force else [c for c in pre if not cell_status(c)[0]]
        if pre_todo:
            n = min(workers or spec.workers or default_workers(len(pre_todo)), len(pre_todo))
            plan = plan_memory(pre_todo, spec.hub, n, memory_bytes, job)
            pool = ThreadPoolExecutor(1)
            cluster_future = pool.submit(_start_local_cluster, plan.workers, plan.budget_bytes // plan.workers)
    try:
        return _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future, plan,
                         memory_bytes, reuse_kernel, job)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
            if cluster_future.exception() is None and cluster_future.result().status.name != "closed":
                cluster_future.result().close()  # not used (validation failed or nothing to run)


def _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future, plan, memory_bytes,
              reuse_kernel, job) -> GridResult:
    declared = validate_grid_parameters(spec)
    notices = check_hub(spec)
    cells = expand(spec, declared)
    status = {c.label: ((False, "forced") if force else cell_status(c)) for c in cells}
    todo = [c for c in cells if not status[c.label][0]]
    if dry_run:
        res = tuple(_skipped_result(c) if status[c.label][0] else
                    CellResult(c.dose, c.view, c.split, "pending", c.output_dir) for c in cells)
        return GridResult(spec, res, time.perf_counter() - t0, "dry run", notices=tuple(notices))
    log = _Log(_log_path(spec.hub), echo)
    log(f"grid started: {spec.source}; notebook {spec.notebook}; {len(cells)} cell(s), {len(todo)} to run, "
        f"{len(cells) - len(todo)} complete{' (forced rerun)' if force else ''}")
    for n in notices:
        log(f"notice: {n}")
    run_id = f"{utc_now().replace(':', '').replace('-', '')}-{os.getpid()}-{secrets.token_hex(3)}"
    settings = RunSettings(str(spec.notebook), spec.kernel, spec.outputs, spec.retries, spec.timeout_s,
                           spec.start_timeout_s, run_id=run_id,
                           kernel_log_dir=str(_hub.kernel_logs_dir(spec.hub)), reuse_kernel=reuse_kernel)
    log(f"run {run_id}: {'one kernel per worker, reused across its cells' if reuse_kernel else 'a fresh kernel per cell'}"
        f"; kernels' own output in {settings.kernel_log_dir}")
    results = {c.label: _skipped_result(c) for c in cells if status[c.label][0]}
    progress = _Progress(len(todo), log)
    try:
        backend, plan = _run_cells(spec, todo, settings, results, log, progress, scheduler=scheduler, workers=workers,
                                   serial=serial, plan=plan, memory_bytes=memory_bytes, cluster_future=cluster_future,
                                   job=job)
    finally:
        progress.close()
    return _finish(spec, cells, results, time.perf_counter() - t0, backend, declared, settings, plan, log, notices)


def _run_cells(spec, todo, settings, results, log, progress, *, scheduler, workers, serial, plan, memory_bytes,
               cluster_future, job) -> tuple:
    """Run the cells to run (none, in process, or on Dask), their results into ``results``: (backend, memory plan)."""
    if not todo:
        return "none (all cells complete)", plan
    if serial:
        from ..kernels import KernelPool  # imports distributed: only when cells run

        backend = "serial (in process)"
        log(f"backend: {backend}")
        kernels = KernelPool(reuse=settings.reuse_kernel)
        try:
            for c in todo:
                r = run_cell(c, settings, kernels)
                results[c.label] = r
                progress.cell(c.label, r)
        finally:
            kernels.close()
        return backend, plan
    n = min(workers or spec.workers or default_workers(len(todo)), len(todo))
    if plan is None or set(plan.cell_bytes) != {c.label for c in todo}:
        plan = plan_memory(todo, spec.hub, n, memory_bytes, job)
    log(f"memory: budget {plan.budget_bytes / 2**30:.1f} GiB ({plan.budget_source}); largest cell estimate "
        f"{plan.max_cell_bytes / 2**30:.2f} GiB ({', '.join(sorted(set(plan.sources.values())))}); "
        f"{plan.workers} worker(s)"
        + (f" instead of {plan.requested_workers}: more would not fit in memory" if plan.limited else ""))
    got, backend = _run_dask(todo, settings, scheduler, plan.workers, log, plan, progress, cluster_future,
                             cell_costs(todo, spec.hub, job))
    results.update(got)
    return backend, plan


def _finish(spec, cells, results, wall, backend, declared, settings, plan, log, notices) -> GridResult:
    """Merge this run into the hub's manifest, log the summary table and the final line."""
    path = _hub.analysis_root(spec.hub) / "comparison_manifest.json"
    manifest = merge_manifest(_read_json(path), _manifest(spec, cells, results, wall, backend, declared, settings, plan))
    manifest_path = write_json(path, manifest)
    if manifest.get("merged", {}).get("kept_jobs"):
        log(f"manifest: {len(cells)} cell(s) of this run merged into {path} "
            f"({manifest['merged']['kept_jobs']} other job(s) kept; {manifest['n_success']}/{manifest['n_jobs']} complete)")
    result = GridResult(spec, tuple(results[c.label] for c in cells), wall, backend, manifest_path, log.path,
                        notices=tuple(notices))
    for line in result.table().splitlines():
        log(line)
    if result.ok:
        log(SUCCESS_SENTINEL)
    else:
        log(f"FAILED: {result.n_failed} cell(s) failed; rerun to retry them (complete cells are skipped)")
    return result

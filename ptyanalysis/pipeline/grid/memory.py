"""How many cells may run at once: each cell's estimated peak memory against the machine's memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import compare as _compare
from .cell import MARKER_NAME, _read_json, cell_attempts
from .spec import GridCell

#: Memory a cell is assumed to need when nothing was measured and the hub holds no files for it.
DEFAULT_CELL_MEMORY = 1 << 30
#: Memory of a kernel with the comparison job's imports, before any data (the files estimate's base).
KERNEL_BASE_MEMORY = 1 << 30
#: Safety factor on a measured peak.
MEMORY_MARGIN = 1.25
#: Fraction of the machine's memory (cgroup limits included) the grid plans for.
MEMORY_FRACTION = 0.85


@dataclass(frozen=True)
class MemoryPlan:
    """How many cells may run at once without running out of memory.

    Attributes
    ----------
    budget_bytes : int
        Memory the grid plans with (``--memory``, else :data:`MEMORY_FRACTION`
        of the smaller of the machine's memory limit and what is available now).
    budget_source : str
    cell_bytes : dict
        ``{label: estimated peak, bytes}`` of each cell to run.
    sources : dict
        ``{label: how it was estimated}``: ``measured`` (its own earlier
        peak, x :data:`MEMORY_MARGIN`), ``measured on other cells``,
        ``hub files`` (models and split sizes) or ``default``.
    requested_workers, workers : int
        Workers asked for (CPU count or ``--workers``) and allowed by memory.
    """

    budget_bytes: int
    budget_source: str
    cell_bytes: dict
    sources: dict
    requested_workers: int
    workers: int

    @property
    def max_cell_bytes(self) -> int:
        """The largest estimate."""
        return max(self.cell_bytes.values(), default=0)

    @property
    def limited(self) -> bool:
        """True when memory, not the CPU count, set the number of workers."""
        return self.workers < self.requested_workers

    def to_dict(self) -> dict:
        """JSON form (the manifest's ``memory``)."""
        return {"budget_bytes": int(self.budget_bytes), "budget_source": self.budget_source,
                "requested_workers": self.requested_workers, "workers": self.workers,
                "max_cell_bytes": int(self.max_cell_bytes), "cell_bytes": {k: int(v) for k, v in self.cell_bytes.items()},
                "sources": dict(self.sources)}


def machine_memory() -> tuple[int, str]:
    """Memory the grid may plan with on this machine: ``(bytes, description)``.

    :data:`MEMORY_FRACTION` of the smaller of Dask's memory limit (physical
    memory or the cgroup / rlimit limit) and the memory available now.
    """
    import psutil
    from distributed.system import MEMORY_LIMIT  # imports distributed: only when a plan is made

    avail = int(psutil.virtual_memory().available)
    total = int(min(MEMORY_LIMIT, avail))
    return int(total * MEMORY_FRACTION), (f"{MEMORY_FRACTION:.0%} of {total / 2**30:.1f} GiB "
                                          f"(limit {MEMORY_LIMIT / 2**30:.1f} GiB, available {avail / 2**30:.1f} GiB)")


def _measured_peak(cell: GridCell) -> int | None:
    peaks = [a.get("peak_rss_bytes") for a in cell_attempts(cell)]
    peaks = [int(p) for p in peaks if isinstance(p, (int, float)) and p > 0]
    m = _read_json(cell.output_dir / MARKER_NAME) or {}
    if isinstance(m.get("peak_rss_bytes"), (int, float)) and m["peak_rss_bytes"] > 0:
        peaks.append(int(m["peak_rss_bytes"]))
    return max(peaks) if peaks else None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def files_estimate(hub, dose, view: str, split: str, job=None) -> int | None:
    """Peak memory a job is expected to need from its input files, bytes (None: no files).

    :data:`KERNEL_BASE_MEMORY` + ``job.shared_memory_factor`` x the files the
    cells of (dose, view) share + ``job.cell_memory_factor`` x the cell's own
    input files. For the comparison job: 4 x its models (weights loaded, plus
    the framework's copies while loading) + 3 x the split's dataset (the
    diffraction, its normalised copy and the chunk being fed).

    Parameters
    ----------
    hub : Path
    dose : int
    view, split : str
    job : JobProfile, optional
        What the job reads (default: the comparison job,
        :data:`ptyanalysis.pipeline.compare.COMPARISON_JOB`).

    Returns
    -------
    int or None
    """
    job = _compare.COMPARISON_JOB if job is None else job
    shared = sum(_size(Path(p)) for p in job.shared_inputs(hub, dose, view))
    own = sum(_size(Path(p)) for p in job.cell_inputs(hub, dose, view, split))
    if not shared and not own:
        return None
    return KERNEL_BASE_MEMORY + job.shared_memory_factor * shared + job.cell_memory_factor * own


def plan_memory(cells, hub, workers: int, memory_bytes: int | None = None, job=None) -> MemoryPlan:
    """Estimate each cell's peak memory and how many cells fit in memory at once.

    Parameters
    ----------
    cells : list of GridCell
        The cells to run.
    hub : Path
    workers : int
        Workers wanted (CPU count or ``--workers``).
    memory_bytes : int, optional
        Memory the grid may use (default :func:`machine_memory`).
    job : JobProfile, optional
        What the job reads (default: the comparison job); see :func:`files_estimate`.

    Returns
    -------
    MemoryPlan
        ``workers`` = min(wanted, budget // largest estimate), at least 1.
    """
    if memory_bytes is not None:
        budget, src = int(memory_bytes), f"--memory {memory_bytes / 2**30:.1f} GiB"
    else:
        budget, src = machine_memory()
    measured = {c.label: _measured_peak(c) for c in cells}
    known = [v for v in measured.values() if v]
    est, sources = {}, {}
    for c in cells:
        if measured[c.label]:
            est[c.label], sources[c.label] = int(measured[c.label] * MEMORY_MARGIN), "measured"
        elif known:
            est[c.label], sources[c.label] = int(max(known) * MEMORY_MARGIN), "measured on other cells"
        else:
            f = files_estimate(hub, c.dose, c.view, c.split, job)
            est[c.label], sources[c.label] = (f, "hub files") if f else (DEFAULT_CELL_MEMORY, "default")
    biggest = max(est.values(), default=DEFAULT_CELL_MEMORY)
    fit = max(1, int(budget // max(biggest, 1)))
    return MemoryPlan(budget, src, est, sources, workers, max(1, min(workers, fit)))

"""Which worker runs which cells: lanes balanced by each cell's estimated cost, cells sharing models kept together.

Each cell's cost is its measured duration when an earlier attempt recorded
one, else its amount of work (:attr:`JobProfile.work
<ptyanalysis.pipeline.grid.job.JobProfile>`, for the comparison job the scan
positions of its view) converted to seconds at the rate measured on the other
cells. The cells of one (dose, view) share a worker (its kernel keeps their
models); those groups go longest first onto the least-loaded worker (LPT).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from .. import compare as _compare
from .cell import cell_attempts


@dataclass(frozen=True)
class CellCosts:
    """Each cell's estimated cost, the unit it is in and how it was estimated.

    Attributes
    ----------
    costs : dict
        ``{label: cost}``.
    sources : dict
        ``{label: source}``: ``measured`` (the duration of its last successful
        attempt), ``work x measured rate`` (its work at the seconds per unit of
        work measured on other cells), ``work`` (its work, nothing measured) or
        ``default`` (the mean of the others, 1 when none is known).
    unit : str
        ``"s"`` when any cell was measured, ``"work"`` when only work is known,
        else ``"cells"``.
    """

    costs: dict
    sources: dict
    unit: str


def _seconds_between(start, end) -> float | None:
    try:
        t0, t1 = (_dt.datetime.fromisoformat(str(t).replace("Z", "+00:00")) for t in (start, end))
    except ValueError:
        return None
    return (t1 - t0).total_seconds()


def measured_duration(cell) -> float | None:
    """Seconds the cell's last successful attempt took, or None when none was recorded.

    The attempt's ``elapsed_s`` (kernel start excluded), else its start and
    finish times. An attempt on a reused kernel is preferred: the first cell
    on a fresh kernel also pays for the job's imports, which every lane pays once.
    """
    measured = []
    for a in cell_attempts(cell):
        if a.get("status") != "success":
            continue
        s = a.get("elapsed_s")
        if not isinstance(s, (int, float)) or isinstance(s, bool):
            s = _seconds_between(a.get("started_at"), a.get("finished_at"))
        if s is not None and s > 0:
            measured.append((bool(a.get("kernel_reused")), float(s)))
    reused = [s for r, s in measured if r]
    return reused[-1] if reused else measured[-1][1] if measured else None


def cell_costs(cells, hub, job=None) -> CellCosts:
    """Estimate each cell's cost (run time) for balancing the workers' lanes.

    Parameters
    ----------
    cells : list of GridCell
    hub : Path
    job : JobProfile, optional
        Gives each cell's amount of work (default: the comparison job,
        :data:`ptyanalysis.pipeline.compare.COMPARISON_JOB`: scan positions).

    Returns
    -------
    CellCosts
    """
    job = _compare.COMPARISON_JOB if job is None else job
    measured = {c.label: measured_duration(c) for c in cells}
    work = {}
    for c in cells:
        w = job.work(hub, c.dose, c.view, c.split)
        work[c.label] = float(w) if isinstance(w, (int, float)) and w > 0 else None
    both = [k for k in measured if measured[k] is not None and work[k] is not None]
    rate = sum(measured[k] for k in both) / sum(work[k] for k in both) if both else None
    any_measured = any(v is not None for v in measured.values())
    costs, sources = {}, {}
    for c in cells:
        m, w = measured[c.label], work[c.label]
        if m is not None:
            costs[c.label], sources[c.label] = m, "measured"
        elif w is not None and rate is not None:
            costs[c.label], sources[c.label] = w * rate, "work x measured rate"
        elif w is not None and not any_measured:
            costs[c.label], sources[c.label] = w, "work"
    fallback = sum(costs.values()) / len(costs) if costs else 1.0
    for c in cells:
        if c.label not in costs:
            costs[c.label], sources[c.label] = fallback, "default"
    unit = "s" if any_measured else "work" if any(v is not None for v in work.values()) else "cells"
    return CellCosts(costs, sources, unit)


def assign_workers(cells, addresses, costs=None) -> dict:
    """Which worker each cell goes to first: lanes of about equal cost, cells that share models on one worker.

    Cells are grouped by (dose, view) (what the job's cells of a (dose, view)
    share, e.g. the comparison job's models, stays in one worker's kernel);
    the groups, the most costly first (grid order among equals), each go to
    the worker with the least cost so far (the first such in ``addresses``).

    Parameters
    ----------
    cells : list of GridCell
    addresses : list of str
        Worker addresses.
    costs : dict, optional
        ``{cell label: cost}`` (:attr:`CellCosts.costs`); default: every cell costs 1.

    Returns
    -------
    dict
        ``{cell label: worker address}``.
    """
    addresses = list(addresses)
    if not addresses:
        return {}
    costs = {} if costs is None else costs
    groups: dict = {}
    for c in cells:
        groups.setdefault((c.dose, c.view), []).append(c)
    weighted = [(sum(float(costs.get(c.label, 1.0)) for c in members), members) for members in groups.values()]
    weighted.sort(key=lambda g: -g[0])  # stable: grid order among equal costs
    load = [0.0] * len(addresses)
    out = {}
    for cost, members in weighted:
        lane = min(range(len(addresses)), key=lambda i: load[i])
        for c in members:
            out[c.label] = addresses[lane]
        load[lane] += cost
    return out


def lane_loads(assignment: dict, costs: dict) -> dict:
    """The planned load of each worker: ``{address: (cells, total cost)}``, in the order first assigned.

    Parameters
    ----------
    assignment : dict
        :func:`assign_workers`'s ``{cell label: worker address}``.
    costs : dict
        ``{cell label: cost}``.

    Returns
    -------
    dict
    """
    out: dict = {}
    for label, address in assignment.items():
        n, total = out.get(address, (0, 0.0))
        out[address] = (n + 1, total + float(costs.get(label, 1.0)))
    return out

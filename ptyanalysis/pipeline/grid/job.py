"""What the grid runner may know about the job its notebook runs, given to it by the job's side.

The runner itself knows no job: it plans memory
(:func:`~ptyanalysis.pipeline.grid.memory.files_estimate`) and balances its
workers' lanes (:func:`~ptyanalysis.pipeline.grid.lanes.cell_costs`) from a
:class:`JobProfile`. The comparison job supplies its own
(:data:`ptyanalysis.pipeline.compare.COMPARISON_JOB`, the default of
:func:`~ptyanalysis.pipeline.grid.run.run_grid`); :data:`GENERIC_JOB` knows
nothing (memory from measurements or the default, cells of equal cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _no_files(*_cell) -> tuple:
    return ()


def _unknown(*_cell) -> None:
    return None


@dataclass(frozen=True)
class JobProfile:
    """A job's inputs and amount of work, as functions of a cell's hub, dose, view (and split).

    Attributes
    ----------
    name : str
        Shown in the orchestrator log.
    shared_inputs : callable
        ``(hub, dose, view) -> paths``: files or folders a cell loads that every
        cell of its (dose, view) shares, and that a worker's reused kernel keeps
        (the comparison job's models); the grid gives such cells to one worker.
    cell_inputs : callable
        ``(hub, dose, view, split) -> paths``: the cell's own input files (its split).
    work : callable
        ``(hub, dose, view, split) -> float or None``: the cell's amount of work
        in any unit proportional to its run time (the comparison job: the scan
        positions of its view); None when unknown.
    shared_memory_factor, cell_memory_factor : int
        Bytes of memory per byte of the shared and the cell's input files at the
        job's peak (:func:`~ptyanalysis.pipeline.grid.memory.files_estimate`;
        default 1: each file loaded once).
    """

    name: str = "notebook"
    shared_inputs: Callable = _no_files
    cell_inputs: Callable = _no_files
    work: Callable = _unknown
    shared_memory_factor: int = 1
    cell_memory_factor: int = 1


#: A job the grid knows nothing about.
GENERIC_JOB = JobProfile()

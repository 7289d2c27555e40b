"""Run a parameterized notebook over the study grid (dose x view x split) with papermill on Dask.

The user guide, with the YAML schema and examples, resuming, failures, memory
and cluster use, is ``docs/grid.md``; the command is ``ptyanalysis grid``
(:mod:`ptyanalysis.commands.grid`), the Python entry point :func:`run_grid`.

Modules: :mod:`~.spec` (the YAML schema, its checks, the cells, the check
against the hub), :mod:`~.job` (what the runner knows of the job it runs),
:mod:`~.cell` (one cell: attempts, logs, completion marker), :mod:`~.memory`
(how many cells fit in memory), :mod:`~.lanes` (cells onto workers by cost),
:mod:`~.dask_backend` (running on Dask), :mod:`~.manifest` (the study's
manifest), :mod:`~.progress` (the orchestrator log), :mod:`~.run`
(:func:`run_grid`) and :mod:`~.bench` (the runner's benchmark).
"""

from .bench import bench_grid
from .cell import (
    ATTEMPT_NAME,
    ATTEMPTS_DIR,
    MARKER_NAME,
    START_RETRIES,
    CellResult,
    RunSettings,
    cell_attempts,
    cell_status,
    run_cell,
)
from .job import GENERIC_JOB, JobProfile
from .lanes import CellCosts, assign_workers, cell_costs, lane_loads, measured_duration
from .manifest import merge_manifest
from .memory import (
    DEFAULT_CELL_MEMORY,
    KERNEL_BASE_MEMORY,
    MEMORY_FRACTION,
    MEMORY_MARGIN,
    MemoryPlan,
    files_estimate,
    machine_memory,
    plan_memory,
)
from .run import SUCCESS_SENTINEL, GridResult, default_workers, run_grid
from .spec import (
    CELL_PARAMETERS,
    LOG_NAME,
    OPTIONAL_PARAMETERS,
    REQUIRED_KEYS,
    SPEC_KEYS,
    GridCell,
    GridSpec,
    check_hub,
    expand,
    load_spec,
    spec_from_dict,
    validate_grid_parameters,
)

#: The former name of :func:`validate_grid_parameters` (``ptyanalysis.pipeline`` exports only the new one:
#: ``validate_parameters`` there is :func:`ptyanalysis.pipeline.notebook.validate_parameters`).
validate_parameters = validate_grid_parameters

__all__ = [
    "ATTEMPTS_DIR", "ATTEMPT_NAME", "CELL_PARAMETERS", "DEFAULT_CELL_MEMORY", "GENERIC_JOB", "KERNEL_BASE_MEMORY",
    "LOG_NAME", "MARKER_NAME", "MEMORY_FRACTION", "MEMORY_MARGIN", "OPTIONAL_PARAMETERS", "REQUIRED_KEYS",
    "SPEC_KEYS", "START_RETRIES", "SUCCESS_SENTINEL",
    "CellCosts", "CellResult", "GridCell", "GridResult", "GridSpec", "JobProfile", "MemoryPlan", "RunSettings",
    "assign_workers", "bench_grid", "cell_attempts", "cell_costs", "cell_status", "check_hub", "default_workers",
    "expand", "files_estimate", "lane_loads", "load_spec", "machine_memory", "measured_duration", "merge_manifest",
    "plan_memory", "run_cell", "run_grid", "spec_from_dict", "validate_grid_parameters", "validate_parameters",
]

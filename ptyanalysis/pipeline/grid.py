"""Run a parameterized notebook over the study grid (dose x view x split) with papermill on Dask.

``ptyanalysis grid params/<study>.yaml [--scheduler ADDRESS] [--workers N] [--force]
[--retries K] [--dry-run] [--serial]`` (Python: :func:`run_grid`).

The YAML file
-------------
::

    hub: demo_hub                       # study hub (created if absent)
    notebook: notebooks/00_compare_arms.ipynb
    doses: [1000, 10000, 100000]        # photons per pattern (YAML reads 1e3 as a string: accepted too)
    views: [dense, sparse]
    splits: [train, test]
    parameters:                         # common parameters, passed to every cell
      n_groups: 512
    outputs:                            # files each cell must leave in its output folder
      - comparison_metrics.csv
      - reconstructions.npz
    retries: 1                          # extra attempts per failing cell (default 1)
    timeout_s: 3600                     # per notebook-cell execution timeout (default: none)
    start_timeout_s: 120                # kernel start timeout (default 120)
    kernel: python3                     # Jupyter kernel (default python3)
    workers: 2                          # default: min(cells to run, CPU count)

Only ``notebook``, ``doses``, ``views``, ``splits`` and ``hub`` are required;
any other key is an error naming the file and the key. Relative paths are
resolved against the current working directory (run from the repository
root, as the Makefile does).

Each cell runs the notebook with the parameters ``dose`` (int), ``view``,
``split`` (the notebook must declare them), ``hub`` and ``output_dir``
(absolute paths, passed only when the notebook declares them) plus the
common ``parameters``. Before anything runs, the notebook's parameters cell
is read and the values checked by :mod:`ptyanalysis.pipeline.notebook` (the
same rules as the notebook's own checking cell): a common parameter the
notebook does not declare is an error (papermill itself only warns), and a
value whose type does not fit the declaration (its annotation, else the
default's kind: bool / number / str / list / dict; ints accepted for floats,
null for an Optional or None default) is an error.

Outputs of a cell, under ``HUB/analysis/dose_<D>/<view>/<split>/``: the
executed notebook (same file name as the input, e.g.
``00_compare_arms.ipynb``; after a failure, the failed attempt's, with its
traceback), ``run.log`` (every attempt's log, oldest first, each under a
``##### attempt <n> (<status>; ...)`` header), ``attempts/<n>/`` per attempt
(``attempt.json``: run id, host, process, Dask worker, status ``running`` /
``success`` / ``failed`` / ``lost``, peak memory; its ``run.log``: the
kernel's stdout/stderr; its executed notebook) and, written last and
atomically after papermill succeeded and every ``outputs`` file is present
and non-empty, ``job_done.json`` (parameter hash, files with sizes, attempts
of this run, peak resident memory ``peak_rss_bytes``, worker, timings). From
that moment the cell is final. The grid writes
``HUB/analysis/comparison_manifest.json`` (the study's manifest: ``n_jobs,
n_success, n_failed, jobs, execution_results`` ... with each cell's
``attempts``, ``lost_attempts``, ``attempt_logs`` and ``peak_rss_bytes``) and
an orchestrator log ``HUB/analysis/logs/grid_<UTC time>.log`` whose last line
is ``SUCCESS: all cells completed`` when every cell is complete. A run over
part of the grid (other doses, one view, a rerun of one cell) **merges** its
cells into the existing manifest (:func:`merge_manifest`): the other jobs are
kept, the totals recounted. The echoed log shows ``[k/n]`` per cell, and a
tqdm progress bar on a terminal.

Before anything runs (``--dry-run`` included), the doses, views and splits
are checked against the hub when it holds datasets (:func:`check_hub`): a
misspelt view is an error naming the YAML key, what the hub has and the
closest name ("did you mean 'sparse'?").

Resuming
--------
A cell is complete, and skipped unless ``--force``, when its
``job_done.json`` exists, its parameter hash equals the hash of the cell's
current parameters (notebook file name + all injected values), and every file
it lists is still present and non-empty. Rerunning a complete grid starts no
kernel and no cluster and takes well under a second. Changing the notebook's
code does not invalidate a cell: use ``--force``.

Failures
--------
An exception in a notebook cell (``PapermillExecutionError``: the cell index,
error name and message are recorded), a dead kernel (``DeadKernelError``:
``os._exit``, ``SIGKILL``, the out-of-memory killer) or a kernel that fails to
start is retried up to ``retries`` times (kernel-start failures, e.g. a ZMQ
port race, get 2 extra tries on top); every retry gets a fresh kernel. A cell
that still fails is recorded in the manifest and the summary table; every
other cell runs and keeps its results, and the command exits with status 1.

A worker that dies (killed, out of memory, node lost) never makes a finished
cell run again: the grid releases each cell's Dask future as soon as its
result is in (so the scheduler has nothing to recompute), and a task that
Dask reruns anyway (its result was still on the dead worker) finds the
cell's ``job_done.json`` of this run and returns it without running. The
cell that was running on the dead worker is rerun elsewhere; its lost
attempt stays recorded (``status: lost``, its log kept) and counted in
``attempts`` / ``lost_attempts``.

Kernels, models and memory
--------------------------
Each worker runs its cells in **one kernel**, one after the other
(:mod:`ptyanalysis.pipeline.kernels`: namespace cleared, working directory
set, between notebooks; ``--fresh-kernels`` for a kernel per cell), so the
imports and the comparison job's model cache
(:mod:`ptyanalysis.pipeline.modelcache`) survive from cell to cell: a model
is loaded once per worker. Cells are placed so that the cells sharing models
(same dose and view; the Baseline of a dose) go to the same worker
(:func:`assign_workers`), and each worker runs its share in grid order (Dask
task priorities), one (dose, view) group after the other; an idle worker may
still take queued cells. The kernels'
own output (TensorFlow's C++ start-up lines, ipykernel's log) goes to
``HUB/analysis/logs/kernels/``, not the terminal.

The number of workers is the CPU count (or ``--workers``) lowered until the
cells' estimated peaks fit in memory (:func:`plan_memory`): a cell's own
measured peak from an earlier attempt x 1.25, else the largest measured on
the other cells, else an estimate from the hub's model and dataset files,
else 1 GiB; the budget is 85 % of the machine's memory (cgroup limits
included) or ``--memory GB``. On a cluster whose workers declare a
``MEMORY`` resource (``dask worker ... --resources MEMORY=16e9``), each cell
reserves its estimate of it.

Parallel execution on Dask
--------------------------
By default the cells run on a ``dask.distributed.LocalCluster`` with
``processes=True``, ``threads_per_worker=1`` (no dashboard) and the workers
of the memory plan. ``--serial`` runs in this process without Dask
(debugging, CI), reusing one kernel. To use an existing cluster, pass its
scheduler address (bind every process to an address you choose; loopback
here, see the README's cluster section for several machines and TLS)::

    dask scheduler --host 127.0.0.1 --port 8786 --dashboard-address 127.0.0.1:8787
    dask worker tcp://127.0.0.1:8786 --host 127.0.0.1 --dashboard-address 127.0.0.1:0 --nworkers 2 --nthreads 1
    ptyanalysis grid params/study.yaml --scheduler tcp://127.0.0.1:8786

Workers must see the same file system paths (hub, notebook) and have
ptyanalysis and the ``python3`` kernel installed. On SLURM or PBS use
dask-jobqueue to start the workers as batch jobs, e.g.::

    from dask_jobqueue import SLURMCluster        # or PBSCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="16GB", walltime="02:00:00",
                           job_extra_directives=["--gres=gpu:1"])
    cluster.scale(jobs=6)
    run_grid(load_spec("params/study.yaml"), scheduler=cluster.scheduler_address)

Each kernel starts in the cell's output folder (a reused kernel is moved
there before each notebook) with ``MPLBACKEND=Agg``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import hub as _hub
from ..conventions import dose_label
from ..errors import PtyAnalysisError, did_you_mean
from ..fileutil import write_json
from ..provenance import software_versions, utc_now
from . import notebook as nbk

#: Keys a grid YAML file may contain.
SPEC_KEYS = ("hub", "notebook", "doses", "views", "splits", "parameters", "outputs", "retries",
             "timeout_s", "start_timeout_s", "kernel", "workers")
#: Required YAML keys.
REQUIRED_KEYS = ("hub", "notebook", "doses", "views", "splits")
#: Parameters the runner sets for each cell; the notebook must declare them.
CELL_PARAMETERS = ("dose", "view", "split")
#: Parameters the runner sets when the notebook declares them.
OPTIONAL_PARAMETERS = ("hub", "output_dir")
#: Completion marker of a cell.
MARKER_NAME = "job_done.json"
#: Log of a cell.
LOG_NAME = "run.log"
#: Last line of the orchestrator log of a fully successful run.
SUCCESS_SENTINEL = "SUCCESS: all cells completed"
#: Extra tries for a kernel that fails to start (port race, slow start), on top of ``retries``.
START_RETRIES = 2
#: Folder of a cell's attempts: ``attempts/<n>/`` holds each attempt's ``attempt.json``, ``run.log`` and notebook.
ATTEMPTS_DIR = "attempts"
#: Record of one attempt.
ATTEMPT_NAME = "attempt.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class GridSpec:
    """A validated grid definition (see the module docstring for the YAML schema).

    Attributes
    ----------
    hub, notebook : Path
        Absolute paths.
    doses : tuple of int
    views, splits : tuple of str
    parameters : dict
        Common notebook parameters.
    outputs : tuple of str
        Files (relative to the cell folder) each cell must produce.
    retries : int
        Extra attempts per failing cell.
    timeout_s : float or None
        Per notebook-cell execution timeout.
    start_timeout_s : float
        Kernel start timeout.
    kernel : str
        Jupyter kernel name.
    workers : int or None
        Dask workers (default ``min(cells, CPU count)``).
    source : str
        Where the spec came from (YAML path or ``"<dict>"``).
    """

    hub: Path
    notebook: Path
    doses: tuple
    views: tuple
    splits: tuple
    parameters: dict = field(default_factory=dict)
    outputs: tuple = ()
    retries: int = 1
    timeout_s: float | None = None
    start_timeout_s: float = 120.0
    kernel: str = "python3"
    workers: int | None = None
    source: str = "<dict>"


@dataclass(frozen=True)
class GridCell:
    """One (dose, view, split) cell: its parameters and file locations."""

    dose: int
    view: str
    split: str
    parameters: dict
    output_dir: Path
    output_notebook: Path
    log: Path
    param_hash: str

    @property
    def label(self) -> str:
        """``dose_<D>/<view>/<split>``."""
        return f"{dose_label(self.dose)}/{self.view}/{self.split}"


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


# --------------------------------------------------------------------------- spec


def _err(source, key, msg):
    return PtyAnalysisError(f"{source}: key {key!r}: {msg}")


def _names(source, key, value):
    if not isinstance(value, (list, tuple)) or not value:
        raise _err(source, key, f"expected a non-empty list, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str) or not _NAME_RE.match(v):
            raise _err(source, key, f"entries must be names (letters, digits, _ . + -), got {v!r}")
        if v in out:
            raise _err(source, key, f"duplicate entry {v!r}")
        out.append(v)
    return tuple(out)


def _dose(source, v):
    if isinstance(v, bool):
        raise _err(source, "doses", f"expected numbers of photons, got {v!r}")
    try:
        d = float(v)
    except (TypeError, ValueError):
        raise _err(source, "doses", f"expected numbers of photons (e.g. 1000 or 1.0e+3), got {v!r}") from None
    try:
        dose_label(d)
    except PtyAnalysisError as exc:
        raise _err(source, "doses", str(exc)) from None
    return int(round(d))


def _path(value, base: Path | None):
    p = Path(value).expanduser()
    return (p if p.is_absolute() else (base or Path.cwd()) / p).resolve()


def spec_from_dict(data: dict, source: str = "<dict>", base_dir=None) -> GridSpec:
    """Validate a grid definition given as a dict.

    Parameters
    ----------
    data : dict
        Keys of :data:`SPEC_KEYS`.
    source : str
        Name used in error messages (the YAML path).
    base_dir : str or Path, optional
        Base of relative paths (default: the current working directory).

    Returns
    -------
    GridSpec

    Raises
    ------
    PtyAnalysisError
        Unknown or missing keys, or values of the wrong kind; the message names
        the source and the key.
    """
    if not isinstance(data, dict):
        raise PtyAnalysisError(f"{source}: expected a mapping of keys ({', '.join(SPEC_KEYS)}), got {type(data).__name__}")
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise _err(source, unknown[0], f"unknown key; allowed keys: {', '.join(SPEC_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise _err(source, missing[0], "required key missing")
    base = Path(base_dir).resolve() if base_dir else None
    for key in ("hub", "notebook", "kernel"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise _err(source, key, f"expected a non-empty string, got {data[key]!r}")
    notebook = _path(data["notebook"], base)
    if notebook.suffix not in (".ipynb", ".py"):
        raise _err(source, "notebook", f"expected a .ipynb file (or a Jupytext .py source), got {data['notebook']!r}")
    if not notebook.is_file():
        raise _err(source, "notebook", f"file not found: {notebook}")
    doses_raw = data["doses"]
    if not isinstance(doses_raw, (list, tuple)) or not doses_raw:
        raise _err(source, "doses", f"expected a non-empty list, got {doses_raw!r}")
    doses = tuple(_dose(source, v) for v in doses_raw)
    if len(set(doses)) != len(doses):
        raise _err(source, "doses", f"duplicate dose in {list(doses_raw)}")
    params = data.get("parameters") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _err(source, "parameters", f"expected a mapping of parameter names to values, got {params!r}")
    outputs = data.get("outputs") or []
    if not isinstance(outputs, (list, tuple)) or not all(isinstance(o, str) and o for o in outputs):
        raise _err(source, "outputs", f"expected a list of file names, got {outputs!r}")
    for o in outputs:
        if o.startswith("/") or ".." in Path(o).parts or "\\" in o:
            raise _err(source, "outputs", f"{o!r} must be a relative path inside the cell folder")
    retries = data.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _err(source, "retries", f"expected an integer >= 0, got {retries!r}")
    num = {}
    for key, default, allow_none in (("timeout_s", None, True), ("start_timeout_s", 120.0, False)):
        v = data.get(key, default)
        if v is None and allow_none:
            num[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise _err(source, key, f"expected a positive number of seconds{' or null' if allow_none else ''}, got {v!r}")
        num[key] = float(v)
    workers = data.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise _err(source, "workers", f"expected an integer >= 1 or null, got {workers!r}")
    return GridSpec(hub=_path(data["hub"], base), notebook=notebook, doses=doses,
                    views=_names(source, "views", data["views"]), splits=_names(source, "splits", data["splits"]),
                    parameters=dict(params), outputs=tuple(outputs), retries=retries, timeout_s=num["timeout_s"],
                    start_timeout_s=num["start_timeout_s"], kernel=data.get("kernel", "python3"), workers=workers,
                    source=source)


def load_spec(path, base_dir=None) -> GridSpec:
    """Read and validate a grid YAML file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``params/<study>.yaml``.
    base_dir : str or Path, optional
        Base of relative paths (default: the current working directory).

    Returns
    -------
    GridSpec

    Raises
    ------
    PtyAnalysisError
        Missing file, invalid YAML, or a bad key (named in the message).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PtyAnalysisError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PtyAnalysisError(f"{path}: invalid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise PtyAnalysisError(f"{path}: not UTF-8 text ({exc}); save the grid file as UTF-8") from None
    return spec_from_dict(data, source=str(path), base_dir=base_dir)


# --------------------------------------------------------------------------- parameters


def validate_parameters(spec: GridSpec) -> dict:
    """Check the spec's parameters against the notebook's parameters cell, before anything runs.

    The declarations are read and the values checked by the one mechanism of
    :mod:`ptyanalysis.pipeline.notebook` (the rules of
    :func:`~ptyanalysis.pipeline.notebook.check_value`).

    Parameters
    ----------
    spec : GridSpec

    Returns
    -------
    dict
        The declared parameters (``{name: Parameter}``, see
        :func:`ptyanalysis.pipeline.notebook.declared_parameters`).

    Raises
    ------
    PtyAnalysisError
        The notebook does not declare ``dose``, ``view`` or ``split``; a common
        parameter is unknown to the notebook (with a "did you mean") or
        reserved; a value's type does not fit the declaration.
    """


    declared = nbk.declared_parameters(spec.notebook)
    missing = [p for p in CELL_PARAMETERS if p not in declared]
    if missing:
        raise PtyAnalysisError(f"{spec.notebook}: the parameters cell must declare {', '.join(CELL_PARAMETERS)} "
                               f"(missing: {', '.join(missing)}); the grid sets them for each cell")
    reserved = [k for k in spec.parameters if k in CELL_PARAMETERS + OPTIONAL_PARAMETERS]
    if reserved:
        raise _err(spec.source, "parameters", f"{reserved[0]!r} is set by the grid runner for each cell; remove it")
    nbk.validate_parameters(spec.notebook, dict(spec.parameters), source=f"{spec.source}: key 'parameters'",
                            declared=declared)
    for name, values in (("dose", spec.doses), ("view", spec.views), ("split", spec.splits)):
        nbk.validate_parameters(spec.notebook, {name: values[0]}, source=f"{spec.source}: key '{name}s'",
                                declared=declared)
    return declared


def _param_hash(notebook_name: str, params: dict) -> str:
    blob = json.dumps({"notebook": notebook_name, "parameters": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def expand(spec: GridSpec, declared: dict | None = None) -> list[GridCell]:
    """Expand a spec into its cells (dose-major, then view, then split).

    Parameters
    ----------
    spec : GridSpec
    declared : dict, optional
        Output of :func:`validate_parameters` (read from the notebook when omitted).

    Returns
    -------
    list of GridCell
    """
    declared = validate_parameters(spec) if declared is None else declared
    cells = []
    for d in spec.doses:
        for v in spec.views:
            for s in spec.splits:
                out = _hub.analysis_dir(spec.hub, d, v, s)
                params = dict(spec.parameters)
                params.update({"dose": d, "view": v, "split": s})
                if "hub" in declared:
                    params["hub"] = str(spec.hub)
                if "output_dir" in declared:
                    params["output_dir"] = str(out)
                executed = spec.notebook.stem + ".ipynb"  # a Jupytext source executes to an .ipynb
                cells.append(GridCell(d, v, s, params, out, out / executed, out / LOG_NAME,
                                      _param_hash(executed, params)))
    return cells


# --------------------------------------------------------------------------- completion


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


def _is_start_failure(exc) -> bool:
    name = type(exc).__name__
    msg = str(exc).lower()
    return name in ("ZMQError",) or (isinstance(exc, (RuntimeError, TimeoutError)) and "kernel" in msg
                                     and "died" not in msg)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


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
        (relative to the cell folder) and, once finished, ``peak_rss_bytes``.
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
    root = cell.output_dir / ATTEMPTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    n = 1 + max((int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit()), default=0)
    while True:
        try:
            (root / str(n)).mkdir()
            break
        except FileExistsError:
            n += 1
    from .kernels import host_info

    rec = {"n": n, "run_id": run_id, "status": "running", "started_at": utc_now(), **host_info(),
           "log": f"{ATTEMPTS_DIR}/{n}/{LOG_NAME}"}
    write_json(root / str(n) / ATTEMPT_NAME, rec)
    return n, root / str(n), rec


def _write_cell_log(cell: GridCell) -> None:
    """``run.log``: every attempt's log of the cell, oldest first, each under a header (atomic)."""
    from ..fileutil import write_text

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
    import shutil

    from ..fileutil import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


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
    from papermill.exceptions import PapermillExecutionError

    from .kernels import KernelPool, PeakMemory, register_engine, worker_pool

    t0 = time.perf_counter()
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    marker = cell.output_dir / MARKER_NAME
    done = _read_json(marker)
    if done is not None and done.get("run_id") == settings.run_id and cell_status(cell)[0]:
        return _skipped_result(cell, status="success")  # finished earlier in this run: final
    marker.unlink(missing_ok=True)
    # attempts of this run that are still "running" belonged to a worker that stopped
    for a in cell_attempts(cell, settings.run_id):
        if a.get("status") == "running":
            write_json(cell.output_dir / ATTEMPTS_DIR / str(a["n"]) / ATTEMPT_NAME,
                       {**a, "status": "lost", "error": "its worker stopped before the attempt finished"})
    own_pool = None
    if pool is None:
        pool = worker_pool()
    if pool is None:
        pool = own_pool = KernelPool(reuse=False)
    engine = register_engine()
    err: dict = {}
    tries = start_fails = 0
    pm_s = 0.0
    peak = None
    log_dir = Path(settings.kernel_log_dir) if settings.kernel_log_dir else None
    try:
        while tries <= settings.retries:
            tries += 1
            n, adir, rec = _new_attempt(cell, settings.run_id)
            nb_out = adir / cell.output_notebook.name
            with open(adir / LOG_NAME, "w", encoding="utf-8") as log:
                log.write(f"=== attempt {n} at {utc_now()}: {Path(settings.notebook).name} "
                          f"dose={cell.dose} view={cell.view} split={cell.split} (run {settings.run_id})\n")
                log.flush()
                t1 = time.perf_counter()
                kernel = None
                try:
                    kernel, reused = pool.acquire(settings.kernel, cell.output_dir, settings.start_timeout_s, log_dir)
                    log.write(f"--- kernel pid {kernel.pid}: " + (f"reused (cell {kernel.cells + 1} on it)" if reused
                              else f"started in {kernel.start_s:.1f} s")
                              + (f"; its process output: {kernel.log_path}" if kernel.log_path else "") + "\n")
                    log.flush()
                    with PeakMemory(kernel.pid) as mem:
                        try:
                            # the one papermill runner, on this worker's kernel (parameters were
                            # validated once for the whole grid)
                            nbk.execute(settings.notebook, nb_out, parameters=cell.parameters,
                                        cwd=cell.output_dir, kernel=settings.kernel, log=log,
                                        timeout=settings.timeout_s, start_timeout=settings.start_timeout_s,
                                        validate=False, engine_name=engine, km=kernel.km)
                        finally:
                            kernel.cells += 1
                    peak = mem.peak
                    rec["peak_rss_bytes"], rec["peak_rss_method"] = mem.peak, mem.method
                except PapermillExecutionError as exc:
                    err = {"error_name": exc.ename, "error_value": str(exc.evalue), "cell_index": exc.cell_index,
                           "exec_count": exc.exec_count}
                except Exception as exc:  # DeadKernelError, kernel start failures, timeouts, I/O
                    err = {"error_name": type(exc).__name__, "error_value": str(exc)}
                    if kernel is None and _is_start_failure(exc) and start_fails < START_RETRIES:
                        start_fails += 1
                        tries -= 1
                        log.write(f"--- kernel start failed ({err['error_name']}: {err['error_value']}); retrying\n")
                        write_json(adir / ATTEMPT_NAME, {**rec, "status": "failed", "finished_at": utc_now(),
                                                         "error": f"kernel start: {err['error_name']}"})
                        pool.discard()
                        time.sleep(0.5 + start_fails)
                        continue
                else:
                    pm_s += time.perf_counter() - t1
                    missing = [o for o in settings.outputs
                               if not (cell.output_dir / o).is_file() or (cell.output_dir / o).stat().st_size == 0]
                    if not missing:
                        log.write(f"=== success after {tries} attempt(s) in this call"
                                  + (f"; peak memory {peak / 2**20:.0f} MiB ({rec['peak_rss_method']})" if peak else "")
                                  + "\n")
                        log.flush()
                        _copy_atomic(nb_out, cell.output_notebook)
                        write_json(adir / ATTEMPT_NAME, {**rec, "status": "success", "finished_at": utc_now()})
                        _write_cell_log(cell)
                        files = {p: (cell.output_dir / p).stat().st_size
                                 for p in (cell.output_notebook.name, *settings.outputs, LOG_NAME)}
                        mine = cell_attempts(cell, settings.run_id)
                        elapsed = time.perf_counter() - t0
                        write_json(marker, {"param_hash": cell.param_hash, "parameters": cell.parameters,
                                            "notebook": settings.notebook, "files": files, "attempts": len(mine),
                                            "attempt_numbers": [a["n"] for a in mine],
                                            "lost_attempts": sum(a.get("status") == "lost" for a in mine),
                                            "run_id": settings.run_id, "elapsed_s": round(elapsed, 3),
                                            "papermill_s": round(pm_s, 3), "peak_rss_bytes": peak,
                                            "peak_rss_method": rec.get("peak_rss_method"),
                                            "host": rec["host"], "worker": rec["worker"], "finished_at": utc_now()})
                        return _skipped_result(cell, status="success", elapsed_s=elapsed)
                    err = {"error_name": "MissingOutputs",
                           "error_value": f"the notebook finished but did not write: {', '.join(missing)}"}
                log.write(f"--- attempt {n} failed: {err['error_name']}: {err['error_value']}\n")
                log.flush()
            write_json(adir / ATTEMPT_NAME, {**rec, "status": "failed", "finished_at": utc_now(),
                                             "error": f"{err['error_name']}: {err['error_value']}"[:2000]})
            pool.discard()  # a failed attempt leaves the kernel in an unknown state: the retry gets a fresh one
    finally:
        if own_pool is not None:
            own_pool.close()
    _write_cell_log(cell)
    failed_nb = nbk.failed_path(nb_out)
    if failed_nb.is_file():  # the failed attempt's notebook, with its traceback, where the cell's notebook goes
        _copy_atomic(failed_nb, cell.output_notebook)
    mine = cell_attempts(cell, settings.run_id)
    return CellResult(cell.dose, cell.view, cell.split, "failed", cell.output_dir, len(mine),
                      time.perf_counter() - t0, pm_s, err.get("error_name"), err.get("error_value"),
                      err.get("cell_index"), err.get("exec_count"), peak_rss_bytes=peak,
                      lost_attempts=sum(a.get("status") == "lost" for a in mine))


# --------------------------------------------------------------------------- the grid


class _Log:
    """Append-only orchestrator log (one file per run), echoed to stdout when ``echo``.

    While a progress bar is shown, echoed lines go through ``tqdm.write`` so
    they do not break it.
    """

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo
        self.bar = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"{utc_now()} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.echo:
            if self.bar is not None:
                self.bar.write(line)
            else:
                print(line, flush=True)


class _Progress:
    """Progress over the cells to run: a tqdm bar on a terminal, ``[k/n]`` in every cell's log line otherwise."""

    def __init__(self, total: int, log: _Log, stream=None):
        import sys

        self.total, self.done, self.log = total, 0, log
        stream = stream if stream is not None else sys.stdout
        self.bar = None
        if log.echo and total and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", desc="grid", file=stream, dynamic_ncols=True)
            log.bar = self.bar

    def cell(self, label: str, r: CellResult) -> None:
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {label}: {r.status} after {r.attempts} attempt(s)"
                 + (f" ({r.lost_attempts} lost with a worker)" if r.lost_attempts else "")
                 + f", {r.elapsed_s:.1f} s"
                 + (f", peak {r.peak_rss_bytes / 2**20:.0f} MiB" if r.peak_rss_bytes else "")
                 + (f" - {r.error_name}: {r.error_value}" if r.error_name else ""))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{label} {r.status}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.log.bar = None


def _log_path(hub: Path) -> Path:
    logdir = _hub.logs_dir(hub)
    stamp = utc_now().replace("-", "").replace(":", "")
    p = logdir / f"grid_{stamp}.log"
    i = 1
    while p.exists():
        p = logdir / f"grid_{stamp}_{i}.log"
        i += 1
    return p


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


def _skipped_result(cell: GridCell, status: str = "skipped", elapsed_s: float | None = None) -> CellResult:
    m = _read_json(cell.output_dir / MARKER_NAME) or {}
    return CellResult(cell.dose, cell.view, cell.split, status, cell.output_dir, int(m.get("attempts", 0)),
                      float(m.get("elapsed_s", 0.0)) if elapsed_s is None else elapsed_s,
                      float(m.get("papermill_s", 0.0)), peak_rss_bytes=m.get("peak_rss_bytes"),
                      lost_attempts=int(m.get("lost_attempts", 0)))


# --------------------------------------------------------------------------- memory


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
    from distributed.system import MEMORY_LIMIT

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


def files_estimate(hub, dose, view: str, split: str) -> int | None:
    """Peak memory a comparison job is expected to need from its files, bytes (None: no files).

    :data:`KERNEL_BASE_MEMORY` + 4 x the models' files (weights loaded, plus
    the framework's copies while loading) + 3 x the split's dataset (the
    diffraction, its normalised copy and the chunk being fed).
    """

    models = sum(_size(_hub.model_dir(hub, dose, arm, view)) for arm in ("Baseline", "PtychoPINN"))
    data = _size(_hub.dataset_path(hub, dose, split))
    if not models and not data:
        return None
    return KERNEL_BASE_MEMORY + 4 * models + 3 * data


def plan_memory(cells, hub, workers: int, memory_bytes: int | None = None) -> MemoryPlan:
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
            f = files_estimate(hub, c.dose, c.view, c.split)
            est[c.label], sources[c.label] = (f, "hub files") if f else (DEFAULT_CELL_MEMORY, "default")
    biggest = max(est.values(), default=DEFAULT_CELL_MEMORY)
    fit = max(1, int(budget // max(biggest, 1)))
    return MemoryPlan(budget, src, est, sources, workers, max(1, min(workers, fit)))


# --------------------------------------------------------------------------- scheduling


def assign_workers(cells, addresses) -> dict:
    """Which worker each cell goes to first, so cells that share models share a worker's kernel.

    Cells are grouped by (dose, view) (the PtychoPINN model; the Baseline is
    per dose, so consecutive groups of a dose share it) and the groups, in
    grid order, are cut into one contiguous run per worker of about equal
    numbers of cells.

    Parameters
    ----------
    cells : list of GridCell
    addresses : list of str
        Worker addresses.

    Returns
    -------
    dict
        ``{cell label: worker address}``.
    """
    addresses = list(addresses)
    if not addresses:
        return {}
    groups: dict = {}
    for c in cells:
        groups.setdefault((c.dose, c.view), []).append(c)
    per = -(-len(cells) // len(addresses))
    out, lane, filled = {}, 0, 0
    for members in groups.values():
        if filled and filled + len(members) > per and lane < len(addresses) - 1:
            lane, filled = lane + 1, 0
        for c in members:
            out[c.label] = addresses[lane]
        filled += len(members)
    return out


def _start_local_cluster(workers: int, memory_per_worker: int | None = None):
    """A LocalCluster of ``workers`` single-threaded worker processes (``MEMORY`` resource when given)."""
    import dask
    from dask.distributed import LocalCluster

    # the workers only wait on kernels: no statistical profiler (it samples every 10 ms)
    kw = {"resources": {"MEMORY": float(memory_per_worker)}} if memory_per_worker else {}
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, **kw)


def _fast_parameter_names(notebook: Path):
    """Names the notebook's parameters cell declares (read without a kernel or papermill), or None.

    Only used to decide early whether a cluster will be needed; ``None`` when unsure.
    """


    try:
        return set(nbk.declared_parameters(notebook))
    except PtyAnalysisError:
        return None


def _run_dask(cells, settings, scheduler, workers, log, plan, progress, cluster_future=None):
    from dask.distributed import Client, as_completed

    from .kernels import PLUGIN_NAME, KernelPoolPlugin

    cluster = None
    t0 = time.perf_counter()
    if scheduler:
        try:
            client = Client(scheduler, set_as_default=False)  # never leave a (failed) default client behind
        except (OSError, ValueError, TypeError) as exc:  # unreachable, timed out, unknown scheme
            log(f"FAILED: cannot connect to the Dask scheduler {scheduler}: {exc}")
            raise PtyAnalysisError(
                f"--scheduler {scheduler!r}: cannot connect ({type(exc).__name__}: {exc}); start it with "
                "`dask scheduler --host 127.0.0.1 --port 8786` and give its tcp://HOST:PORT, or omit --scheduler "
                "for a LocalCluster") from None
        backend = f"dask scheduler {scheduler}"
    else:
        per_worker = plan.budget_bytes // max(workers, 1) if plan is not None else None
        cluster = cluster_future.result() if cluster_future is not None else _start_local_cluster(workers, per_worker)
        workers = len(cluster.workers)
        client = Client(cluster, set_as_default=False)
        backend = f"dask LocalCluster ({workers} worker(s) x 1 thread)"
    log(f"backend: {backend} (ready in {time.perf_counter() - t0:.1f} s)")
    results = {}
    registered = False
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
        addresses = sorted(info)
        mem = [w.get("resources", {}).get("MEMORY") for w in info.values()]
        use_resources = bool(addresses) and all(mem) and plan is not None
        if use_resources:
            log(f"memory-aware placement: each cell reserves its estimated peak of the workers' MEMORY resource "
                f"({', '.join(f'{m / 2**30:.1f} GiB' for m in mem)})")
        elif scheduler:
            log("notice: the workers declare no MEMORY resource, so each runs as many cells at once as it has "
                "threads; start them with `--nthreads 1` or `--resources MEMORY=<bytes>` for memory-aware placement")
        client.register_plugin(KernelPoolPlugin(reuse=settings.reuse_kernel), name=PLUGIN_NAME)
        registered = True
        where = assign_workers(cells, addresses)
        pending = {}
        for i, c in enumerate(cells):
            # grid order first: a worker runs its (dose, view) groups one after the other, so the models a
            # group shares are still in its kernel's cache (Dask otherwise picks any queued cell)
            kw = {"priority": len(cells) - i}
            if c.label in where:
                kw.update(workers=[where[c.label]], allow_other_workers=True)
            if use_resources:
                kw["resources"] = {"MEMORY": float(min(plan.cell_bytes.get(c.label, plan.max_cell_bytes), max(mem)))}
            f = client.submit(run_cell, c, settings, pure=False,
                              key=f"cell-{c.label.replace('/', '-')}-{time.time_ns()}", **kw)
            pending[f.key] = (f, c)
        for f in as_completed([f for f, _ in pending.values()], loop=client.loop):
            _, c = pending.pop(f.key)
            try:
                r = f.result()
            except Exception as exc:  # the task failed on every worker it was given (KilledWorker) or similar
                mine = cell_attempts(c, settings.run_id)
                r = CellResult(c.dose, c.view, c.split, "failed", c.output_dir, len(mine), 0.0, 0.0,
                               type(exc).__name__, str(exc),
                               lost_attempts=sum(a.get("status") in ("lost", "running") for a in mine))
            # the result is in (and the cell's files are final): release the future, so that losing the
            # worker that holds it can never make the scheduler compute it again
            f.release()
            del f
            results[c.label] = r
            progress.cell(c.label, r)
    finally:
        t1 = time.perf_counter()
        if registered and cluster is None:
            try:  # shuts the kernels down on the workers of an external cluster
                client.unregister_worker_plugin(PLUGIN_NAME)
            except Exception as exc:  # noqa: BLE001 - a worker gone meanwhile
                log(f"notice: could not remove the kernel plugin from every worker ({type(exc).__name__}: {exc})")
        client.close()
        if cluster is not None:
            cluster.close()
        log(f"dask client{' and cluster' if cluster is not None else ''} closed in {time.perf_counter() - t1:.1f} s")
    return results, backend


def _job_key(d: dict) -> tuple:
    try:
        dose = float(d.get("dose"))
    except (TypeError, ValueError):
        dose = d.get("dose")
    return (dose, d.get("view"), d.get("split"))


def merge_manifest(old: dict | None, new: dict) -> dict:
    """Merge a grid run's manifest into the hub's existing one.

    The cells of ``new`` replace their entries in ``old`` (matched by dose,
    view and split); every other job of ``old`` is kept as it was, so a
    rerun of a subset of the cells never drops the rest of the study. The
    totals (``n_jobs``, ``n_success``, ``n_failed``) are recounted over the
    merged jobs; ``n_executed`` / ``n_skipped`` describe this run;
    ``grid`` is the union of both grids; ``merged`` says what was kept.

    Parameters
    ----------
    old : dict or None
        The existing manifest (None, or not a manifest: ``new`` is returned).
    new : dict
        This run's manifest (:func:`_manifest`).

    Returns
    -------
    dict
    """
    if (not isinstance(old, dict) or not isinstance(old.get("jobs"), list)
            or not isinstance(old.get("execution_results"), list)):
        return new
    ours = {_job_key(j) for j in new["jobs"]}
    old_exec = {_job_key(e): e for e in old["execution_results"] if isinstance(e, dict)}
    kept_jobs = [j for j in old["jobs"] if isinstance(j, dict) and _job_key(j) not in ours]
    jobs, execs = [], []
    new_exec = {_job_key(e): e for e in new["execution_results"]}
    by_key = {_job_key(j): j for j in new["jobs"]}
    placed = set()
    for j in old["jobs"]:  # the study's order, with this run's cells in their places
        if not isinstance(j, dict):
            continue
        k = _job_key(j)
        if k in ours:
            jobs.append(by_key[k])
            execs.append(new_exec[k])
            placed.add(k)
        else:
            jobs.append(j)
            execs.append(old_exec.get(k, {"dose": j.get("dose"), "view": j.get("view"), "split": j.get("split"),
                                          "status": "unknown", "returncode": 1,
                                          "error": "no execution result in the previous manifest"}))
    for j in new["jobs"]:
        k = _job_key(j)
        if k not in placed:
            jobs.append(j)
            execs.append(new_exec[k])
    n_ok = sum(int(e.get("returncode", 1)) == 0 for e in execs)
    grid = {}
    for axis in ("doses", "views", "splits"):
        vals = list((old.get("grid") or {}).get(axis) or [])
        grid[axis] = vals + [v for v in new["grid"][axis] if v not in vals]
    out = dict(new)
    out.update({"n_jobs": len(jobs), "n_success": n_ok, "n_failed": len(jobs) - n_ok, "grid": grid,
                "jobs": jobs, "execution_results": execs,
                "merged": {"previous_generated_at": old.get("generated_at"), "kept_jobs": len(kept_jobs),
                           "replaced_jobs": len(placed), "added_jobs": len(new["jobs"]) - len(placed),
                           "this_run_jobs": len(new["jobs"])}})
    return out


def check_hub(spec: GridSpec) -> list[str]:
    """Check the spec's doses, views and splits against what the hub holds, before anything runs.

    Parameters
    ----------
    spec : GridSpec

    Returns
    -------
    list of str
        Notices (e.g. the hub has no datasets yet, so nothing could be checked).

    Raises
    ------
    PtyAnalysisError
        A dose, view or split the hub has no data for (when the hub has
        datasets), naming the YAML key, what the hub holds and the closest name.
    """

    data = _hub.datasets_root(spec.hub)
    if not data.is_dir():
        return [(f"{spec.hub} has no datasets yet (no data/phase_c): doses, views and splits not checked "
                 "against it (the notebook may create them)")]
    have_doses = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name.startswith("dose_"))

    def bad(key, value, have, what):
        hint = did_you_mean(value, have)
        return _err(spec.source, key, f"{what} {value!r} is not in the hub {spec.hub} (it has: "
                                      f"{', '.join(map(str, have)) or 'none'}){hint}")

    for d in spec.doses:
        if dose_label(d) not in have_doses:
            raise bad("doses", dose_label(d), have_doses, "dose")
    views, splits = set(), set()
    for d in spec.doses:
        dose_dir = data / dose_label(d)
        splits.update(p.name[len("patched_"):-len(".npz")] for p in dose_dir.glob("patched_*.npz"))
        vj = _read_json(dose_dir / "views.json")
        if vj and isinstance(vj.get("views"), dict):
            views.update(vj["views"])
        for sub in (_hub.models_root(spec.hub, d), _hub.iterative_root(spec.hub, d)):
            if sub.is_dir():
                views.update(p.name for p in sub.iterdir() if p.is_dir() and p.name != "baseline")
    notices = []
    if views:
        for v in spec.views:
            if v not in views:
                raise bad("views", v, sorted(views), "view")
    else:
        notices.append(f"{spec.hub} names no views (no views.json, models or reconstructions): views not checked")
    if splits:
        for s in spec.splits:
            if s not in splits:
                raise bad("splits", s, sorted(splits), "split")
    return notices


def _manifest(spec, cells, results, wall_s, backend, declared, settings=None, plan=None) -> dict:
    analysis = _hub.analysis_root(spec.hub)
    jobs, execs = [], []
    for c in cells:
        r = results[c.label]
        rel = c.output_dir.relative_to(analysis).as_posix()
        jobs.append({"dose": c.dose, "view": c.view, "split": c.split, "output_dir": rel,
                     "notebook": f"{rel}/{c.output_notebook.name}", "parameters": c.parameters,
                     "param_hash": c.param_hash, "outputs": list(spec.outputs)})
        e = {"dose": c.dose, "view": c.view, "split": c.split, "status": r.status, "returncode": r.returncode,
             "log_path": f"{rel}/{LOG_NAME}", "output_notebook": f"{rel}/{c.output_notebook.name}",
             "attempts": r.attempts, "lost_attempts": r.lost_attempts, "elapsed_s": round(r.elapsed_s, 3),
             "peak_rss_bytes": r.peak_rss_bytes}
        if settings is not None and r.status != "skipped":
            e["attempt_logs"] = [f"{rel}/{a['log']}" for a in cell_attempts(c, settings.run_id) if a.get("log")]
        if r.status == "failed":
            e.update({"error_name": r.error_name, "error_value": r.error_value, "cell_index": r.cell_index,
                      "error": f"{r.error_name}: {r.error_value}"})
        execs.append(e)
    n_ok = sum(results[c.label].returncode == 0 for c in cells)
    return {
        "generated_at": utc_now(), "spec": spec.source, "hub": str(spec.hub), "notebook": str(spec.notebook),
        "n_jobs": len(cells), "n_executed": sum(results[c.label].status in ("success", "failed") for c in cells),
        "n_skipped": sum(results[c.label].status == "skipped" for c in cells),
        "n_success": n_ok, "n_failed": len(cells) - n_ok,
        "filters": {"dose": None, "view": None, "split": None},
        "grid": {"doses": list(spec.doses), "views": list(spec.views), "splits": list(spec.splits)},
        "parameters": spec.parameters, "declared_parameters": sorted(declared), "retries": spec.retries,
        "backend": backend, "wall_s": round(wall_s, 3), "software_versions": software_versions(),
        "run_id": settings.run_id if settings is not None else None,
        "reuse_kernel": settings.reuse_kernel if settings is not None else None,
        "memory": plan.to_dict() if plan is not None else None,
        "jobs": jobs, "execution_results": execs,
    }


def run_grid(spec: GridSpec, scheduler: str | None = None, workers: int | None = None, force: bool = False,
             retries: int | None = None, dry_run: bool = False, serial: bool = False,
             echo: bool = False, memory_bytes: int | None = None, reuse_kernel: bool = True) -> GridResult:
    """Run the notebook over every cell of the grid.

    Parameters
    ----------
    spec : GridSpec
        From :func:`load_spec` or :func:`spec_from_dict`.
    scheduler : str, optional
        Address of a running Dask scheduler (default: start a LocalCluster).
    workers : int, optional
        LocalCluster workers (default ``spec.workers`` or ``min(cells to run, CPU count)``),
        lowered when the cells' estimated peak memory does not fit (:func:`plan_memory`).
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
        Memory the grid may use (default: :func:`machine_memory`).
    reuse_kernel : bool
        Run a worker's cells in one kernel, one after the other
        (:mod:`ptyanalysis.pipeline.kernels`); False: a fresh kernel per cell.

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
            from concurrent.futures import ThreadPoolExecutor

            n = min(workers or spec.workers or default_workers(len(pre_todo)), len(pre_todo))
            plan = plan_memory(pre_todo, spec.hub, n, memory_bytes)
            pool = ThreadPoolExecutor(1)
            cluster_future = pool.submit(_start_local_cluster, plan.workers, plan.budget_bytes // plan.workers)
    try:
        return _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future, plan,
                         memory_bytes, reuse_kernel)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
            if cluster_future.exception() is None and cluster_future.result().status.name != "closed":
                cluster_future.result().close()  # not used (validation failed or nothing to run)


def _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future, plan, memory_bytes,
              reuse_kernel) -> GridResult:
    import secrets

    from .kernels import KernelPool

    declared = validate_parameters(spec)
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
        if not todo:
            backend = "none (all cells complete)"
        elif serial:
            backend = "serial (in process)"
            log(f"backend: {backend}")
            kernels = KernelPool(reuse=reuse_kernel)
            try:
                for c in todo:
                    r = run_cell(c, settings, kernels)
                    results[c.label] = r
                    progress.cell(c.label, r)
            finally:
                kernels.close()
        else:
            n = min(workers or spec.workers or default_workers(len(todo)), len(todo))
            if plan is None or set(plan.cell_bytes) != {c.label for c in todo}:
                plan = plan_memory(todo, spec.hub, n, memory_bytes)
            log(f"memory: budget {plan.budget_bytes / 2**30:.1f} GiB ({plan.budget_source}); largest cell estimate "
                f"{plan.max_cell_bytes / 2**30:.2f} GiB ({', '.join(sorted(set(plan.sources.values())))}); "
                f"{plan.workers} worker(s)"
                + (f" instead of {plan.requested_workers}: more would not fit in memory" if plan.limited else ""))
            got, backend = _run_dask(todo, settings, scheduler, plan.workers, log, plan, progress, cluster_future)
            results.update(got)
    finally:
        progress.close()
    wall = time.perf_counter() - t0
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


# --------------------------------------------------------------------------- benchmark


def _write_work_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("dose = 1000\nview = 'dense'\nsplit = 'train'\nwork_s = 5.0\nkind = 'cpu'",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\nt = time.perf_counter()\nx = 0\n"
                                  "if kind == 'sleep':\n    time.sleep(work_s)\n"
                                  "while time.perf_counter() - t < work_s:\n    x += sum(range(2000))\n"
                                  "open('result.txt', 'w').write(str(x))"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def bench_grid(work_s: float = 5.0, n_cells: int = 4, workers: int = 2, kind: str = "cpu", root=None) -> dict:
    """Time a grid of busy cells sequentially and on a LocalCluster.

    Parameters
    ----------
    work_s : float
        Work per cell, seconds.
    kind : str
        ``"cpu"``: a pure-Python loop (needs one free core per worker to
        scale); ``"sleep"``: ``time.sleep`` (measures the runner's concurrency
        alone, meaningful on a machine busy with other work).
    n_cells : int
        Cells (doses x 1 view x 1 split).
    workers : int
        LocalCluster workers of the parallel run.
    root : str or Path, optional
        Scratch folder (default: a temporary one, removed afterwards).

    Returns
    -------
    dict
        ``sequential_s`` (serial backend), ``parallel_s`` (LocalCluster, cluster
        start included), ``ratio`` = parallel / sequential,
        ``overhead_s_mean`` / ``overhead_s_max`` (runner time per cell outside
        papermill, kernel start excluded), ``papermill_s_mean`` (kernel start +
        execution), ``resume_s`` (rerun of the complete grid).
    """
    import shutil
    import tempfile

    tmp = Path(root) if root else Path(tempfile.mkdtemp(prefix="ptyanalysis-bench-grid-"))
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        nb = _write_work_notebook(tmp / "work.ipynb")
        spec = spec_from_dict({"hub": str(tmp / "hub"), "notebook": str(nb), "doses": [1000 * (i + 1) for i in range(n_cells)],
                               "views": ["dense"], "splits": ["train"], "parameters": {"work_s": float(work_s), "kind": kind},
                               "outputs": ["result.txt"], "retries": 0}, source="bench_grid")
        seq = run_grid(spec, serial=True, force=True)
        par = run_grid(spec, workers=workers, force=True)
        t = time.perf_counter()
        again = run_grid(spec, workers=workers)
        resume_s = time.perf_counter() - t
        assert seq.ok and par.ok and again.n_skipped == n_cells, (seq.table(), par.table(), again.table())
        over = [r.overhead_s for r in seq.results + par.results]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {"n_cells": n_cells, "work_s": work_s, "kind": kind, "workers": workers, "cpu_count": os.cpu_count(),
                "load_avg_1min": load,
                "sequential_s": round(seq.wall_s, 2), "parallel_s": round(par.wall_s, 2),
                "ratio": round(par.wall_s / seq.wall_s, 3),
                "overhead_s_mean": round(sum(over) / len(over), 3), "overhead_s_max": round(max(over), 3),
                "papermill_s_mean": round(sum(r.papermill_s for r in seq.results) / n_cells, 2),
                "resume_s": round(resume_s, 3)}
    finally:
        if root is None:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- CLI


def configure_parser(parser) -> None:
    """Add the ``grid`` command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("spec", help="grid YAML file, e.g. params/study.yaml (schema: see `pydoc ptyanalysis.pipeline.grid`)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: min(cells, CPU count))")
    parser.add_argument("--force", action="store_true", help="rerun cells that are already complete")
    parser.add_argument("--retries", type=int, default=None, help="extra attempts per failing cell (overrides the YAML)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the cells; run nothing, write nothing")
    parser.add_argument("--serial", action="store_true", help="run the cells one by one in this process (no Dask)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the orchestrator log")
    parser.add_argument("--memory", type=float, default=None, metavar="GB",
                        help="memory the grid may use, GB (default: 85%% of what the machine has available); "
                             "cells run at once only as far as their measured or estimated peaks fit")
    parser.add_argument("--fresh-kernels", action="store_true",
                        help="start a fresh kernel for every cell (default: each worker reuses one kernel, so "
                             "imports and loaded models are reused across its cells)")


def run_cli(args) -> int:
    """Run ``ptyanalysis grid``: 0 when every cell is complete, 1 when any failed.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`configure_parser`).

    Returns
    -------
    int
        0 when every cell is complete (or a dry run), 1 when a cell failed.
    """
    if args.workers is not None and args.workers < 1:
        raise PtyAnalysisError(f"--workers must be >= 1, got {args.workers}")
    spec = load_spec(args.spec)
    memory = getattr(args, "memory", None)
    res = run_grid(spec, scheduler=args.scheduler, workers=args.workers, force=args.force, retries=args.retries,
                   dry_run=args.dry_run, serial=args.serial, echo=not args.quiet and not args.dry_run,
                   memory_bytes=None if memory is None else int(memory * 1e9),
                   reuse_kernel=not getattr(args, "fresh_kernels", False))
    if args.dry_run:
        for n in res.notices:
            print(f"notice: {n}")
        for r in res.results:
            print(f"{r.label}: {'complete (skip)' if r.status == 'skipped' else 'would run'}")
        print(f"{sum(r.status == 'pending' for r in res.results)} of {len(res.results)} cell(s) would run")
        return 0
    if args.quiet:  # otherwise the echoed log already ended with the table
        print(res.table())
    print(f"manifest: {res.manifest_path}\nlog: {res.log_path}")
    return 0 if res.ok else 1

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
``00_compare_arms.ipynb``), ``run.log`` (kernel stdout/stderr, one section
per attempt) and, written last and atomically after papermill succeeded and
every ``outputs`` file is present and non-empty, ``job_done.json`` (parameter
hash, files with sizes, attempts, timings). The grid writes
``HUB/analysis/comparison_manifest.json`` (the study's manifest: ``n_jobs,
n_success, n_failed, jobs, execution_results`` ...) and an orchestrator log
``HUB/analysis/logs/grid_<UTC time>.log`` whose last line is
``SUCCESS: all cells completed`` when every cell is complete.

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
port race, get 2 extra tries on top). A cell that still fails is recorded in
the manifest and the summary table; every other cell runs and keeps its
results, and the command exits with status 1.

Parallel execution on Dask
--------------------------
By default the cells run on a ``dask.distributed.LocalCluster`` with
``processes=True``, ``threads_per_worker=1`` and ``min(cells, CPU count)``
workers (``--workers N`` to change). Each worker runs one papermill execution
at a time, and each execution starts its own kernel process, so a worker
needs one core and the notebook's memory. ``--serial`` runs in this process
without Dask (debugging, CI). To use an existing cluster, pass its scheduler
address::

    # on the scheduler node
    dask scheduler --port 8786
    # on each compute node (one thread per worker: papermill's cwd handling and
    # MPLBACKEND are per process)
    dask worker tcp://SCHEDULER:8786 --nworkers 4 --nthreads 1
    # then
    ptyanalysis grid params/study.yaml --scheduler tcp://SCHEDULER:8786

Workers must see the same file system paths (hub, notebook) and have
ptyanalysis and the ``python3`` kernel installed. On SLURM or PBS use
dask-jobqueue to start the workers as batch jobs, e.g.::

    from dask_jobqueue import SLURMCluster        # or PBSCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="16GB", walltime="02:00:00",
                           job_extra_directives=["--gres=gpu:1"])
    cluster.scale(jobs=6)
    run_grid(load_spec("params/study.yaml"), scheduler=cluster.scheduler_address)

Each kernel gets the cell's output folder as its working directory (through
nbclient's ``resources``, not ``os.chdir``, which is not thread-safe) and
``MPLBACKEND=Agg``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..conventions import dose_label
from ..errors import PtyAnalysisError
from ..fileutil import write_json
from ..provenance import software_versions, utc_now

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
    from ..pipeline import notebook as nbk

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
                out = spec.hub / "analysis" / dose_label(d) / v / s
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


def run_cell(cell: GridCell, settings: RunSettings) -> CellResult:
    """Execute one cell with papermill, retrying; never raises for a notebook failure.

    Runs on a Dask worker (or in-process with ``--serial``). Writes the
    executed notebook and ``run.log`` into the cell folder and, on success,
    ``job_done.json`` last.

    Parameters
    ----------
    cell : GridCell
    settings : RunSettings

    Returns
    -------
    CellResult
        ``"success"`` or ``"failed"`` with the last error's name, message and
        notebook cell index.
    """
    from papermill.exceptions import PapermillExecutionError

    from ..pipeline.notebook import execute

    t0 = time.perf_counter()
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    marker = cell.output_dir / MARKER_NAME
    marker.unlink(missing_ok=True)
    err: dict = {}
    attempts = start_fails = 0
    pm_s = 0.0
    with open(cell.log, "w", encoding="utf-8") as log:
        while attempts <= settings.retries:
            attempts += 1
            log.write(f"=== attempt {attempts} at {utc_now()}: {Path(settings.notebook).name} "
                      f"dose={cell.dose} view={cell.view} split={cell.split}\n")
            log.flush()
            t1 = time.perf_counter()
            try:
                # the one runner: quiet kernel, atomic output, a failed run kept as <name>.failed.ipynb
                execute(settings.notebook, cell.output_notebook, cell.parameters, cwd=cell.output_dir,
                        kernel=settings.kernel, timeout=settings.timeout_s, start_timeout=settings.start_timeout_s,
                        log=log, validate=False)
            except PapermillExecutionError as exc:
                err = {"error_name": exc.ename, "error_value": str(exc.evalue), "cell_index": exc.cell_index,
                       "exec_count": exc.exec_count}
            except Exception as exc:  # DeadKernelError, kernel start failures, timeouts, I/O
                err = {"error_name": type(exc).__name__, "error_value": str(exc)}
                if _is_start_failure(exc) and start_fails < START_RETRIES:
                    start_fails += 1
                    attempts -= 1
                    log.write(f"--- kernel start failed ({err['error_name']}: {err['error_value']}); retrying\n")
                    time.sleep(0.5 + start_fails)
                    continue
            else:
                pm_s += time.perf_counter() - t1
                missing = [o for o in settings.outputs
                           if not (cell.output_dir / o).is_file() or (cell.output_dir / o).stat().st_size == 0]
                if not missing:
                    files = {p: (cell.output_dir / p).stat().st_size
                             for p in (cell.output_notebook.name, *settings.outputs)}
                    log.write(f"=== success after {attempts} attempt(s)\n")
                    log.flush()
                    files[LOG_NAME] = max(1, cell.log.stat().st_size)
                    elapsed = time.perf_counter() - t0
                    write_json(marker, {"param_hash": cell.param_hash, "parameters": cell.parameters,
                                        "notebook": settings.notebook, "files": files, "attempts": attempts,
                                        "elapsed_s": round(elapsed, 3), "papermill_s": round(pm_s, 3),
                                        "finished_at": utc_now()})
                    return CellResult(cell.dose, cell.view, cell.split, "success", cell.output_dir, attempts,
                                      time.perf_counter() - t0, pm_s)
                err = {"error_name": "MissingOutputs",
                       "error_value": f"the notebook finished but did not write: {', '.join(missing)}"}
            log.write(f"--- attempt {attempts} failed: {err['error_name']}: {err['error_value']}\n")
            log.flush()
    return CellResult(cell.dose, cell.view, cell.split, "failed", cell.output_dir, attempts,
                      time.perf_counter() - t0, pm_s, err.get("error_name"), err.get("error_value"),
                      err.get("cell_index"), err.get("exec_count"))


# --------------------------------------------------------------------------- the grid


class _Log:
    """Append-only orchestrator log (one file per run), echoed to stdout when ``echo``."""

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo = path, echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        line = f"{utc_now()} {msg}"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self.echo:
            print(line, flush=True)


def _log_path(hub: Path) -> Path:
    logdir = hub / "analysis" / "logs"
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


def _skipped_result(cell: GridCell) -> CellResult:
    try:
        m = json.loads((cell.output_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        m = {}
    return CellResult(cell.dose, cell.view, cell.split, "skipped", cell.output_dir, int(m.get("attempts", 0)),
                      float(m.get("elapsed_s", 0.0)), float(m.get("papermill_s", 0.0)))


def _start_local_cluster(workers: int):
    """A LocalCluster of ``workers`` single-threaded worker processes."""
    import dask
    from dask.distributed import LocalCluster

    # the workers only wait on kernels: no statistical profiler (it samples every 10 ms)
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def _fast_parameter_names(notebook: Path):
    """Names the notebook's parameters cell declares (read without a kernel or papermill), or None.

    Only used to decide early whether a cluster will be needed; ``None`` when unsure.
    """
    from ..pipeline import notebook as nbk

    try:
        return set(nbk.declared_parameters(notebook))
    except PtyAnalysisError:
        return None


def _run_dask(cells, settings, scheduler, workers, log, cluster_future=None):
    from dask.distributed import Client, as_completed

    cluster = None
    t0 = time.perf_counter()
    if scheduler:
        try:
            client = Client(scheduler, set_as_default=False)  # never leave a (failed) default client behind
        except (OSError, ValueError, TypeError) as exc:  # unreachable, timed out, unknown scheme
            log(f"FAILED: cannot connect to the Dask scheduler {scheduler}: {exc}")
            raise PtyAnalysisError(
                f"--scheduler {scheduler!r}: cannot connect ({type(exc).__name__}: {exc}); start it with "
                "`dask scheduler --port 8786` and give its tcp://HOST:PORT, or omit --scheduler for a "
                "LocalCluster") from None
        backend = f"dask scheduler {scheduler}"
    else:
        cluster = cluster_future.result() if cluster_future is not None else _start_local_cluster(workers)
        workers = len(cluster.workers)
        client = Client(cluster, set_as_default=False)
        backend = f"dask LocalCluster ({workers} worker(s) x 1 thread)"
    log(f"backend: {backend} (ready in {time.perf_counter() - t0:.1f} s)")
    results = {}
    try:
        futures = {}
        for c in cells:
            f = client.submit(run_cell, c, settings, pure=False, key=f"cell-{c.label.replace('/', '-')}-{time.time_ns()}")
            futures[f] = c
        for f in as_completed(futures, loop=client.loop):
            c = futures[f]
            try:
                r = f.result()
            except Exception as exc:  # the worker process died (KilledWorker) or similar
                r = CellResult(c.dose, c.view, c.split, "failed", c.output_dir, 1, 0.0, 0.0, type(exc).__name__, str(exc))
            results[c.label] = r
            log(f"{c.label}: {r.status} after {r.attempts} attempt(s), {r.elapsed_s:.1f} s"
                + (f" - {r.error_name}: {r.error_value}" if r.error_name else ""))
    finally:
        t1 = time.perf_counter()
        client.close()
        if cluster is not None:
            cluster.close()
        log(f"dask client{' and cluster' if cluster is not None else ''} closed in {time.perf_counter() - t1:.1f} s")
    return results, backend


def _manifest(spec, cells, results, wall_s, backend, declared) -> dict:
    analysis = spec.hub / "analysis"
    jobs, execs = [], []
    for c in cells:
        r = results[c.label]
        rel = c.output_dir.relative_to(analysis).as_posix()
        jobs.append({"dose": c.dose, "view": c.view, "split": c.split, "output_dir": rel,
                     "notebook": f"{rel}/{c.output_notebook.name}", "parameters": c.parameters,
                     "param_hash": c.param_hash, "outputs": list(spec.outputs)})
        e = {"dose": c.dose, "view": c.view, "split": c.split, "status": r.status, "returncode": r.returncode,
             "log_path": f"{rel}/{LOG_NAME}", "output_notebook": f"{rel}/{c.output_notebook.name}",
             "attempts": r.attempts, "elapsed_s": round(r.elapsed_s, 3)}
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
        "jobs": jobs, "execution_results": execs,
    }


def run_grid(spec: GridSpec, scheduler: str | None = None, workers: int | None = None, force: bool = False,
             retries: int | None = None, dry_run: bool = False, serial: bool = False,
             echo: bool = False) -> GridResult:
    """Run the notebook over every cell of the grid.

    Parameters
    ----------
    spec : GridSpec
        From :func:`load_spec` or :func:`spec_from_dict`.
    scheduler : str, optional
        Address of a running Dask scheduler (default: start a LocalCluster).
    workers : int, optional
        LocalCluster workers (default ``spec.workers`` or ``min(cells to run, CPU count)``).
    force : bool
        Rerun complete cells.
    retries : int, optional
        Override ``spec.retries``.
    dry_run : bool
        Validate and report what would run; write nothing.
    serial : bool
        Run in this process, one cell after the other, without Dask.
    echo : bool
        Echo the orchestrator log to stdout.

    Returns
    -------
    GridResult
        Its manifest and log paths are set unless ``dry_run``.

    Raises
    ------
    PtyAnalysisError
        Invalid spec or parameters (before any cell runs).
    """
    t0 = time.perf_counter()
    if retries is not None:
        if retries < 0:
            raise PtyAnalysisError(f"--retries must be >= 0, got {retries}")
        spec = replace(spec, retries=retries)
    # Start the LocalCluster early, in a thread, when cells will run: the workers' start-up (and their
    # papermill import) then overlaps the parameter validation below.
    cluster_future, pool = None, None
    names = None if (dry_run or serial or scheduler) else _fast_parameter_names(spec.notebook)
    if names is not None:
        pre = expand(spec, dict.fromkeys(names))
        n_pre = len(pre) if force else sum(not cell_status(c)[0] for c in pre)
        if n_pre:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(1)
            cluster_future = pool.submit(_start_local_cluster, min(workers or spec.workers or default_workers(n_pre), n_pre))
    try:
        return _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
            if cluster_future.exception() is None and cluster_future.result().status.name != "closed":
                cluster_future.result().close()  # not used (validation failed or nothing to run)


def _run_grid(spec, t0, scheduler, workers, force, dry_run, serial, echo, cluster_future) -> GridResult:
    declared = validate_parameters(spec)
    cells = expand(spec, declared)
    status = {c.label: ((False, "forced") if force else cell_status(c)) for c in cells}
    todo = [c for c in cells if not status[c.label][0]]
    if dry_run:
        res = tuple(_skipped_result(c) if status[c.label][0] else
                    CellResult(c.dose, c.view, c.split, "pending", c.output_dir) for c in cells)
        return GridResult(spec, res, time.perf_counter() - t0, "dry run")
    log = _Log(_log_path(spec.hub), echo)
    log(f"grid started: {spec.source}; notebook {spec.notebook}; {len(cells)} cell(s), {len(todo)} to run, "
        f"{len(cells) - len(todo)} complete{' (forced rerun)' if force else ''}")
    settings = RunSettings(str(spec.notebook), spec.kernel, spec.outputs, spec.retries, spec.timeout_s,
                           spec.start_timeout_s)
    results = {c.label: _skipped_result(c) for c in cells if status[c.label][0]}
    if not todo:
        backend = "none (all cells complete)"
    elif serial:
        backend = "serial (in process)"
        log(f"backend: {backend}")
        for c in todo:
            r = run_cell(c, settings)
            results[c.label] = r
            log(f"{c.label}: {r.status} after {r.attempts} attempt(s), {r.elapsed_s:.1f} s"
                + (f" - {r.error_name}: {r.error_value}" if r.error_name else ""))
    else:
        n = workers or spec.workers or default_workers(len(todo))
        got, backend = _run_dask(todo, settings, scheduler, min(n, len(todo)), log, cluster_future)
        results.update(got)
    wall = time.perf_counter() - t0
    manifest_path = write_json(spec.hub / "analysis" / "comparison_manifest.json",
                               _manifest(spec, cells, results, wall, backend, declared))
    result = GridResult(spec, tuple(results[c.label] for c in cells), wall, backend, manifest_path, log.path)
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
    res = run_grid(spec, scheduler=args.scheduler, workers=args.workers, force=args.force, retries=args.retries,
                   dry_run=args.dry_run, serial=args.serial, echo=not args.quiet and not args.dry_run)
    if args.dry_run:
        for r in res.results:
            print(f"{r.label}: {'complete (skip)' if r.status == 'skipped' else 'would run'}")
        print(f"{sum(r.status == 'pending' for r in res.results)} of {len(res.results)} cell(s) would run")
        return 0
    if args.quiet:  # otherwise the echoed log already ended with the table
        print(res.table())
    print(f"manifest: {res.manifest_path}\nlog: {res.log_path}")
    return 0 if res.ok else 1

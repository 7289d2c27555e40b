"""The grid's YAML schema: validation, the notebook's parameters, expansion into cells, and the check against the hub.

The schema is documented with examples in ``docs/grid.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ... import hub as _hub
from ...conventions import dose_label
from ...errors import PtyAnalysisError, did_you_mean
from .. import notebook as nbk

#: Keys a grid YAML file may contain.
SPEC_KEYS = ("hub", "notebook", "doses", "views", "splits", "parameters", "outputs", "retries",
             "timeout_s", "start_timeout_s", "kernel", "workers")
#: Required YAML keys.
REQUIRED_KEYS = ("hub", "notebook", "doses", "views", "splits")
#: Parameters the runner sets for each cell; the notebook must declare them.
CELL_PARAMETERS = ("dose", "view", "split")
#: Parameters the runner sets when the notebook declares them.
OPTIONAL_PARAMETERS = ("hub", "output_dir")
#: Log of a cell.
LOG_NAME = "run.log"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class GridSpec:
    """A validated grid definition (the YAML schema: ``docs/grid.md``).

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


# --------------------------------------------------------------------------- the YAML keys


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


def _doses(source, doses_raw) -> tuple:
    if not isinstance(doses_raw, (list, tuple)) or not doses_raw:
        raise _err(source, "doses", f"expected a non-empty list, got {doses_raw!r}")
    doses = tuple(_dose(source, v) for v in doses_raw)
    if len(set(doses)) != len(doses):
        raise _err(source, "doses", f"duplicate dose in {list(doses_raw)}")
    return doses


def _path(value, base: Path | None):
    p = Path(value).expanduser()
    return (p if p.is_absolute() else (base or Path.cwd()) / p).resolve()


def _notebook(source, value, base: Path | None) -> Path:
    notebook = _path(value, base)
    if notebook.suffix not in (".ipynb", ".py"):
        raise _err(source, "notebook", f"expected a .ipynb file (or a Jupytext .py source), got {value!r}")
    if not notebook.is_file():
        raise _err(source, "notebook", f"file not found: {notebook}")
    return notebook


def _parameters_and_outputs(source, data) -> tuple[dict, tuple]:
    params = data.get("parameters") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _err(source, "parameters", f"expected a mapping of parameter names to values, got {params!r}")
    outputs = data.get("outputs") or []
    if not isinstance(outputs, (list, tuple)) or not all(isinstance(o, str) and o for o in outputs):
        raise _err(source, "outputs", f"expected a list of file names, got {outputs!r}")
    for o in outputs:
        if o.startswith("/") or ".." in Path(o).parts or "\\" in o:
            raise _err(source, "outputs", f"{o!r} must be a relative path inside the cell folder")
    return dict(params), tuple(outputs)


def _run_options(source, data) -> dict:
    """``retries``, ``timeout_s``, ``start_timeout_s`` and ``workers``, checked."""
    retries = data.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _err(source, "retries", f"expected an integer >= 0, got {retries!r}")
    out = {"retries": retries}
    for key, default, allow_none in (("timeout_s", None, True), ("start_timeout_s", 120.0, False)):
        v = data.get(key, default)
        if v is None and allow_none:
            out[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise _err(source, key, f"expected a positive number of seconds{' or null' if allow_none else ''}, got {v!r}")
        out[key] = float(v)
    workers = data.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise _err(source, "workers", f"expected an integer >= 1 or null, got {workers!r}")
    out["workers"] = workers
    return out


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
    notebook = _notebook(source, data["notebook"], base)
    doses = _doses(source, data["doses"])
    params, outputs = _parameters_and_outputs(source, data)
    options = _run_options(source, data)
    return GridSpec(hub=_path(data["hub"], base), notebook=notebook, doses=doses,
                    views=_names(source, "views", data["views"]), splits=_names(source, "splits", data["splits"]),
                    parameters=params, outputs=outputs, kernel=data.get("kernel", "python3"), source=source,
                    **options)


def load_spec(path, base_dir=None) -> GridSpec:
    """Read and validate a grid YAML file (the schema: ``docs/grid.md``).

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


# --------------------------------------------------------------------------- the notebook's parameters


def validate_grid_parameters(spec: GridSpec) -> dict:
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
        Output of :func:`validate_grid_parameters` (read from the notebook when omitted).

    Returns
    -------
    list of GridCell
    """
    declared = validate_grid_parameters(spec) if declared is None else declared
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


# --------------------------------------------------------------------------- the spec against the hub


def check_hub(spec: GridSpec) -> list[str]:
    """Check the spec's doses, views and splits against what the hub holds, before anything runs.

    What a hub holds is read by :func:`ptyanalysis.hub.hub_inventory` (the one
    rule, also behind :func:`ptyanalysis.hub.hub_grid`), for the spec's doses.

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
    if not _hub.datasets_root(spec.hub).is_dir():
        return [(f"{spec.hub} has no datasets yet (no data/phase_c): doses, views and splits not checked "
                 "against it (the notebook may create them)")]
    inventory = _hub.hub_inventory(spec.hub)
    have_doses = sorted(dose_label(d) for d in inventory)

    def bad(key, value, have, what):
        hint = did_you_mean(value, have)
        return _err(spec.source, key, f"{what} {value!r} is not in the hub {spec.hub} (it has: "
                                      f"{', '.join(map(str, have)) or 'none'}){hint}")

    for d in spec.doses:
        if d not in inventory:
            raise bad("doses", dose_label(d), have_doses, "dose")
    views = sorted({v for d in spec.doses for v in inventory[d]["views"]})
    splits = sorted({s for d in spec.doses for s in inventory[d]["splits"]})
    notices = []
    if views:
        for v in spec.views:
            if v not in views:
                raise bad("views", v, views, "view")
    else:
        notices.append(f"{spec.hub} names no views (no views.json, models or reconstructions): views not checked")
    if splits:
        for s in spec.splits:
            if s not in splits:
                raise bad("splits", s, splits, "split")
    return notices

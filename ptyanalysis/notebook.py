"""Helpers for the parameterized notebooks: strict parameters and papermill execution.

papermill only *warns* about a parameter the notebook does not declare. Here
an unknown parameter is an error, twice over:

* :func:`execute` (what ``make demo`` and the tools use) reads the notebook's
  parameters cell with ``papermill.inspect_notebook`` and refuses unknown
  names before starting a kernel;
* inside the notebook, the cell after the parameters cell calls
  :func:`check_parameters`, which fails when the injected cell defined a name
  the parameters cell did not (so running the notebook with plain
  ``papermill -p typo 1`` fails too).

Each notebook's parameters cell ends with
``_declared = declared_parameters(globals())``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import PtyAnalysisError
from .fileutil import atomic_path

#: Names every IPython namespace holds that are not parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def declared_parameters(namespace: dict) -> frozenset:
    """Names defined so far in a notebook namespace (call at the end of the parameters cell)."""
    return frozenset(k for k in namespace if not k.startswith("_") and k not in _IPYTHON_NAMES)


def check_parameters(namespace: dict, declared) -> dict:
    """Fail if a name was injected that the parameters cell did not declare.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``.
    declared : set
        :func:`declared_parameters` as captured at the end of the parameters cell.

    Returns
    -------
    dict
        The parameter values (declared names that are not modules or functions).
    """
    import types

    unknown = sorted(k for k in declared_parameters(namespace) - set(declared)
                     if not isinstance(namespace[k], types.ModuleType))
    if unknown:
        raise PtyAnalysisError(
            f"unknown notebook parameter(s) {unknown}; this notebook accepts: "
            f"{sorted(k for k in declared if not callable(namespace.get(k)))}"
        )
    return {k: namespace[k] for k in declared
            if not callable(namespace.get(k)) and not isinstance(namespace.get(k), types.ModuleType)}


def notebook_parameters(path) -> dict:
    """The parameters a notebook declares: ``{name: {"default": ..., "type": ...}}`` (papermill.inspect_notebook)."""
    import papermill as pm

    try:
        return dict(pm.inspect_notebook(str(path)))
    except Exception as exc:  # papermill raises plain exceptions on unreadable notebooks
        raise PtyAnalysisError(f"{path}: cannot read the notebook's parameters cell ({exc})") from exc


def validate_parameters(notebook, parameters: dict, source: str = "parameters") -> None:
    """Refuse parameter names the notebook does not declare (papermill would only warn)."""
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise PtyAnalysisError(
            f"{source}: unknown parameter(s) {unknown} for {notebook}; it accepts {sorted(declared)}"
        )


def load_params(path) -> dict:
    """Read a papermill parameter file (YAML mapping)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PtyAnalysisError(f"{path}: cannot read the parameter file ({exc})") from exc
    except yaml.YAMLError as exc:
        raise PtyAnalysisError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise PtyAnalysisError(f"{path}: expected a mapping of parameter names to values")
    return data


def execute(notebook, output, parameters: dict | None = None, *, cwd=None, kernel: str = "python3",
            timeout: int | None = 1800, progress: bool = False, log_output: bool = False) -> Path:
    """Execute a notebook with papermill after validating its parameters.

    The output notebook is written to a temporary name and renamed into place
    only when the run succeeds; on failure the partial notebook is kept next
    to it as ``<output>.failed.ipynb`` for inspection, and the error is raised.

    Parameters
    ----------
    notebook, output : path
    parameters : dict
    cwd : path, optional
        Working directory of the kernel (default: the notebook's folder).
    kernel : str
    timeout : int, optional
        Per-cell timeout in seconds.
    """
    import papermill as pm

    parameters = dict(parameters or {})
    notebook, output = Path(notebook), Path(output)
    validate_parameters(notebook, parameters)
    os.environ.setdefault("MPLBACKEND", "Agg")
    with atomic_path(output) as tmp:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name=kernel,
                                cwd=str(cwd or notebook.parent), progress_bar=progress,
                                log_output=log_output, execution_timeout=timeout)
        except Exception:
            if tmp.exists():
                os.replace(tmp, output.with_suffix(".failed.ipynb"))
            raise
    return output

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

import contextlib
import os
from pathlib import Path

import yaml

from ..errors import PtyAnalysisError
from ..fileutil import atomic_path

#: Names every IPython namespace holds that are not parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@contextlib.contextmanager
def scoped_env(**values):
    """Set environment variables (inherited by kernels started meanwhile); restore them on exit.

    Parameters
    ----------
    **values : str
        Variable names and values.
    """
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def declared_parameters(namespace: dict) -> frozenset:
    """Names defined so far in a notebook namespace (call at the end of the parameters cell).

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``.

    Returns
    -------
    frozenset of str
        Names not starting with ``_`` and not IPython's own.
    """
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


def literal_kind(value) -> str | None:
    """Kind of a parameter value: ``bool``, ``number``, ``str``, ``list``, ``dict``, None for None.

    Any other value gives its type name. The grid runner and :func:`execute`
    both compare a value's kind with the kind of the notebook's default.

    Parameters
    ----------
    value : object

    Returns
    -------
    str or None
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def default_kind(default_src: str) -> str | None:
    """Kind (see :func:`literal_kind`) of a default as written in a parameters cell; None when unknown.

    None (no constraint) for a ``None`` default or an expression that is not a literal.

    Parameters
    ----------
    default_src : str
        The default's source text (papermill's ``default``).

    Returns
    -------
    str or None
    """
    import ast

    try:
        v = ast.literal_eval(default_src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    k = literal_kind(v)
    return k if k in ("bool", "number", "str", "list", "dict") else None


def kind_mismatch(want: str | None, value) -> str | None:
    """The kind of ``value`` when it does not fit a parameter declared with kind ``want``, else None.

    Parameters
    ----------
    want : str or None
        :func:`default_kind` of the declared default (None: anything fits).
    value : object
        The value to inject. ``None`` always fits (an optional input, e.g.
        ``reference = None``).

    Returns
    -------
    str or None
        :func:`literal_kind` of ``value`` on a mismatch.
    """
    got = literal_kind(value)
    if want is None or value is None or got == want:
        return None
    return str(got)


def inspect_parameters(path, kernel: str = "python3") -> tuple[dict, bool]:
    """The parameters a notebook declares, and whether it has a cell tagged ``parameters``.

    Parameters
    ----------
    path : str or Path
        The notebook.
    kernel : str
        Kernel name used when the notebook has no ``kernelspec`` metadata
        (papermill's inspection needs one).

    Returns
    -------
    declared : dict
        ``{name: {"name", "inferred_type_name", "default", "help"}}``
        (``papermill.inspect_notebook``).
    tagged : bool
        Whether a cell is tagged ``parameters``.

    Raises
    ------
    PtyAnalysisError
        The notebook cannot be read.
    """
    import nbformat
    import papermill as pm

    try:
        nb = nbformat.read(Path(path), as_version=4)
    except Exception as exc:
        raise PtyAnalysisError(f"{path}: cannot read the notebook ({type(exc).__name__}: {exc})") from None
    tagged = any("parameters" in (c.get("metadata", {}).get("tags") or []) for c in nb.cells)
    if not tagged:
        return {}, False
    try:
        if nb.metadata.get("kernelspec", {}).get("name"):
            declared = dict(pm.inspect_notebook(str(path)))
        else:
            from papermill.inspection import _infer_parameters

            declared = {p.name: p._asdict() for p in _infer_parameters(nb, name=kernel, language="python")}
    except Exception as exc:  # papermill raises plain exceptions on unreadable parameter cells
        raise PtyAnalysisError(f"{path}: cannot read the notebook's parameters cell ({exc})") from None
    return declared, True


def notebook_parameters(path) -> dict:
    """The parameters a notebook declares: ``{name: {"name", "inferred_type_name", "default", "help"}}``.

    Empty when no cell is tagged ``parameters`` (see :func:`inspect_parameters`).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict

    Raises
    ------
    PtyAnalysisError
        The notebook or its parameters cell cannot be read.
    """
    return inspect_parameters(path)[0]


def validate_parameters(notebook, parameters: dict, source: str = "parameters") -> None:
    """Refuse parameters the notebook does not declare or whose kind differs from the default's.

    papermill would only warn about an unknown name and inject any value.

    Parameters
    ----------
    notebook : str or Path
    parameters : dict
        Values to inject.
    source : str
        Where the values come from (named in the error).

    Raises
    ------
    PtyAnalysisError
        An unknown name, or a value whose kind (:func:`literal_kind`: bool,
        number, str, list, dict) is not the declared default's (a ``None``
        default accepts anything, a ``None`` value fits any default; ints
        and floats are both numbers).
    """
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise PtyAnalysisError(
            f"{source}: unknown parameter(s) {unknown} for {notebook}; it accepts {sorted(declared)}"
        )
    for name, value in parameters.items():
        want = default_kind(declared[name]["default"])
        got = kind_mismatch(want, value)
        if got is not None:
            raise PtyAnalysisError(
                f"{source}: parameter {name!r} is {value!r} ({got}) but {Path(notebook).name} declares "
                f"{name} = {declared[name]['default']} ({want})"
            )


def load_params(path) -> dict:
    """Read a papermill parameter file (YAML mapping).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict

    Raises
    ------
    PtyAnalysisError
        Unreadable file, invalid YAML, or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
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
    with scoped_env(MPLBACKEND=os.environ.get("MPLBACKEND", "Agg")), atomic_path(output) as tmp:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name=kernel,
                                cwd=str(cwd or notebook.parent), progress_bar=progress,
                                log_output=log_output, execution_timeout=timeout)
        except Exception:
            if tmp.exists():
                os.replace(tmp, output.with_suffix(".failed.ipynb"))
            raise
    return output

"""The parameterized notebooks: their sources, their parameters, and the one papermill runner.

Sources
    Each notebook's source is a Jupytext percent-format ``.py`` file shipped
    inside the package (``ptyanalysis/templates/<name>.py``), found with
    :func:`template_path` (``importlib.resources``); :func:`read_notebook`
    turns it (or any ``.ipynb``) into a notebook.

Parameters
    A notebook declares its parameters in one cell tagged ``parameters``:
    plain assignments, optionally annotated, each with a comment saying what
    it is::

        hub: Path = "../demo_hub"             # study hub (relative to this notebook's folder)
        dose: float = 1000.0                  # photons per pattern
        output_dir: Optional[Path] = None     # default: HUB/analysis/...
        names: list[str] = ["train", "test"]  # a string "a,b" is read as ["a", "b"]

    :func:`declared_parameters` reads that cell (no kernel, no papermill):
    name, default, expected type (the annotation, else the default's kind;
    ``Path`` marks a path, ``Optional[...]`` also accepts None; a None
    default without annotation accepts anything) and help text.

    The same declaration is checked in two places, with the same rules
    (:func:`check_value`):

    * before a kernel starts, by :func:`validate_parameters` (what
      :func:`execute`, the grid and ``make notebooks`` use);
    * inside the notebook, by the cell after the parameters cell, which calls
      :func:`check_parameters` with ``globals()`` and the notebook's template
      name: it refuses a misspelt name that papermill injected (papermill
      itself only warns) with a "did you mean", a wrong type, and a declared
      name that is gone (renamed by an edit), before any work. It makes
      relative paths absolute against the notebook's folder
      (:func:`notebook_dir`), whether papermill ran from the repository root,
      from ``notebooks/`` or JupyterLab opened it.

Running
    :func:`execute` is the one papermill runner (grid cells, the Phase G
    report, the diagnosis notebooks of the demo, ``make notebooks``): it
    validates first, runs the kernel quietly (:data:`KERNEL_ENV`; the kernel's
    own log, where the shutdown interrupt of ``jupyter_client`` shows up as
    ``KeyboardInterrupt caught in kernel``, is raised to CRITICAL), writes the
    executed notebook atomically and keeps a failed one as
    ``<output>.failed.ipynb``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import yaml

from ..conventions import dose_label
from ..errors import PtyAnalysisError, closest, did_you_mean
from ..fileutil import atomic_path

#: The package holding the notebook sources (Jupytext percent-format ``.py`` files).
TEMPLATE_PACKAGE = "ptyanalysis.templates"
#: Environment variable the runner sets for the kernel: the folder relative paths resolve against.
NOTEBOOK_DIR_ENV = "PTYANALYSIS_NOTEBOOK_DIR"
#: Environment of every kernel :func:`execute` starts (a value already set in the environment wins,
#: except ``MPLBACKEND``, which is always Agg: the notebooks ask for inline figures themselves).
#: ``TF_CPP_MIN_LOG_LEVEL=3``: no TensorFlow C++ start-up lines; ``PYDEVD_DISABLE_FILE_VALIDATION``:
#: no debugger warning about frozen modules at kernel start.
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
#: Extra arguments of every kernel: ipykernel logs the SIGINT that jupyter_client sends before
#: every shutdown as ``ERROR | KeyboardInterrupt caught in kernel`` when it lands inside a message
#: handler; a cell's errors reach the notebook through messages, not through this log.
#: ``exec_lines`` makes the kernel's first ``import tensorflow`` quiet
#: (:func:`ptyanalysis.quiet.quiet_tensorflow_import`; the kernel inherits ``KERAS_BACKEND``).
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",
                    ("--IPKernelApp.exec_lines=__import__('ptyanalysis.quiet', "
                     "fromlist=['_']).quiet_tensorflow_import()"))
def kernel_arguments(kernel: str = "python3") -> list:
    """The :data:`KERNEL_ARGUMENTS` that the kernel spec ``kernel`` does not give already.

    The package's kernel spec (:mod:`ptyanalysis.pipeline.kernelspec`) carries them itself; given a second
    time on the command line, ipykernel refuses to start (``log_level only accepts one value``).

    Parameters
    ----------
    kernel : str
        Kernel spec name.

    Returns
    -------
    list of str
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except NoSuchKernel:  # the kernel manager reports it when it starts
        argv = []
    return [a for a in KERNEL_ARGUMENTS if a not in argv]


#: Tag of papermill's injected cell.
INJECTED_TAG = "injected-parameters"


#: Names every IPython namespace holds.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
#: Annotation names understood by :func:`declared_parameters` and the kind each gives.
_KINDS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "Path": "path",
          "list": "list", "tuple": "list", "List": "list", "Tuple": "list", "Sequence": "list",
          "dict": "dict", "Dict": "dict", "Any": None, "object": None}
_NO_DEFAULT = object()


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


# --------------------------------------------------------------------------- sources


def template_names() -> tuple[str, ...]:
    """Names of the notebooks shipped with the package (``00_compare_arms``, ...), sorted.

    Returns
    -------
    tuple of str
    """
    from importlib.resources import files

    return tuple(sorted(p.name[:-3] for p in files(TEMPLATE_PACKAGE).iterdir()
                        if p.name.endswith(".py") and p.name[:1].isdigit()))


def template_path(name: str) -> Path:
    """The source (Jupytext percent-format ``.py``) of a notebook shipped with the package.

    Parameters
    ----------
    name : str
        Notebook name, e.g. ``"03_phase_g_figures"`` (a ``.py`` or ``.ipynb``
        suffix is ignored).

    Returns
    -------
    Path

    Raises
    ------
    PtyAnalysisError
        No such notebook in the package.
    """
    from importlib.resources import as_file, files

    stem = str(name).removesuffix(".ipynb").removesuffix(".py")
    res = files(TEMPLATE_PACKAGE) / f"{stem}.py"
    if not res.is_file():
        raise PtyAnalysisError(f"no notebook {stem!r} in the package; choose one of {', '.join(template_names())}"
                               + did_you_mean(stem, template_names()))
    with as_file(res) as p:  # a real file for a normal install (not extracted from a zip)
        return Path(p)


def notebook_source(notebook) -> Path:
    """The file of a notebook given as a path (``.ipynb`` or Jupytext ``.py``) or a template name.

    Parameters
    ----------
    notebook : str or Path
        A notebook file, or the name of a template (:func:`template_names`).

    Returns
    -------
    Path

    Raises
    ------
    PtyAnalysisError
        Neither an existing file nor a template name.
    """
    p = Path(notebook)
    if p.is_file():
        return p
    if p.suffix in ("", ".py", ".ipynb") and p.parent == Path("."):
        with contextlib.suppress(PtyAnalysisError):
            return template_path(p.name)
    raise PtyAnalysisError(f"notebook not found: {notebook} (give an .ipynb, a Jupytext .py, "
                           f"or one of the package's notebooks: {', '.join(template_names())})")


def read_notebook(notebook):
    """Read a notebook: an ``.ipynb``, a Jupytext percent-format ``.py`` or a template name.

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode

    Returns
    -------
    nbformat.NotebookNode
        Version 4; a ``.py`` source gets the ``python3`` kernelspec when it
        names none.

    Raises
    ------
    PtyAnalysisError
        Not found or not readable.
    """
    import nbformat

    if isinstance(notebook, nbformat.NotebookNode):
        return notebook
    path = notebook_source(notebook)
    try:
        if path.suffix == ".py":
            import jupytext

            nb = jupytext.read(path, fmt="py:percent")
        else:
            nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - JSON, nbformat validation, jupytext parsing errors
        raise PtyAnalysisError(f"{path}: cannot read the notebook ({type(exc).__name__}: {exc})") from None
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    return nb


def as_ipynb(notebook, folder) -> Path:
    """A notebook as an ``.ipynb`` file (what papermill reads): the file itself, or a converted copy.

    Parameters
    ----------
    notebook : str or Path
        ``.ipynb``, Jupytext ``.py`` source or template name.
    folder : str or Path
        Where a converted copy goes (``<folder>/<stem>.ipynb``, written atomically).

    Returns
    -------
    Path
    """
    import nbformat

    src = notebook_source(notebook)
    if src.suffix == ".ipynb":
        return src
    dest = Path(folder) / f"{src.stem}.ipynb"
    with atomic_path(dest) as tmp:
        nbformat.write(read_notebook(src), tmp)
    return dest


def _source(cell) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _tags(cell) -> list:
    return list((cell.get("metadata") or {}).get("tags") or [])


def parameters_cell_index(nb) -> int | None:
    """Index of the first cell tagged ``parameters`` (None when there is none).

    Parameters
    ----------
    nb : nbformat.NotebookNode or dict

    Returns
    -------
    int or None
    """
    return next((i for i, c in enumerate(nb["cells"]) if "parameters" in _tags(c)), None)


# --------------------------------------------------------------------------- declared parameters


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter as declared in a notebook's parameters cell.

    Attributes
    ----------
    name : str
    default_src : str
        The default as written.
    default : object
        Its value when it is a literal (else a private marker).
    kind : str or None
        ``int``, ``float``, ``number``, ``str``, ``path``, ``bool``, ``list``,
        ``dict``; None: anything.
    optional : bool
        None is accepted.
    items : str or None
        Kind of the items of a list (``list[str]``: ``str``).
    annotation : str or None
        The annotation as written.
    help : str
        The comment on the declaration's line.
    """

    name: str
    default_src: str
    default: object = _NO_DEFAULT
    kind: str | None = None
    optional: bool = True
    items: str | None = None
    annotation: str | None = None
    help: str = ""

    def expected(self) -> str:
        """What the parameter accepts, in words (e.g. ``"a path or None"``)."""
        words = {"int": "int", "float": "number", "number": "number", "str": "str", "path": "path (str)",
                 "bool": "bool", "list": "list", "dict": "dict"}
        if self.kind is None:
            return "anything"
        w = words[self.kind]
        if self.kind == "list" and self.items:
            w += f" of {self.items}, or one comma-separated str"
        return w + (" or None" if self.optional else "")

    def declaration(self) -> str:
        """The declaration as written (``name: annotation = default``)."""
        return f"{self.name}{': ' + self.annotation if self.annotation else ''} = {self.default_src}"


def _annotation_kind(node) -> tuple[str | None, bool, str | None]:
    """(kind, optional, items) of an annotation AST; kind None when not understood."""
    if isinstance(node, ast.Constant) and node.value is None:
        return None, True, None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return _annotation_kind(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return None, True, None
    if isinstance(node, ast.Attribute):  # pathlib.Path, typing.Optional
        node = ast.Name(node.attr)
    if isinstance(node, ast.Name):
        return _KINDS.get(node.id), node.id in ("Any", "object"), None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
        parts = [node.left, node.right]
        none = [p for p in parts if isinstance(p, ast.Constant) and p.value is None]
        rest = [p for p in parts if p not in none]
        if none and len(rest) == 1:
            k, _, it = _annotation_kind(rest[0])
            return k, True, it
        return None, True, None
    if isinstance(node, ast.Subscript):
        head = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", None)
        if head == "Optional":
            k, _, it = _annotation_kind(node.slice)
            return k, True, it
        kind = _KINDS.get(head)
        if kind == "list":
            inner = node.slice.elts[0] if isinstance(node.slice, ast.Tuple) else node.slice
            return "list", False, _annotation_kind(inner)[0]
        return kind, False, None
    return None, True, None


def _literal_kind(value) -> str | None:
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
    return None


def parse_parameters(source: str, where: str = "parameters cell") -> dict:
    """Read the declarations of a parameters cell's source (top-level assignments to a name).

    Parameters
    ----------
    source : str
        The cell's source (IPython magics are ignored).
    where : str
        Named in errors.

    Returns
    -------
    dict
        ``{name: Parameter}`` in the order written.

    Raises
    ------
    PtyAnalysisError
        The cell is not valid Python.
    """
    lines = source.splitlines()
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise PtyAnalysisError(f"{where}: not valid Python (line {exc.lineno}: {exc.msg})") from None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, ann = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, ann = node.target.id, node.value, node.annotation
        else:
            continue
        src = ast.get_source_segment(code, value) or ""
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default = _NO_DEFAULT
        if ann is not None:
            kind, optional, items = _annotation_kind(ann)
            optional = optional or default is None
        elif default is _NO_DEFAULT or default is None:
            kind, optional, items = None, True, None
        else:  # no annotation: the default's kind; None also fits (an optional input, as YAML null)
            kind, optional, items = _literal_kind(default), True, None
        line = lines[node.end_lineno - 1] if node.end_lineno else ""
        tail = line[node.end_col_offset:] if node.end_col_offset is not None else ""
        help_ = tail.split("#", 1)[1].strip() if "#" in tail else ""
        out[name] = Parameter(name, src, default, kind, optional, items,
                              ast.get_source_segment(code, ann) if ann is not None else None, help_)
    return out


def declared_parameters(notebook) -> dict:
    """The parameters a notebook declares in its cell tagged ``parameters``.

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
        ``.ipynb``, Jupytext ``.py``, template name, or a notebook.

    Returns
    -------
    dict
        ``{name: Parameter}``.

    Raises
    ------
    PtyAnalysisError
        The notebook cannot be read, has no cell tagged ``parameters``
        (JupyterLab: property inspector, Add Tag), or that cell is not Python.
    """
    import nbformat

    if not isinstance(notebook, nbformat.NotebookNode) and Path(notebook).suffix == ".ipynb" \
            and Path(notebook).is_file():
        try:  # plain JSON: fast, no nbformat validation
            nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PtyAnalysisError(f"{notebook}: cannot read the notebook ({type(exc).__name__}: {exc})") from None
        label = str(notebook)
    else:
        nb = read_notebook(notebook)
        label = str(notebook) if not isinstance(notebook, nbformat.NotebookNode) else "notebook"
    i = parameters_cell_index(nb)
    if i is None:
        raise PtyAnalysisError(f"{label}: no cell tagged 'parameters'; tag the cell holding the defaults "
                               "(JupyterLab: property inspector -> Add Tag)")
    return parse_parameters(_source(nb["cells"][i]), where=f"{label}: parameters cell")


def _type_name(value) -> str:
    return "None" if value is None else type(value).__name__


def check_value(param: Parameter, value, *, base=None, notebook: str = "the notebook"):
    """Check (and normalise) one value against its declaration.

    Parameters
    ----------
    param : Parameter
    value : object
    base : Path, optional
        Folder a relative path resolves against; None leaves paths as given.
    notebook : str
        Named in errors.

    Returns
    -------
    value : object
        Normalised: ``float`` for a float; a list for a list (a string split
        on commas); a path made absolute against ``base``.
    notice : str or None
        What was accepted loosely (a string read as a list), to be shown.

    Raises
    ------
    PtyAnalysisError
        The value does not fit; the message names the parameter, the value,
        its type and what the notebook declares.
    """
    def bad():
        return PtyAnalysisError(f"{param.name!r} is {value!r} ({_type_name(value)}) but {notebook} declares "
                                f"{param.declaration()} ({param.expected()})")

    k = param.kind
    if value is None:
        if param.optional or k is None:
            return None, None
        raise bad()
    if k is None:
        return value, None
    if k == "bool":
        if isinstance(value, bool):
            return value, None
        raise bad()
    if k in ("int", "float", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if k == "int" and not isinstance(value, int):
            raise bad()
        return (float(value) if k == "float" else value), None
    if k in ("str", "path"):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise bad()
        if k == "path" and base is not None:
            p = Path(value).expanduser()
            return (p if p.is_absolute() else (Path(base) / p)).resolve(), None
        return value, None
    if k == "list":
        notice = None
        if isinstance(value, str):
            items = [s.strip() for s in value.split(",")]
            if not all(items):
                raise bad()
            notice = f"{param.name}: the string {value!r} is read as the list {items!r}"
            value = items
        if not isinstance(value, (list, tuple)):
            raise bad()
        if param.items and any(_literal_kind(v) != {"int": "number", "float": "number"}.get(param.items, param.items)
                               for v in value if param.items in ("str", "int", "float", "bool")):
            raise bad()
        return list(value), notice
    if k == "dict":
        if isinstance(value, dict):
            return value, None
        raise bad()
    return value, None


def _unknown_error(unknown, declared: dict, notebook: str, source: str | None = None) -> PtyAnalysisError:
    hints = []
    for name in unknown:
        close = closest(name, declared)
        hints.append(f"{name!r}" + (f" (did you mean {close!r}?)" if close else ""))
    where = f"{source}: " if source else ""
    return PtyAnalysisError(f"{where}unknown parameter(s) {', '.join(hints)}: {notebook} declares "
                            f"{', '.join(declared) or 'none'}")


def validate_parameters(notebook, parameters: dict, source: str | None = None, declared: dict | None = None) -> dict:
    """Refuse parameters a notebook does not declare or whose type does not fit, before a kernel starts.

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
    parameters : dict
        Values to inject.
    source : str, optional
        Where the values come from (named in the error).
    declared : dict, optional
        :func:`declared_parameters` of the notebook, when already read.

    Returns
    -------
    dict
        The declared parameters (``{name: Parameter}``).

    Raises
    ------
    PtyAnalysisError
        An unknown name (with a "did you mean") or a value that does not
        fit (:func:`check_value`).
    """
    declared = declared_parameters(notebook) if declared is None else declared
    label = Path(str(notebook)).name if not hasattr(notebook, "cells") else "the notebook"
    unknown = [k for k in parameters if k not in declared]
    if unknown:
        raise _unknown_error(unknown, declared, label, source)
    for name, value in parameters.items():
        try:
            check_value(declared[name], value, notebook=label)
        except PtyAnalysisError as exc:
            raise PtyAnalysisError(f"{source}: {exc}" if source else str(exc)) from None
    return declared


# --------------------------------------------------------------------------- inside the notebook


def notebook_dir(namespace: dict, name: str) -> tuple[Path, str | None]:
    """The folder of the running notebook: what its relative paths resolve against.

    In order: :data:`NOTEBOOK_DIR_ENV` (set by :func:`execute`); the notebook
    path JupyterLab gives the kernel (``__session__``); the working directory
    when it holds ``<name>.ipynb`` (JupyterLab, ``papermill`` run from
    ``notebooks/`` or with ``--cwd notebooks``); ``notebooks/`` below it when
    that holds ``<name>.ipynb`` (papermill run from the repository root);
    else the working directory.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``.
    name : str
        The notebook's name (without suffix).

    Returns
    -------
    folder : Path
    notice : str or None
        Set when the folder was inferred (the last two cases).
    """
    env = os.environ.get(NOTEBOOK_DIR_ENV)
    if env:
        return Path(env).resolve(), None
    session = namespace.get("__session__") or namespace.get("__vsc_ipynb_file__")
    if isinstance(session, str) and session.endswith(".ipynb") and Path(session).is_absolute() \
            and Path(session).is_file():
        return Path(session).resolve().parent, None
    cwd = Path.cwd()
    if (cwd / f"{name}.ipynb").is_file():
        return cwd, None
    if (cwd / "notebooks" / f"{name}.ipynb").is_file():
        return (cwd / "notebooks").resolve(), ("relative paths resolve against notebooks/, the folder of "
                                               f"{name}.ipynb (the kernel runs in the folder above it)")
    return cwd, (f"{name}.ipynb is not in the working directory: relative paths resolve against it "
                 "(run papermill with --cwd <the notebook's folder> to change that)")


def _injected_names(namespace: dict) -> list:
    """Names assigned by papermill's injected cell, when it ran just before the current cell."""
    hist = namespace.get("In")
    if not isinstance(hist, list) or len(hist) < 2:
        return []
    prev = hist[-2]
    if not isinstance(prev, str) or not prev.lstrip().startswith("# Parameters"):
        return []
    with contextlib.suppress(PtyAnalysisError):
        return list(parse_parameters(prev))
    return []


class CheckedParameters(dict):
    """The checked parameters of a running notebook (``{name: value}``) and the notebook's folder.

    Attributes
    ----------
    folder : Path
        What relative paths resolved against (:func:`notebook_dir`).
    """

    def __init__(self, values: dict, folder: Path):
        super().__init__(values)
        self.folder = Path(folder)

    def relative(self, text: str) -> str:
        """``text`` with each absolute path below the notebook folder's parent written relative to the folder.

        What a user who gave relative paths expects to read (and what keeps
        machine paths out of a committed notebook's outputs); other absolute
        paths are left as they are.
        """
        import re

        root = self.folder.parent

        def rel(m):
            p = Path(m.group(0))
            try:
                p.relative_to(root)
            except ValueError:
                return m.group(0)
            return os.path.relpath(p, self.folder)

        return re.sub(r"(?<![\w.])/[^\s:'\"(),;]+", rel, str(text))

    def say(self, text) -> None:
        """Print ``text`` with paths as :meth:`relative` writes them (a ``say=`` callback for the package)."""
        print(self.relative(text))


def check_parameters(namespace: dict, notebook, *, say=print) -> CheckedParameters:
    """The first cell after a notebook's parameters cell: check its parameters before any work.

    Compares ``namespace`` with the parameters declared by the notebook's
    source (its template), then writes the normalised values back into it
    (absolute paths, lists from comma-separated strings, floats).

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()`` (updated in place).
    notebook : str, Path or dict
        The notebook's template name (e.g. ``"00_compare_arms"``), its source
        file, or a ``{name: Parameter}`` declaration.
    say : callable
        Shows notices (e.g. a string read as a list, an inferred folder).

    Returns
    -------
    CheckedParameters
        ``{name: value}`` of the declared parameters, normalised; its
        ``folder`` is the notebook's folder and ``say`` prints with paths
        relative to it.

    Raises
    ------
    PtyAnalysisError
        A name papermill injected that the notebook does not declare (with a
        "did you mean"), a declared name that is no longer defined, or a
        value whose type does not fit; the message lists the real
        parameters only.
    """
    if isinstance(notebook, dict):
        declared, name = notebook, "the notebook"
    else:
        declared = declared_parameters(notebook)
        name = Path(str(notebook)).name.removesuffix(".py").removesuffix(".ipynb")
    unknown = [k for k in _injected_names(namespace) if k not in declared]
    if unknown:
        raise _unknown_error(unknown, declared, name)
    missing = [k for k in declared if k not in namespace]
    if missing:
        pool = [k for k in namespace if not k.startswith("_") and k not in _IPYTHON_NAMES]
        hints = []
        for k in missing:
            close = closest(k, pool)
            hints.append(f"{k!r}" + (f" (found {close!r}: renamed?)" if close else ""))
        raise PtyAnalysisError(f"parameter(s) {', '.join(hints)} of {name} are not defined: "
                               f"the parameters cell must define {', '.join(declared)}")
    base, notice = notebook_dir(namespace, name)
    uses_paths = any(p.kind == "path" for p in declared.values())
    given = given_parameters(namespace, declared)
    if given:  # the stored outputs then say which values made them, not the cell's defaults
        say("run with " + ", ".join(f"{k} = {v!r}" for k, v in given.items())
            + " (given by the run, e.g. papermill -p or a YAML; the parameters cell above shows the defaults)")
    values, notices = {}, []
    for k, p in declared.items():
        v, n = check_value(p, namespace[k], base=base, notebook=name)
        values[k] = v
        if n:
            notices.append(n)
    if notice and uses_paths:
        notices.append(notice)
    checked = CheckedParameters(values, base)
    for n in notices:
        say(f"note: {checked.relative(n)}")
    namespace.update(values)
    return checked


def given_parameters(namespace: dict, declared: dict) -> dict:
    """The declared parameters whose value in ``namespace`` is not the parameters cell's literal default.

    Parameters
    ----------
    namespace : dict
        The notebook's ``globals()``.
    declared : dict
        ``{name: Parameter}`` (:func:`declared_parameters`).

    Returns
    -------
    dict
        ``{name: value}`` in declaration order (what papermill or the grid injected, or the user edited).
    """
    return {k: namespace[k] for k, p in declared.items()
            if k in namespace and p.default is not _NO_DEFAULT and namespace[k] != p.default}


def ensure_synthetic_study(hub, size: str | None = None, *, say=print) -> Path:
    """Make sure ``hub`` holds a simulated, trained synthetic study of ``size`` (a notebook's ``ensure_synthetic``).

    The one entry point from the analysis layers into :mod:`ptyanalysis.synthetic` (the demo study's
    generator, which the analysis does not otherwise depend on): the package imports it here, and only when
    ``size`` asks for a synthetic study; a real hub (``size`` None, the notebooks' default) never loads it.

    Parameters
    ----------
    hub : str or Path
        Study hub.
    size : str, optional
        ``ci``, ``demo`` or ``study``: simulate the study if ``HUB/study.json`` is absent and train whatever
        model or iterative reconstruction is missing (:func:`ptyanalysis.synthetic.demo.ensure_study`).
        None: do nothing.
    say : callable
        Progress messages.

    Returns
    -------
    Path
        ``hub``.

    Raises
    ------
    PtyAnalysisError
        An unknown size (with the closest valid one).
    """
    if not size:
        return Path(hub)
    from ..synthetic.demo import ensure_study  # only here, and only when asked (see above)

    return ensure_study(hub, size=size, say=say)


@dataclasses.dataclass(frozen=True)
class DiagnosisInputs:
    """What a diagnosis notebook (01, 02) runs on: :func:`diagnosis_inputs`.

    Attributes
    ----------
    model : LoadedModel
        The loaded model.
    sets : dict
        ``{label: {input name: array}}`` (:func:`ptyanalysis.diagnosis.inputs.cli_input_sets`).
    datasets : dict
        ``{label: PtychoData}`` for study inputs, else empty.
    reference : dict or None
        The reference input set.
    paired : dict or None
        The reference paired with the failing set (:func:`ptyanalysis.diagnosis.inputs.default_paired_set`),
        for ``bisect(..., paired_reference=)``; None for the split comparison.
    output_dir : Path
        Where the notebook writes its record.
    """

    model: object
    sets: dict
    datasets: dict
    reference: dict | None
    paired: dict | None
    output_dir: Path


def diagnosis_inputs(hub, dose: float, paths: dict, default_splits: dict, *, output_name: str, model=None,
                     reference=None, study_inputs: bool = True, trained_like: str, seed: int = 0,
                     paired_label: str | None = None, output_dir=None, say=print) -> DiagnosisInputs:
    """Load a diagnosis notebook's model and input sets exactly as its command (``compare-splits``, ``bisect``) does.

    Parameters
    ----------
    hub : str or Path
        Study hub the defaults come from.
    dose : float
        Dose of the default model and datasets.
    paths : dict
        ``{label: NPZ path or None}`` of the sets to compare; None takes the
        hub's dataset of ``default_splits[label]`` at ``dose``.
    default_splits : dict
        ``{label: split name}`` (e.g. ``{"a": "train", "b": "test"}``).
    output_name : str
        Default output folder: ``HUB/analysis/diagnosis/<output_name>/dose_<D>`` (one per dose, so a
        run at another dose never overwrites this one's results).
    model : str or Path, optional
        Model file or directory (default: the hub's Baseline at ``dose``).
    reference, study_inputs, trained_like, seed
        As :func:`ptyanalysis.diagnosis.inputs.cli_input_sets`.
    paired_label : str, optional
        The set a paired reference is built for (``"failing"`` in the bisection notebook), by the rule
        of ``ptyanalysis bisect`` (:func:`ptyanalysis.diagnosis.inputs.default_paired_set`).
    output_dir : str or Path, optional
        Overrides the default output folder.
    say : callable
        Where notices go (a notebook passes ``CheckedParameters.say``).

    Returns
    -------
    DiagnosisInputs
    """
    from .. import hub as _hub
    from ..diagnosis.inputs import cli_input_sets, default_paired_set
    from ..inference import load_model

    files = {label: p or _hub.dataset_path(hub, dose, default_splits[label]) for label, p in paths.items()}
    loaded = load_model(model or _hub.model_dir(hub, dose, "Baseline"))
    sets, datasets, ref = cli_input_sets(loaded, files, reference, study_inputs=study_inputs,
                                         trained_like=trained_like, seed=seed, say=say)
    paired = None
    if paired_label is not None:
        paired = default_paired_set(loaded, datasets, files, paired_label, study_inputs=study_inputs,
                                    reference_given=reference is not None or ref is None, seed=seed, say=say)
    return DiagnosisInputs(model=loaded, sets=sets, datasets=datasets, reference=ref, paired=paired,
                           output_dir=Path(output_dir or _hub.diagnosis_dir(hub, output_name) / dose_label(dose)))


# --------------------------------------------------------------------------- running


def load_params(path) -> dict:
    """Read a papermill parameter file (YAML mapping).

    Parameters
    ----------
    path : str or Path
        The YAML file (e.g. ``tests/data/params/*.yaml``).

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


def failed_path(output) -> Path:
    """Where :func:`execute` keeps the partial notebook of a failed run (``<output>.failed.ipynb``).

    Parameters
    ----------
    output : str or Path
        The executed notebook's path, as given to :func:`execute`.

    Returns
    -------
    Path
    """
    output = Path(output)
    return output.with_name(output.name.removesuffix(".ipynb") + ".failed.ipynb")


def kernel_env(notebook_folder) -> dict:
    """The environment a notebook's kernel needs from its start: :data:`KERNEL_ENV` (unless set already),
    ``MPLBACKEND=Agg`` and :data:`NOTEBOOK_DIR_ENV` (the folder the notebook's relative paths resolve
    against, :func:`notebook_dir`).

    :func:`execute` sets it around papermill's own kernel start; a kernel pool gives it to the kernels it
    starts or reuses (:meth:`ptyanalysis.pipeline.kernels.KernelPool.acquire`).

    Parameters
    ----------
    notebook_folder : str or Path

    Returns
    -------
    dict
    """
    env = {k: os.environ.get(k, v) for k, v in KERNEL_ENV.items()}
    env.update(MPLBACKEND="Agg", **{NOTEBOOK_DIR_ENV: str(Path(notebook_folder).resolve())})
    return env


def execute(notebook, output, parameters: dict | None = None, *, cwd=None, notebook_folder=None,
            kernel: str = "python3", timeout: int | None = 1800, start_timeout: int = 60, log=None,
            progress: bool = False, validate: bool = True, engine_name: str | None = None,
            **engine_kwargs) -> Path:
    """Execute a notebook with papermill: the one runner of the package.

    Parameters are validated first (:func:`validate_parameters`). The kernel
    gets :data:`KERNEL_ENV` and :data:`KERNEL_ARGUMENTS`. The executed
    notebook is written to a temporary name and renamed onto ``output`` only
    when the run succeeds; on failure the partial notebook is kept as
    :func:`failed_path` for inspection and the error is raised (a previous
    ``output`` is left as it was).

    Parameters
    ----------
    notebook : str, Path or nbformat.NotebookNode
        ``.ipynb``, Jupytext ``.py`` source or template name.
    output : str or Path
        The executed notebook.
    parameters : dict, optional
        Injected after the parameters cell.
    cwd : str or Path, optional
        Working directory of the kernel (default: the notebook's folder for
        an ``.ipynb``, else the output's folder).
    notebook_folder : str or Path, optional
        What the notebook's relative paths resolve against (default ``cwd``).
    kernel : str
    timeout : int, optional
        Per-cell timeout in seconds.
    start_timeout : int
        Kernel start timeout in seconds.
    log : file, optional
        Receives the cells' stdout and stderr as they run.
    progress : bool
        papermill's progress bar.
    validate : bool
        Validate the parameters (a caller that already did may skip it).
    engine_name : str, optional
        papermill engine (default papermill's own, a fresh kernel per run;
        the grid passes its kernel-reusing engine).
    **engine_kwargs
        Passed to the engine (e.g. ``km``, a running kernel's manager).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    PtyAnalysisError
        Invalid parameters (nothing started).
    papermill.PapermillExecutionError
        A cell raised (the failed notebook is kept).
    """
    import nbformat
    import papermill as pm

    parameters = dict(parameters or {})
    output = Path(output)
    given_nb = hasattr(notebook, "cells")
    src_file = None if given_nb else notebook_source(notebook)
    nb = read_notebook(notebook if given_nb else src_file)
    if validate:
        validate_parameters(notebook if given_nb else src_file, parameters, declared=declared_parameters(nb))
    if cwd is None:
        cwd = src_file.parent if src_file is not None and src_file.suffix == ".ipynb" else output.parent
    cwd = Path(cwd).resolve()
    env = kernel_env(notebook_folder or cwd)
    output.parent.mkdir(parents=True, exist_ok=True)
    failed = failed_path(output)
    with tempfile.TemporaryDirectory(prefix=".ptyanalysis-nb-") as td, scoped_env(**env), \
            atomic_path(output) as tmp:
        if src_file is not None:  # papermill reads .ipynb files only
            src = as_ipynb(src_file, td)
        else:
            src = Path(td) / (output.name if output.suffix == ".ipynb" else output.name + ".ipynb")
            nbformat.write(nb, src)
        try:
            # the kernel's working directory via nbclient's resources: no chdir of this process
            pm.execute_notebook(str(src), str(tmp), parameters=parameters, kernel_name=kernel,
                                resources={"metadata": {"path": str(cwd)}},
                                progress_bar=progress, log_output=False, stdout_file=log, stderr_file=log,
                                start_timeout=start_timeout, execution_timeout=timeout,
                                engine_name=engine_name,
                                **{"extra_arguments": kernel_arguments(kernel), **engine_kwargs})
        except BaseException:
            if tmp.exists() and tmp.stat().st_size:
                os.replace(tmp, failed)
            raise
    failed.unlink(missing_ok=True)
    return output

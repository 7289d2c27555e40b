"""Command-line interface: ``ptyanalysis COMMAND [options]``.

Each command is a module of :mod:`ptyanalysis.commands` (its argparse options, ``configure_parser(parser)``,
and the call into the science modules, ``run_cli(args) -> int``), imported here by name, so the import graph
shows cli -> commands -> science modules. Nothing here imports TensorFlow, JAX or PyTorch: the commands that run
models (:data:`MODEL_COMMANDS`) take ``--backend`` and choose the process's
Keras backend (:func:`~ptyanalysis.inference.backends.select_keras_backend`)
after the arguments parse and before any model is touched; the framework is
imported when the first model loads, after the command's own checks.

Exit status: 0 done, 2 bad input (a :class:`~ptyanalysis.errors.PtyAnalysisError`,
message on stderr, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import warnings

from .commands import bisect, compare, compare_splits, demo, phase_g, simulate, train, verify
from .commands.options import add_backend_argument
from .errors import PtyAnalysisError, did_you_mean
from .inference.backends import select_keras_backend
from .inference.torch_bundle import find_torch_bundles
from .io import DatasetNotice

if importlib.util.find_spec(f"{__package__}.commands.grid") is not None:
    from .commands import grid
else:  # not in this checkout: the command is listed without options and refuses to run
    grid = None

#: command -> (module of :mod:`ptyanalysis.commands`, one-line help)
COMMANDS = {
    "simulate": (simulate, "generate a synthetic dose/overlap study hub"),
    "train": (train, "train the PtychoPINN and Baseline models and run the iterative arm on a hub"),
    "demo": (demo, "simulate, train and analyse the synthetic study end to end"),
    "compare": (compare, "compare the arms for one dose/view/split (per-job files)"),
    "compare-splits": (compare_splits, "compare a model's inputs and outputs across two splits"),
    "bisect": (bisect, "find why a model fails on one input set and passes on another"),
    "grid": (grid, "run the per-job notebook over a study grid (papermill + Dask)"),
    "phase-g": (phase_g, "aggregate per-job results into the Phase G artifacts and figures"),
    "verify": (verify, "verify a hub's Phase G artifacts"),
}


#: Commands that run Keras models: they take ``--backend`` (TensorFlow, JAX or PyTorch; the grid's kernels inherit it).
MODEL_COMMANDS = ("train", "demo", "compare", "compare-splits", "bisect", "grid")


def plain_text(doc: str) -> str:
    """A docstring's reST markup as plain text (``x`` -> x, :func:`~a.b` -> b), for ``--help``.

    Parameters
    ----------
    doc : str

    Returns
    -------
    str
    """
    s = re.sub(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", lambda m: m.group(1).split(".")[-1] if "~" in m.group(0) else m.group(1), doc)
    return s.replace("``", "")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose invalid-choice message adds the closest valid choice ("did you mean").

    Sub-parsers are made of the same class, so every ``choices=`` of every command (and the command name
    itself) gets the hint.
    """

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from "
                                                 f"{', '.join(map(repr, choices))})" + did_you_mean(value, choices))
        super()._check_value(action, value)


def build_parser(commands=COMMANDS) -> argparse.ArgumentParser:
    """Return the top-level parser with one sub-parser per command.

    Parameters
    ----------
    commands : dict
        ``{command: (module, help)}``; a command whose module is None (not in this checkout) is listed
        without options.

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __doc__ as package_doc
    from . import __version__

    parser = Parser(
        prog="ptyanalysis", description=plain_text(package_doc.splitlines()[0]) + " Usage: ptyanalysis COMMAND [options].",
        epilog="Run 'ptyanalysis COMMAND --help' for a command's options. Exit status: 0 done, "
               "2 bad input (the message says what to fix), 1 anything else.")
    parser.add_argument("--version", action="version", version=f"ptyanalysis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in commands.items():
        p = sub.add_parser(name, help=help_, description=help_[:1].upper() + help_[1:] + ".")
        p.set_defaults(_module=module)
        if module is None:
            continue
        module.configure_parser(p)
        if name in MODEL_COMMANDS:
            add_backend_argument(p)
    return parser


def _model_paths(argv) -> list:
    """Paths among the arguments where models may be (cheap, nothing imported): existing files and folders, and
    the ``hub`` of a grid YAML (relative to the working folder or the YAML's). The PyTorch bundles among them
    make PyTorch the automatic backend (:func:`ptyanalysis.inference.backends.select_keras_backend`)."""
    paths = [a for a in argv if not a.startswith("-") and os.path.exists(a)]
    for a in list(paths):
        if a.lower().endswith((".yaml", ".yml")) and os.path.isfile(a):
            try:
                import yaml

                with open(a, encoding="utf-8") as fh:
                    hub = (yaml.safe_load(fh) or {}).get("hub")
            except Exception:  # the command itself reports a bad YAML
                continue
            if isinstance(hub, str):
                paths += [p for p in (hub, os.path.join(os.path.dirname(a), hub)) if os.path.isdir(p)]
    return paths


def main(argv=None) -> int:
    """Entry point of the ``ptyanalysis`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 done, 2 bad input, 130 interrupted.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ log: errors only via Python
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    mod = args._module
    if mod is None:
        print(f"ptyanalysis {args.command}: error: this checkout has no ptyanalysis.commands module for it",
              file=sys.stderr)
        return 1
    if not from_shell:  # called from Python: warnings stay Python's (pytest, a notebook record them)
        return _run(mod, args, argv)
    with warnings.catch_warnings():
        _notices_as_lines(args.command)
        return _run(mod, args, argv)


def _notices_as_lines(command: str) -> None:
    """Print the package's notices (:class:`ptyanalysis.io.DatasetNotice`) as one plain line each.

    Python's default shows the file, line and source line of the call that warned, which means nothing to a
    user of the command; other warnings keep the default format.
    """
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(category, type) and issubclass(category, DatasetNotice):
            print(f"ptyanalysis {command}: notice: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _run(mod, args, argv) -> int:
    try:
        if args.command in MODEL_COMMANDS:
            args.backend_choice = select_keras_backend(args.backend,
                                                       torch_models=find_torch_bundles(_model_paths(argv)))
            if args.backend_choice.source == "automatic" and args.backend_choice.name != "tensorflow":
                print(f"ptyanalysis {args.command}: {args.backend_choice.reason}", file=sys.stderr)
        return int(mod.run_cli(args) or 0)
    except PtyAnalysisError as exc:
        print(f"ptyanalysis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

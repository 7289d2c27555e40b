"""The command line as a package: cli -> commands -> science modules, and the layers around ``synthetic``.

Read from the sources (``ast``), nothing imported: numpy-only, fast tier.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ptyanalysis
from ptyanalysis.errors import PtyAnalysisError

PACKAGE = Path(ptyanalysis.__file__).parent
#: ``python -m`` entry points that parse their own arguments (not subcommands).
SCRIPTS = {"bench.py", "gpu_check.py", "gpu_study.py", "pipeline/kernelspec.py"}
#: Modules outside ``synthetic/`` that may import it, and the function that does where it is only one.
SYNTHETIC_IMPORTERS = {"commands/simulate.py": None, "commands/train.py": None, "commands/demo.py": None,
                       "bench.py": None, "gpu_check.py": None, "pipeline/notebook.py": "ensure_synthetic_study"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, enclosing function name or None) for every import of a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, func
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                yield base, func
                for alias in child.names:
                    yield f"{base}.{alias.name}", func
            yield from visit(child, inner)

    yield from visit(tree, None)


def _sources():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "templates" not in p.parts]


def test_cli_imports_every_command_module_by_name():
    """The import graph shows cli -> commands: static imports, no module-path strings."""
    commands = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "options"}
    imported = {m.rpartition(".")[2] for m, _ in _imports(PACKAGE / "cli.py")
                if m.startswith("ptyanalysis.commands.")}
    assert commands <= imported, f"cli does not import {sorted(commands - imported)}"
    assert "import_module" not in (PACKAGE / "cli.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(p.stem for p in (PACKAGE / "commands").glob("*.py")
                                        if p.stem not in ("__init__", "options")))
def test_each_command_module_configures_and_runs(name):
    tree = ast.parse((PACKAGE / "commands" / f"{name}.py").read_text(encoding="utf-8"))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"configure_parser", "run_cli"} <= functions
    science = {m for m, func in _imports(PACKAGE / "commands" / f"{name}.py")
               if func is None and m.startswith("ptyanalysis.") and not m.startswith("ptyanalysis.commands")}
    assert science, f"commands/{name}.py imports no science module at top level"


def test_science_modules_hold_no_argparse():
    bad = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "cli.py" or rel.startswith("commands/") or rel in SCRIPTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if any(m == "argparse" for m, _ in _imports(path)) or names & {"configure_parser", "run_cli"}:
            bad.append(rel)
    assert not bad, f"argparse outside ptyanalysis/commands: {bad}"


def test_only_the_entry_points_import_synthetic():
    """The analysis does not depend on the synthetic study; the notebooks reach it through one function."""
    bad = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("synthetic/"):
            continue
        for module, func in _imports(path):
            if module == "ptyanalysis.synthetic" or module.startswith("ptyanalysis.synthetic."):
                if rel not in SYNTHETIC_IMPORTERS or SYNTHETIC_IMPORTERS[rel] not in (None, func):
                    bad.append(f"{rel} ({func or 'module level'}): {module}")
    for path in sorted((PACKAGE / "templates").glob("*.py")):  # the notebooks' sources
        if "synthetic" in "".join(m for m, _ in _imports(path)):
            bad.append(f"templates/{path.name}")
    assert not bad, "imports of ptyanalysis.synthetic outside the entry points:\n" + "\n".join(bad)


def test_ensure_synthetic_study_loads_synthetic_only_when_asked(tmp_path):
    code = ("import sys\nfrom ptyanalysis.pipeline.notebook import ensure_synthetic_study\n"
            f"print(ensure_synthetic_study({str(tmp_path)!r}, None))\n"
            "print(any(m.startswith('ptyanalysis.synthetic') for m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.stdout.splitlines() == [str(tmp_path), "False"], r.stderr
    from ptyanalysis.pipeline.notebook import ensure_synthetic_study

    with pytest.raises(PtyAnalysisError, match="did you mean 'study'"):
        ensure_synthetic_study(tmp_path / "hub", "stduy")
    assert not (tmp_path / "hub").exists()

"""The pinned versions agree between pyproject.toml and environment.yml; the CLI is wired."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for spec in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+)\s*", spec)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def test_pyproject_and_environment_pin_the_same_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert all("==" in d for d in deps), "every dependency must be pinned with =="
    py = _pins(deps)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_lists, "environment.yml must have a pip: section"
    conda = _pins([s for s in pip_lists[0] if not s.startswith("-e")])
    assert py == conda
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))


def test_installed_versions_match_the_pins():
    import importlib.metadata as md

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, version in _pins(project["dependencies"]).items():
        assert md.version(name) == version, f"{name}: installed {md.version(name)}, pinned {version}"


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ptyanalysis", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("simulate", "train", "compare", "compare-splits", "bisect", "grid", "phase-g", "verify", "demo"):
        assert cmd in out.stdout


def test_every_public_function_has_a_docstring():
    import importlib
    import inspect
    import pkgutil

    import ptyanalysis

    missing = []
    for info in pkgutil.iter_modules(ptyanalysis.__path__):
        if info.name == "__main__":
            continue
        mod = importlib.import_module(f"ptyanalysis.{info.name}")
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                missing.append(f"{mod.__name__}.{name}")
    assert not missing, f"public functions/classes without a docstring: {missing}"


def test_test_and_dev_tools_are_extras_and_runtime_needs_are_declared():
    import importlib.metadata as md

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    for tool in ("pytest", "pytest-benchmark", "nbval", "jupyterlab", "ruff", "playwright"):
        assert tool not in runtime, f"{tool} is a test/development tool, not a runtime dependency"
    for need in ("h5py", "jupytext", "lazy-loader", "papermill", "ipykernel"):
        assert need in runtime, f"{need} is used at run time: declare it"
    extras = project["optional-dependencies"]
    for extra in ("test", "dev", "tensorflow", "jax"):
        assert all("==" in d for d in extras[extra]), f"[{extra}] must be pinned with =="
        for name, version in _pins(extras[extra]).items():
            assert md.version(name) == version, f"{name}: installed {md.version(name)}, pinned {version}"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d][0]
    assert "-e .[tensorflow,jax,torch,test,dev]" in pip, "environment.yml installs what make installs"
    assert '.[tensorflow,jax,torch,test,dev]' in (ROOT / "Makefile").read_text()


def test_no_backend_is_a_core_dependency_and_each_is_one_extra():
    """A GPU machine without TensorFlow installs with one command ([jax] or [torch]); TensorFlow is an extra too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _pins(project["dependencies"])
    for heavy in ("tensorflow", "jax", "jaxlib", "torch"):
        assert heavy not in core, f"{heavy} must not be a core dependency"
    extras = project["optional-dependencies"]
    assert _pins(extras["tensorflow"]) == {"tensorflow": "2.21.0"}
    assert set(_pins(extras["jax"])) == {"jax", "jaxlib"} and "torch" in _pins(extras["torch"])
    # the torch extra (make installs it) and the ptychi extra (which replaces it) each pin torch exactly
    assert _pins(extras["torch"])["torch"] == "2.13.0" and _pins(extras["ptychi"])["torch"] == "2.14.1"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.py" in data["ptyanalysis.templates"], "the notebooks' sources ship as package data"


def test_package_templates_and_tests_pass_the_linter():
    """``make lint``: the package, the notebooks' sources, the tests and the build tool follow the project's ruff rules."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = subprocess.run([ruff, "check", "ptyanalysis", "tests", "tools"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-4000:]

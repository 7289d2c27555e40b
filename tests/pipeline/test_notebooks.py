"""The notebooks as users meet them: committed files, JupyterLab edits, papermill runs, the checking cell, a wheel.

Fast: the committed notebooks hold no injected-parameters cell and no machine
path and are built from the current sources. Slow (kernels, the trained ci
study): each notebook opened as JupyterLab opens it, its parameters cell
edited and run with nbclient; each notebook run with papermill parameters
(asserting on what it writes, as recommenders tests its notebooks); notebook
02 and ``ptyanalysis bisect`` give the same verdict; the checking cell refuses
a misspelt name or a wrong type before any work; a wheel installed without the
source tree finds the templates and writes the HTML report.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ptyanalysis.pipeline import notebook as nbk

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("00_compare_arms", "01_split_comparison", "02_zero_prediction_bisection", "03_phase_g_figures")
#: What the repository's checklist greps a committed notebook for.
MACHINE_PATH = re.compile(r'"/(work|tmp|home|root)/')


def _fixture_module():
    spec = importlib.util.spec_from_file_location("phase_g_fixture", ROOT / "tests" / "phase_g" / "data" / "phase_g_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> dict:
    """``{relative path: mtime}`` of every file under ``root``."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- committed notebooks (fast)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_what_a_user_should_open(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert not any("injected-parameters" in (c.metadata.get("tags") or []) for c in nb.cells)
    assert not MACHINE_PATH.search(text), "a machine path in a committed notebook"
    assert "papermill" not in nb.metadata
    # built from the current source (make notebooks after editing ptyanalysis/templates/<name>.py)
    src = nbk.read_notebook(name)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in src.cells], \
        f"notebooks/{name}.ipynb is not built from ptyanalysis/templates/{name}.py: run make notebooks"
    assert nb.metadata["jupytext"]["formats"] == "notebooks///ipynb,ptyanalysis/templates///py:percent"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code) >= (len(code) + 1) // 2, "stored outputs (nbval compares them)"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert "job failed (" not in text, "built on a ci study whose grid had failed jobs: rerun it, then make notebooks"
    declared = nbk.declared_parameters(path)
    assert declared["hub"].default == "../demo_hub"
    assert declared.get("ensure_synthetic", nbk.Parameter("x", "None", None)).default is None
    # the stored outputs say which values made them (the cell shows the defaults): the build's params
    built_with = nbk.load_params(ROOT / "params" / f"ci_{name}.yaml")
    given = {k: v for k, v in built_with.items() if declared[k].default != v}
    said = "".join("".join(o.get("text", "")) for c in code if "check_parameters" in c.source for o in c.outputs)
    assert said.startswith("run with " + ", ".join(f"{k} = {v!r}" for k, v in given.items())), said
    for c in code:  # one image per figure; no red standard error (TensorFlow's start-up lines) in any cell
        images = [o for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(images) <= 1 or "display(" in c.source, f"cell shows the same figure {len(images)} times"
        assert not [o for o in c.outputs if o.get("name") == "stderr"], c.source


# --------------------------------------------------------------------------- kernels (slow)


@pytest.fixture(scope="module")
def phase_g_hub(tmp_path_factory):
    """A hub of per-job comparison files (no training), for notebook 03."""
    return _fixture_module().make_hub(tmp_path_factory.mktemp("pg") / "hub")


def _edit_parameters(nb, values: dict):
    """Rewrite the declarations of the parameters cell, as a user does in JupyterLab."""
    i = nbk.parameters_cell_index(nb)
    lines = nb.cells[i].source.splitlines()
    for k, v in values.items():
        idx = next(j for j, ln in enumerate(lines) if re.match(rf"{k}\s*[:=]", ln))
        head = lines[idx].split("=", 1)[0]
        lines[idx] = f"{head}= {v!r}  # edited"
    nb.cells[i].source = "\n".join(lines)
    return nb


def _user_values(name, hub, out):
    if name == "03_phase_g_figures":
        return {"hub": str(hub)}
    return {"hub": str(hub), "output_dir": str(out)}


def _outputs(name, hub, out) -> list[Path]:
    return {"00_compare_arms": [out / "comparison.nc", out / "comparison_metrics.csv", out / "comparison_plot.png"],
            "01_split_comparison": [out / "split_comparison.json"],
            "02_zero_prediction_bisection": [out / "bisection.json"],
            "03_phase_g_figures": [hub / "analysis" / "phase_g_metrics.nc", hub / "analysis" / "metrics_summary.json",
                                   hub / "analysis" / "metrics_delta_highlights.txt"]}[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_jupyterlab_edit_of_the_parameters_cell_is_used(name, ci_hub, phase_g_hub, tmp_path):
    """Open the committed notebook, edit its parameters cell, run all cells: the user's values, no simulation."""
    from nbclient import NotebookClient

    hub = (phase_g_hub if name == "03_phase_g_figures" else ci_hub).resolve()
    out = tmp_path / "mine"
    nb = _edit_parameters(nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4),
                          _user_values(name, hub, out))
    folder = tmp_path / "notebooks"  # the user's copy: JupyterLab runs the kernel in the notebook's folder
    folder.mkdir()
    nbformat.write(nb, folder / f"{name}.ipynb")
    before = _tree(hub / "data") if (hub / "data").is_dir() else {}
    env = {k: v for k, v in os.environ.items() if k != nbk.NOTEBOOK_DIR_ENV}
    client = NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    for f in _outputs(name, hub, out):
        assert f.is_file() and f.stat().st_size > 0, f"{f} not written where the user said"
    assert not (tmp_path / "demo_hub").exists() and not (tmp_path / "build").exists()
    assert sorted(p.name for p in tmp_path.rglob("study.json")) == [], "a study was simulated"
    if before:
        assert _tree(hub / "data") == before, "the study's data changed (simulated or trained)"


def _papermill_parameters(name, hub, out):
    if name == "03_phase_g_figures":
        return {"hub": str(hub)}
    p = {"hub": str(hub), "dose": 1000.0, "output_dir": str(out)}
    if name == "00_compare_arms":
        p.update(view="dense", split="test")
    return p


@pytest.fixture(scope="module")
def papermill_runs(ci_hub, phase_g_hub, tmp_path_factory):
    """Each notebook run with papermill parameters (the package's runner), once per module."""
    root = tmp_path_factory.mktemp("pm")
    runs = {}
    for name in NAMES:
        hub = (phase_g_hub if name == "03_phase_g_figures" else ci_hub).resolve()
        out = root / name
        executed = nbk.execute(name, root / f"{name}.ipynb", _papermill_parameters(name, hub, out), cwd=root)
        runs[name] = (executed, hub, out)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_run_with_parameters_writes_its_files(name, papermill_runs):
    executed, hub, out = papermill_runs[name]
    for f in _outputs(name, hub, out):
        assert f.is_file() and f.stat().st_size > 0, f
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    stderr = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.get("name") == "stderr")
    assert "absl::InitializeLog" not in stderr and "oneDNN" not in stderr, "TensorFlow start-up lines in the outputs"
    if name == "02_zero_prediction_bisection":
        b = json.loads((out / "bisection.json").read_text())
        assert b["verdict"]["kind"] and b["fix"]
    if name == "01_split_comparison":
        s = json.loads((out / "split_comparison.json").read_text())
        assert list(s["splits"])[:2] == ["train", "test"] and s["ranking"]


@pytest.mark.slow
def test_notebook_02_and_the_cli_give_the_same_verdict(papermill_runs, ci_hub, tmp_path):
    from ptyanalysis import hub as hubs

    _, hub, out = papermill_runs["02_zero_prediction_bisection"]
    model = hubs.model_dir(hub, 1000, "Baseline")
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "bisect", "--model", str(model),
                        "--failing", str(hubs.dataset_path(hub, 1000, "test")),
                        "--passing", str(hubs.dataset_path(hub, 1000, "train")),
                        "--study-inputs", "--out", str(tmp_path / "cli")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cli = json.loads((tmp_path / "cli" / "bisection.json").read_text())
    nb = json.loads((out / "bisection.json").read_text())
    for key in ("kind", "name", "summary"):
        assert nb["verdict"].get(key) == cli["verdict"].get(key), key
    assert nb["fix"] == cli["fix"]


@pytest.fixture(scope="module")
def template_ipynb(tmp_path_factory):
    """Notebook 01 as an .ipynb (what papermill reads), outside the repository."""
    d = tmp_path_factory.mktemp("nb")
    path = d / "01_split_comparison.ipynb"
    nbformat.write(nbk.read_notebook("01_split_comparison"), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("params, message", [
    ({"max_ouput_samples": 5}, "unknown parameter(s) 'max_ouput_samples' (did you mean 'max_output_samples'?)"),
    ({"max_output_samples": "many"}, "'max_output_samples' is 'many' (str)"),
])
def test_checking_cell_refuses_before_any_work(params, message, template_ipynb, tmp_path):
    """Plain papermill (no validation of ours): the notebook's checking cell refuses, nothing is written."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "out"
    with pytest.raises(PapermillExecutionError) as e:
        pm.execute_notebook(str(template_ipynb), str(tmp_path / "run.ipynb"), kernel_name="python3",
                            parameters={"hub": str(tmp_path / "nohub"), "output_dir": str(out), **params},
                            progress_bar=False, cwd=str(tmp_path))
    assert e.value.ename == "PtyAnalysisError"
    assert message in e.value.evalue
    nb = nbformat.read(tmp_path / "run.ipynb", as_version=4)
    failing = next(c for c in nb.cells if c.cell_type == "code" and c.execution_count == e.value.exec_count)
    assert "nbk.check_parameters(globals()" in failing.source  # the checking cell, before any work
    if "did you mean" in message:
        accepted = e.value.evalue.split("declares ", 1)[1].split(", ")
        assert "max_output_samples" in accepted and not {"nbk", "os", "pd", "inputs", "Path"} & set(accepted)
    assert not out.exists()


@pytest.mark.slow
def test_wheel_without_the_source_tree_finds_templates_and_writes_the_report(tmp_path):
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(ROOT), "-w", str(wheels)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "site"
    whl = next(wheels.glob("ptyanalysis-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(whl)],
                   check=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    hub = _fixture_module().make_hub(outside / "hub")
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import ptyanalysis; from ptyanalysis.pipeline import notebook as n; "
                            "print(ptyanalysis.__file__); print(n.template_path('03_phase_g_figures'))"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True)
    mod_file, template = probe.stdout.split()
    assert Path(mod_file).is_relative_to(site) and Path(template).is_relative_to(site)
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "phase-g", str(hub)], cwd=outside, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    html = hub / "analysis" / "phase_g_report.html"
    assert html.is_file() and "<html" in html.read_text()

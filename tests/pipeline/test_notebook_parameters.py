"""The one parameter mechanism of the notebooks (no kernel): declarations, checks, did-you-mean, paths, templates."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.pipeline import notebook as nbk

ROOT = Path(__file__).resolve().parents[2]
CELL = '''hub: Path = "../demo_hub"  # study hub
dose: float = 1000.0  # photons per pattern
names: list[str] = ["train", "test"]  # two names
max_output_samples: Optional[int] = 2000  # at most this many
output_dir: Optional[Path] = None  # default: under the hub
study_inputs: bool = True
label = "x"  # unannotated: the default's kind, None also fits
anything = None
'''


def declared():
    return nbk.parse_parameters(CELL)


def test_declarations_read_from_the_parameters_cell():
    d = declared()
    assert list(d) == ["hub", "dose", "names", "max_output_samples", "output_dir", "study_inputs", "label", "anything"]
    assert (d["hub"].kind, d["hub"].optional, d["hub"].default, d["hub"].help) == ("path", False, "../demo_hub", "study hub")
    assert (d["names"].kind, d["names"].items) == ("list", "str")
    assert (d["max_output_samples"].kind, d["max_output_samples"].optional) == ("int", True)
    assert (d["label"].kind, d["label"].optional) == ("str", True)
    assert d["anything"].kind is None
    assert d["dose"].declaration() == "dose: float = 1000.0"


def test_every_template_declares_its_parameters_and_checks_them_next():
    import jupytext

    names = nbk.template_names()
    assert names == ("00_compare_arms", "01_split_comparison", "02_zero_prediction_bisection", "03_phase_g_figures")
    for name in names:
        nb = jupytext.read(nbk.template_path(name))
        i = nbk.parameters_cell_index(nb)
        assert i is not None, name
        assert f'nbk.check_parameters(globals(), "{name}")' in nb.cells[i + 1].source, name
        d = nbk.declared_parameters(name)
        assert d["hub"].kind == "path" and d["hub"].default == "../demo_hub", name
        if "ensure_synthetic" in d:  # nothing simulates or trains unless asked
            assert d["ensure_synthetic"].default is None, name


def test_values_are_checked_and_normalised():
    d = declared()
    assert nbk.check_value(d["dose"], 1000) == (1000.0, None)
    assert nbk.check_value(d["names"], ["a", "b"]) == (["a", "b"], None)
    v, notice = nbk.check_value(d["names"], "train")
    assert v == ["train"] and "read as the list ['train']" in notice
    assert nbk.check_value(d["names"], "train, test")[0] == ["train", "test"]
    assert nbk.check_value(d["max_output_samples"], None) == (None, None)
    assert nbk.check_value(d["label"], None) == (None, None)
    assert nbk.check_value(d["anything"], {"x": 1}) == ({"x": 1}, None)
    assert nbk.check_value(d["hub"], "../h", base=Path("/a/notebooks"))[0] == Path("/a/h")
    assert nbk.check_value(d["hub"], "/abs/h", base=Path("/a/notebooks"))[0] == Path("/abs/h")
    for name, bad in (("max_output_samples", "many"), ("max_output_samples", 2.5), ("dose", "1000"),
                      ("study_inputs", "yes"), ("study_inputs", 1), ("names", [1, 2]), ("names", "a,,b"),
                      ("hub", None), ("hub", 3)):
        with pytest.raises(PtyAnalysisError, match=re.escape(f"'{name}' is {bad!r}")):
            nbk.check_value(d[name], bad, notebook="nb")
    with pytest.raises(PtyAnalysisError, match=r"'max_output_samples' is 'many' \(str\) but nb declares "
                                               r"max_output_samples: Optional\[int\] = 2000 \(int or None\)"):
        nbk.check_value(d["max_output_samples"], "many", notebook="nb")


def test_unknown_names_get_a_did_you_mean_and_only_real_parameters():
    with pytest.raises(PtyAnalysisError) as e:
        nbk.validate_parameters("01_split_comparison", {"max_ouput_samples": 5})
    msg = str(e.value)
    assert "unknown parameter(s) 'max_ouput_samples' (did you mean 'max_output_samples'?)" in msg
    accepted = msg.split("declares ", 1)[1].split(", ")
    assert accepted[:3] == ["hub", "dose", "model"]
    assert not {"nbk", "os", "pd", "warnings", "inputs", "splits", "Path", "Optional"} & set(accepted)


def _namespace(**values):
    ns = {"In": [""], "nbk": nbk, "os": os, "Path": Path}
    ns.update(values)
    return ns


def test_check_parameters_in_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv(nbk.NOTEBOOK_DIR_ENV, str(tmp_path / "notebooks"))
    d = nbk.declared_parameters("01_split_comparison")
    ns = _namespace(**{k: p.default for k, p in d.items()})
    ns["names"] = "a,b"
    said = []
    values = nbk.check_parameters(ns, "01_split_comparison", say=said.append)
    assert ns["hub"] == values["hub"] == (tmp_path / "demo_hub").resolve()  # relative to the notebook's folder
    assert ns["names"] == ["a", "b"] and any("read as the list" in s for s in said)
    assert set(values) == set(d)

    # papermill's injected cell just ran: a misspelt name is refused with a did-you-mean
    ns = _namespace(**{k: p.default for k, p in d.items()}, max_ouput_samples=5)
    ns["In"] = ["", "setup", "hub = ...", "# Parameters\nmax_ouput_samples = 5\n", "params = ..."]
    with pytest.raises(PtyAnalysisError, match=r"'max_ouput_samples' \(did you mean 'max_output_samples'\?\)"):
        nbk.check_parameters(ns, "01_split_comparison")
    # a wrong type injected by `papermill -p max_output_samples many`
    ns = _namespace(**{k: p.default for k, p in d.items()})
    ns["max_output_samples"] = "many"
    with pytest.raises(PtyAnalysisError, match=r"'max_output_samples' is 'many' \(str\)"):
        nbk.check_parameters(ns, "01_split_comparison")
    # a declared name renamed by an edit of the parameters cell
    ns = _namespace(**{k: p.default for k, p in d.items() if k != "hub"}, hbu="../x")
    with pytest.raises(PtyAnalysisError, match=r"'hub' \(found 'hbu': renamed\?\)"):
        nbk.check_parameters(ns, "01_split_comparison")


def test_relative_paths_resolve_against_the_notebook_folder_from_the_repo_root_or_notebooks(tmp_path, monkeypatch):
    monkeypatch.delenv(nbk.NOTEBOOK_DIR_ENV, raising=False)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "03_phase_g_figures.ipynb").write_text("{}")
    for cwd in (tmp_path, tmp_path / "notebooks"):
        monkeypatch.chdir(cwd)
        ns = _namespace(hub="../demo_hub", write_artifacts=True, job_panels=None)
        nbk.check_parameters(ns, "03_phase_g_figures", say=lambda s: None)
        assert ns["hub"] == (tmp_path / "demo_hub").resolve(), cwd
    # JupyterLab tells the kernel where the notebook is
    monkeypatch.chdir(tmp_path)
    ns = _namespace(hub="../demo_hub", write_artifacts=True, job_panels=None,
                    __session__=str(tmp_path / "notebooks" / "03_phase_g_figures.ipynb"))
    nbk.check_parameters(ns, "03_phase_g_figures", say=lambda s: None)
    assert ns["hub"] == (tmp_path / "demo_hub").resolve()


def test_templates_found_and_read():
    p = nbk.template_path("00_compare_arms")
    assert p.is_file() and p.parent.name == "templates"
    assert nbk.template_path("00_compare_arms.ipynb") == p
    with pytest.raises(PtyAnalysisError, match="no notebook 'nope' in the package; choose one of 00_compare_arms"):
        nbk.template_path("nope")
    nb = nbk.read_notebook("02_zero_prediction_bisection")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["jupytext"]["formats"] == "notebooks///ipynb,ptyanalysis/templates///py:percent"


@pytest.mark.tf
def test_importing_tensorflow_in_a_quiet_process_prints_no_start_up_lines():
    code = ("from ptyanalysis import quiet\nquiet.quiet_tensorflow_import()\n"
            "import tensorflow\nimport sys\nprint('ok', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert r.stderr.strip() == "ok", r.stderr


def test_messages_show_paths_relative_to_the_notebook_folder():
    c = nbk.CheckedParameters({"a": 1}, "/r/notebooks")
    assert c == {"a": 1} and c.folder == Path("/r/notebooks")
    assert c.relative("read /r/build/hub/x.npz: ok; /r/notebooks/y.ipynb (/data/z)") == \
        "read ../build/hub/x.npz: ok; y.ipynb (/data/z)"


def test_as_ipynb_gives_papermill_a_file_it_reads(tmp_path):
    import nbformat

    ipynb = ROOT / "notebooks" / "00_compare_arms.ipynb"
    assert nbk.as_ipynb(ipynb, tmp_path) == ipynb
    p = nbk.as_ipynb("00_compare_arms", tmp_path)
    assert p == tmp_path / "00_compare_arms.ipynb"
    nb = nbformat.read(p, as_version=4)
    assert nbk.parameters_cell_index(nb) is not None and list(nbk.declared_parameters(p)) == \
        list(nbk.declared_parameters("00_compare_arms"))

"""The study-grid runner: YAML/parameter validation, resume, --force, retries, dead kernels, Dask, manifest."""

import json
import time
from pathlib import Path

import pytest

from ptyanalysis.pipeline import grid as G
from ptyanalysis.phase_g import verify as V
from ptyanalysis.errors import PtyAnalysisError

pytestmark = pytest.mark.slow

NB = Path(__file__).parent / "notebooks"
OK_NB = NB / "grid_ok.ipynb"
FAULTY_NB = NB / "grid_faulty.ipynb"


def write_yaml(path, text):
    path.write_text(text)
    return path


def spec(tmp_path, notebook=OK_NB, **kw):
    data = {"hub": str(tmp_path / "hub"), "notebook": str(notebook), "doses": [1000],
            "views": ["dense", "sparse"], "splits": ["test"], "retries": 0}
    data.update(kw)
    return G.spec_from_dict(data, source="test.yaml")


# --------------------------------------------------------------------------- validation (no kernel)


def test_yaml_schema_errors_name_file_and_key(tmp_path):
    y = write_yaml(tmp_path / "s.yaml", f"hub: h\nnotebook: {OK_NB}\ndoses: [1000]\nviews: [dense]\nsplits: [test]\nworkerz: 2\n")
    with pytest.raises(PtyAnalysisError, match=r"s\.yaml: key 'workerz': unknown key"):
        G.load_spec(y)
    y = write_yaml(tmp_path / "s.yaml", f"hub: h\nnotebook: {OK_NB}\nviews: [dense]\nsplits: [test]\n")
    with pytest.raises(PtyAnalysisError, match="key 'doses': required key missing"):
        G.load_spec(y)
    y = write_yaml(tmp_path / "s.yaml", f"hub: h\nnotebook: {OK_NB}\ndoses: [1e3]\nviews: [dense]\nsplits: [test]\n")
    assert G.load_spec(y).doses == (1000,)  # YAML reads 1e3 as a string; accepted as a number
    for bad, key in (("doses: [-5]", "doses"), ("doses: [abc]", "doses"), ("views: []", "views"),
                     ("views: [a/b]", "views"), ("retries: -1", "retries"), ("outputs: [/abs.txt]", "outputs"),
                     ("timeout_s: 0", "timeout_s"), ("parameters: [1, 2]", "parameters")):
        base = {"doses": "doses: [1000]", "views": "views: [dense]"}
        lines = [f"hub: h", f"notebook: {OK_NB}", "splits: [test]",
                 bad if key == "doses" else base["doses"], bad if key == "views" else base["views"]]
        if key not in ("doses", "views"):
            lines.append(bad)
        y = write_yaml(tmp_path / "s.yaml", "\n".join(lines) + "\n")
        with pytest.raises(PtyAnalysisError, match=f"key '{key}'"):
            G.load_spec(y)
    with pytest.raises(PtyAnalysisError, match="key 'notebook': file not found"):
        G.spec_from_dict({"hub": "h", "notebook": str(tmp_path / "none.ipynb"), "doses": [1], "views": ["a"], "splits": ["b"]})
    with pytest.raises(PtyAnalysisError, match="invalid YAML"):
        G.load_spec(write_yaml(tmp_path / "s.yaml", "hub: [unclosed\n"))


def test_unknown_parameter_is_an_error_before_anything_runs(tmp_path):
    s = spec(tmp_path, parameters={"scale": 2.0, "n_groupz": 5})
    with pytest.raises(PtyAnalysisError, match=r"unknown parameter\(s\) 'n_groupz'.*declares dose, view, split"):
        G.run_grid(s, serial=True)
    assert not (tmp_path / "hub").exists()  # nothing ran, nothing written


def test_parameter_types_checked_loosely(tmp_path):
    G.validate_parameters(spec(tmp_path, parameters={"scale": 2}))  # int for a float default: fine
    with pytest.raises(PtyAnalysisError, match=r"'scale' is 'big' \(str\) but grid_ok.ipynb declares scale = 1.0 \(number or None\)"):
        G.validate_parameters(spec(tmp_path, parameters={"scale": "big"}))
    with pytest.raises(PtyAnalysisError, match="set by the grid runner"):
        G.validate_parameters(spec(tmp_path, parameters={"dose": 5}))


def test_execute_validates_parameters_like_the_grid(tmp_path):
    from ptyanalysis.pipeline import notebook as nbk

    nbk.validate_parameters(OK_NB, {"scale": 2, "dose": 1000})
    with pytest.raises(PtyAnalysisError, match=r"unknown parameter\(s\) 'n_groupz'"):
        nbk.validate_parameters(OK_NB, {"n_groupz": 5})
    with pytest.raises(PtyAnalysisError, match=r"'scale' is 'big' \(str\) but grid_ok.ipynb declares scale = 1.0"):
        nbk.validate_parameters(OK_NB, {"scale": "big"})
    nbk.validate_parameters(OK_NB, {"scale": None})  # None fits any default (an optional input)
    G.validate_parameters(spec(tmp_path, parameters={"scale": None}))
    with pytest.raises(PtyAnalysisError, match="unknown parameter"):  # refused before a kernel starts
        nbk.execute(OK_NB, tmp_path / "out.ipynb", {"typo": 1})
    assert not (tmp_path / "out.ipynb").exists()


def test_notebook_must_declare_cell_parameters(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("dose = 1", metadata={"tags": ["parameters"]})]
    p = tmp_path / "nb.ipynb"
    nbformat.write(nb, p)
    with pytest.raises(PtyAnalysisError, match="must declare dose, view, split"):
        G.validate_parameters(spec(tmp_path, notebook=p))
    nb.cells[0].metadata = {}
    nbformat.write(nb, p)
    with pytest.raises(PtyAnalysisError, match="no cell tagged 'parameters'"):
        G.validate_parameters(spec(tmp_path, notebook=p))


def test_expand_grid(tmp_path):
    s = spec(tmp_path, doses=[1000, "1.0e+5"], splits=["train", "test"], parameters={"scale": 0.5})
    cells = G.expand(s)
    assert [(c.dose, c.view, c.split) for c in cells] == [
        (1000, "dense", "train"), (1000, "dense", "test"), (1000, "sparse", "train"), (1000, "sparse", "test"),
        (100000, "dense", "train"), (100000, "dense", "test"), (100000, "sparse", "train"), (100000, "sparse", "test")]
    c = cells[-1]
    assert c.output_dir == s.hub / "analysis" / "dose_100000" / "sparse" / "test"
    assert c.output_notebook.name == "grid_ok.ipynb" and c.log.name == "run.log"
    assert c.parameters == {"scale": 0.5, "dose": 100000, "view": "sparse", "split": "test", "output_dir": str(c.output_dir)}
    assert "hub" not in c.parameters  # grid_ok does not declare it
    assert len({x.param_hash for x in cells}) == len(cells)


def test_dry_run_writes_nothing(tmp_path):
    res = G.run_grid(spec(tmp_path), dry_run=True)
    assert [r.status for r in res.results] == ["pending", "pending"]
    assert not (tmp_path / "hub").exists()


def test_bad_scheduler_address_is_an_error(tmp_path, capsys):
    from ptyanalysis.cli import main

    y = write_yaml(tmp_path / "s.yaml", f"hub: {tmp_path / 'hub'}\nnotebook: {OK_NB}\ndoses: [1000]\n"
                   "views: [dense]\nsplits: [test]\n")
    assert main(["grid", str(y), "--scheduler", "bogus://nowhere:1", "--quiet"]) == 2
    assert "--scheduler 'bogus://nowhere:1': cannot connect" in capsys.readouterr().err


# --------------------------------------------------------------------------- running (kernels)


def test_serial_run_resume_force_and_manifest(tmp_path):
    s = spec(tmp_path, parameters={"scale": 2.0}, outputs=["result.json"])
    res = G.run_grid(s, serial=True)
    assert res.ok and [r.status for r in res.results] == ["success", "success"], res.table()
    cell = s.hub / "analysis" / "dose_1000" / "sparse" / "test"
    out = json.loads((cell / "result.json").read_text())  # the notebook also asserted cwd == output_dir
    assert out == {"dose": 1000, "view": "sparse", "split": "test", "value": 2000.0, "mplbackend": "Agg", "label": "x"}
    assert (cell / "grid_ok.ipynb").is_file() and (cell / "run.log").is_file()
    marker = json.loads((cell / "job_done.json").read_text())
    assert set(marker["files"]) == {"grid_ok.ipynb", "result.json", "run.log"} and all(marker["files"].values())
    # the manifest, in the study's format
    m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
    assert (m["n_jobs"], m["n_success"], m["n_failed"], m["n_executed"], m["n_skipped"]) == (2, 2, 0, 2, 0)
    assert m["generated_at"].endswith("Z") and m["parameters"] == {"scale": 2.0}
    assert m["jobs"][1]["output_dir"] == "dose_1000/sparse/test" and m["jobs"][1]["dose"] == 1000
    e = m["execution_results"][1]
    assert e["returncode"] == 0 and e["status"] == "success" and e["log_path"] == "dose_1000/sparse/test/run.log"
    logs = sorted((s.hub / "analysis" / "logs").glob("grid_*.log"))
    assert len(logs) == 1 and logs[0].read_text().rstrip().endswith(G.SUCCESS_SENTINEL)
    assert G.SUCCESS_SENTINEL == V.GRID_SUCCESS_SENTINEL
    # resume: nothing to do, no kernel, seconds
    t = time.perf_counter()
    again = G.run_grid(s)  # default backend: would start a cluster if anything had to run
    assert time.perf_counter() - t < 3.0
    assert [r.status for r in again.results] == ["skipped", "skipped"] and again.backend.startswith("none")
    assert json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())["n_success"] == 2
    # an output that disappeared, or changed parameters, make the cell run again
    (cell / "result.json").unlink()
    again = G.run_grid(s, serial=True)
    assert [r.status for r in again.results] == ["skipped", "success"]
    changed = G.run_grid(spec(tmp_path, parameters={"scale": 3.0}, outputs=["result.json"]), serial=True)
    assert [r.status for r in changed.results] == ["success", "success"]
    forced = G.run_grid(spec(tmp_path, parameters={"scale": 3.0}, outputs=["result.json"]), serial=True, force=True)
    assert [r.status for r in forced.results] == ["success", "success"]
    assert json.loads((cell / "result.json").read_text())["value"] == 3000.0


def test_missing_declared_output_is_a_failure(tmp_path):
    res = G.run_grid(spec(tmp_path, views=["dense"], outputs=["never_written.csv"]), serial=True)
    r = res.results[0]
    assert r.status == "failed" and r.error_name == "MissingOutputs" and "never_written.csv" in r.error_value
    assert not (r.output_dir / "job_done.json").exists()


def test_retry_then_success(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    s = spec(tmp_path, notebook=FAULTY_NB, parameters={"mode": "flaky", "marker_dir": str(marks)}, retries=1)
    res = G.run_grid(s, serial=True)
    assert res.ok, res.table()
    by_view = {r.view: r for r in res.results}
    assert by_view["dense"].attempts == 1 and by_view["sparse"].attempts == 2
    log = (by_view["sparse"].output_dir / "run.log").read_text()
    assert "attempt 1 failed: RuntimeError: first attempt fails" in log and "success after 2 attempt(s)" in log


@pytest.mark.parametrize("mode, ename", [("exit", "DeadKernelError"), ("kill", "DeadKernelError"), ("raise", "ValueError")])
def test_failing_cell_recorded_others_kept(tmp_path, mode, ename, capsys):
    from ptyanalysis.cli import main

    y = write_yaml(tmp_path / "grid.yaml",
                   f"hub: {tmp_path / 'hub'}\nnotebook: {FAULTY_NB}\ndoses: [1000]\nviews: [dense, sparse]\n"
                   f"splits: [test]\nparameters:\n  mode: {mode}\nretries: 0\noutputs: [result.json]\n")
    rc = main(["grid", str(y), "--serial", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "failed" in out and ename in out  # the summary table
    m = json.loads((tmp_path / "hub" / "analysis" / "comparison_manifest.json").read_text())
    assert (m["n_success"], m["n_failed"]) == (1, 1)
    dense, sparse = m["execution_results"]
    assert dense["status"] == "success" and (tmp_path / "hub" / "analysis" / "dose_1000" / "dense" / "test" / "job_done.json").exists()
    assert sparse["status"] == "failed" and sparse["returncode"] == 1 and sparse["error_name"] == ename
    if mode == "raise":
        assert sparse["error_value"] == "boom in sparse" and isinstance(sparse["cell_index"], int)
    log = sorted((tmp_path / "hub" / "analysis" / "logs").glob("grid_*.log"))[-1].read_text()
    assert G.SUCCESS_SENTINEL not in log and "FAILED: 1 cell(s) failed" in log


def test_dask_local_cluster_two_workers(tmp_path):
    s = spec(tmp_path, parameters={"label": "dask"}, outputs=["result.json"], retries=1)
    res = G.run_grid(s, workers=2)
    assert res.ok, res.table()
    assert "LocalCluster (2 worker(s) x 1 thread)" in res.backend
    for r in res.results:
        got = json.loads((r.output_dir / "result.json").read_text())
        assert got["label"] == "dask" and got["mplbackend"] == "Agg" and got["view"] == r.view
    m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
    assert m["backend"] == res.backend and m["n_success"] == 2
    assert "dose" in res.table() and "2/2 complete" in res.table()


def test_end_to_end_grid_phase_g_verify(tmp_path):
    """Grid (stand-in comparison notebook) -> Phase G -> verify: all checks pass."""
    import ptyanalysis.phase_g.report as R_report

    fixture = Path(__file__).parents[1] / "phase_g" / "data" / "phase_g_fixture.py"
    s = spec(tmp_path, notebook=NB / "grid_fake_compare.ipynb", parameters={"fixture": str(fixture)},
             outputs=["comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png", "comparison.nc"])
    res = G.run_grid(s, serial=True)
    assert res.ok, res.table()
    R_report.phase_g(s.hub, html=False)
    v = V.verify_hub(s.hub)
    assert v.all_valid, [x for x in v.validations if not x["valid"]]

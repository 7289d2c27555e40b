"""The study-grid runner: YAML/parameter validation, resume, --force, retries, dead kernels, Dask, manifest."""

import json
import time
from pathlib import Path

import pytest

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.phase_g import verify as V
from ptyanalysis.pipeline import grid as G

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
        lines = ["hub: h", f"notebook: {OK_NB}", "splits: [test]",
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
    G.validate_grid_parameters(spec(tmp_path, parameters={"scale": 2}))  # int for a float default: fine
    with pytest.raises(PtyAnalysisError, match=r"'scale' is 'big' \(str\) but grid_ok.ipynb declares scale = 1.0 \(number or None\)"):
        G.validate_grid_parameters(spec(tmp_path, parameters={"scale": "big"}))
    with pytest.raises(PtyAnalysisError, match="set by the grid runner"):
        G.validate_grid_parameters(spec(tmp_path, parameters={"dose": 5}))


def test_execute_validates_parameters_like_the_grid(tmp_path):
    from ptyanalysis.pipeline import notebook as nbk

    nbk.validate_parameters(OK_NB, {"scale": 2, "dose": 1000})
    with pytest.raises(PtyAnalysisError, match=r"unknown parameter\(s\) 'n_groupz'"):
        nbk.validate_parameters(OK_NB, {"n_groupz": 5})
    with pytest.raises(PtyAnalysisError, match=r"'scale' is 'big' \(str\) but grid_ok.ipynb declares scale = 1.0"):
        nbk.validate_parameters(OK_NB, {"scale": "big"})
    nbk.validate_parameters(OK_NB, {"scale": None})  # None fits any default (an optional input)
    G.validate_grid_parameters(spec(tmp_path, parameters={"scale": None}))
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
        G.validate_grid_parameters(spec(tmp_path, notebook=p))
    nb.cells[0].metadata = {}
    nbformat.write(nb, p)
    with pytest.raises(PtyAnalysisError, match="no cell tagged 'parameters'"):
        G.validate_grid_parameters(spec(tmp_path, notebook=p))


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


# --------------------------------------------------------------------------- running (kernels: slow)


@pytest.mark.slow
def test_serial_run_resume_force_and_manifest(tmp_path):
    s = spec(tmp_path, parameters={"scale": 2.0}, outputs=["result.json"])
    res = G.run_grid(s, serial=True)
    assert res.ok and [r.status for r in res.results] == ["success", "success"], res.table()
    cell = s.hub / "analysis" / "dose_1000" / "sparse" / "test"
    out = json.loads((cell / "result.json").read_text())  # the notebook also asserted cwd == output_dir
    pid = out.pop("pid")
    assert out == {"dose": 1000, "view": "sparse", "split": "test", "value": 2000.0, "mplbackend": "Agg", "label": "x",
                   "cache": None, "notebook_dir": str(cell.resolve())}  # serial runs too: the folder from the start
    # serial run: both cells ran in one kernel (reused, its namespace cleared: the notebook checks it)
    assert json.loads((s.hub / "analysis" / "dose_1000" / "dense" / "test" / "result.json").read_text())["pid"] == pid
    assert (cell / "grid_ok.ipynb").is_file() and (cell / "run.log").is_file()
    marker = json.loads((cell / "job_done.json").read_text())
    assert set(marker["files"]) == {"grid_ok.ipynb", "result.json", "run.log"} and all(marker["files"].values())
    assert marker["attempts"] == 1 and marker["peak_rss_bytes"] > 10 * 2**20
    assert (cell / "attempts" / "1" / "run.log").is_file()
    assert json.loads((cell / "attempts" / "1" / "attempt.json").read_text())["status"] == "success"
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


@pytest.mark.slow
def test_missing_declared_output_is_a_failure(tmp_path):
    res = G.run_grid(spec(tmp_path, views=["dense"], outputs=["never_written.csv"]), serial=True)
    r = res.results[0]
    assert r.status == "failed" and r.error_name == "MissingOutputs" and "never_written.csv" in r.error_value
    assert not (r.output_dir / "job_done.json").exists()


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_dask_local_cluster_two_workers(tmp_path):
    s = spec(tmp_path, parameters={"label": "dask"}, outputs=["result.json"], retries=1)
    res = G.run_grid(s, workers=2)
    assert res.ok, res.table()
    assert "LocalCluster (2 worker(s) x 1 thread)" in res.backend
    lanes = [line for line in res.log_path.read_text().splitlines() if "lanes by cost" in line]
    assert len(lanes) == 1 and lanes[0].count("1 cell(s)") == 2  # each worker's planned load is logged
    for r in res.results:
        got = json.loads((r.output_dir / "result.json").read_text())
        assert got["label"] == "dask" and got["mplbackend"] == "Agg" and got["view"] == r.view
    m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
    assert m["backend"] == res.backend and m["n_success"] == 2
    assert "dose" in res.table() and "2/2 complete" in res.table()


@pytest.mark.slow
def test_a_worker_runs_its_cells_in_grid_order(tmp_path):
    """Dask runs separately submitted tasks newest first; the grid's priorities keep (dose, view) groups together."""
    s = spec(tmp_path, views=["dense", "sparse"], splits=["train", "test"], outputs=["result.json"])
    res = G.run_grid(s, workers=1)
    assert res.ok, res.table()
    written = sorted(res.results, key=lambda r: (r.output_dir / "result.json").stat().st_mtime_ns)
    assert [(r.view, r.split) for r in written] == [("dense", "train"), ("dense", "test"),
                                                     ("sparse", "train"), ("sparse", "test")]


@pytest.mark.slow
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


# --------------------------------------------------------------------------- memory, reuse, attempts


def test_memory_plan_from_measured_peaks_and_files(tmp_path):
    s = spec(tmp_path, doses=[1000, 2000], views=["dense", "sparse"])
    cells = G.expand(s)
    p = G.plan_memory(cells, s.hub, workers=2, memory_bytes=8 << 30)
    assert p.workers == 2 and set(p.sources.values()) == {"default"} and p.max_cell_bytes == G.DEFAULT_CELL_MEMORY
    # a measured peak of one cell (recorded by an earlier attempt) is used for it and, with the margin, for the others
    a = cells[0].output_dir / "attempts" / "1"
    a.mkdir(parents=True)
    (a / "attempt.json").write_text(json.dumps({"n": 1, "status": "success", "peak_rss_bytes": 3 << 30}))
    p = G.plan_memory(cells, s.hub, workers=2, memory_bytes=8 << 30)
    assert p.sources[cells[0].label] == "measured" and p.sources[cells[1].label] == "measured on other cells"
    assert p.cell_bytes[cells[0].label] == int((3 << 30) * G.MEMORY_MARGIN)
    assert p.workers == 2  # 2 x 3.75 GiB fit in 8 GiB
    p = G.plan_memory(cells, s.hub, workers=2, memory_bytes=6 << 30)
    assert p.workers == 1 and p.limited  # 2 x 3.75 GiB do not fit in 6 GiB
    assert G.plan_memory(cells, s.hub, workers=2, memory_bytes=1 << 30).workers == 1  # never 0
    # without measurements, the hub's model and split files give the estimate
    d = s.hub / "data" / "phase_e" / "dose_1000" / "baseline" / "gs1"
    d.mkdir(parents=True)
    (d / "model.keras").write_bytes(b"x" * 1000)
    assert G.files_estimate(s.hub, 1000, "dense", "test") == G.KERNEL_BASE_MEMORY + 4000
    assert G.files_estimate(s.hub, 2000, "dense", "test") is None
    budget, text = G.machine_memory()
    assert budget > 0 and "GiB" in text


def test_assign_workers_keeps_dose_view_together(tmp_path):
    s = spec(tmp_path, doses=[1000, 10000, 100000], views=["dense", "sparse"], splits=["train", "test"])
    cells = G.expand(s)
    where = G.assign_workers(cells, ["a", "b"])
    for c in cells:  # both splits of a dose x view on one worker: its kernel loads that model once
        other = next(x for x in cells if (x.dose, x.view) == (c.dose, c.view) and x.split != c.split)
        assert where[c.label] == where[other.label]
    assert sorted(list(where.values()).count(w) for w in "ab") == [6, 6]
    assert G.assign_workers(cells, []) == {}


def test_model_cache_reuses_until_files_change(tmp_path):
    from ptyanalysis.pipeline.modelcache import ModelCache

    calls = []
    cache = ModelCache(max_models=2, loader=lambda p: calls.append(p) or object())
    m1, d = tmp_path / "m1", tmp_path / "m2"
    for p in (m1, d):
        p.mkdir()
        (p / "model.keras").write_bytes(b"1")
    a, info = cache.load(m1)
    assert not info["cached"] and len(calls) == 1
    b, info = cache.load(m1)
    assert b is a and info["cached"] and info["cache"]["hits"] == 1 and len(calls) == 1
    (m1 / "model.keras").write_bytes(b"22")  # retrained: other files, loaded afresh
    c, info = cache.load(m1)
    assert c is not a and not info["cached"]
    cache.load(d)
    cache.load(tmp_path / "m2")
    assert cache.stats.loads == 3 and len(cache) == 2
    none = ModelCache(max_models=0, loader=lambda p: object())
    assert none.load(m1)[0] is not none.load(m1)[0]


@pytest.mark.slow
def test_kernel_reuse_shares_the_model_cache_across_cells(tmp_path):
    probe = tmp_path / "model.bin"
    probe.write_text("weights")
    s = spec(tmp_path, doses=[1000, 2000], views=["dense"], parameters={"cache_probe": str(probe)},
             outputs=["result.json"])
    res = G.run_grid(s, serial=True)
    assert res.ok, res.table()
    got = [json.loads((r.output_dir / "result.json").read_text()) for r in res.results]
    assert [g["cache"]["cached"] for g in got] == [False, True] and got[1]["cache"]["loads"] == 1
    assert got[0]["pid"] == got[1]["pid"]
    fresh = G.run_grid(s, serial=True, force=True, reuse_kernel=False)
    got = [json.loads((r.output_dir / "result.json").read_text()) for r in fresh.results]
    assert [g["cache"]["cached"] for g in got] == [False, False] and got[0]["pid"] != got[1]["pid"]
    m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
    assert m["reuse_kernel"] is False and all(e["peak_rss_bytes"] for e in m["execution_results"])


@pytest.mark.slow
def test_peak_memory_recorded_and_kernel_output_kept_out_of_the_terminal(tmp_path, capfd):
    s = spec(tmp_path, views=["dense"], parameters={"alloc_mb": 300}, outputs=["result.json"])
    res = G.run_grid(s, serial=True)
    assert res.ok, res.table()
    marker = json.loads((res.results[0].output_dir / "job_done.json").read_text())
    assert marker["peak_rss_bytes"] > 300 * 2**20, marker
    out, err = capfd.readouterr()
    assert "IPKernelApp" not in out + err
    logs = list((s.hub / "analysis" / "logs" / "kernels").glob("kernel_*.log"))
    assert logs  # the kernels' own stdout/stderr go here


@pytest.mark.slow
def test_partial_rerun_merges_into_the_manifest(tmp_path):
    import ptyanalysis.phase_g.report as R_report

    fixture = Path(__file__).parents[1] / "phase_g" / "data" / "phase_g_fixture.py"
    kw = dict(notebook=NB / "grid_fake_compare.ipynb", parameters={"fixture": str(fixture)},
              outputs=["comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png", "comparison.nc"])
    s = spec(tmp_path, **kw)
    assert G.run_grid(s, serial=True).ok
    one = spec(tmp_path, views=["sparse"], **kw)
    res = G.run_grid(one, serial=True, force=True)  # one cell of two, rerun
    assert res.ok and len(res.results) == 1
    m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
    assert (m["n_jobs"], m["n_success"], m["n_failed"]) == (2, 2, 0)
    assert [j["view"] for j in m["jobs"]] == ["dense", "sparse"]
    assert m["merged"]["kept_jobs"] == 1 and m["merged"]["replaced_jobs"] == 1
    assert m["execution_results"][1]["attempts"] == 1
    R_report.phase_g(s.hub, html=False)
    v = V.verify_hub(s.hub)
    assert v.all_valid, [x for x in v.validations if not x["valid"]]


def test_merge_manifest_pure():
    old = {"generated_at": "t0", "grid": {"doses": [1000], "views": ["dense", "sparse"], "splits": ["test"]},
           "jobs": [{"dose": 1000, "view": "dense", "split": "test"}, {"dose": 1000, "view": "sparse", "split": "test"}],
           "execution_results": [{"dose": 1000, "view": "dense", "split": "test", "returncode": 0},
                                 {"dose": 1000, "view": "sparse", "split": "test", "returncode": 1}]}
    new = {"grid": {"doses": [1000, 2000], "views": ["sparse"], "splits": ["test"]},
           "jobs": [{"dose": 1000, "view": "sparse", "split": "test"}, {"dose": 2000, "view": "sparse", "split": "test"}],
           "execution_results": [{"dose": 1000, "view": "sparse", "split": "test", "returncode": 0},
                                 {"dose": 2000, "view": "sparse", "split": "test", "returncode": 0}]}
    m = G.merge_manifest(old, new)
    assert (m["n_jobs"], m["n_success"], m["n_failed"]) == (3, 3, 0)
    assert [(j["dose"], j["view"]) for j in m["jobs"]] == [(1000, "dense"), (1000, "sparse"), (2000, "sparse")]
    assert m["grid"]["doses"] == [1000, 2000] and m["grid"]["views"] == ["dense", "sparse"]
    assert G.merge_manifest(None, new) is new and G.merge_manifest({"bogus": 1}, new) is new


def test_dry_run_checks_doses_views_splits_against_the_hub(tmp_path, capsys):
    from ptyanalysis.cli import main

    hub = tmp_path / "hub"
    d = hub / "data" / "phase_c" / "dose_1000"
    d.mkdir(parents=True)
    for split in ("train", "test"):
        (d / f"patched_{split}.npz").write_bytes(b"x")
    (d / "views.json").write_text(json.dumps({"views": {"dense": {"test": [0]}, "sparse": {"test": [0]}}}))
    base = f"hub: {hub}\nnotebook: {OK_NB}\nsplits: [test]\n"
    y = write_yaml(tmp_path / "s.yaml", base + "doses: [1000]\nviews: [dense, sparce]\n")
    with pytest.raises(PtyAnalysisError, match=r"key 'views': view 'sparce' is not in the hub .*did you mean 'sparse'"):
        G.run_grid(G.load_spec(y), dry_run=True)
    assert main(["grid", str(y), "--dry-run"]) == 2
    assert "did you mean 'sparse'" in capsys.readouterr().err
    y = write_yaml(tmp_path / "s.yaml", base + "doses: [10000]\nviews: [dense]\n")
    with pytest.raises(PtyAnalysisError, match=r"key 'doses': dose 'dose_10000' is not in the hub .*dose_1000"):
        G.run_grid(G.load_spec(y), dry_run=True)
    y = write_yaml(tmp_path / "s.yaml", f"hub: {hub}\nnotebook: {OK_NB}\nsplits: [tset]\ndoses: [1000]\nviews: [dense]\n")
    with pytest.raises(PtyAnalysisError, match=r"split 'tset' .*did you mean 'test'"):
        G.run_grid(G.load_spec(y), dry_run=True)
    y = write_yaml(tmp_path / "s.yaml", base + "doses: [1000]\nviews: [dense, sparse]\n")
    assert main(["grid", str(y), "--dry-run"]) == 0
    assert "2 of 2 cell(s) would run" in capsys.readouterr().out
    # a hub without datasets: nothing to check against, and the dry run says so
    y = write_yaml(tmp_path / "s.yaml", f"hub: {tmp_path / 'new'}\nnotebook: {OK_NB}\nsplits: [test]\ndoses: [1]\n"
                   "views: [sparce]\n")
    assert main(["grid", str(y), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "notice:" in out and "not checked" in out and "1 of 1 cell(s) would run" in out


@pytest.mark.slow
def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    res = G.run_grid(spec(tmp_path), serial=True, echo=True)
    assert res.ok
    out = capsys.readouterr().out
    assert "[1/2] dose_1000/dense/test: success after 1 attempt(s)" in out and "[2/2]" in out


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_killed_dask_worker_reruns_no_finished_cell_and_every_attempt_is_recorded(tmp_path):
    """A real `dask scheduler` + 2 `dask worker` processes; one worker is SIGKILLed mid-grid."""
    import signal
    import subprocess
    import sys
    import threading

    dask_cli = Path(sys.executable).parent / "dask"
    sport, wports = _free_port(), [_free_port(), _free_port()]
    addr = f"tcp://127.0.0.1:{sport}"
    logs = tmp_path / "cluster"
    logs.mkdir()
    procs = [subprocess.Popen([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", str(sport),
                               "--no-dashboard"], stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    try:
        time.sleep(1.0)
        for i, wp in enumerate(wports):
            procs.append(subprocess.Popen([str(dask_cli), "worker", addr, "--host", "127.0.0.1", "--worker-port", str(wp),
                                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
                                          stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT))
        from dask.distributed import Client

        with Client(addr, set_as_default=False, timeout=30) as c:
            c.wait_for_workers(2, timeout=30)
        s = spec(tmp_path, doses=[1000, 2000, 3000], views=["dense", "sparse"], parameters={"sleep_s": 2.0},
                 outputs=["result.json"], retries=0)
        cells = G.expand(s)
        out = {}
        t = threading.Thread(target=lambda: out.update(res=G.run_grid(s, scheduler=addr)))
        t.start()
        victim = None
        deadline = time.time() + 60
        while victim is None and time.time() < deadline:  # kill a worker that finished a cell and is running another
            for i, wp in enumerate(wports):
                me = f"tcp://127.0.0.1:{wp}"
                finished = [c for c in cells if (c.output_dir / "job_done.json").is_file()
                            and json.loads((c.output_dir / "job_done.json").read_text()).get("worker") == me]
                running = [a for c in cells for a in G.cell_attempts(c) if a["worker"] == me and a["status"] == "running"]
                if finished and running:
                    victim = i
                    break
            time.sleep(0.05)
        assert victim is not None, "no worker finished a cell while running another"
        before = {c.label: (c.output_dir / "job_done.json").read_text() for c in cells
                  if (c.output_dir / "job_done.json").is_file()}
        procs[1 + victim].send_signal(signal.SIGKILL)
        t.join(90)
        res = out["res"]
        assert res.ok, res.table()
        for label, text in before.items():  # finished cells are final: not run again, marker untouched
            c = next(x for x in cells if x.label == label)
            assert (c.output_dir / "job_done.json").read_text() == text, label
            assert [a["n"] for a in G.cell_attempts(c)] == [1], label
        m = json.loads((s.hub / "analysis" / "comparison_manifest.json").read_text())
        lost = [e for e in m["execution_results"] if e["lost_attempts"]]
        assert len(lost) >= 1, m["execution_results"]
        for e in lost:  # the attempt lost with the worker is recorded, its log kept, and the cell completed
            c = next(x for x in cells if (x.dose, x.view) == (e["dose"], e["view"]))
            att = G.cell_attempts(c)
            assert e["attempts"] == len(att) >= 2 and att[0]["status"] == "lost" and att[-1]["status"] == "success"
            assert len(e["attempt_logs"]) == len(att) and all((s.hub / "analysis" / p).is_file() for p in e["attempt_logs"])
            assert "##### attempt 1 (lost" in (c.output_dir / "run.log").read_text()
        assert sum(len(G.cell_attempts(c)) for c in cells) == len(cells) + len(lost)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

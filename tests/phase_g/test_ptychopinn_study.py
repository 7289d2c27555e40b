"""Today's PtychoPINN study folders (grid-lines runners) read as Phase G jobs, and phase-g over them end to end."""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import ptyanalysis.phase_g.collect as R_collect
import ptyanalysis.phase_g.ptychopinn_study as S
import ptyanalysis.phase_g.report as R_report
import ptyanalysis.phase_g.story as R_story
from ptyanalysis.commands import phase_g as phase_g_command
from ptyanalysis.errors import PtyAnalysisError

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("ptychopinn_study_fixture", DATA / "ptychopinn_study_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
_spec2 = importlib.util.spec_from_file_location("phase_g_fixture", DATA / "phase_g_fixture.py")
G = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(G)

FALLING = F.lightning_rows([1.0, 0.8, 0.6, 0.45, 0.35], [1.1, 0.9, 0.7, 0.55, 0.45])


def _row(rows, model, metric):
    return next(r for r in rows if r["model"] == model and r["metric"] == metric)


def test_wrapper_study_folder_is_one_job(tmp_path):
    root = F.make_study(tmp_path / "study", nphotons=1e4, N=32, gridsize=1, lightning={"pinn": FALLING})
    st = S.read_study(root)
    assert (st.dose, st.view, st.split, st.status) == (10000, "N32-gs1", "test", "success")
    assert st.invocation["git_commit"].startswith("712c23f") and st.invocation["exit_code"] == 0
    pinn, base = st.arm_model("PtychoPINN"), st.arm_model("Baseline")
    assert (pinn.model_id, base.model_id, pinn.metrics_source) == ("pinn", "baseline", "metrics.json")
    want = F.eval_metrics(0.8)
    for m in ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7"):
        r = _row(pinn.metrics, "PtychoPINN", m)
        assert np.isclose(r["amplitude"], float(want[m][0])) and np.isclose(r["phase"], float(want[m][1])), m
    assert _row(pinn.metrics, "PtychoPINN", "computation_time_s")["value"] == pytest.approx(1.05)
    assert np.allclose(pinn.frc["amplitude"], want["frc"][0])
    assert [h.name for h in pinn.histories] == ["history.json", "metrics.csv"]
    assert st.ground_truth == root / "recons" / "gt" / "recon.npz"
    assert any("no PtyChi arm" in n for n in st.notes)


def test_tf_workflow_alone_writes_strings_read_loosely_with_a_note(tmp_path):
    root = F.make_study(tmp_path / "s", nphotons=1e9, tf_only=True)
    raw = json.loads((root / "metrics.json").read_text())
    assert isinstance(raw["pinn"]["mae"][0], str) and isinstance(raw["pinn"]["frc"][0], str)  # default=str
    st = S.read_study(root)
    assert st.dose == 10**9 and st.status == "success"
    assert _row(st.arm_model("PtychoPINN").metrics, "PtychoPINN", "ms_ssim")["amplitude"] == pytest.approx(0.8)
    assert st.arm_model("Baseline").frc is not None
    assert any("stored as strings" in n for n in st.notes) and any("stored as text" in n for n in st.notes)
    assert any("no invocation.json" in n for n in st.notes)
    assert any("runs/" in n and "nphotons" in n for n in st.notes)  # where the dose came from


def test_torch_rows_take_arms_by_fallback_or_explicitly(tmp_path):
    root = F.make_study(tmp_path / "s", models={"pinn_ffno": 0.7, "supervised_ffno": 0.5, "pinn_fno": 0.6})
    st = S.read_study(root)
    assert st.arm_model("Baseline").model_id == "supervised_ffno" and st.arm_model("PtychoPINN") is None
    assert any("pinn_ffno, pinn_fno" in n and "--arm" in n for n in st.notes)
    st = S.read_study(root, arms={"PtychoPINN": "pinn_fno"})
    assert st.arm_model("PtychoPINN").model_id == "pinn_fno"
    assert _row(st.arm_model("PtychoPINN").metrics, "PtychoPINN", "ms_ssim")["amplitude"] == pytest.approx(0.6)
    with pytest.raises(PtyAnalysisError, match="unknown arm 'Pinn'"):
        S.read_study(root, arms={"Pinn": "pinn_fno"})
    # the PyTorch rows share STUDY/lightning_logs: not matched to one of three rows; their history.json is judged
    assert [h.name for h in st.arm_model("Baseline").histories] == ["history.json"]


def test_the_torch_rows_shared_lightning_logs(tmp_path):
    root = F.make_study(tmp_path / "s", models={"pinn": 0.8, "pinn_ffno": 0.7},
                        root_lightning=[FALLING, FALLING])
    st = S.read_study(root, arms={"PtychoPINN": "pinn_ffno", "Baseline": "pinn"})
    ffno = st.arm_model("PtychoPINN")
    assert [_rel(h, root) for h in ffno.histories] == ["runs/pinn_ffno/history.json",
                                                        "lightning_logs/version_1/metrics.csv"]
    assert any("matched to 'pinn_ffno' (the only PyTorch row); 1 older version(s)" in n for n in st.notes)
    assert [h.name for h in st.arm_model("Baseline").histories] == ["history.json"]
    root2 = F.make_study(tmp_path / "t", models={"pinn_fno": 0.8, "pinn_ffno": 0.7}, root_lightning=[FALLING])
    st2 = S.read_study(root2)
    assert any("shared by the PyTorch rows (pinn_ffno, pinn_fno): not matched" in n for n in st2.notes)


def _rel(p, root):
    return Path(p).relative_to(root).as_posix()


def test_failed_study_is_a_failed_job(tmp_path):
    root = F.make_study(tmp_path / "s", status="failed")
    st = S.read_study(root)
    assert st.status == "failed" and "exit code 1" in st.error and "Expected recon artifact" in st.error
    imp = S.import_studies(root)
    jobs = R_collect.collect_jobs(root)
    assert [(j.status, j.label) for j in jobs] == [("failed", "dose_10000/N32-gs1/test")]
    assert "exit code 1" in jobs[0].error and imp.job_dirs[0].joinpath(S.SOURCE_FILE).is_file()


def test_bad_input_names_the_file_and_key(tmp_path):
    root = F.make_study(tmp_path / "s")
    m = json.loads((root / "metrics.json").read_text())
    m["pinn"]["ms_ssim"] = [0.5]
    (root / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(PtyAnalysisError, match=r"metrics\.json: key 'pinn\.ms_ssim': expected \[amplitude, phase\]"):
        S.read_study(root)
    m["pinn"]["ms_ssim"] = ["high", 0.4]
    (root / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(PtyAnalysisError, match=r"key 'pinn\.ms_ssim\[0\]': expected a number, got the string 'high'"):
        S.read_study(root)
    (root / "metrics.json").write_text("{not json")
    with pytest.raises(PtyAnalysisError, match=r"metrics\.json: invalid JSON"):
        S.read_study(root)
    other = F.make_study(tmp_path / "t", tf_only=True)
    for cfg in (other / "runs").glob("*/config.json"):
        cfg.write_text("{}")
    for inv in (other / "runs").glob("*/invocation.json"):
        inv.unlink()
    with pytest.raises(PtyAnalysisError, match="no dose: .*nphotons.*pass the photons per pattern"):
        S.read_study(other)
    assert S.read_study(other, dose=1000).dose == 1000
    with pytest.raises(PtyAnalysisError, match="not a PtychoPINN study folder"):
        S.read_study(tmp_path)
    np.savez(other / "recons" / "pinn" / "recon.npz", other=np.zeros(3))
    with pytest.raises(PtyAnalysisError, match=r"recon\.npz: no 'YY_pred'"):
        S.import_studies(other, dose=1000)


def test_two_studies_as_one_job_are_refused(tmp_path):
    F.make_study(tmp_path / "a")
    F.make_study(tmp_path / "b")
    with pytest.raises(PtyAnalysisError, match="are the same Phase G job"):
        S.read_studies(tmp_path)


def test_phase_g_over_todays_study_outputs(tmp_path, capsys):
    """The issue's "phase-g report over today's study outputs": a sweep of two doses, pointed at as a hub."""
    root = tmp_path / "sweep"
    F.make_study(root / "dose_1e3", nphotons=1e3, models={"pinn": 0.5, "baseline": 0.3},
                 lightning={"pinn": FALLING})
    F.make_study(root / "dose_1e4", nphotons=1e4, models={"pinn": 0.9, "baseline": 0.4, "pinn_ffno": 0.7})
    parser = argparse.ArgumentParser()
    phase_g_command.configure_parser(parser)
    assert phase_g_command.run_cli(parser.parse_args([str(root), "--no-html", "--no-figures"])) == 0
    out = capsys.readouterr().out
    assert "2 study folder(s) read as Phase G jobs" in out and "PtychoPINN = pinn, Baseline = baseline" in out
    assert "accepted loosely, inferred or skipped" in out and "pinn_ffno" in out
    assert "PtychoPINN under_trained" in out
    s = json.loads((root / "analysis" / "metrics_summary.json").read_text())
    assert (s["n_jobs"], s["n_success"]) == (2, 2)
    assert [(j["dose"], j["view"], j["split"]) for j in s["jobs"]] == [(1000, "N32-gs1", "test"), (10000, "N32-gs1", "test")]
    agg = s["aggregate_metrics"]
    assert agg["PtychoPINN"]["ms_ssim"]["mean_amplitude"] == pytest.approx(0.7)
    assert agg["Baseline"]["ms_ssim"]["mean_amplitude"] == pytest.approx(0.35)
    d = json.loads((root / "analysis" / "metrics_delta_summary.json").read_text())["deltas"]
    assert d["vs_Baseline"]["ms_ssim"]["amplitude"] == pytest.approx(0.35, abs=1e-3)
    assert d["vs_PtyChi"]["ms_ssim"]["amplitude"] is None  # no iterative arm in a grid-lines study
    # the under-trained PtychoPINN of dose 1e3 is a trust flag, in the summary and on the report's first screen
    assert s["untrusted"] == [f for f in s["untrusted"] if "dose_1000/N32-gs1/test: PtychoPINN under_trained" in f]
    assert len(s["untrusted"]) == 1 and "runs/pinn/lightning_logs/version_0/metrics.csv" in s["untrusted"][0]
    story = R_story.build_story(root)
    assert "under_trained" in story.html and "Trust flags" in story.html
    jobs = R_collect.collect_jobs(root)
    rec = R_collect.read_reconstruction_file(jobs[0].output_dir / "reconstructions.npz")
    assert rec.layout == "study" and set(rec.images) == {"PtychoPINN", "Baseline", "GroundTruth"}
    assert set(R_collect.read_frc_curves(jobs[0].output_dir)) == {"PtychoPINN", "Baseline"}
    src = json.loads((jobs[1].output_dir / S.SOURCE_FILE).read_text())
    assert src["study_dir"] == "dose_1e3" or src["study_dir"] == "dose_1e4"
    assert src["models"]["pinn_ffno"]["arm"] is None and src["metric_map"]["ms_ssim"]["ours"] == "ms_ssim"
    # a rerun after a study is removed drops its job
    import shutil

    shutil.rmtree(root / "dose_1e3")
    res = R_report.phase_g(root, html=False, figures=False)
    assert [j["dose"] for j in res.summary["jobs"]] == [10000] and not res.summary["untrusted"]


def test_under_trained_model_in_a_hub_is_flagged(tmp_path):
    """The hub's own model folders: ptyanalysis's params.json and a PtychoPINN torch run's Lightning log."""
    hub = G.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",))
    base = hub / "data" / "phase_e" / "dose_1000" / "baseline" / "gs1"
    base.mkdir(parents=True)
    (base / "params.json").write_text(json.dumps({"arm": "Baseline", "training": {"loss": [0.9, 0.6, 0.48, 0.43, 0.37]}}))
    pinn = hub / "data" / "phase_e" / "dose_1000" / "dense" / "gs2"
    F.write_lightning_csv(pinn / "lightning_logs" / "version_0" / "metrics.csv",
                          F.lightning_rows([1.0, 0.5, 0.45, 0.44, 0.44, 0.44], [1.0, 0.5, 0.45, 0.44, 0.44, 0.44]))
    res = R_report.phase_g(hub, html=False, figures=False)
    flags = [f for f in res.summary["untrusted"]]
    assert len(flags) == 1 and "Baseline under_trained" in flags[0] and "params.json" in flags[0]
    job = R_collect.collect_jobs(hub)[0]
    assert job.trust.arms["PtychoPINN"]["training"]["under_trained"] is False
    st = R_story.build_story(hub)
    assert "under_trained" in st.html
    # the first screen says it, with the count and what to do
    assert st.data["under_trained"]["Baseline"]["jobs"] == ["dose_1000/dense/test"]
    head = R_story.headline(st.data)
    assert any(h.startswith("Under-trained: Baseline in 1 of 1 jobs") and "--steps" in h for h in head)
    with pytest.raises(PtyAnalysisError, match="PtychoPINN study folders only"):
        R_report.phase_g(hub, html=False, figures=False, dose=1000)


def test_a_failed_row_is_a_missing_arm_with_its_reason(tmp_path):
    root = F.make_study(tmp_path / "s", tf_only=True)
    m = json.loads((root / "metrics.json").read_text())
    m["pinn"] = {"error": "PINN inference failed (XLA issue)"}  # grid_lines_workflow's entry for a failed inference
    (root / "metrics.json").write_text(json.dumps(m, indent=2, default=str))
    st = S.read_study(root)
    assert st.status == "success" and st.arm_model("PtychoPINN").metrics == ()
    assert any("PtychoPINN (pinn): metrics.json: PINN inference failed" in n for n in st.notes)
    F.write_invocation(root / "runs" / "baseline" / "invocation.json", "ptycho/workflows/grid_lines_workflow.py", [], {},
                       status="failed", exit_code=1, error="OOM")
    st = S.read_study(root)
    assert st.status == "failed" and "no metrics for any arm" in st.error and "OOM" in st.error

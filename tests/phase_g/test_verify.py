"""The verifier: a clean hub passes all checks; each kind of corruption is caught by the right check."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import ptyanalysis.phase_g.report as R_report
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.phase_g import verify as V

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


@pytest.fixture(scope="module")
def clean_hub(tmp_path_factory):
    hub = F.make_hub(tmp_path_factory.mktemp("ver") / "hub", doses=(1000, 10000), views=("dense",), splits=("train", "test"))
    R_report.phase_g(hub, html=False)
    return hub


@pytest.fixture
def hub(clean_hub, tmp_path):
    dst = tmp_path / "hub"
    shutil.copytree(clean_hub, dst)
    return dst


def _failed(res):
    return {v["description"]: v["error"] for v in res.validations if not v["valid"]}


def _only_failure(res, description_start):
    failed = _failed(res)
    assert failed, "the corruption was not detected"
    assert all(k.startswith(description_start) for k in failed), failed
    return next(iter(failed.values()))


def test_clean_hub_passes_and_report_schema(hub):
    res = V.verify_hub(hub)
    assert res.all_valid, _failed(res)
    assert res.n_checks == 14 and res.n_valid == 14 and res.n_invalid == 0
    rep = json.loads((hub / "analysis" / "verification_report.json").read_text())
    assert set(rep) == {"all_valid", "n_checks", "n_valid", "n_invalid", "validations"}
    for v in rep["validations"]:
        assert {"valid", "path", "description"} <= set(v) and not v["path"].startswith("/")
    # writing the report does not break the inventory check on a second run
    assert V.verify_hub(hub).all_valid


def _sed(path, old, new):
    t = path.read_text()
    assert old in t
    path.write_text(t.replace(old, new, 1))


def test_amplitude_line_in_preview(hub):
    p = hub / "analysis" / "metrics_delta_highlights_preview.txt"
    lines = p.read_text().splitlines()
    lines[0] = lines[0].replace(": ", ": amplitude +0.100  phase ")
    p.write_text("\n".join(lines) + "\n")
    failed = _failed(V.verify_hub(hub))
    assert "amplitude" in failed["SSIM grid summary (phase-only)"]


def test_delta_disagrees_with_summary(hub):
    p = hub / "analysis" / "metrics_delta_summary.json"
    d = json.loads(p.read_text())
    d["deltas"]["vs_PtyChi"]["ms_ssim"]["phase"] += 0.05
    p.write_text(json.dumps(d, indent=2))
    err = _only_failure(V.verify_hub(hub), "Highlights, preview and grid numbers")
    assert "deltas.vs_PtyChi.ms_ssim.phase" in err


def test_highlight_number_disagrees(hub):
    p = hub / "analysis" / "metrics_delta_highlights.txt"
    lines = p.read_text().splitlines()
    tok = lines[2].split()[-1]
    lines[2] = lines[2][: -len(tok)] + ("+9.999999" if tok != "+9.999999" else "+1.000000")
    p.write_text("\n".join(lines) + "\n")
    err = _only_failure(V.verify_hub(hub), "Highlights, preview and grid numbers")
    assert "line 3" in err


def test_summary_aggregate_disagrees_with_jobs(hub):
    p = hub / "analysis" / "metrics_summary.json"
    s = json.loads(p.read_text())
    s["aggregate_metrics"]["PtychoPINN"]["mae"]["mean_amplitude"] += 0.01
    p.write_text(json.dumps(s, indent=2))
    err = _only_failure(V.verify_hub(hub), "Highlights, preview and grid numbers")
    assert "aggregate_metrics.PtychoPINN.mae.mean_amplitude" in err


def test_grid_summary_number_disagrees(hub):
    p = hub / "analysis" / "ssim_grid_summary.md"
    t = p.read_text()
    row = next(ln for ln in t.splitlines() if ln.startswith("| vs_Baseline |"))
    p.write_text(t.replace(row, "| vs_Baseline | +0.999 |", 1))
    _only_failure(V.verify_hub(hub), "Highlights, preview and grid numbers")


def test_missing_job_file(hub):
    (hub / "analysis" / "dose_1000" / "dense" / "test" / "reconstructions.npz").unlink()
    failed = _failed(V.verify_hub(hub))
    assert "dose_1000/dense/test/reconstructions.npz" in failed["Every manifest job has its output files"]
    assert "Artifact inventory" in failed  # listed file no longer exists


def test_non_relative_path_in_inventory(hub):
    p = hub / "analysis" / "artifact_inventory.txt"
    lines = p.read_text().splitlines()
    lines[0] = str(hub / lines[0])
    p.write_text("\n".join(sorted(lines)) + "\n")
    err = _failed(V.verify_hub(hub))["Artifact inventory"]
    assert "absolute path" in err


def test_backslash_and_unlisted_file_in_inventory(hub):
    p = hub / "analysis" / "artifact_inventory.txt"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-1]) + "\n")  # drop one entry
    assert "not in the inventory" in _failed(V.verify_hub(hub))["Artifact inventory"]
    p.write_text("\n".join([ln.replace("/", "\\", 1) if i == 0 else ln for i, ln in enumerate(lines)]) + "\n")
    assert "backslash" in _failed(V.verify_hub(hub))["Artifact inventory"]


def test_file_added_after_inventory(hub):
    (hub / "analysis" / "late.txt").write_text("x")
    assert "late.txt" in _only_failure(V.verify_hub(hub), "Artifact inventory")


def test_corrupt_figure(hub):
    (hub / "analysis" / "figures" / "ms_ssim_grid.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    err = _only_failure(V.verify_hub(hub), "Figures")
    assert "ms_ssim_grid.png" in err


def test_missing_figure(hub):
    f = hub / "analysis" / "figures" / "frc_dose_1000_dense_test.png"
    f.unlink()
    assert "frc_dose_1000_dense_test.png" in _failed(V.verify_hub(hub))["Figures exist and are valid images"]


def test_highlights_wrong_line_count_and_prefix(hub):
    p = hub / "analysis" / "metrics_delta_highlights.txt"
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:3]) + "\n")
    assert "exactly 4 lines" in _failed(V.verify_hub(hub))["Metrics delta highlights"]
    p.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    assert "expected prefix" in _failed(V.verify_hub(hub))["Metrics delta highlights"]


def test_digest_heading_missing(hub):
    _sed(hub / "analysis" / "metrics_digest.md", "## Pipeline Summary", "## Summary")
    assert "## Pipeline Summary" in _only_failure(V.verify_hub(hub), "Metrics digest")


def test_delta_summary_timestamp_and_source(hub):
    p = hub / "analysis" / "metrics_delta_summary.json"
    d = json.loads(p.read_text())
    d["generated_at"] = d["generated_at"][:-1] + "+00:00"
    p.write_text(json.dumps(d))
    assert "ending with Z" in _failed(V.verify_hub(hub))["Metrics delta summary JSON"]
    d["generated_at"] += "Z"
    d["source_metrics"] = "/abs/metrics_summary.json"
    p.write_text(json.dumps(d))
    assert "source_metrics" in _failed(V.verify_hub(hub))["Metrics delta summary JSON"]


def test_failed_job_and_missing_log_sentinel(tmp_path):
    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("train", "test"),
                     failed=[(1000, "dense", "test")])
    R_report.phase_g(hub, html=False, figures=False)
    failed = _failed(V.verify_hub(hub))
    assert "dose_1000/dense/test" in failed["Phase G comparison manifest"]
    assert "SUCCESS" in failed["Orchestrator logs (grid runner)"]


def test_no_grid_logs(hub):
    shutil.rmtree(hub / "analysis" / "logs")
    failed = _failed(V.verify_hub(hub))
    assert "grid_*.log" in failed["Orchestrator logs (grid runner)"]


def test_empty_hub_scores_zero_and_cli_exit_codes(tmp_path, capsys):
    from ptyanalysis.cli import main

    (tmp_path / "hub" / "analysis").mkdir(parents=True)  # a hub whose results are all missing
    res = V.verify_hub(tmp_path / "hub")
    assert not res.all_valid and res.n_valid <= 2  # nothing exists; only vacuous checks may pass
    assert main(["verify", str(tmp_path / "hub")]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nope")]) == 2
    with pytest.raises(PtyAnalysisError):
        V.verify_hub(tmp_path / "nope")


def test_cli_clean_hub_exit_zero(hub):
    from ptyanalysis.cli import main

    assert main(["verify", str(hub)]) == 0


def test_newest_grid_log_is_ordered_by_stamp_then_suffix(hub):
    logs = hub / "analysis" / "logs"
    # same second, 10th rerun: lexicographically before _2, but newer; it failed
    (logs / "grid_20260101T000000Z_2.log").write_text("grid started\nSUCCESS: all cells completed\n")
    (logs / "grid_20260101T000000Z_10.log").write_text(
        "grid started\nSUCCESS: all cells completed\nFAILED: 1 cell(s) failed\n")
    res = V.verify_hub(hub, write=False)
    assert "does not end with the sentinel" in _failed(res)["Orchestrator logs (grid runner)"]


def test_a_figure_of_a_job_no_longer_scored_is_stale_and_phase_g_removes_it(hub):
    figs = hub / "analysis" / "figures"
    stale = figs / "frc_dose_500_dense_test.png"  # a job that is not (any more) in the hub
    shutil.copy(figs / "frc_dose_1000_dense_test.png", stale)
    user = figs / "my_sketch.png"  # not a name Phase G writes: left alone
    shutil.copy(figs / "frc_dose_1000_dense_test.png", user)
    err = _failed(V.verify_hub(hub))["Figures exist and are valid images"]  # (the inventory also lacks both)
    assert "frc_dose_500_dense_test.png: stale" in err and "my_sketch" not in err
    R_report.phase_g(hub, html=False)
    assert not stale.exists() and user.exists()
    assert not _failed(V.verify_hub(hub))

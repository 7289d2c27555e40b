"""Per-job files in the study's layout (PtychoPINN compare_models) and the trust flags on a hub's results."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ptyanalysis.phase_g.collect as R_collect
import ptyanalysis.phase_g.report as R_report
import ptyanalysis.phase_g.trust as R_trust
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.fileutil import write_npz
from ptyanalysis.phase_g import verify as V
from ptyanalysis.pipeline.compare import reconstruction_arrays

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

TRUST_CHECK = "Per-job results can be trusted"


@pytest.fixture(scope="module")
def study_hub(tmp_path_factory):
    """As the study's comparison script wrote it: a few scattered PINN tiles, a mostly-zero Baseline, its log."""
    hub = F.make_scan_hub(tmp_path_factory.mktemp("study") / "hub", layout="study", faults=True)
    res = R_report.phase_g(hub, html=False)
    return hub, res


@pytest.fixture(scope="module")
def good_hubs(tmp_path_factory):
    """Correct results: in the study's layout (own canvases) and as this package writes them."""
    out = {}
    for layout in ("study", "ptyanalysis"):
        hub = F.make_scan_hub(tmp_path_factory.mktemp(layout) / "hub", layout=layout, faults=False)
        out[layout] = (hub, R_report.phase_g(hub, html=False, figures=False))
    return out


# --------------------------------------------------------------------------- reading the study's files


def _study_file(path, **extra):
    rng = np.random.default_rng(1)
    pinn = (rng.standard_normal((176, 176)) + 1j).astype(np.complex64)
    base = np.zeros((188, 188), np.complex64)
    gt = np.ones((224, 224), np.complex64)
    arrays = {}
    for prefix, z in (("ptychopinn", pinn), ("baseline", base), ("ground_truth", gt)):
        arrays.update({f"{prefix}_amplitude": np.abs(z), f"{prefix}_phase": np.angle(z), f"{prefix}_complex": z})
    arrays.update({"pinn_offset_dy": None, "pinn_offset_dx": None, "baseline_offset_dy": 1.25, "baseline_offset_dx": -0.5})
    arrays.update(extra)
    np.savez_compressed(path, **arrays)
    return pinn, base, gt


def test_study_layout_file_is_read_with_own_canvases_and_none_offsets(tmp_path):
    p = tmp_path / "reconstructions_aligned.npz"
    pinn, _, _ = _study_file(p)
    rec = R_collect.read_reconstruction_file(p)
    assert rec.layout == "study"
    assert {k: v.shape for k, v in rec.images.items()} == {"PtychoPINN": (176, 176), "Baseline": (188, 188),
                                                           "GroundTruth": (224, 224)}
    np.testing.assert_array_equal(rec.images["PtychoPINN"], pinn)
    assert rec.offsets == {"PtychoPINN": None, "Baseline": (1.25, -0.5)}
    assert rec.origin is None and rec.coverage is None
    images, coverage = R_collect.read_reconstructions(p)  # the figures' reader
    assert set(images) == {"PtychoPINN", "Baseline", "GroundTruth"} and coverage is None


def test_only_0d_object_members_are_unpickled(tmp_path):
    p = tmp_path / "r.npz"
    _study_file(p, notes=np.array([{"a": 1}, None], dtype=object))
    rec = R_collect.read_reconstruction_file(p)
    assert "notes" in " ".join(rec.notes) and "skipped" in " ".join(rec.notes)


def test_study_layout_errors_name_the_key(tmp_path):
    p = tmp_path / "r.npz"
    _study_file(p, tike_complex=np.ones((8, 8), np.complex64))
    with pytest.raises(PtyAnalysisError, match=r"r\.npz: array 'tike_complex': unknown arm name 'tike'"):
        R_collect.read_reconstruction_file(p)
    _study_file(p, baseline_amplitude=np.ones((7, 7)))
    with pytest.raises(PtyAnalysisError, match="arrays of 'baseline' disagree in shape"):
        R_collect.read_reconstruction_file(p)
    _study_file(p, baseline_offset_dy=np.ones(3))
    with pytest.raises(PtyAnalysisError, match="'baseline_offset_dy' must be a scalar"):
        R_collect.read_reconstruction_file(p)


def test_previous_ptyanalysis_layout_still_read(tmp_path):
    p = tmp_path / "r.npz"
    np.savez(p, ground_truth=np.ones((6, 6), np.complex64), PtychoPINN=np.ones((6, 6), np.complex64),
             coverage=np.ones((6, 6), np.float32), coverage_PtychoPINN=np.full((6, 6), 2, np.float32))
    rec = R_collect.read_reconstruction_file(p)
    assert rec.layout == "ptyanalysis-legacy" and set(rec.images) == {"GroundTruth", "PtychoPINN"}
    assert rec.arm_coverage["PtychoPINN"][0, 0] == 2 and rec.coverage.shape == (6, 6)


# --------------------------------------------------------------------------- our writer, their reader


def _study_reader(path):
    """A reader that knows only the study's names (compare_models' save_reconstruction_npz and the aligned file)."""
    out = {}
    with np.load(path, allow_pickle=True) as z:
        for prefix in ("ptychopinn", "baseline", "ground_truth"):
            if f"{prefix}_complex" in z.files:
                out[prefix] = {c: z[f"{prefix}_{c}"] for c in ("amplitude", "phase", "complex")}
        for prefix in ("pinn", "baseline"):
            if f"{prefix}_offset_dy" in z.files:
                out[f"{prefix}_offset"] = (z[f"{prefix}_offset_dy"].item(), z[f"{prefix}_offset_dx"].item())
        extra = [k for k in z.files if not k.startswith(("ptychopinn_", "baseline_", "ground_truth_", "pinn_offset_"))]
    return out, extra


def test_our_writer_is_read_by_a_study_reader_and_by_ours(tmp_path):
    rng = np.random.default_rng(0)
    gt = F.object_image(40)
    pinn = (gt + 0.05 * rng.standard_normal(gt.shape)).astype(np.complex64)
    base = np.zeros_like(gt)
    chi = (gt * 0.9).astype(np.complex64)
    cov = np.ones(gt.shape, np.float32)
    arrays = reconstruction_arrays({"GroundTruth": gt, "PtychoPINN": pinn, "Baseline": base, "PtyChi": chi},
                                   coverage=cov > 0, arm_coverage={"PtychoPINN": cov, "PtyChi": 2 * cov},
                                   offsets={"PtychoPINN": (0.0, 0.0), "Baseline": None, "PtyChi": (0.5, -1.0)},
                                   origin=(3, 4), counts={"PtychoPINN": {"n_patches": 10, "n_offsets": 10}})
    p = write_npz(tmp_path / "reconstructions_aligned.npz", arrays)
    theirs, extra = _study_reader(p)
    np.testing.assert_array_equal(theirs["ptychopinn"]["complex"], pinn)
    np.testing.assert_allclose(theirs["ptychopinn"]["amplitude"], np.abs(pinn))
    np.testing.assert_allclose(theirs["baseline"]["phase"], np.angle(base))
    np.testing.assert_array_equal(theirs["ground_truth"]["complex"], gt)
    assert theirs["pinn_offset"] == (0.0, 0.0) and theirs["baseline_offset"] == (None, None)
    # every array the study does not know has a name that cannot collide with its own
    assert all(k.startswith(("ptyanalysis__", "ptychi_")) for k in extra), extra
    ours = R_collect.read_reconstruction_file(p)
    assert ours.layout == "ptyanalysis" and ours.origin == (3, 4)
    assert set(ours.images) == {"GroundTruth", "PtychoPINN", "Baseline", "PtyChi"}
    np.testing.assert_array_equal(ours.images["PtyChi"], chi)
    assert ours.offsets == {"PtychoPINN": (0.0, 0.0), "Baseline": None, "PtyChi": (0.5, -1.0)}
    assert ours.arm_coverage["PtyChi"][0, 0] == 2 and ours.counts == {"PtychoPINN": {"n_patches": 10, "n_offsets": 10}}
    assert ours.coverage.dtype == np.float32 and ours.coverage.all()


# --------------------------------------------------------------------------- trust flags


def _flags(summary_job):
    return {(f["arm"], f["check"]) for f in summary_job["trust_flags"]}


def test_study_hub_is_flagged_in_phase_g_summary(study_hub):
    hub, res = study_hub
    s = json.loads((hub / "analysis" / "metrics_summary.json").read_text())
    assert s["n_untrusted_jobs"] == 2 == len(s["jobs"])
    for job in s["jobs"]:
        flags = _flags(job)
        assert {("PtychoPINN", "low_scan_coverage"), ("PtychoPINN", "patch_count"), ("Baseline", "mostly_zero")} <= flags
        pc = next(f for f in job["trust_flags"] if f["check"] == "patch_count")
        n = len(F.scan(400, 192, 42)[job["split"]])
        assert pc["evidence"] == {"n_patches": int(np.ceil(n / 32)), "n_offsets": n, "source": "logs/debug.log"}
        cov = next(f for f in job["trust_flags"] if f["arm"] == "PtychoPINN" and f["check"] == "low_scan_coverage")
        assert cov["evidence"]["scan_coverage"] < 0.5 and cov["evidence"]["n_positions"] == n
        zero = next(f for f in job["trust_flags"] if f["check"] == "mostly_zero")
        assert zero["evidence"]["zero_fraction"] > 0.99
    assert len(s["untrusted"]) == sum(len(j["trust_flags"]) for j in s["jobs"])
    # the study's own fields and numbers are kept: the aggregates are the CSV means, untouched
    pinn = s["aggregate_metrics"]["PtychoPINN"]["ms_ssim"]
    want = np.mean([float({r[1]: r for r in F.metric_rows("PtychoPINN", 1000, "dense", sp)}["ms_ssim"][2])
                    for sp in ("train", "test")])
    assert pinn["mean_amplitude"] == pytest.approx(want, abs=1e-9)
    assert pinn["untrusted_jobs"] == ["dose_1000/dense/train", "dose_1000/dense/test"]
    for key in ("n_jobs", "n_success", "n_failed", "jobs", "aggregate_metrics", "phase_c_metadata_compliance"):
        assert key in s
    assert res.summary["untrusted"] == s["untrusted"]


def test_study_hub_flags_in_the_notes_and_report_data(study_hub):
    hub, _ = study_hub
    md = (hub / "analysis" / "metrics_summary.md").read_text()
    assert "## Untrusted Results" in md and "patches stitched for" in md and "**UNTRUSTED PtychoPINN**" in md
    assert "UNTRUSTED RESULTS" in (hub / "analysis" / "metrics_digest.md").read_text()
    assert "Untrusted:" in (hub / "analysis" / "aggregate_highlights.txt").read_text()
    jobs = R_collect.collect_jobs(hub)
    assert all(isinstance(f, R_trust.TrustFlag) for j in jobs for f in j.trust_flags)
    lines = R_trust.flag_lines(jobs)
    assert any(ln.startswith("dose_1000/dense/test: PtychoPINN patch_count: ") for ln in lines)
    flags = [f for j in jobs for f in R_trust.trust_flags(j, hub)]
    assert [str(f) for f in flags] == lines and {f.job for f in flags} == {j.label for j in jobs}
    assert flags[0].as_dict()["job"] == jobs[0].label
    no_trust = R_collect.collect_jobs(hub, check_trust=False)
    assert no_trust[0].trust is None
    assert [f for j in no_trust for f in R_trust.trust_flags(j)] == flags  # checked on demand (hub from the job folder)


def test_study_hub_phase_g_draws_own_canvases(study_hub):
    _, res = study_hub
    recon_figs = [p for p in res.figures if "reconstruction" in p.name]
    assert recon_figs and all(p.stat().st_size > 0 for p in recon_figs)


def test_study_hub_verify_reports_the_flags(study_hub, tmp_path):
    hub = tmp_path / "hub"
    shutil.copytree(study_hub[0], hub)
    res = V.verify_hub(hub)
    bad = [v for v in res.validations if not v["valid"]]
    assert [v["description"] for v in bad] == [next(v["description"] for v in res.validations
                                                     if v["description"].startswith(TRUST_CHECK))], bad
    assert res.n_checks == 14 and res.validations[:10] == tuple(res.validations[:10])
    v = bad[0]
    assert "flag(s) in 2 of 2 job(s)" in v["error"] and "patches stitched for" in v["error"]
    assert {(f["job"], f["arm"], f["check"]) for f in v["flags"]} >= {("dose_1000/dense/test", "Baseline", "mostly_zero")}
    rep = json.loads((hub / "analysis" / "verification_report.json").read_text())
    assert set(rep) == {"all_valid", "n_checks", "n_valid", "n_invalid", "validations"} and not rep["all_valid"]


def test_correct_hubs_are_not_flagged(good_hubs, tmp_path):
    for layout, (hub, res) in good_hubs.items():
        assert res.summary["untrusted"] == [] and res.summary["n_untrusted_jobs"] == 0, layout
        for job in res.summary["jobs"]:
            assert job["trust_flags"] == [], (layout, job["trust_flags"])
            for arm, info in job["trust"]["arms"].items():
                if "scan_coverage" in info:
                    assert info["scan_coverage"] == 1.0, (layout, arm)
        assert "Untrusted" not in (hub / "analysis" / "metrics_summary.md").read_text()
        copy = tmp_path / layout
        shutil.copytree(hub, copy)
        v = next(x for x in V.verify_hub(copy).validations if x["description"].startswith(TRUST_CHECK))
        assert v["valid"] and v["n_jobs_checked"] == 2, v  # (figures were not drawn: check 12 is not the point)


def test_cli_phase_g_reads_the_study_layout(tmp_path, capsys):
    from ptyanalysis.cli import main

    hub = F.make_scan_hub(tmp_path / "hub", layout="study", faults=True, splits=("test",))
    assert main(["phase-g", str(hub), "--no-html", "--no-figures"]) == 0
    assert main(["verify", str(hub)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] Per-job results can be trusted" in out and "Baseline mostly_zero" in out


def test_log_patch_counts_last_run_wins(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "debug.log").write_text(F.study_log(163, 5216, 5216) + F.study_log(19, 604, 604))
    counts, sources = R_trust.log_patch_counts(tmp_path)
    assert counts["PtychoPINN"] == {"n_patches": 19, "n_offsets": 604, "source": "logs/debug.log"}
    assert counts["Baseline"]["n_patches"] == 604 and sources == ["logs/debug.log"]


def test_unknown_positions_and_frames_are_notes_not_flags(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    img = np.ones((50, 50), np.complex64)
    np.savez(job / "reconstructions.npz", ptychopinn_complex=img)
    res = R_trust.check_reconstructions(job)
    assert res.trusted and any("scan coverage not checked" in n for n in res.notes)
    assert any("patch counts not checked" in n for n in res.notes)
    far = np.array([[500.0, 500.0], [900.0, 20.0], [10.0, 10.0]])  # cannot fit a 50 px canvas
    res = R_trust.check_reconstructions(job, far, "test positions")
    assert res.trusted and any("fall outside" in n for n in res.notes)
    np.savez(job / "reconstructions.npz", ptychopinn_complex=np.zeros((50, 50), np.complex64))
    res = R_trust.check_reconstructions(job)
    assert [(f.arm, f.check) for f in res.flags] == [("PtychoPINN", "mostly_zero")]
    assert "all zero in the whole canvas" in res.flags[0].message


@pytest.mark.slow
def test_ci_hub_comparisons_are_not_flagged_and_the_incident_is(ci_hub, tmp_path):
    """This package's own comparison job on the trained ci study: correct results are not flagged, and the
    Baseline fed as the study fed it (absolute positions) is."""
    from ptyanalysis.pipeline.compare import CompareConfig, compare_job

    for view, split in (("dense", "test"), ("sparse", "train")):
        out = tmp_path / view / split
        compare_job(ci_hub, 1e3, view, split, out_dir=out)
        rec = R_collect.read_reconstruction_file(out / "reconstructions.npz")
        assert rec.layout == "ptyanalysis" and rec.origin is not None
        assert all(c["n_patches"] == c["n_offsets"] > 0 for c in rec.counts.values()), rec.counts
        t = R_trust.job_trust(ci_hub, 1e3, view, split, out)
        # the ci budget trains a few epochs: its models may be flagged under-trained (a training fact, not the images)
        assert not [f for f in t.flags if f.check != "under_trained"], [f.message for f in t.flags]
        assert all("params.json" in f.evidence["source"] for f in t.flags), t.flags
        # gridsize-2 crops sit at group centres: a few edge positions fall outside them (98.98 % seen)
        assert min(i["scan_coverage"] for i in t.arms.values()) >= 0.95, t.arms
    out = tmp_path / "incident"
    compare_job(ci_hub, 1e3, "dense", "test", CompareConfig(baseline_positions="study"), out_dir=out)
    t = R_trust.job_trust(ci_hub, 1e3, "dense", "test", out)
    assert ("Baseline", "mostly_zero") in {(f.arm, f.check) for f in t.flags}
    assert not [f for f in t.flags if f.arm != "Baseline" and f.check != "under_trained"], t.flags
    jobs = R_collect.collect_jobs(ci_hub)  # the grid's jobs, when `make test` prepared them
    assert [f for j in jobs for f in j.trust_flags if f.check != "under_trained"] == []

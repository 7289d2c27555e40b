"""Split comparison: statistics, drift, output health, CLI."""

import json

import numpy as np
import pytest

from ptyanalysis.cli import main
from ptyanalysis.diagnosis.drift import drift_measures, pattern_summary, summary_stats
from ptyanalysis.diagnosis.splits import compare_splits, plot_split_comparison


def test_drift_measures_flag_a_mean_shift_only():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    same = drift_measures(a, rng.normal(size=5000))
    assert not same["drifted"] and same["ks"] < 0.05
    shifted = drift_measures(a, rng.normal(size=5000) + 0.5)
    assert shifted["drifted"] and shifted["flags"]["smd"] and shifted["flags"]["wasserstein"]
    assert shifted["smd"] == pytest.approx(0.5, abs=0.1)


def test_summary_stats_counts_nonfinite():
    x = np.array([0.0, 1.0, np.nan, np.inf, 3.0])
    st = summary_stats(x)
    assert st["nan_count"] == 1 and st["inf_count"] == 1 and st["nonzero_fraction"] == pytest.approx(2 / 3)
    assert st["max"] == 3.0


def test_pattern_summary_radial_profile():
    x = np.ones((3, 16, 16, 1))
    ps = pattern_summary(x)
    assert ps["total"].shape == (3,) and ps["mean_pattern"].shape == (16, 16)
    np.testing.assert_allclose(ps["radial_profile"], 1.0)


def test_incident_splits_flag_positions_and_both_degraded_splits(faults):
    case = faults.incident(n=300)
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference)
    assert res.ranking[0] == "input_positions"
    assert res.health["train"]["degraded"] and res.health["test"]["degraded"]
    assert res.health["train"]["health"] > res.health["test"]["health"]
    assert not res.health["reference"]["degraded"]
    assert any("'train' is degraded" in f for f in res.flags)
    ds = res.to_xarray()
    assert {"input", "split", "stat"} <= set(ds["input_stats"].dims)
    assert "mean_pattern__input" in ds and "input_positions" in res.positions
    assert res.positions["input_positions"]["test"].shape == (300, 2)
    assert len(res.summary_table()) == 2 * 3  # 2 inputs x 3 pairs
    assert list(res.health_table()["split"]) == ["train", "test", "reference"]
    assert plot_split_comparison(res).axes


def test_healthy_splits_not_flagged(faults):
    case = faults.healthy()
    res = compare_splits(case.model, case.passing, case.failing, reference=case.passing)
    assert not res.health["train"]["degraded"] and not res.health["test"]["degraded"]


def test_cli_compare_splits(tmp_path, faults):
    case = faults.incident(n=100)
    model = tmp_path / "m.keras"
    case.model.save(model)
    paths = {}
    for label in ("failing", "passing", "reference"):
        paths[label] = tmp_path / f"{label}.npz"
        np.savez(paths[label], **getattr(case, label))
    out = tmp_path / "out"
    rc = main(["compare-splits", "--model", str(model), "--a", str(paths["passing"]), "--b", str(paths["failing"]),
               "--reference", str(paths["reference"]), "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "split_comparison.json").read_text())
    assert d["ranking"][0] == "input_positions"
    assert d["output_health"]["test"]["degraded"] is True
    assert d["thresholds"]["ks"] == 0.2
    assert main(["compare-splits", "--model", str(model), "--a", str(tmp_path / "nope.npz"), "--b",
                 str(paths["failing"]), "--out", str(out)]) == 2


def test_ground_truth_is_matched_output_by_output(faults):
    from ptyanalysis.diagnosis.splits import _ground_truth_stats

    rng = np.random.default_rng(0)
    y = rng.normal(size=(10, 4, 4)) * np.exp(1j * rng.uniform(-1, 1, size=(10, 4, 4)))
    amp, ph = _ground_truth_stats(y, 2)  # [amplitude, phase] model vs complex ground truth
    assert amp.std == pytest.approx(np.abs(y).std()) and ph.std == pytest.approx(np.angle(y).std())
    assert len(_ground_truth_stats(y, 1)) == 1
    assert _ground_truth_stats([y, y], 3) is None  # never the first array's stats for every output
    case = faults.incident(n=60)
    ys = {"train": rng.normal(size=(60, 16, 16, 1)), "test": [rng.normal(size=(60, 16, 16, 1))] * 2}
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference, ground_truth=ys)
    assert res.health["test"]["vs_ground_truth"] is None and res.health["train"]["vs_ground_truth"] is not None
    assert any("ground truth not used for split(s) 'test'" in f for f in res.flags)
    # without a reference the ground truth is the yardstick, and the split without a usable one says so
    res = compare_splits(case.model, case.passing, case.failing, ground_truth=ys)
    assert "not for test" in res.reference_source
    assert res.health["test"]["measured_against"].startswith("absolute checks only")
    assert res.health["train"]["measured_against"] == "the ground truth of split 'train'"


def test_every_split_is_measured_against_the_same_yardstick_as_bisect(faults):
    """With a usable reference, every split's health is against the reference outputs (as bisect's), and the
    ground truth (here in other units than the model's outputs) is a separate, labelled comparison."""
    from ptyanalysis.diagnosis.bisection import bisect

    case = faults.incident()
    rng = np.random.default_rng(4)
    gt = {s: [0.03 * np.abs(rng.normal(size=(300, 16, 16, 1)))] for s in ("train", "test")}
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference, ground_truth=gt)
    b = bisect(case.model, case.failing, case.passing, case.reference)
    assert res.health["train"]["health"] == pytest.approx(b.health["passing"], abs=1e-6)
    assert res.health["test"]["health"] == pytest.approx(b.health["failing"], abs=1e-6)
    assert res.reference_source == "the reference outputs (reference input set)"
    assert res.health["train"]["measured_against"] == res.health["test"]["measured_against"] == \
        "the reference outputs"
    assert res.health["reference"]["measured_against"].startswith("itself")
    assert res.health["reference"]["health"] == pytest.approx(1.0)
    for sp in ("train", "test"):  # the ground-truth comparison is there, on its own
        vg = res.health[sp]["vs_ground_truth"]
        assert vg["degraded"] and vg["health"] < 0.5
    # train (87 % of its samples blank: per-sample health) is far below the reference but above zero against it,
    # and nearer zero against ground truth in other units
    assert 0 < res.health["train"]["vs_ground_truth"]["health"] < res.health["train"]["health"] < 0.5
    assert res.health["reference"]["vs_ground_truth"] is None
    t = res.health_table()
    assert list(t["measured_against"])[:2] == ["the reference outputs"] * 2
    assert np.isfinite(t["health_vs_ground_truth"][:2]).all() and np.isnan(list(t["health_vs_ground_truth"])[2])
    flag = next(f for f in res.flags if f.startswith("split 'test' is degraded"))
    assert "against the reference outputs" in flag and "against its own ground truth" in flag
    assert "output_health_vs_ground_truth" in res.to_xarray()["hstat"].values


def test_a_split_with_one_dead_output_is_degraded(faults):
    case = faults.dead_amplitude_output()
    ref = faults.dead_amplitude_output(seed=5).passing  # inputs drawn like the training inputs
    res = compare_splits(case.model, case.passing, case.failing, reference=ref)
    h = res.health["test"]
    assert h["degraded"] and h["degraded_outputs"] == ["amplitude"]
    assert h["per_output"]["amplitude"] == 0.0 or h["per_output"]["amplitude"] < 0.1
    assert h["per_output"]["phase"] > 0.5 and "health" in h and "outputs" in h  # old fields kept
    assert any("degraded output(s): amplitude" in f for f in res.flags)
    ds = res.to_xarray()
    assert "output_health" in ds["hstat"].values
    assert "degraded_outputs" in res.health_table().columns


def test_unusable_reference_is_reported_and_not_trusted(faults):
    case = faults.unusable_reference()
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference)
    assert res.health["reference"]["usable"] is False and "all zero" in res.health["reference"]["problem"]
    assert res.reference_source.startswith("split 'train'")
    assert any("reference is unusable" in f and "split 'train'" in f for f in res.flags)
    assert res.health["test"]["degraded"] and not res.health["train"]["degraded"]
    # with ground truth, health falls back to it
    gt = {"train": [np.abs(np.random.default_rng(0).normal(size=(300, 4)))],
          "test": [np.abs(np.random.default_rng(1).normal(size=(300, 4)))]}
    res2 = compare_splits(case.model, case.passing, case.failing, reference=case.reference, ground_truth=gt)
    assert any("ground truth" in f for f in res2.flags if "unusable" in f)


def test_drift_on_degenerate_inputs_uses_a_stated_scale(faults):
    zero = np.zeros(1000)
    r = np.random.default_rng(0)
    d = drift_measures(zero, r.uniform(100, 160, 1000))
    assert d["scale_basis"].startswith("pooled std") and 1 < d["drift_score"] < 1e3
    assert drift_measures(zero, zero)["drift_score"] == 0 and not drift_measures(zero, zero)["drifted"]
    const = drift_measures(np.full(100, 5.0), np.full(100, 6.0))
    assert "constant" in const["scale_basis"] and const["drifted"] and np.isfinite(const["drift_score"])
    case = faults.constant_offsets()
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference)
    assert res.ranking[0] == "offsets"
    assert all(np.isfinite(dd["drift_score"]) and dd["drift_score"] < 1e3
               for inp in res.drift.values() for dd in inp.values())


def test_diagnosis_figures_are_readable(faults):
    import matplotlib

    matplotlib.use("Agg", force=False)
    case = faults.incident(n=120)
    res = compare_splits(case.model, case.passing, case.failing, reference=case.reference)
    fig = plot_split_comparison(res)
    drift_ax = fig.axes[0]
    assert drift_ax.get_xscale() == "log"
    assert any(line.get_xdata()[0] == 1.0 for line in drift_ax.lines)  # the threshold is drawn
    scan = [a for a in fig.axes if "scan map" in a.get_title()][0]
    assert scan.get_xlabel() and scan.get_ylabel()
    leg = scan.get_legend()
    assert leg is not None and leg.get_bbox_to_anchor().x0 >= scan.get_window_extent().x1 - 1  # outside

    from ptyanalysis.diagnosis.bisection import bisect, plot_bisection

    bres = bisect(case.model, case.failing, case.passing, case.reference)
    bfig = plot_bisection(bres)
    lay = bfig.axes[1]
    by = {ln.get_label(): ln for ln in lay.lines}
    assert by["failing"].get_zorder() > by["passing"].get_zorder()  # failing drawn on top
    assert by["failing"].get_linestyle() != by["passing"].get_linestyle()
    assert by["failing"].get_marker() != by["passing"].get_marker()


def test_a_scale_error_in_mostly_dark_patterns_is_scored_by_the_pattern_totals(faults):
    """Diffraction not multiplied by intensity_scale (x 1/3.125): most pixels are 0 in both sets, so the pixel
    distribution barely moves, while every pattern total is 3.125 x smaller."""
    from ptyanalysis.diagnosis.drift import input_drift

    ref = faults.sparse_patterns(400, seed=1)
    fed = faults.sparse_patterns(400, seed=2, scale=1 / 3.125)
    d = input_drift(ref, fed)
    assert d["drift_basis"] == "pattern totals" and d["pattern_total"]["ks"] > 0.9
    assert d["drift_score"] == d["pattern_total"]["drift_score"] > 3 * d["value_drift_score"]
    assert d["total_ratio"] == pytest.approx(1 / 3.125, rel=0.05) and d["drifted"]
    pos = {"input_positions": np.zeros((400, 1, 2, 1), "float32")}
    same = input_drift(ref, faults.sparse_patterns(400, seed=3))
    assert same["drift_score"] < 1 and same["total_ratio"] == pytest.approx(1.0, rel=0.05)
    assert "pattern_total" not in input_drift(pos["input_positions"], pos["input_positions"])
    model = faults.build_scale_blind_incident_model()
    res = compare_splits(model, {"input": faults.sparse_patterns(400, seed=4), **pos},
                         {"input": fed, **pos}, reference={"input": ref, **pos})
    assert res.ranking[0] == "input"
    flag = next(f for f in res.flags if f.startswith("input 'input' drifted"))
    assert "pattern totals x0.3" in flag and "the larger drift" in flag
    t = res.summary_table()
    assert set(t.loc[t["input"] == "input", "drift_basis"]) >= {"pattern totals"}

"""The bisection engine (issue 18): new fault kinds, verified fixes, one seed, errors that surface, the renderer.

Every test asserts on the structured verdict (kind, name, verified, evidence, evaluations); the renderer is
tested on its own, on hand-made verdicts.
"""

import json

import fault_cases
import numpy as np
import pytest

from ptyanalysis.diagnosis import health
from ptyanalysis.diagnosis.bisection import Settings, Verdict, bisect, render
from ptyanalysis.diagnosis.bisection.stages import pairing
from ptyanalysis.errors import PtyAnalysisError

BUDGET = 60


def _run(case, **kw):
    return bisect(case.model, case.failing, case.passing, case.reference, case.criterion,
                  paired_reference=case.paired, **kw)


def test_a_few_dark_frames_are_found_by_per_sample_health_as_one_run(faults_more):
    case = faults_more.dark_frames()
    res = _run(case)
    v = res.verdict
    assert (v["kind"], v["name"], v["verified"]) == ("samples", case.expected_name, True)
    assert v["culprits"] == case.expected_name and v["victims"] == []
    top = res.causes[0]
    assert top.evidence["runs"] == case.notes["runs"]
    assert top.evidence["found_by"].startswith("input scan") and top.evidence["output_flags"] == {"blank": 14}
    assert all("all zero" in r[0] for r in top.evidence["abnormal"].values())
    assert res.experiments[top.evidence["experiment"]].fails is False  # the rest passes: verified
    # the failing set's health sees the 3.5 % blank samples (its statistics alone would call it healthy)
    assert res.health["failing_degraded"] and res.health["bad_samples"]["failing"]["blank"] == pytest.approx(0.035)
    assert res.settings["stages"]["samples"]["scope"] == "subset"
    assert res.evaluations <= BUDGET


def test_a_reader_that_repeats_one_frame_gets_a_verified_fix_on_the_right_input(faults_more):
    case = faults_more.frame_zero_reader()
    res = _run(case)
    v, top = res.verdict, res.causes[0]
    assert (v["kind"], v["name"], v["verified"]) == ("input", "diffraction", True)
    assert top.evidence["identical_sample_fraction"] == 1.0
    assert top.evidence["passes_by_intervention"][top.evidence["best_intervention"]] is True
    # every change offered as the fix passed; a change that still fails is never the fix
    assert all(res.experiments[top.evidence["experiments"][k]].fails is False
               for k, ok in top.evidence["passes_by_intervention"].items() if ok)
    assert "one sample per index" in res.fix
    assert res.evaluations <= BUDGET


def test_a_criterion_that_does_not_fit_healthy_outputs_is_not_called_a_dead_model(faults_more):
    case = faults_more.support_zero_by_design()
    res = _run(case)
    v = res.verdict
    assert v["kind"] == "criterion" and v["name"] == "zero-fraction>=0.5" and not v["verified"]
    chk = v["criterion_check"]
    assert set(chk["healthy_sets"]) == {"passing", "reference"}
    assert chk["suggested"] is None  # the failing set is as healthy as the others
    assert chk["passes_everything"].startswith("zero-fraction>=")
    assert float(chk["passes_everything"].split(">=")[1]) > max(chk["zero_fraction"].values())
    assert res.evaluations <= BUDGET


def test_a_criterion_check_suggests_one_that_separates_when_there_is_one():
    st = {"reference": [health.output_stats(np.r_[np.zeros((30, 8)), np.ones((30, 8))].reshape(60, 8))],
          "failing": [health.output_stats(np.zeros((60, 8)))]}
    from ptyanalysis.diagnosis.bisection.stages import criterion

    found = criterion.check(health.parse_criterion("mostly-zero"), st, {"reference": True, "failing": True})
    assert found is None  # half the reference's samples are blank: its outputs are not healthy, nothing to say
    st["reference"] = [health.output_stats(np.random.default_rng(0).uniform(0.5, 1, (60, 8)) *
                                           (np.arange(8) < 3))]
    found = criterion.check(health.parse_criterion("mostly-zero"), st, {"reference": True, "failing": True})
    assert found["healthy_sets"] == ["reference"] and found["suggested"] == "all-zero"


def test_broken_pairing_between_inputs_is_found_with_its_lag(faults_more):
    case = faults_more.pulse_energy_lag()
    res = _run(case)
    v, top = res.verdict, res.causes[0]
    assert (v["kind"], v["name"], v["verified"]) == ("pairing", "pulse_energy", True)
    assert top.evidence["shift"] == case.notes["lag"] and top.evidence["partner"] == "diffraction"
    assert abs(top.evidence["correlation_lag0"]) < 0.5 < top.evidence["correlation_comparison"]
    assert f"by +{case.notes['lag']} samples" in res.fix
    assert res.evaluations <= BUDGET


def test_pairing_helpers_shift_and_repair_by_rank():
    x = np.arange(10.0)[:, None]
    assert pairing.shift(x, 3)[0, 0] == 3.0
    lags = pairing.lagged_correlations(np.arange(50.0) % 7, np.roll(np.arange(50.0) % 7, 4), 6)
    assert max(lags, key=lags.get) == 4
    f = np.random.default_rng(0).permutation(20).astype(float)
    partner = np.arange(20.0)
    fixed = pairing.repair_by_rank(f[:, None], f, partner, 1.0)
    assert np.array_equal(fixed[:, 0], partner)


def test_nan_weights_are_a_model_fault_named_non_finite_not_all_zero(faults_more):
    case = faults_more.nan_weights()
    res = _run(case)
    v = res.verdict
    assert v["kind"] == "model" and not v["verified"]
    assert res.causes[0].evidence["first_nonfinite_layer"] == case.notes["first_nonfinite_layer"]
    assert res.causes[0].evidence["first_all_zero_layer"] is None
    assert "all zero" not in v["summary"] and "non-finite at layer 'dense'" in v["summary"]


def test_the_same_seed_gives_the_same_result_and_another_seed_the_same_verdict(faults_more):
    case = faults_more.pulse_energy_lag()

    def strip(res):
        d = res.to_dict()
        d.pop("elapsed_s")
        for e in d["experiments"]:
            e.pop("elapsed_s")
        return json.dumps(d, default=str, sort_keys=True)
    a, b = _run(case, seed=3), _run(case, seed=3)
    assert strip(a) == strip(b)
    c = _run(case, seed=4)
    assert (c.verdict["kind"], c.verdict["name"], c.fix) == (a.verdict["kind"], a.verdict["name"], a.fix)


def test_settings_draw_every_random_choice_from_one_seed():
    s = Settings(seed=5)
    assert np.array_equal(s.rng("samples").permutation(10), Settings(seed=5).rng("samples").permutation(10))
    assert not np.array_equal(s.rng("samples").permutation(50), s.rng("screen").permutation(50))
    with pytest.raises(PtyAnalysisError, match="did you mean 'samples'"):
        s.rng("sample")
    with pytest.raises(PtyAnalysisError, match="max_evaluations"):
        Settings(max_evaluations=1)


def test_a_coding_error_inside_an_intervention_surfaces(monkeypatch, faults_more):
    from ptyanalysis.diagnosis.bisection import interventions

    case = faults_more.frame_zero_reader()

    def broken(*a, **k):
        raise AttributeError("a bug in an intervention")
    monkeypatch.setattr(interventions, "intervene", broken)
    with pytest.raises(AttributeError, match="a bug in an intervention"):
        _run(case)


# ----------------------------------------------------------------------------- the renderer, on its own
def _verdict(kind, name, verified, top, **facts):
    return Verdict(kind, name, "fix", verified, {"top": top, **facts})


def test_render_never_says_an_unverified_change_restores_without_saying_it_still_fails():
    top = {"kind": "input", "name": "x", "restores": 1.0, "verified": False,
           "evidence": {"best_intervention": "match_passing", "restores_by_intervention": {"match_passing": 1.0}}}
    text = render.summary(_verdict("input", "x", False, top))
    assert "still fails the criterion" in text and "works" not in text
    top = {**top, "verified": True}
    text = render.summary(_verdict("input", "x", True, top))
    assert "The most specific change that works is match_passing" in text and "still fails" not in text


def test_render_samples_pairing_criterion_and_notes():
    top = {"kind": "samples", "name": [4, 5, 6, 9], "restores": 1.0, "verified": True,
           "evidence": {"runs": [[4, 6], [9, 9]], "victims": [], "found_by": "scan"}}
    assert "(2 run(s) of consecutive samples)" in render.summary(_verdict("samples", [4, 5, 6, 9], True, top))
    top = {"kind": "pairing", "name": "e", "restores": 1.0, "verified": True,
           "evidence": {"shift": -3, "partner": "d", "correlation_lag0": 0.1, "correlation_comparison": 0.9}}
    assert "shifted by -3 samples" in render.summary(_verdict("pairing", "e", True, top))
    v = Verdict("criterion", "mostly-zero", "", False, {"criterion_check": {
        "criterion": "mostly-zero", "healthy_sets": ["reference"], "truth_fails": {"reference": True},
        "suggested": "zero-fraction>=0.9", "passes_everything": "all-zero", "zero_fraction": {"reference": 0.75}}},
        notes=({"kind": "health_basis", "basis": "statistics"},))
    text = render.summary(v)
    assert "--criterion zero-fraction>=0.9" in text and "ground truth of the reference" in text
    assert text.endswith("Health: output statistics (no paired reference).")


@pytest.mark.parametrize("case_name", fault_cases.CONVENTION_CASES)
def test_each_convention_fault_gets_its_verified_physics_fix(faults_conventions, case_name):
    case = getattr(faults_conventions, case_name)()
    res = _run(case)
    v, top = res.verdict, res.causes[0]
    assert (v["kind"], v["name"], v["verified"]) == ("input", case.expected_name, True), v["summary"]
    assert top.evidence["convention"]["name"] == case.notes["convention"]
    assert res.experiments[top.evidence["experiment"]].fails is False
    assert res.evaluations <= BUDGET

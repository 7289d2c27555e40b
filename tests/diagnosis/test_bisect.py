"""Zero-prediction bisection: the fault suite, the pieces, the CLI."""

import json

import fault_cases
import numpy as np
import pytest

from ptyanalysis.cli import main
from ptyanalysis.diagnosis.bisection import bisect, ddmin, intervene, layer_probe, plot_bisection
from ptyanalysis.diagnosis.health import (
    Criterion,
    degraded,
    health_score,
    health_scores,
    output_stats,
    parse_criterion,
    reference_problem,
    restores,
)
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference.stats import count_values


# ----------------------------------------------------------------------------- health pieces
def test_health_score_extremes_and_partial():
    ref = [output_stats(np.random.default_rng(0).normal(size=(50, 8)))]
    assert health_score(ref, ref) == pytest.approx(1.0)
    assert health_score([output_stats(np.zeros((50, 8)))], ref) == 0.0
    assert health_score([output_stats(np.full((50, 8), np.nan))], ref) == 0.0
    assert health_score([output_stats(np.full((50, 8), 0.5))], ref) == 0.0  # collapsed
    part = np.random.default_rng(1).normal(size=(50, 8))
    part[:45] = 0
    h = health_score([output_stats(part)], ref)
    assert 0.0 < h < 0.5
    assert restores(0.0, h, 1.0) == pytest.approx(h)


def test_one_rule_for_nonzero_and_per_output_health():
    a = np.array([0.0, 1.0, np.nan, np.inf, -2.0])
    assert count_values(a) == (2, 2)
    st = output_stats(a)
    assert st.nonzero_fraction == pytest.approx(2 / 3) and st.nonfinite_count == 2
    ref = [output_stats(np.random.default_rng(0).normal(size=(50, 8)))] * 2
    dead_amp = [output_stats(np.zeros((50, 8))), ref[1]]
    hs = health_scores(dead_amp, ref)
    assert hs == [0.0, pytest.approx(1.0)] and health_score(dead_amp, ref) == pytest.approx(0.5)
    assert degraded(hs) and not degraded(0.5)
    assert "all zero" in reference_problem([output_stats(np.zeros((5, 3)))])
    assert "non-finite" in reference_problem([output_stats(np.full((5, 3), np.nan))])
    assert "collapsed" in reference_problem([output_stats(np.full((5, 3), 2.0))])
    assert reference_problem(ref) is None


def test_criteria():
    z = [np.zeros((4, 3))]
    assert parse_criterion("all-zero").fails(z)
    assert not parse_criterion("all-zero").fails([np.ones((4, 3))])
    assert parse_criterion("all-zero").fails([np.array([[0.0, np.nan]])])  # zeros and NaN only
    assert parse_criterion("non-finite").fails([np.array([[1.0, np.inf]])])
    assert parse_criterion("collapsed:1e-3").fails([np.full((4, 3), 0.5)])
    part = np.zeros((10, 10))
    part[:3] = 1.0  # 70 % zeros (the real batch-centred Baseline: 28 % nonzero)
    assert parse_criterion("zero-fraction>=0.5").fails([part]) and parse_criterion("mostly-zero").fails([part])
    assert not parse_criterion("zero-fraction>=0.9").fails([part])
    part[:6] = 1.0  # 40 % zeros
    assert not parse_criterion("mostly-zero").fails([part])
    assert parse_criterion("mostly-zero").label == "zero-fraction>=0.5"
    nan = np.full((10, 10), np.nan)
    nan[0] = 1.0  # NaN is never "nonzero": 90 % not-nonzero
    assert parse_criterion("mostly-zero").fails([nan])
    assert parse_criterion("mostly-zero").fails([np.ones((4, 3)), np.zeros((4, 3))])  # any output
    for bad in ("zero-fraction>=2", "zero-fraction>0.5", "zero-fraction>=x"):
        with pytest.raises(PtyAnalysisError, match="zero-fraction"):
            parse_criterion(bad)
    assert not parse_criterion("collapsed").fails([np.arange(12.0).reshape(4, 3)])
    c = parse_criterion(lambda outs: outs[0].mean() > 10)
    assert c.kind == "predicate" and c.fails([np.full((2, 2), 11.0)])
    assert parse_criterion("numpy:isscalar").kind == "predicate"
    for bad in ("nonsense", "collapsed:abc", "no_such_module_xyz:f"):
        with pytest.raises(PtyAnalysisError):
            parse_criterion(bad)
    assert isinstance(parse_criterion(None), Criterion)


def test_ddmin_finds_minimal_subsets():
    sub, complete = ddmin(list(range(100)), lambda s: 37 in s)
    assert sub == [37] and complete
    sub, _ = ddmin(list(range(64)), lambda s: 3 in s and 50 in s)
    assert sorted(sub) == [3, 50]
    sub, complete = ddmin(list(range(1000)), lambda s: 999 in s, max_tests=3)
    assert not complete and 999 in sub


def test_interventions_keep_dtype_and_shape():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(10, 1, 2, 1)) + 100).astype("float32")
    p = rng.normal(size=(20, 1, 2, 1)).astype("float32")
    c = intervene("centre", x, p, None, rng)
    assert c.dtype == np.float32 and c.shape == x.shape
    np.testing.assert_allclose(c.mean(axis=0), 0, atol=1e-4)
    m = intervene("match_passing", x, p, None, rng)
    np.testing.assert_allclose(m.mean(axis=0), p.mean(axis=0), atol=1e-3)
    assert intervene("swap", x, p, None, rng).shape == x.shape
    assert intervene("reference", x, p, None, rng) is None
    assert intervene("replace_nonfinite", x, p, None, rng) is None
    x[3, 0, 1, 0] = np.nan
    assert np.isfinite(intervene("replace_nonfinite", x, p, None, rng)).all()
    assert intervene("cast_dtype", x.astype("float16"), p, None, rng).dtype == np.float32


def test_layer_probe_skips_subclassed_models(faults):
    probe, names, reason = layer_probe(faults.L2NormNet())
    assert probe is None and "subclassed" in reason
    probe, names, reason = layer_probe(faults.build_incident_model())
    assert reason is None and names[-1] == "translate" and "conv1" in names


# ----------------------------------------------------------------------------- fault suite
#: What every fix sentence must say (the change that worked, in the user's terms, with the evidence's numbers).
FIX_SAYS = {
    "shift_one_input": ["shift 'b' by -4.9"],
    "wrong_units": ["multiply 'input' by 0.001", "units"],
    "poisoned_sample": ["drop or repair sample(s) 137", "non-finite"],
    "batch_size_dependent": ["batch_size=7"],
    "dtype_dependent": ["float32", "'x' as float16"],
    "dead_model": ["trained weights"],
    "flat_model": ["trained weights"],
    "healthy": ["none needed"],
    "incident": ["'input_positions' as zeros"],
}


@pytest.mark.parametrize("case_name", fault_cases.ALL_CASES)
def test_fault_suite_names_the_cause(faults, case_name):
    case = getattr(faults, case_name)()
    res = bisect(case.model, case.failing, case.passing, case.reference, case.criterion,
                 paired_reference=case.paired)
    assert res.verdict["kind"] == case.expected_kind, res.verdict["summary"]
    basis = case.notes.get("health_basis", "statistics")
    assert res.health["basis"] == basis and res.verdict["health_basis"] == basis
    assert f"Health: {'paired' if basis == 'paired' else 'output statistics'}" in res.verdict["summary"]
    if case.expected_name is not None:
        assert res.verdict["name"] == case.expected_name, res.verdict["summary"]
    assert res.evaluations < case.notes.get("max_evaluations", 60)
    assert res.reproduced == (case.expected_kind not in ("none", "model"))
    assert len(res.experiments) >= res.evaluations - 2  # every call recorded (probe calls included)
    d = res.to_dict()
    json.dumps(d, default=str)
    for key in ("reproduced", "criterion", "health", "causes", "verdict", "fix", "evaluations",
                "elapsed_s", "experiments"):
        assert key in d
    assert "()" not in res.verdict["summary"] and "()" not in res.fix
    if case.expected_kind in ("input", "samples", "runtime", "pairing"):
        assert res.causes[0].kind == case.expected_kind
        # the fix given was verified: its experiment made the failing set pass the criterion
        assert res.verdict["verified"] and res.causes[0].verified and res.fix
        assert res.experiments[res.causes[0].evidence["experiment"]].fails is False \
            if "experiment" in res.causes[0].evidence else True
    if case.expected_kind == "samples":
        assert res.verdict["culprits"] == case.expected_name
    for phrase in FIX_SAYS.get(case.name, []) + case.notes.get("fix_contains", []):
        assert phrase in res.fix, (phrase, res.fix)
    for phrase in case.notes.get("fix_excludes", []):
        assert phrase not in res.fix, (phrase, res.fix)
    for phrase in case.notes.get("summary_contains", []):
        assert phrase in res.verdict["summary"], (phrase, res.verdict["summary"])
    if "intervention" in case.notes:
        assert res.causes[0].evidence["best_intervention"] == case.notes["intervention"]
    if "degraded_outputs" in case.notes:
        assert res.health["failing_degraded"]
        assert res.health["failing_degraded_outputs"] == case.notes["degraded_outputs"]
        assert len(res.health["per_output"]["failing"]) == 2
    if "reference_usable" in case.notes:
        assert res.health["reference_usable"] is case.notes["reference_usable"]
        assert res.health["reference_source"].startswith("passing set")
        assert "unusable" in res.verdict["summary"] and "all zero" in res.verdict["summary"]
    if "parts" in case.notes:
        assert {c["name"] for c in res.verdict["causes"]} == case.notes["parts"]
        assert all(c["fix"] and c["fix"] in res.fix for c in res.verdict["causes"])
        assert res.verdict["restores"] >= case.notes["combined_restores"]
        assert all((c["restores_alone"] or 0) < case.notes.get("max_alone", 0.5) for c in res.verdict["causes"])
        assert "together the changes restore" in res.verdict["summary"]
    if case.notes.get("victims"):
        assert res.verdict["victims"] and not set(res.verdict["victims"]) & set(res.verdict["name"])
        assert "keep them" in res.fix and all(str(v) in res.fix for v in res.verdict["victims"])


def test_several_causes_summary_reads_for_one_and_for_several(faults):
    one = faults.incident()
    r1 = bisect(one.model, one.failing, one.passing, one.reference)
    assert r1.verdict["summary"].startswith("input 'input_positions' is at fault")
    assert "causes" not in r1.verdict
    two = faults.two_fault_incident()
    r2 = bisect(two.model, two.failing, two.passing, two.reference)
    assert r2.verdict["summary"].startswith("2 causes, inputs 'input' and 'input_positions'")
    parts = {c["name"]: c for c in r2.verdict["causes"]}
    assert parts["input_positions"]["restores_alone"] > 0.05  # outputs back, but 8 x too weak
    assert parts["input"]["restores_alone"] < 0.05            # positions still off the canvas
    assert "multiply 'input' by 8" in parts["input"]["fix"]


def test_batch_composition_is_not_batch_size_and_never_recommends_one(faults):
    case = faults.batch_centred_positions()
    res = bisect(case.model, case.failing, case.passing, case.reference, case.criterion)
    assert (res.verdict["kind"], res.verdict["name"]) == ("runtime", "batch_composition")
    assert all(not (c.kind == "runtime" and c.name == "batch_size") for c in res.causes)
    comp = res.settings["stages"]["runtime"]["composition"]
    assert comp["dependent"] and comp["related_to_failure"]
    assert res.settings["passing_role"].startswith("reference set")  # both splits fail, the reference passes
    # the batch-size bug is still a batch-size bug: its outputs do not change with their neighbours
    gate = faults.batch_size_dependent()
    rg = bisect(gate.model, gate.failing, gate.passing)
    assert not rg.settings["stages"]["runtime"]["composition"]["dependent"]


def test_interleaved_composition_is_scored_on_the_failing_rows_only(faults):
    """Interleaving the failing samples with passing ones must not score the passing neighbours' rows."""
    case = faults.incident()  # a per-sample model: the failing rows stay all zero whatever their neighbours
    res = bisect(case.model, case.failing, case.passing, case.reference, case.criterion)
    arr = res.settings["stages"]["runtime"]["composition"]["arrangements"]["interleaved"]
    e = next(e for e in res.experiments if e.name == "composition:interleaved")
    assert arr["changed_fraction"] == 0.0 and arr["fails"] is True
    assert e.fails is True and e.nonzero_fraction == 0.0
    assert e.health == pytest.approx(arr["health"])
    assert e.details["scored_rows"] == e.n_samples // 2 and "passing neighbours" in e.details["scored"]


def test_layer_probe_is_named_and_starts_at_the_models_batch_limit(caplog, faults):
    """A model that merges a big call into one row: the probe says whose probe it is and reuses the limit."""
    import logging

    test, train, ref = faults.incident_sets()
    model = faults.build_merging_incident_model()
    with caplog.at_level(logging.WARNING, logger="ptyanalysis.inference"):
        res = bisect(model, test, train, ref)
    assert (res.verdict["kind"], res.verdict["name"]) == ("input", "input_positions"), res.verdict["summary"]
    notices = [r.getMessage() for r in caplog.records if "one row per sample" in r.getMessage()]
    assert len(notices) == 1, notices  # the probe does not search again
    assert res.layers["status"] == "done" and res.layers["first_dead"] == "translate"
    assert res.layers["source"] == "layer probe of <Functional object>"
    assert res.layers["batch_size"] == 63
    assert all(e.error is None for e in res.experiments if e.stage == "layers")


def test_the_reference_standing_in_for_the_passing_set_is_named_so(faults):
    """Both splits fail, the reference passes: experiments, interventions and evidence say 'reference'."""
    case = faults.batch_centred_positions()
    res = bisect(case.model, case.failing, case.passing, case.reference, case.criterion)
    assert res.settings["passing_role"].startswith("reference set")
    texts = [f"{e.name} {e.change} {e.target} {e.details.get('scored', '')}" for e in res.experiments
             if e.stage != "reproduce"]  # the reproduction runs the passing set itself
    assert not [t for t in texts if "passing" in t], [t for t in texts if "passing" in t]
    assert any(e.name == "reference:input_positions" and "taken from the reference" in e.change
               for e in res.experiments)
    assert res.layers["compared_with"] == "reference"
    fig = plot_bisection(res)
    assert "reference" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    for _k, info in res.inputs.items():
        assert "drift_failing_vs_passing" not in info and "dtype_reference" in info
    assert info["drift_failing_vs_reference"]["drift_score"] >= 0
    inputs = [c for c in res.causes if c.kind == "input"]
    assert inputs and all(c.evidence["against"] == "reference" for c in inputs)
    for c in inputs:
        assert "match_passing" not in c.evidence["restores_by_intervention"]
        assert c.evidence["best_intervention"] not in ("match_passing", "swap")
    # with a passing set that passes, the names stay 'passing'
    inc = faults.incident()
    r2 = bisect(inc.model, inc.failing, inc.passing, inc.reference)
    assert r2.causes[0].evidence["against"] == "passing"
    assert any(e.name == "swap:input_positions" and "taken from the passing set" in e.change
               for e in r2.experiments)
    assert "drift_failing_vs_passing" in r2.inputs["input_positions"]


def test_a_drifted_input_that_is_not_a_cause_is_named_in_the_summary(faults):
    """Diffraction x 1/3.125 and absolute positions into a model blind to the input's scale: only the positions
    are a cause, and the summary still says that the diffraction drifted (by its pattern totals)."""
    n = 300
    test, train, _ = faults.incident_sets(n)
    ref = {"input": faults.sparse_patterns(n, seed=1), "input_positions": np.zeros((n, 1, 2, 1), "float32")}
    fail = {"input": faults.sparse_patterns(n, seed=2, scale=1 / 3.125), "input_positions": test["input_positions"]}
    good = {"input": faults.sparse_patterns(n, seed=3, scale=1 / 3.125), "input_positions": train["input_positions"]}
    res = bisect(faults.build_scale_blind_incident_model(), fail, good, ref)
    assert (res.verdict["kind"], res.verdict["name"]) == ("input", "input_positions"), res.verdict["summary"]
    assert res.verdict["drifted_not_named"] == ["input"]
    assert "Also drifted, but not named as a cause: 'input'" in res.verdict["summary"]
    assert "pattern totals are x0.3" in res.verdict["summary"] and "the reference's" in res.verdict["summary"]
    d = res.inputs["input"]["drift_failing_vs_reference"]
    assert d["drift_basis"] == "pattern totals" and d["drift_score"] > d["value_drift_score"]
    # a verdict that names every drifted input adds nothing
    inc = faults.incident()
    assert "drifted_not_named" not in bisect(inc.model, inc.failing, inc.passing, inc.reference).verdict


def test_experiments_that_raise_are_evidence_not_fatal(faults, keras):
    inp = keras.Input((4,), name="x")
    # fixed weights (all ones): the passing set (+2) gives lit outputs whatever layers were built before
    m = keras.Model(inp, faults.BatchSizeGate(32, name="gate")(keras.layers.Dense(3, activation="relu",
                                                                                kernel_initializer="ones")(inp)))
    fail = {"x": np.random.default_rng(0).normal(size=(100, 4)).astype("float32")}
    good = {"x": np.random.default_rng(1).normal(size=(20, 4)).astype("float32") + 2}
    calls = {"n": 0}

    def refuse_25(outs):  # a criterion that raises on some experiments (here: 25 rows, the samples stage's subsets)
        calls["n"] += 1
        if len(outs[0]) == 25:
            raise ValueError("25 rows refused")
        return not np.any(outs[0])

    res = bisect(m, fail, good, criterion=refuse_25)
    assert (res.verdict["kind"], res.verdict["name"]) == ("runtime", "batch_size")
    refused = [e for e in res.experiments if "25 rows refused" in e.details.get("criterion_error", "")]
    assert refused and all(e.fails is None for e in refused)
    assert res.evaluations > 5 and calls["n"] > 5

    class RefusesFloat64(keras.Model):  # a model that raises on a dtype it cannot take
        def __init__(self):
            super().__init__(autocast=False)
            self.inner = m

        def call(self, x, training=False):
            if x.dtype == "float64":
                raise TypeError("this model refuses float64")
            return self.inner(x)

    res = bisect(RefusesFloat64(), fail, good)
    assert (res.verdict["kind"], res.verdict["name"]) == ("runtime", "batch_size")
    refused = [e for e in res.experiments if e.error and "refuses float64" in e.error]
    assert refused and refused[0].name == "dtype=float64" and refused[0].fails is None
    tried = next(c for c in res.causes if c.name == "batch_size").evidence["tried"]
    assert tried  # the run went on past the error
    dt = [e for e in res.experiments if e.name == "dtype=float64"]
    assert dt and dt[0].error


def test_drift_on_degenerate_inputs_stays_finite_and_ranked(faults):
    case = faults.constant_offsets()
    res = bisect(case.model, case.failing, case.passing, case.reference)
    d_off = res.inputs["offsets"]["drift_failing_vs_reference"]
    d_gain = res.inputs["gain"]["drift_failing_vs_reference"]
    assert np.isfinite(d_off["drift_score"]) and d_off["drift_score"] < 1e3
    assert "constant" in d_off["scale_basis"]
    assert d_off["drift_score"] > d_gain["drift_score"] >= 1  # the decoy drifts, the offsets drift more


def test_incident_partial_and_full_restoration_and_degraded_passing(faults):
    case = faults.incident()
    res = bisect(case.model, case.failing, case.passing, case.reference)
    top = res.causes[0]
    assert (top.kind, top.name) == ("input", "input_positions")
    by = top.evidence["restores_by_intervention"]
    assert by["reference"] > 0.95
    assert 0.0 < by["centre"] < 0.9 and by["swap"] < 0.9
    assert res.health["passing_degraded"] and res.health["passing"] < 0.5
    assert res.verdict["passing_degraded"] and "degraded" in res.verdict["summary"]
    assert res.layers["first_dead"] == "translate"
    lt = res.layer_table()
    assert {"layer", "zero_fraction_failing", "zero_fraction_passing"} <= set(lt.columns)
    assert "zeros" in res.fix
    et = res.experiments_table()
    assert len(et) == len(res.experiments) and {"stage", "restores"} <= set(et.columns)
    ds = res.to_xarray()
    assert "experiment" in ds.dims
    fig = plot_bisection(res)
    assert fig.axes


def test_runtime_rescue_when_every_set_fails_is_not_a_model_fault(faults):
    case = faults.batch_size_everywhere()
    res = bisect(case.model, case.failing, case.passing, case.reference)
    assert not res.reproduced
    assert (res.verdict["kind"], res.verdict["name"]) == ("runtime", "batch_size"), res.verdict["summary"]
    assert res.causes[0].kind == "runtime" and res.causes[0].restores == 1.0
    assert "restores_basis" in res.causes[0].evidence
    # the dead model is still a model fault: no runtime factor flips it
    dead = faults.dead_model()
    assert bisect(dead.model, dead.failing, dead.passing, dead.reference).verdict["kind"] == "model"


def test_poisoned_sample_found_in_large_set_by_subsampling(faults):
    case = faults.poisoned_sample(n=200, index=137)
    res = bisect(case.model, case.failing, case.passing, max_samples=100)
    assert res.verdict["kind"] == "samples" and res.verdict["name"] == [137]
    assert res.verdict.get("confirmed_on_whole_set") is True


def test_bad_inputs_raise_clear_errors(faults):
    case = faults.shift_one_input(n=20)
    with pytest.raises(PtyAnalysisError, match="model's inputs are"):
        bisect(case.model, {"a": case.failing["a"]}, case.passing)
    bad = dict(case.failing)
    bad["b"] = bad["b"][:-1]
    with pytest.raises(PtyAnalysisError, match="different sample counts"):
        bisect(case.model, bad, case.passing)


# ----------------------------------------------------------------------------- CLI
def _save_case(tmp_path, case):
    model = tmp_path / "model.keras"
    case.model.save(model)
    paths = {}
    for label in ("failing", "passing", "reference"):
        s = getattr(case, label)
        if s is not None:
            paths[label] = tmp_path / f"{label}.npz"
            np.savez(paths[label], **s)
    return model, paths


def test_cli_bisect_writes_json(tmp_path, capsys, faults):
    case = faults.incident(n=120)
    model, p = _save_case(tmp_path, case)
    out = tmp_path / "out"
    rc = main(["bisect", "--model", str(model), "--failing", str(p["failing"]), "--passing", str(p["passing"]),
               "--reference", str(p["reference"]), "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "bisection.json").read_text())
    assert d["reproduced"] is True
    assert d["verdict"]["kind"] == "input" and d["verdict"]["name"] == "input_positions"
    assert d["causes"][0]["kind"] == "input" and d["causes"][0]["name"] == "input_positions"
    assert set(d["health"]) >= {"failing", "passing", "reference"}
    assert d["evaluations"] < 60 and d["elapsed_s"] > 0 and d["experiments"]
    assert d["criterion"]["kind"] == "all-zero"


def test_cli_bisect_bad_input_exits_2(tmp_path, capsys, faults):
    case = faults.incident(n=20)
    model, p = _save_case(tmp_path, case)
    base = ["bisect", "--model", str(model), "--passing", str(p["passing"]), "--out", str(tmp_path / "o")]
    assert main(base + ["--failing", str(tmp_path / "missing.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, diffraction=case.failing["input"], positions=case.failing["input_positions"])
    assert main(base + ["--failing", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert "input_positions" in err and "diffraction" in err
    short = tmp_path / "short.npz"
    np.savez(short, input=case.failing["input"], input_positions=case.failing["input_positions"][:-1])
    assert main(base + ["--failing", str(short)]) == 2
    assert "sample counts" in capsys.readouterr().err
    assert main(base + ["--failing", str(p["failing"]), "--criterion", "bogus"]) == 2


def test_cli_bisect_mostly_zero_batch_composition_and_no_reference(tmp_path, capsys, faults):
    case = faults.batch_centred_positions(n=150)
    model, p = _save_case(tmp_path, case)
    out = tmp_path / "out"
    rc = main(["bisect", "--model", str(model), "--failing", str(p["failing"]), "--passing", str(p["passing"]),
               "--reference", str(p["reference"]), "--criterion", "mostly-zero", "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "bisection.json").read_text())
    assert (d["verdict"]["kind"], d["verdict"]["name"]) == ("runtime", "batch_composition")
    assert d["criterion"] == {"kind": "zero-fraction", "label": "zero-fraction>=0.5", "zero_fraction": 0.5}
    assert "outputs depend on which samples share a batch" in capsys.readouterr().out
    for key in ("failing", "passing", "reference", "per_output", "output_names", "failing_degraded_outputs",
                "reference_usable"):
        assert key in d["health"]
    # no --reference: the passing set is the yardstick, and the run still completes
    one = faults.incident(n=120)
    model, p = _save_case(tmp_path / "inc", one) if (tmp_path / "inc").mkdir() is None else (None, None)
    rc = main(["bisect", "--model", str(model), "--failing", str(p["failing"]), "--passing", str(p["passing"]),
               "--out", str(tmp_path / "out2")])
    assert rc == 0
    d2 = json.loads((tmp_path / "out2" / "bisection.json").read_text())
    assert d2["health"]["reference_source"].startswith("passing set") and d2["verdict"]["kind"] == "input"


def test_a_paired_reference_must_hold_the_failing_samples(faults):
    case = faults.paired_two_fault_incident(n=60)
    short = {k: v[:50] for k, v in case.paired.items()}
    with pytest.raises(PtyAnalysisError, match="paired reference: 50 samples but the failing set has 60"):
        bisect(case.model, case.failing, case.passing, case.reference, paired_reference=short)

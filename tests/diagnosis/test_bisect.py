"""Zero-prediction bisection: the fault suite, the pieces, the CLI."""

import json

import numpy as np
import pytest

import faults
from ptyanalysis.diagnosis.bisection import bisect, ddmin, intervene, layer_probe, plot_bisection
from ptyanalysis.cli import main
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.diagnosis.health import Criterion, health_score, output_stats, parse_criterion, restores

pytestmark = pytest.mark.tf


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


def test_criteria():
    z = [np.zeros((4, 3))]
    assert parse_criterion("all-zero").fails(z)
    assert not parse_criterion("all-zero").fails([np.ones((4, 3))])
    assert parse_criterion("all-zero").fails([np.array([[0.0, np.nan]])])  # zeros and NaN only
    assert parse_criterion("non-finite").fails([np.array([[1.0, np.inf]])])
    assert parse_criterion("collapsed:1e-3").fails([np.full((4, 3), 0.5)])
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


def test_layer_probe_skips_subclassed_models():
    probe, names, reason = layer_probe(faults.L2NormNet())
    assert probe is None and "subclassed" in reason
    probe, names, reason = layer_probe(faults.build_incident_model())
    assert reason is None and names[-1] == "translate" and "conv1" in names


# ----------------------------------------------------------------------------- fault suite
@pytest.mark.parametrize("builder", faults.ALL_CASES, ids=lambda b: b.__name__)
def test_fault_suite_names_the_cause(builder):
    case = builder()
    res = bisect(case.model, case.failing, case.passing, case.reference, case.criterion)
    assert res.verdict["kind"] == case.expected_kind, res.verdict["summary"]
    if case.expected_name is not None:
        assert res.verdict["name"] == case.expected_name, res.verdict["summary"]
    assert res.evaluations < 60
    assert res.reproduced == (case.expected_kind not in ("none", "model"))
    assert len(res.experiments) >= res.evaluations - 2  # every call recorded (probe calls included)
    d = res.to_dict()
    json.dumps(d, default=str)
    for key in ("reproduced", "criterion", "health", "causes", "verdict", "fix", "evaluations",
                "elapsed_s", "experiments"):
        assert key in d
    if case.expected_kind in ("input", "samples", "runtime"):
        assert res.causes[0].kind == case.expected_kind
        assert res.fix


def test_incident_partial_and_full_restoration_and_degraded_passing():
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


def test_runtime_rescue_when_every_set_fails_is_not_a_model_fault():
    case = faults.batch_size_everywhere()
    res = bisect(case.model, case.failing, case.passing, case.reference)
    assert not res.reproduced
    assert (res.verdict["kind"], res.verdict["name"]) == ("runtime", "batch_size"), res.verdict["summary"]
    assert res.causes[0].kind == "runtime" and res.causes[0].restores == 1.0
    assert "restores_basis" in res.causes[0].evidence
    # the dead model is still a model fault: no runtime factor flips it
    dead = faults.dead_model()
    assert bisect(dead.model, dead.failing, dead.passing, dead.reference).verdict["kind"] == "model"


def test_poisoned_sample_found_in_large_set_by_subsampling():
    case = faults.poisoned_sample(n=200, index=137)
    res = bisect(case.model, case.failing, case.passing, max_samples=100)
    assert res.verdict["kind"] == "samples" and res.verdict["name"] == [137]
    assert res.verdict.get("confirmed_on_whole_set") is True


def test_bad_inputs_raise_clear_errors():
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


def test_cli_bisect_writes_json(tmp_path, capsys):
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


def test_cli_bisect_bad_input_exits_2(tmp_path, capsys):
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

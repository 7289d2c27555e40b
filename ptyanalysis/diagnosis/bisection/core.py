"""The bisection's orchestration: reproduce, choose the yardstick, run the stages, conclude.

See :func:`bisect`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import PtyAnalysisError
from ...inference.loading import load_model
from ...inference.runtime import RuntimeConfig
from ..health import (
    DEGRADED_HEALTH,
    collapsed_outputs,
    degraded,
    health_scores,
    parse_criterion,
    reference_problem,
    restores,
    sample_health,
    truth_sample_spread,
)
from ..inputs import check_input_shapes
from ..usage import USAGE_SAMPLES, input_usage, unused_text
from ..yardstick import Candidate, choose_yardstick
from . import render
from .context import Context
from .ddmin import BudgetSpent
from .probe import run_layers
from .records import BisectionResult, Cause, Verdict
from .runner import Runner, error_text, model_errors
from .sets import ROWS_KEY, n_samples, nonfinite_evidence, normalise_set, subsample_idx, take
from .settings import COMBINE_BELOW, Settings
from .stages import criterion as criterion_stage
from .stages import inputs as inputs_stage
from .stages import pairing as pairing_stage
from .stages import runtime as runtime_stage
from .stages import samples as samples_stage
from .stages import several as several_stage
from .verdict import conclude, rank


@dataclass
class _Run:
    """What the first steps established (sets, outputs, yardstick), shared by the verdict builders."""

    runner: Runner
    settings: Settings
    crit: object
    whole: dict
    work: dict = field(default_factory=dict)
    idx: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    outs: dict = field(default_factory=dict)
    ref_ok: bool = False
    ref_source: str = ""
    ref_problem: str | None = None
    notes: list = field(default_factory=list)
    health: dict = field(default_factory=dict)
    layers: dict = field(default_factory=lambda: {"status": "not run", "rows": []})
    input_info: dict = field(default_factory=dict)
    usage: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _load(model, failing, passing, reference, paired_reference):
    loaded = load_model(model)
    names = list(loaded.input_names)
    F0 = normalise_set(failing, names, "failing")
    names = names or list(F0)
    P0 = normalise_set(passing, names, "passing")
    R0 = normalise_set(reference, names, "reference") if reference is not None else None
    T0 = normalise_set(paired_reference, names, "paired reference") if paired_reference is not None else None
    check_input_shapes(loaded, {"failing": F0, "passing": P0, "reference": R0, "paired reference": T0})
    if T0 is not None:
        if n_samples(T0) != n_samples(F0):
            raise PtyAnalysisError(
                f"paired reference: {n_samples(T0)} samples but the failing set has {n_samples(F0)}; a paired "
                "reference holds the failing set's own samples in the same order (fed as the model was trained)")
        F0 = {**F0, ROWS_KEY: np.arange(n_samples(F0))}
    return loaded, names, {"failing": F0, "passing": P0, "reference": R0, "paired": T0}


def _reproduce(run: _Run) -> None:
    """Each set once, on seeded working subsamples (the whole set when a subsample does not show its outcome)."""
    rng = run.settings.rng("working")
    for label in ("failing", "passing", "reference"):
        if run.whole[label] is not None:
            run.idx[label] = subsample_idx(run.whole[label], run.settings.max_samples, rng)
    for label in ("reference", "passing", "failing"):
        if label not in run.idx:
            continue
        whole = run.whole[label]
        sub = len(run.idx[label]) < n_samples(whole)
        s = take(whole, run.idx[label]) if sub else whole
        e, r = run.runner.run("reproduce", label + (":subsample" if sub else ""), label, s,
                              f"{label} set as given" + (f" (seeded subsample of {n_samples(s)})" if sub else ""),
                              keep=True)
        if sub and e.fails is not None and e.fails != (label == "failing"):
            run.idx[label], s = np.arange(n_samples(whole)), whole
            e, r = run.runner.run("reproduce", label, label, s, f"whole {label} set", keep=True)
        run.work[label] = s
        run.stats[label] = (e, None if r is None else r[1])
        run.outs[label] = None if r is None else r[0]


def _choose_reference(run: _Run) -> None:
    """The yardstick of health, by the one rule of :func:`ptyanalysis.diagnosis.yardstick.choose_yardstick`
    (candidates: the reference, then the passing set)."""
    ref_e, ref_st = run.stats.get("reference", (None, None))
    pass_e, pass_st = run.stats["passing"]
    run.ref_problem = reference_problem(ref_st) if ref_st is not None else None
    pass_problem = reference_problem(pass_st) if pass_st is not None else "it has no outputs"
    candidates = [Candidate("passing", "inputs", pass_problem, pass_e.fails is not False)]  # unknown: fails
    if ref_st is not None:
        candidates.insert(0, Candidate("reference", "reference", run.ref_problem, ref_e.fails is not False))
    y = choose_yardstick(candidates)
    run.ref_ok = y.label == "reference" and y.trusted
    run.runner.ref_stats = {"reference": ref_st, "passing": pass_st}.get(y.label)
    if y.label is None:
        run.ref_source = "none: absolute checks only (no set has healthy outputs)"
    elif not y.trusted:
        run.ref_source = f"{y.label} set (fails itself)"
    elif y.label == "reference":
        run.ref_source = "reference set"
    else:
        run.ref_source = ("passing set (the reference is unusable)" if run.ref_problem else
                          "passing set (the reference fails the criterion)" if ref_e is not None else
                          "passing set (no healthy reference)")
    if y.label == "passing" and y.trusted and run.ref_problem:
        run.notes.append({"kind": "reference_unusable", "problem": run.ref_problem})
    problems = {c.label: c.problem for c in candidates if c.problem}
    if not y.trusted and problems:
        run.notes.append({"kind": "no_usable_reference", "problems": problems})


def _pair(run: _Run) -> dict:
    """Use the paired reference (the failing samples fed as trained) when its outputs are usable."""
    T0 = run.whole["paired"]
    info = {"given": T0 is not None, "used": False}
    if T0 is None or run.stats["failing"][1] is None:
        return info
    idx = run.idx["failing"]
    Tw = take(T0, idx) if len(idx) < n_samples(T0) else T0
    e, r = run.runner.run("reproduce", "paired_reference", "paired_reference", Tw,
                          "the failing samples fed as the model was trained (paired reference)", keep=True)
    problem = reference_problem(r[1]) if r is not None else (e.error or "it could not be run")
    info.update({"experiment": e.id, "fails": e.fails, "problem": problem})
    if e.fails is False and problem is None:
        pos = np.full(n_samples(T0), -1)
        pos[idx] = np.arange(len(idx))
        run.runner.paired = (pos, list(r[0]))
        info["used"] = True
    else:
        info["not_used_because"] = ("its outputs fail the criterion" if e.fails is not False
                                    else f"its outputs are unusable ({problem})")
    return info


def _health(run: _Run, paired_info: dict, ground_truth, out_names: list) -> dict:
    """Health of every set against the yardstick (per output), and the experiments' records updated."""
    runner, hs, hpo = run.runner, {}, {}
    for label, (e, st) in run.stats.items():
        if st is not None and runner.ref_stats is not None:
            hpo[label] = health_scores(st, runner.ref_stats)
            if label == "failing" and runner.paired is not None:
                ph = runner.paired_scores(run.outs["failing"], run.whole["failing"][ROWS_KEY][run.idx["failing"]])
                paired_info["failing_paired_per_output"] = ph
                hpo[label] = [min(a, b) if np.isfinite(b) else a for a, b in zip(hpo[label], ph)]
            hs[label] = float(np.mean(hpo[label])) if hpo[label] else np.nan
        else:
            hpo[label], hs[label] = [], np.nan
        runner.experiments[e.id] = replace(e, health=hs[label], details={**e.details, "health_per_output": hpo[label]})
    n_out = len(next((st for _, st in run.stats.values() if st is not None), None) or [])
    if len(out_names) != n_out:  # the model's names, when there is one per output (health may be unmeasured)
        out_names = [f"output_{k}" for k in range(n_out)]

    def deg(label):
        return [out_names[k] for k, h in enumerate(hpo.get(label) or []) if degraded(h)]
    pass_e = run.stats["passing"][0]
    return {"failing": hs.get("failing"), "passing": hs.get("passing"), "reference": hs.get("reference"),
            "reference_source": run.ref_source, "degraded_threshold": DEGRADED_HEALTH,
            "failing_degraded": degraded(hpo.get("failing") or hs.get("failing", np.nan)),
            "passing_degraded": degraded(hpo.get("passing") or hs.get("passing", np.nan)) if run.ref_ok else False,
            "outputs": {lbl: [o.to_dict() for o in st] for lbl, (e, st) in run.stats.items() if st is not None},
            "output_names": out_names, "per_output": hpo,
            "failing_degraded_outputs": deg("failing"),
            "passing_degraded_outputs": deg("passing") if run.ref_ok else [],
            "reference_usable": None if "reference" not in run.stats else run.ref_problem is None,
            "passing_fails": bool(pass_e.fails), "reference_problem": run.ref_problem,
            "basis": "paired" if runner.paired is not None else "statistics", "paired": paired_info,
            # output components that do not depend on the input (the same for every sample), per set
            "collapsed": {lbl: collapsed_outputs(st, out_names,
                                                 truth_spread=truth_sample_spread((ground_truth or {}).get(lbl)))
                          for lbl, (e, st) in run.stats.items() if st is not None},
            "bad_samples": {lbl: {"fraction": max((o.bad_sample_fraction for o in st), default=0.0),
                                  "blank": max((o.blank_sample_fraction for o in st), default=0.0),
                                  "identical": max((o.identical_sample_fraction for o in st), default=0.0)}
                            for lbl, (e, st) in run.stats.items() if st is not None}}


def _usage(run: _Run) -> None:
    """Which inputs the model uses at all (one call per input, on a few samples of a set it works on)."""
    runner, names = run.runner, run.runner.names
    if runner.evaluations + len(names) + 2 > runner.max_evaluations:
        return
    P, R, F = run.work["passing"], run.work.get("reference"), run.work["failing"]
    U = P if run.stats["passing"][0].fails is False else (R if run.ref_ok else F)
    label = "passing" if U is P else "reference" if U is R else "failing"
    t0 = time.perf_counter()
    try:
        run.usage = input_usage(runner.call, U, names, model=getattr(runner.loaded, "model", None),
                                seed=run.settings.seed)
    except (BudgetSpent, *model_errors()) as exc:  # evidence, not fatal
        run.meta["input_usage_error"] = error_text(exc)
    each = (time.perf_counter() - t0) / max(1, len(run.usage) + 1)
    for u in [None, *run.usage]:  # every model call is an experiment (the first: unperturbed)
        runner.record("usage", "usage:base" if u is None else f"usage:{u.name}", label, min(n_samples(U), USAGE_SAMPLES),
                      f"{label} samples as given" if u is None else f"{u.name}: {u.perturbation}",
                      error=None if u is None else u.error, elapsed=each,
                      details={} if u is None else {"used": u.used, "max_change": u.max_change,
                                                    "auxiliary": u.auxiliary})
    runner.unused = {u.name for u in run.usage if u.used is False and not u.auxiliary}
    text = unused_text(run.usage)
    if text:
        run.notes.append({"kind": "unused_inputs", "text": text[0].upper() + text[1:]})


def _collapsed_verdict(run: _Run) -> Verdict:
    """Not the criterion's failure, but outputs that do not depend on the input."""
    flat = run.health["collapsed"]["failing"]
    everywhere = [lbl for lbl in ("passing", "reference") if run.health["collapsed"].get(lbl)]
    if run.settings.probe_layers:
        run.layers = run_layers(run.runner, run.work["failing"], None, run.settings.rng("probe"))
    where = run.layers.get("first_input_independent")
    rerun = criterion_stage.collapse_criterion_for(flat)
    facts = {"criterion": run.crit.label, "texts": "; ".join(c["text"] for c in flat), "also_on": everywhere,
             "independent_layers_text": independent_layers_text(run.layers) if where else "",
             "rerun_criterion": rerun, "collapsed": flat, "first_input_independent_layer": where}
    return Verdict("collapsed", ", ".join(f"{c['output']} {c['component']}" for c in flat),
                   "check the training (loss still falling? a flat output after few epochs is an under-trained "
                   "model) and the input scale the model was trained with", False, facts)


def independent_layers_text(layers: dict, most: int = 4) -> str:
    """Where the layer probe found activations that no longer depend on the input, in words."""
    names = list(layers.get("input_independent") or [])
    if not names:
        return ""
    shown = ", ".join(repr(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
    if len(names) == 1:
        return f"activations stop depending on the input at layer {names[0]!r}"
    return (f"activations do not depend on the input at {len(names)} layers: {shown} (the first may be a side "
            "branch; follow the one on the flat output's path)")


def _not_reproduced(run: _Run) -> Verdict:
    h, hint = run.health, ""
    if h["failing_degraded"] and np.isfinite(h.get("failing", np.nan)):
        hint = (f"; note that it is degraded (health {h['failing']:.3f}"
                + (f", outputs {', '.join(h['failing_degraded_outputs'])}" if h["failing_degraded_outputs"] else "")
                + "): a criterion that describes how it looks wrong (zero-fraction>=F, any-blank, collapsed, "
                  "non-finite or a module:function predicate) would let the bisection run")
    text = (f"not reproduced: the failing set does not fail under the {run.crit.label!r} criterion (health "
            f"{h['failing']:.3f} against the {run.ref_source}); nothing to bisect{hint}")
    return Verdict("none", None, "none needed under this criterion (try another criterion, e.g. zero-fraction>=0.5 "
                   "or any-blank, if the outputs still look wrong)", False, {"text": text})


def _every_set_fails(run: _Run, ground_truth) -> Verdict:
    """Every set fails, the reference included: the criterion, a runtime factor, or the model itself."""
    stats = {lbl: st for lbl, (e, st) in run.stats.items()}
    fails = {lbl: e.fails for lbl, (e, st) in run.stats.items()}
    found = criterion_stage.check(run.crit, stats, fails, ground_truth)
    if found is not None:
        fix = (f"rerun with --criterion {found['suggested']}" if found["suggested"] else
               f"describe the failure with a criterion the healthy outputs pass (e.g. {found['passes_everything']}); "
               "the outputs do not fail by any built-in one")
        return Verdict("criterion", run.crit.label, fix, False, {"criterion_check": found})
    ctx = _context(run, run.work["passing"], None)
    rt = runtime_stage.run(ctx)
    if run.settings.probe_layers:
        run.layers = run_layers(run.runner, run.work["failing"], None, run.settings.rng("probe"))
    rescued = [c for c in rt.causes if c.kind == "runtime" and c.name != "batch_composition"]
    if rescued:
        # no set passes, so there is no healthy output to measure restores against: a runtime cause here is a
        # criterion flip on the failing and the passing set, the rescue itself
        c = replace(rescued[0], restores=1.0, evidence={**rescued[0].evidence, "restores_basis": (
            "criterion flip on the failing and the passing set (every set fails under the default runtime: no "
            "healthy reference)"), "restores_vs_failing_reference": rescued[0].restores})
        run.meta["causes"] = [c] + [x for x in rt.causes if x is not rescued[0]]
        return Verdict("runtime", c.name, c.fix.text, True, {"value": c.evidence["value"], "rescue": True})
    rows = run.layers.get("rows", [])
    mname = getattr(run.runner.loaded.model, "name", None) or "model"
    unhealthy = "; ".join(f"{lbl}: {criterion_stage.outputs_healthy(st)}" for lbl, st in stats.items()
                          if st and criterion_stage.outputs_healthy(st))
    facts = {"sets": list(run.stats), "criterion": run.crit.label, "reference_given": "reference" in run.stats,
             "unhealthy": unhealthy or "see health", "runtime": rt.info,
             "first_all_zero_layer": next((r["layer"] for r in rows if r["zero_fraction_failing"] == 1.0), None),
             "first_nonfinite_layer": run.layers.get("first_nonfinite") or next(
                 (r["layer"] for r in rows if r["nonfinite_fraction_failing"] > 0), None),
             "first_input_independent_layer": run.layers.get("first_input_independent"),
             "collapsed_texts": [c["text"] for c in run.health["collapsed"].get("failing") or []]}
    run.meta["causes"] = [_model_cause(mname, facts)]
    return Verdict("model", mname, "check that the trained weights were saved and loaded (retrain or reload the "
                   "model)", False, facts)


def _model_cause(mname: str, facts: dict):
    """The model itself as a cause (every set fails and every set's outputs are unhealthy)."""
    return Cause("model", mname, 0.0, {k: facts[k] for k in ("runtime", "first_all_zero_layer",
                                                             "first_nonfinite_layer", "first_input_independent_layer",
                                                             "reference_given")}, specificity=90)


def _context(run: _Run, P: dict, R: dict | None, against: str = "passing") -> Context:
    plabel = "the passing set" if against == "passing" else "the reference/training inputs"
    flags = sample_health(run.outs["failing"]) if run.outs.get("failing") is not None else None
    return Context(run.runner, run.settings, run.work["failing"], P, R, run.whole["failing"], run.idx["failing"],
                   against=against, plabel=plabel, sample_flags=flags, input_info=run.input_info)


def _experiments(run: _Run, ctx: Context) -> list:
    """Every stage on the failing set against the comparison set; the candidate causes."""
    run.runner.h_fail = run.health["failing"]
    reports = {"runtime": runtime_stage.run(ctx)}
    reports["inputs"] = inputs_stage.run(ctx)
    tried = inputs_stage.tried_experiments(reports["inputs"].info.pop("_tried"))
    screen = reports["inputs"].info.pop("_screen")
    best_single = max([c.restores for c in reports["inputs"].causes if c.verified] + [0.0])
    if best_single < COMBINE_BELOW:
        reports["several"] = several_stage.run(ctx, screen, {k: tried[k] for k in reports["inputs"].info["suspects"]
                                                             if k in tried})
    reports["pairing"] = pairing_stage.run(ctx)
    reports["samples"] = samples_stage.run(ctx)
    if run.settings.probe_layers:
        run.layers = run_layers(run.runner, ctx.F, ctx.P, run.settings.rng("probe"), ctx.against)
    run.meta["stages"] = {name: r.info for name, r in reports.items()}
    return [c for r in reports.values() for c in r.causes]


def _confirm(run: _Run, top) -> dict | None:
    """The top cause's change applied to the whole failing set, when the experiments ran on a subsample."""
    F0 = run.whole["failing"]
    if top is None or n_samples(run.work["failing"]) == n_samples(F0):
        return None
    if top.kind == "samples":
        keep = np.setdiff1d(np.arange(n_samples(F0)), top.name)
        e, _ = run.runner.run("confirm", "confirm:drop_samples", "failing", take(F0, keep),
                              "whole failing set without the culprit samples")
    elif top.fix is not None and top.fix.apply is not None:
        s2, rt2 = top.fix.apply(F0)
        e, _ = run.runner.run("confirm", f"confirm:{top.kind}:{top.name}", "failing", s2,
                              "fix applied to the whole failing set", runtime=rt2)
    else:
        return None
    if e.fails is None:
        return None
    return {"fails": e.fails, "restores": restores(run.health["failing"], e.health), "experiment": e.id,
            "n_samples": e.n_samples}


def drifted_not_named(input_info: dict, named: set) -> dict | None:
    """Inputs that drifted (score >= 1 against the reference, else the passing set) but are not named as a
    cause (a drift the model is nearly blind to is said, not silently dropped): a note, or None."""
    items, names = [], []
    for k, info in input_info.items():
        if k in named:
            continue
        best = None
        for key, who, inverse in (("drift_failing_vs_reference", "the reference's", False),
                                  ("drift_failing_vs_passing", "the passing set's", True)):
            d = info.get(key)
            if d is None or not np.isfinite(d.get("drift_score", np.nan)) or d["drift_score"] < 1:
                continue
            if best is None or d["drift_score"] > best[0]["drift_score"]:
                best = (d, who, inverse)
        if best is None:
            continue
        d, who, inverse = best
        words = f"{k!r} (drift score {d['drift_score']:.3g}"
        ratio = d.get("total_ratio")
        if ratio is not None and np.isfinite(ratio) and ratio > 0:
            words += f"; its pattern totals are x{(1 / ratio if inverse else ratio):.3g} {who}"
        items.append(words + ")")
        names.append(k)
    return {"kind": "drifted_not_named", "items": items, "inputs": names} if items else None


def _side_notes(run: _Run, v: Verdict, ranked: list) -> list:
    """The notes a verdict from the experiments carries (layers, other causes, degraded sets, drift)."""
    notes, h = [], run.health
    if run.layers.get("first_dead") or run.layers.get("first_nonfinite"):
        notes.append({"kind": "layers", "first_dead": run.layers.get("first_dead"),
                      "first_nonfinite": run.layers.get("first_nonfinite")})
    if v.facts.get("others"):
        notes.append({"kind": "others", "causes": v.facts["others"]})
    if h.get("passing_degraded") and not h.get("passing_fails"):
        notes.append({"kind": "passing_degraded", "health": h["passing"], "source": h["reference_source"]})
    if h.get("failing_degraded_outputs") and len(h.get("output_names", [])) > 1:
        notes.append({"kind": "degraded_outputs", "outputs": h["failing_degraded_outputs"],
                      "names": h["output_names"], "health": h["per_output"].get("failing", [])})
    if run.meta.get("against") == "reference":
        notes.append({"kind": "reference_took_place", "health": h["passing"]})
    named = {part for c in ranked if c.kind in ("input", "pairing") and c.restores > 0
             for part in str(c.name).split("+")}
    also = drifted_not_named(run.input_info, named)
    if also:
        notes.append(also)
    return notes


def _nonfinite_note(run: _Run, v: Verdict) -> dict | None:
    """Non-finite input values are always named, whatever the criterion looks at (unless the verdict does)."""
    top_ev = (v.facts.get("top") or {}).get("evidence", {})
    if run.crit.kind == "non-finite" or top_ev.get("nonfinite") or top_ev.get("nonfinite_inputs"):
        return None
    parts = []
    for k in run.runner.names:
        ev = nonfinite_evidence(np.asarray(run.whole["failing"][k]))
        if ev["count"]:
            parts.append({"input": k, "count": ev["count"], "n_samples": ev["n_samples"],
                          "first_samples": ev["first_samples"]})
    return {"kind": "nonfinite_inputs", "inputs": parts, "criterion": run.crit.label} if parts else None


def _finish(run: _Run, reproduced: bool, v: Verdict, ranked: list, t0: float, extra_notes=()) -> BisectionResult:
    notes = list(extra_notes)
    nf = _nonfinite_note(run, v)
    if nf:
        notes.append(nf)
    notes += [n for n in run.notes if not (v.kind == "collapsed" and n["kind"] == "reference_unusable")]
    notes.append({"kind": "health_basis", "basis": run.health.get("basis", "statistics"),
                  "paired_not_used_because": run.health.get("paired", {}).get("not_used_because")})
    v = replace(v, notes=tuple(notes))
    verdict = {"kind": v.kind, "name": v.name, "summary": render.summary(v), "verified": v.verified,
               "passing_degraded": bool(run.health.get("passing_degraded")),
               "health_basis": run.health.get("basis", "statistics"),
               "notes": [n["kind"] for n in v.notes]}
    for key in ("causes", "restores", "culprits", "victims", "confirmed_on_whole_set", "criterion_check"):
        if key in v.facts:
            verdict[key] = v.facts[key]
    drift = next((n for n in v.notes if n["kind"] == "drifted_not_named"), None)
    if drift:
        verdict["drifted_not_named"] = drift["inputs"]
    settings = {**run.meta.get("settings", {}), **{k: val for k, val in run.meta.items()
                                                    if k in ("stages", "confirmation", "passing_role",
                                                             "reference_for_interventions", "input_usage_error")}}
    r = run.runner
    return BisectionResult(reproduced=reproduced, criterion=run.crit.to_dict(), health=run.health,
                           causes=tuple(ranked), verdict=verdict, fix=v.fix, evaluations=r.evaluations,
                           elapsed_s=time.perf_counter() - t0, experiments=tuple(r.experiments), layers=run.layers,
                           inputs=run.input_info, settings=settings, input_usage=tuple(run.usage))


def bisect(model, failing, passing, reference=None, criterion="all-zero", *, runtime=None,
           max_samples: int = 2000, max_evaluations: int = 58, seed: int = 0,
           probe_layers: bool = True, paired_reference=None, ground_truth=None) -> BisectionResult:
    """Find why ``model`` fails on ``failing`` and passes on ``passing``.

    Parameters
    ----------
    model : LoadedModel, keras.Model or str
        The model (a spec is loaded with :func:`ptyanalysis.inference.load_model`).
    failing, passing : dict, list or ndarray
        Input sets: ``{input name: array}`` named like the model's inputs, a
        list in input order, or one array for a one-input model.
    reference : same, optional
        Inputs drawn like the model's training inputs: health is measured
        against the model's outputs on them (else against the passing set's).
        A reference whose own outputs are unusable (all zero, non-finite,
        collapsed) is reported as such and not trusted.
    criterion : str, callable or Criterion
        ``"all-zero"`` (default), ``"non-finite"``, ``"collapsed[:tol]"``,
        ``"zero-fraction>=F"``, ``"mostly-zero"``, ``"module:function"`` or a
        predicate ``f(outputs) -> bool`` (True = fails).
    runtime : RuntimeConfig, optional
        The default runtime the failure is observed under.
    max_samples : int
        Work on seeded subsamples of at most this many samples per set
        (confirming the fix on the whole failing set).
    max_evaluations : int
        Budget of model calls; experiments beyond it are recorded as skipped.
    seed : int
    probe_layers : bool
        Run the per-layer probe.
    paired_reference : same as ``failing``, optional
        The failing set's OWN samples, in the same order, fed as the model was
        trained (e.g. :func:`ptyanalysis.diagnosis.inputs.paired_trained_set`).
        Only an explicitly paired set is used so, never one guessed from
        shapes. With it, every experiment on failing samples is also scored
        per sample against their as-trained outputs (``paired`` health:
        ``clip(1 - mean|y - y_ref| / mean|y_ref|, 0, 1)`` per output), and an
        output's health is the lower of that and the statistics' health, so a
        change restores only what it restores sample by sample. Without it
        health compares output statistics only (``health.basis`` says which).
    ground_truth : dict, optional
        ``{"failing" | "passing" | "reference": true object patches}`` (complex,
        samples first), e.g. from the study datasets: an output component that
        varies far less from sample to sample than the truth
        (:data:`~ptyanalysis.diagnosis.health.FLAT_RATIO`) is reported as flat,
        with the collapsed ones (``health["collapsed"]``).

    Returns
    -------
    BisectionResult

    Raises
    ------
    PtyAnalysisError
        Input names that do not match the model's, sample counts that differ
        inside a set, empty sets, unknown criterion.
    """
    t0 = time.perf_counter()
    settings = Settings(int(max_samples), int(max_evaluations), int(seed), bool(probe_layers))
    crit = parse_criterion(criterion)
    runtime = runtime or RuntimeConfig()
    loaded, names, whole = _load(model, failing, passing, reference, paired_reference)
    run = _Run(Runner(loaded, names, crit, runtime, settings.max_evaluations), settings, crit, whole)
    run.meta["settings"] = {
        **settings.to_dict(), "runtime": runtime.to_dict() if hasattr(runtime, "to_dict") else str(runtime),
        "n_failing": n_samples(whole["failing"]), "n_passing": n_samples(whole["passing"]),
        "n_reference": None if whole["reference"] is None else n_samples(whole["reference"]),
        "paired_reference": whole["paired"] is not None, "inputs": names, "model": getattr(loaded, "source", None)}
    _reproduce(run)
    run.meta["settings"]["working_samples"] = {k: n_samples(v) for k, v in run.work.items()}
    _choose_reference(run)
    paired = _pair(run)
    run.health = _health(run, paired, ground_truth, list(getattr(loaded, "output_names", None) or []))
    return _decide(run, ground_truth, t0)


def _decide(run: _Run, ground_truth, t0: float) -> BisectionResult:
    """The early verdicts (cannot run, collapsed, not reproduced, every set fails), else the experiments."""
    bad = [lbl for lbl, (e, st) in run.stats.items() if st is None]
    if bad:
        err = "; ".join(f"{lbl}: {run.stats[lbl][0].error}" for lbl in bad)
        return _finish(run, False, Verdict("none", None, "make the model run on every set first", False, {
            "text": f"the model could not be run on the {', '.join(bad)} set ({err})"}), [], t0)
    _usage(run)
    fail_fails = run.stats["failing"][0].fails is True
    if not fail_fails and run.health["collapsed"].get("failing"):
        v = _collapsed_verdict(run)
        cause = _model_cause("collapsed_output", {
            "runtime": None, "first_all_zero_layer": None, "first_nonfinite_layer": None,
            "first_input_independent_layer": v.facts["first_input_independent_layer"], "reference_given": None})
        return _finish(run, False, v, [replace(cause, evidence={**cause.evidence, "collapsed": v.facts["collapsed"],
                                                                 "also_on": v.facts["also_on"]})], t0)
    if not fail_fails:
        return _finish(run, False, _not_reproduced(run), [], t0)
    P, R = run.work["passing"], run.work.get("reference")
    R_use = R if run.ref_ok or (R is not None and run.ref_problem is None) else None
    if R is not None and R_use is None:
        run.meta["reference_for_interventions"] = "not used: " + (run.ref_problem or "the reference fails")
    against = "passing"
    if run.stats["passing"][0].fails is True:
        ref_e = run.stats.get("reference", (None, None))[0]
        if ref_e is None or ref_e.fails is not False:
            v = _every_set_fails(run, ground_truth)
            return _finish(run, False, v, rank(run.meta.pop("causes", [])), t0)
        if not run.ref_ok:
            return _finish(run, False, Verdict("none", None, "give a reference set the model was trained like "
                                               "(--reference)", False, {"text": (
                f"not reproduced: the passing set fails too, and the reference is unusable ({run.ref_problem})")}),
                [], t0)
        P, R_use, against = R, None, "reference"
        run.meta["passing_role"] = "reference set (the passing set fails too)"
    run.meta["against"] = against
    ctx = _context(run, P, R_use, against)
    ranked = rank(_experiments(run, ctx))
    top = ranked[0] if ranked and (ranked[0].restores > 0 or ranked[0].verified) else None
    confirmed = _confirm(run, top)
    facts = {}
    if confirmed is not None:
        run.meta["confirmation"] = confirmed
        facts["confirmed_on_whole_set"] = not confirmed["fails"]
    v = conclude(ranked, facts=facts)
    notes = _side_notes(run, v, ranked)
    if confirmed is not None and confirmed["fails"]:
        notes.append({"kind": "not_confirmed", "n_samples": confirmed["n_samples"]})
    return _finish(run, True, v, ranked, t0, notes)

"""Inputs stage: which input of the failing set, changed how, lets the model pass?

Per input (on a seeded screening subsample of the failing set): its drift from the comparison set (and
the reference), a swap (its values taken from the comparison set, resampled) and the reverse swap (the
comparison set with the failing values: does it now fail?). On the suspects, every generic intervention
(:data:`~..interventions.INTERVENTIONS`) and every convention fix that applies (:mod:`..conventions`). With
several inputs, ``ddmin`` finds the minimal combination of inputs whose failing values still fail.

An input's cause is the change that restores the most; a change whose experiment let the failing set pass
the criterion is *verified* and preferred to any that did not; among changes within
:data:`~..settings.TIE_TOLERANCE` the most specific wins.
"""

from __future__ import annotations

import numpy as np

from ...drift import input_drift
from .. import conventions
from ..context import Context
from ..ddmin import BudgetSpent, ddmin
from ..interventions import INTERVENTIONS, Change
from ..records import Cause, Experiment, Fix, StageReport
from ..sets import identical_fraction, n_samples, nonfinite_evidence, resample, subsample_idx, take, with_rows
from ..settings import SCREEN_SAMPLES, TIE_TOLERANCE
from ..words import change_fix_text, change_reason_text, poss

#: An input change is less specific than a runtime factor or a sample subset.
SPECIFICITY = 30
#: Inputs the interventions are tried on (the most suspicious first).
MAX_SUSPECTS = 3


def shown(kind: str, against: str = "passing") -> str:
    """An intervention's name as recorded: against the reference (standing in for a passing set that fails
    too), ``swap`` takes the reference's values (``reference``) and ``match_passing`` matches the reference's
    mean and std (``match_reference``)."""
    if against == "reference":
        return {"swap": "reference", "match_passing": "match_reference"}.get(kind, kind)
    return kind


def swapped(ctx: Context, F: dict, keep_failing) -> dict:
    """``F`` with every input not in ``keep_failing`` taken from the comparison set (resampled, seeded)."""
    n = n_samples(F)
    return with_rows({k: (F[k] if k in keep_failing else resample(ctx.P[k], n, ctx.rng("swap")))
                      for k in ctx.names}, F)


def describe(ctx: Context, F: dict) -> dict:
    """Per input: drift against the comparison set (and the reference), dtypes, non-finite counts."""
    dk = f"drift_failing_vs_{ctx.against}"
    seed = ctx.settings.seed
    info = {}
    for k in ctx.names:
        P = ctx.P[k]
        # against the reference, the reference is the baseline of the drift (as drift_failing_vs_reference)
        d = input_drift(F[k], P, seed=seed) if ctx.against == "passing" else input_drift(P, F[k], seed=seed)
        row = {dk: d, "dtype_failing": str(F[k].dtype), f"dtype_{ctx.against}": str(P.dtype),
               "nonfinite_failing": nonfinite_evidence(ctx.F0[k])["count"],
               f"nonfinite_{ctx.against}": int((~np.isfinite(P)).sum()) if P.dtype.kind in "fc" else 0,
               "identical_sample_fraction": identical_fraction(F[k])}
        if ctx.R is not None:
            row["drift_failing_vs_reference"] = input_drift(ctx.R[k], F[k], seed=seed)
            row["drift_passing_vs_reference"] = input_drift(ctx.R[k], P, seed=seed)
        if k in ctx.runner.unused:
            row["used_by_model"] = False  # never intervened on: it changes no output
        info[k] = row
    return info


def drift_of(ctx: Context, k: str) -> float:
    """The input's largest drift score (against the comparison set, and the reference)."""
    info = ctx.input_info[k]
    d = info[f"drift_failing_vs_{ctx.against}"]["drift_score"]
    if "drift_failing_vs_reference" in info:
        d = max(d, info["drift_failing_vs_reference"]["drift_score"])
    return float(np.nan_to_num(d, nan=np.inf, posinf=1e300))


def strength(ctx: Context, k: str) -> float:
    """Evidence against an input beyond the experiments (ties of equal specificity go to the stronger)."""
    info = ctx.input_info[k]
    s = float(np.log1p(min(drift_of(ctx, k), 1e12)))
    s += 10.0 * float(info.get("identical_sample_fraction", 0.0) > 0.5)
    s += 10.0 * float(info.get("nonfinite_failing", 0) > 0)
    s += 5.0 * float(info["dtype_failing"] != info[f"dtype_{ctx.against}"])
    return s


def _swaps(ctx: Context, F: dict) -> dict:
    """The swap experiment of every used input, and the reverse swaps (recorded in ``input_info``)."""
    runner, out = ctx.runner, {}
    for k in ctx.used:
        s = dict(F)
        s[k] = swapped(ctx, F, set(ctx.names) - {k})[k]
        out[k], _ = runner.run("input", f"{shown('swap', ctx.against)}:{k}", "failing", s,
                               f"failing set with {k} taken from {ctx.plabel}")
    Ps = take(ctx.P, subsample_idx(ctx.P, SCREEN_SAMPLES, ctx.rng("screen")))
    target = "passing" if ctx.against == "passing" else "reference"
    for k in ctx.used:
        s = dict(Ps)
        s[k] = resample(F[k], n_samples(Ps), ctx.rng("reverse_swap"))
        e, _ = runner.run("input", f"reverse_swap:{k}", target, s,
                          f"{ctx.plabel} with {k} taken from the failing set (does it now fail?)")
        ctx.input_info[k]["reverse_swap_fails"] = e.fails
    return out


def suspects(ctx: Context, F: dict, swaps: dict) -> list:
    """The inputs worth intervening on: restored by their swap, drifted, non-finite, another dtype,
    identical samples, or a convention that applies; the most suspicious first."""
    def suspicion(k):
        return ((swaps[k].restores or 0.0), drift_of(ctx, k))

    order = sorted(ctx.used, key=suspicion, reverse=True)
    out = [k for k in order if (swaps[k].restores or 0) > 0.01 or drift_of(ctx, k) >= 1
           or ctx.input_info[k]["nonfinite_failing"] > 0 or F[k].dtype != ctx.P[k].dtype
           or ctx.input_info[k]["identical_sample_fraction"] > 0.5][:MAX_SUSPECTS]
    return out or order[:1]


def changes_for(ctx: Context, F: dict, k: str) -> list:
    """Every change tried on input ``k``: the generic interventions and the convention fixes that apply."""
    R = None if ctx.R is None else ctx.R[k]
    found = [Change(k, kind) for kind in INTERVENTIONS[1:]]
    found += [Change(k, fix.name, fix) for fix in conventions.applicable(k, F[k], ctx.P[k], R)]
    return found


def intervene_all(ctx: Context, F: dict, ks: list) -> dict:
    """Run every change on the suspects: ``{input: {Change: Experiment}}`` (identical values run once)."""
    runner, tried = ctx.runner, {}
    for k in ks:
        tried[k], arrays = {}, {}
        for ch in changes_for(ctx, F, k):
            new = ch.values(F[k], ctx.P[k], None if ctx.R is None else ctx.R[k], ctx.rng("intervention"))
            if new is None:
                continue
            same = next((c for c, a in arrays.items() if a.shape == new.shape and a.dtype == new.dtype
                         and np.array_equal(a, new, equal_nan=a.dtype.kind in "fc")), None)
            if same is not None:  # identical values (e.g. a constant reference): no second model call
                tried[k][ch] = tried[k][same]
                continue
            s = dict(F)
            s[k] = new
            name = shown(ch.kind, ctx.against)
            e, _ = runner.run("input", f"{name}:{k}", "failing", s, f"failing set with {k}: {name}",
                              details={"convention": ch.convention.evidence} if ch.convention is not None else None)
            tried[k][ch] = e
            arrays[ch] = new
    return tried


def pick(exps: dict):
    """The best change of one input: verified changes (the failing set passed) before the others, then the
    most restoring, then (within :data:`TIE_TOLERANCE`) the most specific.

    Returns
    -------
    (Change, Experiment) or (None, None)
    """
    ok = {c: e for c, e in exps.items() if e is not None and e.restores is not None}
    if not ok:
        return None, None
    verified = {c: e for c, e in ok.items() if e.fails is False}
    pool = verified or ok
    best = max(e.restores for e in pool.values())
    tied = [c for c, e in pool.items() if e.restores >= best - TIE_TOLERANCE]
    c = min(tied, key=lambda c: (c.specificity, -pool[c].restores, c.kind))
    return c, pool[c]


def applier(ctx: Context, changes: list):
    """``apply(set) -> (set, None)``: the changes re-applied to another subsample of the failing set."""
    P, R = ctx.P, ctx.R

    def apply(s2):
        out = dict(s2)
        for ch in changes:
            new = ch.values(s2[ch.input], P[ch.input], None if R is None else R[ch.input], ctx.rng("intervention"))
            if new is not None:
                out[ch.input] = new
        return out, None
    return apply


def input_cause(ctx: Context, F: dict, k: str, exps: dict, in_combo: bool) -> Cause | None:
    """The cause for input ``k`` from its experiments (None when nothing restores at least 5 %)."""
    ch, e = pick(exps)
    if ch is None or (e.restores < 0.05 and not in_combo):
        return None
    R = None if ctx.R is None else ctx.R[k]
    nf = nonfinite_evidence(ctx.F0[k])  # rows of the whole failing set
    info = ctx.input_info[k]
    dk = f"drift_failing_vs_{ctx.against}"
    ev = {"restores_by_intervention": {shown(c.kind, ctx.against): x.restores for c, x in exps.items()
                                       if x.restores is not None},
          "passes_by_intervention": {shown(c.kind, ctx.against): x.fails is False for c, x in exps.items()},
          "best_intervention": shown(ch.kind, ctx.against),
          "experiments": {shown(c.kind, ctx.against): x.id for c, x in exps.items()},
          "experiment": e.id, "against": ctx.against,
          "drift_score": info[dk]["drift_score"], "smd": info[dk]["smd"],
          "reverse_swap_fails": info.get("reverse_swap_fails"), "ddmin_minimal": in_combo,
          "reason": change_reason_text(ch, F[k], ctx.P[k], R, nf, ctx.plabel)}
    if ch.convention is not None:
        ev["convention"] = {"name": ch.convention.name, **ch.convention.evidence}
    if "drift_failing_vs_reference" in info:
        ev["drift_score_vs_reference"] = info["drift_failing_vs_reference"]["drift_score"]
    if F[k].dtype != ctx.P[k].dtype:
        ev["dtype"] = {"failing": str(F[k].dtype), ctx.against: str(ctx.P[k].dtype)}
    if nf["count"]:
        ev["nonfinite"] = nf
    if info["identical_sample_fraction"] > 0:
        ev["identical_sample_fraction"] = info["identical_sample_fraction"]
    text = change_fix_text(ch, F[k], ctx.P[k], R, nf, ctx.plabel)
    return Cause("input", k, float(e.restores), ev, verified=e.fails is False, fix=Fix(text, applier(ctx, [ch])),
                 specificity=SPECIFICITY + ch.specificity, strength=strength(ctx, k))


def minimal_inputs(ctx: Context, F: dict, swaps: dict) -> tuple[dict | None, Cause | None]:
    """ddmin over inputs: the minimal set whose failing values still fail when every other input takes
    the comparison set's; a cause when that takes more than one input."""
    used = ctx.used
    if len(used) < 2:
        return None, None
    cache = {frozenset(ctx.names): True}
    cache.update({frozenset(set(ctx.names) - {k}): e.fails for k, e in swaps.items()})

    def test(keep):
        key = frozenset(keep)
        if key not in cache:
            e, _ = ctx.runner.run("combination", "keep_failing:" + "+".join(sorted(keep)), "failing",
                                  swapped(ctx, F, set(keep)), "inputs " + ", ".join(sorted(keep))
                                  + f" from the failing set, the others from {ctx.plabel}")
            cache[key] = e.fails
        return cache[key]
    try:
        minimal, complete = ddmin(used, test, max_tests=12)
    except BudgetSpent:
        return None, None
    if len(minimal) >= len(used):
        return None, None
    combo = {"inputs": sorted(minimal), "minimal": complete}
    if len(minimal) == 1:
        return combo, None
    name = "+".join(sorted(minimal))
    e, _ = ctx.runner.run("combination", f"{shown('swap', ctx.against)}:{name}", "failing",
                          swapped(ctx, F, set(ctx.names) - set(minimal)),
                          "failing set with " + ", ".join(sorted(minimal)) + f" taken from {ctx.plabel}")
    parts = [{"input": k, "intervention": shown("swap", ctx.against), "restores_alone": swaps[k].restores or 0.0,
              "fix": change_fix_text(Change(k, "swap"), F[k], ctx.P[k], None, plabel=ctx.plabel)}
             for k in sorted(minimal)]
    text = ("replace " + ", ".join(sorted(minimal)) + f" by values like {poss(ctx.plabel)} (together: each alone "
            "does not restore the outputs)")
    cause = Cause("input", name, e.restores or 0.0, {"ddmin": combo, "experiment": e.id, "parts": parts},
                  verified=e.fails is False, fix=Fix(text, applier(ctx, [Change(k, "swap") for k in minimal])),
                  specificity=SPECIFICITY + 14, strength=sum(strength(ctx, k) for k in minimal))
    return combo, cause


def run(ctx: Context) -> StageReport:
    """The input experiments on a seeded screening subsample of the working failing set.

    Returns
    -------
    StageReport
        ``info``: ``suspects``, ``ddmin`` and, for the several-causes stage, the experiments per input
        (``tried``, not written out); ``causes``: one per input that a change restores, and the ddmin
        combination when it takes several inputs.
    """
    F = take(ctx.F, subsample_idx(ctx.F, SCREEN_SAMPLES, ctx.rng("screen")))
    ctx.input_info.update(describe(ctx, F))
    swaps = _swaps(ctx, F)
    sus = suspects(ctx, F, swaps)
    tried = intervene_all(ctx, F, sus)
    for k, e in swaps.items():
        tried.setdefault(k, {})[Change(k, "swap")] = e
    combo, combo_cause = minimal_inputs(ctx, F, swaps)
    causes = [] if combo_cause is None else [combo_cause]
    for k in ctx.used:
        c = input_cause(ctx, F, k, tried.get(k, {}), combo is not None and combo["inputs"] == [k])
        if c is not None:
            causes.append(c)
    return StageReport({"status": "done", "suspects": sus, "ddmin": combo, "n_samples": n_samples(F),
                        "_tried": tried, "_screen": F}, causes)


def tried_experiments(tried: dict) -> dict:
    """``{input: {Change: Experiment}}`` of the changes that were run (for the several-causes stage)."""
    return {k: {c: e for c, e in v.items() if isinstance(e, Experiment) and e.restores is not None}
            for k, v in tried.items()}

"""Samples stage: which samples of the failing set cause the failure?

1. **Scans, no model call**: samples whose inputs hold NaN/Inf or values far outside the comparison set's
   (:func:`abnormal_rows`), and samples whose *outputs* are unhealthy (blank, non-finite, flat, identical:
   :func:`ptyanalysis.diagnosis.health.sample_health`). When the rest of the set passes without them, they
   are the subset; one call at batch size 1 tells *culprits* (still unhealthy on their own) from *victims*
   (unhealthy only in a batch with a culprit).
2. Otherwise the set is split into 4 random chunks; if every chunk fails the failure is *global*; else
   ``ddmin`` over samples finds a 1-minimal failing subset (repeated until the rest passes).

A subset cause needs the rest of the set to pass and to be small (at most
:data:`~..settings.MAX_SUBSET_FRACTION` of it). Culprits are reported as runs of consecutive samples.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...health import sample_health
from ..context import Context
from ..ddmin import ddmin
from ..records import Cause, Fix, StageReport
from ..sets import inputs_of, n_samples, take
from ..settings import MAX_SUBSET_FRACTION, OUTLIER_FACTOR, SAMPLE_TESTS
from ..words import poss

#: Dropping a few samples is the most specific change.
SPECIFICITY = 10


def abnormal_rows(F: dict, P: dict, plabel: str = "the passing set") -> dict:
    """``{row: [reasons]}``: rows holding NaN/Inf, or values far outside the passing set's (no model call)."""
    out: dict = {}
    for k, v in inputs_of(F).items():
        r = np.abs(v.reshape(len(v), -1)) if v.dtype.kind in "fciu" else None
        if r is None:
            continue
        if v.dtype.kind in "fc":
            fin = np.isfinite(r)
            bad = ~fin.all(axis=1)
            for i in np.flatnonzero(bad):
                out.setdefault(int(i), []).append(f"{k}: {int((~fin[i]).sum())} non-finite value(s)")
            amax = np.max(np.where(fin, r, 0), axis=1).astype(np.float64)
        else:
            bad = np.zeros(len(v), bool)
            amax = r.max(axis=1).astype(np.float64)
        p = P[k].reshape(len(P[k]), -1)
        pa = np.abs(p.astype(np.float64)) if p.dtype.kind in "fciu" else None
        if pa is None:
            continue
        pa = np.where(np.isfinite(pa), pa, 0).max(axis=1)
        pmax = float(np.quantile(pa, 0.999)) if pa.size else 0.0
        if pmax > 0:
            for i in np.flatnonzero((amax > OUTLIER_FACTOR * pmax) & ~bad):
                out.setdefault(int(i), []).append(
                    f"{k}: largest |value| {amax[i]:.4g} = {amax[i] / pmax:.3g} x {poss(plabel)}")
        if r.shape[1] > 1 and np.all(pa > 0):  # an all-zero sample where no comparison sample is one: dark/blank
            for i in np.flatnonzero((amax == 0) & ~bad):
                out.setdefault(int(i), []).append(f"{k}: all zero (a dark or blank sample; none in {plabel} is)")
    return out




def runs(indices) -> list:
    """Consecutive runs of sorted sample indices, ``[[first, last], ...]``."""
    idx = sorted(int(i) for i in indices)
    out: list = []
    for i in idx:
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def runs_text(indices) -> str:
    """Sample indices in words, runs shortened (``120-133 (14), 250``)."""
    parts = [f"{a}" if a == b else f"{a}-{b} ({b - a + 1})" for a, b in runs(indices)]
    return ", ".join(parts[:8]) + (f" and {len(parts) - 8} more runs" if len(parts) > 8 else "")


class _Tester:
    """Runs sample subsets of the working failing set, each once, within :data:`SAMPLE_TESTS` calls."""

    def __init__(self, ctx: Context, budget: int = SAMPLE_TESTS):
        self.ctx, self.budget = ctx, budget
        self.outcome, self.exps = {}, {}

    def __call__(self, sub):
        key = tuple(sorted(int(i) for i in sub))
        if key not in self.outcome:
            if self.budget <= 0:
                return None
            self.budget -= 1
            e, _ = self.ctx.runner.run("samples", f"subset[{len(key)}]", "failing", take(self.ctx.F, np.array(key)),
                                       f"failing samples subset of {len(key)}",
                                       details={"indices": self.orig(key)} if len(key) <= 16 else {})
            self.outcome[key], self.exps[key] = e.fails, e
        return self.outcome[key]

    def orig(self, rows) -> list:
        return sorted(int(self.ctx.index_map[i]) for i in rows)


def alone(ctx: Context, rows: list) -> np.ndarray | None:
    """Which of ``rows`` still have unhealthy outputs when each sample is run on its own (batch size 1)."""
    rt = replace(ctx.runner.runtime, batch_size=1)
    e, r = ctx.runner.run("samples", f"alone[{len(rows)}]", "failing", take(ctx.F, np.array(rows)),
                          f"{len(rows)} flagged samples, each run on its own (batch size 1)", runtime=rt, keep=True)
    if r is None:
        return None
    return sample_health(r[0])["bad"]


def _culprits(ctx: Context, t: _Tester, rows: list, abnormal: dict) -> tuple[list, list]:
    """Culprits and victims among ``rows`` (the rest of the set passes without them)."""
    abn = [i for i in rows if i in abnormal]
    if len(rows) == 1:
        return rows, []
    bad_alone = alone(ctx, rows)
    if bad_alone is None:
        return rows, []
    culprits = sorted(set(abn) | {i for i, b in zip(rows, bad_alone) if b})
    if not culprits and len(rows) <= 8:
        # none is unhealthy on its own: a culprit is one whose return alone makes the rest fail again
        rest = [i for i in range(n_samples(ctx.F)) if i not in set(rows)]
        culprits = [i for i in rows if t(sorted(rest + [i])) is not False]
    if not culprits or len(culprits) == len(rows):
        return rows, []
    return culprits, [i for i in rows if i not in culprits]


def _cause(ctx: Context, t: _Tester, culprits, victims, rest, how, abnormal) -> Cause:
    e = t.exps[tuple(sorted(int(i) for i in rest))]
    names = t.orig(culprits)
    ev = {"n_samples_working_set": n_samples(ctx.F), "rest_health": e.health, "experiment": e.id,
          "found_by": how, "victims": t.orig(victims), "runs": runs(names),
          "abnormal": {str(int(ctx.index_map[i])): abnormal[i] for i in culprits if i in abnormal}}
    nf = {k: [int(ctx.index_map[i]) for i in culprits if v.dtype.kind in "fc" and not np.isfinite(v[i]).all()]
          for k, v in inputs_of(ctx.F).items()}
    nf = {k: v for k, v in nf.items() if v}
    if nf:
        ev["nonfinite_inputs"] = nf
    if ctx.sample_flags is not None:
        ev["output_flags"] = {k: int(ctx.sample_flags[k][list(culprits)].sum())
                              for k in ("blank", "nonfinite", "flat", "identical") if ctx.sample_flags[k][list(culprits)].any()}
    by_reason: dict = {}  # samples with the same reasons said once, as runs
    for smp, r in ev["abnormal"].items():
        by_reason.setdefault(", ".join(r), []).append(int(smp))
    why = "; ".join(f"sample(s) {runs_text(smps)}: {r}" for r, smps in list(by_reason.items())[:5])
    if ev.get("output_flags"):
        why += ("; " if why else "") + "their outputs: " + ", ".join(f"{n} {k}" for k, n in ev["output_flags"].items())
    text = f"drop or repair sample(s) {runs_text(names)} of the failing set" + (f" ({why})" if why else "")
    if ev["victims"]:
        text += f"; sample(s) {runs_text(ev['victims'])} fail only because they share a batch with them: keep them"
    return Cause("samples", names, float(e.restores or 0.0), ev, verified=e.fails is False, fix=Fix(text),
                 specificity=SPECIFICITY, strength=float(len(ev["abnormal"])))


def _from_scans(ctx: Context, t: _Tester, abnormal: dict, limit: int):
    """A subset found without a model call (abnormal inputs, unhealthy outputs) whose removal passes."""
    n = n_samples(ctx.F)
    flagged = [] if ctx.sample_flags is None else [int(i) for i in np.flatnonzero(ctx.sample_flags["bad"])]
    tried = set()
    for how, rows in (("input scan (non-finite, far-outlying or all-zero values)", sorted(abnormal)),
                      ("per-sample output health (blank, non-finite, flat or identical outputs)",
                       sorted(set(flagged) | set(abnormal)))):
        if not (0 < len(rows) <= limit) or tuple(rows) in tried:
            continue
        tried.add(tuple(rows))
        rest = [i for i in range(n) if i not in set(rows)]
        if rest and t(rest) is False:
            culprits, victims = _culprits(ctx, t, rows, abnormal)
            return _cause(ctx, t, culprits, victims, rest, how, abnormal), {"subset": t.orig(rows)}
    return None, {"flagged_outputs": len(flagged)}


def _by_ddmin(ctx: Context, t: _Tester, limit: int, abnormal: dict):
    """ddmin over samples from the failing chunks; the cause when the rest passes and the subset is small."""
    n = n_samples(ctx.F)
    perm = ctx.rng("samples").permutation(n)
    chunks = [np.sort(c) for c in np.array_split(perm, min(4, n))]
    outcomes = [t(c) for c in chunks]
    info = {"chunk_fails": outcomes}
    if all(o is True for o in outcomes):
        return None, {**info, "scope": "global",
                      "summary": "every quarter of the failing set fails on its own: the failure is global"}
    failing = [c for c, o in zip(chunks, outcomes) if o is True]
    if not failing:
        return None, {**info, "scope": "collective", "summary": "no quarter of the failing set fails on its own: "
                      "the failure needs many samples together (batch composition or size)"}
    found: list[int] = []
    rest_passes, remaining = False, np.arange(n)
    for _ in range(3):
        start = [int(i) for i in np.concatenate(failing) if int(i) not in set(found)]
        if not start or t(start) is not True:
            break
        sub, _ = ddmin(start, t, max_tests=max(t.budget, 1))
        found.extend(int(i) for i in sub)
        remaining = np.setdiff1d(np.arange(n), found)
        if len(remaining) == 0:
            break
        rest_passes = t(list(remaining)) is False
        if rest_passes or t.budget <= 0:
            break
        failing = [np.setdiff1d(c, found) for c in failing]
    info.update(subset=t.orig(found), rest_passes=rest_passes)
    if not (0 < len(found) <= limit and rest_passes):
        return None, {**info, "scope": "unclear"}
    culprits, victims = _culprits(ctx, t, found, abnormal)
    return _cause(ctx, t, culprits, victims, [int(i) for i in remaining], "ddmin over samples", abnormal), info


def run(ctx: Context) -> StageReport:
    """Locate the samples that cause the failure (see the module docstring)."""
    n = n_samples(ctx.F)
    if n < 2:
        return StageReport({"status": "skipped", "reason": "fewer than 2 samples"})
    t = _Tester(ctx)
    abnormal = abnormal_rows(ctx.F, ctx.P, ctx.plabel)
    limit = max(1, int(MAX_SUBSET_FRACTION * n))
    info = {"status": "done", "scan": {"abnormal_rows": t.orig(abnormal)[:50], "n_abnormal": len(abnormal)}}
    cause, found = _from_scans(ctx, t, abnormal, limit)
    info["scan"].update({k: v for k, v in found.items() if k != "subset"})
    if cause is None:
        cause, found = _by_ddmin(ctx, t, limit, abnormal)
    info.update(found)
    if cause is not None:
        info.update(scope="subset", rest_passes=True, culprits=list(cause.name), victims=cause.evidence["victims"])
    return StageReport(info, [] if cause is None else [cause])

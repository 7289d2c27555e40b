"""Several causes: when no single change restores the health, changes on several inputs combined.

Two starting points: (1) every input drifted from the reference (then from the comparison set) made like
it at once (the inputs "as trained"); (2) greedy: on top of the changes kept so far, every change of every
input not yet changed is tried and the one that restores the most is kept (the most specific among near
ties), until nothing adds more than 1 % or the health is restored. The better one is refined (each kept
change swapped for another change of the same input, the others fixed) and minimised (each change left
out when the rest does as well without it). Model calls are cached, so parts already tried cost nothing.
"""

from __future__ import annotations

from ..context import Context
from ..interventions import Change
from ..records import Cause, Fix, StageReport
from ..settings import TIE_TOLERANCE
from ..words import change_fix_text, change_reason_text
from .inputs import SPECIFICITY, applier, shown, strength

#: Health restored (share) at which the search stops.
DONE = 1 - TIE_TOLERANCE / 5


class _Combos:
    """Evaluates combinations of changes ``{input: Change}`` once each."""

    def __init__(self, ctx: Context, F: dict, tried: dict):
        self.ctx, self.F = ctx, F
        self.results = {frozenset({(k, c)}): e for k, per in tried.items() for c, e in per.items()}

    def run(self, changes: dict):
        key = frozenset(changes.items())
        if key not in self.results:
            ctx, s = self.ctx, dict(self.F)
            for k, ch in changes.items():
                new = ch.values(self.F[k], ctx.P[k], None if ctx.R is None else ctx.R[k], ctx.rng("intervention"))
                if new is not None:
                    s[k] = new
            label = "+".join(f"{shown(ch.kind, ctx.against)}:{k}" for k, ch in sorted(changes.items()))
            e, _ = ctx.runner.run("combination", f"several:{label}", "failing", s, "failing set with " + "; ".join(
                f"{k}: {shown(ch.kind, ctx.against)}" for k, ch in sorted(changes.items())))
            self.results[key] = e
        return self.results[key]

    def restored(self, changes: dict) -> float:
        r = self.run(changes).restores
        return -1.0 if r is None else r


def _joint_seeds(ctx: Context, tried: dict) -> list:
    """Every input drifted from the reference (or the comparison set) made like it, at once."""
    seeds = []
    for label, kinds, key in (
            (f"every input drifted from the reference made like {ctx.plabel if ctx.R is None else 'the reference'}",
             ("match_reference", "reference"), "drift_failing_vs_reference"),
            (f"every input drifted from {ctx.plabel} made like it", ("match_passing", "swap"),
             f"drift_failing_vs_{ctx.against}")):
        joint = {}
        for k, per in tried.items():
            cands = [c for c in per if c.kind in kinds]
            d = ctx.input_info.get(k, {}).get(key, {}).get("drift_score", 0.0)
            if cands and d >= 1:
                joint[k] = min(cands, key=lambda c: (-(per[c].restores or 0), c.specificity))
        if len(joint) >= 2 and joint not in [sd for _, sd in seeds]:
            seeds.append((label, joint))
    return seeds


def _greedy(combos: _Combos, tried: dict, steps: list, against: str) -> tuple[dict, float]:
    g: dict = {}
    gr = 0.0
    while len(g) < len(tried):
        trials = [(k, c, combos.run({**g, k: c})) for k in tried if k not in g for c in tried[k]]
        trials = [t for t in trials if t[2].restores is not None]
        if not trials:
            break
        top = max(e.restores for _, _, e in trials)
        tied = [t for t in trials if t[2].restores >= top - TIE_TOLERANCE]
        k, c, e = min(tied, key=lambda t: (t[1].specificity, -t[2].restores))
        if e.restores <= gr + 0.01:
            break
        g[k], gr = c, e.restores
        steps.append({"greedy": k, "intervention": shown(c.kind, against), "restores": gr, "experiment": e.id})
        if gr >= DONE:
            break
    return g, gr


def _refine_and_minimise(combos: _Combos, tried: dict, current: dict, cur: float, steps: list, against: str):
    if current and cur < DONE:  # each kept change swapped for another change of the same input
        for k in list(current):
            for c in tried[k]:
                if c != current[k] and combos.restored({**current, k: c}) > cur + 0.01:
                    current, cur = {**current, k: c}, combos.restored({**current, k: c})
                    steps.append({"refined": k, "intervention": shown(c.kind, against), "restores": cur})
    if len(current) > 1:  # leave out each change the rest does as well without
        for k in list(current):
            rest = {kk: vv for kk, vv in current.items() if kk != k}
            if rest and combos.restored(rest) >= cur - TIE_TOLERANCE:
                current, cur = rest, combos.restored(rest)
    return current, cur


def _cause(ctx: Context, combos: _Combos, current: dict, steps: list) -> Cause:
    F, final = combos.F, combos.run(current)
    parts = []
    for k, c in sorted(current.items()):
        alone = combos.results.get(frozenset({(k, c)}))
        without = combos.run({kk: vv for kk, vv in current.items() if kk != k})
        R = None if ctx.R is None else ctx.R[k]
        parts.append({"input": k, "intervention": shown(c.kind, ctx.against),
                      "restores_alone": None if alone is None else alone.restores,
                      "restores_without_it": without.restores, "passes_alone": None if alone is None else
                      alone.fails is False,
                      "reason": change_reason_text(c, F[k], ctx.P[k], R, None, ctx.plabel),
                      "fix": change_fix_text(c, F[k], ctx.P[k], R, None, ctx.plabel)})
    changes: list[Change] = list(current.values())
    return Cause("input", "+".join(sorted(current)), final.restores or 0.0,
                 {"several_causes": True, "parts": parts, "experiment": final.id, "steps": steps},
                 verified=final.fails is False, fix=Fix("; ".join(p["fix"] for p in parts), applier(ctx, changes)),
                 specificity=SPECIFICITY + max(c.specificity for c in changes),
                 strength=sum(strength(ctx, k) for k in current))


def run(ctx: Context, F: dict, tried: dict) -> StageReport:
    """Combine changes on several inputs (``tried``: ``{input: {Change: Experiment}}`` of the inputs stage)."""
    tried = {k: v for k, v in tried.items() if v}
    if len(tried) < 2:
        return StageReport({"status": "skipped", "reason": "fewer than two inputs with changes to combine"})
    combos = _Combos(ctx, F, tried)
    steps, current, cur = [], {}, 0.0
    for label, joint in _joint_seeds(ctx, tried):
        r = combos.restored(joint)
        steps.append({"seed": label, "changes": {k: shown(c.kind, ctx.against) for k, c in joint.items()},
                      "restores": r})
        if r > cur + 0.01:
            current, cur = dict(joint), r
        if cur >= DONE:
            break
    if cur < DONE:
        g, gr = _greedy(combos, tried, steps, ctx.against)
        if gr > cur + 0.01 or not current:
            current, cur = g, gr
    current, cur = _refine_and_minimise(combos, tried, current, cur, steps, ctx.against)
    info = {"status": "done", "steps": steps, "kept": {k: shown(c.kind, ctx.against) for k, c in current.items()},
            "restores": cur}
    if len(current) < 2:
        return StageReport(info)
    cause = _cause(ctx, combos, current, steps)
    info["cause"] = cause.name
    return StageReport(info, [cause])

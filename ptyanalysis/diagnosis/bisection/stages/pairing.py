"""Pairing stage: are the failing set's inputs misaligned with each other (a lag, a shuffle, a sort order)?

Every input's statistics can match the comparison set's while sample ``i`` of one input no longer belongs
to sample ``i`` of another (pulse energies that lag the frames by 7 samples; positions sorted differently
from the patterns). Such a fault is invisible to swaps and rescaling. It is visible in how the inputs'
per-sample values go together: for each pair of used inputs, the correlation of a per-sample feature (the
mean |value| of the sample) in the comparison set, in order, is the yardstick; in the failing set (the
whole set, in its order) the lag within ``+-MAX_LAG`` that maximises it is found. A pair that is
correlated in the comparison set but not at lag 0 in the failing set is misaligned:

* when some lag restores the correlation, the input is shifted by that lag (``new[i] = old[i + lag]``;
  the rows that wrap around are not scored);
* when no lag does (shuffled or sorted differently), the input is re-paired by rank (the sample with the
  j-th largest feature goes with the partner's sample with the j-th largest, as the comparison set's
  monotone relation says).

Each candidate is one model call; it is a cause only when the failing set then passes.
"""

from __future__ import annotations

import numpy as np

from ..context import Context
from ..records import Cause, Fix, StageReport
from ..sets import n_samples, per_sample_feature
from ..settings import MAX_LAG

#: Smallest |correlation| of a pair in the comparison set that makes its pairing checkable.
MIN_PAIR_CORRELATION = 0.3
#: At lag 0 the failing set keeps less than this share of the comparison set's |correlation|: misaligned.
BROKEN_SHARE = 0.5
#: More specific than an input change (the values are right, their order is not), less than a runtime factor.
SPECIFICITY = 25
#: Largest number of contiguous failing samples the pairing is checked on.
PAIRING_SAMPLES = 4096


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlations(fa: np.ndarray, fb: np.ndarray, max_lag: int) -> dict:
    """``{lag: corr(fa[i], fb[i + lag])}`` over the overlapping samples, for ``|lag| <= max_lag``."""
    n = len(fa)
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        a = fa[max(0, -lag): n - max(0, lag)]
        b = fb[max(0, lag): n - max(0, -lag)]
        out[lag] = _corr(a, b)
    return out


def shift(x: np.ndarray, lag: int) -> np.ndarray:
    """``new[i] = x[i + lag]`` (rows past either end wrap around; they are not scored)."""
    return np.roll(x, -lag, axis=0)


def repair_by_rank(x: np.ndarray, feature_x: np.ndarray, feature_partner: np.ndarray, sign: float) -> np.ndarray:
    """Re-pair ``x`` with its partner by rank: its sample with the j-th largest feature goes to the partner's
    sample with the j-th largest (smallest, for a negative relation)."""
    order_x = np.argsort(feature_x, kind="stable")
    ranks = np.argsort(np.argsort(feature_partner if sign >= 0 else -feature_partner, kind="stable"), kind="stable")
    return x[order_x[ranks]]


def misaligned_pairs(ctx: Context, F: dict) -> list:
    """Pairs of used inputs correlated in the comparison set but not at lag 0 in ``F``, with the best lag."""
    used = [k for k in ctx.used if np.asarray(F[k]).dtype.kind in "fciub"]
    feats_f = {k: per_sample_feature(F[k]) for k in used}
    feats_p = {k: per_sample_feature(ctx.P[k]) for k in used}
    max_lag = min(MAX_LAG, n_samples(F) // 4)
    found = []
    for i, a in enumerate(used):
        for b in used[i + 1:]:
            r_p = _corr(feats_p[a], feats_p[b])
            if abs(r_p) < MIN_PAIR_CORRELATION:
                continue
            lags = lagged_correlations(feats_f[a], feats_f[b], max_lag)
            r0 = lags[0]
            if abs(r0) >= BROKEN_SHARE * abs(r_p):
                continue
            best = max(lags, key=lambda lag: np.sign(r_p) * lags[lag])
            lagged = best != 0 and abs(lags[best]) >= BROKEN_SHARE * abs(r_p)
            found.append({"inputs": [a, b], "correlation_comparison": r_p, "correlation_lag0": r0,
                          "lag": best if lagged else None, "correlation_at_lag": lags[best] if lagged else None,
                          "max_lag": max_lag})
    return found


def _which(F: dict, pair: dict) -> str:
    """The input to move: the one with fewer values per sample (metadata, not the patterns)."""
    a, b = pair["inputs"]
    return a if np.asarray(F[a][:1]).size < np.asarray(F[b][:1]).size else b


def _text(k: str, partner: str, pair: dict) -> str:
    lag = pair["lag"]
    if lag is not None:
        # for k = b (new_b[i] = b[i + lag]); for k = a the same pairing needs the opposite shift
        move = lag if k == pair["inputs"][1] else -lag
        way = "later" if move > 0 else "earlier"
        return (f"shift {k!r} by {move:+d} samples against {partner!r} (new[i] = old[i {'+' if move > 0 else '-'} "
                f"{abs(move)}]): sample i of {partner!r} belongs with sample i{move:+d} of {k!r}, which sits "
                f"{abs(move)} sample(s) {way} (their per-sample correlation is {pair['correlation_lag0']:.2f} as "
                f"paired and {pair['correlation_at_lag']:.2f} shifted, {pair['correlation_comparison']:.2f} in the "
                "comparison set); fix the indexing where the two are written or read")
    return (f"re-pair {k!r} with {partner!r}: their samples no longer correspond (per-sample correlation "
            f"{pair['correlation_lag0']:.2f} where the comparison set has {pair['correlation_comparison']:.2f}, and "
            f"no lag within +-{pair['max_lag']} restores it): the two were sorted or shuffled differently; rebuild "
            "the pairing from a shared index (scan point / frame number)")


def run(ctx: Context) -> StageReport:
    """Check the inputs' pairing on the failing set (its first :data:`PAIRING_SAMPLES` samples, in order)."""
    if len(ctx.used) < 2:
        return StageReport({"status": "skipped", "reason": "fewer than two used inputs"})
    n = min(n_samples(ctx.F0), PAIRING_SAMPLES)
    F = {k: v[:n] for k, v in ctx.F0.items()}
    pairs = misaligned_pairs(ctx, F)
    info = {"status": "done", "n_samples": n, "misaligned": pairs}
    causes = []
    for pair in pairs[:2]:
        k = _which(F, pair)
        partner = next(x for x in pair["inputs"] if x != k)
        if pair["lag"] is not None:
            move = pair["lag"] if k == pair["inputs"][1] else -pair["lag"]
            new = shift(F[k], move)
            rows = np.arange(max(0, -move), n - max(0, move))
            how = f"shifted by {move:+d} samples"
        else:
            fk, fp = per_sample_feature(F[k]), per_sample_feature(F[partner])
            new = repair_by_rank(F[k], fk, fp, np.sign(pair["correlation_comparison"]))
            rows, how, move = None, "re-paired by rank", None
        e, _ = ctx.runner.run("pairing", f"pairing:{k}", "failing", {**F, k: new},
                              f"failing set with {k} {how} against {partner}", rows=rows,
                              rows_note=None if rows is None else "the rows that do not wrap around")
        pair.update(experiment=e.id, fails=e.fails, moved=k, shift=move)
        if e.fails is False:
            causes.append(Cause("pairing", k, float(e.restores or 0.0), {**pair, "partner": partner},
                                verified=True, fix=Fix(_text(k, partner, pair)), specificity=SPECIFICITY,
                                strength=abs(pair["correlation_comparison"])))
    return StageReport(info, causes)

"""Input sets as the bisection handles them: ``{input name: array}``, samples first.

A failing set may carry the hidden :data:`ROWS_KEY` (its row numbers in the whole failing set), so that a
paired reference can score each sample against its own as-trained output; it is never fed to the model.
"""

from __future__ import annotations

import numpy as np

from ..health import sample_flags
from ..inputs import normalise_input_set

#: Hidden key of a failing set's row numbers (into the whole failing set), carried through subsamples and
#: interventions so that a PAIRED reference can score each sample against its own as-trained output.
ROWS_KEY = "__rows__"


def n_samples(s: dict) -> int:
    """Number of samples of a set."""
    return int(next(iter(s.values())).shape[0])


def inputs_of(s: dict) -> dict:
    """The set's inputs only (without the hidden :data:`ROWS_KEY`)."""
    return {k: v for k, v in s.items() if k != ROWS_KEY}


def with_rows(new: dict, like: dict) -> dict:
    """``new`` carrying ``like``'s row numbers (:data:`ROWS_KEY`), when ``like`` has them."""
    if ROWS_KEY in like and ROWS_KEY not in new:
        new = {**new, ROWS_KEY: like[ROWS_KEY]}
    return new


def take(s: dict, idx) -> dict:
    """The rows ``idx`` of every array of a set (the hidden row numbers too)."""
    return {k: v[idx] for k, v in s.items()}


def normalise_set(x, names: list, label: str) -> dict:
    """A set as ``{input name: array}`` (:func:`ptyanalysis.diagnosis.inputs.normalise_input_set`)."""
    return normalise_input_set(x, names, label)


def nonfinite_rows(s: dict) -> np.ndarray:
    """Rows holding a NaN or +-Inf in some input."""
    bad = np.zeros(n_samples(s), dtype=bool)
    for v in inputs_of(s).values():
        if v.dtype.kind in "fc":
            bad |= ~np.isfinite(v.reshape(v.shape[0], -1)).all(axis=1)
    return np.flatnonzero(bad)


def subsample_idx(s: dict, k: int, rng) -> np.ndarray:
    """Seeded sorted subsample of k indices, always including rows with non-finite values."""
    n = n_samples(s)
    if n <= k:
        return np.arange(n)
    bad = nonfinite_rows(s)[: max(1, k // 10)]
    rest = np.setdiff1d(np.arange(n), bad)
    pick = rng.choice(rest, k - len(bad), replace=False)
    return np.sort(np.concatenate([bad, pick]))


def resample(x: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` rows of ``x`` drawn with ``rng`` (sorted; with replacement when ``x`` has fewer), or ``x`` itself."""
    if x.shape[0] == n:
        return x
    return x[np.sort(rng.choice(x.shape[0], n, replace=x.shape[0] < n))]


def feature_axes(x: np.ndarray):
    """Axis of per-feature statistics: 0 for vector-like inputs (at most 16 values per sample), else None."""
    per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    return 0 if per <= 16 else None  # per-feature statistics for vector-like inputs, else global


def moments(x: np.ndarray):
    """Mean and std of the finite values (per feature for vector-like inputs, :func:`feature_axes`)."""
    v = np.asarray(x, dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    ax = feature_axes(x)
    with np.errstate(all="ignore"):
        m = np.nanmean(v, axis=ax, keepdims=ax is not None)
        s = np.nanstd(v, axis=ax, keepdims=ax is not None)
    return np.nan_to_num(m), np.nan_to_num(s)




def scalar_moments(x) -> tuple[float, float]:
    """Mean and std of :func:`moments` averaged over features."""
    m, s = moments(x)
    return float(np.mean(m)), float(np.mean(s))


def per_sample_feature(x: np.ndarray) -> np.ndarray:
    """One number per sample that follows its content (the mean of its finite |values|), for pairing checks."""
    v = np.abs(np.asarray(x).reshape(len(x), -1).astype(np.float64))
    v = np.where(np.isfinite(v), v, 0.0)
    return v.mean(axis=1) if v.shape[1] else np.zeros(len(x))


def nonfinite_evidence(x: np.ndarray, index_map=None) -> dict:
    """Count, kinds and first sample indices of the non-finite values of one input."""
    if x.dtype.kind not in "fc":
        return {"count": 0}
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if not count:
        return {"count": 0}
    rows = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))
    idx = rows if index_map is None else np.asarray(index_map)[rows]
    with np.errstate(invalid="ignore"):
        return {"count": count, "nan": int(np.isnan(x).sum()), "posinf": int(np.isposinf(np.real(x)).sum()),
                "neginf": int(np.isneginf(np.real(x)).sum()), "n_samples": int(len(rows)),
                "first_samples": [int(i) for i in idx[:5]]}




def identical_fraction(x: np.ndarray) -> float:
    """Share of the samples of one input whose values equal another sample's (1.0: every sample the same)."""
    x = np.asarray(x)
    if x.ndim == 0 or len(x) < 2 or x.dtype.kind not in "fciub":
        return 0.0
    return float(np.mean(sample_flags(x)["identical"]))

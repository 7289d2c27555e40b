"""Input drift between two sets of model inputs: summary statistics and two-sample measures.

For each input, per set: mean, std, extremes, quantiles and counts of zero / non-finite values
(:func:`summary_stats`); between two sets: the Kolmogorov-Smirnov statistic and p-value, the
Wasserstein distance in units of the first set's spread, the standardised mean difference, and one
drift score (:func:`drift_measures`, :func:`input_drift`). Image-like inputs (diffraction patterns) are
also summarised per pattern (:func:`pattern_summary`) and position-like inputs as (x, y) rows
(:func:`positions_values`). Used by ``compare-splits`` (:mod:`ptyanalysis.diagnosis.splits`) and by the
bisection's input stage.
"""

from __future__ import annotations

import numpy as np

#: KS statistic threshold.
KS_THRESHOLD = 0.2
#: Normed Wasserstein threshold (units of the baseline std).
W1_THRESHOLD = 0.1
#: |Standardised mean difference| threshold.
SMD_THRESHOLD = 0.2
#: A spread at most this share of the sides' largest magnitude counts as (near-)zero.
DEGENERATE_SPREAD = 1e-6
#: Values per side used for the KS and Wasserstein measures and the quantiles.
DRIFT_SUBSAMPLE = 20_000
QUANTILE_SUBSAMPLE = 1_000_000
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
STATS = ("mean", "std", "min", "max") + tuple(f"q{int(q * 100):02d}" for q in QUANTILES) + (
    "nonzero_fraction", "nan_count", "inf_count", "n_values")
MEASURES = ("ks", "ks_pvalue", "wasserstein", "smd", "drift_score")

# ----------------------------------------------------------------------------- statistics
def _finite_flat(x) -> np.ndarray:
    v = np.asarray(x)
    if np.iscomplexobj(v):
        v = np.abs(v)
    v = v.reshape(-1)
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        v = v[np.isfinite(v)]
    return v


def _subsample(v: np.ndarray, k: int, rng) -> np.ndarray:
    if v.size <= k:
        return v
    return v[rng.choice(v.size, k, replace=False)]


def summary_stats(x, *, seed: int = 0) -> dict:
    """Summary statistics of one input array (all values, flattened).

    Parameters
    ----------
    x : array_like
        Values (complex: modulus).
    seed : int
        Seed of the subsample (at most :data:`QUANTILE_SUBSAMPLE` values) the
        quantiles are computed on.

    Returns
    -------
    dict
        Keys :data:`STATS`; mean/std/min/max/nonzero fraction over the finite values.
    """
    a = np.asarray(x)
    if np.iscomplexobj(a):
        a = np.abs(a)
    n = int(a.size)
    nan = int(np.isnan(a).sum()) if a.dtype.kind == "f" else 0
    inf = int(np.isinf(a).sum()) if a.dtype.kind == "f" else 0
    v = _finite_flat(a)
    out = {"n_values": n, "nan_count": nan, "inf_count": inf}
    if v.size:
        v64 = v.astype(np.float64, copy=False)
        out.update(mean=float(v64.mean()), std=float(v64.std()), min=float(v64.min()),
                   max=float(v64.max()), nonzero_fraction=float(np.count_nonzero(v)) / v.size)
        qs = np.quantile(_subsample(v64, QUANTILE_SUBSAMPLE, np.random.default_rng(seed)), QUANTILES)
    else:
        out.update(mean=np.nan, std=np.nan, min=np.nan, max=np.nan, nonzero_fraction=0.0)
        qs = [np.nan] * len(QUANTILES)
    for q, val in zip(QUANTILES, qs):
        out[f"q{int(q * 100):02d}"] = float(val)
    return out


def drift_measures(a, b, *, seed: int = 0, n_sub: int = DRIFT_SUBSAMPLE) -> dict:
    """Two-sample drift measures of ``b`` against the baseline ``a``.

    Parameters
    ----------
    a, b : array_like
        Values (flattened; non-finite values dropped; complex: modulus).
    seed : int
        Seed of the subsamples used by KS and Wasserstein.
    n_sub : int
        Values per side for KS and Wasserstein.

    Returns
    -------
    dict
        ``ks``, ``ks_pvalue``, ``wasserstein`` (normed), ``smd``, ``drift_score``,
        ``drifted`` (bool) and ``flags`` (``{measure: bool}``), thresholds in
        ``thresholds``; ``scale`` and ``scale_basis`` say what W1 and the SMD
        were divided by.

    Notes
    -----
    W1 is divided by the baseline's std and the SMD by the pooled std. A side
    whose spread is (near-)zero (at most :data:`DEGENERATE_SPREAD` of the largest
    ``|mean|`` or std of either side, e.g. offsets that are all zero in training)
    would make these ratios explode (W1/sd of 1e5), so a stated fallback scale is
    used instead: the pooled std when the baseline alone is degenerate, and the
    largest ``|mean|`` when both sides are constant (then W1 is the relative
    difference of the two constants). Two sides that are both all zero do not drift.
    """
    from scipy import stats as sst

    rng = np.random.default_rng(seed)
    va, vb = _finite_flat(a), _finite_flat(b)
    res = {"thresholds": {"ks": KS_THRESHOLD, "wasserstein": W1_THRESHOLD, "smd": SMD_THRESHOLD}}
    if va.size == 0 or vb.size == 0:
        res.update(ks=np.nan, ks_pvalue=np.nan, wasserstein=np.nan, smd=np.nan, drift_score=np.inf,
                   drifted=True, flags={"ks": True, "wasserstein": True, "smd": True},
                   note="one side has no finite values")
        return res
    sa = _subsample(va, n_sub, rng).astype(np.float64)
    sb = _subsample(vb, n_sub, rng).astype(np.float64)
    ks = sst.ks_2samp(sa, sb)
    ma, mb = float(va.astype(np.float64).mean()), float(vb.astype(np.float64).mean())
    sda, sdb = float(va.astype(np.float64).std()), float(vb.astype(np.float64).std())
    pooled = float(np.sqrt((sda ** 2 + sdb ** 2) / 2))
    mag = max(abs(ma), abs(mb), sda, sdb)
    tiny = DEGENERATE_SPREAD * mag
    w1 = float(sst.wasserstein_distance(sa, sb))
    if mag == 0:
        w_scale, s_scale, basis = 1.0, 1.0, "both sides are all zero"
    elif sda > tiny:
        w_scale, s_scale, basis = sda, max(pooled, tiny), "baseline std"
    elif pooled > tiny:
        w_scale, s_scale, basis = pooled, pooled, "pooled std (the baseline has (near-)zero spread)"
    else:
        w_scale = s_scale = max(abs(ma), abs(mb))
        basis = "largest |mean| (both sides are (near-)constant)"
    w = w1 / w_scale
    smd = (mb - ma) / s_scale
    flags = {"ks": bool(ks.statistic >= KS_THRESHOLD), "wasserstein": bool(w >= W1_THRESHOLD),
             "smd": bool(abs(smd) >= SMD_THRESHOLD)}
    score = max(ks.statistic / KS_THRESHOLD, w / W1_THRESHOLD, abs(smd) / SMD_THRESHOLD)
    res.update(ks=float(ks.statistic), ks_pvalue=float(ks.pvalue), wasserstein=w, smd=float(smd),
               drift_score=float(score), drifted=bool(score >= 1), flags=flags, scale=float(w_scale),
               scale_basis=basis)
    return res


def input_drift(a, b, *, seed: int = 0) -> dict:
    """Drift of one model input, ``b`` against the baseline ``a``: its values, and its pattern totals.

    A scale error in an image-like input (e.g. diffraction not multiplied by
    intensity_scale) hides in the pixel distribution when most pixels are
    zero or dim (KS 0.06, SMD -0.14 for a x 1/3.125 scale), while the
    per-pattern totals show it plainly (KS 1.0). So for an image-like input
    (:func:`is_image_like`) the totals are measured too and the input's drift
    is the larger of the two.

    Parameters
    ----------
    a, b : array_like
        The input's values on the two sides (samples first).
    seed : int

    Returns
    -------
    dict
        :func:`drift_measures` of the values (``ks``, ``wasserstein``, ``smd``
        ... of the values), with ``drift_score`` and ``drifted`` of the input
        (the larger of the values' and the pattern totals' scores), and
        ``value_drift_score`` (the values' alone), ``drift_basis``
        (``"values"`` or ``"pattern totals"``); for an image-like input also
        ``pattern_total`` (:func:`drift_measures` of the per-pattern totals) and
        ``total_ratio`` (mean pattern total of ``b`` / of ``a``; NaN when ``a``'s is 0).
    """
    d = drift_measures(a, b, seed=seed)
    d["value_drift_score"], d["drift_basis"] = d["drift_score"], "values"
    if is_image_like(a) and is_image_like(b):
        ta, tb = _pattern_totals(a), _pattern_totals(b)
        pt = drift_measures(ta, tb, seed=seed)
        ma = float(np.mean(ta)) if ta.size else 0.0
        d["pattern_total"] = pt
        d["total_ratio"] = float(np.mean(tb)) / ma if ma else float("nan")
        if np.nan_to_num(pt["drift_score"], nan=np.inf) > np.nan_to_num(d["drift_score"], nan=np.inf):
            d["drift_score"], d["drift_basis"] = pt["drift_score"], "pattern totals"
            d["drifted"] = bool(pt["drift_score"] >= 1)
    return d


def _pattern_totals(x) -> np.ndarray:
    """Sum of each pattern's finite values (complex: modulus), float64."""
    a = np.asarray(x)
    if np.iscomplexobj(a):
        a = np.abs(a)
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    return np.where(np.isfinite(a), a, 0.0).sum(axis=1)


def is_image_like(x) -> bool:
    """True for (n, H, W[, C]) inputs with H, W >= 8 (diffraction patterns).

    Parameters
    ----------
    x : array_like
        One model input, samples first.

    Returns
    -------
    bool
    """
    s = np.shape(x)
    return len(s) >= 3 and s[1] >= 8 and s[2] >= 8


def is_positions_like(x) -> bool:
    """True when each sample holds 2 to 16 values with an axis of length 2 (offsets [x, y]).

    Parameters
    ----------
    x : array_like
        One model input, samples first.

    Returns
    -------
    bool
    """
    s = np.shape(x)
    per = int(np.prod(s[1:])) if len(s) > 1 else 1
    return 2 <= per <= 16 and 2 in s[1:]


def pattern_summary(x) -> dict:
    """Per-pattern summaries of an image-like input.

    Parameters
    ----------
    x : array_like, shape (n, H, W[, C])

    Returns
    -------
    dict
        ``total`` (sum per pattern), ``total_intensity`` (sum of squares per
        pattern: counts for amplitudes), ``mean_pattern`` (H, W), ``radial_profile``
        (mean of the mean pattern over integer radii about ``(H//2, W//2)``).
    """
    a = np.asarray(x)
    if np.iscomplexobj(a):
        a = np.abs(a)
    a = a.reshape(a.shape[0], a.shape[1], a.shape[2], -1).astype(np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    total = a.sum(axis=(1, 2, 3))  # as _pattern_totals
    inten = (a * a).sum(axis=(1, 2, 3))
    mean = a.mean(axis=(0, 3))
    h, w = mean.shape
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    prof = np.bincount(r.ravel(), mean.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    return {"total": total, "total_intensity": inten, "mean_pattern": mean, "radial_profile": prof}


def positions_values(x) -> np.ndarray:
    """Scan-map values of a positions-like input as (m, 2) [x, y] (each member a row).

    Parameters
    ----------
    x : array_like
        A positions-like input: ``(B, 1, 2, C)`` (the study's offsets, [x, y]
        per member) or ``(n, k)`` with the first two values per sample taken.

    Returns
    -------
    ndarray, shape (m, 2) or (n, 1)
        ``m = B * C`` rows for the study layout.
    """
    a = np.asarray(x, dtype=np.float64)
    n = a.shape[0]
    if a.ndim == 4 and a.shape[2] == 2:  # (B, 1, 2, C) study layout
        return np.transpose(a[:, 0], (0, 2, 1)).reshape(-1, 2)
    return a.reshape(n, -1)[:, :2] if a.reshape(n, -1).shape[1] >= 2 else a.reshape(n, 1)

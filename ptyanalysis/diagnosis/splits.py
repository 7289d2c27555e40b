"""Compare a model's inputs and outputs across two data splits.

For each model input and each split: summary statistics; two-sample drift"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..diagnosis.health import (
    DEGRADED_HEALTH,
    collapsed_outputs,
    degraded,
    health_scores,
    outputs_stats,
    reference_problem,
    truth_sample_spread,
)
from ..diagnosis.inputs import (
    add_feed_argument,
    check_feed,
    check_input_shapes,
    cli_input_sets,
    normalise_input_set,
    reference_from_sidecar,
    split_ground_truth,
)
from ..errors import PtyAnalysisError

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
HEALTH_STATS = ("nonzero_fraction", "mean", "std", "nonfinite_count", "finite_fraction", "health",
                "output_health", "output_health_vs_ground_truth")


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


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SplitComparison:
    """Result of :func:`compare_splits`.

    Attributes
    ----------
    names : tuple of str
        Split names (the reference, when given, is called ``"reference"``).
    dataset : xarray.Dataset
        ``input_stats`` (input, split, stat), ``drift`` (input, pair, measure),
        ``output_health`` (output, split, hstat), per-pattern ``mean_pattern__*``
        and ``radial_profile__*``.
    ranking : tuple of str
        Inputs ordered by drift score (worst first).
    drift : dict
        ``{input: {pair: input_drift(...)}}`` (``drift_score``: the larger of the
        values' and, for image-like inputs, the pattern totals' drift).
    health : dict
        ``{split: {"health": float, "degraded": bool, "outputs": [stats...],
        "per_output": {output: float}, "degraded_outputs": [output...],
        "measured_against": str, "vs_ground_truth": dict or None}}``; a split
        is degraded when any of its outputs is. Every split is measured against
        the same yardstick (``measured_against`` says what, per row): the
        reference outputs when the reference is usable (the reference row is
        then the yardstick itself, 1.0), else the ground truth, else a usable
        split's outputs. ``vs_ground_truth`` (``{"health", "per_output",
        "degraded", "degraded_outputs"}``) is the split's separate comparison
        with its own ground truth, when there is one (the ground truth's units
        need not be the model's). The reference entry also has ``usable`` and
        ``problem`` (why its outputs cannot be trusted).
    reference_source : str
        What the output health (``health``) is measured against.
    patterns, positions : dict
        Per-pattern summaries and scan-map values per image-/positions-like input.
    flags : tuple of str
        Plain-language warnings.
    elapsed_s : float
    input_usage : tuple of InputUse
        Whether each input (and auxiliary input, e.g. a torch bundle's probe)
        changes the outputs at all (:func:`ptyanalysis.diagnosis.usage.input_usage`):
        the drift of an unused input is reported as harmless.
    """

    names: tuple
    dataset: object
    ranking: tuple
    drift: dict
    health: dict
    reference_source: str
    patterns: dict = field(repr=False, default_factory=dict)
    positions: dict = field(repr=False, default_factory=dict)
    flags: tuple = ()
    elapsed_s: float = 0.0
    input_usage: tuple = ()

    def to_xarray(self):
        """Return the :class:`xarray.Dataset`."""
        return self.dataset

    def to_dict(self) -> dict:
        """JSON-friendly summary (statistics, drift, ranking, health, flags)."""
        ds = self.dataset
        stats = {}
        for inp in ds["input"].values:
            stats[str(inp)] = {str(sp): {str(st): float(ds["input_stats"].sel(input=inp, split=sp, stat=st))
                                         for st in ds["stat"].values} for sp in ds["split"].values}
        return {
            "splits": list(self.names), "ranking": list(self.ranking), "input_stats": stats,
            "drift": self.drift, "thresholds": {"ks": KS_THRESHOLD, "wasserstein": W1_THRESHOLD,
                                                "smd": SMD_THRESHOLD, "degraded_health": DEGRADED_HEALTH},
            "output_health": self.health, "reference_source": self.reference_source,
            "flags": list(self.flags), "elapsed_s": self.elapsed_s,
            "input_usage": [u.to_dict() for u in self.input_usage],
            "pattern_totals": {k: {s: {"mean": float(np.mean(v["total"])), "std": float(np.std(v["total"]))}
                                   for s, v in d.items()} for k, d in self.patterns.items()},
        }

    def summary_table(self):
        """One row per (input, pair): drift measures and flags (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for inp in self.ranking:
            for pair, d in self.drift[inp].items():
                rows.append({"input": inp, "pair": pair, "ks": d["ks"], "wasserstein": d["wasserstein"],
                             "smd": d["smd"], "drift_score": d["drift_score"], "drifted": d["drifted"],
                             "drift_basis": d.get("drift_basis", "values"),
                             "pattern_total_ratio": d.get("total_ratio", np.nan)})
        return pd.DataFrame(rows)

    def health_table(self):
        """One row per split: output health, what it is measured against, degraded flag, and the health
        against the split's own ground truth (NaN without one) (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame([{"split": s, "health": h["health"], "degraded": h["degraded"],
                              "measured_against": h.get("measured_against"),
                              "health_vs_ground_truth": (h.get("vs_ground_truth") or {}).get("health", np.nan),
                              "nonzero_fraction": h["outputs"][0]["nonzero_fraction"],
                              "nonfinite_count": sum(o["nonfinite_count"] for o in h["outputs"]),
                              "degraded_outputs": ", ".join(h.get("degraded_outputs", [])),
                              **{f"health[{k}]": v for k, v in h.get("per_output", {}).items()}}
                             for s, h in self.health.items()])




def compare_splits(model, a, b, *, reference=None, ground_truth=None, names=("train", "test"),
                   runtime=None, seed: int = 0, max_output_samples: int | None = 2000) -> SplitComparison:
    """Compare a model's inputs and outputs across two splits.

    Parameters
    ----------
    model : LoadedModel, keras.Model or str
        The model (a spec is loaded with :func:`ptyanalysis.inference.load_model`).
    a, b : dict
        Input sets ``{input name: array}`` (or lists in the model's input order).
    reference : dict, optional
        Inputs drawn like the training inputs. If None, built from the model
        sidecar's training statistics when it has them.
    ground_truth : dict, optional
        ``{split name: list of arrays}`` (or one array) of true outputs per split
        (one array per output, or one complex array for a model whose two
        outputs are amplitude and phase; ground truth that matches neither is
        not used). Each split's health against its own ground truth is given
        separately (``vs_ground_truth``); it is the yardstick of ``health``
        only when there is no usable reference (the model's outputs on the
        reference are the yardstick otherwise, as in :func:`~ptyanalysis.diagnosis.bisection.bisect`:
        same model, same units).
    names : tuple of str
        Names of the two splits.
    runtime : RuntimeConfig, optional
    seed : int
        Seed of every subsample.
    max_output_samples : int or None
        Run the model on at most this many (seeded) samples per split
        (default 2000, which keeps two 5,000-sample N = 64 splits under 30 s
        on 2 cores; None runs every sample). The input statistics do not
        depend on it.

    Returns
    -------
    SplitComparison
    """
    import xarray as xr

    from ..inference.loading import load_model
    from ..inference.runtime import RuntimeConfig
    from ..inference.streaming import predict

    t0 = time.perf_counter()
    loaded = load_model(model)
    runtime = runtime or RuntimeConfig()
    in_names = list(loaded.input_names)
    names = tuple(str(n) for n in names)
    if len(names) != 2 or names[0] == names[1] or "reference" in names:
        raise PtyAnalysisError(f"names must be two different split names other than 'reference', got {names!r}")
    sets = {names[0]: normalise_input_set(a, in_names, f"split {names[0]!r}"),
            names[1]: normalise_input_set(b, in_names, f"split {names[1]!r}")}
    in_names = in_names or list(sets[names[0]])
    ref_source = "none: absolute checks only (all-zero, non-finite, collapsed)"
    if reference is None:
        reference = reference_from_sidecar(loaded.sidecar, sets[names[0]], seed=seed)
        if reference is not None:
            ref_source = "inputs drawn from the sidecar's training input statistics"
    else:
        ref_source = "reference input set"
    if reference is not None:
        sets["reference"] = normalise_input_set(reference, in_names, "reference")
    check_input_shapes(loaded, sets)
    splits = list(sets)
    base = "reference" if "reference" in sets else names[0]

    # inputs: statistics and drift
    stat_arr = np.full((len(in_names), len(splits), len(STATS)), np.nan)
    pairs = [(base, s) for s in splits if s != base]
    if base == "reference":
        pairs.append((names[0], names[1]))
    pair_names = [f"{p}->{q}" for p, q in pairs]
    drift_arr = np.full((len(in_names), len(pairs), len(MEASURES)), np.nan)
    drift, patterns, positions = {}, {}, {}
    data_vars = {}
    for i, inp in enumerate(in_names):
        for j, sp in enumerate(splits):
            st = summary_stats(sets[sp][inp], seed=seed)
            stat_arr[i, j] = [st[k] for k in STATS]
        drift[inp] = {}
        for k, (p, q) in enumerate(pairs):
            d = input_drift(sets[p][inp], sets[q][inp], seed=seed)  # values, and pattern totals for images
            drift[inp][pair_names[k]] = d
            drift_arr[i, k] = [d[m] for m in MEASURES]
        x0 = sets[names[0]][inp]
        if is_image_like(x0):
            patterns[inp] = {sp: pattern_summary(sets[sp][inp]) for sp in splits}
            mp = np.stack([patterns[inp][sp]["mean_pattern"] for sp in splits])
            data_vars[f"mean_pattern__{inp}"] = (("split", f"{inp}_y", f"{inp}_x"), mp)
            rl = max(len(patterns[inp][sp]["radial_profile"]) for sp in splits)
            rp = np.full((len(splits), rl), np.nan)
            for j, sp in enumerate(splits):
                prof = patterns[inp][sp]["radial_profile"]
                rp[j, :len(prof)] = prof
            data_vars[f"radial_profile__{inp}"] = (("split", f"{inp}_radius"), rp)
        elif is_positions_like(x0):
            positions[inp] = {sp: positions_values(sets[sp][inp]) for sp in splits}
    score = {inp: max(drift[inp][pn]["drift_score"] for pn in pair_names) for inp in in_names}
    ranking = tuple(sorted(in_names, key=lambda k: -np.nan_to_num(score[k], nan=np.inf)))

    # outputs: health
    rng = np.random.default_rng(seed)
    outs, ostats = {}, {}
    for sp in splits:
        s = sets[sp]
        n = next(iter(s.values())).shape[0]
        if max_output_samples and n > max_output_samples:
            idx = np.sort(rng.choice(n, max_output_samples, replace=False))
            s = {k: v[idx] for k, v in s.items()}
        outs[sp] = predict(loaded, [s[k] for k in in_names], runtime)
        ostats[sp] = outputs_stats(outs[sp])
    gt_stats, gt_note = None, ""
    if ground_truth is not None:
        gt_stats = {k: _ground_truth_stats(v, len(ostats[k])) for k, v in ground_truth.items() if k in ostats}
        unmatched = sorted(k for k, v in gt_stats.items() if v is None)
        if unmatched:
            gt_note = (f" (not for {', '.join(unmatched)}: its ground truth does not match the model's "
                       "outputs; absolute checks only there)")
    health, flags = {}, []
    if gt_note:
        flags.append(f"ground truth not used for split(s) {', '.join(repr(u) for u in unmatched)}: it does not "
                     "match the model's outputs (one array per output, or one complex array for amplitude and "
                     "phase outputs)")
    refst = ostats.get("reference")
    ref_problem = reference_problem(refst) if refst is not None else None
    # one yardstick for every split: the reference outputs when the reference is usable (as bisect does)
    gt_yardstick = gt_stats is not None and any(v is not None for v in gt_stats.values()) and \
        (refst is None or ref_problem is not None)
    if refst is not None and not ref_problem:
        ref_source = f"the reference outputs ({ref_source})"
    elif gt_yardstick and not ref_problem:
        ref_source = f"ground truth of each split{gt_note}"
    yard_split = "reference" if refst is not None else None
    if ref_problem:
        # a reference is checked before it is trusted: fall back to the ground truth, else a usable split
        usable = [sp for sp in names if reference_problem(ostats[sp]) is None]
        has_gt = gt_stats is not None and any(v is not None for v in gt_stats.values())
        fallback = None if has_gt or not usable else usable[0]
        refst = ostats[fallback] if fallback else None
        instead = ("the ground truth of each split" if has_gt else
                   f"the outputs on split {fallback!r}" if fallback else "absolute checks only")
        flags.append(f"the reference is unusable: the model's outputs on it are not healthy ({ref_problem}); "
                     f"health is measured against {instead} instead")
        if not has_gt:
            ref_source = (f"split {fallback!r} (the reference is unusable)" if fallback
                          else "none: absolute checks only (the reference is unusable)")
        else:
            ref_source = f"ground truth of each split{gt_note} (the reference is unusable)"
        yard_split = fallback
    out_names = [f"output_{k}" for k in range(len(ostats[splits[0]]))]
    if loaded.output_names and len(loaded.output_names) == len(out_names):
        out_names = list(loaded.output_names)
    for sp in splits:
        own_gt = gt_stats.get(sp) if gt_stats is not None else None
        rs = own_gt if gt_yardstick else refst
        if rs is None:
            against = "absolute checks only (no yardstick: all-zero, non-finite, collapsed)"
        elif gt_yardstick:
            against = f"the ground truth of split {sp!r}"
        elif sp == yard_split:
            against = "itself (these outputs are the yardstick)"
        elif yard_split == "reference":
            against = "the reference outputs"
        else:
            against = f"the outputs on split {yard_split!r}"
        hk = health_scores(ostats[sp], rs) if rs is not None else []
        h = float(np.mean(hk)) if hk else np.nan
        abs_bad = [o.nonzero_fraction == 0 or o.finite_fraction < 1 or o.std == 0 for o in ostats[sp]]
        bad_k = [k for k, x in enumerate(hk) if degraded(x)] if rs is not None else \
            [k for k, b in enumerate(abs_bad) if b]
        deg = bool(bad_k)  # degraded when any output is
        vs_gt = None
        if own_gt is not None:  # the split against its own ground truth: a separate, labelled comparison
            gk = health_scores(ostats[sp], own_gt)
            vs_gt = {"health": float(np.mean(gk)) if gk else np.nan,
                     "per_output": {out_names[k]: gk[k] for k in range(len(gk))},
                     "degraded": any(degraded(x) for x in gk),
                     "degraded_outputs": [out_names[k] for k, x in enumerate(gk) if degraded(x)]}
        health[sp] = {"health": h, "degraded": deg, "outputs": [o.to_dict() for o in ostats[sp]],
                      "per_output": {out_names[k]: (hk[k] if hk else None) for k in range(len(out_names))},
                      "degraded_outputs": [out_names[k] for k in bad_k], "measured_against": against,
                      "vs_ground_truth": vs_gt}
        if sp == "reference":
            health[sp]["usable"] = ref_problem is None
            health[sp]["problem"] = ref_problem
        truth = truth_sample_spread(ground_truth.get(sp)) if ground_truth else None
        health[sp]["collapsed"] = collapsed_outputs(ostats[sp], out_names, truth_spread=truth)
        for c in health[sp]["collapsed"]:
            flags.append(f"split {sp!r}: {c['text']}")
        if deg and sp != "reference":
            o = ostats[sp][bad_k[0]]
            which = (f"; degraded output(s): {', '.join(out_names[k] for k in bad_k)} (health per output "
                     + ", ".join(f"{out_names[k]} {x:.3f}" for k, x in enumerate(hk)) + ")") if len(out_names) > 1 else ""
            gt_part = (f"; against its own ground truth (a separate yardstick, in the truth's units): health "
                       f"{vs_gt['health']:.3f}" if vs_gt is not None and not gt_yardstick else "")
            flags.append(f"split {sp!r} is degraded: health {h:.3f} (nonzero fraction "
                         f"{o.nonzero_fraction:.4f}, {o.nonfinite_count} non-finite) against "
                         f"{against if rs is None or gt_yardstick or sp == yard_split else ref_source}{which}{gt_part}")
    if "reference" in health and health["reference"]["degraded"] and not ref_problem:
        flags.append("the reference outputs are themselves unhealthy: the model may be at fault")
    # which inputs the model uses at all, measured on the first split whose outputs are usable
    from ..diagnosis.usage import input_usage, unused_text

    usage = []
    live = [sp for sp in splits if reference_problem(ostats[sp]) is None] or list(splits)
    try:
        usage = input_usage(lambda xs: predict(loaded, xs, runtime), sets[live[0]], in_names,
                            model=getattr(loaded, "model", None), seed=seed)
    except Exception as exc:  # evidence, not fatal
        flags.append(f"which inputs the model uses could not be measured ({type(exc).__name__}: {exc})")
    unused = {u.name for u in usage if u.used is False}
    for inp in ranking:
        if score[inp] >= 1:
            flags.append(f"input {inp!r} drifted (score {score[inp]:.2f}; "
                         + ", ".join(_drift_words(pn, drift[inp][pn]) for pn in pair_names) + ")"
                         + (": harmless, the model does not use it" if inp in unused else ""))
    if unused_text(usage):
        flags.append(unused_text(usage))

    ostat_names = out_names
    harr = np.full((len(ostat_names), len(splits), len(HEALTH_STATS)), np.nan)
    for j, sp in enumerate(splits):
        for k, o in enumerate(ostats[sp]):
            hk = health[sp]["per_output"][ostat_names[k]]
            gt = (health[sp]["vs_ground_truth"] or {}).get("per_output", {}).get(ostat_names[k])
            harr[k, j] = [o.nonzero_fraction, o.mean, o.std, o.nonfinite_count, o.finite_fraction,
                          health[sp]["health"], np.nan if hk is None else hk, np.nan if gt is None else gt]
    data_vars.update(
        input_stats=(("input", "split", "stat"), stat_arr),
        drift=(("input", "pair", "measure"), drift_arr),
        output_health=(("output", "split", "hstat"), harr),
    )
    ds = xr.Dataset(data_vars, coords={"input": in_names, "split": splits, "stat": list(STATS),
                                       "pair": pair_names, "measure": list(MEASURES),
                                       "output": ostat_names, "hstat": list(HEALTH_STATS)},
                    attrs={"reference_source": ref_source, "ks_threshold": KS_THRESHOLD,
                           "wasserstein_threshold": W1_THRESHOLD, "smd_threshold": SMD_THRESHOLD,
                           "degraded_health": DEGRADED_HEALTH})
    return SplitComparison(names=tuple(splits), dataset=ds, ranking=ranking, drift=drift, health=health,
                           reference_source=ref_source, patterns=patterns, positions=positions,
                           flags=tuple(flags), elapsed_s=time.perf_counter() - t0, input_usage=tuple(usage))


def _drift_words(pair: str, d: dict) -> str:
    """One pair's drift in a flag: the values' measures, and the pattern totals' ratio and measures."""
    out = (f"{pair}: KS {d['ks']:.2f}, W1/sd {d['wasserstein']:.2f}, SMD {d['smd']:.2f}")
    pt = d.get("pattern_total")
    if pt is not None:
        base = pair.split("->")[0]
        out += (f"; pattern totals x{d['total_ratio']:.3g} of {base}'s (KS {pt['ks']:.2f}, SMD {pt['smd']:.2f}"
                + (", the larger drift" if d.get("drift_basis") == "pattern totals" else "") + ")")
    return out


def _ground_truth_stats(gt, n_outputs: int):
    """Health statistics of a split's ground truth, one per model output, or None when they do not match.

    One array per output is used as is; one complex array against a model with
    two outputs is read as [amplitude, phase] (the study's Baseline), i.e.
    ``|gt|`` and ``angle(gt)``. Anything else cannot be compared output by
    output (never the amplitude's statistics for a phase output).
    """
    arrays = list(gt) if isinstance(gt, (list, tuple)) else [gt]
    if len(arrays) == n_outputs:
        return outputs_stats(arrays)
    if len(arrays) == 1 and n_outputs == 2 and np.iscomplexobj(arrays[0]):
        a = np.asarray(arrays[0])
        return outputs_stats([np.abs(a), np.angle(a)])
    return None


def write_split_comparison(result: SplitComparison, out_dir) -> dict:
    """Write ``split_comparison.json`` (and ``split_comparison.nc``) atomically.

    Parameters
    ----------
    result : SplitComparison
    out_dir : str or Path

    Returns
    -------
    dict
        ``{"json": path, "netcdf": path or None}``.
    """
    from ..fileutil import write_json, write_netcdf
    from ..provenance import software_versions, utc_now

    out = Path(out_dir)
    d = result.to_dict()
    d.update(generated_at=utc_now(), versions=software_versions())
    pj = write_json(out / "split_comparison.json", d)
    pn = write_netcdf(out / "split_comparison.nc", result.dataset)
    return {"json": pj, "netcdf": pn}


def plot_split_comparison(result: SplitComparison):
    """Figure: drift score per input, output health per split, pattern totals / scan maps.

    The drift scores are drawn on a log scale with the threshold (1) marked, so
    one input's huge score does not hide another's; the output health has one
    bar per output and split; the scan maps have labelled axes and their
    legends sit outside the data.

    Parameters
    ----------
    result : SplitComparison

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting import subplots

    extra = list(result.patterns) + list(result.positions)
    ncol = 2 + len(extra)
    fig, axes = subplots(1, ncol, figsize=(4.4 * ncol, 3.8), squeeze=False)
    ax = axes[0, 0]
    sc = np.array([max(d["drift_score"] for d in result.drift[i].values()) for i in result.ranking], float)
    finite = sc[np.isfinite(sc) & (sc > 0)]
    floor = min(1e-2, float(finite.min()) / 2) if finite.size else 1e-2
    ceil = max(10.0, float(finite.max()) * 2) if finite.size else 10.0
    shown = np.clip(np.nan_to_num(sc, nan=ceil, posinf=ceil), floor, ceil)
    ax.barh(list(result.ranking)[::-1], shown[::-1],
            color=["C3" if v >= 1 else "C0" for v in sc[::-1]])
    ax.set_xscale("log")
    ax.set_xlim(floor, ceil * 1.5)
    ax.axvline(1.0, color="k", ls="--", lw=1, label="threshold (1)")
    ax.set_xlabel("drift score (log scale; 1 = threshold)")
    ax.set_title("input drift")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), fontsize=7, frameon=False)
    ax = axes[0, 1]
    sp = list(result.health)
    outs = list(next(iter(result.health.values())).get("per_output", {})) or ["all outputs"]
    width = 0.8 / len(outs)
    x = np.arange(len(sp))
    for k, o in enumerate(outs):
        hv = [(result.health[s].get("per_output", {}).get(o) if len(outs) > 1 or "per_output" in result.health[s]
               else result.health[s]["health"]) for s in sp]
        hv = [np.nan if v is None else v for v in hv]
        ax.bar(x + (k - (len(outs) - 1) / 2) * width, np.nan_to_num(hv), width,
               color=["C3" if (v != v or v < DEGRADED_HEALTH) else "C2" for v in hv],
               edgecolor="k", hatch=["", "//", "..", "xx"][k % 4], label=o)
    ax.set_xticks(x, sp)
    ax.axhline(DEGRADED_HEALTH, color="k", ls=":", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("health (red: degraded)")
    ax.set_title("output health per output")
    if len(outs) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    k = 2
    for inp in result.patterns:
        ax = axes[0, k]
        for s2, v in result.patterns[inp].items():
            ax.hist(v["total"], bins=40, histtype="step", label=s2)
        ax.set_title(f"{inp}: total per pattern")
        ax.set_xlabel("sum of the pattern")
        ax.set_ylabel("patterns")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
        k += 1
    for inp in result.positions:
        ax = axes[0, k]
        for i, (s2, v) in enumerate(result.positions[inp].items()):
            ax.scatter(v[:, 0], v[:, 1] if v.shape[1] > 1 else np.zeros(len(v)), s=3,
                       marker="os^"[i % 3], alpha=0.7, label=s2)
        ax.set_title(f"{inp}: scan map")
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, markerscale=3)
        k += 1
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- CLI
def configure_parser(parser) -> None:
    """Add the ``compare-splits`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--model", required=True, help="model spec (see ptyanalysis.inference.load_model)")
    parser.add_argument("--a", required=True, help="first split NPZ (arrays named like the model inputs)")
    parser.add_argument("--b", required=True, help="second split NPZ")
    parser.add_argument("--reference", default=None, help="NPZ of inputs drawn like the training inputs")
    parser.add_argument("--names", default="train,test", help="names of the two splits (default train,test)")
    parser.add_argument("--study-inputs", action="store_true",
                        help="the NPZs are study datasets, fed exactly as the study's comparison script fed them "
                             "(Baseline: diffraction not x intensity_scale, absolute positions); without "
                             "--reference the reference is split a fed as the model was trained")
    add_feed_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    from ..inference.runtime import add_batch_size_argument

    add_batch_size_argument(parser)




def run_cli(args) -> int:
    """Run ``ptyanalysis compare-splits``; return the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`configure_parser`).

    Returns
    -------
    int
        0 (bad input raises :class:`PtyAnalysisError`: exit status 2).
    """
    from ..fileutil import check_output_dir
    from ..inference.loading import load_model

    names = tuple(s.strip() for s in str(args.names).split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1] or "reference" in names:
        raise PtyAnalysisError(f"--names must be two different names separated by a comma (not 'reference'), "
                               f"got {args.names!r}")
    if args.seed < 0:
        raise PtyAnalysisError(f"--seed must be >= 0, got {args.seed}")
    from ..inference.runtime import runtime_from_args

    runtime = runtime_from_args(args)
    check_feed(args.feed, args.study_inputs)
    check_output_dir(args.out)
    loaded = load_model(args.model)
    sets, datasets, reference = cli_input_sets(loaded, {"a": args.a, "b": args.b}, args.reference,
                                               study_inputs=args.study_inputs, trained_like="a",
                                               feed=args.feed, seed=args.seed, say=print)
    gt = split_ground_truth(datasets, dict(zip(("a", "b"), names)), say=print) if args.study_inputs else None
    res = compare_splits(loaded, sets["a"], sets["b"], reference=reference, ground_truth=gt,
                         names=names, seed=args.seed, runtime=runtime)
    paths = write_split_comparison(res, args.out)
    print(f"wrote {paths['json']}")
    for f in res.flags:
        print(f"  - {f}")
    return 0

"""Output health and failure criteria shared by split comparison and bisection.

A model's outputs on an input set are summarised by :class:`OutputHealth`
(nonzero fraction, finite fraction, mean, std, non-finite count; complex
outputs are scored on their modulus). Two questions are asked of them:

* **Does the set fail?** -- a :class:`Criterion`, a yes/no rule:

  ``all-zero`` (default)
      every finite output value of every output is exactly 0 (non-finite
      values count as "not healthy" too, so a set whose outputs are only zeros
      and NaNs also fails).
  ``any-blank``
      some sample's output is blank: every finite value of it is 0 (e.g. a
      diffraction pattern recorded while the beam was lost gives a blank
      reconstruction).
  ``non-finite``
      at least one output value is NaN or +-Inf.
  ``collapsed[:tol]``
      the standard deviation of the finite output values of some output is
      below ``tol`` (default ``1e-6``) times ``max(1, |mean|)`` -- a constant
      output, e.g. an untrained model -- or all of its values are non-finite.
  ``zero-fraction>=F`` (``mostly-zero`` is ``zero-fraction>=0.5``: most values are not "nonzero")
      a partial failure: in some output, at least the share ``F`` (0 < F <= 1)
      of the values is not "nonzero" (exactly 0, or non-finite), e.g. a
      model that blanks 72 % of its outputs fails ``zero-fraction>=0.5``.
  ``module:function``
      a user predicate ``f(outputs: list[np.ndarray]) -> bool`` (True = fails).

* **How healthy is it?** -- :func:`health_score`, a continuous score in
  [0, 1] measured against *reference* output statistics (the model's outputs
  on inputs drawn like its training inputs, ground truth, or, failing those,
  the passing set's outputs). Per output ``k``::

      h_k = f_k * ratio(nz_k, nz_ref_k) * ratio(s_k, s_ref_k)
      ratio(a, b) = min(1, (min(a, b) / max(a, b)) / (1 - RATIO_TOL))   (1 when both are 0)

  where ``f`` is the finite fraction, ``nz`` the nonzero fraction of the finite
  values and ``s`` their standard deviation. The score is the mean of ``h_k``
  over outputs. It is 1 for outputs that look like the reference, 0 for all
  zeros, all non-finite or a constant output, and it moves continuously in
  between, so a partial repair (e.g. 10 % of the reference's nonzero pixels
  come back) scores partially. :func:`health_scores` gives ``h_k`` per output. Both too few and too many nonzero values, and
  both a collapsed and an exploded spread, lower the score. Differences
  within :data:`RATIO_TOL` (20 %) count as healthy, so that sampling noise
  between two healthy sets (a few hundred samples) does not read as damage.

``restores(h_fail, h_exp, h_ref)`` = ``(h_exp - h_fail) / (h_ref - h_fail)``
clipped to [0, 1] is the share of the lost health an experiment brings back.

Thresholds (module constants): a set is flagged *degraded* when the health of
any of its outputs is below :data:`DEGRADED_HEALTH` (0.5), even when it does
not meet the failure criterion (e.g. a "passing" split that is 99 % zeros, or
a two-output model whose amplitude output is dead while its phase is fine).

A reference is only trusted when its own outputs are usable
(:func:`reference_problem`: not all zero, not non-finite, not collapsed).

Values are counted by the package's one rule
(:func:`ptyanalysis.inference.stats.count_values`): zero, nonzero (finite and
not 0) or non-finite; NaN is never "nonzero".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import PtyAnalysisError, did_you_mean
from ..inference.stats import count_values

#: Health below this is flagged "degraded" (also for a set that passes the criterion).
DEGRADED_HEALTH = 0.5
#: Relative deviation from the reference tolerated by :func:`health_score`.
RATIO_TOL = 0.2
#: Default tolerance of the ``collapsed`` criterion: relative std of a constant output, and relative sample
#: spread of an input-independent one (:attr:`OutputHealth.sample_spread`; float32 round-off is ~1e-7).
COLLAPSE_TOL = 1e-5
#: An output component varying between samples less than this fraction of the ground truth's variation
#: (both :func:`sample_spread`) barely depends on the input: reported with the collapsed ones ("flat").
FLAT_RATIO = 0.05
#: Per-sample health: each share of bad samples (blank, non-finite, flat or identical to the others) beyond the
#: reference's lowers an output's health by its ratio to this share (5 % more bad samples: health 0), so a
#: handful of bad samples among hundreds reads as damage although the set's statistics barely move.
BAD_SAMPLE_SCALE = 0.05
#: Per-sample health where the steep part ends (below the "degraded" 0.5); beyond, it falls with the share of
#: healthy samples (graded, never a cliff).
BAD_SAMPLE_KNEE = 0.4
#: Criterion names understood by :func:`parse_criterion`.
CRITERIA = ("all-zero", "any-blank", "non-finite", "collapsed", "zero-fraction")
#: Zero fraction of the ``mostly-zero`` criterion.
MOSTLY_ZERO = 0.5


# --------------------------------------------------------------------------- stats
@dataclass(frozen=True)
class OutputHealth:
    """Health statistics of one model output array (complex: modulus).

    (The streaming per-chunk counterpart is :class:`ptyanalysis.inference.OutputStats`.)

    Attributes
    ----------
    n_values : int
        Number of values.
    n_samples : int
        Leading (sample) dimension.
    finite_fraction : float
        Share of finite values.
    nonzero_fraction : float
        Share of finite values that are not exactly 0 (0 when none is finite).
    mean, std, min, max : float
        Of the finite values (NaN when none is finite).
    nonfinite_count : int
        NaN plus +-Inf values.
    sample_spread : float
        How much the output depends on the input, per sample: ``max_i
        max|v_i - v_0|`` over the samples ``i`` (modulus for a complex output),
        divided by ``max|v|``; 0 when every sample's output is the same (a
        collapsed, input-independent output), NaN for fewer than 2 samples
        (:func:`sample_spread`).
    phase_spread : float
        For a complex output, the same for its phase: ``max_i max|angle(z_i
        conj(z_0))|`` in radians where both moduli exceed 1e-6 of the maximum;
        NaN for a real output.
    """

    n_values: int
    n_samples: int
    finite_fraction: float
    nonzero_fraction: float
    mean: float
    std: float
    min: float
    max: float
    nonfinite_count: int
    sample_spread: float = float("nan")
    phase_spread: float = float("nan")
    #: Per-sample health (:func:`sample_flags`): shares of the samples whose output is blank (every finite
    #: value 0), holds a non-finite value, is flat (one value over the whole sample) or is identical to
    #: another sample's; ``bad_sample_fraction`` is the share with any of these.
    blank_sample_fraction: float = 0.0
    nonfinite_sample_fraction: float = 0.0
    flat_sample_fraction: float = 0.0
    identical_sample_fraction: float = 0.0
    bad_sample_fraction: float = 0.0

    def components(self) -> dict:
        """The per-component sample spreads: ``{"amplitude": .., "phase": ..}`` (complex) or ``{"value": ..}``."""
        if np.isnan(self.phase_spread):
            return {"value": self.sample_spread}
        return {"amplitude": self.sample_spread, "phase": self.phase_spread}

    def collapsed_components(self, tol: float = COLLAPSE_TOL) -> list:
        """The components whose value is the same for every sample (:meth:`components` at or below ``tol``).

        ``tol`` is relative to the output's maximum for the amplitude / value
        and a fraction of pi for the phase. An output of fewer than 2 samples
        has none.
        """
        out = []
        for name, v in self.components().items():
            lim = tol * (np.pi if name == "phase" else 1.0)
            if np.isfinite(v) and v <= lim:
                out.append(name)
        return out

    def to_dict(self) -> dict:
        """Return the statistics as a plain dict."""
        return dict(self.__dict__)


def sample_spread(array, *, block: int = 256) -> tuple[float, float]:
    """How much an output varies from sample to sample (the input dependence of a model's output).

    Parameters
    ----------
    array : array_like, samples first
    block : int
        Samples per block (memory: one block at a time).

    Returns
    -------
    (float, float)
        ``(sample_spread, phase_spread)`` as in :class:`OutputHealth`. Non-finite
        values are left out.
    """
    a = np.asarray(array)
    n = a.shape[0] if a.ndim else 1
    if n < 2 or a.size == 0:
        return float("nan"), float("nan")
    cplx = np.iscomplexobj(a)
    z0 = a[0]
    mod0 = np.abs(z0).astype(np.float64)
    top, dmax, seen = 0.0, 0.0, False
    for s0 in range(0, n, block):
        m = np.abs(a[s0:s0 + block]).astype(np.float64)
        fin = np.isfinite(m) & np.isfinite(mod0)
        if fin.any():
            seen = True
            top = max(top, float(np.max(np.where(fin, m, 0.0))))
            dmax = max(dmax, float(np.max(np.where(fin, np.abs(m - mod0), 0.0))))
    if not seen:  # no finite value to compare: not "the same for every sample"
        return float("nan"), float("nan")
    if not cplx:
        return (dmax / top if top > 0 else 0.0), float("nan")
    floor = 1e-6 * top  # phases of (near-)zero values are noise
    pmax = 0.0
    for s0 in range(0, n, block):
        b = a[s0:s0 + block]
        keep = np.isfinite(b) & np.isfinite(z0) & (np.abs(b) > floor) & (np.abs(z0) > floor)
        if keep.any():
            d = np.abs(np.angle(b * np.conj(z0)))
            pmax = max(pmax, float(np.max(d[keep])))
    return (dmax / top if top > 0 else 0.0), pmax


def _real(a) -> np.ndarray:
    a = np.asarray(a)
    if np.iscomplexobj(a):
        return np.abs(a)
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype.kind == "b":
        return a.astype(np.float64)
    return a


def sample_flags(array, tol: float = COLLAPSE_TOL) -> dict:
    """Per-sample health flags of one output array (complex: modulus).

    Parameters
    ----------
    array : array_like, samples first
    tol : float
        Relative tolerance of "flat" (a sample's values spread at most ``tol * max(1, |mean|)``) and of
        "identical" (``max|v_i - v_j|`` at most ``tol`` of the output's largest |value|).

    Returns
    -------
    dict
        Boolean arrays, one value per sample: ``blank`` (every finite value is 0), ``nonfinite`` (some
        value is NaN/Inf), ``flat`` (not blank, one value over the whole sample; only for outputs of at
        least 4 values per sample), ``identical`` (the same values as another sample: exact duplicates
        found by hashing the rounded values, so a set whose outputs are all the same is all ``identical``)
        and ``bad`` (any of them).
    """
    a = _real(array)
    n = int(a.shape[0]) if a.ndim else 1
    r = a.reshape(n, -1) if a.size else np.zeros((n, 0))
    fin = np.isfinite(r)
    nonfinite = ~fin.all(axis=1)
    v = np.where(fin, r, 0.0)
    blank = ~np.any(v != 0, axis=1)
    flat = np.zeros(n, bool)
    identical = np.zeros(n, bool)
    if r.shape[1] >= 4:
        with np.errstate(invalid="ignore"):
            spread = v.max(axis=1) - v.min(axis=1)
        flat = ~blank & (spread <= tol * np.maximum(1.0, np.abs(v.mean(axis=1))))
    top = float(np.max(np.abs(v), initial=0.0))
    if n > 1 and top > 0 and r.shape[1]:
        step = max(tol * top, np.finfo(np.float64).tiny)
        keys = np.floor(v.astype(np.float64) / step).astype(np.int64)
        # one 64-bit hash per sample (wrapping arithmetic; a fixed odd multiplier per position)
        w = (np.arange(keys.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
        with np.errstate(over="ignore"):
            h = (keys.astype(np.uint64) * w).sum(axis=1, dtype=np.uint64)
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        identical = (counts[inverse.reshape(-1)] > 1) & ~blank
    bad = blank | nonfinite | flat | identical
    return {"blank": blank, "nonfinite": nonfinite, "flat": flat, "identical": identical, "bad": bad}


def output_stats(array) -> OutputHealth:
    """Summarise one output array.

    Parameters
    ----------
    array : array_like
        Model output, samples first. Complex values are scored on ``|z|``.

    Returns
    -------
    OutputHealth
    """
    a = _real(array)
    n = int(a.size)
    ns = int(a.shape[0]) if a.ndim else 1
    if n == 0:
        return OutputHealth(0, ns, 1.0, 0.0, float("nan"), float("nan"), float("nan"),
                           float("nan"), 0)
    fin = np.isfinite(a)
    nfin = int(fin.sum())
    if nfin == n:
        v = a.reshape(-1)
    else:
        v = a[fin]
    if nfin:
        v64 = v.astype(np.float64, copy=False)
        mean = float(v64.mean())
        std = float(v64.std())
        mn, mx = float(v64.min()), float(v64.max())
        nz = float(count_values(v)[0]) / nfin
    else:
        mean = std = mn = mx = float("nan")
        nz = 0.0
    spread, pspread = sample_spread(array) if np.ndim(array) else (float("nan"), float("nan"))
    fl = sample_flags(array) if np.ndim(array) else None
    per = {} if fl is None else {f"{k}_sample_fraction": float(np.mean(fl[k]))
                                 for k in ("blank", "nonfinite", "flat", "identical", "bad")}
    return OutputHealth(n, ns, nfin / n, nz, mean, std, mn, mx, n - nfin, spread, pspread, **per)


def outputs_stats(outputs) -> list[OutputHealth]:
    """:func:`output_stats` of each array of a list of model outputs.

    Parameters
    ----------
    outputs : ndarray, list, tuple or dict of ndarray
        Model outputs (one array is one output).

    Returns
    -------
    list of OutputHealth
        One per output, in order.
    """
    return [output_stats(o) for o in _as_list(outputs)]


def _as_list(outputs) -> list:
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def sample_health(outputs) -> dict:
    """Per-sample health flags of a list of model outputs (a sample is flagged when any output is).

    Parameters
    ----------
    outputs : list of ndarray
        Model outputs, samples first, all with the same number of samples.

    Returns
    -------
    dict
        Boolean arrays, one value per sample: ``all_zero`` (every finite value of every output is 0),
        ``nonfinite``, ``blank``, ``flat``, ``identical`` (some output is, :func:`sample_flags`) and
        ``bad`` (any of them); ``nonzero_fraction`` (float per sample, over all outputs).
    """
    outs = [_real(o) for o in _as_list(outputs)]
    n = outs[0].shape[0]
    nonzero = np.zeros(n)
    total = np.zeros(n)
    flags = {k: np.zeros(n, dtype=bool) for k in ("nonfinite", "blank", "flat", "identical", "bad")}
    for o in outs:
        r = o.reshape(n, -1)
        nonzero += np.count_nonzero(np.where(np.isfinite(r), r, 0), axis=1)
        total += r.shape[1]
        for k, v in sample_flags(o).items():
            flags[k] |= v
    frac = nonzero / np.maximum(total, 1)
    return {"all_zero": nonzero == 0, **flags, "nonzero_fraction": frac}


# --------------------------------------------------------------------------- score
def _ratio(a: float, b: float) -> float:
    a = 0.0 if not np.isfinite(a) else abs(float(a))
    b = 0.0 if not np.isfinite(b) else abs(float(b))
    if a == 0 and b == 0:
        return 1.0
    return min(1.0, (min(a, b) / max(a, b)) / (1.0 - RATIO_TOL))


def health_scores(stats, reference) -> list:
    """Health in [0, 1] of each output against the reference statistics of the same output.

    Parameters
    ----------
    stats : list of OutputHealth
        Statistics of the outputs to score (:func:`outputs_stats`).
    reference : list of OutputHealth
        Statistics of healthy outputs (same number of outputs).

    Returns
    -------
    list of float
        Per output ``min(finite_fraction * ratio(nonzero fraction) * ratio(std), samples)`` with
        ``ratio(a, b) = min(1, (min/max) / 0.8)`` (see the module docstring) and ``samples = clip(1 -
        excess / BAD_SAMPLE_SCALE, ...)`` (:func:`sample_part`), ``excess`` the share of bad samples
        (:func:`sample_flags`) beyond the reference's.
    """
    stats = list(stats)
    reference = list(reference)
    if len(stats) != len(reference):
        raise PtyAnalysisError(
            f"health_score: {len(stats)} outputs to score but {len(reference)} reference "
            "outputs: they must come from the same model"
        )
    hs = []
    for s, r in zip(stats, reference):
        h = s.finite_fraction * _ratio(s.nonzero_fraction, r.nonzero_fraction) * _ratio(s.std, r.std)
        h = min(h, sample_part(s, r))  # the worse of the two views: statistics, samples
        hs.append(float(np.clip(h, 0.0, 1.0)))
    return hs


def sample_part(stats: OutputHealth, reference: OutputHealth) -> float:
    """The per-sample part of an output's health: ``1 - excess / BAD_SAMPLE_SCALE`` down to
    :data:`BAD_SAMPLE_KNEE`, then proportional to the share of healthy samples.

    ``excess`` is the share of bad samples (blank, non-finite, flat or identical: :func:`sample_flags`)
    beyond the reference's and beyond two standard errors of sampling noise, so samples the healthy model
    also leaves blank are not held against a set.

    Parameters
    ----------
    stats, reference : OutputHealth

    Returns
    -------
    float
    """
    p = reference.bad_sample_fraction
    # two standard errors of the difference of two shares: sampling noise between healthy sets is no damage
    noise = 2.0 * np.sqrt(p * (1 - p) * (1 / max(stats.n_samples, 1) + 1 / max(reference.n_samples, 1)))
    excess = min(1.0, max(0.0, stats.bad_sample_fraction - p - noise))
    # steep for a handful of bad samples (down to BAD_SAMPLE_KNEE at 60 % of the scale), then graded by the
    # healthy share, so that a partial repair (some samples come back) still scores partially
    knee = (1.0 - BAD_SAMPLE_KNEE) * BAD_SAMPLE_SCALE
    if excess <= knee:
        return float(1.0 - excess / BAD_SAMPLE_SCALE)
    return float(np.clip(BAD_SAMPLE_KNEE * (1.0 - excess) / (1.0 - knee), 0.0, 1.0))


def paired_health_scores(outputs, targets) -> list:
    """Health in [0, 1] of each output against the outputs of the SAME samples fed as the model was trained.

    Used only when the reference is paired with the scored samples (same samples, same order): each
    sample's output is compared with its own healthy output, so a change that leaves the statistics
    alike but the values off (e.g. a missing intensity scale the model is only mildly sensitive to)
    is seen.

    Parameters
    ----------
    outputs : list of ndarray
        Outputs to score (one array per model output, first axis = samples).
    targets : list of ndarray
        The paired healthy outputs, row for row.

    Returns
    -------
    list of float
        Per output ``clip(1 - mean|y - t| / mean|t|, 0, 1)`` (complex outputs: the modulus of the
        complex difference and of ``t``); 0 when ``y`` holds non-finite values, NaN when ``t`` is
        all zero (no yardstick).
    """
    outputs, targets = list(outputs), list(targets)
    if len(outputs) != len(targets):
        raise PtyAnalysisError(f"paired_health_scores: {len(outputs)} outputs to score but {len(targets)} "
                               "paired outputs: they must come from the same model")
    hs = []
    for y, t in zip(outputs, targets):
        y, t = np.asarray(y), np.asarray(t)
        if y.shape != t.shape:
            raise PtyAnalysisError(f"paired_health_scores: output of shape {y.shape} against paired output "
                                   f"of shape {t.shape}: the paired reference must hold the same samples")
        scale = float(np.mean(np.abs(t.astype(np.complex128 if np.iscomplexobj(t) else np.float64))))
        if not np.isfinite(scale) or scale <= 0:
            hs.append(float("nan"))
            continue
        if not np.all(np.isfinite(y)):
            hs.append(0.0)
            continue
        d = float(np.mean(np.abs(y.astype(np.complex128 if np.iscomplexobj(y) or np.iscomplexobj(t)
                                          else np.float64) - t)))
        hs.append(float(np.clip(1.0 - d / scale, 0.0, 1.0)))
    return hs


def health_score(stats, reference) -> float:
    """Continuous health in [0, 1] of output statistics against reference statistics.

    Parameters
    ----------
    stats : list of OutputHealth
        Statistics of the outputs to score (:func:`outputs_stats`).
    reference : list of OutputHealth
        Statistics of healthy outputs (same number of outputs).

    Returns
    -------
    float
        The mean over outputs of :func:`health_scores` (NaN for no outputs).
    """
    hs = health_scores(stats, reference)
    return float(np.mean(hs)) if hs else float("nan")


def reference_problem(stats) -> str | None:
    """Why outputs cannot serve as the healthy reference, in plain words (None when they can).

    Parameters
    ----------
    stats : list of OutputHealth
        Statistics of the model's outputs on the would-be reference inputs.

    Returns
    -------
    str or None
        E.g. ``"output 0 is all zero (0 nonzero of 4096 values)"``; None
        when every output has finite, nonzero, non-constant values.
    """
    probs = []
    for k, st in enumerate(stats):
        if st.n_values == 0:
            probs.append(f"output {k} is empty")
        elif st.finite_fraction == 0:
            probs.append(f"output {k} is entirely non-finite ({st.nonfinite_count} NaN/Inf values)")
        elif st.nonzero_fraction == 0:
            probs.append(f"output {k} is all zero (0 nonzero of {st.n_values} values)")
        elif st.finite_fraction < 0.5:
            probs.append(f"output {k} is mostly non-finite ({st.nonfinite_count} of {st.n_values} values)")
        elif not (st.std > COLLAPSE_TOL * max(1.0, abs(st.mean))):
            probs.append(f"output {k} is collapsed to a constant ({st.mean:.4g})")
        elif st.collapsed_components():
            probs.append(f"output {k}'s {' and '.join(st.collapsed_components())} is the same for every sample "
                         "(it does not depend on the input)")
    return "; ".join(probs) if probs else None


def collapsed_outputs(stats, names=None, tol: float = COLLAPSE_TOL, *, truth_spread: dict | None = None,
                      flat_ratio: float = FLAT_RATIO) -> list:
    """Which output components do not depend on the input (the same for every sample), in plain words.

    Parameters
    ----------
    stats : list of OutputHealth
    names : list of str, optional
        Output names (default ``output_k``).
    tol : float
        :meth:`OutputHealth.collapsed_components`.
    truth_spread : dict, optional
        The ground truth's sample spreads of the first output, ``{"amplitude": .., "phase": ..}``
        (:func:`sample_spread` of the true object patches). With it, a component whose sample spread is
        below ``flat_ratio`` times the truth's is reported too (``kind`` ``"flat"``): it barely depends
        on the input although the objects differ.
    flat_ratio : float
        :data:`FLAT_RATIO`.

    Returns
    -------
    list of dict
        ``{"output", "component", "spread", "kind", "text"}`` per collapsed (``kind`` ``"collapsed"``) or
        flat component (``"flat"``, with ``truth_spread``), e.g. ``"object amplitude is the same for every
        sample (max |a_i - a_0| = 1.2e-07 of its maximum)"``.
    """
    out = []
    for k, st in enumerate(stats):
        name = names[k] if names and k < len(names) else f"output_{k}"
        collapsed = st.collapsed_components(tol)
        for comp, v in st.components().items():
            unit = "rad" if comp == "phase" else "of its maximum"
            sym = "phi" if comp == "phase" else "a"
            t = (truth_spread or {}).get(comp) if k == 0 else None
            if comp in collapsed:
                out.append({"output": name, "component": comp, "spread": v, "kind": "collapsed",
                            "text": (f"{name} {comp} is the same for every sample of {st.n_samples} "
                                     f"(max |{sym}_i - {sym}_0| = {v:.2g} {unit}): it does not depend on the input")})
            elif t is not None and np.isfinite(v) and np.isfinite(t) and t > 0 and v < flat_ratio * t:
                out.append({"output": name, "component": comp, "spread": v, "kind": "flat", "truth_spread": t,
                            "text": (f"{name} {comp} barely depends on the input: it varies {t / max(v, 1e-30):.0f}x "
                                     f"less from sample to sample than the ground truth (max |{sym}_i - {sym}_0| = "
                                     f"{v:.2g} against {t:.2g} {unit}, over {st.n_samples} samples)")})
    return out


def truth_sample_spread(patches) -> dict | None:
    """The ground truth's sample spreads, ``{"amplitude", "phase"}`` (:func:`sample_spread`), for :func:`collapsed_outputs`.

    Parameters
    ----------
    patches : array_like or None
        True object patches, samples first (complex).

    Returns
    -------
    dict or None
    """
    if patches is None:
        return None
    a, p = sample_spread(patches)
    out = {"amplitude": a}
    if np.isfinite(p):
        out["phase"] = p
    return out


def restores(h_fail: float, h_exp: float, h_ref: float = 1.0) -> float:
    """Share of the lost health an experiment brings back, clipped to [0, 1].

    Parameters
    ----------
    h_fail : float
        Health of the failing set.
    h_exp : float
        Health after the experiment's change.
    h_ref : float
        Health to restore to (1 = the reference).

    Returns
    -------
    float
        ``(h_exp - h_fail) / (h_ref - h_fail)``; 1 when nothing was lost and the
        experiment is as healthy.
    """
    gap = h_ref - h_fail
    if not np.isfinite(h_exp):
        return 0.0
    if gap <= 1e-12:
        return 1.0 if h_exp >= h_ref - 1e-12 else 0.0
    return float(np.clip((h_exp - h_fail) / gap, 0.0, 1.0))


# --------------------------------------------------------------------------- criteria
@dataclass(frozen=True)
class Criterion:
    """A failure rule applied to a model's outputs on one input set.

    Attributes
    ----------
    kind : str
        ``"all-zero"``, ``"non-finite"``, ``"collapsed"``, ``"zero-fraction"`` or ``"predicate"``.
    tol : float
        Relative std tolerance of ``collapsed``; the zero-fraction threshold of ``zero-fraction``.
    predicate : callable or None
        ``f(outputs) -> bool`` (True = fails) for ``kind == "predicate"``.
    label : str
        Text form (what the CLI accepts).
    """

    kind: str = "all-zero"
    tol: float = COLLAPSE_TOL
    predicate: Callable | None = field(default=None, compare=False)
    label: str = "all-zero"

    def fails(self, outputs, stats: list[OutputHealth] | None = None) -> bool:
        """Return True when ``outputs`` meet the failure rule.

        Parameters
        ----------
        outputs : list of ndarray
            Model outputs on one input set.
        stats : list of OutputHealth, optional
            Precomputed :func:`outputs_stats` of ``outputs``.
        """
        if self.kind == "predicate":
            return bool(self.predicate(list(_as_list(outputs))))
        st = stats if stats is not None else outputs_stats(outputs)
        if self.kind == "all-zero":
            return all(s.nonzero_fraction == 0 for s in st)
        if self.kind == "non-finite":
            return any(s.nonfinite_count > 0 for s in st)
        if self.kind == "any-blank":
            return any(s.blank_sample_fraction > 0 or s.finite_fraction == 0 for s in st)
        if self.kind == "collapsed":
            return any(
                s.finite_fraction == 0 or s.std <= self.tol * max(1.0, abs(s.mean))
                or bool(s.collapsed_components(self.tol)) for s in st
            )
        if self.kind == "zero-fraction":
            return any(s.n_values and 1.0 - s.finite_fraction * s.nonzero_fraction >= self.tol for s in st)
        raise PtyAnalysisError(f"unknown criterion kind {self.kind!r}")

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        d = {"kind": self.kind, "label": self.label}
        if self.kind == "collapsed":
            d["tol"] = self.tol
        if self.kind == "zero-fraction":
            d["zero_fraction"] = self.tol
        return d


def parse_criterion(spec) -> Criterion:
    """Build a :class:`Criterion` from its text form, a callable or a Criterion.

    Parameters
    ----------
    spec : str, callable or Criterion
        ``"all-zero"``, ``"non-finite"``, ``"collapsed"``, ``"collapsed:1e-4"``,
        ``"zero-fraction>=0.5"`` (fails when some output is at least 50 % zero
        or non-finite), ``"mostly-zero"`` (``zero-fraction>=0.5``),
        ``"package.module:function"`` (a predicate ``f(outputs) -> bool``, True
        = fails), a callable predicate, or a Criterion (returned as is).

    Returns
    -------
    Criterion

    Raises
    ------
    PtyAnalysisError
        For an unknown name, a bad tolerance or a predicate that cannot be imported.
    """
    if isinstance(spec, Criterion):
        return spec
    if spec is None:
        return Criterion()
    if callable(spec):
        name = getattr(spec, "__qualname__", repr(spec))
        mod = getattr(spec, "__module__", "")
        return Criterion("predicate", predicate=spec, label=f"{mod}:{name}" if mod else name)
    s = str(spec).strip()
    if s in ("all-zero", "non-finite", "any-blank"):
        return Criterion(s, label=s)
    if s == "mostly-zero":
        s = f"zero-fraction>={MOSTLY_ZERO:g}"
    if s.startswith("zero-fraction"):
        rest = s[len("zero-fraction"):].strip()
        try:
            if not rest.startswith(">="):
                raise ValueError
            frac = float(rest[2:])
        except ValueError:
            raise PtyAnalysisError(
                f"criterion {s!r}: write the zero-fraction threshold as zero-fraction>=F with "
                "0 < F <= 1, e.g. zero-fraction>=0.9 (or mostly-zero for 0.5)") from None
        if not (0 < frac <= 1):
            raise PtyAnalysisError(f"criterion {s!r}: the zero fraction F must satisfy 0 < F <= 1")
        return Criterion("zero-fraction", tol=frac, label=f"zero-fraction>={frac:g}")
    if s == "collapsed" or s.startswith("collapsed:"):
        tol = COLLAPSE_TOL
        if ":" in s:
            try:
                tol = float(s.split(":", 1)[1])
            except ValueError:
                raise PtyAnalysisError(
                    f"criterion {s!r}: the tolerance after 'collapsed:' must be a number, "
                    "e.g. collapsed:1e-4"
                ) from None
            if not (tol >= 0):
                raise PtyAnalysisError(f"criterion {s!r}: the tolerance must be >= 0")
        return Criterion("collapsed", tol=tol, label=f"collapsed:{tol:g}")
    if ":" in s:
        mod_name, fn_name = s.rsplit(":", 1)
        try:
            mod = importlib.import_module(mod_name)
            fn = getattr(mod, fn_name)
        except (ImportError, AttributeError) as exc:
            raise PtyAnalysisError(
                f"criterion {s!r}: cannot import predicate {fn_name!r} from module "
                f"{mod_name!r} ({exc}); give an importable 'module:function' whose function "
                "takes the list of output arrays and returns True when they fail"
            ) from None
        if not callable(fn):
            raise PtyAnalysisError(f"criterion {s!r}: {fn_name!r} in {mod_name!r} is not callable")
        return Criterion("predicate", predicate=fn, label=s)
    raise PtyAnalysisError(
        f"unknown criterion {s!r}: expected one of all-zero, any-blank, non-finite, collapsed[:tol], "
        "zero-fraction>=F, mostly-zero or module:function"
        + did_you_mean(s.split(":")[0].split(">=")[0], ("all-zero", "any-blank", "non-finite", "collapsed", "zero-fraction", "mostly-zero"))
    )


def degraded(h) -> bool:
    """True when a health score, or any of several per-output scores, is below :data:`DEGRADED_HEALTH`.

    Parameters
    ----------
    h : float or sequence of float
        A :func:`health_score`, or the per-output :func:`health_scores` (a set
        is degraded when any of its outputs is).

    Returns
    -------
    bool
        Also True for a non-finite score or an empty sequence.
    """
    if isinstance(h, (list, tuple, np.ndarray)):
        return len(h) == 0 or any(degraded(float(x)) for x in h)
    return not (np.isfinite(h) and h >= DEGRADED_HEALTH)

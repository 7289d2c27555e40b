"""Interventions: changes to one input of the failing set, each tried as an experiment.

Generic changes (:data:`INTERVENTIONS`: swap in the passing values, centre, match the passing set's or the
reference's mean and std, replace non-finite values, cast the dtype, swap an axis of length 2) and the
conventions people get wrong (:mod:`.conventions`: fft-shifted or transposed patterns, intensities for
amplitudes, a conjugated probe, hot pixels, wrapped integers, an 8-bit export, position units, offset
sign). A :class:`Change` names one of them on one input; :meth:`Change.values` builds the new values from
the failing values alone (plus the passing / reference values it matches), so the same change can be
re-applied to the whole failing set to confirm it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import PtyAnalysisError, did_you_mean
from . import conventions
from .sets import moments, resample

#: Generic interventions tried on an input (in this order).
INTERVENTIONS = ("swap", "centre", "match_passing", "match_reference", "reference", "replace_nonfinite",
                 "cast_dtype")
#: Among changes within TIE_TOLERANCE of the best, the most specific wins: the lower rank. Convention fixes
#: rank ``CONVENTION_RANK + their own specificity``, after a non-finite or dtype fix and before any rescaling.
SPECIFICITY = {"replace_nonfinite": 0, "cast_dtype": 1, "match_passing": 10,
               "match_reference": 11, "centre": 12, "reference": 13, "swap": 14}
CONVENTION_RANK = 2


@dataclass(frozen=True)
class Change:
    """One intervention on one input.

    Attributes
    ----------
    input : str
    kind : str
        A generic intervention (:data:`INTERVENTIONS`) or a convention fix's name.
    convention : ConventionFix or None
        The convention fix (:mod:`.conventions`), for convention kinds.
    """

    input: str
    kind: str
    convention: object = None

    @property
    def specificity(self) -> int:
        """Rank among changes (:data:`SPECIFICITY`), lower = more specific."""
        if self.convention is not None:
            return CONVENTION_RANK + int(self.convention.specificity)
        return SPECIFICITY.get(self.kind, 99)

    def values(self, x: np.ndarray, passing: np.ndarray, reference: np.ndarray | None, rng):
        """The changed values of the input (None when the change does not apply)."""
        if self.convention is not None:
            return conventions.apply(self.convention, x)
        return intervene(self.kind, x, passing, reference, rng)


def cast_like(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return y.astype(x.dtype) if x.dtype.kind in "fc" else y.astype(np.float32)


def _match(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    mx, sx = moments(x)
    mt, st = moments(target)
    z = np.where(sx > 0, (x.astype(np.float64) - mx) / np.where(sx > 0, sx, 1), 0.0)
    return cast_like(z * st + mt, x)


def intervene(kind: str, x: np.ndarray, passing: np.ndarray, reference: np.ndarray | None, rng):
    """Apply one input intervention to the failing set's values of one input.

    Parameters
    ----------
    kind : str
        One of :data:`INTERVENTIONS`: ``swap`` (passing values, resampled),
        ``centre`` (subtract the mean: per feature for inputs of at most 16 values
        per sample, else one scalar), ``match_passing`` (match the passing set's
        mean and std, same rule), ``match_reference`` (match the reference's
        mean and std: a scale or offset error against the training inputs),
        ``reference`` (reference values, resampled), ``replace_nonfinite``
        (NaN -> 0, +-Inf -> the passing set's finite max/min), ``cast_dtype``
        (cast to the passing set's dtype). An x/y swap, a transpose, fft-shifted patterns and the other
        conventions are :mod:`.conventions` fixes.
    x, passing : ndarray
        Failing and passing values of the input.
    reference : ndarray or None
    rng : numpy.random.Generator

    Returns
    -------
    ndarray or None
        The new values (same sample count as ``x``; dtype kept except for
        ``swap``/``reference``/``cast_dtype``), or None when the intervention
        does not apply (no reference, nothing non-finite, same dtype).
    """
    n = x.shape[0]
    if kind == "swap":
        return resample(passing, n, rng)
    if kind == "reference":
        return None if reference is None else resample(reference, n, rng)
    if kind == "cast_dtype":
        return None if x.dtype == passing.dtype else x.astype(passing.dtype)
    if kind == "replace_nonfinite":
        if x.dtype.kind not in "fc" or np.isfinite(x).all():
            return None
        pf = passing[np.isfinite(passing)] if passing.dtype.kind in "fc" else passing.ravel()
        hi = float(pf.max()) if pf.size else 0.0
        lo = float(pf.min()) if pf.size else 0.0
        if x.dtype.kind == "f":  # a replacement the dtype can hold (float16: at most 65504)
            big = float(np.finfo(x.dtype).max)
            hi, lo = min(hi, big), max(lo, -big)
        return cast_like(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=hi, neginf=lo), x)
    if kind == "centre":
        mx, sx = moments(x)
        if np.all(np.abs(mx) <= 1e-12 * np.maximum(sx, 1)):
            return None
        return cast_like(x.astype(np.float64) - mx, x)
    if kind == "match_passing":
        return _match(x, passing)
    if kind == "match_reference":
        return None if reference is None else _match(x, reference)
    raise PtyAnalysisError(f"unknown intervention {kind!r}: expected one of {', '.join(INTERVENTIONS)}"
                           + did_you_mean(kind, INTERVENTIONS))




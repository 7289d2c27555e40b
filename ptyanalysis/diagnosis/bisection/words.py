"""Evidence in words: what is wrong with an input and what to do, with the numbers.

Rendering only: the functions here read arrays and evidence and return sentences; they decide nothing.
"""

from __future__ import annotations

import numpy as np

from . import conventions
from .sets import identical_fraction, moments, nonfinite_evidence, scalar_moments


def fmt(v) -> str:
    """A number, or the first few of an array, to 4 significant digits."""
    v = np.asarray(v, dtype=np.float64).ravel()
    if v.size == 1:
        return f"{float(v[0]):.4g}"
    return "[" + ", ".join(f"{float(a):.4g}" for a in v[:4]) + (", ..." if v.size > 4 else "") + "]"


def poss(label: str) -> str:
    """The possessive of a label (``the passing set's``, ``the reference/training inputs'``)."""
    return label + ("'" if label.endswith("s") else "'s")


def _rescale_text(k, f, t, what) -> str:
    mf, sf = scalar_moments(f)
    mt, st = scalar_moments(t)
    if st <= 1e-12 * max(1.0, abs(mt)):
        val = "zeros" if mt == 0 else f"the constant {mt:.4g}"
        return (f"feed {k!r} as {val}, like {what} (all {mt:g}; the failing set's values have mean "
                f"{fmt(moments(f)[0])} and spread {sf:.4g})")
    if sf <= 0:
        return (f"feed {k!r} with values spread like {what} (std {st:.4g}); the failing set holds the constant "
                f"{mf:.4g}")
    factor = st / sf
    if abs(np.log(factor)) < np.log(1.25) and abs(mt - mf) > 0.1 * max(st, sf):
        return (f"shift {k!r} by {mt - mf:+.4g} (its mean is {mf:.4g} where {what} have {mt:.4g}, with a similar "
                "spread: check a subtracted background, an offset or the origin)")
    if abs(mt - factor * mf) <= 0.1 * max(st, abs(mt)):
        return (f"multiply {k!r} by {factor:.3g} (the failing set's values are {1 / factor:.3g} x {what}: check "
                "its units or normalisation, e.g. a scale factor missing or applied twice)")
    return (f"rescale {k!r} to the mean {mt:.4g} and std {st:.4g} of {what}: (x - {mf:.4g}) x {factor:.4g} + "
            f"{mt:.4g} (its spread is {1 / factor:.4g} x theirs and its mean {mf:.4g}: check its units, offset "
            "or normalisation)")


def _channel_note(f: np.ndarray, p: np.ndarray, plabel: str = "the passing set") -> str:
    """Channels (last axis, at most 8) that are all zero in ``f`` but not in ``p``, in words ("" if none)."""
    if f.ndim < 3 or f.shape[-1] < 2 or f.shape[-1] > 8 or f.shape[1:] != p.shape[1:]:
        return ""
    fz = [c for c in range(f.shape[-1]) if not np.any(np.nan_to_num(f[..., c]))]
    dead = [c for c in fz if np.any(np.nan_to_num(p[..., c]))]
    if not dead:
        return ""
    return (f"its channel(s) {dead} (last axis) are all zero where {poss(plabel)} are not: a channel is missing "
            "from the export")


def input_fix_text(k, kind, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """The fix for one input (failing values ``f``, passing ``p``, reference ``r`` or None), with numbers."""
    mf, sf = scalar_moments(f)
    if kind == "reference":
        rv = r
        if rv is not None and rv.dtype.kind in "fiu" and np.all(rv == rv.reshape(-1)[0]):
            c = float(rv.reshape(-1)[0])
            val = "zeros" if c == 0 else f"the constant {c:.4g}"
            return (f"feed {k!r} as {val}, as in training (the reference/training inputs are all {c:g}; the "
                    f"failing set's values have mean {fmt(moments(f)[0])} and spread {sf:.4g})")
        if rv is not None:
            mr, sr = scalar_moments(rv)
            return (f"feed {k!r} with values distributed like the reference/training inputs (mean {mr:.4g}, std "
                    f"{sr:.4g}; the failing set has mean {mf:.4g}, std {sf:.4g})")
        return f"feed {k!r} with values distributed like the reference/training inputs"
    if kind == "match_passing":
        return _rescale_text(k, f, p, f"{poss(plabel)} values")
    if kind == "match_reference":
        return _rescale_text(k, f, r, "the reference/training inputs")
    if kind == "centre":
        return f"centre {k!r}: subtract its mean ({fmt(moments(f)[0])}) before feeding the model"
    if kind == "replace_nonfinite":
        nf = nonfinite or nonfinite_evidence(f)
        kinds = ", ".join(f"{nf[t]} {w}" for t, w in (("nan", "NaN"), ("posinf", "+Inf"), ("neginf", "-Inf"))
                          if nf.get(t))
        hint = ""
        if f.dtype == np.float16 and (nf.get("posinf") or nf.get("neginf")):
            hint = "; float16 overflows above 65504: export it as float32"
        return (f"replace or drop the {nf.get('count', 0)} non-finite values of {k!r} ({kinds}) in "
                f"{nf.get('n_samples', 0)} sample(s), first at sample(s) {nf.get('first_samples', [])}{hint}")
    if kind == "cast_dtype":
        hint = " (float16 keeps about 3 significant digits and overflows above 65504)" if f.dtype == np.float16 else ""
        return f"cast {k!r} to {p.dtype} before feeding the model: the failing set holds it as {f.dtype}{hint}"
    mp, sp = scalar_moments(p)
    ch = _channel_note(f, p, plabel)
    if ch:
        return f"feed {k!r} with every channel filled, like {poss(plabel)}: {ch}"
    return (f"feed {k!r} with values like {poss(plabel)} (the failing set has mean {mf:.4g}, std {sf:.4g}; "
            f"{plabel} mean {mp:.4g}, std {sp:.4g})")


def input_reason_text(k, kind, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """What is wrong with one input, in a few words, for the verdict's summary."""
    if kind == "replace_nonfinite":
        nf = nonfinite or nonfinite_evidence(f)
        return (f"it holds {nf.get('count', 0)} non-finite value(s) in {nf.get('n_samples', 0)} sample(s)"
                + (" (a float16 export overflowed)" if f.dtype == np.float16 and (nf.get("posinf") or nf.get("neginf"))
                   else ""))
    if kind == "cast_dtype":
        return f"it arrives as {f.dtype} where {plabel} holds {p.dtype}"
    ch = _channel_note(f, p, plabel)
    if ch:
        return ch
    target = p
    if kind in ("match_reference", "reference") and r is not None:
        target, what = r, "the reference/training inputs'"
    else:
        what = f"{poss(plabel)}"
    mf, sf = scalar_moments(f)
    mt, st = scalar_moments(target)
    if kind == "centre":
        return f"its mean is {fmt(moments(f)[0])} where {what} is {fmt(moments(target)[0])}"
    if st > 0 and sf > 0 and abs(np.log(sf / st)) > np.log(1.5):
        return f"its spread is {sf / st:.4g} x {what} (mean {mf:.4g} vs {mt:.4g})"
    return f"its values (mean {mf:.4g}, std {sf:.4g}) differ from {what} (mean {mt:.4g}, std {st:.4g})"




def identical_text(k, f) -> str:
    """An input whose samples are all the same, in words ("" when they are not)."""
    frac = identical_fraction(f)
    if frac < 0.5:
        return ""
    return (f"{100 * frac:.0f} % of the {len(f)} samples of {k!r} hold identical values (the same frame for "
            "different samples): the reader returns one sample for many indices")


def change_fix_text(change, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """The fix sentence of one :class:`~.interventions.Change` (a convention fix's own words, with numbers)."""
    if change.convention is not None:
        return conventions.fix_text(change.convention)
    same = identical_text(change.input, f)
    if same and change.kind in ("swap", "reference"):
        return f"read {change.input!r} one sample per index: {same}"
    return input_fix_text(change.input, change.kind, f, p, r, nonfinite, plabel)


def change_reason_text(change, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """What is wrong with the input, as the change that restores it shows."""
    if change.convention is not None:
        return conventions.reason_text(change.convention)
    same = identical_text(change.input, f)
    if same:
        return same
    return input_reason_text(change.input, change.kind, f, p, r, nonfinite, plabel)

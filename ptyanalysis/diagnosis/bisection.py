"""Find why a model fails on one input set and passes on another.

:func:`bisect` runs controlled experiments, each one model call on one input
set (an *evaluation*), and reports which change restores how much of the
reference health (:mod:`ptyanalysis.diagnosis.health`):

1. **Reproduce** on seeded subsamples of at most ``max_samples`` samples (the
   whole sets when smaller, or when a subsample does not show the reported
   outcome): the failing set must fail and the passing set pass under the
   criterion; otherwise the verdict is ``none`` (or ``model`` when every set,
   the reference included, fails and no runtime factor rescues it). When the
   passing set fails too but the reference passes, the reference takes the
   passing set's place (the summary says so). The reference is checked before
   it is trusted: when its outputs are all zero, non-finite or collapsed it is
   reported unusable and health is measured against the passing set.
2. **Runtime** (on a seeded subsample of at most 128 failing samples): batch
   size 1, an odd batch size (partial last batch), the whole subsample as one
   batch, ``jit_compile``, eager execution, input dtype float64/float32/float16,
   other devices. A factor *flips* the outcome when the failing subsample
   passes under it (and the passing set still passes under it). **Batch
   composition**: the same samples at the same batch size, shuffled and
   interleaved with passing samples; when their outputs change with their
   neighbours and the outcome depends on batching, the finding is ``runtime``
   ``batch_composition`` ("outputs depend on which samples share a batch"),
   never a batch size.
3. **Inputs** (on at most 512 failing samples): each input swapped between the
   sets (both directions; values are resampled, seeded, to the other set's
   size), and interventions on the failing set's input (:func:`intervene`):
   centre it, match the passing set's or the reference's mean and std, replace
   it by the reference distribution, replace non-finite values, cast it to the
   passing set's dtype. Among interventions that restore as much (within
   :data:`TIE_TOLERANCE`) the most specific wins (:data:`SPECIFICITY`), and
   the fix sentence comes from it, with the evidence's numbers (scale factor,
   dtype, count and first indices of non-finite values). With several inputs,
   Zeller's ``ddmin`` finds the minimal combination of inputs whose failing
   values still make the model fail when every other input takes passing
   values. **Several causes**: when no single change restores
   :data:`COMBINE_BELOW` of the health, the best change per input is added
   greedily on top of the others, then the combination is minimised; the
   verdict names every input (``a+b``) with a fix for each and what each part
   and the whole restore.
4. **Samples**: samples holding NaN/Inf (or values far outside the passing
   set's) are located by scanning the inputs, with no model call, and tested
   as a subset first. Otherwise the failing set is split into 4 random chunks;
   if every chunk fails the failure is *global*; otherwise ``ddmin`` over
   samples finds a 1-minimal failing subset (repeated until the rest passes);
   a subset cause needs the rest of the set to pass and to be small (at most
   5 % of it). Its *culprits* (abnormal inputs, or needed for the failure) are
   told apart from its *victims* (samples that fail only because they share a
   batch with a culprit); the fix acts on the culprits.
5. **Layers**: a multi-output probe over the functional graph finds the first
   layer whose activations are all zero (or non-finite) on the failing set but
   not on the passing set, with per-layer zero fractions for both
   (skipped, with the reason, for subclassed models).

Each candidate cause gets ``restores`` in [0, 1] (share of the health lost on
the failing set that its change brings back). Health compares output
statistics (``health.basis = "statistics"``), unless a *paired reference* is
given (``paired_reference``: the failing set's own samples, in the same order,
fed as the model was trained; ``bisect --study-inputs`` without
``--reference`` builds it): then each experiment on failing samples is also
scored sample by sample against their as-trained outputs and an output's
health is the lower of the two (``health.basis = "paired"``), so a change
restores only what it restores per sample (e.g. outputs 10 % off because an
intensity scale is missing, which the statistics' 20 % tolerance hides). The
several-causes stage runs when no single change restores
:data:`RESTORE_BAR` (95 %). The summary ends by saying which health was used. Causes are ranked by
``restores``; among causes within 0.05 of the best the more specific wins:
a small sample subset, then a runtime factor (no data changed), then an input.
A batch-composition finding comes first (after culprit samples that explain
it), since every other experiment changes the batches too. Experiments that
raise (a batch the model cannot take, a dtype it refuses) are recorded with
their error as evidence and never abort the run. Health is kept per model
output, and a set is degraded when any of its outputs is.
For sets larger than ``max_samples`` the experiments run on seeded subsamples
(always including samples with non-finite values) and the winning fix is
confirmed on the whole failing set.

CLI: ``ptyanalysis bisect --model PATH --failing F.npz --passing P.npz
[--reference R.npz] [--criterion all-zero|mostly-zero|zero-fraction>=F|...] [--study-inputs] [--max-samples 2000]
[--seed 0] --out DIR`` writes ``DIR/bisection.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..diagnosis.health import (
    COLLAPSE_TOL,
    DEGRADED_HEALTH,
    collapsed_outputs,
    degraded,
    health_scores,
    outputs_stats,
    paired_health_scores,
    parse_criterion,
    reference_problem,
    sample_health,
    sample_spread,
    truth_sample_spread,
)
from ..diagnosis.health import restores as _restores
from ..errors import PtyAnalysisError, did_you_mean

#: Causes within this much of the best ``restores`` are ranked by specificity.
TIE_TOLERANCE = 0.05
#: Largest sample subset (fraction of the working set) reported as a "samples" cause.
MAX_SUBSET_FRACTION = 0.05
#: Samples used for the runtime experiments and the layer probe.
RUNTIME_SAMPLES = 128
PROBE_SAMPLES = 128
#: Failing samples the input experiments run on.
SCREEN_SAMPLES = 512
#: Interventions tried on an input (in this order).
INTERVENTIONS = ("swap", "centre", "match_passing", "match_reference", "reference", "replace_nonfinite",
                 "cast_dtype", "swap_axes")
#: Among interventions within TIE_TOLERANCE of the best, the first of these wins (the most specific change).
SPECIFICITY = ("replace_nonfinite", "cast_dtype", "swap_axes", "match_passing", "match_reference", "centre",
               "reference", "swap")
#: Share of the reference health a fix must restore to count as the whole fix (a change that restores less leaves part of the failure unexplained).
RESTORE_BAR = 0.95
#: When no single change restores this share of the health, changes on several inputs are combined.
COMBINE_BELOW = RESTORE_BAR
#: Hidden key of a failing set's row numbers (into the whole failing set), carried through subsamples and
#: interventions so that a PAIRED reference can score each sample against its own as-trained output. It
#: is never fed to the model, and is present only when a paired reference is given.
ROWS_KEY = "__rows__"
#: A sample whose largest |value| exceeds this many times the passing set's (99.9th percentile) is abnormal.
OUTLIER_FACTOR = 10.0
#: Batch size of the batch-composition experiments (also one of the batch sizes tried).
COMPOSITION_BATCH = 7
#: Change of a sample's outputs, relative to the output's largest |value|, that counts as "changed".
COMPOSITION_TOL = 1e-3
#: Share of the samples that must change with their neighbours for outputs to "depend on batch composition".
COMPOSITION_MIN_CHANGED = 0.01
_SPECIFICITY = {"samples": 0, "runtime": 1, "input": 2, "model": 3}


class _BudgetSpent(Exception):
    pass


def _error_text(exc) -> str:
    """An exception as one line of evidence: its type and message (TensorFlow's: the last line, the error)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [i for i, ln in enumerate(lines) if re.match(r"^\w+(Error|Exception|Exhausted): ", ln)]
    if errs:
        i = errs[-1]
        msg = lines[i]
        if "Exception encountered when calling" in msg and i + 1 < len(lines):  # Keras puts the cause next
            msg += " " + lines[i + 1]
        return msg[:300]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Experiment:
    """One experiment: a model call on one (modified) input set.

    Attributes
    ----------
    id : int
    stage : str
        ``reproduce``, ``runtime``, ``input``, ``combination``, ``samples``, ``layers``, ``confirm``.
    name : str
        Short name, e.g. ``"swap:input_positions"``, ``"batch_size=1"``.
    target : str
        Set the change is applied to (``failing``, ``passing``, ``reference``).
    change : str
        Plain-language description.
    n_samples : int
        Samples fed to the model.
    fails : bool or None
        Criterion outcome (None: not run or error); like ``health`` and the
        fractions, of the scored rows: all of them unless ``details["scored"]``
        says which (e.g. only the failing samples of a mixed batch).
    health : float
        Health against the reference statistics.
    restores : float or None
        Share of the failing set's lost health brought back (failing-set experiments).
    nonzero_fraction, finite_fraction : float
        Of the first output.
    error : str or None
    elapsed_s : float
    details : dict
    """

    id: int
    stage: str
    name: str
    target: str
    change: str
    n_samples: int
    fails: bool | None
    health: float
    restores: float | None
    nonzero_fraction: float
    finite_fraction: float
    error: str | None = None
    elapsed_s: float = 0.0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Cause:
    """A candidate cause and how much of the reference health its change restores.

    Attributes
    ----------
    kind : str
        ``input``, ``samples``, ``runtime`` or ``model``.
    name : object
        Input name (``"a+b"`` for a combination), runtime factor, sample indices, model name.
    restores : float
    evidence : dict
    """

    kind: str
    name: object
    restores: float
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {"kind": self.kind, "name": self.name, "restores": self.restores, "evidence": self.evidence}


@dataclass(frozen=True)
class BisectionResult:
    """Everything :func:`bisect` found.

    Attributes
    ----------
    reproduced : bool
    criterion : dict
    health : dict
        ``failing``, ``passing``, ``reference`` health, the reference source,
        ``*_degraded`` flags and per-set output statistics.
    causes : tuple of Cause
        Ranked, best first.
    verdict : dict
        ``kind``, ``name``, ``summary``.
    fix : str
    evaluations : int
    elapsed_s : float
    experiments : tuple of Experiment
    layers : dict
        Layer probe: ``status``, ``first_dead``, ``first_nonfinite``, ``rows``.
    inputs : dict
        Per-input comparison of the failing and passing sets (drift, dtype, non-finite).
    settings : dict
    input_usage : tuple of InputUse
        Whether each input (and each auxiliary input the model holds, e.g. a
        probe) changes the outputs at all (:func:`ptyanalysis.diagnosis.usage.input_usage`);
        an unused input is never swapped or intervened on.
    """

    reproduced: bool
    criterion: dict
    health: dict
    causes: tuple
    verdict: dict
    fix: str
    evaluations: int
    elapsed_s: float
    experiments: tuple
    layers: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    input_usage: tuple = ()

    def to_dict(self) -> dict:
        """JSON-friendly dict (what ``bisection.json`` holds)."""
        return {
            "reproduced": self.reproduced, "criterion": self.criterion, "health": self.health,
            "causes": [c.to_dict() for c in self.causes], "verdict": self.verdict, "fix": self.fix,
            "evaluations": self.evaluations, "elapsed_s": self.elapsed_s,
            "experiments": [e.to_dict() for e in self.experiments], "layers": self.layers,
            "inputs": self.inputs, "settings": self.settings,
            "input_usage": [u.to_dict() for u in self.input_usage],
        }

    def experiments_table(self):
        """Every experiment as a row (pandas DataFrame)."""
        import pandas as pd

        cols = ["id", "stage", "name", "target", "n_samples", "fails", "health", "restores",
                "nonzero_fraction", "finite_fraction", "error", "elapsed_s", "change"]
        return pd.DataFrame([{c: getattr(e, c) for c in cols} for e in self.experiments], columns=cols)

    def layer_table(self):
        """Per-layer zero / non-finite fractions on the failing and passing sets (DataFrame)."""
        import pandas as pd

        return pd.DataFrame(self.layers.get("rows", []))

    def causes_table(self):
        """Ranked causes (DataFrame)."""
        import pandas as pd

        return pd.DataFrame([{"kind": c.kind, "name": str(c.name), "restores": c.restores}
                             for c in self.causes])

    def to_xarray(self):
        """Experiments (dim ``experiment``) and layer statistics (dims ``layer``, ``set``)."""
        import xarray as xr

        ex = self.experiments
        ds = xr.Dataset(
            {"health": ("experiment", [e.health for e in ex]),
             "restores": ("experiment", [np.nan if e.restores is None else e.restores for e in ex]),
             "fails": ("experiment", [np.nan if e.fails is None else float(e.fails) for e in ex]),
             "n_samples": ("experiment", [e.n_samples for e in ex]),
             "stage": ("experiment", [e.stage for e in ex])},
            coords={"experiment": [e.name for e in ex]},
            attrs={"verdict_kind": self.verdict.get("kind"), "verdict_name": str(self.verdict.get("name")),
                   "fix": self.fix, "reproduced": int(self.reproduced)})
        rows = self.layers.get("rows", [])
        if rows:
            ds["layer_zero_fraction"] = (("layer", "set"), [[r["zero_fraction_failing"], r["zero_fraction_passing"]]
                                                            for r in rows])
            ds["layer_nonfinite_fraction"] = (("layer", "set"), [[r["nonfinite_fraction_failing"],
                                                                  r["nonfinite_fraction_passing"]] for r in rows])
            ds = ds.assign_coords(layer=[r["layer"] for r in rows], set=["failing", "passing"])
        return ds


# ----------------------------------------------------------------------------- input sets
def _n(s: dict) -> int:
    return int(next(iter(s.values())).shape[0])


def _inputs_of(s: dict) -> dict:
    """The set's inputs only (without the hidden :data:`ROWS_KEY`)."""
    return {k: v for k, v in s.items() if k != ROWS_KEY}


def _with_rows(new: dict, like: dict) -> dict:
    """``new`` carrying ``like``'s row numbers (:data:`ROWS_KEY`), when ``like`` has them."""
    if ROWS_KEY in like and ROWS_KEY not in new:
        new = {**new, ROWS_KEY: like[ROWS_KEY]}
    return new


def _take(s: dict, idx) -> dict:
    return {k: v[idx] for k, v in s.items()}


def _normalise_set(x, names: list, label: str) -> dict:
    from ..diagnosis.inputs import normalise_input_set

    return normalise_input_set(x, names, label)


def _nonfinite_rows(s: dict) -> np.ndarray:
    bad = np.zeros(_n(s), dtype=bool)
    for v in _inputs_of(s).values():
        if v.dtype.kind in "fc":
            bad |= ~np.isfinite(v.reshape(v.shape[0], -1)).all(axis=1)
    return np.flatnonzero(bad)


def _subsample_idx(s: dict, k: int, rng) -> np.ndarray:
    """Seeded sorted subsample of k indices, always including rows with non-finite values."""
    n = _n(s)
    if n <= k:
        return np.arange(n)
    bad = _nonfinite_rows(s)[: max(1, k // 10)]
    rest = np.setdiff1d(np.arange(n), bad)
    pick = rng.choice(rest, k - len(bad), replace=False)
    return np.sort(np.concatenate([bad, pick]))


def _resample(x: np.ndarray, n: int, rng) -> np.ndarray:
    if x.shape[0] == n:
        return x
    return x[np.sort(rng.choice(x.shape[0], n, replace=x.shape[0] < n))]


def _feature_axes(x: np.ndarray):
    per = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    return 0 if per <= 16 else None  # per-feature statistics for vector-like inputs, else global


def _moments(x: np.ndarray):
    v = np.asarray(x, dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    ax = _feature_axes(x)
    with np.errstate(all="ignore"):
        m = np.nanmean(v, axis=ax, keepdims=ax is not None)
        s = np.nanstd(v, axis=ax, keepdims=ax is not None)
    return np.nan_to_num(m), np.nan_to_num(s)


def _cast_like(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return y.astype(x.dtype) if x.dtype.kind in "fc" else y.astype(np.float32)


def _match(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    mx, sx = _moments(x)
    mt, st = _moments(target)
    z = np.where(sx > 0, (x.astype(np.float64) - mx) / np.where(sx > 0, sx, 1), 0.0)
    return _cast_like(z * st + mt, x)


def _swap_axes(x: np.ndarray, passing: np.ndarray):
    """``x`` with its (last) axis of length 2 reversed when that matches the passing set's per-feature means."""
    axes = [a for a in range(1, x.ndim) if x.shape[a] == 2]
    if not axes or _feature_axes(x) is None or x.shape[1:] != passing.shape[1:]:
        return None
    flipped = np.flip(x, axis=axes[-1])
    mp, sp = _moments(passing)
    scale = max(float(np.mean(sp)), 1e-12)
    d0 = float(np.mean(np.abs(_moments(x)[0] - mp))) / scale
    d1 = float(np.mean(np.abs(_moments(flipped)[0] - mp))) / scale
    if not (d0 > 0.5 and d1 < 0.5 * d0):
        return None
    return np.ascontiguousarray(flipped)


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
        (cast to the passing set's dtype), ``swap_axes`` (reverse an axis of
        length 2, e.g. [y, x] positions fed as [x, y]; only when that brings the
        per-feature means much closer to the passing set's).
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
        return _resample(passing, n, rng)
    if kind == "reference":
        return None if reference is None else _resample(reference, n, rng)
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
        return _cast_like(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=hi, neginf=lo), x)
    if kind == "centre":
        mx, sx = _moments(x)
        if np.all(np.abs(mx) <= 1e-12 * np.maximum(sx, 1)):
            return None
        return _cast_like(x.astype(np.float64) - mx, x)
    if kind == "match_passing":
        return _match(x, passing)
    if kind == "swap_axes":
        return _swap_axes(x, passing)
    if kind == "match_reference":
        return None if reference is None else _match(x, reference)
    raise PtyAnalysisError(f"unknown intervention {kind!r}: expected one of {', '.join(INTERVENTIONS)}"
                           + did_you_mean(kind, INTERVENTIONS))


# ----------------------------------------------------------------------------- evidence in words
def _fmt(v) -> str:
    v = np.asarray(v, dtype=np.float64).ravel()
    if v.size == 1:
        return f"{float(v[0]):.4g}"
    return "[" + ", ".join(f"{float(a):.4g}" for a in v[:4]) + (", ..." if v.size > 4 else "") + "]"


def _scalar_moments(x):
    m, s = _moments(x)
    return float(np.mean(m)), float(np.mean(s))


def _nonfinite_evidence(x: np.ndarray, index_map=None) -> dict:
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


def _poss(label: str) -> str:
    return label + ("'" if label.endswith("s") else "'s")


def _rescale_text(k, f, t, what) -> str:
    mf, sf = _scalar_moments(f)
    mt, st = _scalar_moments(t)
    if st <= 1e-12 * max(1.0, abs(mt)):
        val = "zeros" if mt == 0 else f"the constant {mt:.4g}"
        return (f"feed {k!r} as {val}, like {what} (all {mt:g}; the failing set's values have mean "
                f"{_fmt(_moments(f)[0])} and spread {sf:.4g})")
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
    return (f"its channel(s) {dead} (last axis) are all zero where {_poss(plabel)} are not: a channel is missing "
            "from the export")


def _fix_text_input(k, kind, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """The fix for one input (failing values ``f``, passing ``p``, reference ``r`` or None), with numbers."""
    mf, sf = _scalar_moments(f)
    if kind == "reference":
        rv = r
        if rv is not None and rv.dtype.kind in "fiu" and np.all(rv == rv.reshape(-1)[0]):
            c = float(rv.reshape(-1)[0])
            val = "zeros" if c == 0 else f"the constant {c:.4g}"
            return (f"feed {k!r} as {val}, as in training (the reference/training inputs are all {c:g}; the "
                    f"failing set's values have mean {_fmt(_moments(f)[0])} and spread {sf:.4g})")
        if rv is not None:
            mr, sr = _scalar_moments(rv)
            return (f"feed {k!r} with values distributed like the reference/training inputs (mean {mr:.4g}, std "
                    f"{sr:.4g}; the failing set has mean {mf:.4g}, std {sf:.4g})")
        return f"feed {k!r} with values distributed like the reference/training inputs"
    if kind == "match_passing":
        return _rescale_text(k, f, p, f"{_poss(plabel)} values")
    if kind == "match_reference":
        return _rescale_text(k, f, r, "the reference/training inputs")
    if kind == "centre":
        return f"centre {k!r}: subtract its mean ({_fmt(_moments(f)[0])}) before feeding the model"
    if kind == "replace_nonfinite":
        nf = nonfinite or _nonfinite_evidence(f)
        kinds = ", ".join(f"{nf[t]} {w}" for t, w in (("nan", "NaN"), ("posinf", "+Inf"), ("neginf", "-Inf"))
                          if nf.get(t))
        hint = ""
        if f.dtype == np.float16 and (nf.get("posinf") or nf.get("neginf")):
            hint = "; float16 overflows above 65504: export it as float32"
        return (f"replace or drop the {nf.get('count', 0)} non-finite values of {k!r} ({kinds}) in "
                f"{nf.get('n_samples', 0)} sample(s), first at sample(s) {nf.get('first_samples', [])}{hint}")
    if kind == "swap_axes":
        return (f"swap the two axes of {k!r} (e.g. [x, y] for [y, x]): its per-axis means {_fmt(_moments(f)[0])} "
                f"are {_poss(plabel)} {_fmt(_moments(p)[0])} in reverse order")
    if kind == "cast_dtype":
        hint = " (float16 keeps about 3 significant digits and overflows above 65504)" if f.dtype == np.float16 else ""
        return f"cast {k!r} to {p.dtype} before feeding the model: the failing set holds it as {f.dtype}{hint}"
    mp, sp = _scalar_moments(p)
    ch = _channel_note(f, p, plabel)
    if ch:
        return f"feed {k!r} with every channel filled, like {_poss(plabel)}: {ch}"
    return (f"feed {k!r} with values like {_poss(plabel)} (the failing set has mean {mf:.4g}, std {sf:.4g}; "
            f"{plabel} mean {mp:.4g}, std {sp:.4g})")


def _reason_text(k, kind, f, p, r, nonfinite=None, plabel="the passing set") -> str:
    """What is wrong with one input, in a few words, for the verdict's summary."""
    if kind == "replace_nonfinite":
        nf = nonfinite or _nonfinite_evidence(f)
        return (f"it holds {nf.get('count', 0)} non-finite value(s) in {nf.get('n_samples', 0)} sample(s)"
                + (" (a float16 export overflowed)" if f.dtype == np.float16 and (nf.get("posinf") or nf.get("neginf"))
                   else ""))
    if kind == "cast_dtype":
        return f"it arrives as {f.dtype} where {plabel} holds {p.dtype}"
    ch = _channel_note(f, p, plabel)
    if ch:
        return ch
    if kind == "swap_axes":
        return f"its two axes are swapped (per-axis means {_fmt(_moments(f)[0])} vs {_fmt(_moments(p)[0])})"
    target = p
    if kind in ("match_reference", "reference") and r is not None:
        target, what = r, "the reference/training inputs'"
    else:
        what = f"{_poss(plabel)}"
    mf, sf = _scalar_moments(f)
    mt, st = _scalar_moments(target)
    if kind == "centre":
        return f"its mean is {_fmt(_moments(f)[0])} where {what} is {_fmt(_moments(target)[0])}"
    if st > 0 and sf > 0 and abs(np.log(sf / st)) > np.log(1.5):
        return f"its spread is {sf / st:.4g} x {what} (mean {mf:.4g} vs {mt:.4g})"
    return f"its values (mean {mf:.4g}, std {sf:.4g}) differ from {what} (mean {mt:.4g}, std {st:.4g})"


# ----------------------------------------------------------------------------- ddmin
def ddmin(items, test, max_tests: int | None = None):
    """Zeller's ddmin: a 1-minimal subset of ``items`` for which ``test`` still fails.

    Parameters
    ----------
    items : sequence
        The failing configuration (``test(items)`` is assumed to fail).
    test : callable
        ``test(subset) -> True`` (fails), ``False`` (passes) or ``None`` (unresolved).
    max_tests : int, optional
        Stop after this many calls of ``test`` (the result is then not minimal).

    Returns
    -------
    subset : list
    minimal : bool
        False when the budget ran out first.
    """
    c = list(items)
    n = 2
    calls = 0

    def t(sub):
        nonlocal calls
        if max_tests is not None and calls >= max_tests:
            raise _BudgetSpent
        calls += 1
        return test(sub)

    try:
        while len(c) >= 2:
            n = min(n, len(c))
            chunks = [list(ch) for ch in np.array_split(np.arange(len(c)), n)]
            subsets = [[c[i] for i in ch] for ch in chunks]
            reduced = False
            for sub in subsets:
                if t(sub) is True:
                    c, n, reduced = sub, 2, True
                    break
            if not reduced and n > 2:
                for i in range(n):
                    comp = [x for j, sub in enumerate(subsets) if j != i for x in sub]
                    if t(comp) is True:
                        c, n, reduced = comp, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= len(c):
                    break
                n = min(len(c), 2 * n)
    except _BudgetSpent:
        return c, False
    return c, True


# ----------------------------------------------------------------------------- runner
#: Input sets whose outputs a bisection keeps for reuse (identical sets are run once).
MEMO_SETS = 2
#: Largest outputs (bytes) kept for reuse.
MEMO_BYTES = 256 * 2**20


def _content_key(xs) -> tuple:
    """A key that is equal only for input sets with the same arrays (shape, dtype, values)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for x in xs:
        x = np.ascontiguousarray(x)
        h.update(f"{x.shape}{x.dtype.str}".encode())
        h.update(x.view(np.uint8).reshape(-1) if x.size else b"")
    return (h.hexdigest(),)


def _independent_layers_text(layers: dict, most: int = 4) -> str:
    """Where the layer probe found activations that no longer depend on the input, in words.

    All such layers are named (up to ``most``), not only the first: the first may sit on a side branch
    (e.g. an attention gate behind a dead ReLU) while the output's own path loses the input later.
    """
    names = list(layers.get("input_independent") or [])
    if not names:
        return ""
    shown = ", ".join(repr(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
    if len(names) == 1:
        return f"activations stop depending on the input at layer {names[0]!r}"
    return (f"activations do not depend on the input at {len(names)} layers: {shown} (the first may be a side "
            "branch; follow the one on the flat output's path)")


def _collapse_criterion_for(found: list) -> str:
    """The ``collapsed[:tol]`` criterion under which the components found (:func:`collapsed_outputs`) fail."""
    from ..diagnosis.health import COLLAPSE_TOL

    flat = [c for c in found if c.get("kind") == "flat"]
    if not flat:
        return "collapsed"
    tol = max(c["spread"] / (np.pi if c["component"] == "phase" else 1.0) for c in flat) * 2
    return f"collapsed:{float(f'{max(tol, COLLAPSE_TOL):.1g}'):g}"


class _Runner:
    """Runs and records experiments for one bisection (no state outside it)."""

    def __init__(self, loaded, names, criterion, runtime, max_evaluations):
        self.loaded, self.names, self.criterion = loaded, names, criterion
        self.runtime, self.max_evaluations = runtime, max_evaluations
        self.evaluations = 0
        self.unused: set = set()
        self.experiments: list[Experiment] = []
        self.ref_stats = None
        self.h_fail = None
        #: (position of each whole-failing-set row in ``targets`` or -1, paired as-trained outputs) or None
        self.paired = None
        #: outputs of the last input sets run, by content (an identical set, e.g. a reference built exactly
        #: like the passing set, is not run twice); at most MEMO_SETS entries of at most MEMO_BYTES each
        self._memo: dict = {}
        self.reused = False

    def paired_scores(self, outs, rows):
        """Per-output paired health of ``outs`` (rows ``rows`` of the whole failing set), or None when no
        paired reference is in use or none of the rows has a paired output."""
        if self.paired is None or rows is None:
            return None
        pos, targets = self.paired
        p = pos[np.asarray(rows)]
        ok = p >= 0
        if not ok.any():
            return None
        ys = list(outs) if ok.all() else [o[ok] for o in outs]
        return paired_health_scores(ys, [t[p[ok]] for t in targets])

    def outputs(self, s: dict, runtime=None):
        from ..inference.streaming import predict

        xs = [np.asarray(s[k]) for k in self.names]
        key = _content_key(xs) if runtime is None else None
        self.reused = key in self._memo
        if self.reused:
            return self._memo[key]
        if self.evaluations >= self.max_evaluations:
            raise _BudgetSpent
        self.evaluations += 1
        outs = predict(self.loaded, xs, runtime or self.runtime)
        if key is not None and sum(np.asarray(o).nbytes for o in outs) <= MEMO_BYTES:
            self._memo[key] = outs
            while len(self._memo) > MEMO_SETS:
                self._memo.pop(next(iter(self._memo)))
        return outs

    def score(self, outs, st=None, rows=None):
        """(fails, health, per-output health, stats, criterion error) of a list of outputs; with a paired
        reference and ``rows`` (their rows of the whole failing set) each output's health is the lower of
        the statistics' and the paired one (:func:`paired_health_scores`)."""
        st = st if st is not None else outputs_stats(outs)
        err = None
        try:
            fails = bool(self.criterion.fails(outs, st))
        except Exception as exc:
            fails, err = None, f"{type(exc).__name__}: {exc}"
        if self.ref_stats is not None:
            hpo = health_scores(st, self.ref_stats)
            ph = self.paired_scores(outs, rows)
            if ph is not None:
                hpo = [min(a, b) if np.isfinite(b) else a for a, b in zip(hpo, ph)]
            h = float(np.mean(hpo)) if hpo else np.nan
        else:
            hpo, h = [], np.nan
        return fails, h, hpo, st, err

    def skipped(self, stage, name, target, s, change, why, details=None):
        e = Experiment(len(self.experiments), stage, name, target, change, _n(s), None, np.nan, None,
                       np.nan, np.nan, why, 0.0, dict(details or {}))
        self.experiments.append(e)
        return e

    def run(self, stage, name, target, s, change="", runtime=None, details=None, keep=False, rows=None,
            rows_note=None):
        """Run one experiment and record it; ``rows`` (an index into the outputs' first axis) scores only
        those rows (e.g. the failing samples of a batch mixed with passing neighbours), said in
        ``details["scored"]`` (``rows_note``) and ``details["scored_rows"]``. With ``keep`` the full outputs
        are returned with the statistics of the scored rows."""
        t0 = time.perf_counter()
        details = dict(details or {})
        try:
            outs = self.outputs(s, runtime)
        except _BudgetSpent:
            return self.skipped(stage, name, target, s, change, "skipped: evaluation budget spent", details), None
        except Exception as exc:  # an experiment that cannot run is recorded as evidence, never fatal
            e = Experiment(len(self.experiments), stage, name, target, change, _n(s), None, np.nan, None,
                           np.nan, np.nan, _error_text(exc),
                           time.perf_counter() - t0, details)
            self.experiments.append(e)
            return e, None
        if self.reused:
            details["reused"] = "outputs of an identical input set run before (the model is not run twice)"
        if rows is not None:
            scored = [o[rows] for o in outs]
            details["scored_rows"] = int(len(scored[0])) if scored else 0
            details["scored"] = rows_note or "a subset of the rows"
        else:
            scored = outs
        srows = None
        if target == "failing" and ROWS_KEY in s:
            srows = s[ROWS_KEY] if rows is None else s[ROWS_KEY][rows]
        fails, h, hpo, st, err = self.score(scored, rows=srows)
        if srows is not None and self.paired is not None:
            details["health_basis"] = "paired"
        if err:
            details["criterion_error"] = err
        if hpo:
            details["health_per_output"] = hpo
        r = None
        if target == "failing" and self.h_fail is not None and stage not in ("reproduce",):
            r = _restores(self.h_fail, h)
        e = Experiment(len(self.experiments), stage, name, target, change, _n(s), fails, h, r,
                       st[0].nonzero_fraction, st[0].finite_fraction, None, time.perf_counter() - t0, details)
        self.experiments.append(e)
        return e, ((outs, st) if keep else st)


# ----------------------------------------------------------------------------- layer probe
def layer_probe(model):
    """Build a multi-output model exposing every layer's output: a Keras sub-model, or forward hooks in PyTorch.

    Parameters
    ----------
    model : keras.Model or torch.nn.Module
        A functional or Sequential Keras model (under any backend), or a plain
        PyTorch module (its leaf submodules' outputs are taken by forward hooks).

    Returns
    -------
    probe : keras.Model, torch.nn.Module or None
    layer_names : list of str
        One per probe output (``"layer[i]"`` for the i-th output of a multi-output layer).
    reason : str or None
        Why there is no probe (subclassed model, no graph), else None.
    """
    from ..inference.model import _is_torch_module

    if _is_torch_module(model):
        return _torch_layer_probe(model)
    from ..inference.backends import import_keras

    keras = import_keras()

    try:
        inputs = model.inputs
    except Exception:
        inputs = None
    if not inputs:
        return None, [], "the model has no functional graph (subclassed or unbuilt): layer probe skipped"
    outs, names = [], []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        # outputs of the layer's nodes in *this* graph (a nested model's own
        # ``.output`` lives in its inner graph), keeping those connected to the inputs
        cands = []
        for node in getattr(layer, "_inbound_nodes", []) or []:
            cands.extend(keras.tree.flatten(getattr(node, "output_tensors", []) or []))
        if not cands:
            try:
                cands = keras.tree.flatten(layer.output)
            except Exception:
                continue
        flat = []
        for t in cands:
            try:
                keras.Model(inputs, t)
            except Exception:
                continue
            flat.append(t)
        for j, t in enumerate(flat):
            outs.append(t)
            names.append(layer.name if len(flat) == 1 else f"{layer.name}[{j}]")
    if not outs:
        return None, [], "no layer outputs to probe"
    try:
        probe = keras.Model(inputs, outs, name=f"{model.name}_probe")
    except Exception as exc:
        return None, [], f"could not build a probe model ({type(exc).__name__}: {exc})"
    return probe, names, None


def _torch_layer_probe(module):
    """A module returning the outputs of ``module``'s leaf submodules, in call order (forward hooks)."""
    import torch

    leaves = [(name, m) for name, m in module.named_modules() if name and not list(m.children())]
    if not leaves:
        return None, [], "the PyTorch module has no submodules to probe"

    class _Probe(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *xs):
            seen, hooks = [], []
            for name, m in leaves:
                def hook(mod, args, out, name=name):
                    for j, t in enumerate(out if isinstance(out, (tuple, list)) else [out]):
                        if isinstance(t, torch.Tensor):
                            seen.append((name if j == 0 else f"{name}[{j}]", t))
                hooks.append(m.register_forward_hook(hook))
            try:
                self.inner(*xs)
            finally:
                for h in hooks:
                    h.remove()
            self.names = [n for n, _ in seen]
            return tuple(t for _, t in seen)

    probe = _Probe(module)
    # the names follow the first call's order; a module whose leaves do not all run is probed as it runs
    names = [name for name, _ in leaves]
    return probe, names, None


def _layer_stats(arrays):
    """Per layer: (zero fraction, non-finite fraction, all-zero sample rate, sample spread).

    The sample spread (:func:`ptyanalysis.diagnosis.health.sample_spread`, of the
    modulus) is 0 where a layer's activations are the same for every sample:
    from there on the model no longer depends on its input.
    """
    rows = []
    for a in arrays:
        a = np.asarray(a)
        if np.iscomplexobj(a):
            a = np.abs(a)
        if a.dtype.kind not in "fiub":
            rows.append((np.nan, np.nan, np.nan, np.nan))
            continue
        fin = np.isfinite(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        nfin = int(fin.sum())
        zero = float(np.count_nonzero((a == 0) & fin)) / max(nfin, 1) if nfin else 1.0
        r = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
        allzero = float(np.mean(~np.any((r != 0) & np.isfinite(r), axis=1))) if r.size else np.nan
        spread = sample_spread(a)[0] if a.ndim and a.shape[0] > 1 else np.nan
        rows.append((zero, 1.0 - nfin / max(a.size, 1), allzero, spread))
    return rows


def _run_layers(runner: _Runner, F: dict, P: dict | None, rng, against: str = "passing") -> dict:
    """Per-layer activations on the failing set and ``P`` (the passing set, or the reference standing in for
    it: ``against``; the rows' ``*_passing`` columns then hold the reference's, and ``compared_with`` says so)."""
    kmodel = getattr(runner.loaded, "model", None)
    probe, lnames, reason = layer_probe(kmodel) if kmodel is not None else (None, [], "no Keras model")
    if probe is None:
        return {"status": "skipped", "reason": reason, "rows": [], "first_dead": None, "first_nonfinite": None}
    from ..inference.loading import load_model
    from ..inference.streaming import known_batch_size_limit, predict

    # the probe is the model's own graph: name it after the model, and start at the batch size the model's
    # earlier runs found to give one row per sample (a model that merges a big call merges in the probe too)
    lp = replace(load_model(probe), source=f"layer probe of {runner.loaded.source}")
    limit = known_batch_size_limit(runner.loaded, [F[k] for k in runner.names])
    rt = runner.runtime if limit is None or limit >= runner.runtime.batch_size else \
        replace(runner.runtime, batch_size=limit)
    res = {}
    for label, s in (("failing", F), (against, P)):
        if s is None:
            continue
        sub = _take(s, _subsample_idx(s, PROBE_SAMPLES, rng))
        t0 = time.perf_counter()
        if runner.evaluations >= runner.max_evaluations:
            runner.experiments.append(Experiment(len(runner.experiments), "layers", f"probe:{label}", label,
                                                 "per-layer activations", _n(sub), None, np.nan, None,
                                                 np.nan, np.nan, "skipped: evaluation budget spent"))
            return {"status": "skipped", "reason": "evaluation budget spent", "rows": [],
                    "first_dead": None, "first_nonfinite": None}
        runner.evaluations += 1
        try:
            acts = predict(lp, [sub[k] for k in runner.names], rt)
        except Exception as exc:
            runner.experiments.append(Experiment(len(runner.experiments), "layers", f"probe:{label}", label,
                                                 "per-layer activations", _n(sub), None, np.nan, None,
                                                 np.nan, np.nan, _error_text(exc),
                                                 time.perf_counter() - t0))
            return {"status": "error", "reason": str(exc)[:300], "rows": [], "first_dead": None,
                    "first_nonfinite": None}
        res[label] = _layer_stats(acts)
        last = res[label][-1] if res[label] else (np.nan,) * 4
        runner.experiments.append(Experiment(len(runner.experiments), "layers", f"probe:{label}", label,
                                             "per-layer activations (multi-output probe)", _n(sub), None,
                                             np.nan, None, 1 - last[0], 1 - last[1], None,
                                             time.perf_counter() - t0, {"layers": len(lnames)}))
    lnames = getattr(probe, "names", lnames)  # a PyTorch probe names its outputs in the order they ran
    rows, first_dead, first_nf, first_flat, flat_layers = [], None, None, None, []
    for i, ln in enumerate(lnames):
        f = res["failing"][i]
        p = res.get(against, [(np.nan,) * 4] * len(lnames))[i]
        rows.append({"layer": ln, "zero_fraction_failing": f[0], "zero_fraction_passing": p[0],
                     "nonfinite_fraction_failing": f[1], "nonfinite_fraction_passing": p[1],
                     "all_zero_sample_rate_failing": f[2], "all_zero_sample_rate_passing": p[2],
                     "sample_spread_failing": f[3], "sample_spread_passing": p[3]})
        if np.isfinite(f[3]) and f[3] <= COLLAPSE_TOL and f[0] < 1.0:
            first_flat = first_flat or ln
            if ln not in flat_layers:
                flat_layers.append(ln)
        dead_f = f[0] == 1.0
        dead_p = p[0] == 1.0 if np.isfinite(p[0]) else False
        if first_dead is None and dead_f and not dead_p:
            first_dead = ln
        if first_nf is None and f[1] > 0 and not (np.isfinite(p[1]) and p[1] > 0):
            first_nf = ln
    return {"status": "done", "reason": None, "rows": rows, "first_dead": first_dead,
            "first_nonfinite": first_nf, "first_input_independent": first_flat,
            "input_independent": flat_layers, "n_samples": PROBE_SAMPLES, "source": lp.source,
            "batch_size": int(rt.batch_size), "compared_with": against}


# ----------------------------------------------------------------------------- stages
def _runtime_factors(runtime, F: dict, n: int, loaded=None) -> list:
    """(factor, value, RuntimeConfig) alternatives to the default runtime, as the model's backend offers them.

    Batch size and dtype on every backend; eager vs compiled where the backend
    compiles (TensorFlow's ``tf.function``, JAX's ``jax.jit``; PyTorch runs
    eagerly); XLA on/off only under TensorFlow (JAX always compiles with XLA);
    every other device the backend can run the model on.
    """
    from ..inference.backends import executor_for

    ex = executor_for(loaded) if loaded is not None else None
    backend = ex.name if ex is not None else "tensorflow"
    out = []
    for bs in sorted({1, COMPOSITION_BATCH, n}):
        if bs != runtime.batch_size and bs <= max(n, 1):
            out.append(("batch_size", bs, replace(runtime, batch_size=bs)))
    if backend != "torch":
        if not runtime.run_eagerly:
            if backend == "tensorflow":
                out.append(("jit_compile", not runtime.jit_compile,
                            replace(runtime, jit_compile=not runtime.jit_compile)))
            out.append(("run_eagerly", True, replace(runtime, run_eagerly=True, jit_compile=False)))
        else:
            out.append(("run_eagerly", False, replace(runtime, run_eagerly=False)))
    dts = {str(v.dtype) for v in F.values() if v.dtype.kind == "f"}
    for dt in ("float64", "float32", "float16"):
        if dt != runtime.dtype and not (dts == {dt} and runtime.dtype is None):
            out.append(("dtype", dt, replace(runtime, dtype=dt)))
    devs = []
    available = ex.devices() if ex is not None else []
    if len(available) > 1:
        gpus = [d for d in available if d.startswith("gpu")]
        current = ex.resolve_device(runtime.device, loaded) or (gpus[0] if gpus else available[0])
        for d in available:
            if d == current:
                continue
            try:
                ex.resolve_device(d, loaded)  # a Keras-torch model runs only where its weights are
            except PtyAnalysisError:
                continue
            devs.append(d)
    for d in devs:
        out.append(("device", d, replace(runtime, device=d)))
    return out


def _per_sample_change(a: list, b: list) -> np.ndarray:
    """Per sample, the largest change between two output lists, relative to each output's largest |value|."""
    n = a[0].shape[0]
    d = np.zeros(n)
    for x, y in zip(a, b):
        x = np.nan_to_num(np.abs(x) if np.iscomplexobj(x) else np.asarray(x, dtype=np.float64), nan=0.0,
                          posinf=0.0, neginf=0.0).reshape(n, -1)
        y = np.nan_to_num(np.abs(y) if np.iscomplexobj(y) else np.asarray(y, dtype=np.float64), nan=0.0,
                          posinf=0.0, neginf=0.0).reshape(n, -1)
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
        if scale > 0:
            d = np.maximum(d, np.max(np.abs(x - y), axis=1) / scale)
    return d


def _stage_composition(runner, Fr, Pr, rng, kept: dict, against: str = "passing") -> dict:
    """Do a sample's outputs depend on which samples share its batch? Same samples, same batch size, other neighbours."""
    n = _n(Fr)
    if n < 4:
        return {"status": "skipped", "reason": "fewer than 4 failing samples"}
    b = COMPOSITION_BATCH if n >= 2 * COMPOSITION_BATCH else max(1, n // 2)
    rt = replace(runner.runtime, batch_size=b)
    base = kept.get(b)
    if base is None:
        e, r = runner.run("runtime", f"composition:in_order[b={b}]", "failing", Fr,
                          f"the failing subsample in its order, batch size {b}", runtime=rt, keep=True)
        base = (e, None if r is None else r[0])
    e_base, y_base = base
    if y_base is None:
        return {"status": "error", "reason": e_base.error}
    perm = rng.permutation(n)
    e_sh, r_sh = runner.run("runtime", "composition:shuffled", "failing", _take(Fr, perm),
                            f"the same {n} failing samples shuffled (batch size {b}): other batch neighbours",
                            runtime=rt, keep=True, details={"batch_size": b})
    pick = np.sort(rng.choice(_n(Pr), n, replace=_n(Pr) < n))
    mixed = {}
    for k in _inputs_of(Fr):
        # the failing samples keep their values and dtype; only their neighbours change
        v = np.empty((2 * n,) + Fr[k].shape[1:], dtype=Fr[k].dtype)
        nb = Pr[k][pick]
        if Fr[k].dtype.kind == "f" and nb.dtype.kind in "fiu":  # neighbours the failing dtype can hold
            big = float(np.finfo(Fr[k].dtype).max)
            nb = np.clip(nb.astype(np.float64), -big, big)
        v[0::2], v[1::2] = Fr[k], nb.astype(Fr[k].dtype)
        mixed[k] = v
    if ROWS_KEY in Fr:
        mixed[ROWS_KEY] = np.repeat(Fr[ROWS_KEY], 2)  # odd rows are never scored (rows=slice(0, None, 2))
    e_mx, r_mx = runner.run("runtime", "composition:interleaved", "failing", mixed,
                            f"the same {n} failing samples interleaved with {against} samples (batch size {b})",
                            runtime=rt, keep=True, details={"batch_size": b}, rows=slice(0, None, 2),
                            rows_note=f"the failing samples' rows only (even rows); their {against} neighbours "
                                      "are not scored")
    out = {"status": "done", "batch_size": b, "n_samples": n, "experiments": [e_base.id, e_sh.id, e_mx.id],
           "arrangements": {}}
    changed_any = 0.0
    for label, e, r, fix in (("shuffled", e_sh, r_sh, lambda y: y[np.argsort(perm)]),
                             ("interleaved", e_mx, r_mx, lambda y: y[0::2])):
        if r is None:
            out["arrangements"][label] = {"error": e.error}
            continue
        ys = [fix(o) for o in r[0]]
        ch = _per_sample_change(y_base, ys)
        fails, h, _, _, _ = runner.score(ys, rows=Fr.get(ROWS_KEY))
        frac = float(np.mean(ch > COMPOSITION_TOL))
        changed_any = max(changed_any, frac)
        out["arrangements"][label] = {"changed_fraction": frac, "max_relative_change": float(ch.max()),
                                      "fails": fails, "health": h,
                                      "restores": None if runner.h_fail is None else _restores(runner.h_fail, h)}
    out["in_order"] = {"fails": e_base.fails, "health": e_base.health}
    n_changed = int(round(changed_any * n))
    out["dependent"] = bool(changed_any >= COMPOSITION_MIN_CHANGED and n_changed >= 2)
    out["changed_fraction"] = changed_any
    return out


def _stage_runtime(runner, F, P, rng, causes, appliers, against="passing"):
    """Runtime factors and batch composition; ``P`` is the passing set or (``against="reference"``) the
    reference set standing in for it, named so in the experiments and texts."""
    idx = _subsample_idx(F, RUNTIME_SAMPLES, rng)
    Fr = _take(F, idx)
    e0, _ = runner.run("runtime", "default", "failing", Fr, f"default runtime on {len(idx)} failing samples",
                       details={"runtime": runner.runtime.to_dict() if hasattr(runner.runtime, "to_dict") else {}})
    if e0.fails is not True:
        Fr = F
        e0, _ = runner.run("runtime", "default:whole", "failing", F, "default runtime on the working failing set")
        if e0.fails is not True:
            return {"status": "skipped", "reason": "the failing subsample does not fail under the default runtime"}
    h0 = e0.health
    Pr = _take(P, _subsample_idx(P, RUNTIME_SAMPLES, rng))
    flips, kept = [], {}
    for factor, value, rt in _runtime_factors(runner.runtime, Fr, _n(Fr), runner.loaded):
        e, r = runner.run("runtime", f"{factor}={value}", "failing", Fr, f"failing subsample with {factor}={value}",
                          runtime=rt, details={"factor": factor, "value": value}, keep=factor == "batch_size")
        if factor == "batch_size" and r is not None:
            kept[value] = (e, r[0])
        if e.fails is False:
            flips.append((factor, value, rt, e))
    comp = _stage_composition(runner, Fr, Pr, rng, kept, against)
    kept.clear()
    found = []
    for factor, value, rt, e in flips:
        ep, _ = runner.run("runtime", f"{factor}={value}:{against}", against, Pr,
                           f"{against} subsample with {factor}={value} (must still pass)", runtime=rt)
        found.append({"factor": factor, "value": value, "restores": _restores(h0, e.health),
                      "passing_still_passes": ep.fails is False, "experiment": e.id, "rt": rt})
    tried = {}
    for ex in runner.experiments:
        if ex.stage == "runtime" and "factor" in ex.details:
            tried.setdefault(ex.details["factor"], []).append(
                {"value": ex.details["value"], "fails": ex.fails, "error": ex.error})
    batch_flip = [f for f in found if f["factor"] == "batch_size"]
    arr = comp.get("arrangements", {}) if comp.get("status") == "done" else {}
    outcome_moves = any(a.get("fails") is False for a in arr.values()) or any(
        a.get("health") is not None and np.isfinite(a.get("health", np.nan))
        and abs(a["health"] - comp["in_order"]["health"]) > TIE_TOLERANCE for a in arr.values())
    composition = bool(comp.get("dependent")) and (bool(batch_flip) or outcome_moves)
    comp["related_to_failure"] = composition
    if composition:
        best = max([f["restores"] for f in batch_flip] + [a.get("restores") or 0.0 for a in arr.values()] + [0.0])
        ev = {"changed_fraction": comp["changed_fraction"], "batch_size": comp["batch_size"],
              "arrangements": arr, "in_order": comp["in_order"], "experiments": comp["experiments"],
              "batch_sizes_that_pass": [f["value"] for f in batch_flip],
              "restores_basis": ("best of the arrangements and batch sizes tried (a batch size is not the fix: "
                                 "the outputs change with the batch neighbours at the same batch size)"),
              "n_samples": comp["n_samples"]}
        causes.append(Cause("runtime", "batch_composition", best, ev))
        appliers[("runtime", "batch_composition")] = (None, (
            "make each sample's output independent of the other samples in its batch: remove or fix the "
            "batch-level operation (e.g. a per-batch mean, centring or normalisation inside the model); "
            "changing the batch size only hides it"))
    for factor in dict.fromkeys(f["factor"] for f in found):
        if composition and factor == "batch_size":
            continue  # explained by batch composition: never recommend a batch size for it
        good = [f for f in found if f["factor"] == factor and f["passing_still_passes"]]
        if not good:
            continue

        # best restoration; among equals prefer the largest batch size / float32 / graph mode
        def pref(f):
            v = f["value"]
            tie = v if isinstance(v, (int, float)) and not isinstance(v, bool) else (1 if v == "float32" else 0)
            return (round(f["restores"], 2), tie)
        b = max(good, key=pref)
        causes.append(Cause("runtime", factor, b["restores"], {
            "value": b["value"], "passing_values": [f["value"] for f in good],
            "tried": tried.get(factor, []), "default": getattr(runner.runtime, factor, None),
            "failing_health_default": h0, "experiment": b["experiment"], "n_samples": _n(Fr)}))
        ok_vals = ", ".join(str(f["value"]) for f in good)
        text = (f"run with {factor}={b['value']} (the failing set passes with: {ok_vals}; "
                f"default {getattr(runner.runtime, factor, None)})")
        if factor == "dtype":
            held = sorted({f"{k!r} as {v.dtype}" for k, v in F.items() if v.dtype.kind == "f"
                           and str(v.dtype) != b["value"]})
            passing_dt = sorted({str(v.dtype) for v in P.values() if v.dtype.kind == "f"})
            text = (f"cast the inputs to {b['value']} before the model (run with dtype={b['value']}): the failing "
                    f"set holds {', '.join(held) or 'its inputs'}; the {against} set holds {', '.join(passing_dt)}"
                    f" (the failing set passes with dtype: {ok_vals})")
        appliers[("runtime", factor)] = (lambda s, rt=b["rt"]: (s, rt), text)
    for f in found:
        f.pop("rt", None)
    return {"status": "done", "flips": found, "n_samples": _n(Fr), "composition": comp}


def _pick_intervention(exps: dict):
    """Best intervention of one input: the most specific among those within TIE_TOLERANCE of the best."""
    ok = {kd: e for kd, e in exps.items() if e is not None and e.restores is not None}
    if not ok:
        return None, 0.0
    best = max(e.restores for e in ok.values())
    tied = [kd for kd, e in ok.items() if e.restores >= best - TIE_TOLERANCE]
    kind = min(tied, key=lambda kd: SPECIFICITY.index(kd) if kd in SPECIFICITY else 99)
    return kind, ok[kind].restores


def _stage_inputs(runner, F, P, R, rng, causes, appliers, input_info, F0=None, index_map=None,
                  plabel="the passing set", against="passing"):
    """Input experiments against ``P``: the passing set, or (``against="reference"``) the reference set
    standing in for a passing set that fails too; names, texts and evidence keys say which."""
    from ..diagnosis.splits import input_drift  # values, and pattern totals for image-like inputs

    names = runner.names
    per = {k: {} for k in names}
    arrays = {k: {} for k in names}
    cache = {frozenset(names): True}

    def config(keep_failing):
        return _with_rows({k: (F[k] if k in keep_failing else _resample(P[k], _n(F), np.random.default_rng(7)))
                           for k in names}, F)

    whole = F0 if F0 is not None else F
    dk = f"drift_failing_vs_{against}"
    ptarget = "passing" if against == "passing" else "reference"
    for k in names:
        # against the reference, the reference is the baseline of the drift (as drift_failing_vs_reference)
        d = input_drift(F[k], P[k], seed=0) if against == "passing" else input_drift(P[k], F[k], seed=0)
        info = {dk: d, "dtype_failing": str(F[k].dtype), f"dtype_{against}": str(P[k].dtype),
                "nonfinite_failing": _nonfinite_evidence(whole[k], None)["count"],
                f"nonfinite_{against}": int((~np.isfinite(P[k])).sum()) if P[k].dtype.kind in "fc" else 0}
        if R is not None:
            info["drift_failing_vs_reference"] = input_drift(R[k], F[k], seed=0)
            info["drift_passing_vs_reference"] = input_drift(R[k], P[k], seed=0)
        input_info[k] = info
    for k in names:
        if k in runner.unused:
            continue
        s = dict(F)
        s[k] = config(set(names) - {k})[k]
        e, _ = runner.run("input", f"{_shown('swap', against)}:{k}", "failing", s,
                          f"failing set with {k} taken from {plabel}")
        per[k]["swap"] = e
        cache[frozenset(set(names) - {k})] = e.fails
    Ps = _take(P, _subsample_idx(P, SCREEN_SAMPLES, np.random.default_rng(5)))
    for k in names:
        if k in runner.unused:
            continue
        s = dict(Ps)
        s[k] = _resample(F[k], _n(Ps), np.random.default_rng(11))
        e, _ = runner.run("input", f"reverse_swap:{k}", ptarget, s,
                          f"{plabel} with {k} taken from the failing set (does it now fail?)")
        input_info[k]["reverse_swap_fails"] = e.fails

    def drift_of(k):
        d = input_info[k][dk]["drift_score"]
        if R is not None:
            d = max(d, input_info[k]["drift_failing_vs_reference"]["drift_score"])
        return float(np.nan_to_num(d, nan=np.inf, posinf=1e300))

    def suspicion(k):
        return ((per[k]["swap"].restores or 0.0), drift_of(k))

    order = sorted([k for k in names if k not in runner.unused], key=suspicion, reverse=True)
    suspects = [k for k in order if (per[k]["swap"].restores or 0) > 0.01 or drift_of(k) >= 1
                or input_info[k]["nonfinite_failing"] > 0 or F[k].dtype != P[k].dtype][:3]
    if not suspects:
        suspects = order[:1]
    for k in runner.unused:
        input_info[k]["used_by_model"] = False  # never intervened on: it changes no output
    for k in suspects:
        for kind in INTERVENTIONS[1:]:
            try:
                new = intervene(kind, F[k], P[k], None if R is None else R[k], np.random.default_rng(13))
            except Exception as exc:  # an intervention that cannot be built is evidence, not fatal
                runner.skipped("input", f"{_shown(kind, against)}:{k}", "failing", F,
                               f"failing set with {k}: {_shown(kind, against)}", _error_text(exc))
                continue
            if new is None:
                continue
            same = next((kd for kd, a in arrays[k].items() if a.shape == new.shape and a.dtype == new.dtype
                         and np.array_equal(a, new, equal_nan=a.dtype.kind in "fc")), None)
            if same is not None:  # identical values (e.g. a constant reference): no second model call
                per[k][kind] = per[k][same]
                continue
            s = dict(F)
            s[k] = new
            e, _ = runner.run("input", f"{_shown(kind, against)}:{k}", "failing", s,
                              f"failing set with {k}: {_shown(kind, against)}")
            per[k][kind] = e
            arrays[k][kind] = new
    # ddmin over inputs (the minimal set of inputs whose failing values still fail)
    combo = None
    used = [k for k in names if k not in runner.unused]
    if len(used) > 1:
        def test(keep):
            key = frozenset(keep)
            if key not in cache:
                e, _ = runner.run("combination", "keep_failing:" + "+".join(sorted(keep)), "failing",
                                  config(set(keep)), "inputs " + ", ".join(sorted(keep))
                                  + f" from the failing set, the others from {plabel}")
                cache[key] = e.fails
            return cache[key]
        try:
            minimal, complete = ddmin(used, test, max_tests=12)
        except _BudgetSpent:
            minimal, complete = None, False
        if minimal is not None and len(minimal) < len(used):
            combo = {"inputs": sorted(minimal), "minimal": complete}
            if len(minimal) > 1:
                key = frozenset(set(names) - set(minimal))
                s = config(key)
                e, _ = runner.run("combination", f"{_shown('swap', against)}:" + "+".join(sorted(minimal)),
                                  "failing", s, "failing set with " + ", ".join(sorted(minimal))
                                  + f" taken from {plabel}")
                causes.append(Cause("input", "+".join(sorted(minimal)), e.restores or 0.0,
                                    {"ddmin": combo, "experiment": e.id,
                                     "parts": [{"input": k, "intervention": _shown("swap", against),
                                                "restores_alone": per[k]["swap"].restores or 0.0,
                                                "fix": _fix_text_input(k, "swap", F[k], P[k], None, plabel=plabel)}
                                               for k in sorted(minimal)]}))
                appliers[("input", "+".join(sorted(minimal)))] = (
                    lambda s2, mm=tuple(minimal): ({k: (_resample(P[k], _n(s2), np.random.default_rng(7))
                                                        if k in mm else v) for k, v in s2.items()}, None),
                    "replace " + ", ".join(sorted(minimal)) + f" by values like {_poss(plabel)} (together: "
                    "each alone does not restore the outputs)")
    nf_ev = {k: _nonfinite_evidence(whole[k], index_map if F0 is not None else None) for k in names}
    best_single = 0.0
    for k in names:
        exps = {kind: e for kind, e in per[k].items() if e.restores is not None}
        if not exps:
            continue
        best_kind, best = _pick_intervention(exps)
        in_combo = combo is not None and combo["inputs"] == [k]
        best_single = max(best_single, best)
        if best < 0.05 and not in_combo:
            continue
        ev = {"restores_by_intervention": {_shown(kd, against): e.restores for kd, e in exps.items()},
              "best_intervention": _shown(best_kind, against),
              "experiments": {_shown(kd, against): e.id for kd, e in exps.items()},
              "against": against,
              "drift_score": input_info[k][dk]["drift_score"],
              "smd": input_info[k][dk]["smd"],
              "reverse_swap_fails": input_info[k].get("reverse_swap_fails"),
              "ddmin_minimal": in_combo,
              "reason": _reason_text(k, best_kind, F[k], P[k], None if R is None else R[k], nf_ev[k], plabel)}
        if R is not None:
            ev["drift_score_vs_reference"] = input_info[k]["drift_failing_vs_reference"]["drift_score"]
        if F[k].dtype != P[k].dtype:
            ev["dtype"] = {"failing": str(F[k].dtype), against: str(P[k].dtype)}
        if nf_ev[k]["count"]:
            ev["nonfinite"] = nf_ev[k]
        causes.append(Cause("input", k, best, ev))
        appliers[("input", k)] = (_input_applier(k, best_kind, P, R),
                                  _fix_text_input(k, best_kind, F[k], P[k], None if R is None else R[k], nf_ev[k],
                                                  plabel))
    multi = None
    if best_single < COMBINE_BELOW:
        drifts = {"passing": {k: input_info[k][dk]["drift_score"] for k in names},
                  "reference": {k: input_info[k]["drift_failing_vs_reference"]["drift_score"] for k in names
                                if R is not None}}
        multi = _stage_several(runner, F, P, R, per, suspects, causes, appliers, nf_ev, plabel, drifts, against)
    return {"status": "done", "suspects": suspects, "ddmin": combo, "several_causes": multi}


def _shown(kind: str, against: str = "passing") -> str:
    """An intervention's name as recorded: when the reference set stands in for a passing set that fails
    too (``against="reference"``), ``swap`` takes the reference's values (``reference``) and
    ``match_passing`` matches the reference's mean and std (``match_reference``)."""
    if against == "reference":
        return {"swap": "reference", "match_passing": "match_reference"}.get(kind, kind)
    return kind


def _input_applier(k, kind, P, R):
    def apply(s2):
        new = intervene(kind, s2[k], P[k], None if R is None else R[k], np.random.default_rng(13))
        out = dict(s2)
        if new is not None:
            out[k] = new
        return out, None
    return apply


def _stage_several(runner, F, P, R, per, suspects, causes, appliers, nf_ev, plabel="the passing set",
                   drift=None, against="passing"):
    """Several independent causes: changes on several inputs combined, then minimised.

    Runs when no single change restores the reference health. Two starting
    points: (1) with a reference, every input drifted from it made
    reference-like at once (the inputs "as trained"); (2) greedy: on top of the
    changes kept so far, every intervention of every input not yet changed is
    tried and the one that restores the most is kept (the most specific among
    near ties), until nothing adds more than 1 % or the health is restored.
    The better one is refined (each kept change swapped for another change of
    the same input, the others fixed; a greedy first step can be a local
    optimum) and minimised (each change left out when the rest does as well
    without it). Model calls are cached, so parts already tried cost nothing.
    """
    cands = [k for k in suspects if any(e is not None and e.restores is not None for e in per[k].values())]

    def input_info_drift(k, which):
        return float((drift or {}).get(which, {}).get(k, 0.0))

    if len(cands) < 2:
        return {"status": "skipped", "reason": "fewer than two inputs with changes to combine"}
    results = {}
    for k in cands:
        for kind, e in per[k].items():
            if e is not None and e.restores is not None:
                results[frozenset({(k, kind)})] = e

    def evaluate(changes: dict):
        key = frozenset(changes.items())
        if key not in results:
            s = dict(F)
            for k, kind in changes.items():
                new = intervene(kind, F[k], P[k], None if R is None else R[k], np.random.default_rng(13))
                if new is not None:
                    s[k] = new
            label = "+".join(f"{_shown(kind, against)}:{k}" for k, kind in sorted(changes.items()))
            e, _ = runner.run("combination", f"several:{label}", "failing", s,
                              "failing set with " + "; ".join(f"{k}: {_shown(kind, against)}"
                                                              for k, kind in sorted(changes.items())))
            results[key] = e
        return results[key]

    done = 1 - TIE_TOLERANCE / 5

    def restored(changes):
        r = evaluate(changes).restores
        return -1.0 if r is None else r

    steps, seeds = [], []
    # joint seeds: every drifted input made like the healthy set at once (the reference: the model "as
    # trained"; the passing set, or the reference standing in for it)
    for label, kinds_of, which in (
            (f"every input drifted from the reference made like {plabel if R is None else 'the reference'}",
             ("match_reference", "reference"), "reference"),
            (f"every input drifted from {plabel} made like it", ("match_passing", "swap"), "passing")):
        joint = {}
        for k in cands:
            kinds = [kd for kd in kinds_of if kd in per[k] and per[k][kd] is not None
                     and per[k][kd].restores is not None]
            if input_info_drift(k, which) >= 1 and kinds:
                joint[k] = min(kinds, key=lambda kd: (-(per[k][kd].restores or 0), SPECIFICITY.index(kd)))
        if len(joint) >= 2 and joint not in [sd for _, sd in seeds]:
            seeds.append((label, joint))
    current: dict = {}
    cur = 0.0
    for label, joint in seeds:
        r = restored(joint)
        steps.append({"seed": label, "changes": dict(joint), "restores": r})
        if r > cur + 0.01:
            current, cur = dict(joint), r
        if cur >= done:
            break
    # seed 2: greedy, the change that restores the most added on top of those kept
    if cur < done:
        g: dict = {}
        gr = 0.0
        while len(g) < len(cands):
            trials = []
            for k in cands:
                if k in g:
                    continue
                for kind in per[k]:
                    e = evaluate({**g, k: kind})
                    if e.restores is not None:
                        trials.append((k, kind, e))
            if not trials:
                break
            top = max(e.restores for _, _, e in trials)
            tied = [t for t in trials if t[2].restores >= top - TIE_TOLERANCE]
            k, kind, e = min(tied, key=lambda t: (SPECIFICITY.index(t[1]) if t[1] in SPECIFICITY else 99,
                                                  -t[2].restores))
            if e.restores <= gr + 0.01:
                break
            g[k] = kind
            gr = e.restores
            steps.append({"greedy": k, "intervention": _shown(kind, against), "restores": gr, "experiment": e.id})
            if gr >= done:
                break
        if gr > cur + 0.01 or not current:
            current, cur = g, gr
    # refinement: each kept change swapped for another change of the same input, the others fixed
    if 0 < len(current) and cur < done:
        for k in list(current):
            for kind in per[k]:
                if kind == current[k]:
                    continue
                r = restored({**current, k: kind})
                if r > cur + 0.01:
                    current, cur = {**current, k: kind}, r
                    steps.append({"refined": k, "intervention": _shown(kind, against), "restores": cur})
    # minimise: leave out each change the rest does as well without
    if len(current) > 1:
        for k in list(current):
            rest = {kk: vv for kk, vv in current.items() if kk != k}
            if rest and restored(rest) >= cur - TIE_TOLERANCE:
                current = rest
                cur = restored(rest)
    info = {"status": "done", "steps": steps, "kept": dict(current), "restores": cur}
    if len(current) < 2:
        return info
    final = evaluate(current)
    parts = []
    for k, kind in sorted(current.items()):
        alone = results.get(frozenset({(k, kind)}))
        without = evaluate({kk: vv for kk, vv in current.items() if kk != k})
        parts.append({"input": k, "intervention": _shown(kind, against),
                      "restores_alone": None if alone is None else alone.restores,
                      "restores_without_it": without.restores,
                      "reason": _reason_text(k, kind, F[k], P[k], None if R is None else R[k], nf_ev[k], plabel),
                      "fix": _fix_text_input(k, kind, F[k], P[k], None if R is None else R[k], nf_ev[k], plabel)})
    name = "+".join(sorted(current))
    causes.append(Cause("input", name, final.restores or 0.0,
                        {"several_causes": True, "parts": parts, "experiment": final.id, "steps": steps}))

    def apply(s2, changes=dict(current)):  # noqa: B006 - binds a copy of the changes made so far
        out = dict(s2)
        for k, kind in changes.items():
            new = intervene(kind, s2[k], P[k], None if R is None else R[k], np.random.default_rng(13))
            if new is not None:
                out[k] = new
        return out, None
    appliers[("input", name)] = (apply, "; ".join(p["fix"] for p in parts))
    info["cause"] = name
    return info


def _abnormal_rows(F: dict, P: dict, plabel: str = "the passing set") -> dict:
    """``{row: [reasons]}``: rows holding NaN/Inf, or values far outside the passing set's (no model call)."""
    out: dict = {}
    for k, v in _inputs_of(F).items():
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
                    f"{k}: largest |value| {amax[i]:.4g} = {amax[i] / pmax:.3g} x {_poss(plabel)}")
    return out


def _stage_samples(runner, F, P, rng, causes, appliers, index_map, bad_flags=None, max_tests=24,
                   plabel="the passing set"):
    n = _n(F)
    if n < 2:
        return {"status": "skipped", "reason": "fewer than 2 samples"}
    cache, exps = {}, {}
    limit = max(1, int(MAX_SUBSET_FRACTION * n))
    budget = [max_tests]

    def test(sub):
        key = tuple(sorted(int(i) for i in sub))
        if key not in cache:
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            e, _ = runner.run("samples", f"subset[{len(key)}]", "failing", _take(F, np.array(key)),
                              f"failing samples subset of {len(key)}",
                              details={"indices": [int(index_map[i]) for i in key]} if len(key) <= 16 else {})
            cache[key], exps[key] = e.fails, e
        return cache[key]

    def orig(rows):
        return sorted(int(index_map[i]) for i in rows)

    abnormal = _abnormal_rows(F, P, plabel)
    scan = {"abnormal_rows": orig(abnormal)[:50], "n_abnormal": len(abnormal)}

    def register(culprits, victims, rest, how, subset_fails=None):
        key = tuple(sorted(int(i) for i in rest))
        e = exps[key]
        ev = {"n_samples_working_set": n, "rest_health": e.health, "experiment": e.id, "found_by": how,
              "victims": orig(victims), "abnormal": {str(int(index_map[i])): abnormal[i] for i in culprits
                                                     if i in abnormal}}
        for i in culprits:  # how the culprits' values compare with the passing set's, when not flagged
            if i in abnormal:
                continue
            for k, v in _inputs_of(F).items():
                if v.dtype.kind not in "fiu" or P[k].dtype.kind not in "fiu":
                    continue
                a = float(np.nanmax(np.abs(np.where(np.isfinite(v[i]), v[i], 0).astype(np.float64))))
                pa = np.abs(np.where(np.isfinite(P[k]), P[k], 0).astype(np.float64)).reshape(len(P[k]), -1)
                ref = float(np.quantile(pa.max(axis=1), 0.999)) if pa.size else 0.0
                if ref > 0 and a > 1.5 * ref:
                    ev["abnormal"].setdefault(str(int(index_map[i])), []).append(
                        f"{k}: largest |value| {a:.4g} = {a / ref:.3g} x {_poss(plabel)}")
        if subset_fails is not None:
            ev["culprits_alone_fail"] = subset_fails
        if bad_flags is not None:
            others = np.flatnonzero(bad_flags)
            others = np.setdiff1d(others, list(culprits) + list(victims))
            ev["n_other_failing_samples"] = int(len(others))
        nf = {k: [int(index_map[i]) for i in culprits if v.dtype.kind in "fc" and not np.isfinite(v[i]).all()]
              for k, v in _inputs_of(F).items()}
        nf = {k: v for k, v in nf.items() if v}
        if nf:
            ev["nonfinite_inputs"] = nf
        names = orig(culprits)
        causes.append(Cause("samples", names, e.restores or 0.0, ev))
        why = "; ".join(f"sample {s}: {', '.join(r)}" for s, r in list(ev["abnormal"].items())[:5])
        text = f"drop or repair sample(s) {names} of the failing set" + (f" ({why})" if why else "")
        if ev["victims"]:
            text += (f"; sample(s) {ev['victims']} fail only because they share a batch with them: keep them")
        elif ev.get("n_other_failing_samples"):
            text += (f"; {ev['n_other_failing_samples']} other sample(s) fail only because they share a batch "
                     "with them: keep them")
        appliers[("samples", tuple(names))] = (None, text)

    # 1. samples found by scanning the inputs (NaN/Inf, far outliers), tested as a subset
    if 0 < len(abnormal) <= limit:
        rows = sorted(abnormal)
        rest = [i for i in range(n) if i not in abnormal]
        if rest and test(rest) is False:
            register(rows, [], rest, "input scan (non-finite or far-outlying values)", test(rows))
            return {"status": "done", "scope": "subset", "scan": scan, "subset": orig(rows), "rest_passes": True}
    # 2. ddmin over samples
    perm = rng.permutation(n)
    chunks = [np.sort(c) for c in np.array_split(perm, min(4, n))]
    outcomes = [test(c) for c in chunks]
    if all(o is True for o in outcomes):
        return {"status": "done", "scope": "global", "chunk_fails": outcomes, "scan": scan,
                "summary": "every quarter of the failing set fails on its own: the failure is global"}
    failing_chunks = [c for c, o in zip(chunks, outcomes) if o is True]
    if not failing_chunks:
        return {"status": "done", "scope": "collective", "chunk_fails": outcomes, "scan": scan,
                "summary": "no quarter of the failing set fails on its own: the failure needs many samples "
                           "together (batch composition or size)"}
    found: list[int] = []
    remaining = np.arange(n)
    rest_passes = False
    for _ in range(3):
        start = [int(i) for i in np.concatenate(failing_chunks) if int(i) not in set(found)]
        if not start or test(start) is not True:
            break
        sub, complete = ddmin(start, lambda s: test(s), max_tests=max(budget[0], 1))
        found.extend(int(i) for i in sub)
        remaining = np.setdiff1d(np.arange(n), found)
        if len(remaining) == 0:
            break
        rest_passes = test(list(remaining)) is False
        if rest_passes or budget[0] <= 0:
            break
        failing_chunks = [np.setdiff1d(c, found) for c in failing_chunks]
    small = 0 < len(found) <= limit
    out = {"status": "done", "scope": "subset" if (small and rest_passes) else "unclear", "scan": scan,
           "chunk_fails": outcomes, "subset": orig(found), "rest_passes": rest_passes}
    if small and rest_passes:
        rest = [int(i) for i in remaining]
        # 3. culprits (abnormal inputs, or needed for the failure) vs victims (fail only by sharing a batch)
        culprits, victims = list(found), []
        abn = [i for i in found if i in abnormal]
        if abn and len(abn) < len(found):
            keep_back = sorted(rest + [i for i in found if i not in abn])
            if test(keep_back) is False:
                culprits, victims = abn, [i for i in found if i not in abn]
        elif 1 < len(found) <= 8:
            outs = {i: test(sorted(rest + [i])) for i in found}
            vic = [i for i, o in outs.items() if o is False]
            if vic and len(vic) < len(found):
                culprits, victims = [i for i in found if i not in vic], vic
        out["culprits"], out["victims"] = orig(culprits), orig(victims)
        register(culprits, victims, rest, "ddmin over samples")
    return out


def _rank(causes: list) -> list:
    if not causes:
        return []
    best = max(c.restores for c in causes)
    top = [c for c in causes if c.restores >= best - TIE_TOLERANCE and c.restores > 0]
    rest = [c for c in causes if c not in top]
    top.sort(key=lambda c: (_SPECIFICITY.get(c.kind, 9), -c.restores))
    rest.sort(key=lambda c: -c.restores)
    ranked = top + rest
    # outputs that depend on the batch neighbours: that finding comes first (after culprit samples that
    # explain it), since every other experiment changes the batches too
    comp = [c for c in ranked if c.kind == "runtime" and c.name == "batch_composition"]
    if comp:
        samples = [c for c in ranked if c.kind == "samples" and c.restores >= comp[0].restores - TIE_TOLERANCE
                   and c.restores > 0]
        ranked = samples + comp + [c for c in ranked if c not in samples and c not in comp]
    return ranked


# ----------------------------------------------------------------------------- main
def bisect(model, failing, passing, reference=None, criterion="all-zero", *, runtime=None,
           max_samples: int = 2000, max_evaluations: int = 58, seed: int = 0,
           probe_layers: bool = True, paired_reference=None, ground_truth=None) -> BisectionResult:
    """Find why ``model`` fails on ``failing`` and passes on ``passing``.

    Parameters
    ----------
    model : LoadedModel, keras.Model or str
        The model (a spec is loaded with :func:`ptyanalysis.inference.load_model`).
    failing, passing : dict, list or ndarray
        Input sets: ``{input name: array}`` named like the model's inputs, a
        list in input order, or one array for a one-input model.
    reference : same, optional
        Inputs drawn like the model's training inputs: health is measured
        against the model's outputs on them (else against the passing set's).
        A reference whose own outputs are unusable (all zero, non-finite,
        collapsed) is reported as such and not trusted.
    criterion : str, callable or Criterion
        ``"all-zero"`` (default), ``"non-finite"``, ``"collapsed[:tol]"``,
        ``"zero-fraction>=F"``, ``"mostly-zero"``, ``"module:function"`` or a
        predicate ``f(outputs) -> bool`` (True = fails).
    runtime : RuntimeConfig, optional
        The default runtime the failure is observed under.
    max_samples : int
        Work on seeded subsamples of at most this many samples per set
        (confirming the fix on the whole failing set).
    max_evaluations : int
        Budget of model calls; experiments beyond it are recorded as skipped.
    seed : int
    probe_layers : bool
        Run the per-layer probe.
    paired_reference : same as ``failing``, optional
        The failing set's OWN samples, in the same order, fed as the model was
        trained (e.g. :func:`ptyanalysis.diagnosis.inputs.paired_trained_set`).
        Only an explicitly paired set is used so, never one guessed from
        shapes. With it, every experiment on failing samples is also scored
        per sample against their as-trained outputs (``paired`` health:
        ``clip(1 - mean|y - y_ref| / mean|y_ref|, 0, 1)`` per output), and an
        output's health is the lower of that and the statistics' health, so a
        change restores only what it restores sample by sample. Without it
        health compares output statistics only (``health.basis`` says which).
    ground_truth : dict, optional
        ``{"failing" | "passing" | "reference": true object patches}`` (complex,
        samples first), e.g. from the study datasets: an output component that
        varies far less from sample to sample than the truth
        (:data:`~ptyanalysis.diagnosis.health.FLAT_RATIO`) is reported as flat,
        with the collapsed ones (``health["collapsed"]``).

    Returns
    -------
    BisectionResult

    Raises
    ------
    PtyAnalysisError
        Input names that do not match the model's, sample counts that differ
        inside a set, empty sets, unknown criterion.
    """
    from ..inference.loading import load_model
    from ..inference.runtime import RuntimeConfig

    t0 = time.perf_counter()
    loaded = load_model(model)
    runtime = runtime or RuntimeConfig()
    crit = parse_criterion(criterion)
    names = list(loaded.input_names)
    F0 = _normalise_set(failing, names, "failing")
    names = names or list(F0)
    P0 = _normalise_set(passing, names, "passing")
    R0 = _normalise_set(reference, names, "reference") if reference is not None else None
    T0 = _normalise_set(paired_reference, names, "paired reference") if paired_reference is not None else None
    from .inputs import check_input_shapes

    check_input_shapes(loaded, {"failing": F0, "passing": P0, "reference": R0, "paired reference": T0})
    if T0 is not None:
        if _n(T0) != _n(F0):
            raise PtyAnalysisError(
                f"paired reference: {_n(T0)} samples but the failing set has {_n(F0)}; a paired reference "
                "holds the failing set's own samples in the same order (fed as the model was trained)")
        F0 = {**F0, ROWS_KEY: np.arange(_n(F0))}
    runner = _Runner(loaded, names, crit, runtime, int(max_evaluations))
    rng = np.random.default_rng(seed)
    causes: list[Cause] = []
    appliers: dict = {}
    settings = {"max_samples": max_samples, "max_evaluations": max_evaluations, "seed": seed,
                "runtime": runtime.to_dict() if hasattr(runtime, "to_dict") else str(runtime),
                "n_failing": _n(F0), "n_passing": _n(P0), "n_reference": None if R0 is None else _n(R0),
                "paired_reference": T0 is not None,
                "inputs": names, "model": getattr(loaded, "source", None)}

    # 1. reproduce, on seeded working subsamples of at most max_samples (whole sets when smaller)
    idx = {"failing": _subsample_idx(F0, max_samples, rng), "passing": _subsample_idx(P0, max_samples, rng)}
    if R0 is not None:
        idx["reference"] = _subsample_idx(R0, max_samples, rng)
    whole = {"failing": F0, "passing": P0, "reference": R0}
    work = {k: (whole[k] if len(v) == _n(whole[k]) else _take(whole[k], v)) for k, v in idx.items()}
    stats, bad_flags = {}, None
    for label in ("reference", "passing", "failing"):
        if label not in work:
            continue
        s = work[label]
        sub = _n(s) < _n(whole[label])
        e, r = runner.run("reproduce", label + (":subsample" if sub else ""), label, s,
                          f"{label} set as given" + (f" (seeded subsample of {_n(s)})" if sub else ""), keep=True)
        want = label == "failing"  # the outcome the set should show
        if sub and e.fails is not None and e.fails != want:
            # the subsample does not show what the set is said to show: use the whole set
            idx[label] = np.arange(_n(whole[label]))
            work[label] = whole[label]
            e, r = runner.run("reproduce", label, label, whole[label], f"whole {label} set", keep=True)
        if label == "failing" and r is not None:
            fail_outs = r[0]
            sh = sample_health(r[0])
            bad_flags = sh["all_zero"] | sh["nonfinite"]
        stats[label] = (e, None if r is None else r[1])
    F, P, R = work["failing"], work["passing"], work.get("reference")
    idxF = idx["failing"]
    subsampled = _n(F) < _n(F0)
    settings["working_samples"] = {k: _n(v) for k, v in work.items()}
    out_names = list(getattr(loaded, "output_names", None) or [])

    # the reference is checked before it is trusted
    ref_e, ref_st = stats.get("reference", (None, None))
    ref_problem = reference_problem(ref_st) if ref_st is not None else None
    ref_ok = ref_e is not None and ref_e.fails is False and ref_problem is None
    pass_e, pass_st = stats["passing"]
    pass_problem = reference_problem(pass_st) if pass_st is not None else None
    ref_note = ""
    if ref_ok:
        runner.ref_stats, ref_source = ref_st, "reference set"
    elif pass_e.fails is False and pass_problem is None:
        runner.ref_stats = pass_st
        if ref_problem:
            ref_source = "passing set (the reference is unusable)"
            ref_note = (f" The reference set is unusable: the model's outputs on it are not healthy ({ref_problem});"
                        " health is measured against the passing set instead.")
        elif ref_e is not None:
            ref_source = "passing set (the reference fails the criterion)"
        else:
            ref_source = "passing set (no healthy reference)"
    else:
        runner.ref_stats = ref_st if ref_st is not None else pass_st
        ref_source = "reference set (fails itself)" if ref_st is not None else "passing set (fails itself)"
        if ref_problem or pass_problem:
            ref_note = (" No set gives usable reference outputs ("
                        + "; ".join(f"{lbl}: {p}" for lbl, p in (("reference", ref_problem), ("passing", pass_problem))
                                    if p) + "): health scores are not meaningful.")
    paired_info = {"given": T0 is not None, "used": False}
    if T0 is not None and stats["failing"][1] is not None:
        Tw = _take(T0, idx["failing"]) if len(idx["failing"]) < _n(T0) else T0
        e_t, r_t = runner.run("reproduce", "paired_reference", "paired_reference", Tw,
                              "the failing samples fed as the model was trained (paired reference)", keep=True)
        t_problem = reference_problem(r_t[1]) if r_t is not None else (e_t.error or "it could not be run")
        paired_info.update({"experiment": e_t.id, "fails": e_t.fails, "problem": t_problem})
        if e_t.fails is False and t_problem is None:
            pos = np.full(_n(T0), -1)
            pos[idx["failing"]] = np.arange(len(idx["failing"]))
            runner.paired = (pos, list(r_t[0]))
            paired_info["used"] = True
        else:
            paired_info["not_used_because"] = ("its outputs fail the criterion" if e_t.fails is not False
                                               else f"its outputs are unusable ({t_problem})")
    hs, hpo = {}, {}
    for label, (e, st) in stats.items():
        if st is not None and runner.ref_stats is not None:
            hpo[label] = health_scores(st, runner.ref_stats)
            if label == "failing" and runner.paired is not None:
                ph = runner.paired_scores(fail_outs, F0[ROWS_KEY][idx["failing"]])
                paired_info["failing_paired_per_output"] = ph
                hpo[label] = [min(a, b) if np.isfinite(b) else a for a, b in zip(hpo[label], ph)]
            hs[label] = float(np.mean(hpo[label])) if hpo[label] else np.nan
        else:
            hpo[label], hs[label] = [], np.nan
        runner.experiments[e.id] = replace(e, health=hs[label],
                                           details={**e.details, "health_per_output": hpo[label]})
    if len(out_names) != len(hpo.get("failing") or []):
        out_names = [f"output_{k}" for k in range(len(hpo.get("failing") or []))]

    def deg_outputs(label):
        return [out_names[k] for k, h in enumerate(hpo.get(label) or []) if degraded(h)]

    fail_fails = stats["failing"][0].fails is True
    pass_fails = pass_e.fails is True
    health = {"failing": hs.get("failing"), "passing": hs.get("passing"), "reference": hs.get("reference"),
              "reference_source": ref_source, "degraded_threshold": DEGRADED_HEALTH,
              "failing_degraded": degraded(hpo.get("failing") or hs.get("failing", np.nan)),
              "passing_degraded": degraded(hpo.get("passing") or hs.get("passing", np.nan)) if ref_ok else False,
              "outputs": {lbl: [o.to_dict() for o in st] for lbl, (e, st) in stats.items() if st is not None},
              "output_names": out_names, "per_output": hpo,
              "failing_degraded_outputs": deg_outputs("failing"),
              "passing_degraded_outputs": deg_outputs("passing") if ref_ok else [],
              "reference_usable": None if ref_e is None else ref_problem is None,
              "passing_fails": bool(pass_e.fails),
              "reference_problem": ref_problem,
              "basis": "paired" if runner.paired is not None else "statistics",
              "paired": paired_info,
              # output components that do not depend on the input (the same for every sample), per set
              "collapsed": {lbl: collapsed_outputs(st, out_names,
                                                   truth_spread=truth_sample_spread((ground_truth or {}).get(lbl)))
                            for lbl, (e, st) in stats.items() if st is not None}}
    input_info: dict = {}
    layers: dict = {"status": "not run", "rows": []}
    # a reference whose outputs are unusable is not used for interventions either
    R_use = R if ref_ok or (R is not None and ref_problem is None) else None
    if R is not None and R_use is None:
        settings["reference_for_interventions"] = "not used: " + (ref_problem or "the reference fails")

    if runner.paired is not None:
        basis_note = (" Health: paired, each failing sample's outputs against its own outputs fed as the model "
                      "was trained (the paired reference), and never above the output statistics' health.")
    elif T0 is not None:
        basis_note = (f" Health: output statistics only; the paired reference was not used "
                      f"({paired_info.get('not_used_because', 'the failing set could not be run')}).")
    else:
        basis_note = " Health: output statistics (no paired reference)."

    # non-finite input values are always named, whatever the criterion looks at
    nf_parts = []
    for k in names:
        ev = _nonfinite_evidence(np.asarray(F0[k]))
        if ev["count"]:
            first = ", ".join(map(str, ev["first_samples"])) + (", ..." if ev["n_samples"] > 5 else "")
            nf_parts.append(f"{ev['count']:,} in {k!r} ({ev['n_samples']} sample(s): {first})")
    nonfinite_note = ("The failing set holds non-finite (NaN/Inf) input values: " + "; ".join(nf_parts)
                      + f" (criterion {crit.label!r}; run with --criterion non-finite to localise them)") if nf_parts else ""

    def finish(reproduced, verdict, fix, ranked):
        if nonfinite_note and "summary" in verdict and "non-finite" not in verdict["summary"]:
            summ = verdict["summary"].rstrip()
            verdict = {**verdict, "summary": summ + ("" if summ.endswith(".") else ".") + " " + nonfinite_note + "."}
        if ref_note and "summary" in verdict and ref_note.strip() not in verdict["summary"] \
                and verdict.get("kind") != "collapsed":  # there the unusable reference is the finding itself
            summ = verdict["summary"].rstrip()
            verdict = {**verdict, "summary": summ + ("" if summ.endswith(".") else ".") + ref_note}
        if "summary" in verdict:
            summ = verdict["summary"].rstrip()
            verdict = {**verdict, "summary": summ + ("" if summ.endswith(".") else ".") + basis_note,
                       "health_basis": health["basis"]}
        if unused_note and "summary" in verdict and unused_note not in verdict["summary"]:
            summ = verdict["summary"].rstrip()
            verdict = {**verdict, "summary": summ + ("" if summ.endswith(".") else ".") + " " + unused_note[0].upper()
                       + unused_note[1:] + "."}
        res = BisectionResult(
            reproduced=reproduced, criterion=crit.to_dict(), health=health, causes=tuple(ranked),
            verdict=verdict, fix=fix, evaluations=runner.evaluations, elapsed_s=time.perf_counter() - t0,
            experiments=tuple(runner.experiments), layers=layers, inputs=input_info, settings=settings,
            input_usage=tuple(usage))
        return res

    if any(st is None for _, st in stats.values()):
        bad = [lbl for lbl, (e, st) in stats.items() if st is None]
        err = "; ".join(f"{lbl}: {stats[lbl][0].error}" for lbl in bad)
        return finish(False, {"kind": "none", "name": None,
                              "summary": f"the model could not be run on the {', '.join(bad)} set ({err})"},
                      "make the model run on every set first", [])
    # 2. which inputs the model uses at all (one call per input on a few failing samples)
    usage = []
    if runner.evaluations + len(names) + 2 <= runner.max_evaluations:
        from ..diagnosis.usage import USAGE_SAMPLES, input_usage, unused_text

        def _call(xs):
            from ..inference.streaming import predict

            runner.evaluations += 1
            return predict(loaded, xs, runner.runtime)

        # measured where the model works (a dead model changes nothing whatever its input): the passing set,
        # else the reference, else the failing set
        U = P if pass_e.fails is False else (R if ref_ok else F)
        t_u = time.perf_counter()
        try:
            usage = input_usage(_call, U, names, model=getattr(loaded, "model", None), seed=seed)
        except Exception as exc:  # evidence, not fatal
            settings["input_usage_error"] = _error_text(exc)
        ulabel = "passing" if U is P else "reference" if U is R else "failing"
        each = (time.perf_counter() - t_u) / max(1, len(usage) + 1)
        for u in [None, *usage]:  # every model call is an experiment (the first: unperturbed)
            runner.experiments.append(Experiment(
                len(runner.experiments), "usage", "usage:base" if u is None else f"usage:{u.name}", ulabel,
                f"{ulabel} samples as given" if u is None else f"{u.name}: {u.perturbation}",
                min(_n(U), USAGE_SAMPLES), None, np.nan, None, np.nan, np.nan, None if u is None else u.error, each,
                {} if u is None else {"used": u.used, "max_change": u.max_change, "auxiliary": u.auxiliary}))
        unused_note = unused_text(usage) or ""
    else:
        unused_note = ""
    runner.unused = {u.name for u in usage if u.used is False and not u.auxiliary}
    flat = health["collapsed"].get("failing") or []
    if not fail_fails and flat:
        # a failure that is not the criterion's: outputs that do not depend on the input. Say so, and
        # locate where the dependence is lost (one probe call on the failing set).
        everywhere = [lbl for lbl in ("passing", "reference") if health["collapsed"].get(lbl)]
        if probe_layers:
            layers = _run_layers(runner, F, None, rng)
        where = layers.get("first_input_independent")
        texts = "; ".join(c["text"] for c in flat)
        causes = [Cause("model", "collapsed_output", 0.0, {
            "collapsed": flat, "also_on": everywhere, "first_input_independent_layer": where})]
        return finish(False, {"kind": "collapsed", "name": ", ".join(f"{c['output']} {c['component']}" for c in flat),
                              "summary": (
            f"not an {crit.label!r} failure, but an output that does not depend on the input: {texts}"
            + (f"; the same on the {' and '.join(everywhere)} set(s), so the model itself does not use its input "
               "there (e.g. under-trained), not the data" if everywhere else "")
            + (f"; {_independent_layers_text(layers)}" if where else "")
            + f". Rerun with --criterion {_collapse_criterion_for(flat)} to bisect it as the failure")},
            "check the training (loss still falling? a flat output after few epochs is an under-trained model) "
            "and the input scale the model was trained with", causes)
    if not fail_fails:
        hint = ""
        if health["failing_degraded"] and np.isfinite(hs.get("failing", np.nan)):
            hint = (f"; note that it is degraded (health {hs['failing']:.3f}"
                    + (f", outputs {', '.join(health['failing_degraded_outputs'])}"
                       if health["failing_degraded_outputs"] else "")
                    + "): a criterion that describes how it looks wrong (zero-fraction>=F, collapsed, non-finite "
                      "or a module:function predicate) would let the bisection run")
        return finish(False, {"kind": "none", "name": None, "summary": (
            f"not reproduced: the failing set does not fail under the {crit.label!r} criterion "
            f"(health {hs['failing']:.3f} against the {ref_source}); nothing to bisect{hint}")},
            "none needed under this criterion (try another criterion, e.g. zero-fraction>=0.5, if the "
            "outputs still look wrong)", [])
    passing_note = ""
    plabel, against = "the passing set", "passing"
    if pass_fails:
        ref_fails = ref_e.fails if ref_e is not None else None
        if ref_fails is not False:
            # model fault: does any runtime factor rescue it?
            rt = _stage_runtime(runner, F, P, rng, causes, appliers)
            if probe_layers:
                layers = _run_layers(runner, F, None, rng)
            # No set passes, so there is no healthy output to measure ``restores`` against (health
            # against a failing reference scores a rescued, healthy output as 0). A runtime cause here
            # is a criterion flip on both sets: the failing subsample passes under the factor and so
            # does the passing subsample. That is the rescue.
            rescued = [replace(c, restores=1.0, evidence={**c.evidence, "restores_basis": (
                "criterion flip on the failing and the passing set (every set fails under the default "
                "runtime: no healthy reference)"), "restores_vs_failing_reference": c.restores})
                for c in causes if c.kind == "runtime" and c.name != "batch_composition"]
            if rescued:
                causes = rescued + [c for c in causes if c.kind != "runtime"]
                c = rescued[0]
                return finish(False, {"kind": "runtime", "name": c.name, "summary": (
                    f"every set fails under the default runtime, but {c.name}={c.evidence['value']} rescues "
                    "the failing set: a runtime fault, not the data")}, appliers[("runtime", c.name)][1],
                    _rank(causes))
            where = layers.get("rows", [])
            first = next((r["layer"] for r in where if r["zero_fraction_failing"] == 1.0), None)
            flat_at = layers.get("first_input_independent")
            mname = getattr(loaded.model, "name", None) or "model"
            causes = [Cause("model", mname, 0.0, {"runtime": rt, "first_all_zero_layer": first,
                                                  "first_input_independent_layer": flat_at,
                                                  "collapsed": flat,
                                                  "reference_given": "reference" in stats})]
            note = "" if "reference" in stats else " (no reference set was given to confirm it)"
            return finish(False, {"kind": "model", "name": mname, "summary": (
                f"the model fails on every set{note} -- failing, passing"
                + (", reference" if "reference" in stats else "")
                + f" -- under the {crit.label!r} criterion, and no runtime factor rescues it"
                + (f"; activations are already all zero at layer {first!r}" if first else "")
                + (f"; {'; '.join(c['text'] for c in flat)}" if flat else "")
                + (f"; activations stop depending on the input at layer {flat_at!r}" if flat_at and not first else "")
                + ": the model itself is at fault (e.g. untrained or dead weights saved)")},
                "check that the trained weights were saved and loaded (retrain or reload the model)", causes)
        if not ref_ok:
            return finish(False, {"kind": "none", "name": None, "summary": (
                f"not reproduced: the passing set fails too, and the reference is unusable ({ref_problem})")},
                "give a reference set the model was trained like (--reference)", [])
        # the passing set fails too but the reference passes: bisect against the reference
        P, R_use = R, None
        settings["passing_role"] = "reference set (the passing set fails too)"
        plabel, against = "the reference/training inputs", "reference"
        passing_note = (f" The passing set fails too (health {hs['passing']:.3f}), so the reference set took "
                        "its place in the experiments.")

    # 2. experiments (screening subsamples inside the stages)
    runner.h_fail = hs["failing"]
    rt_info = _stage_runtime(runner, F, P, rng, causes, appliers, against)
    iS = _subsample_idx(F, SCREEN_SAMPLES, rng)
    in_info = _stage_inputs(runner, _take(F, iS), P, R_use, rng, causes, appliers, input_info, F0=F0,
                            plabel=plabel, against=against)
    sm_info = _stage_samples(runner, F, P, rng, causes, appliers, idxF, bad_flags, plabel=plabel)
    if probe_layers:
        layers = _run_layers(runner, F, P, rng, against)
    settings["stages"] = {"runtime": rt_info, "inputs": in_info, "samples": sm_info}

    ranked = _rank(causes)
    top = ranked[0] if ranked and ranked[0].restores > 0 else None
    confirmed = None
    if top is not None and subsampled:
        key = (top.kind, tuple(top.name) if isinstance(top.name, list) else top.name)
        e = None
        if top.kind == "samples":
            keep = np.setdiff1d(np.arange(_n(F0)), top.name)
            e, _ = runner.run("confirm", "confirm:drop_samples", "failing", _take(F0, keep),
                              "whole failing set without the culprit samples")
        else:
            fn = appliers.get(key, (None,))[0]
            if fn is not None:
                s2, rt2 = fn(F0)
                e, _ = runner.run("confirm", f"confirm:{top.kind}:{top.name}", "failing", s2,
                                  "fix applied to the whole failing set", runtime=rt2)
        if e is not None and e.fails is not None:
            confirmed = {"fails": e.fails, "restores": _restores(hs["failing"], e.health), "experiment": e.id}
            settings["confirmation"] = confirmed
    verdict, fix = _verdict(top, ranked, appliers, health, layers, sm_info, crit)
    verdict["summary"] += passing_note
    named = set(str(verdict.get("name")).split("+")) if verdict.get("kind") == "input" else set()
    also = _drifted_not_named(input_info, named)
    if also:
        verdict["summary"] += also["text"]
        verdict["drifted_not_named"] = also["inputs"]
    if confirmed is not None:
        verdict["confirmed_on_whole_set"] = not confirmed["fails"]
    return finish(True, verdict, fix, ranked)


def _drifted_not_named(input_info: dict, named: set) -> dict | None:
    """Inputs that drifted (score >= 1 against the reference, else the passing set) but are not named as a
    cause: ``{"inputs": [...], "text": sentence}``, or None. Health is scored on output statistics, so a
    drift whose effect it cannot see (e.g. a missing intensity scale the model is nearly blind to) is said,
    not silently dropped."""
    items, names = [], []
    for k, info in input_info.items():
        if k in named:
            continue
        best = None
        for key, who, inverse in (("drift_failing_vs_reference", "the reference's", False),
                                  ("drift_failing_vs_passing", "the passing set's", True)):
            d = info.get(key)
            if d is None or not np.isfinite(d.get("drift_score", np.nan)) or d["drift_score"] < 1:
                continue
            if best is None or d["drift_score"] > best[0]["drift_score"]:
                best = (d, who, inverse)
        if best is None:
            continue
        d, who, inverse = best
        words = f"{k!r} (drift score {d['drift_score']:.3g}"
        ratio = d.get("total_ratio")
        if ratio is not None and np.isfinite(ratio) and ratio > 0:
            words += f"; its pattern totals are x{(1 / ratio if inverse else ratio):.3g} {who}"
        items.append(words + ")")
        names.append(k)
    if not items:
        return None
    return {"inputs": names, "text": (
        f" Also drifted, but not named as a cause: {', '.join(items)}: changing it does not change the outcome "
        "measurably under this criterion and health score (see the Health note); check it anyway.")}


def _pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.0f} %"


def _verdict(top, ranked, appliers, health, layers, sm_info, crit):
    deg = ""
    if health.get("passing_degraded") and not health.get("passing_fails"):
        deg = (f" Note: the passing set is itself degraded (health {health['passing']:.3f} against the "
               f"{health['reference_source']}): it passes the criterion but is far from healthy.")
    if health.get("failing_degraded_outputs") and len(health.get("output_names", [])) > 1:
        deg += (f" Degraded output(s) of the failing set: {', '.join(health['failing_degraded_outputs'])} "
                "(health per output: " + ", ".join(
                    f"{n} {h:.2f}" for n, h in zip(health["output_names"], health["per_output"].get("failing", [])))
                + ").")
    where = ""
    if layers.get("first_dead"):
        where = f" Activations first die at layer {layers['first_dead']!r}."
    elif layers.get("first_nonfinite"):
        where = f" Activations first go non-finite at layer {layers['first_nonfinite']!r}."
    if top is None:
        summary = ("reproduced, but no single experiment restored the outputs: the cause is outside the "
                   "factors tried (inputs, samples, runtime)." + where + deg)
        return {"kind": "unknown", "name": None, "summary": summary, "passing_degraded":
                bool(health.get("passing_degraded"))}, "no fix found among the experiments; see the experiments"
    key = (top.kind, tuple(top.name) if isinstance(top.name, list) else top.name)
    fix = appliers.get(key, (None, ""))[1]
    others = [c for c in ranked[1:4] if c.restores > 0]
    also = ""
    if others:
        also = " Other changes that help: " + "; ".join(f"{c.kind} {c.name} ({_pct(c.restores)})"
                                                      for c in others) + "."
    parts_ev = top.evidence.get("parts")
    verdict_extra = {}
    if top.kind == "input" and parts_ev:
        # several causes (a greedy combination or a ddmin combination of swaps)
        descr = "; ".join(
            f"{p['input']!r}" + (f" ({p['reason']})" if p.get("reason") else "")
            + f": {p['intervention']} alone restores {_pct(p.get('restores_alone'))}" for p in parts_ev)
        how = ("no single change restores the reference health" if top.evidence.get("several_causes")
               else "only changing them together makes the failure go away")
        summary = (f"{len(parts_ev)} causes, inputs {' and '.join(repr(p['input']) for p in parts_ev)}: "
                   f"{how}; {descr}; together they restore {_pct(top.restores)} of the reference health.")
        verdict_extra["causes"] = [{"kind": "input", "name": p["input"], "intervention": p["intervention"],
                                    "restores_alone": p.get("restores_alone"),
                                    "restores_without_it": p.get("restores_without_it"), "fix": p["fix"]}
                                   for p in parts_ev]
        verdict_extra["restores"] = top.restores
    elif top.kind == "input":
        ev = top.evidence.get("restores_by_intervention", {})
        order = {k: i for i, k in enumerate(INTERVENTIONS)}
        parts = ", ".join(f"{k} {_pct(v)}" for k, v in sorted(ev.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
        reason = top.evidence.get("reason")
        best = top.evidence.get("best_intervention")
        summary = (f"input {top.name!r} is at fault" + (f": {reason}" if reason else "") + ". "
                   + (f"The most specific change that works is {best}; changing it " if best else "Changing it ")
                   + f"alone restores {_pct(top.restores)} of the reference health"
                   + (f" ({parts})" if parts else "") + ".")
    elif top.kind == "samples":
        nf = top.evidence.get("nonfinite_inputs")
        vic = top.evidence.get("victims") or []
        nother = top.evidence.get("n_other_failing_samples") or 0
        summary = (f"{len(top.name)} sample(s) {top.name} cause the failure: without them the rest of the set "
                   f"passes (restores {_pct(top.restores)})"
                   + (f"; they hold non-finite values in {', '.join(nf)}" if nf else "")
                   + (f"; found by {top.evidence['found_by']}" if top.evidence.get("found_by") else "") + ".")
        if vic:
            summary += (f" Sample(s) {vic} fail only because they share a batch with them (victims, not "
                        "culprits): a batch-level operation spreads the failure.")
        elif nother:
            summary += (f" {nother} other sample(s) fail only because they share a batch with them: a "
                        "batch-level operation spreads the failure.")
        verdict_extra["culprits"], verdict_extra["victims"] = list(top.name), list(vic)
    elif top.kind == "runtime" and top.name == "batch_composition":
        ev = top.evidence
        alt = next((c for c in ranked if c.kind == "input" and c.restores >= COMBINE_BELOW), None)
        if alt is not None and appliers.get(("input", alt.name), (None, ""))[1]:
            fix += ("; here, feeding the inputs as the model was trained also restores the outputs ("
                    f"{_pct(alt.restores)}): {appliers[('input', alt.name)][1]}")
        arr = ev.get("arrangements", {})
        summary = ("outputs depend on which samples share a batch: the same failing samples at the same batch "
                   f"size ({ev.get('batch_size')}) give different outputs with other neighbours ("
                   + ", ".join(f"{k}: {_pct(a.get('changed_fraction'))} of the samples change"
                               for k, a in arr.items() if "changed_fraction" in a)
                   + "). This is batch composition, not batch size")
        if ev.get("batch_sizes_that_pass"):
            summary += (f" (batch size {ev['batch_sizes_that_pass']} passes only because a sample then has "
                        "fewer or no neighbours)")
        summary += "."
    elif top.kind == "runtime":
        summary = (f"runtime factor {top.name!r} flips the outcome: with {top.name}="
                   f"{top.evidence.get('value')} the failing set passes (restores {_pct(top.restores)})"
                   f" and the passing set still passes.")
        if top.name == "dtype":
            summary += f" Fix: {fix}."
    else:
        summary = f"{top.kind} {top.name}: restores {_pct(top.restores)}."
    summary += where + also + deg
    return {"kind": top.kind, "name": top.name, "summary": summary, **verdict_extra,
            "passing_degraded": bool(health.get("passing_degraded"))}, fix


# ----------------------------------------------------------------------------- output
def write_bisection(result: BisectionResult, out_dir) -> Path:
    """Write ``bisection.json`` atomically into ``out_dir``; return its path.

    Parameters
    ----------
    result : BisectionResult
    out_dir : str or Path
    """
    from ..fileutil import write_json
    from ..provenance import software_versions, utc_now

    d = result.to_dict()
    d.update(generated_at=utc_now(), versions=software_versions(("ptyanalysis", "numpy", "keras", "tensorflow", "jax", "torch")))
    return write_json(Path(out_dir) / "bisection.json", d)


def plot_bisection(result: BisectionResult):
    """Figure: ``restores`` per failing-set experiment and per-layer zero fractions.

    Parameters
    ----------
    result : BisectionResult

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..plotting import subplots

    ex = [e for e in result.experiments if e.restores is not None]
    rows = result.layers.get("rows", [])
    fig, axes = subplots(1, 2 if rows else 1, figsize=(11 if rows else 6, max(3, 0.25 * len(ex) + 1)),
                             squeeze=False)
    ax = axes[0, 0]
    ax.barh([e.name for e in ex][::-1], [e.restores for e in ex][::-1],
            color=["C2" if e.fails is False else "C3" for e in ex][::-1])
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of reference health restored (green: the failing set passes)")
    ax.set_title(f"verdict: {result.verdict.get('kind')} {result.verdict.get('name')}", fontsize=9)
    if rows:
        ax = axes[0, 1]
        y = np.arange(len(rows))
        # passing underneath (thick, pale, squares), failing on top (thin, dashed, dots): both stay visible
        ax.plot([r["zero_fraction_passing"] for r in rows], y, "s-", color="C0", lw=4, ms=9, alpha=0.45,
                label=(result.layers or {}).get("compared_with", "passing"), zorder=2)
        ax.plot([r["zero_fraction_failing"] for r in rows], y, "o--", color="C3", lw=1.5, ms=4,
                label="failing", zorder=3)
        ax.set_yticks(y, [r["layer"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("zero fraction of activations")
        ax.set_ylabel("layer (input to output)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- CLI
def configure_parser(parser) -> None:
    """Add the ``bisect`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--model", required=True, help="model spec (see ptyanalysis.inference.load_model)")
    parser.add_argument("--failing", required=True, help="NPZ of the failing inputs (one array per model input)")
    parser.add_argument("--passing", required=True, help="NPZ of the passing inputs")
    parser.add_argument("--reference", default=None, help="NPZ of inputs drawn like the training inputs")
    parser.add_argument("--criterion", default="all-zero",
                        help="all-zero (default), non-finite, collapsed[:tol], zero-fraction>=F (some output at "
                             "least the share F zero or non-finite), mostly-zero (= zero-fraction>=0.5) or "
                             "module:function")
    parser.add_argument("--study-inputs", action="store_true",
                        help="the NPZs are study datasets, fed exactly as the study's comparison script fed them "
                             "(Baseline: diffraction not x intensity_scale, absolute positions; "
                             "ptyanalysis.inference.feeds); without --reference the reference is the passing "
                             "split fed as the model was trained")
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--max-evaluations", type=int, default=58)
    from .inputs import add_feed_argument

    add_feed_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    from ..inference.runtime import add_batch_size_argument

    add_batch_size_argument(parser)


def run_cli(args) -> int:
    """Run ``ptyanalysis bisect``; return the exit status (0 whatever the verdict).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`configure_parser`).

    Returns
    -------
    int
        0 (bad input raises :class:`PtyAnalysisError`: exit status 2).
    """
    from ..diagnosis.inputs import check_feed, cli_input_sets, default_paired_set
    from ..fileutil import check_output_dir
    from ..inference.loading import load_model

    crit = parse_criterion(args.criterion)
    check_feed(args.feed, args.study_inputs)
    check_output_dir(args.out)
    if args.max_samples < 2:
        raise PtyAnalysisError(f"--max-samples must be at least 2, got {args.max_samples}")
    if args.max_evaluations < 2:
        raise PtyAnalysisError(f"--max-evaluations must be at least 2 (one model call per set), "
                               f"got {args.max_evaluations}")
    if args.seed < 0:
        raise PtyAnalysisError(f"--seed must be >= 0, got {args.seed}")
    from ..inference.runtime import runtime_from_args

    runtime = runtime_from_args(args)
    loaded = load_model(args.model)
    paths = {"failing": args.failing, "passing": args.passing}
    sets, datasets, reference = cli_input_sets(loaded, paths, args.reference, study_inputs=args.study_inputs,
                                               trained_like="passing", feed=args.feed, seed=args.seed, say=print)
    # the failing split re-fed as trained (the same samples in the same order): health is paired
    paired = default_paired_set(loaded, datasets, paths, "failing", study_inputs=args.study_inputs,
                                reference_given=args.reference is not None or reference is None, seed=args.seed,
                                say=print, feed=args.feed)
    gt = None
    if args.study_inputs:
        from ..diagnosis.inputs import split_ground_truth

        gt = split_ground_truth(datasets, {"failing": "failing", "passing": "passing"}, say=print)
        if gt is not None and args.reference is None and reference is not None:
            gt["reference"] = gt["passing"]  # the reference is the passing split fed as trained
    res = bisect(loaded, sets["failing"], sets["passing"], reference, crit, max_samples=args.max_samples,
                 max_evaluations=args.max_evaluations, seed=args.seed, runtime=runtime, paired_reference=paired,
                 ground_truth=gt)
    path = write_bisection(res, args.out)
    print(f"wrote {path}")
    print(f"verdict: {res.verdict['kind']} {res.verdict.get('name')}: {res.verdict['summary']}")
    print(f"fix: {res.fix}")
    return 0

"""The runner: every model call of a bisection goes through it, counted and recorded."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from ...inference.failures import MODEL_ERRORS, error_text, model_errors  # noqa: F401 (re-exported)
from ...inference.streaming import predict
from ..health import health_scores, outputs_stats, paired_health_scores, restores
from .ddmin import BudgetSpent
from .records import Experiment
from .sets import ROWS_KEY, n_samples

#: Input sets whose outputs a bisection keeps for reuse (identical sets are run once).
MEMO_SETS = 2
#: Largest outputs (bytes) kept for reuse.
MEMO_BYTES = 256 * 2**20


def _content_key(xs) -> tuple:
    """A key that is equal only for input sets with the same arrays (shape, dtype, values)."""
    h = hashlib.blake2b(digest_size=16)
    for x in xs:
        x = np.ascontiguousarray(x)
        h.update(f"{x.shape}{x.dtype.str}".encode())
        h.update(x.view(np.uint8).reshape(-1) if x.size else b"")
    return (h.hexdigest(),)


class Runner:
    """Runs and records every model call of one bisection (no state outside it).

    Every call counts against the evaluation budget: experiments (:meth:`run`), and the calls of the
    usage check and the layer probe (:meth:`call`). A call the model cannot take (a batch it refuses, a
    dtype it cannot run) is recorded with its error as evidence; an error in the bisection's own code
    (building an intervention, scoring) is raised.
    """

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

    def call(self, xs, runtime=None, model=None) -> list:
        """One model call (``model``: another model, e.g. the layer probe), counted against the budget.

        Raises
        ------
        BudgetSpent
            When the budget is spent (nothing is run).
        """
        if self.evaluations >= self.max_evaluations:
            raise BudgetSpent
        self.evaluations += 1
        return predict(self.loaded if model is None else model, xs, runtime or self.runtime)

    def record(self, stage, name, target, n, change, *, fails=None, health=np.nan, restores=None,
               nonzero=np.nan, finite=np.nan, error=None, elapsed=0.0, details=None) -> Experiment:
        """Append one experiment record (for calls made through :meth:`call`) and return it."""
        e = Experiment(len(self.experiments), stage, name, target, change, int(n), fails, health, restores,
                       nonzero, finite, error, elapsed, dict(details or {}))
        self.experiments.append(e)
        return e

    def outputs(self, s: dict, runtime=None):
        """The model's outputs on set ``s`` (reused when an identical set ran before)."""
        xs = [np.asarray(s[k]) for k in self.names]
        key = _content_key(xs) if runtime is None else None
        self.reused = key in self._memo
        if self.reused:
            return self._memo[key]
        outs = self.call(xs, runtime)
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
        except Exception as exc:  # a user predicate that raises is evidence about the criterion, not fatal
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
        """Record an experiment that was not run (``why``)."""
        return self.record(stage, name, target, n_samples(s), change, error=why, details=details)

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
        except BudgetSpent:
            return self.skipped(stage, name, target, s, change, "skipped: evaluation budget spent", details), None
        except model_errors() as exc:  # the model cannot take this input: evidence, never fatal
            return self.record(stage, name, target, n_samples(s), change, error=error_text(exc),
                               elapsed=time.perf_counter() - t0, details=details), None
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
            r = restores(self.h_fail, h)
        e = self.record(stage, name, target, n_samples(s), change, fails=fails, health=h, restores=r,
                        nonzero=st[0].nonzero_fraction, finite=st[0].finite_fraction,
                        elapsed=time.perf_counter() - t0, details=details)
        return e, ((outs, st) if keep else st)



"""Criterion check: does the user's failure criterion fit the model's outputs at all?

When every set fails, the reference included, the criterion may be what is wrong: a model whose outputs
are zero outside their support by design fails ``mostly-zero`` on any input. The criterion is judged not to
fit when the outputs of the passing set (or the reference) are otherwise healthy
(:func:`ptyanalysis.diagnosis.health.reference_problem` finds nothing, and few samples are unhealthy), or
when the ground truth itself fails it. A criterion that does fit is suggested from the outputs already
computed (no model call): one that the healthy sets pass and the failing set fails, else the tightest one
the healthy sets pass.
"""

from __future__ import annotations

import numpy as np

from ...health import BAD_SAMPLE_SCALE, COLLAPSE_TOL, parse_criterion, reference_problem


def _zero_fraction(stats) -> float:
    return max((1.0 - s.finite_fraction * s.nonzero_fraction) for s in stats) if stats else 0.0


def candidates(stats_by_set: dict) -> list:
    """Criteria worth suggesting: the built-in ones and zero-fraction thresholds between the sets' own."""
    out = ["all-zero", "any-blank", "non-finite", "collapsed"]
    zs = sorted({round(_zero_fraction(st), 4) for st in stats_by_set.values() if st})
    for z in zs:
        f = min(1.0, np.ceil((z + 0.02) * 20) / 20)
        out.append(f"zero-fraction>={f:g}")
    return list(dict.fromkeys(out))


def outputs_healthy(stats) -> str | None:
    """Why outputs are not healthy (None when they are): unusable as a reference, or many bad samples."""
    problem = reference_problem(stats)
    if problem:
        return problem
    bad = max((s.bad_sample_fraction for s in stats), default=0.0)
    if bad > BAD_SAMPLE_SCALE:
        return f"{100 * bad:.0f} % of the samples have blank, non-finite, flat or identical outputs"
    return None


def truth_fails(criterion, ground_truth: dict | None) -> dict:
    """``{set: True/False}``: does the ground truth (true object patches) fail the criterion itself?"""
    out = {}
    for label, gt in (ground_truth or {}).items():
        if gt is None:
            continue
        try:
            out[label] = bool(criterion.fails([np.asarray(gt)]))
        except (ValueError, TypeError, IndexError) as exc:  # a user predicate written for other outputs
            out[label] = f"not checked ({type(exc).__name__}: {exc})"
    return out


def check(criterion, stats_by_set: dict, fails_by_set: dict, ground_truth: dict | None = None) -> dict | None:
    """Does the criterion fit? ``None`` when it may (some healthy set is unhealthy), else the finding.

    Parameters
    ----------
    criterion : Criterion
    stats_by_set : dict
        ``{set label: list of OutputHealth}`` of the model's outputs on each set.
    fails_by_set : dict
        ``{set label: bool}`` under the criterion.
    ground_truth : dict, optional
        ``{set label: true object patches}``.

    Returns
    -------
    dict or None
        ``healthy_sets`` (sets failing the criterion whose outputs are otherwise healthy), ``truth_fails``,
        ``suggested`` (a criterion the healthy sets pass and the failing set fails, or None),
        ``passes_everything`` (the tightest criterion every set passes), ``zero_fraction`` per set.
    """
    healthy = {lbl: outputs_healthy(st) for lbl, st in stats_by_set.items() if lbl != "failing" and st}
    healthy_sets = [lbl for lbl, why in healthy.items() if why is None and fails_by_set.get(lbl)]
    truth = truth_fails(criterion, ground_truth)
    if not healthy_sets and not any(v is True for v in truth.values()):
        return None
    good = [lbl for lbl in stats_by_set if lbl != "failing" and stats_by_set[lbl]]
    fitting = [spec for spec in candidates(stats_by_set)
               if not any(parse_criterion(spec).fails([], stats_by_set[lbl]) for lbl in good)]
    failing = stats_by_set.get("failing")
    separating = [spec for spec in fitting if failing and parse_criterion(spec).fails([], failing)]
    # the criterion of the user's kind that the healthy sets pass (a zero-fraction threshold above theirs)
    same_kind = [spec for spec in fitting if spec.split(">=")[0].split(":")[0] == criterion.kind]
    suggested = separating[0] if separating else None
    loose = (same_kind or fitting or [None])[0]
    return {"criterion": criterion.label, "healthy_sets": healthy_sets, "truth_fails": truth,
            "suggested": suggested, "passes_everything": loose,
            "zero_fraction": {lbl: _zero_fraction(st) for lbl, st in stats_by_set.items() if st}}


def collapse_criterion_for(found: list) -> str:
    """The ``collapsed[:tol]`` criterion under which the components found
    (:func:`ptyanalysis.diagnosis.health.collapsed_outputs`) fail."""
    flat = [c for c in found if c.get("kind") == "flat"]
    if not flat:
        return "collapsed"
    tol = max(c["spread"] / (np.pi if c["component"] == "phase" else 1.0) for c in flat) * 2
    return f"collapsed:{float(f'{max(tol, COLLAPSE_TOL):.1g}'):g}"

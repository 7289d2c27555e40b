"""From ranked causes to a :class:`~.records.Verdict` (structured; :mod:`.render` puts it in words).

Ranking (:func:`rank`): causes whose experiment let the failing set pass (*verified*) come before the
others; among the verified (or, when none is, among all) the causes within
:data:`~.settings.TIE_TOLERANCE` of the best ``restores`` are ordered by specificity (a few samples, then a
runtime factor, then the inputs' pairing, then an input: a convention fix before a rescaling before a swap),
then by the strength of their other evidence (drift, identical or non-finite samples), never by input
order. A batch-composition finding comes first (after culprit samples that explain it), since every other
experiment changes the batches too. Only a verified cause gives a fix sentence.
"""

from __future__ import annotations

from .records import Cause, Verdict
from .settings import COMBINE_BELOW, TIE_TOLERANCE


def rank(causes: list) -> list:
    """Causes, best first (see the module docstring)."""
    if not causes:
        return []
    pool = [c for c in causes if c.verified] or list(causes)
    best = max(c.restores for c in pool)
    top = [c for c in pool if c.restores >= best - TIE_TOLERANCE and (c.restores > 0 or c.verified)]
    top.sort(key=lambda c: (c.specificity, -c.strength, -c.restores, str(c.name)))
    rest = [c for c in causes if c not in top]
    rest.sort(key=lambda c: (not c.verified, -c.restores, c.specificity, str(c.name)))
    ranked = top + rest
    comp = [c for c in ranked if c.kind == "runtime" and c.name == "batch_composition"]
    if comp:
        samples = [c for c in ranked if c.kind == "samples" and c.restores >= comp[0].restores - TIE_TOLERANCE
                   and c.restores > 0]
        ranked = samples + comp + [c for c in ranked if c not in samples and c not in comp]
    return ranked


def _unverified_fix(top: Cause) -> str:
    return (f"no change was seen to make the failing set pass the criterion; the closest, {top.kind} "
            f"{top.name!r}, still fails (what it would change: {top.fix.text if top.fix else 'see the evidence'}); "
            "see the experiments")


def conclude(ranked: list, *, facts: dict, notes: tuple = ()) -> Verdict:
    """The verdict of the experiments: the top cause, with a fix only when it is verified.

    Parameters
    ----------
    ranked : list of Cause
        :func:`rank`'s order.
    facts : dict
        Facts the summary needs besides the causes (health, layers, ...).
    notes : tuple of dict
        Side findings.
    """
    top = ranked[0] if ranked and (ranked[0].restores > 0 or ranked[0].verified) else None
    if top is None:
        return Verdict("unknown", None, "no fix found among the experiments; see the experiments", False,
                       facts, notes)
    facts = {**facts, "top": top.to_dict(), "restores": top.restores,
             "others": [{"kind": c.kind, "name": c.name, "restores": c.restores, "verified": c.verified}
                        for c in ranked[1:4] if c.restores >= 0.01]}
    fix = top.fix.text if top.verified and top.fix else _unverified_fix(top)
    if top.kind == "runtime" and top.name == "batch_composition":
        alt = next((c for c in ranked if c.kind == "input" and c.verified and c.restores >= COMBINE_BELOW), None)
        if alt is not None and alt.fix:
            fix += (f"; here, feeding the inputs as the model was trained also restores the outputs "
                    f"({100 * alt.restores:.0f} %): {alt.fix.text}")
    parts = top.evidence.get("parts")
    if top.kind == "input" and parts:
        facts["causes"] = [{"kind": "input", "name": p["input"], "intervention": p["intervention"],
                            "restores_alone": p.get("restores_alone"),
                            "restores_without_it": p.get("restores_without_it"), "fix": p["fix"]} for p in parts]
    if top.kind == "samples":
        facts["culprits"], facts["victims"] = list(top.name), list(top.evidence.get("victims") or [])
    return Verdict(top.kind, top.name, fix, top.verified, facts, notes)

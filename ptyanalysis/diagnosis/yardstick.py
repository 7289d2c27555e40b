"""When a reference can be trusted: the one rule that picks the yardstick of output health.

Both diagnosis commands measure a set's output health against the model's outputs on something believed
healthy. ``bisect`` and ``compare-splits`` list their candidates in the same order of preference:

1. the **reference** (inputs drawn like the training inputs, given or rebuilt from the model's parameters);
2. the **ground truth** of the splits, where the command has one (``compare-splits``);
3. the **input sets themselves**, in the command's order (``bisect``: the passing set; ``compare-splits``:
   the first split, then the second).

A candidate is *trusted* when the model's outputs on it are healthy
(:func:`ptyanalysis.diagnosis.health.reference_problem` finds nothing) and, where the user gave a
criterion, they pass it. The yardstick is the first trusted candidate; when none is trusted, the first one
with healthy outputs that fails the criterion (the result says it fails itself); when none has healthy
outputs, there is no yardstick and health is measured by absolute checks only. Every candidate passed
over is recorded with the reason, so the command's output says why a reference was not used.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Candidate kinds, in the order of preference every command lists them.
KINDS = ("reference", "ground_truth", "inputs")


@dataclass(frozen=True)
class Candidate:
    """One would-be yardstick.

    Attributes
    ----------
    label : str
        Its name in the command's output (``"reference"``, ``"passing"``, a split name).
    kind : {"reference", "ground_truth", "inputs"}
    problem : str or None
        Why the model's outputs on it are not healthy (:func:`~ptyanalysis.diagnosis.health.reference_problem`);
        None when they are (always None for a ground truth).
    fails : bool or None
        Whether the outputs fail the user's criterion; None when there is no criterion.
    """

    label: str
    kind: str
    problem: str | None = None
    fails: bool | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Candidate kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def healthy(self) -> bool:
        return self.problem is None

    @property
    def trusted(self) -> bool:
        return self.problem is None and self.fails is not True


@dataclass(frozen=True)
class Yardstick:
    """The chosen yardstick and the candidates passed over.

    Attributes
    ----------
    label : str or None
        The chosen candidate's label; None: absolute checks only.
    kind : str or None
    trusted : bool
        False when the chosen candidate fails the criterion itself (or there is none).
    skipped : tuple of (str, str)
        ``(label, why)`` of each candidate before the chosen one.
    """

    label: str | None
    kind: str | None
    trusted: bool
    skipped: tuple = ()

    def why_skipped(self, label: str) -> str | None:
        """The reason candidate ``label`` was passed over, or None."""
        return dict(self.skipped).get(label)


def _why(c: Candidate) -> str:
    if c.problem is not None:
        return f"unusable: the model's outputs on it are not healthy ({c.problem})"
    return "fails the criterion"


def choose_yardstick(candidates) -> Yardstick:
    """Pick the yardstick of output health by the module's rule.

    Parameters
    ----------
    candidates : sequence of Candidate
        In order of preference (reference, ground truth, input sets); the order of :data:`KINDS` is
        checked.

    Returns
    -------
    Yardstick

    Raises
    ------
    ValueError
        Candidates out of the order of :data:`KINDS`, or two with one label.
    """
    candidates = list(candidates)
    ranks = [KINDS.index(c.kind) for c in candidates]
    if ranks != sorted(ranks):
        raise ValueError(f"candidates must be listed reference, ground truth, inputs; got "
                         f"{[c.kind for c in candidates]}")
    if len({c.label for c in candidates}) != len(candidates):
        raise ValueError(f"candidate labels must differ, got {[c.label for c in candidates]}")
    for choice in (next((c for c in candidates if c.trusted), None),
                   next((c for c in candidates if c.healthy), None)):
        if choice is not None:
            before = candidates[:candidates.index(choice)]
            return Yardstick(choice.label, choice.kind, choice.trusted,
                             tuple((c.label, _why(c)) for c in before))
    return Yardstick(None, None, False, tuple((c.label, _why(c)) for c in candidates))

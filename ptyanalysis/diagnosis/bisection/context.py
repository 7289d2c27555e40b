"""What every stage of a bisection works on: the :class:`Context`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .runner import Runner
from .settings import Settings


@dataclass
class Context:
    """The sets and the runner a stage works with.

    Attributes
    ----------
    runner : Runner
        Owns every model call and the evaluation budget.
    settings : Settings
    F : dict
        The working failing set (a seeded subsample of at most ``max_samples``, or the whole set).
    P : dict
        The comparison set: the passing set, or the reference standing in for a passing set that fails
        too (``against``).
    R : dict or None
        The reference (inputs drawn like the training inputs) for interventions, when trusted.
    F0 : dict
        The whole failing set.
    index_map : ndarray
        Row of the whole failing set of each working row.
    against : str
        ``"passing"`` or ``"reference"``.
    plabel : str
        How the comparison set is named in sentences.
    sample_flags : dict or None
        Per-sample health flags of the working failing set's outputs
        (:func:`ptyanalysis.diagnosis.health.sample_health`).
    input_info : dict
        Per-input comparison (drift, dtype, non-finite), filled by the inputs stage.
    """

    runner: Runner
    settings: Settings
    F: dict
    P: dict
    R: dict | None
    F0: dict
    index_map: np.ndarray
    against: str = "passing"
    plabel: str = "the passing set"
    sample_flags: dict | None = None
    input_info: dict = field(default_factory=dict)

    @property
    def names(self) -> list:
        """The model's input names."""
        return self.runner.names

    @property
    def used(self) -> list:
        """The inputs the model uses (the usage check found no effect of the others)."""
        return [k for k in self.runner.names if k not in self.runner.unused]

    def rng(self, stream: str) -> np.random.Generator:
        """The generator of one named random stream (:meth:`Settings.rng`)."""
        return self.settings.rng(stream)

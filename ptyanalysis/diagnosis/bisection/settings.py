"""The bisection's settings and constants: one frozen object, one seed.

Every random choice of a bisection (working subsamples, screening subsamples,
resampled swap values, batch shuffles) is drawn from :meth:`Settings.rng`, a
generator per named *stream* derived from the one ``seed``. The same seed gives
the same experiments; another seed changes the subsamples only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import PtyAnalysisError, did_you_mean

#: Causes within this much of the best ``restores`` are ranked by specificity.
TIE_TOLERANCE = 0.05
#: Largest sample subset (fraction of the working set) reported as a "samples" cause.
MAX_SUBSET_FRACTION = 0.05
#: Samples used for the runtime experiments and the layer probe.
RUNTIME_SAMPLES = 128
PROBE_SAMPLES = 128
#: Failing samples the input experiments run on.
SCREEN_SAMPLES = 512
#: Share of the reference health a fix must restore to count as the whole fix (docs/formats.md#bisection-restore-bar).
RESTORE_BAR = 0.95
#: When no single change restores this share of the health, changes on several inputs are combined.
COMBINE_BELOW = RESTORE_BAR
#: A sample whose largest |value| exceeds this many times the passing set's (99.9th percentile) is abnormal.
OUTLIER_FACTOR = 10.0
#: Batch size of the batch-composition experiments (also one of the batch sizes tried).
COMPOSITION_BATCH = 7
#: Change of a sample's outputs, relative to the output's largest |value|, that counts as "changed".
COMPOSITION_TOL = 1e-3
#: Share of the samples that must change with their neighbours for outputs to "depend on batch composition".
COMPOSITION_MIN_CHANGED = 0.01
#: Model calls the samples stage may spend.
SAMPLE_TESTS = 24
#: Largest sample lag the pairing stage looks for (also at most a quarter of the samples).
MAX_LAG = 64
#: Named random streams (one generator each, all derived from the one seed).
STREAMS = ("working", "runtime", "composition", "screen", "swap", "reverse_swap", "intervention", "samples",
           "probe", "pairing", "usage")


@dataclass(frozen=True)
class Settings:
    """How a bisection runs.

    Attributes
    ----------
    max_samples : int
        Work on seeded subsamples of at most this many samples per set.
    max_evaluations : int
        Budget of model calls (every call counts: experiments, the usage check, the layer probe).
    seed : int
        The one seed every random choice is drawn from (:meth:`rng`).
    probe_layers : bool
        Run the per-layer probe.
    """

    max_samples: int = 2000
    max_evaluations: int = 58
    seed: int = 0
    probe_layers: bool = True

    def __post_init__(self):
        if int(self.max_samples) < 2:
            raise PtyAnalysisError(f"max_samples must be at least 2, got {self.max_samples}")
        if int(self.max_evaluations) < 2:
            raise PtyAnalysisError(f"max_evaluations must be at least 2 (one model call per set), "
                                   f"got {self.max_evaluations}")
        if int(self.seed) < 0:
            raise PtyAnalysisError(f"seed must be >= 0, got {self.seed}")

    def rng(self, stream: str) -> np.random.Generator:
        """A fresh generator for one named stream (:data:`STREAMS`), derived from :attr:`seed`.

        Parameters
        ----------
        stream : str

        Returns
        -------
        numpy.random.Generator
            The same sequence for the same seed and stream, whatever ran before.
        """
        if stream not in STREAMS:
            raise PtyAnalysisError(f"unknown random stream {stream!r}: expected one of {', '.join(STREAMS)}"
                                   + did_you_mean(stream, STREAMS))
        return np.random.default_rng([int(self.seed), STREAMS.index(stream)])

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return dict(self.__dict__)

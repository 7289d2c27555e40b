"""A Baseline training run that stalls on a constant output is detected (and retrained with the next seed)."""

import numpy as np
import pytest

from ptyanalysis.synthetic import training

pytestmark = pytest.mark.neutral  # make test runs it again under JAX without TensorFlow


class _Net:
    """Stands in for the patch network: predict(x) -> [amplitude, phase]."""

    def __init__(self, fn):
        self.fn = fn

    def predict(self, x, verbose=0):
        return [self.fn(x), np.zeros_like(x)]


def test_a_constant_output_is_a_collapsed_training_run():
    rng = np.random.default_rng(0)
    Y = (0.5 + rng.random((300, 16, 16))) * np.exp(1j * rng.random((300, 16, 16)))
    x = np.abs(Y)[..., None].astype(np.float32) * 3.0
    flat = training._collapsed_training(_Net(lambda a: np.full_like(a, 0.566)), x, Y, seed=0)
    assert flat is not None and flat["output_spread"] == 0.0 and flat["truth_spread"] > 0.3
    assert training._collapsed_training(_Net(lambda a: a / 3.0), x, Y, seed=0) is None  # follows its input
    assert training.COLLAPSE_RETRIES >= 1

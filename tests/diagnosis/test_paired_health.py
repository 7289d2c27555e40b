"""Paired health (V7): each sample's outputs against its own outputs fed as the model was trained."""

import numpy as np
import pytest

from ptyanalysis.diagnosis.health import paired_health_scores
from ptyanalysis.errors import PtyAnalysisError


def test_paired_health_is_one_minus_the_relative_l1_per_output():
    rng = np.random.default_rng(0)
    t = np.abs(rng.normal(size=(20, 8, 8, 1))) + 0.1
    assert paired_health_scores([t], [t]) == [1.0]
    h = paired_health_scores([0.9 * t], [t])[0]
    assert h == pytest.approx(0.9)  # a 10 % weaker output, invisible to 20 %-tolerant statistics
    # statistics alike (same values, other samples' order) but every sample wrong
    assert paired_health_scores([t[::-1]], [t])[0] < 0.9
    assert paired_health_scores([np.zeros_like(t)], [t]) == [0.0]


def test_paired_health_complex_non_finite_and_no_yardstick():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(10, 4, 4)) + 1j * rng.normal(size=(10, 4, 4))
    y = t * np.exp(1j * 0.2)  # same moduli, phase off: the complex difference sees it
    expect = 1 - np.mean(np.abs(y - t)) / np.mean(np.abs(t))
    assert paired_health_scores([y], [t])[0] == pytest.approx(expect)
    assert expect < 0.9
    bad = t.copy()
    bad[0, 0, 0] = np.nan
    assert paired_health_scores([bad], [t]) == [0.0]
    assert np.isnan(paired_health_scores([t], [np.zeros_like(t)])[0])


def test_paired_health_needs_the_same_samples():
    with pytest.raises(PtyAnalysisError, match="same samples"):
        paired_health_scores([np.ones((5, 2))], [np.ones((6, 2))])
    with pytest.raises(PtyAnalysisError, match="same model"):
        paired_health_scores([np.ones((5, 2))], [])

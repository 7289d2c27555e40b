"""A single array whose name differs from a one-input model's input: used, with a notice naming both names."""

import warnings

import faults
import numpy as np
import pytest

from ptyanalysis.diagnosis.inputs import load_input_sets
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import load_model
from ptyanalysis.io import DatasetNotice

pytestmark = pytest.mark.tf


def test_misnamed_single_array_is_used_with_a_notice(tmp_path):
    case = faults.dead_model(n=8)
    path = tmp_path / "model.keras"
    case.model.save(path)
    loaded = load_model(path)
    npz = tmp_path / "set.npz"
    np.savez(npz, inputs=case.failing["x"])
    with pytest.warns(DatasetNotice, match=r"only array 'inputs' is fed as the model's only input 'x'"):
        sets, _ = load_input_sets(loaded, {"failing": npz})
    np.testing.assert_array_equal(sets["failing"]["x"], case.failing["x"])
    good = tmp_path / "good.npz"
    np.savez(good, x=case.failing["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetNotice)
        load_input_sets(loaded, {"passing": good})  # matching name: no notice
    two = tmp_path / "two.npz"
    np.savez(two, a=case.failing["x"], b=case.failing["x"])
    with pytest.raises(PtyAnalysisError, match="holds arrays"):
        load_input_sets(loaded, {"failing": two})

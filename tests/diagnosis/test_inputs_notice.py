"""A single array whose name differs from a one-input model's input: used, with a notice naming both names."""

import warnings

import numpy as np
import pytest

from ptyanalysis.diagnosis.inputs import load_input_sets
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import load_model
from ptyanalysis.io import DatasetNotice


def test_misnamed_single_array_is_used_with_a_notice(tmp_path, faults):
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


def test_a_split_file_or_a_folder_given_as_model_inputs_says_what_to_do(tmp_path, faults):
    case = faults.dead_model(n=8)
    path = tmp_path / "model.keras"
    case.model.save(path)
    loaded = load_model(path)
    split = tmp_path / "patched_test.npz"  # as a hub's split files: with an object-array _metadata
    np.savez(split, diffraction=np.ones((3, 4, 4), np.float32), xcoords=np.arange(3.0), ycoords=np.arange(3.0),
             _metadata=np.array([{"tool": "x"}], dtype=object))
    with pytest.raises(PtyAnalysisError, match=r"is a study dataset \(a split file.*add --study-inputs"):
        load_input_sets(loaded, {"failing": split})
    with pytest.raises(PtyAnalysisError, match="is a folder: give the .npz file inside it"):
        load_input_sets(loaded, {"failing": tmp_path})

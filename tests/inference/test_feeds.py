"""How a split is fed: the study's feed (what its comparison script fed) and the trained feed (numpy only)."""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile

import numpy as np
import pytest

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import feeds
from ptyanalysis.inference.loading import bundle_params
from ptyanalysis.inference.model import LoadedModel
from ptyanalysis.io import PtychoData, save_dataset

N = 16


def _split(n=40, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(2 * N, 8 * N, (n, 2))
    d = (rng.random((n, N, N)) * rng.uniform(0.5, 2.0, (n, 1, 1))).astype(np.float32)
    return PtychoData(diffraction=d, xcoords=pos[:, 1], ycoords=pos[:, 0], probe=np.ones((N, N)))


def test_study_feed_is_the_loaders_normalisation_without_intensity_scale_and_absolute_positions():
    data = _split()
    isc = 3.125
    study = feeds.study_model_inputs(data, {"intensity_scale": isc}, "study")
    trained = feeds.study_model_inputs(data, {"intensity_scale": isc}, "trained")
    # the loader's normalisation: mean total intensity per pattern (N/2)^2, as PtychoPINN's container X
    tot = np.mean(np.sum(study["input"].astype(np.float64) ** 2, axis=(1, 2, 3)))
    assert tot == pytest.approx((N / 2) ** 2, rel=1e-5)
    np.testing.assert_allclose(trained["input"], study["input"] * isc, rtol=1e-6)  # the first fault
    # the second fault: absolute [x, y] scan positions where training had zeros
    np.testing.assert_allclose(study["input_positions"][:, 0, :, 0], np.c_[data.xcoords, data.ycoords], rtol=1e-6)
    assert np.all(trained["input_positions"] == 0)
    for v in (*study.values(), *trained.values()):
        assert v.dtype == np.float32 and v.shape[0] == data.n
    # the study feed needs no parameters; the trained one needs intensity_scale
    np.testing.assert_array_equal(feeds.study_model_inputs(data, None, "study")["input"], study["input"])
    with pytest.raises(PtyAnalysisError, match="intensity_scale"):
        feeds.study_model_inputs(data, {}, "trained")
    with pytest.raises(PtyAnalysisError, match="mode must be one of"):
        feeds.study_model_inputs(data, {"intensity_scale": isc}, "scaled")


def test_chunks_use_the_whole_splits_normalisation():
    data = _split()
    mt = feeds.mean_total_intensity(data.diffraction)
    whole = feeds.normalise_diffraction(data.diffraction)
    part = feeds.normalise_diffraction(data.diffraction[:7], mean_total=mt)
    np.testing.assert_array_equal(part, whole[:7])
    np.testing.assert_allclose(feeds.scale_diffraction(data.diffraction, 2.0), 2.0 * whole, rtol=1e-6)


def test_split_inputs_for_any_gridsize():
    data = _split()
    p = {"intensity_scale": 0.5, "K_inference": 5}
    x1, c1, m1 = feeds.split_inputs(data, p, "study", gridsize=1)
    np.testing.assert_array_equal(x1["input"], feeds.study_model_inputs(data, p, "study")["input"])
    np.testing.assert_array_equal(c1, data.positions)
    assert m1.shape == (data.n, 1)
    # a subset of gridsize-1 members keeps the whole split's normalisation
    xs, cs, _ = feeds.split_inputs(data, p, "study", gridsize=1, members=np.arange(5, 9)[:, None])
    np.testing.assert_array_equal(xs["input"], x1["input"][5:9])
    np.testing.assert_array_equal(xs["input_positions"], x1["input_positions"][5:9])
    # gridsize 2: the study's script fed the PINN as it was trained (scaled, local offsets)
    s2, _, ms = feeds.split_inputs(data, p, "study", gridsize=2, seed=3)
    t2, _, mt = feeds.split_inputs(data, p, "trained", gridsize=2, seed=3)
    np.testing.assert_array_equal(ms, mt)
    for k in ("input", "input_positions"):
        np.testing.assert_array_equal(s2[k], t2[k])
    assert s2["input"].shape == (data.n, N, N, 4) and s2["input_positions"].shape == (data.n, 1, 2, 4)
    with pytest.raises(PtyAnalysisError, match="intensity_scale"):
        feeds.split_inputs(data, {}, "study", gridsize=2)


def test_feed_gridsize_from_parameters_or_input_shape():
    assert feeds.feed_gridsize({"gridsize": 2}, [(None, N, N, 4), (None, 1, 2, 4)]) == 2
    assert feeds.feed_gridsize({}, [(None, N, N, 4)]) == 2
    assert feeds.feed_gridsize(None, None) == 1
    with pytest.raises(PtyAnalysisError, match="gridsize 1 but its input has 4 channels"):
        feeds.feed_gridsize({"gridsize": 1}, [(None, N, N, 4)])
    with pytest.raises(PtyAnalysisError, match="3 channels"):
        feeds.feed_gridsize({}, [(None, N, N, 3)])


def _bundle(path, params):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("wts.h5/diffraction_to_obj/params.dill", pickle.dumps(params))
        zf.writestr("wts.h5/manifest.dill", pickle.dumps({"models": ["diffraction_to_obj"]}))
    return path


def test_bundle_params_are_read_from_the_bundle_itself(tmp_path):
    params = {"N": 64, "gridsize": 1, "intensity_scale": np.float64(3.125), "nphotons": 1e4,
              "probe": np.ones((4, 4), np.complex64), "label": "", "outer_offset_test": None}
    got = bundle_params(_bundle(tmp_path / "wts.h5.zip", params), loads=pickle.loads)
    assert got["intensity_scale"] == 3.125 and type(got["intensity_scale"]) is float
    assert got["gridsize"] == 1 and got["N"] == 64 and "probe" not in got
    assert got["_sidecar_path"].endswith("wts.h5.zip!wts.h5/diffraction_to_obj/params.dill")
    json.dumps(got)
    with pytest.raises(PtyAnalysisError, match="has no autoencoder/params.dill"):
        bundle_params(tmp_path / "wts.h5.zip", "autoencoder", loads=pickle.loads)
    with pytest.raises(PtyAnalysisError, match="cannot unpickle"):
        bundle_params(tmp_path / "wts.h5.zip", loads=lambda b: pickle.loads(b[:3]))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(PtyAnalysisError, match="not a readable zip"):
        bundle_params(tmp_path / "bad.zip", loads=pickle.loads)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("diffraction_to_obj/params.dill", pickle.dumps([1, 2]))
    (tmp_path / "list.zip").write_bytes(buf.getvalue())
    with pytest.raises(PtyAnalysisError, match="expected a dict"):
        bundle_params(tmp_path / "list.zip", loads=pickle.loads)


def _model(sidecar, C=1):
    return LoadedModel(model=None, input_names=["input", "input_positions"],
                       input_shapes=[(None, N, N, C), (None, 1, 2, C)], output_names=["trimmed_obj"],
                       source="wts.h5.zip", kind="ptychopinn_bundle", sidecar=sidecar)


def test_diagnosis_inputs_study_feed_and_reference_as_trained(tmp_path, caplog):
    from ptyanalysis.diagnosis.inputs import cli_input_sets, load_input_sets

    train, test = _split(seed=1), _split(seed=2)
    paths = {"passing": tmp_path / "train.npz", "failing": tmp_path / "test.npz"}
    save_dataset(paths["passing"], train)
    save_dataset(paths["failing"], test)
    loaded = _model({"intensity_scale": 3.125, "gridsize": 1, "N": N})
    said = []
    sets, datasets, ref = cli_input_sets(loaded, paths, study_inputs=True, trained_like="passing", say=said.append)
    # the sets are exactly what the study's comparison script fed
    want = feeds.study_model_inputs(datasets["failing"], None, "study")
    for k in want:
        np.testing.assert_array_equal(sets["failing"][k], want[k])
    # no --reference: the passing split fed as the model was trained (x intensity_scale, zero offsets)
    np.testing.assert_allclose(ref["input"], sets["passing"]["input"] * 3.125, rtol=1e-6)
    assert np.all(ref["input_positions"] == 0)
    assert said and "intensity_scale 3.125" in said[0]
    # the study feed of a gridsize-1 model needs no parameters; the trained reference does, and says so
    bare = _model(None)
    with caplog.at_level(logging.WARNING, logger="ptyanalysis.diagnosis"):
        sets2, _, ref2 = cli_input_sets(bare, paths, study_inputs=True, trained_like="passing")
    assert ref2 is None and "no reference built" in caplog.text
    np.testing.assert_array_equal(sets2["failing"]["input"], sets["failing"]["input"])
    # a gridsize-2 model without intensity_scale cannot be fed: the error names the file
    with pytest.raises(PtyAnalysisError, match=r"failing file .*test\.npz.*intensity_scale"):
        load_input_sets(_model({}, C=4), {"failing": paths["failing"]}, study_inputs=True)
    # the trained feed on request
    tr, _ = load_input_sets(loaded, {"failing": paths["failing"]}, study_inputs=True, mode="trained")
    np.testing.assert_allclose(tr["failing"]["input"], sets["failing"]["input"] * 3.125, rtol=1e-6)


def test_groups_are_normalised_over_the_grouped_stack_as_ptychopinns_loader():
    """PtychoPINN's normalize_data runs on the (b, N, N, C) stack: a pattern counts as often as it is grouped.
    Measured on a real PtychoPINN gs2 container: factor 0.381440 over the stack vs 0.381635 over the patterns."""
    data = _split(n=60, seed=3)
    inputs, _, members = feeds.group_inputs(data, 2, 1.0, K=7, seed=0)
    tot = np.mean(np.sum(inputs["input"].astype(np.float64) ** 2, axis=(1, 2)))  # per pattern of the stack
    assert tot == pytest.approx((N / 2) ** 2, rel=1e-5)
    per_pattern = feeds.mean_total_intensity(data.diffraction)
    stacked = feeds.mean_total_intensity(data.diffraction, members=members)
    assert stacked != pytest.approx(per_pattern, rel=1e-9)

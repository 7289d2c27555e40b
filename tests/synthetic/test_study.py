"""The synthetic study's arms, trained at ci size, and the reproduced incident."""

import json

import numpy as np
import pytest

from ptyanalysis import hub
from ptyanalysis.inference import feeds, loading, streaming
from ptyanalysis.synthetic import simulate

pytestmark = pytest.mark.neutral  # make test runs it again under JAX without TensorFlow

DOSE = 1e3


@pytest.fixture(scope="module")
def baseline(ci_hub):
    return loading.load_model(hub.model_dir(ci_hub, DOSE, "Baseline"))


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_models_are_saved_with_their_sidecar(ci_hub):
    for arm, view in (("Baseline", None), ("PtychoPINN", "dense"), ("PtychoPINN", "sparse")):
        d = hub.model_dir(ci_hub, DOSE, arm, view)
        assert (d / "model.keras").exists() and (d / "reference_inputs.npz").exists()
        side = json.loads((d / "params.json").read_text())
        assert side["arm"] == arm and side["gridsize"] == (1 if arm == "Baseline" else 2)
        assert side["intensity_scale"] == pytest.approx(np.sqrt(DOSE) / (side["N"] / 2))
        assert set(side["training_inputs"]) == {"input", "input_positions"}
        assert side["training"]["loss"][-1] < side["training"]["loss"][0]  # it trained
        m = loading.load_model(d)
        assert m.input_names == ["input", "input_positions"]
        C = side["gridsize"] ** 2
        assert m.input_shapes == [(None, side["N"], side["N"], C), (None, 1, 2, C)]


def test_baseline_training_inputs_had_zero_offsets(ci_hub):
    side = json.loads((hub.model_dir(ci_hub, DOSE, "Baseline") / "params.json").read_text())
    pos = side["training_inputs"]["input_positions"]
    assert pos["min"] == pos["max"] == 0.0


def test_incident_study_feeding_gives_exact_zeros_on_test_mostly_zeros_on_train(ci_hub, baseline):
    """Exactly what the study's comparison script fed: diffraction NOT multiplied by intensity_scale and the
    absolute global positions as input_positions (both faults of the real feed)."""
    test = hub.load_view(ci_hub, DOSE, "dense", "test")
    train = hub.load_view(ci_hub, DOSE, "dense", "train")
    fed_test = feeds.study_model_inputs(test, baseline.sidecar, "study")
    trained_test = feeds.study_model_inputs(test, baseline.sidecar, "trained")
    isc = baseline.sidecar["intensity_scale"]
    np.testing.assert_allclose(fed_test["input"] * isc, trained_test["input"], rtol=1e-6)  # unscaled
    assert np.all(fed_test["input_positions"][:, 0, 0, 0] == test.xcoords.astype(np.float32))  # absolute x
    out_test = streaming.predict(baseline, fed_test)[0]
    out_train = streaming.predict(baseline, feeds.study_model_inputs(train, baseline.sidecar, "study"))[0]
    assert out_test.shape == (test.n, test.N, test.N, 1)
    assert np.count_nonzero(out_test) == 0  # exactly zero, every pixel
    frac = np.count_nonzero(out_train) / out_train.size
    assert 0 < frac < 0.1  # "working" train split: mostly zeros


def test_the_missing_intensity_scale_is_a_fault_of_its_own(ci_hub, baseline):
    """Positions fixed (zeros, as trained) but the diffraction still unscaled: the output is nonzero yet
    not the trained output, so fixing the positions alone cannot restore the model's health."""
    d = hub.load_view(ci_hub, DOSE, "dense", "test")
    study = feeds.study_model_inputs(d, baseline.sidecar, "study")
    trained = feeds.study_model_inputs(d, baseline.sidecar, "trained")
    out_trained = streaming.predict(baseline, trained)[0]
    out_unscaled = streaming.predict(baseline, {"input": study["input"],
                                                "input_positions": trained["input_positions"]})[0]
    assert np.count_nonzero(out_unscaled) == out_unscaled.size
    rel = np.mean(np.abs(out_unscaled - out_trained)) / np.mean(np.abs(out_trained))
    assert rel > 0.05, rel


def test_feeding_what_it_was_trained_with_gives_sensible_reconstructions(ci_hub, baseline):
    for split in ("train", "test"):
        d = hub.load_view(ci_hub, DOSE, "dense", split)
        out = streaming.predict(baseline, feeds.study_model_inputs(d, baseline.sidecar, "trained"))[0][..., 0]
        assert np.count_nonzero(out) == out.size
        c = slice(d.N // 2 - d.N // 4, d.N // 2 + d.N // 4)
        assert _corr(np.abs(out)[:, c, c], np.abs(d.Y)[:, c, c]) > 0.2, split


def test_pinn_reconstructs_from_physics_alone(ci_hub):
    m = loading.load_model(hub.model_dir(ci_hub, DOSE, "PtychoPINN", "dense"))
    d = hub.load_view(ci_hub, DOSE, "dense", "test")
    inputs, centres, members = feeds.group_inputs(d, 2, m.sidecar["intensity_scale"], K=7)
    out = streaming.predict(m, inputs)[0][..., 0]
    assert np.all(np.isfinite(out))
    assert np.count_nonzero(out) > 0.95 * out.size  # only the merge canvas's uncovered edge pixels are 0
    # each output patch is centred on its group's mean position: compare with the object cut there
    gt = simulate.extract_patches(d.obj, np.rint(centres), d.N)
    c = slice(d.N // 2 - d.N // 8, d.N // 2 + d.N // 8)
    assert _corr(np.abs(out)[:, c, c], np.abs(gt)[:, c, c]) > 0.2


def test_iterative_arm_is_labelled_honestly(ci_hub):
    p = hub.ptychi_path(ci_hub, DOSE, "dense", "test")
    with np.load(p) as z:
        assert "rPIE" in str(z["algorithm"]) and "pty-chi not used" in str(z["algorithm"])
        assert z["reconstructed_object"].ndim == 2 and np.iscomplexobj(z["reconstructed_object"])

"""The synthetic study's arms, trained at ci size, and the reproduced incident."""

import json

import numpy as np
import pytest

from ptyanalysis import hub
import ptyanalysis.inference.loading as inference_loading
import ptyanalysis.inference.streaming as inference_streaming
import ptyanalysis.inference.feeds as models_feeds
import ptyanalysis.hub as synth_hub
import ptyanalysis.synthetic.simulate as synth_simulate

pytestmark = pytest.mark.tf

DOSE = 1e3


@pytest.fixture(scope="module")
def baseline(ci_hub):
    return inference_loading.load_model(hub.model_dir(ci_hub, DOSE, "Baseline"))


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
        m = inference_loading.load_model(d)
        assert m.input_names == ["input", "input_positions"]
        C = side["gridsize"] ** 2
        assert m.input_shapes == [(None, side["N"], side["N"], C), (None, 1, 2, C)]


def test_baseline_training_inputs_had_zero_offsets(ci_hub):
    side = json.loads((hub.model_dir(ci_hub, DOSE, "Baseline") / "params.json").read_text())
    pos = side["training_inputs"]["input_positions"]
    assert pos["min"] == pos["max"] == 0.0


def test_incident_study_feeding_gives_exact_zeros_on_test_mostly_zeros_on_train(ci_hub, baseline):
    """What the study's comparison script did: absolute global positions as input_positions."""
    test = synth_hub.load_view(ci_hub, DOSE, "dense", "test")
    train = synth_hub.load_view(ci_hub, DOSE, "dense", "train")
    out_test = inference_streaming.predict(baseline, models_feeds.study_model_inputs(test, baseline.sidecar, "study"))[0]
    out_train = inference_streaming.predict(baseline, models_feeds.study_model_inputs(train, baseline.sidecar, "study"))[0]
    assert out_test.shape == (test.n, test.N, test.N, 1)
    assert np.count_nonzero(out_test) == 0  # exactly zero, every pixel
    frac = np.count_nonzero(out_train) / out_train.size
    assert 0 < frac < 0.1  # "working" train split: mostly zeros


def test_feeding_what_it_was_trained_with_gives_sensible_reconstructions(ci_hub, baseline):
    for split in ("train", "test"):
        d = synth_hub.load_view(ci_hub, DOSE, "dense", split)
        out = inference_streaming.predict(baseline, models_feeds.study_model_inputs(d, baseline.sidecar, "trained"))[0][..., 0]
        assert np.count_nonzero(out) == out.size
        c = slice(d.N // 2 - d.N // 4, d.N // 2 + d.N // 4)
        assert _corr(np.abs(out)[:, c, c], np.abs(d.Y)[:, c, c]) > 0.2, split


def test_pinn_reconstructs_from_physics_alone(ci_hub):
    m = inference_loading.load_model(hub.model_dir(ci_hub, DOSE, "PtychoPINN", "dense"))
    d = synth_hub.load_view(ci_hub, DOSE, "dense", "test")
    inputs, centres, members = models_feeds.group_inputs(d, 2, m.sidecar["intensity_scale"], K=7)
    out = inference_streaming.predict(m, inputs)[0][..., 0]
    assert np.all(np.isfinite(out))
    assert np.count_nonzero(out) > 0.95 * out.size  # only the merge canvas's uncovered edge pixels are 0
    # each output patch is centred on its group's mean position: compare with the object cut there
    gt = synth_simulate.extract_patches(d.obj, np.rint(centres), d.N)
    c = slice(d.N // 2 - d.N // 8, d.N // 2 + d.N // 8)
    assert _corr(np.abs(out)[:, c, c], np.abs(gt)[:, c, c]) > 0.2


def test_iterative_arm_is_labelled_honestly(ci_hub):
    p = hub.ptychi_path(ci_hub, DOSE, "dense", "test")
    with np.load(p) as z:
        assert "rPIE" in str(z["algorithm"]) and "pty-chi not used" in str(z["algorithm"])
        assert z["reconstructed_object"].ndim == 2 and np.iscomplexobj(z["reconstructed_object"])

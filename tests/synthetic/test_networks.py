"""The synthetic networks: keras.ops translation, reassembly variants, size, saving."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ptyanalysis.synthetic.training import TRAIN_CONFIGS, config_with

pytestmark = pytest.mark.neutral  # make test runs it again under JAX without TensorFlow


@pytest.fixture(scope="module")
def nw(keras):
    """``ptyanalysis.synthetic.networks``, which imports Keras (tier tf)."""
    from ptyanalysis.synthetic import networks

    return networks


@pytest.mark.parametrize("shift", [(2.3, -1.6), (-0.5, 0.25), (7.0, 3.0)])
def test_translate_is_bilinear_with_zero_fill(shift, nw):
    from scipy.ndimage import shift as nd_shift

    img = np.random.default_rng(1).random((1, 40, 40, 2)).astype(np.float32)
    out = np.asarray(nw._translate(img, np.array([shift], np.float32)))
    for c in range(2):
        ref = nd_shift(img[0, :, :, c], shift, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(out[0, :, :, c], ref, atol=1e-5)


def _baseline(nw, reassembly):
    return nw.build_models(16, 1, 1.0, filters=(4, 8, 8), reassembly=reassembly)["diffraction_to_obj"]


def test_batch_centred_reassembly_depends_on_batch_neighbours(nw):
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype(np.float32)
    absolute = np.zeros((4, 1, 2, 1), np.float32)
    absolute[:, 0, 0, 0] = [100.0, 101.0, 140.0, 99.0]  # absolute x positions, as the study fed them
    absolute[:, 0, 1, 0] = 200.0
    study, centred = _baseline(nw, "study"), _baseline(nw, "batch_centred")
    centred.set_weights(study.get_weights())
    # the study's merge: absolute positions push every patch off the small canvas -> exactly zero
    assert not np.any(np.asarray(study([x, absolute])))
    # per-batch centring: samples near the batch mean survive, and sample 0's output changes with
    # the samples that share its batch (alone it is centred exactly)
    together = np.asarray(centred([x, absolute]))
    alone = np.asarray(centred([x[:1], absolute[:1]]))
    assert np.any(together[0]) and not np.any(together[2])
    assert not np.allclose(alone[0], together[0])
    # zero offsets (as trained): both variants agree and do not depend on the batch
    zeros = np.zeros_like(absolute)
    np.testing.assert_allclose(np.asarray(study([x, zeros])), np.asarray(centred([x, zeros])), atol=1e-6)


def test_networks_are_convolutional_and_small(keras, nw):
    counts = {}
    for size, N in (("ci", 32), ("demo", 64), ("study", 128)):
        net = nw.build_patch_network(N, 1.0, TRAIN_CONFIGS[size].filters)
        assert not any(isinstance(layer, keras.layers.Dense) for layer in net.layers)
        counts[size] = net.count_params()
    assert counts["study"] < 2_000_000, counts  # was 269 M with the dense bottleneck


def test_saved_inference_model_has_no_optimizer_and_loads_in_a_fresh_process(tmp_path, keras, nw):
    from ptyanalysis.synthetic.training import _inference_copy

    def build():
        return nw.build_models(16, 1, 1.0, filters=(4, 8, 8))

    built = build()
    net = built["patch_network"]
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mae", "mse"])
    x = np.random.default_rng(0).random((8, 16, 16, 1)).astype(np.float32)
    net.fit(x, [x, x], epochs=1, verbose=0)
    model = _inference_copy(built, build)
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert not any("optimizer" in n for n in zf.namelist())
    np.testing.assert_array_equal(model.get_weights()[0], built["diffraction_to_obj"].get_weights()[0])
    # a fresh process that never imports the networks module: the loader imports it from the file's config
    code = ("import numpy as np; from ptyanalysis.inference import load_model; "
            f"m = load_model({str(path)!r}); import sys; "
            "print(m.input_names, 'ptyanalysis.synthetic.networks' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "['input', 'input_positions'] True" in out.stdout


def test_step_budget_overrides_the_preset():
    cfg = config_with(TRAIN_CONFIGS["study"], steps=300, baseline_reassembly="batch_centred")
    assert (cfg.baseline_steps, cfg.pinn_steps, cfg.baseline_reassembly) == (300, 300, "batch_centred")
    assert cfg.filters == TRAIN_CONFIGS["study"].filters

"""Running where the users are: the Keras backend choice, the one runner on every backend, no TensorFlow needed.

The module is in the ``neutral`` tier: ``make test`` runs it a second time under Keras-JAX with TensorFlow made
unimportable (``tests/support/no_tensorflow``); ``test_no_tensorflow.py`` runs the commands both ways.
"""

import subprocess
import sys

import numpy as np
import pytest
from test_no_tensorflow import _env

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import backends

pytestmark = pytest.mark.neutral  # Keras models (any backend); run again without TensorFlow


# ----------------------------------------------------------------------------- the choice
def test_an_explicit_request_wins_then_the_environment_then_the_automatic_order(monkeypatch):
    monkeypatch.setattr(backends, "_imported_keras_backend", lambda: None)
    monkeypatch.setattr(backends, "installed_backends", lambda: ["tensorflow", "jax"])
    monkeypatch.setattr(backends, "installed", lambda m: m in ("tensorflow", "jax"))
    env = {"KERAS_BACKEND": "tensorflow"}
    c = backends.select_keras_backend("jax", environ=env)
    assert (c.name, c.source, env["KERAS_BACKEND"]) == ("jax", "requested", "jax")
    env = {"KERAS_BACKEND": "jax"}
    assert backends.select_keras_backend(None, environ=env).source == "KERAS_BACKEND"
    monkeypatch.setattr(backends, "gpu_may_exist", lambda: False)
    env = {}
    c = backends.select_keras_backend(environ=env)
    assert (c.name, c.source, env["KERAS_BACKEND"]) == ("tensorflow", "automatic", "tensorflow")
    assert "also installed: jax" in c.reason
    monkeypatch.setattr(backends, "gpu_may_exist", lambda: True)
    assert backends.select_keras_backend(environ={}).name == "jax"  # the fastest installed where a GPU may be


def test_bad_choices_say_what_to_do(monkeypatch):
    monkeypatch.setattr(backends, "_imported_keras_backend", lambda: None)
    monkeypatch.setattr(backends, "installed_backends", lambda: ["jax"])
    monkeypatch.setattr(backends, "installed", lambda m: m == "jax")
    with pytest.raises(PtyAnalysisError, match="did you mean 'torch'"):
        backends.select_keras_backend("trch", environ={})
    with pytest.raises(PtyAnalysisError, match=r"not installed.*ptyanalysis\[tensorflow\].*installed one: jax"):
        backends.select_keras_backend("tensorflow", environ={})
    monkeypatch.setattr(backends, "installed_backends", lambda: [])
    with pytest.raises(PtyAnalysisError, match="no Keras backend is installed"):
        backends.select_keras_backend(environ={})
    monkeypatch.setattr(backends, "_imported_keras_backend", lambda: "tensorflow")
    monkeypatch.setattr(backends, "installed", lambda m: True)
    with pytest.raises(PtyAnalysisError, match="cannot switch backends"):
        backends.select_keras_backend("jax", environ={})


@pytest.mark.parametrize("spec, want", [("cpu", ("cpu", None)), ("/CPU:0", ("cpu", 0)), ("gpu:1", ("gpu", 1)),
                                        ("cuda:0", ("gpu", 0)), ("/device:GPU:2", ("gpu", 2)), ("GPU", ("gpu", None))])
def test_device_names(spec, want):
    assert backends.parse_device(spec) == want


def test_a_device_that_is_no_device_is_refused_when_configured():
    from ptyanalysis.inference.runtime import RuntimeConfig

    with pytest.raises(PtyAnalysisError, match="not a device name"):
        RuntimeConfig(device="tpu7")


# ----------------------------------------------------------------------------- no TensorFlow
def test_the_command_line_starts_and_checks_arguments_without_any_framework(tmp_path):
    """Bad input is refused before Keras, TensorFlow, JAX or PyTorch is imported (and without TensorFlow at all)."""
    code = ("import sys\nfrom ptyanalysis.cli import main\n"
            f"rc = main(['compare', {str(tmp_path / 'nohub')!r}, '--dose', '1000', '--view', 'dense', "
            "'--split', 'test'])\n"
            "print('rc', rc, sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env("jax", True),
                       cwd=tmp_path, timeout=120)
    assert "rc 2 []" in r.stdout, (r.stdout, r.stderr)
    assert "nohub" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "--help"], capture_output=True, text=True,
                       env=_env("jax", True), timeout=120)
    assert r.returncode == 0 and "compare" in r.stdout


def test_a_model_kind_that_needs_tensorflow_says_so_in_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"\0")
    code = ("from ptyanalysis.inference.loading import load_model\n"
            f"load_model({str(tmp_path / 'm')!r})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env("jax", True),
                       timeout=120)
    assert r.returncode != 0
    assert "SavedModel" in r.stderr and "needs TensorFlow, which is not installed here" in r.stderr
    assert "ptyanalysis[tensorflow]" in r.stderr
    import zipfile

    bundle = tmp_path / "wts.h5.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for member in ("manifest.dill", "diffraction_to_obj/model.keras", "diffraction_to_obj/params.dill"):
            zf.writestr(member, b"")
    r = subprocess.run([sys.executable, "-c", f"from ptyanalysis.inference.loading import load_model\n"
                        f"load_model({str(bundle)!r})\n"], capture_output=True, text=True, env=_env("jax", True),
                       timeout=120)
    assert r.returncode != 0 and "TensorFlow, which a PtychoPINN TensorFlow bundle needs" in r.stderr


# ----------------------------------------------------------------------------- the one runner
@pytest.fixture(scope="module")
def small_model(keras):
    """A two-input, two-output Keras model (the active backend) with fixed weights."""
    a = keras.Input((8, 8, 1), name="input")
    b = keras.Input((1, 2, 1), name="input_positions")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(a)
    y = keras.layers.Flatten()(b)
    x = keras.layers.Add(name="out_a")([keras.layers.GlobalAveragePooling2D()(x), keras.layers.Dense(3)(y)])
    model = keras.Model([a, b], [x, keras.layers.Dense(2, name="out_b")(x)])
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_the_runner_streams_on_the_active_backend_and_records_it(small_model):
    from ptyanalysis.inference.runtime import RuntimeConfig
    from ptyanalysis.inference.streaming import predict, run_inference

    rng = np.random.default_rng(1)
    x = {"input": rng.normal(size=(37, 8, 8, 1)).astype("float32"),
         "input_positions": rng.normal(size=(37, 1, 2, 1)).astype("float32")}
    ref = [np.asarray(o) for o in small_model.predict([x["input"], x["input_positions"]], verbose=0)]
    for rt in (RuntimeConfig(batch_size=8), RuntimeConfig(batch_size=5, run_eagerly=True),
               RuntimeConfig(batch_size=16, device="cpu", dtype="float32", deterministic=True)):
        res = run_inference(small_model, x, rt, progress=False)
        for o, r in zip(res.outputs, ref):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)
        run = res.runtime
        assert run["backend"] == backends.keras_backend() and run["device"] == "cpu:0"
        assert run["versions"]["keras_backend"] == run["backend"]
    outs = predict(small_model, [x["input"], x["input_positions"]], RuntimeConfig(batch_size=64))
    np.testing.assert_allclose(outs[1], ref[1], rtol=1e-5, atol=1e-5)


def test_an_unavailable_device_is_an_error_not_a_fallback(small_model):
    from ptyanalysis.inference.runtime import RuntimeConfig
    from ptyanalysis.inference.streaming import predict

    x = [np.zeros((2, 8, 8, 1), "float32"), np.zeros((2, 1, 2, 1), "float32")]
    with pytest.raises(PtyAnalysisError, match="not available"):
        predict(small_model, x, RuntimeConfig(device="gpu:7"))


def test_the_bisections_runtime_experiments_are_those_the_backend_offers(small_model):
    from ptyanalysis.diagnosis.bisection.stages.runtime import runtime_factors as _runtime_factors
    from ptyanalysis.inference.loading import load_model
    from ptyanalysis.inference.runtime import RuntimeConfig

    loaded = load_model(small_model)
    F = {"input": np.zeros((4, 8, 8, 1), "float32")}
    factors = {f for f, _, _ in _runtime_factors(RuntimeConfig(batch_size=2), F, 4, loaded)}
    assert {"batch_size", "dtype"} <= factors
    assert ("jit_compile" in factors) == (loaded.backend == "tensorflow")  # JAX always compiles with XLA
    assert ("run_eagerly" in factors) == (loaded.backend != "torch")
    assert "device" not in factors  # one device here


def test_network_outputs_are_stitched_where_they_are(monkeypatch):
    from ptyanalysis.imaging import stitching
    from ptyanalysis.pipeline.compare import CompareConfig, stitch_backend_for

    assert stitch_backend_for("cpu:0") == "numpy"
    monkeypatch.setattr(stitching, "gpu_backend", lambda: None)
    assert stitch_backend_for("gpu:0") == "numpy"  # outputs on a GPU no array library can use
    monkeypatch.setattr(stitching, "gpu_backend", lambda: stitching.ArrayBackend("torch", "cuda"))
    be = stitch_backend_for("gpu:1")
    assert (be.name, be.device) == ("torch", "cuda:1")
    assert stitch_backend_for("gpu:1", "cpu") == "numpy"
    with pytest.raises(PtyAnalysisError, match="stitch_on"):
        CompareConfig(stitch_on="gpu")


def test_a_plain_pytorch_module_runs_through_the_runner_and_its_layers_are_probed_by_hooks(torch):
    from ptyanalysis.diagnosis.bisection.probe import layer_probe
    from ptyanalysis.diagnosis.bisection.probe import layer_stats as _layer_stats
    from ptyanalysis.inference.loading import load_model
    from ptyanalysis.inference.runtime import RuntimeConfig
    from ptyanalysis.inference.streaming import predict, run_inference

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.dead = torch.nn.ReLU()
            self.head = torch.nn.Conv2d(2, 1, 1)

        def forward(self, diffraction, scale):
            return self.head(self.dead(self.conv(diffraction) - 1e6)) * scale[:, None, None, None]

    torch.manual_seed(0)
    net = Net()
    loaded = load_model(net)
    assert (loaded.backend, loaded.kind, loaded.input_names) == ("torch", "torch_module", ["diffraction", "scale"])
    x = np.random.default_rng(0).random((11, 1, 8, 8), dtype=np.float32)
    s = np.ones(11, np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    res = run_inference(loaded, {"diffraction": x, "scale": s}, RuntimeConfig(batch_size=4), progress=False)
    np.testing.assert_allclose(res.outputs[0], ref, rtol=1e-6, atol=1e-6)
    assert res.runtime["backend"] == "torch" and res.runtime["device"] == "cpu:0"
    assert res.stats[res.output_names[0]].to_dict()["nonzero"] == ref.size  # the head's bias survives
    probe, names, reason = layer_probe(net)
    assert reason is None and names == ["conv", "dead", "head"]
    acts = predict(load_model(probe), [x, s], RuntimeConfig(batch_size=4))
    zero_fractions = [r[0] for r in _layer_stats(acts)]
    assert probe.names == ["conv", "dead", "head"]
    assert zero_fractions[0] < 0.5 and zero_fractions[1] == 1.0  # activations die at the ReLU


def test_a_model_changed_between_calls_is_never_run_stale(small_model):
    """The compiled function (cached per model) runs the weights the model has at each call."""
    from ptyanalysis.inference.runtime import RuntimeConfig
    from ptyanalysis.inference.streaming import predict

    x = [np.ones((3, 8, 8, 1), "float32"), np.ones((3, 1, 2, 1), "float32")]
    before = predict(small_model, x, RuntimeConfig(batch_size=4))[1]
    saved = small_model.get_weights()
    try:
        small_model.set_weights([2 * w for w in saved])
        after = predict(small_model, x, RuntimeConfig(batch_size=4))[1]
        ref = np.asarray(small_model.predict(x, verbose=0)[1])
    finally:
        small_model.set_weights(saved)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-5)

"""Tests of ptyanalysis.inference: model loading and streaming inference."""

from __future__ import annotations

import gc
import importlib.util
import json
import weakref
import zipfile

import numpy as np
import pytest

from ptyanalysis import inference as inf
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import LoadedModel, RuntimeConfig, describe_model, load_model, predict, run_inference

N = 8


def _two_input_model(keras):
    """PINN-like: image (N, N, 1) + positions (1, 2, 1) -> two outputs."""
    img = keras.Input((N, N, 1), name="input")
    pos = keras.Input((1, 2, 1), name="input_positions")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(img)
    h = keras.layers.Conv2D(1, 3, padding="same", name="amp")(h)
    p = keras.layers.Dense(1)(keras.layers.Flatten()(pos))
    p = keras.layers.UpSampling2D((N, N))(keras.layers.Reshape((1, 1, 1))(p))
    phase = keras.layers.Add(name="phase")([h, p])
    return keras.Model([img, pos], [h, phase])


@pytest.fixture(scope="module")
def model(keras):
    keras.utils.set_random_seed(0)
    return _two_input_model(keras)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 37
    return {
        "input": rng.normal(size=(n, N, N, 1)).astype(np.float32),
        "input_positions": rng.normal(size=(n, 1, 2, 1)).astype(np.float32),
    }


# ----------------------------------------------------------------------------- loading


def test_load_keras_file_and_dir_with_sidecar(tmp_path, model, data):
    d = tmp_path / "baseline" / "gs1"
    d.mkdir(parents=True)
    model.save(d / "model.keras")
    (d / "model.json").write_text(json.dumps({"intensity_scale": 2.5, "N": N, "gridsize": 1}))
    for spec in (d, d / "model.keras"):
        lm = load_model(spec)
        assert lm.kind == "keras"
        assert lm.input_names == ["input", "input_positions"]
        assert lm.input_shapes == [(None, N, N, 1), (None, 1, 2, 1)]
        assert lm.output_names == ["amp", "phase"]
        assert lm.sidecar["intensity_scale"] == 2.5
        out = predict(lm, data)
        ref = model.predict(data, verbose=0)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-6)
    desc = describe_model(lm)
    assert desc["inputs"][0] == {"name": "input", "shape": [None, N, N, 1], "dtype": "float32"}
    assert desc["n_params"] == model.count_params()


def test_params_json_sidecar_and_bad_sidecar(tmp_path, model):
    model.save(tmp_path / "m.keras")
    (tmp_path / "params.json").write_text(json.dumps({"N": N}))
    assert load_model(tmp_path).sidecar["N"] == N
    (tmp_path / "params.json").write_text("{not json")
    with pytest.raises(PtyAnalysisError, match="params.json is not valid JSON"):
        load_model(tmp_path)


def test_load_savedmodel_dir(tmp_path, model, data):
    d = tmp_path / "sm"
    model.export(str(d), verbose=False)
    lm = load_model(d)
    assert lm.kind == "savedmodel"
    assert lm.input_names == ["input", "input_positions"]  # ordered by name, every process
    assert lm.input_shapes == [(None, N, N, 1), (None, 1, 2, 1)]
    assert lm.output_names == ["output_0", "output_1"]
    out = run_inference(lm, data, RuntimeConfig(batch_size=10)).outputs
    ref = model.predict(data, verbose=0)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-5, atol=1e-6)


@pytest.mark.tf  # the factory builds a Keras model
def test_factory_string(tmp_path, monkeypatch, data):
    (tmp_path / "fake_factory_mod.py").write_text(
        "import keras\n"
        "def build():\n"
        "    x = keras.Input((4,), name='x')\n"
        "    return keras.Model(x, keras.layers.Dense(2, name='y')(x))\n"
        "def bad():\n"
        "    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    lm = load_model("fake_factory_mod:build")
    assert lm.kind == "factory" and lm.input_names == ["x"] and lm.output_names == ["y"]
    assert predict(lm, np.ones((5, 4), np.float32))[0].shape == (5, 2)
    with pytest.raises(PtyAnalysisError, match="must return a Keras model"):
        load_model("fake_factory_mod:bad")
    with pytest.raises(PtyAnalysisError, match="cannot import module"):
        load_model("no_such_module_xyz:build")


@pytest.mark.tf  # load_model imports Keras before it reads the file
def test_h5_without_tf_keras(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tf_keras", None)  # import -> ImportError
    bad = tmp_path / "baseline_model.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(PtyAnalysisError) as err:
        load_model(bad)
    msg = str(err.value)
    assert "install tf_keras==2.21.0" in msg and "pip install 'ptyanalysis[legacy]'" in msg
    assert str(bad) in msg


def _fake_find_spec(real):
    def find_spec(name, *a, **k):
        return None if name in ("ptycho", "dill") else real(name, *a, **k)
    return find_spec


def test_bundle_without_ptycho(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", _fake_find_spec(importlib.util.find_spec))
    d = tmp_path / "pinn"
    d.mkdir()
    with zipfile.ZipFile(d / "wts.h5.zip", "w") as zf:
        zf.writestr("manifest.dill", b"x")
        for m in ("autoencoder", "diffraction_to_obj"):
            zf.writestr(f"{m}/model.keras", b"x")
            zf.writestr(f"{m}/custom_objects.dill", b"x")
        zf.writestr("diffraction_to_obj/params.dill", b"x")
    for spec in (d, d / "wts.h5.zip"):
        with pytest.raises(PtyAnalysisError) as err:
            load_model(spec)
        msg = str(err.value)
        assert "`ptycho` package (PtychoPINN)" in msg and "`dill`" in msg
        assert "manifest.dill: found" in msg
        assert "diffraction_to_obj/params.dill: found" in msg
        assert "autoencoder/params.dill: MISSING" in msg


def test_missing_unknown_corrupt(tmp_path):
    with pytest.raises(PtyAnalysisError, match="does not exist"):
        load_model(tmp_path / "nope.keras")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(PtyAnalysisError, match="unknown model file type '.onnx'"):
        load_model(tmp_path / "m.onnx")
    (tmp_path / "m.keras").write_bytes(b"garbage")
    with pytest.raises(PtyAnalysisError, match="is not a Keras .keras file: it is not a zip archive"):
        load_model(tmp_path / "m.keras")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PtyAnalysisError, match="no model found in directory"):
        load_model(empty)
    with pytest.raises(PtyAnalysisError, match="not a readable zip"):
        (tmp_path / "wts.h5.zip").write_bytes(b"garbage")
        load_model(tmp_path / "wts.h5.zip")


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    "runtime",
    [
        RuntimeConfig(batch_size=8),
        RuntimeConfig(batch_size=8, jit_compile=True),
        RuntimeConfig(batch_size=8, run_eagerly=True),
        RuntimeConfig(batch_size=64),
        RuntimeConfig(batch_size=5, dtype="float64", device="/CPU:0", deterministic=True),
    ],
    ids=["graph", "jit", "eager", "one-chunk", "f64-cpu-det"],
)
def test_streaming_equals_predict(model, data, runtime, tensorflow, keras):
    ref = model.predict(data, batch_size=8, verbose=0)
    res = run_inference(model, data, runtime, progress=False)
    assert res.n_samples == 37 and res.output_names == ["amp", "phase"]
    for o, r in zip(res.outputs, ref):
        assert o.shape == r.shape
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)
    rt = res.runtime
    bs = runtime.batch_size
    assert rt["batch_sizes"] == ([bs, 37 % bs] if bs < 37 and 37 % bs else [min(bs, 37)])
    assert rt["device"] == "cpu:0" and rt["backend"] == "tensorflow"
    assert rt["mode"] == ("eager" if runtime.run_eagerly else "graph")
    assert rt["jit_compile"] == runtime.jit_compile and rt["dtype"] == runtime.dtype
    assert rt["tensorflow"] == tensorflow.__version__ and rt["keras"] == keras.__version__
    assert rt["samples_per_s"] > 0 and rt["elapsed_s"] > 0
    assert len(res.stats["amp"].chunks) == len(rt["batch_sizes"]) if bs >= 37 else True
    json.dumps(res.to_dict())  # JSON-safe


def test_list_inputs_and_predict_cache(model, data):
    from ptyanalysis import state

    xs = [data["input"], data["input_positions"]]
    a = predict(model, xs, RuntimeConfig(batch_size=16))
    fns = dict(state.function_store(model))
    assert fns and state.describe()["compiled_functions"]["entries"] >= 1
    b = predict(model, data, RuntimeConfig(batch_size=16))
    np.testing.assert_array_equal(a[1], b[1])
    assert state.function_store(model) == fns  # the compiled function is reused
    with state.caching_disabled("compiled_functions"):  # the store off: nothing kept, results the same
        assert state.function_store(model) is None and not state.enabled("compiled_functions")
        np.testing.assert_array_equal(predict(model, data, RuntimeConfig(batch_size=16))[1], b[1])
    assert state.function_store(model) == fns  # kept for after the block
    state.clear_caches("compiled_functions")
    assert state.describe()["compiled_functions"]["entries"] == 0


def test_raw_model_cache_does_not_keep_model_alive(keras):
    x = keras.Input((3,), name="x")
    m = keras.Model(x, keras.layers.Dense(2)(x))
    predict(m, np.ones((4, 3), np.float32))
    ref = weakref.ref(m)
    del m, x
    gc.collect()
    assert ref() is None


def test_input_mismatch_refused(model, data):
    with pytest.raises(PtyAnalysisError, match="missing: input_positions"):
        run_inference(model, {"input": data["input"]})
    with pytest.raises(PtyAnalysisError, match=r"inputs are \[input, input_positions\]; unknown: pos"):
        run_inference(model, {"input": data["input"], "pos": data["input_positions"]})
    with pytest.raises(PtyAnalysisError, match="different sample counts"):
        predict(model, {"input": data["input"], "input_positions": data["input_positions"][:10]})
    with pytest.raises(PtyAnalysisError, match="takes 2 input"):
        predict(model, [data["input"]])
    with pytest.raises(PtyAnalysisError, match="per-sample shape"):
        predict(model, {"input": data["input"][:, :4], "input_positions": data["input_positions"]})
    with pytest.raises(PtyAnalysisError, match="jit_compile=True needs graph mode"):
        RuntimeConfig(jit_compile=True, run_eagerly=True)
    with pytest.raises(PtyAnalysisError, match="not available"):
        predict(model, data, RuntimeConfig(device="/GPU:7"))


def test_output_rows_must_match_samples(keras):
    """A model returning one row per group member (or fewer rows) is refused, never misaligned."""
    x = keras.Input((4,), name="x")
    flat = keras.Model(x, keras.ops.reshape(keras.layers.Dense(2)(x), (-1, 1)))  # 2 rows per sample
    arr = np.zeros((5, 4), np.float32)
    with pytest.raises(PtyAnalysisError, match="one row per"):
        predict(flat, arr)
    with pytest.raises(PtyAnalysisError, match="one row per"):
        run_inference(flat, arr, RuntimeConfig(batch_size=2), consumers=[lambda outs, start: None])


def test_out_dir_and_consumers(tmp_path, model, data):
    seen = []

    def consumer(outs, start):
        seen.append((start, len(outs[0]), outs[1].copy()))

    res = run_inference(model, data, RuntimeConfig(batch_size=10), consumers=[consumer],
                        out_dir=tmp_path / "out", out_names=["amp_out", "phase_out"])
    assert res.outputs is None
    assert [(s, k) for s, k, _ in seen] == [(0, 10), (10, 10), (20, 10), (30, 7)]
    ref = model.predict(data, verbose=0)
    np.testing.assert_allclose(np.concatenate([o for *_, o in seen]), ref[1], rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["amp_out.npy", "phase_out.npy"]
    amp = np.load(res.paths["amp"], mmap_mode="r")
    np.testing.assert_allclose(amp, ref[0], rtol=1e-5, atol=1e-6)


def test_out_dir_failure_leaves_nothing(tmp_path, model, data):
    def boom(outs, start):
        if start >= 20:
            raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError):
        run_inference(model, data, RuntimeConfig(batch_size=10), consumers=[boom], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


class _HalfZero:
    """Zeros every sample whose values are below n/2; second output complex."""

    def __init__(self, half):
        self.half = half

    def __call__(self, x, training=False):
        import tensorflow as tf

        y = tf.where(x < self.half, tf.zeros_like(x), x)
        return [y, tf.complex(y, -2.0 * y)]


def test_stats_exact(tensorflow):  # _HalfZero runs TensorFlow ops
    n, bs = 20, 6
    x = np.repeat(np.arange(n, dtype=np.float32), 16).reshape(n, 4, 4)
    x[15, 0, 0] = np.nan
    x[16, 1, 1] = np.inf
    x[17, 2, 2] = -np.inf
    res = run_inference(_HalfZero(n / 2), [x], RuntimeConfig(batch_size=bs), stats=True)
    y = np.where(x < n / 2, 0, x)
    st = res.stats["output_0"]
    fin = np.isfinite(y)
    # samples 0..9 are zeroed; in 10..19 the -inf (< n/2) is zeroed too, NaN and +inf stay
    # (non-finite, never "nonzero": the one rule of stats.count_values)
    assert st.size == y.size and st.shape == (n, 4, 4)
    assert st.nonzero == np.count_nonzero(y[fin]) == 10 * 16 - 3
    assert st.nan == 1 and st.inf == 1
    assert st.mean == pytest.approx(y[fin].mean())
    assert st.max_abs == 19.0
    assert st.zero_fraction == pytest.approx(1 - 159 / 320)
    assert [c["start"] for c in st.chunks] == [0, 6, 12, 18]
    assert sum(c["nonzero"] for c in st.chunks) == st.nonzero
    assert st.chunks[0]["nonzero"] == 0 and st.chunks[0]["mean"] == 0.0
    assert list(st.chunk_table().columns[:3]) == ["start", "stop", "size"]
    z = res.stats["output_1"]
    with np.errstate(invalid="ignore"):  # inf * 1j has a NaN real part
        mag = np.abs(y + 0j - 2j * y)
    assert z.mean == pytest.approx(mag[np.isfinite(mag)].mean())
    assert z.max_abs == pytest.approx(19 * np.sqrt(5))
    assert z.real_nonzero == z.imag_nonzero == 157
    assert z.real_nonfinite == 2 and z.imag_nonfinite == 2
    assert z.nan == 1 and z.inf == 1
    d = z.to_dict(chunks=True)
    assert d["real_nonzero"] == 157 and len(d["chunks"]) == 4
    assert "real_nonzero" not in st.to_dict()


class _OOMAbove:
    """Raises ResourceExhaustedError (from Python) when the batch is larger than k."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x, training=False):
        import tensorflow as tf

        if x.shape[0] > self.k:
            raise tf.errors.ResourceExhaustedError(None, None, f"OOM for batch {x.shape[0]}")
        return x * 2.0


class _GraphOOMAbove:
    """A real TF out-of-memory inside the graph: allocates ~2**31 floats per sample above k."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x, training=False):
        import tensorflow as tf

        # data-dependent (+ 0 * sum) so that grappler cannot constant-fold the Fill
        b = tf.cast(tf.shape(x)[0], tf.int64) + tf.cast(0.0 * tf.reduce_sum(x), tf.int64)
        n = tf.where(b > self.k, b * 2**31, tf.constant(1, tf.int64))
        big = tf.fill(tf.reshape(n, [1]), tf.constant(1.0))
        return x * 2.0 + tf.reduce_min(big) - 1.0


@pytest.mark.parametrize(
    "model_cls,eager",
    [(_OOMAbove, True),
     # a real allocator OOM costs ~10 s each on CPU (TF's allocator retries for 10 s)
     pytest.param(_GraphOOMAbove, False, marks=pytest.mark.slow)],
    ids=["eager-python", "graph-tf"],
)
def test_oom_fallback(model_cls, eager, tensorflow):
    x = np.arange(50, dtype=np.float32).reshape(50, 1)
    res = run_inference(model_cls(5), [x], RuntimeConfig(batch_size=16, run_eagerly=eager))
    np.testing.assert_array_equal(res.outputs[0], 2 * x)
    assert [(e.start, e.batch_before, e.batch_after) for e in res.oom_events] == [(0, 16, 8), (0, 8, 4)]
    assert "ResourceExhaustedError" in res.oom_events[0].error
    assert res.runtime["batch_sizes"] == [4, 2]  # 12 x 4 + 2
    assert res.runtime["oom_events"] == 2


def test_oom_at_batch_one_reraises(tensorflow):
    with pytest.raises(tensorflow.errors.ResourceExhaustedError):
        run_inference(_OOMAbove(0), [np.ones((4, 1), np.float32)],
                      RuntimeConfig(batch_size=4, run_eagerly=True))


def test_memmapped_and_file_inputs(tmp_path, model, data):
    ref = model.predict(data, verbose=0)
    np.save(tmp_path / "input.npy", data["input"])
    np.save(tmp_path / "input_positions.npy", data["input_positions"])
    mm = np.load(tmp_path / "input.npy", mmap_mode="r")
    assert isinstance(inf.sources._as_source("input", mm), inf.sources._FileSource)
    assert isinstance(inf.sources._as_source("v", mm[2:]), inf.sources._ArraySource)  # a view is sliced
    res = run_inference(model, {"input": mm, "input_positions": str(tmp_path / "input_positions.npy")},
                        RuntimeConfig(batch_size=7))
    np.testing.assert_allclose(res.outputs[0], ref[0], rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "split.npz", **data)
    srcs = inf.open_npz(tmp_path / "split.npz")
    assert all(isinstance(s, inf.sources._FileSource) for s in srcs.values())
    res = run_inference(model, tmp_path / "split.npz", RuntimeConfig(batch_size=7))
    np.testing.assert_allclose(res.outputs[1], ref[1], rtol=1e-5, atol=1e-6)
    np.savez_compressed(tmp_path / "splitc.npz", **data)
    res = run_inference(model, str(tmp_path / "splitc.npz"), RuntimeConfig(batch_size=7))
    np.testing.assert_allclose(res.outputs[1], ref[1], rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "wrong.npz", x=data["input"])
    with pytest.raises(PtyAnalysisError, match="missing: input, input_positions"):
        run_inference(model, tmp_path / "wrong.npz")


def test_deterministic_restored(model, data):
    from tensorflow.python.framework import config as tfc

    assert not tfc.is_op_determinism_enabled()
    res = run_inference(model, data, RuntimeConfig(deterministic=True))
    assert res.runtime["deterministic_restored"] is True
    assert not tfc.is_op_determinism_enabled()


def test_loaded_model_passthrough(model):
    lm = load_model(model)
    assert isinstance(lm, LoadedModel) and load_model(lm) is lm
    with pytest.raises(PtyAnalysisError, match="call ptyanalysis.inference.load_model"):
        predict("some/path.keras", np.ones((1, 4)))

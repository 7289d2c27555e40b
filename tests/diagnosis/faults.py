"""Fault suite: tiny Keras models with known, injected causes of failure.

Each builder returns a :class:`FaultCase`: a model, a failing and a passing
input set (dicts keyed by the model's input names), optionally a reference set
(inputs drawn like the training inputs) and the cause the bisection should
name. Weights are set by hand (no training), so the builders are fast and
deterministic. The custom layers are registered with Keras, so the models can
be saved to ``.keras`` and loaded back in this process (CLI tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fault_cases
import keras
import numpy as np
from keras import ops

PKG = "ptyanalysis_faults"


@dataclass(frozen=True)
class FaultCase:
    """One injected fault and what the bisection should conclude.

    Attributes
    ----------
    name : str
        Case name.
    model : keras.Model
    failing, passing : dict
        Input sets ``{input name: array}``.
    reference : dict or None
        Inputs drawn like the training inputs.
    expected_kind : str
        ``input``, ``samples``, ``runtime``, ``model`` or ``none``.
    expected_name : object
        Input name, runtime factor, or list of sample indices (None for model/none).
    criterion : str
        Failure criterion to use.
    notes : dict
        Extra expectations (e.g. ``passing_degraded``).
    """

    name: str
    model: object
    failing: dict
    passing: dict
    reference: dict | None
    expected_kind: str
    expected_name: object
    criterion: str = "all-zero"
    notes: dict = field(default_factory=dict)
    #: The failing set's own samples, in order, fed as the model was trained (bisect's paired_reference).
    paired: dict | None = None


# ----------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package=PKG)
class Translate(keras.layers.Layer):
    """Translate images (B, N, N, 1) by positions (B, 1, 2, 1) = [x, y], bilinear, zero fill."""

    def call(self, inputs):
        images, positions = inputs
        pos = ops.cast(positions[:, 0, :, 0], "float32")
        one = ops.ones_like(pos[:, 0])
        zero = ops.zeros_like(pos[:, 0])
        tr = ops.stack([one, zero, -pos[:, 0], zero, one, -pos[:, 1], zero, zero], axis=1)
        # TensorFlow's ImageProjectiveTransformV3 under the TensorFlow backend; the same transform elsewhere
        return ops.image.affine_transform(images, tr, interpolation="bilinear", fill_mode="constant",
                                          fill_value=0.0, data_format="channels_last")

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, inputs[0].dtype)


@keras.saving.register_keras_serializable(package=PKG)
class BatchOverflowGuard(keras.layers.Layer):
    """Zero the whole batch when its largest |value| is not <= limit (NaN fails the test)."""

    def __init__(self, limit=1e6, **kw):
        super().__init__(**kw)
        self.limit = float(limit)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}

    def call(self, x):
        keep = ops.cast(ops.max(ops.abs(x)) <= self.limit, x.dtype)
        return x * keep


@keras.saving.register_keras_serializable(package=PKG)
class BatchSizeGate(keras.layers.Layer):
    """Zero the batch when it holds more than ``max_batch`` samples (a batch-size bug)."""

    def __init__(self, max_batch=32, **kw):
        super().__init__(**kw)
        self.max_batch = int(max_batch)

    def get_config(self):
        return {**super().get_config(), "max_batch": self.max_batch}

    def call(self, x):
        keep = ops.cast(ops.shape(x)[0] <= self.max_batch, x.dtype)
        return x * keep


class L2NormNet(keras.Model):
    """Subclassed model that L2-normalises each sample *in the input's dtype* (no autocast)."""

    def __init__(self, d_in=16, d_out=8, seed=0, **kw):
        super().__init__(autocast=False, **kw)
        self.dense = keras.layers.Dense(d_out, activation="relu", use_bias=False)
        self.dense.build((None, d_in))
        w = np.abs(np.random.default_rng(seed).normal(size=(d_in, d_out))).astype("float32")
        self.dense.set_weights([w])

    def call(self, x, training=False):
        n = ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True))
        y = x / n  # float16: x*x overflows to inf -> y = 0
        y = ops.where(ops.isfinite(y), y, ops.zeros_like(y))
        return self.dense(ops.cast(y, "float32"))


# ----------------------------------------------------------------------------- helpers
def _rng(seed):
    return np.random.default_rng(seed)


def _set_dense(layer, rng, scale=1.0, positive=False, bias=None):
    w = layer.get_weights()
    k = rng.normal(size=w[0].shape) * scale
    if positive:
        k = np.abs(k)
    new = [k.astype("float32")]
    if len(w) > 1:
        new.append((np.zeros(w[1].shape) if bias is None else np.full(w[1].shape, bias)).astype("float32"))
    layer.set_weights(new)


# ----------------------------------------------------------------------------- cases
def shift_one_input(n=300, seed=0) -> FaultCase:
    """Three inputs; ``b`` is shifted by +5 sigma on the failing set (kills a ReLU); ``c`` drifts harmlessly."""
    rng = _rng(seed)
    a, b, c = keras.Input((8,), name="a"), keras.Input((4,), name="b"), keras.Input((4,), name="c")
    x = keras.layers.Concatenate(name="concat")([a, b, c])
    h = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(4, use_bias=False, name="out")(h)
    m = keras.Model([a, b, c], out, name="shift_one_input")
    hid = m.get_layer("hidden")
    k = rng.normal(size=(16, 16)) * 0.5
    k[8:12, :] = -3.0  # b pushes every hidden unit negative when b is large
    k[12:16, :] = rng.normal(size=(4, 16)) * 0.1
    hid.set_weights([k.astype("float32"), np.full(16, 1.0, "float32")])
    _set_dense(m.get_layer("out"), rng, positive=True)

    def draw(n, b_mean, c_mean, s):
        r = _rng(s)
        return {"a": r.normal(size=(n, 8)).astype("float32"),
                "b": (r.normal(size=(n, 4)) * 0.3 + b_mean).astype("float32"),
                "c": (r.normal(size=(n, 4)) + c_mean).astype("float32")}

    return FaultCase("shift_one_input", m, draw(n, 5.0, 3.0, seed + 1), draw(n, 0.0, 0.0, seed + 2),
                     draw(n, 0.0, 0.0, seed + 3), "input", "b")


def wrong_units(n=200, N=16, seed=0) -> FaultCase:
    """Image input expected as amplitudes O(1); the failing set holds counts (x 1000)."""
    rng = _rng(seed)
    inp = keras.Input((N, N, 1), name="input")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    g = keras.layers.Conv2D(1, 1, activation="relu", name="saturate")(h)
    m = keras.Model(inp, g, name="wrong_units")
    conv = m.get_layer("conv")
    conv.set_weights([np.abs(rng.normal(size=(3, 3, 1, 4))).astype("float32") * 0.2,
                      np.zeros(4, "float32")])
    m.get_layer("saturate").set_weights([np.full((1, 1, 4, 1), -1.0, "float32"),
                                         np.full(1, 4.0, "float32")])

    def amp(s):
        return np.abs(_rng(s).normal(size=(n, N, N, 1))).astype("float32")

    return FaultCase("wrong_units", m, {"input": amp(seed + 1) * 1000.0}, {"input": amp(seed + 2)},
                     {"input": amp(seed + 3)}, "input", "input")


def poisoned_sample(n=200, seed=0, index=137) -> FaultCase:
    """One NaN sample zeroes its whole batch through a batch-level overflow guard."""
    rng = _rng(seed)
    inp = keras.Input((16,), name="x")
    h = keras.layers.Dense(8, name="dense")(inp)
    g = BatchOverflowGuard(1e6, name="batch_guard")(h)
    r = keras.layers.ReLU(name="relu")(g)
    out = keras.layers.Dense(4, use_bias=False, name="out")(r)
    m = keras.Model(inp, out, name="poisoned_sample")
    _set_dense(m.get_layer("dense"), rng, bias=0.5)
    _set_dense(m.get_layer("out"), rng, positive=True)
    fail = _rng(seed + 1).normal(size=(n, 16)).astype("float32")
    fail[index, 3] = np.nan
    return FaultCase("poisoned_sample", m, {"x": fail},
                     {"x": _rng(seed + 2).normal(size=(n, 16)).astype("float32")},
                     None, "samples", [index])


def batch_size_dependent(n_fail=300, n_pass=24, seed=0) -> FaultCase:
    """Outputs are zeroed for batches of more than 32 samples."""
    rng = _rng(seed)
    inp = keras.Input((16,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="dense")(inp)
    g = BatchSizeGate(32, name="batch_gate")(h)
    out = keras.layers.Dense(4, use_bias=False, name="out")(g)
    m = keras.Model(inp, out, name="batch_size_dependent")
    _set_dense(m.get_layer("dense"), rng, bias=0.5)
    _set_dense(m.get_layer("out"), rng, positive=True)
    return FaultCase("batch_size_dependent", m,
                     {"x": _rng(seed + 1).normal(size=(n_fail, 16)).astype("float32")},
                     {"x": _rng(seed + 2).normal(size=(n_pass, 16)).astype("float32")},
                     None, "runtime", "batch_size")


def batch_size_everywhere(n=200, seed=0) -> FaultCase:
    """The batch-size gate with every set (failing, passing, reference) larger than a batch of 32.

    Every set fails under the default runtime; batch size 1 rescues all of them:
    a runtime fault, not a model fault (``reproduced`` is False: nothing passes).
    """
    case = batch_size_dependent(n_fail=n, n_pass=n, seed=seed)
    ref = {"x": _rng(seed + 3).normal(size=(n, 16)).astype("float32")}
    return FaultCase("batch_size_everywhere", case.model, case.failing, case.passing, ref,
                     "runtime", "batch_size")


def dtype_dependent(n=200, seed=0) -> FaultCase:
    """Subclassed model computing in its input's dtype; the failing set arrives as float16."""
    m = L2NormNet(16, 8, seed=seed)
    x = (np.abs(_rng(seed + 1).normal(size=(n, 16))) * 10 + 100).astype("float32")
    xp = (np.abs(_rng(seed + 2).normal(size=(n, 16))) * 10 + 100).astype("float32")
    return FaultCase("dtype_dependent", m, {"x": x.astype("float16")}, {"x": xp}, None,
                     "runtime", "dtype")


def dead_model(n=200, seed=0) -> FaultCase:
    """All weights zero (an untrained/dead model saved): zero outputs on every set."""
    inp = keras.Input((16,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="dense")(inp)
    out = keras.layers.Dense(4, name="out")(h)
    m = keras.Model(inp, out, name="dead_model")
    for lay in m.layers[1:]:
        lay.set_weights([np.zeros_like(w) for w in lay.get_weights()])
    sets = [{"x": _rng(seed + i).normal(size=(n, 16)).astype("float32")} for i in (1, 2, 3)]
    return FaultCase("dead_model", m, sets[0], sets[1], sets[2], "model", None)


def flat_model(n=200, seed=0) -> FaultCase:
    """Untrained model with a constant 0.5 output (collapsed) on every set."""
    inp = keras.Input((16,), name="x")
    out = keras.layers.Dense(4, name="out", kernel_initializer="zeros",
                             bias_initializer=keras.initializers.Constant(0.5))(inp)
    m = keras.Model(inp, out, name="flat_model")
    sets = [{"x": _rng(seed + i).normal(size=(n, 16)).astype("float32")} for i in (1, 2, 3)]
    return FaultCase("flat_model", m, sets[0], sets[1], sets[2], "model", None,
                     criterion="collapsed")


def healthy(n=200, seed=0) -> FaultCase:
    """A healthy model on both splits: nothing to find."""
    rng = _rng(seed)
    inp = keras.Input((16,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="dense")(inp)
    out = keras.layers.Dense(4, use_bias=False, name="out")(h)
    m = keras.Model(inp, out, name="healthy")
    _set_dense(m.get_layer("dense"), rng, bias=0.5)
    _set_dense(m.get_layer("out"), rng)
    return FaultCase("healthy", m, {"x": _rng(seed + 1).normal(size=(n, 16)).astype("float32")},
                     {"x": _rng(seed + 2).normal(size=(n, 16)).astype("float32") + 0.3}, None,
                     "none", None)


def build_incident_model(N=16, seed=0) -> keras.Model:
    """Tiny analogue of the study's Baseline: conv net, then translation by ``input_positions``."""
    rng = _rng(seed)
    inp = keras.Input((N, N, 1), name="input")
    pos = keras.Input((1, 2, 1), name="input_positions")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    p = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="conv2")(h)
    t = Translate(name="translate")([p, pos])
    m = keras.Model([inp, pos], t, name="incident_baseline")
    m.get_layer("conv1").set_weights([rng.normal(size=(3, 3, 1, 4)).astype("float32") * 0.5,
                                      np.full(4, 0.1, "float32")])
    m.get_layer("conv2").set_weights([np.abs(rng.normal(size=(3, 3, 4, 1))).astype("float32") * 0.3,
                                      np.zeros(1, "float32")])
    return m


def incident_sets(n=300, N=16, seed=0):
    """Study-like sets: (test, train, reference) input dicts for :func:`build_incident_model`.

    Test positions are absolute global positions of 100+ px (all off the canvas);
    train positions are mostly large with a few small ones; the reference has
    the all-zero offsets the model was trained with.
    """
    def diff(s, m):
        return np.abs(_rng(s).normal(size=(m, N, N, 1))).astype("float32")

    r = _rng(seed)
    test_pos = r.uniform(100, 160, size=(n, 1, 2, 1)).astype("float32")
    train_pos = r.uniform(40, 100, size=(n, 1, 2, 1)).astype("float32")
    small = r.random(n) < 0.1
    train_pos[small] = r.uniform(-3, 3, size=(int(small.sum()), 1, 2, 1))
    return ({"input": diff(seed + 1, n), "input_positions": test_pos},
            {"input": diff(seed + 2, n), "input_positions": train_pos},
            {"input": diff(seed + 3, n), "input_positions": np.zeros((n, 1, 2, 1), "float32")})


def incident(n=300, N=16, seed=0) -> FaultCase:
    """The synthetic incident: absolute positions fed to a model trained with zero offsets."""
    test, train, ref = incident_sets(n, N, seed)
    return FaultCase("incident", build_incident_model(N, seed), test, train, ref, "input",
                     "input_positions", notes={"passing_degraded": True})


# ----------------------------------------------------------------------------- issue 9 / 11 layers
@keras.saving.register_keras_serializable(package=PKG)
class BatchMaxNormalise(keras.layers.Layer):
    """Divide the whole batch by its largest |value| (a batch-level normalisation), then cut below ``floor``."""

    def __init__(self, floor=0.0, **kw):
        super().__init__(**kw)
        self.floor = float(floor)

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}

    def call(self, x):
        y = x / ops.max(ops.abs(x))
        return ops.relu(y - self.floor)


@keras.saving.register_keras_serializable(package=PKG)
class SampleMaxNormalise(keras.layers.Layer):
    """Divide each sample by its own largest |value| (Inf in a sample: its finite values become 0, the Inf NaN)."""

    def call(self, x):
        return x / ops.max(ops.abs(x), axis=(1, 2, 3), keepdims=True)


@keras.saving.register_keras_serializable(package=PKG)
class BatchCentre(keras.layers.Layer):
    """Subtract the batch mean of positions (B, 1, 2, 1), as PtychoPINN's reassembly does since 898b42e."""

    def call(self, pos):
        return pos - ops.mean(pos, axis=0, keepdims=True)


def _frames(seed, n, N=8, lo=0.5, hi=1.5):
    return _rng(seed).uniform(lo, hi, size=(n, N, N, 1)).astype("float32")


def degrees_not_radians(n=300, seed=0) -> FaultCase:
    """Issue 9.1: angles fed in degrees to a model trained on radians; the fix gives the factor (pi/180)."""
    rng = _rng(seed)
    ang = keras.Input((3,), name="angles")
    h = keras.layers.Dense(12, activation="relu", name="hidden")(ang)
    out = keras.layers.Dense(4, use_bias=False, name="out")(h)
    m = keras.Model(ang, out, name="degrees_not_radians")
    k = -(np.abs(rng.normal(size=(3, 12))) * 0.2 + 0.1)  # large angles push every unit negative
    m.get_layer("hidden").set_weights([k.astype("float32"), np.full(12, 1.5, "float32")])
    _set_dense(m.get_layer("out"), rng, positive=True)

    def rad(s):
        return _rng(s).uniform(0.5, 1.5, size=(n, 3)).astype("float32")

    return FaultCase("degrees_not_radians", m, {"angles": np.degrees(rad(seed + 1)).astype("float32")},
                     {"angles": rad(seed + 2)}, None, "input", "angles",
                     notes={"intervention": "match_passing", "fix_contains": ["multiply 'angles' by 0.017"]})


def nan_positions(n=240, N=16, seed=0) -> FaultCase:
    """Issue 9.1: a third of the scan positions are NaN (a failed position readout): per-sample NaN outputs."""
    m = build_incident_model(N, seed)
    test, train, ref = incident_sets(n, N, seed)
    fail = {"input": test["input"], "input_positions": _rng(seed + 5).uniform(-2, 2, (n, 1, 2, 1)).astype("float32")}
    bad = np.sort(_rng(seed + 6).choice(n, n // 3, replace=False))
    fail["input_positions"][bad, 0, 1, 0] = np.nan
    good = {"input": train["input"], "input_positions": _rng(seed + 7).uniform(-2, 2, (n, 1, 2, 1)).astype("float32")}
    return FaultCase("nan_positions", m, fail, good, None, "input", "input_positions", criterion="non-finite",
                     notes={"intervention": "replace_nonfinite",
                            "fix_contains": [f"the {len(bad)} non-finite values of 'input_positions'",
                                             f"first at sample(s) {[int(i) for i in bad[:5]]}"]})


def _per_sample_norm_model(N=8, seed=0, name="per_sample_norm"):
    rng = _rng(seed)
    inp = keras.Input((N, N, 1), name="frames")
    y = SampleMaxNormalise(name="sample_norm")(inp)
    h = keras.layers.Conv2D(2, 3, padding="same", name="conv")(y)  # linear: NaN propagates
    m = keras.Model(inp, h, name=name)
    m.get_layer("conv").set_weights([np.abs(rng.normal(size=(3, 3, 1, 2))).astype("float32") * 0.3,
                                     np.zeros(2, "float32")])
    return m


def float16_overflow_export(n=200, N=8, seed=0) -> FaultCase:
    """Issue 9.1: counts exported as float16: the brightest pixels (> 65504) overflow to +Inf."""
    def counts(s):
        c = _frames(s, n, N, 100.0, 2000.0)
        hot = _rng(s + 10).random(n) < 0.4
        c[hot, N // 2, N // 2, 0] = 70000.0
        return c

    return FaultCase("float16_overflow_export", _per_sample_norm_model(N, seed, "float16_overflow"),
                     {"frames": counts(seed + 1).astype("float16")}, {"frames": counts(seed + 2)}, None,
                     "input", "frames", criterion="non-finite",
                     notes={"intervention": "replace_nonfinite", "fix_contains": ["float16", "+Inf", "float32"]})


def _batch_norm_model(N=8, seed=0, floor=0.0, name="batch_norm"):
    rng = _rng(seed)
    inp = keras.Input((N, N, 1), name="frames")
    y = BatchMaxNormalise(floor, name="batch_max_norm")(inp)
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv")(y)
    m = keras.Model(inp, h, name=name)
    m.get_layer("conv").set_weights([np.abs(rng.normal(size=(3, 3, 1, 2))).astype("float32") * 0.3,
                                     np.zeros(2, "float32")])
    return m


def inf_frames_in_6000(n=6000, N=8, seed=0, bad=(517, 2950, 5711)) -> FaultCase:
    """Issue 9.2: 3 frames holding +Inf among 6,000 blank their batches (batch-max normalisation: 0 and NaN)."""
    fail = _frames(seed + 1, n, N)
    for i in bad:
        fail[i, 1, 2, 0] = np.inf
    return FaultCase("inf_frames_in_6000", _batch_norm_model(N, seed, name="inf_frames"), {"frames": fail},
                     {"frames": _frames(seed + 2, n, N)}, None, "samples", sorted(bad),
                     criterion="zero-fraction>=0.05",
                     notes={"max_evaluations": 60, "fix_contains": [", ".join(map(str, sorted(bad)))]})


def dead_amplitude_output(n=200, N=16, seed=0) -> FaultCase:
    """Issue 9.3: background-subtracted diffraction kills the amplitude output; the phase output lives on."""
    rng = _rng(seed)
    inp = keras.Input((N, N, 1), name="diffraction")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    amp = keras.layers.Conv2D(1, 1, activation="relu", name="amplitude")(h)
    ph = keras.layers.Conv2D(1, 1, activation="tanh", name="phase")(h)
    m = keras.Model(inp, [amp, ph], name="dead_amplitude_output")
    m.get_layer("conv").set_weights([np.full((3, 3, 1, 4), 1 / 9, "float32"), np.zeros(4, "float32")])
    m.get_layer("amplitude").set_weights([np.full((1, 1, 4, 1), 1.0, "float32"), np.full(1, -5.0, "float32")])
    m.get_layer("phase").set_weights([rng.normal(size=(1, 1, 4, 1)).astype("float32"), np.zeros(1, "float32")])

    def diff(s):
        return (np.abs(_rng(s).normal(size=(n, N, N, 1))) + 1.0).astype("float32")

    return FaultCase("dead_amplitude_output", m, {"diffraction": diff(seed + 1) - 1.0},
                     {"diffraction": diff(seed + 2)}, None, "input", "diffraction", criterion="mostly-zero",
                     notes={"degraded_outputs": ["amplitude"], "fix_contains": ["shift 'diffraction' by +"]})


def unusable_reference(n=300, seed=0) -> FaultCase:
    """Issue 9.4: the reference given was built wrongly (its outputs are all zero): it must not be trusted."""
    case = shift_one_input(n, seed)
    ref = dict(case.reference)
    ref["b"] = np.full_like(ref["b"], 8.0)  # kills every hidden unit: the model's outputs on it are all zero
    return FaultCase("unusable_reference", case.model, case.failing, case.passing, ref, "input", "b",
                     notes={"reference_usable": False})


def constant_offsets(n=300, seed=0) -> FaultCase:
    """Issue 9.5: offsets with zero spread everywhere (0 in training, a constant 3 on the failing set) and a decoy."""
    rng = _rng(seed)
    sig = keras.Input((8,), name="signal")
    off = keras.Input((2,), name="offsets")
    gain = keras.Input((2,), name="gain")
    x = keras.layers.Concatenate(name="concat")([sig, off, gain])
    h = keras.layers.Dense(12, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(4, use_bias=False, name="out")(h)
    m = keras.Model([sig, off, gain], out, name="constant_offsets")
    k = rng.normal(size=(12, 12)) * 0.3
    k[8:10, :] = -2.0  # offsets of 3 kill every unit
    k[10:12, :] = rng.normal(size=(2, 12)) * 0.02  # the gain barely matters
    m.get_layer("hidden").set_weights([k.astype("float32"), np.full(12, 1.5, "float32")])
    _set_dense(m.get_layer("out"), rng, positive=True)

    def draw(s, off_value, gain_mean):
        r = _rng(s)
        return {"signal": r.normal(size=(n, 8)).astype("float32"),
                "offsets": np.full((n, 2), off_value, "float32"),
                "gain": (r.normal(size=(n, 2)) + gain_mean).astype("float32")}

    return FaultCase("constant_offsets", m, draw(seed + 1, 3.0, 0.4), draw(seed + 2, 0.0, 0.0),
                     draw(seed + 3, 0.0, 0.0), "input", "offsets",
                     notes={"fix_contains": ["'offsets' as zeros"]})


def bright_frame_spoils_batch(n=600, N=8, seed=0, index=404) -> FaultCase:
    """Issue 9.6: one frame 6x brighter (not an outlier by the scan's rule) blanks the rest of its batch."""
    fail = _frames(seed + 1, n, N)
    fail[index] *= 6.0
    return FaultCase("bright_frame_spoils_batch", _batch_norm_model(N, seed, floor=0.3, name="bright_frame"),
                     {"frames": fail}, {"frames": _frames(seed + 2, n, N)}, None, "samples", [index],
                     criterion="zero-fraction>=0.02", notes={"victims": True, "fix_contains": [f"sample(s) {index} "]})


def two_fault_incident(n=300, N=16, seed=0, intensity_scale=8.0) -> FaultCase:
    """Issue 11.4: the study's feed had two faults: diffraction not x intensity_scale AND absolute positions.

    The reference is as the model was trained (diffraction x intensity_scale, zero offsets). Fixing
    the positions alone brings back nonzero outputs a factor of intensity_scale too weak (about 14 %
    of the health); fixing the diffraction alone leaves every output zero; both restore it.
    """
    test, train, ref = incident_sets(n, N, seed)
    ref = dict(ref)
    ref["input"] = (ref["input"] * intensity_scale).astype("float32")
    return FaultCase("two_fault_incident", build_incident_model(N, seed), test, train, ref, "input",
                     "input+input_positions",
                     notes={"parts": {"input", "input_positions"}, "combined_restores": 0.95,
                            "fix_contains": [f"multiply 'input' by {intensity_scale:.3g}", "'input_positions' as zeros"]})


@keras.saving.register_keras_serializable(package=PKG)
class MildScale(keras.layers.Layer):
    """Each pattern divided by its mean |value| m and multiplied by m ** alpha: the output follows the input's
    scale only weakly (x1/3 input -> x(1/3) ** alpha output; alpha 0.096 gives -10 %)."""

    def __init__(self, alpha=0.096, **kw):
        super().__init__(**kw)
        self.alpha = float(alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}

    def call(self, x):
        m = ops.mean(ops.abs(x), axis=(1, 2, 3), keepdims=True) + 1e-12
        return x / m * ops.power(m, self.alpha)


def build_mildly_scale_sensitive_model(N=16, seed=0, alpha=0.096) -> keras.Model:
    """The incident Baseline with :class:`MildScale` first: a missing intensity_scale of 3 changes each output
    by about 10 %, which the output statistics (20 % tolerance) cannot see; absolute positions still zero it."""
    base = build_incident_model(N, seed)
    inp = keras.Input((N, N, 1), name="input")
    pos = keras.Input((1, 2, 1), name="input_positions")
    h = base.get_layer("conv1")(MildScale(alpha, name="mild_scale")(inp))
    t = Translate(name="translate")([base.get_layer("conv2")(h), pos])
    return keras.Model([inp, pos], t, name="mild_scale_baseline")


def paired_two_fault_incident(n=300, N=16, seed=0, intensity_scale=3.0) -> FaultCase:
    """V7: both faults of the study's feed into a model only mildly sensitive to the input's scale, with a
    PAIRED reference (the failing samples fed as trained: diffraction x intensity_scale, zero offsets).

    Fixing the positions alone gives outputs about 10 % off sample by sample (statistics health 1.0), so it
    restores under 95 % of the paired health; both fixes together restore it.
    """
    test, train, ref = incident_sets(n, N, seed)
    ref = dict(ref)
    ref["input"] = (ref["input"] * intensity_scale).astype("float32")
    paired = {"input": (test["input"] * intensity_scale).astype("float32"),
              "input_positions": np.zeros_like(test["input_positions"])}
    return FaultCase("paired_two_fault_incident", build_mildly_scale_sensitive_model(N, seed), test, train, ref,
                     "input", "input+input_positions", paired=paired,
                     notes={"parts": {"input", "input_positions"}, "combined_restores": 0.95, "max_alone": 0.95,
                            "health_basis": "paired",
                            "fix_contains": [f"multiply 'input' by {intensity_scale:.3g}",
                                             "'input_positions' as zeros"]})


def build_batch_centred_model(N=16, seed=0) -> keras.Model:
    """The incident Baseline with PtychoPINN's current reassembly: positions centred on their batch mean."""
    base = build_incident_model(N, seed)
    inp = keras.Input((N, N, 1), name="input")
    pos = keras.Input((1, 2, 1), name="input_positions")
    h = base.get_layer("conv1")(inp)
    p = base.get_layer("conv2")(h)
    t = Translate(name="translate")([p, BatchCentre(name="batch_centre")(pos)])
    return keras.Model([inp, pos], t, name="batch_centred_baseline")


@keras.saving.register_keras_serializable(package=PKG)
class MergeBigCall(keras.layers.Layer):
    """Sum a call of >= ``limit`` samples into ONE output row (as PtychoPINN's reassembly merges a call of
    >= 64 patches onto one canvas); smaller calls pass through, one row per sample."""

    def __init__(self, limit=64, **kw):
        super().__init__(**kw)
        self.limit = int(limit)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}

    def call(self, x):
        if keras.backend.backend() == "tensorflow":  # a graph with an unknown batch size: a graph condition
            import tensorflow as tf

            return tf.cond(tf.shape(x)[0] >= self.limit, lambda: tf.reduce_sum(x, axis=0, keepdims=True),
                           lambda: x)
        return ops.sum(x, axis=0, keepdims=True) if x.shape[0] >= self.limit else x  # shapes are concrete

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def build_merging_incident_model(N=16, seed=0, limit=64) -> keras.Model:
    """The incident Baseline whose output merges a call of >= ``limit`` samples into one row (largest good batch
    ``limit - 1``)."""
    base = build_incident_model(N, seed)
    return keras.Model(base.inputs, MergeBigCall(limit, name="merge")(base.output), name="merging_baseline")


def build_scale_blind_incident_model(N=16, seed=0) -> keras.Model:
    """The incident Baseline with each pattern divided by its own maximum first: blind to the input's scale."""
    base = build_incident_model(N, seed)
    inp = keras.Input((N, N, 1), name="input")
    pos = keras.Input((1, 2, 1), name="input_positions")
    h = base.get_layer("conv1")(SampleMaxNormalise(name="sample_norm")(inp))
    t = Translate(name="translate")([base.get_layer("conv2")(h), pos])
    return keras.Model([inp, pos], t, name="scale_blind_baseline")


def sparse_patterns(n, N=16, seed=0, lit=0.1, scale=1.0):
    """Diffraction-like patterns where most pixels are 0 (about ``lit`` of them lit; at least one per pattern)."""
    r = _rng(seed)
    x = np.abs(r.normal(size=(n, N, N, 1))) * (r.random((n, N, N, 1)) < lit)
    x[:, N // 2, N // 2, 0] += 1.0
    return (scale * x).astype("float32")


def batch_centred_positions(n=300, N=16, seed=0) -> FaultCase:
    """Issue 11.5: absolute positions into a model that centres them per batch: each output depends on its batch."""
    test, train, ref = incident_sets(n, N, seed)
    r = _rng(seed + 9)
    test = {"input": test["input"], "input_positions": r.uniform(0, 200, (n, 1, 2, 1)).astype("float32")}
    train = {"input": train["input"], "input_positions": r.uniform(0, 200, (n, 1, 2, 1)).astype("float32")}
    return FaultCase("batch_centred_positions", build_batch_centred_model(N, seed), test, train, ref, "runtime",
                     "batch_composition", criterion="mostly-zero",
                     notes={"fix_excludes": ["batch_size=", "batch size of"],
                            "summary_contains": ["outputs depend on which samples share a batch"]})


def swapped_position_axes(n=300, seed=0) -> FaultCase:
    """Scan positions written as [y, x] where the model takes [x, y] (x spans 0-1 mm, y 20-30 mm here)."""
    rng = _rng(seed)
    pos = keras.Input((2,), name="pos")
    sig = keras.Input((6,), name="signal")
    x = keras.layers.Concatenate(name="concat")([pos, sig])
    h = keras.layers.Dense(10, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(3, use_bias=False, name="out")(h)
    m = keras.Model([pos, sig], out, name="swapped_position_axes")
    k = np.zeros((8, 10))
    k[0, :], k[1, :] = -1.0, 0.05  # a large x kills every unit; y barely matters
    k[2:, :] = rng.normal(size=(6, 10)) * 0.1
    m.get_layer("hidden").set_weights([k.astype("float32"), np.full(10, 1.0, "float32")])
    _set_dense(m.get_layer("out"), rng, positive=True)

    def draw(s, swapped):
        r = _rng(s)
        xy = np.stack([r.uniform(0, 1, n), r.uniform(20, 30, n)], axis=1)
        return {"pos": (xy[:, ::-1] if swapped else xy).astype("float32"),
                "signal": r.normal(size=(n, 6)).astype("float32")}

    return FaultCase("swapped_position_axes", m, draw(seed + 1, True), draw(seed + 2, False), None, "input", "pos",
                     notes={"intervention": "swap_xy", "fix_contains": ["swap the two axes of 'pos'"]})


def missing_channel(n=200, N=12, seed=0) -> FaultCase:
    """A two-channel image input whose second channel was dropped from the export (all zeros)."""
    rng = _rng(seed)
    inp = keras.Input((N, N, 2), name="stack")
    h = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inp)
    out = keras.layers.ReLU(name="relu")(h)
    m = keras.Model(inp, out, name="missing_channel")
    k = np.zeros((3, 3, 2, 3))
    k[..., 0, :] = -np.abs(rng.normal(size=(3, 3, 3))) * 0.2  # channel 0 pushes down ...
    k[..., 1, :] = np.abs(rng.normal(size=(3, 3, 3))) * 0.5   # ... channel 1 lifts the output
    m.get_layer("conv").set_weights([k.astype("float32"), np.zeros(3, "float32")])

    def draw(s):
        return _rng(s).uniform(0.5, 1.5, size=(n, N, N, 2)).astype("float32")

    fail = draw(seed + 1)
    fail[..., 1] = 0.0
    return FaultCase("missing_channel", m, {"stack": fail}, {"stack": draw(seed + 2)}, None, "input", "stack",
                     notes={"fix_contains": ["channel(s) [1]"]})


ALL_CASES = tuple(globals()[n] for n in fault_cases.ALL_CASES)  # the names: fault_cases.py (no Keras)

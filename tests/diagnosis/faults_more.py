"""Fault cases of kinds the first suite lacked (issue 18): per-sample failures, a reader that repeats one
frame, a criterion that does not fit, broken pairing between inputs, non-finite weights.

Same conventions as :mod:`faults`: tiny Keras models with hand-set weights, realistic-looking diffraction
(|FFT| of a probe times a random smooth object), deterministic and fast.
"""

from __future__ import annotations

import fault_cases
import keras
import numpy as np
from faults import PKG, FaultCase
from keras import ops


def _patterns(n, N=16, seed=0, brightness=None):
    """Diffraction amplitudes: |FFT(probe x object)| of random smooth phase objects, centred (fftshift)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:N, :N] - N / 2
    probe = np.exp(-(xx ** 2 + yy ** 2) / (2 * (N / 6) ** 2))
    noise = rng.normal(size=(n, N, N))
    k = np.exp(-(np.fft.fftfreq(N)[:, None] ** 2 + np.fft.fftfreq(N)[None, :] ** 2) / 0.01)
    phase = np.real(np.fft.ifft2(np.fft.fft2(noise) * k)) * 3
    amp = np.abs(np.fft.fftshift(np.fft.fft2(probe * np.exp(1j * phase)), axes=(1, 2))) / N
    if brightness is not None:
        amp = amp * np.sqrt(np.asarray(brightness, dtype=np.float64))[:, None, None]
    return amp[..., None].astype("float32")


def _image_model(N=16, seed=0, name="recon"):
    """Diffraction (B, N, N, 1) -> a non-negative 'object' (B, N, N, 1): ReLU layers without bias, so a dark
    frame gives a blank output and bright ones a lit one."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((N, N, 1), name="diffraction")
    x = keras.layers.Flatten(name="flat")(inp)
    h = keras.layers.Dense(32, activation="relu", use_bias=False, name="hidden")(x)
    o = keras.layers.Dense(N * N, activation="relu", use_bias=False, name="out")(h)
    out = keras.layers.Reshape((N, N, 1), name="object")(o)
    m = keras.Model(inp, out, name=name)
    m.get_layer("hidden").set_weights([np.abs(rng.normal(size=(N * N, 32))).astype("float32") / N])
    m.get_layer("out").set_weights([(np.abs(rng.normal(size=(32, N * N))) + rng.normal(size=(32, N * N)))
                                    .astype("float32") / 8])
    return m


def dark_frames(n=400, N=16, seed=0, start=181, length=14) -> FaultCase:
    """14 consecutive dark frames (the beam was lost) among 400; criterion: some reconstruction is blank.

    The set's statistics barely move (3.5 % of the samples); per-sample health sees them."""
    fail = _patterns(n, N, seed + 1)
    fail[start:start + length] = 0.0
    m = _image_model(N, seed, "dark_frames")
    return FaultCase("dark_frames", m, {"diffraction": fail}, {"diffraction": _patterns(n, N, seed + 2)},
                     {"diffraction": _patterns(n, N, seed + 3)}, "samples", list(range(start, start + length)),
                     criterion="any-blank", notes={"runs": [[start, start + length - 1]]})


@keras.saving.register_keras_serializable(package=PKG)
class ScaleByOffsets(keras.layers.Layer):
    """Scale a sample (B, N, N, 1) by ``exp(0.05 sum(offsets))`` (B, 2): the offsets change the output, a blank
    output stays blank."""

    def call(self, inputs):
        img, off = inputs
        return img * ops.exp(ops.reshape(ops.sum(off, axis=1), (-1, 1, 1, 1)) * 0.05)


def frame_zero_reader(n=300, N=16, seed=0) -> FaultCase:
    """The reader returns frame 0 for every index; criterion: every reconstruction is the same (collapsed).

    A second input, ``offsets``, is used by the model and is constant in every set (gridsize 1: local offsets
    are zero), so its swap changes nothing; the diffraction swap and its fix must be the verified ones."""
    base = _image_model(N, seed, "inner")
    d = keras.Input((N, N, 1), name="diffraction")
    off = keras.Input((2,), name="offsets")
    out = ScaleByOffsets(name="scale")([base(d), off])
    m = keras.Model([d, off], out, name="frame_zero_reader")
    good = _patterns(n, N, seed + 1)
    fail = np.repeat(good[:1], n, axis=0)
    zeros = np.zeros((n, 2), "float32")
    return FaultCase("frame_zero_reader", m, {"diffraction": fail, "offsets": zeros},
                     {"diffraction": _patterns(n, N, seed + 2), "offsets": zeros},
                     {"diffraction": _patterns(n, N, seed + 3), "offsets": zeros}, "input", "diffraction",
                     criterion="collapsed", notes={"fix_contains": ["one sample per index"]})


@keras.saving.register_keras_serializable(package=PKG)
class SupportMask(keras.layers.Layer):
    """Zero everything outside a central disc (a quarter of the pixels): the object's support."""

    def __init__(self, N=16, **kw):
        super().__init__(**kw)
        self.N = int(N)
        yy, xx = np.mgrid[:N, :N] - (N - 1) / 2
        self.mask = (xx ** 2 + yy ** 2 <= (0.25 * N * N / np.pi)).astype("float32")[None, :, :, None]

    def get_config(self):
        return {**super().get_config(), "N": self.N}

    def call(self, x):
        return x * ops.convert_to_tensor(self.mask)


def support_zero_by_design(n=300, N=16, seed=0) -> FaultCase:
    """A healthy model whose outputs are zero outside their support (75 % of each output), judged with the
    mostly-zero criterion: every set fails, the reference included, although nothing is wrong."""
    base = _image_model(N, seed, "inner_support")
    d = keras.Input((N, N, 1), name="diffraction")
    m = keras.Model(d, SupportMask(N, name="support")(base(d) + 0.1), name="support_zero")
    sets = [{"diffraction": _patterns(n, N, seed + i)} for i in (1, 2, 3)]
    return FaultCase("support_zero_by_design", m, sets[0], sets[1], sets[2], "criterion", "zero-fraction>=0.5",
                     criterion="mostly-zero")


@keras.saving.register_keras_serializable(package=PKG)
class EnergyNormalise(keras.layers.Layer):
    """Divide each frame by its pulse energy and blank frames whose normalised total is off (a sanity gate)."""

    def __init__(self, lo=0.5, hi=2.0, **kw):
        super().__init__(**kw)
        self.lo, self.hi = float(lo), float(hi)

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi}

    def call(self, inputs):
        frames, energy = inputs
        x = frames / ops.reshape(ops.sqrt(energy), (-1, 1, 1, 1))
        total = ops.mean(x * x, axis=(1, 2, 3), keepdims=True)
        ok = ops.cast((total > self.lo * self.ref) & (total < self.hi * self.ref), x.dtype)
        return x * ok

    def build(self, shapes):
        self.ref = 1.0


def pulse_energy_lag(n=400, N=16, seed=0, lag=7) -> FaultCase:
    """Three inputs; the pulse energies lag the frames by ``lag`` samples: every input's statistics match
    the passing set's, only their pairing is broken. Criterion: some reconstruction is blank."""
    rng = np.random.default_rng(seed)
    base = _image_model(N, seed, "inner_energy")
    d = keras.Input((N, N, 1), name="diffraction")
    e = keras.Input((1,), name="pulse_energy")
    off = keras.Input((2,), name="offsets")
    x = EnergyNormalise(name="per_pulse")([d, e])
    out = ScaleByOffsets(name="scale")([base(x), off])
    m = keras.Model([d, e, off], out, name="pulse_energy_lag")

    def draw(s, shift=0):
        r = np.random.default_rng(s)
        energy = np.exp(r.uniform(np.log(0.2), np.log(5.0), n))
        frames = _patterns(n, N, s)
        frames *= (np.sqrt(energy) / np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=(1, 2, 3))))[:, None, None,
                                                                                                         None]
        en = np.roll(energy, shift)  # recorded energy of frame i is that of frame i - shift
        return {"diffraction": frames.astype("float32"), "pulse_energy": en[:, None].astype("float32"),
                "offsets": r.normal(size=(n, 2)).astype("float32")}

    del rng
    return FaultCase("pulse_energy_lag", m, draw(seed + 1, lag), draw(seed + 2), draw(seed + 3), "pairing",
                     "pulse_energy", criterion="any-blank", notes={"lag": lag})


def nan_weights(n=200, seed=0) -> FaultCase:
    """A model saved with NaN weights in one layer: non-finite outputs on every set (not "all zero")."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((16,), name="x")
    # tanh, not relu: relu(NaN) is 0 in some kernels (oneDNN), which would hide the NaN depending on the build
    h = keras.layers.Dense(8, activation="tanh", name="dense")(inp)
    out = keras.layers.Dense(4, name="out")(h)
    m = keras.Model(inp, out, name="nan_weights")
    w = m.get_layer("dense").get_weights()
    w[0] = rng.normal(size=w[0].shape).astype("float32")
    w[0][3, 2] = np.nan
    m.get_layer("dense").set_weights(w)
    sets = [{"x": np.random.default_rng(seed + i).normal(size=(n, 16)).astype("float32")} for i in (1, 2, 3)]
    return FaultCase("nan_weights", m, sets[0], sets[1], sets[2], "model", None, criterion="non-finite",
                     notes={"first_nonfinite_layer": "dense"})


MORE_CASES = tuple(globals()[n] for n in fault_cases.MORE_CASES)  # the names: fault_cases.py (no Keras)

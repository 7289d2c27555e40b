"""Fault cases for the conventions people get wrong (issue 18, point 5).

Each builder returns a :class:`~faults.FaultCase` whose failing set breaks one convention of one input
(fft-shifted or transposed or flipped patterns, intensities for amplitudes, a conjugated probe, a hot pixel,
int16 counts that wrapped, an 8-bit export, positions in metres, negated or x/y-swapped positions) and whose
model fails on it in a way that undoing that convention (:func:`ptyanalysis.diagnosis.bisection.conventions.
apply`) repairs. ``notes["convention"]`` names the fix the bisection should find.

Same conventions as :mod:`faults`: tiny Keras models with hand-set weights (no training), realistic-looking
diffraction (|FFT| of an off-axis elliptical probe times random smooth phase objects, N = 16), deterministic
and fast. Every model is ``features(diffraction) x gate``: a positive convolution of the diffraction (non-zero
wherever the pattern is lit) times a per-sample 0/1 gate that encodes what the model "learned" about the
convention; the gate blanks the sample's output when the convention is broken.
"""

from __future__ import annotations

import fault_cases
import keras
import numpy as np
from faults import PKG, FaultCase
from keras import ops

N_DEFAULT = 16
#: The probe's phase ramp (cycles over the window, rows and columns) and its ellipse (row and column widths):
#: the mean pattern peaks off-centre at (11, 9) and is elongated along the rows, so transposes and flips show.
RAMP = (3.0, 1.0)
ELLIPSE = (1.0, 2.0)


# ----------------------------------------------------------------------------- data
def probe(N=N_DEFAULT, ramp=RAMP, ellipse=ELLIPSE) -> np.ndarray:
    """An off-axis (phase ramp), slightly defocused, elliptical Gaussian probe in a disc aperture (N, N)."""
    yy, xx = np.mgrid[:N, :N] - N / 2
    w = N / 6
    amp = np.exp(-((xx / ellipse[1]) ** 2 + (yy / ellipse[0]) ** 2) / (2 * w ** 2))
    amp = amp * (xx ** 2 + yy ** 2 <= (0.45 * N) ** 2)
    phase = 2 * np.pi * (ramp[0] * yy + ramp[1] * xx) / N + 0.03 * (xx ** 2 + yy ** 2)
    return amp * np.exp(1j * phase)


def diffraction(n, N=N_DEFAULT, seed=0, ramp=RAMP, ellipse=ELLIPSE) -> np.ndarray:
    """Diffraction amplitudes (n, N, N, 1) float32: |FFT(probe x object)| / N, centred (fftshift), of random
    smooth objects (phase up to a few rad, amplitude 1 +- 0.3)."""
    rng = np.random.default_rng(seed)
    k = np.exp(-(np.fft.fftfreq(N)[:, None] ** 2 + np.fft.fftfreq(N)[None, :] ** 2) / 0.02)

    def smooth(a):
        return np.real(np.fft.ifft2(np.fft.fft2(a) * k))

    obj = (1 + 0.3 * smooth(rng.normal(size=(n, N, N)))) * np.exp(4j * smooth(rng.normal(size=(n, N, N))))
    amp = np.abs(np.fft.fftshift(np.fft.fft2(probe(N, ramp, ellipse) * obj), axes=(1, 2))) / N
    return amp[..., None].astype("float32")


def positions(n, seed=0, x=(5.0, 35.0), y=(50.0, 110.0)) -> np.ndarray:
    """Scan positions in pixels (n, 1, 2, 1) = [x, y], uniform in a tall rectangle of the object."""
    r = np.random.default_rng(seed)
    xy = np.stack([r.uniform(*x, n), r.uniform(*y, n)], axis=1)
    return xy[:, None, :, None].astype("float32")


# ----------------------------------------------------------------------------- layers
class _Gate(keras.layers.Layer):
    """``features x keep``: ``keep`` (B,), 0 or 1 (or a weight), from the gate's second input (the signal)."""

    def keep(self, signal):
        raise NotImplementedError

    def call(self, inputs):
        features, signal = inputs
        k = ops.cast(self.keep(signal), features.dtype)
        return features * ops.reshape(k, (-1, 1, 1, 1))

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, inputs[0].dtype)


@keras.saving.register_keras_serializable(package=PKG)
class CentralShareGate(_Gate):
    """Keep a pattern when at least ``min_share`` of its intensity lies within ``radius`` pixels of the centre
    (N/2, N/2): the model learned where the central beam is."""

    def __init__(self, N=16, radius=4.0, min_share=0.1, **kw):
        super().__init__(**kw)
        self.N, self.radius, self.min_share = int(N), float(radius), float(min_share)
        yy, xx = np.mgrid[:N, :N] - N / 2
        self.disc = (xx ** 2 + yy ** 2 <= radius ** 2).astype("float32")[None, :, :, None]

    def get_config(self):
        return {**super().get_config(), "N": self.N, "radius": self.radius, "min_share": self.min_share}

    def keep(self, x):
        x = ops.cast(x, "float32")
        i = x * x
        share = ops.sum(i * ops.convert_to_tensor(self.disc), axis=(1, 2, 3)) / (ops.sum(i, axis=(1, 2, 3)) + 1e-12)
        return share >= self.min_share


@keras.saving.register_keras_serializable(package=PKG)
class TemplateGate(_Gate):
    """Keep a pattern whose normalised overlap with a learned (N, N) detector weighting is positive: the
    weighting is +1 where the trained mean pattern is brighter than its transposed / flipped copy, -1 where it
    is darker (an asymmetric detector response)."""

    def __init__(self, N=16, **kw):
        super().__init__(**kw)
        self.N = int(N)

    def get_config(self):
        return {**super().get_config(), "N": self.N}

    def build(self, shapes):
        self.template = self.add_weight(shape=(self.N, self.N), initializer="zeros", trainable=False,
                                        name="template")

    def keep(self, x):
        x = ops.cast(x[..., 0], "float32")
        score = ops.sum(x * self.template, axis=(1, 2)) / (ops.sum(ops.abs(x), axis=(1, 2)) + 1e-12)
        return score > 0


@keras.saving.register_keras_serializable(package=PKG)
class FlatnessGate(_Gate):
    """Keep a pattern whose mean / rms is at least ``min_ratio``: amplitudes pass (about 0.4); intensities
    (about 0.17) and a frame dominated by one extreme pixel (about 0.08) saturate the model and are blanked."""

    def __init__(self, min_ratio=0.3, **kw):
        super().__init__(**kw)
        self.min_ratio = float(min_ratio)

    def get_config(self):
        return {**super().get_config(), "min_ratio": self.min_ratio}

    def keep(self, x):
        x = ops.cast(x, "float32")
        m = ops.mean(ops.abs(x), axis=(1, 2, 3))
        rms = ops.sqrt(ops.mean(x * x, axis=(1, 2, 3))) + 1e-12
        return m / rms >= self.min_ratio


@keras.saving.register_keras_serializable(package=PKG)
class NonNegativeGate(_Gate):
    """Keep a frame of counts with no negative value (a ReLU-style check on the raw counts)."""

    def keep(self, x):
        return ops.min(ops.cast(x, "float32"), axis=(1, 2, 3)) >= 0


@keras.saving.register_keras_serializable(package=PKG)
class MeanRangeGate(_Gate):
    """Keep a pattern whose mean amplitude is within [lo, hi] (a sanity gate on the trained normalisation)."""

    def __init__(self, lo=0.05, hi=1.0, **kw):
        super().__init__(**kw)
        self.lo, self.hi = float(lo), float(hi)

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi}

    def keep(self, x):
        m = ops.mean(ops.cast(x, "float32"), axis=(1, 2, 3))
        return (m >= self.lo) & (m <= self.hi)


@keras.saving.register_keras_serializable(package=PKG)
class FieldOfViewGate(_Gate):
    """Keep a sample whose position (B, 1, 2, 1) = [x, y] lies in the trained field of view
    ``[x_lo, x_hi] x [y_lo, y_hi]`` (pixels)."""

    def __init__(self, x=(0.0, 40.0), y=(40.0, 120.0), **kw):
        super().__init__(**kw)
        self.x, self.y = [float(v) for v in x], [float(v) for v in y]

    def get_config(self):
        return {**super().get_config(), "x": self.x, "y": self.y}

    def keep(self, pos):
        p = ops.cast(pos[:, 0, :, 0], "float32")
        px, py = p[:, 0], p[:, 1]
        return (px >= self.x[0]) & (px <= self.x[1]) & (py >= self.y[0]) & (py <= self.y[1])


def probe_tilt(p) -> np.ndarray:
    """sum(Im(P[:, :, 1:] conj(P[:, :, :-1]))) / sum(|P|^2) per sample of probes (B, N, N): the
    amplitude-weighted phase step along the columns (about sin of it), positive for the off-axis beam."""
    num = np.sum(np.imag(p[:, :, 1:] * np.conj(p[:, :, :-1])), axis=(1, 2))
    return num / np.sum(np.abs(p) ** 2, axis=(1, 2))


@keras.saving.register_keras_serializable(package=PKG)
class PhaseRampGate(_Gate):
    """Weight a sample by how its complex probe (B, N, N) tilts: relu(tilt) / ``tilt0`` (:func:`probe_tilt`;
    ``tilt0`` the trained probe's): 1 for the trained probe, continuous in the probe (the model uses it), 0 for
    a probe tilted the other way (its conjugate)."""

    def __init__(self, tilt0=1.0, **kw):
        super().__init__(**kw)
        self.tilt0 = float(tilt0)

    def get_config(self):
        return {**super().get_config(), "tilt0": self.tilt0}

    def keep(self, probe):
        num = ops.sum(ops.imag(probe[:, :, 1:] * ops.conj(probe[:, :, :-1])), axis=(1, 2))
        den = ops.sum(ops.real(probe * ops.conj(probe)), axis=(1, 2)) + 1e-12
        return ops.relu(num / den) / self.tilt0


# ----------------------------------------------------------------------------- models
def _features(inp, seed, name="features"):
    """A positive 3x3 convolution without bias: non-zero wherever a non-negative pattern is lit."""
    conv = keras.layers.Conv2D(2, 3, padding="same", activation="relu", use_bias=False, name=name)
    out = conv(inp)
    k = np.abs(np.random.default_rng(seed).normal(size=(3, 3, 1, 2))) * 0.3 + 0.05
    conv.set_weights([k.astype("float32")])
    return out


def _gated(name, gate, seed=0, N=N_DEFAULT, extra=None):
    """``features(diffraction) x gate(signal)``; the signal is the diffraction, or the ``extra`` input
    (``(input name, shape, dtype)``)."""
    d = keras.Input((N, N, 1), name="diffraction")
    inputs = [d]
    signal = d
    if extra is not None:
        e = keras.Input(extra[1], name=extra[0], dtype=extra[2])
        inputs.append(e)
        signal = e
    out = gate([_features(d, seed), signal])
    return keras.Model(inputs, out, name=name)


def _sets(n, N, seed):
    """Failing (before the fault), passing and reference diffraction, three seeds."""
    return diffraction(n, N, seed + 1), diffraction(n, N, seed + 2), diffraction(n, N, seed + 3)


def _case(name, model, fail, good, ref, k, fix, criterion="all-zero"):
    return FaultCase(name, model, fail, good, ref, "input", k, criterion=criterion, notes={"convention": fix})


# ----------------------------------------------------------------------------- cases
def fftshifted_patterns(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Patterns saved unshifted (the central beam in the corners, as numpy.fft returns it): a model that
    looks for the beam near the centre blanks every frame. Fix: ``fftshift``."""
    f, p, r = _sets(n, N, seed)
    m = _gated("fftshifted_patterns", CentralShareGate(N, N / 4, 0.1, name="central_share"), seed, N)
    return _case("fftshifted_patterns", m, {"diffraction": np.fft.ifftshift(f, axes=(1, 2))},
                 {"diffraction": p}, {"diffraction": r}, "diffraction", "fftshift")


_GEOMETRY = {"transpose": lambda x: np.swapaxes(x, 1, 2), "flip_rows": lambda x: x[:, ::-1],
             "flip_cols": lambda x: x[:, :, ::-1]}


def _detector_case(op, n, N, seed):
    f, p, r = _sets(n, N, seed)
    design = diffraction(300, N, seed + 100)  # the "training" patterns the weighting was learned from
    mean = design.mean(axis=0)[None]
    diff = (mean - _GEOMETRY[op](mean))[0, ..., 0]
    template = np.sign(diff) * (np.abs(diff) > 0.1 * np.abs(diff).max())
    gate = TemplateGate(N, name="detector_weighting")
    m = _gated(f"{op}_detector", gate, seed, N)
    gate.set_weights([template.astype("float32")])
    return _case(f"{op}_detector", m, {"diffraction": np.ascontiguousarray(_GEOMETRY[op](f))},
                 {"diffraction": p}, {"diffraction": r}, "diffraction", op)


def transposed_detector(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Detector rows and columns swapped on export; an asymmetric learned detector weighting blanks every
    frame. Fix: ``transpose``."""
    return _detector_case("transpose", n, N, seed)


def flipped_rows(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Patterns flipped up/down (a detector read bottom-up). Fix: ``flip_rows``."""
    return _detector_case("flip_rows", n, N, seed)


def flipped_cols(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Patterns flipped left/right. Fix: ``flip_cols``."""
    return _detector_case("flip_cols", n, N, seed)


def intensities_for_amplitudes(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Intensities (amplitude squared) fed to a model trained on amplitudes: too peaked, every frame
    saturates. Fix: ``sqrt``."""
    f, p, r = _sets(n, N, seed)
    m = _gated("intensities_for_amplitudes", FlatnessGate(0.3, name="saturation"), seed, N)
    return _case("intensities_for_amplitudes", m, {"diffraction": f ** 2}, {"diffraction": p}, {"diffraction": r},
                 "diffraction", "sqrt")


def hot_pixel(n=300, N=N_DEFAULT, seed=0, where=(3, 12)) -> FaultCase:
    """One hot detector pixel (30 x the brightest real pixel) in every failing frame, in the dark part of
    the pattern: each frame is dominated by it and saturates the model. Fix: ``mask_pixels``."""
    f, p, r = _sets(n, N, seed)
    f = f.copy()
    f[:, where[0], where[1], 0] = 30.0 * float(p.max())
    m = _gated("hot_pixel", FlatnessGate(0.3, name="saturation"), seed, N)
    return _case("hot_pixel", m, {"diffraction": f}, {"diffraction": p}, {"diffraction": r}, "diffraction",
                 "mask_pixels")


def _counts(a, seed, lo=36000.0, hi=50000.0):
    """Photon counts from amplitudes: intensity scaled so each frame's brightest pixel holds lo..hi counts
    (the central beam is above 32767 in every frame), rounded."""
    i = a.astype(np.float64) ** 2
    top = np.random.default_rng(seed).uniform(lo, hi, len(a))[:, None, None, None]
    return np.round(i / i.max(axis=(1, 2, 3), keepdims=True) * top)


def wrapped_int16_counts(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Counts exported as int16: the central beam (above 32767) wrapped to negative values in every frame; a
    model checking for negative counts blanks them all. Fix: ``unwrap_integers``."""
    f, p, r = _sets(n, N, seed)
    m = _gated("wrapped_int16_counts", NonNegativeGate(name="non_negative"), seed, N)
    fail = _counts(f, seed + 11).astype(np.int64).astype(np.int16)  # wraps above 32767
    return _case("wrapped_int16_counts", m, {"diffraction": fail},
                 {"diffraction": _counts(p, seed + 12).astype("float32")},
                 {"diffraction": _counts(r, seed + 13).astype("float32")}, "diffraction", "unwrap_integers")


def eight_bit_export(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Amplitudes exported as an 8-bit image (0..255, the set's maximum at 255): far out of the trained
    normalisation, every frame is blanked. Fix: ``dequantise``."""
    f, p, r = _sets(n, N, seed)
    m = _gated("eight_bit_export", MeanRangeGate(0.05, 1.0, name="normalisation"), seed, N)
    fail = np.round(f / f.max() * 255).astype(np.uint8)
    return _case("eight_bit_export", m, {"diffraction": fail}, {"diffraction": p}, {"diffraction": r},
                 "diffraction", "dequantise")


def _position_case(name, fail_pos, n, N, seed, fix):
    f, p, r = _sets(n, N, seed)
    m = _gated(name, FieldOfViewGate(name="field_of_view"), seed, N, extra=("positions", (1, 2, 1), "float32"))
    return _case(name, m, {"diffraction": f, "positions": fail_pos},
                 {"diffraction": p, "positions": positions(n, seed + 12)},
                 {"diffraction": r, "positions": positions(n, seed + 13)}, "positions", fix)


def positions_in_metres(n=300, N=N_DEFAULT, seed=0, pixel_size=50e-9) -> FaultCase:
    """Positions in metres (pixels of 50 nm) fed to a model that places patches in pixels: every position
    falls outside the trained field of view. Fix: ``rescale_units`` (x 2e7)."""
    pos = (positions(n, seed + 11) * pixel_size).astype("float32")
    return _position_case("positions_in_metres", pos, n, N, seed, "rescale_units")


def negated_positions(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Positions with the opposite sign convention (object vs probe displacement). Fix: ``negate``."""
    return _position_case("negated_positions", -positions(n, seed + 11), n, N, seed, "negate")


def swapped_xy_positions(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """Positions stored [y, x] where the model reads [x, y]. Fix: ``swap_xy``."""
    pos = np.ascontiguousarray(positions(n, seed + 11)[:, :, ::-1])
    return _position_case("swapped_xy_positions", pos, n, N, seed, "swap_xy")


def conjugated_probe(n=300, N=N_DEFAULT, seed=0) -> FaultCase:
    """The complex probe (one per set, repeated per sample) given as its complex conjugate (exp(-i phi) for
    exp(+i phi)): its phase ramp tilts the wrong way and the model blanks every sample. Fix: ``conjugate``."""
    f, p, r = _sets(n, N, seed)
    pr = np.repeat(probe(N)[None], n, axis=0).astype("complex64")
    gate = PhaseRampGate(float(probe_tilt(pr[:1])[0]), name="probe_tilt")
    m = _gated("conjugated_probe", gate, seed, N, extra=("probe", (N, N), "complex64"))
    return _case("conjugated_probe", m, {"diffraction": f, "probe": np.conj(pr)},
                 {"diffraction": p, "probe": pr.copy()}, {"diffraction": r, "probe": pr.copy()}, "probe",
                 "conjugate")


CONVENTION_CASES = tuple(globals()[n] for n in fault_cases.CONVENTION_CASES)  # the names: fault_cases.py (no Keras)

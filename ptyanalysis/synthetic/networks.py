"""The study's networks, rebuilt small: PtychoPINN-like (gridsize 2) and Baseline (gridsize 1).

Both arms share one interface, the study's ``diffraction_to_obj`` inference
model (docs/formats.md#model-inputs-and-feeds):

* inputs ``input`` ``(B, N, N, C)`` float32: normalized diffraction amplitude
  times ``intensity_scale`` (:func:`scale_diffraction`), and
  ``input_positions`` ``(B, 1, 2, C)``: the group's *local* offsets as [x, y],
  stored negated (:func:`ptyanalysis.conventions.ptychopinn_offsets`);
* output ``(B, N, N, 1)`` complex64: one object patch per group, centred on
  the group's global offset.

Inside the model, :class:`MergePatches` translates each member's patch by its
offset onto a small padded canvas (``N + 2 * pad``, 138 px at N = 128 as in
the study), sums, divides by the translated mask count + 0.001 and keeps the
central ``N x N``. The Baseline (C = 1) was trained with all-zero offsets; the
study's comparison script fed it absolute global positions instead, which
push the patch off the small canvas: the output is exactly zero
(:func:`study_model_inputs` reproduces both ways of feeding it).

The custom layers are registered with Keras under the package name
``ptyanalysis``, so ``keras.saving.load_model`` resolves them once this
module is imported (``ptyanalysis.inference.load_model`` does that).
"""

from __future__ import annotations

import math

import numpy as np

from ..conventions import REASSEMBLY
from ..errors import PtyAnalysisError
from ..inference.backends import import_keras

keras = import_keras()  # under the backend this process chose (TensorFlow, JAX or PyTorch)
ops = keras.ops

_PKG = "ptyanalysis"

#: Dilation rates of the convolutions at the coarsest scale of the patch network.
BOTTLENECK_DILATIONS = (1, 2, 4)



def canvas_pad(N: int) -> int:
    """Padding of the in-model merge canvas: ``ceil(5 N / 128)`` (138 px canvas at N = 128)."""
    return int(math.ceil(5 * N / 128))


def _tent(shifts, size: int):
    """Bilinear translation matrices ``W[m, i, j] = max(0, 1 - |i - j - shift_m|)``, shape (M, size, size).

    ``W @ v`` moves a signal ``v`` of length ``size`` by ``shift_m`` towards larger
    indices with bilinear interpolation and zero fill: the same numbers as an
    image-projective bilinear transform with constant fill, built only from
    ``keras.ops`` so it runs (and compiles with XLA) on every Keras backend.
    """
    idx = ops.arange(size, dtype="float32")
    d = ops.reshape(ops.cast(shifts, "float32"), (-1, 1, 1))
    return ops.relu(1.0 - ops.abs(idx[None, :, None] - idx[None, None, :] - d))


def _translate(images, shifts):
    """Translate ``images`` (M, H, W, C) float by ``shifts`` (M, 2) = (dy, dx), bilinear, zero fill.

    Content moves towards larger indices for positive shifts (the
    :mod:`ptyanalysis.conventions` sign).
    """
    wy = _tent(shifts[:, 0], images.shape[1])
    wx = _tent(shifts[:, 1], images.shape[2])
    return ops.einsum("mij,mjkc,mlk->milc", wy, images, wx)


def _offsets_to_shifts(offsets):
    """(B, 1, 2, C) negated local offsets [x, y] -> (B*C, 2) member shifts (dy, dx) = member - global."""
    o = ops.transpose(offsets[:, 0, :, :], (0, 2, 1))  # (B, C, 2) [x, y]
    o = ops.reshape(o, (-1, 2))
    return -ops.stack([o[:, 1], o[:, 0]], axis=1)


def _to_channels_first_batch(x):
    """(B, H, W, C) -> (B*C, H, W, 1)."""
    x = ops.transpose(x, (0, 3, 1, 2))
    return ops.reshape(x, (-1, x.shape[2], x.shape[3], 1))


def _complex_inputs(kwargs: dict) -> dict:
    """Layer kwargs with Keras's input autocast off: autocast would cast complex inputs to float32,
    silently discarding their imaginary part (the phase)."""
    return {**kwargs, "autocast": False}


def _complex(re, im):
    return ops.view_as_complex(ops.stack([re, im], axis=-1))


@keras.saving.register_keras_serializable(package=_PKG)
class CombineComplex(keras.layers.Layer):
    """(amplitude, phase) -> amplitude * exp(i phase), complex64."""

    def call(self, amplitude, phase):
        return _complex(amplitude * ops.cos(phase), amplitude * ops.sin(phase))

    def compute_output_spec(self, amplitude, phase):
        return keras.KerasTensor(amplitude.shape, dtype="complex64")


@keras.saving.register_keras_serializable(package=_PKG)
class StackMembers(keras.layers.Layer):
    """(B, N, N, C) -> (B*C, N, N, 1): run the patch network once per group member."""

    def call(self, x):
        return _to_channels_first_batch(x)

    def compute_output_spec(self, x):
        return keras.KerasTensor((None, x.shape[1], x.shape[2], 1), dtype=x.dtype)


@keras.saving.register_keras_serializable(package=_PKG)
class MergePatches(keras.layers.Layer):
    """Merge a group's member patches into one patch centred on the group.

    Inputs: member patches ``(B*C, N, N, 1)`` complex (member-major, as
    :class:`StackMembers` orders them) and offsets ``(B, 1, 2, C)`` (negated
    local offsets [x, y]). Each patch is padded to ``N + 2 pad``, translated by
    ``member - global``, summed over members and divided by the translated
    mask count + 0.001; the central ``N x N`` is returned, ``(B, N, N, 1)``
    complex64.

    ``reassembly="batch_centred"`` first subtracts the batch mean of the
    offsets (per coordinate), as PtychoPINN's reassembly does since commit
    898b42e: each output then depends on which samples share its batch.
    """

    def __init__(self, pad: int, eps: float = 1e-3, reassembly: str = "study", **kwargs):
        super().__init__(**_complex_inputs(kwargs))
        if reassembly not in REASSEMBLY:
            raise PtyAnalysisError(f"reassembly must be one of {REASSEMBLY}, got {reassembly!r}")
        self.pad = int(pad)
        self.eps = float(eps)
        self.reassembly = reassembly

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "eps": self.eps, "reassembly": self.reassembly}

    def call(self, patches, offsets):
        p = self.pad
        n_members = offsets.shape[3]
        if self.reassembly == "batch_centred":
            offsets = offsets - ops.mean(offsets, axis=(0, 3), keepdims=True)
        re = ops.real(patches)
        stack = ops.concatenate([re, ops.imag(patches), ops.ones_like(re)], axis=-1)
        stack = ops.pad(stack, [[0, 0], [p, p], [p, p], [0, 0]])
        moved = _translate(stack, _offsets_to_shifts(offsets))
        H, W = moved.shape[1], moved.shape[2]
        total = ops.sum(ops.reshape(moved, (-1, n_members, H, W, 3)), axis=1)
        total = total[:, p:H - p, p:W - p, :]
        count = total[..., 2:3] + self.eps
        return _complex(total[..., 0:1] / count, total[..., 1:2] / count)

    def compute_output_spec(self, patches, offsets):
        return keras.KerasTensor((None, patches.shape[1], patches.shape[2], 1), dtype="complex64")


@keras.saving.register_keras_serializable(package=_PKG)
class ExtractMembers(keras.layers.Layer):
    """Inverse of :class:`MergePatches`: the object patch seen by each member.

    Inputs: merged object ``(B, N, N, 1)`` complex and offsets ``(B, 1, 2, C)``;
    output ``(B*C, N, N, 1)`` complex, each translated by ``global - member``.
    """

    def __init__(self, **kwargs):
        super().__init__(**_complex_inputs(kwargs))

    def call(self, obj, offsets):
        n_members = offsets.shape[3]
        ri = ops.concatenate([ops.real(obj), ops.imag(obj)], axis=-1)
        ri = ops.repeat(ri, n_members, axis=0)
        moved = _translate(ri, -_offsets_to_shifts(offsets))
        return _complex(moved[..., 0:1], moved[..., 1:2])

    def compute_output_spec(self, obj, offsets):
        return keras.KerasTensor((None, obj.shape[1], obj.shape[2], 1), dtype="complex64")


def _fftshift2(x):
    n0, n1 = x.shape[-2], x.shape[-1]
    return ops.roll(ops.roll(x, n0 // 2, axis=-2), n1 // 2, axis=-1)


@keras.saving.register_keras_serializable(package=_PKG)
class FarFieldAmplitude(keras.layers.Layer):
    """Predicted diffraction amplitude ``k |FFT2_ortho(P O)|`` (fftshifted), back as (B, N, N, C).

    The probe is a fixed (non-trainable) weight; ``log k`` is trainable, so
    the photon scale is learned from the data.
    """

    def __init__(self, probe=None, n_members: int = 1, log_scale: float = 0.0, **kwargs):
        super().__init__(**_complex_inputs(kwargs))
        self._probe_init = None if probe is None else np.asarray(probe, np.complex64)
        self.n_members = int(n_members)
        self.log_scale_init = float(log_scale)

    def build(self, input_shape):
        N = input_shape[1]
        init = self._probe_init if self._probe_init is not None else np.ones((N, N), np.complex64)
        self.probe_re = self.add_weight(shape=(N, N), initializer=keras.initializers.Constant(init.real),
                                        trainable=False, name="probe_re")
        self.probe_im = self.add_weight(shape=(N, N), initializer=keras.initializers.Constant(init.imag),
                                        trainable=False, name="probe_im")
        self.log_scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.log_scale_init),
                                         trainable=True, name="log_scale")

    def get_config(self):
        return {**super().get_config(), "n_members": self.n_members, "log_scale": self.log_scale_init}

    def call(self, obj):
        o_re, o_im = ops.real(obj[..., 0]), ops.imag(obj[..., 0])
        e_re = o_re * self.probe_re - o_im * self.probe_im
        e_im = o_re * self.probe_im + o_im * self.probe_re
        f_re, f_im = ops.fft2((e_re, e_im))
        n = float(obj.shape[1])
        amp = _fftshift2(ops.sqrt(f_re * f_re + f_im * f_im + 1e-12)) / n * ops.exp(self.log_scale)
        amp = ops.reshape(amp, (-1, self.n_members, amp.shape[1], amp.shape[2]))
        return ops.transpose(amp, (0, 2, 3, 1))

    def compute_output_spec(self, obj):
        return keras.KerasTensor((None, obj.shape[1], obj.shape[2], self.n_members), dtype="float32")


@keras.saving.register_keras_serializable(package=_PKG)
def poisson_nll(y_true, y_pred):
    """Poisson negative log-likelihood of observed amplitudes ``y_true`` given predicted ``y_pred``.

    Counts are the squared amplitudes: ``mean(I_pred - I_obs log I_pred)``.
    """
    i_obs = ops.square(y_true)
    i_pred = ops.square(y_pred) + 1e-6
    return ops.mean(i_pred - i_obs * ops.log(i_pred), axis=(1, 2, 3))


def build_patch_network(N: int, input_rms: float, filters=(16, 32, 64), name="patch_net") -> keras.Model:
    """Encoder-decoder from one diffraction amplitude (N, N, 1) to object (amplitude, phase).

    Amplitude via a sigmoid (0..1), phase via ``pi * tanh``. The input is
    divided by ``input_rms`` (a fixed statistic of the training inputs, saved
    in the model) so the network sees unit-scale numbers at every dose.

    Parameters
    ----------
    N : int
        Pattern size (a multiple of 8).
    input_rms : float
        RMS of the training inputs.
    filters : tuple of int
        Encoder widths.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        ``(N, N, 1) -> [amplitude, phase]``, each ``(N, N, 1)``.
    """
    if N % 8:
        raise PtyAnalysisError(f"N must be a multiple of 8, got {N}")
    x_in = keras.Input((N, N, 1), name="pattern")
    x = keras.layers.Rescaling(1.0 / float(input_rms))(x_in)
    for f in filters:
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    # Fully convolutional (like PtychoPINN's network: no dense bottleneck). Dilated convolutions at
    # the coarsest scale give every output pixel a receptive field wider than the pattern
    # (155 px with three stages), which the diffraction-to-object mapping needs.
    for rate in BOTTLENECK_DILATIONS:
        x = keras.layers.Conv2D(filters[-1], 3, padding="same", dilation_rate=rate, activation="relu")(x)
    for i, f in enumerate(reversed(filters)):
        f = max(f // 2, 4)  # a lighter decoder: most of the cost is at high resolution
        x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu")(x)
        if i < len(filters) - 1:  # no extra full-resolution conv: the heads follow (speed)
            x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    amp = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="amplitude")(x)
    ph = keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(x)
    ph = keras.layers.Rescaling(np.pi, name="phase")(ph)
    return keras.Model(x_in, [amp, ph], name=name)


def build_models(N: int, gridsize: int, input_rms: float, probe=None, log_scale: float = 0.0,
                 filters=(16, 32, 64), reassembly: str = "study") -> dict:
    """Build the study-like models sharing one patch network.

    Parameters
    ----------
    N : int
        Patch size.
    gridsize : int
        1 (Baseline) or 2 (PtychoPINN); the group has ``C = gridsize**2`` members.
    input_rms : float
        RMS of the training inputs (normalises the network's input).
    probe : (N, N) complex, optional
        Probe for the physics head (needed to train the PINN).
    log_scale : float
        Initial ``log k`` of the physics head.
    filters : tuple of int
        Encoder widths of the patch network.
    reassembly : {"study", "batch_centred"}
        How the merge treats the offsets (:data:`REASSEMBLY`): as the study's code did, or
        centred on the batch mean as PtychoPINN's current code does.

    Returns
    -------
    dict
        ``diffraction_to_obj`` (inference model, the study's interface),
        ``patch_network`` (amplitude/phase of one pattern), ``supervised``
        (one pattern -> [amplitude, phase], for supervised training) and, when
        a probe is given, ``autoencoder`` (physics model -> predicted
        amplitudes, trained with :func:`poisson_nll`).
    """
    C = gridsize * gridsize
    net = build_patch_network(N, input_rms, filters)
    x_in = keras.Input((N, N, C), name="input")
    pos_in = keras.Input((1, 2, C), name="input_positions")
    members = StackMembers(name="stack_members")(x_in)
    amp, ph = net(members)
    patches = CombineComplex(name="member_patches")(amp, ph)
    merged = MergePatches(canvas_pad(N), reassembly=reassembly, name="merge_patches")(patches, pos_in)
    out = {"diffraction_to_obj": keras.Model([x_in, pos_in], merged, name="diffraction_to_obj"),
           "patch_network": net}
    if probe is not None:
        seen = ExtractMembers(name="extract_members")(merged, pos_in)
        pred_amp = FarFieldAmplitude(probe, n_members=C, log_scale=log_scale, name="far_field")(seen)
        out["autoencoder"] = keras.Model([x_in, pos_in], pred_amp, name="autoencoder")
    return out



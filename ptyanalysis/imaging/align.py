"""Alignment before scoring: registration, shifts, crops, phase and amplitude normalisation.

Shifts follow the sign of ``scipy.ndimage.shift`` (see
:mod:`ptyanalysis.conventions`): a shift ``(+dy, +dx)`` moves image content
towards larger row and column indices. :func:`register` returns the shift that,
applied to ``moving`` with :func:`apply_shift`, aligns it with ``reference``
(the convention of ``skimage.registration.phase_cross_correlation``).

Canvas frames are those of :mod:`ptyanalysis.imaging.stitching`: a stitched canvas
with ``origin = (row0, col0)`` and shape ``(H, W)`` shows object pixels
``obj[row0:row0 + H, col0:col0 + W]``; :func:`crop_to_scan` cuts exactly that
out of a ground-truth object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import PtyAnalysisError

__all__ = [
    "Registration",
    "register",
    "apply_shift",
    "crop_border",
    "remove_phase_plane",
    "fit_phase_plane",
    "remove_phase_offset",
    "normalize_amplitude_mean",
    "crop_to_scan",
]

_ON = ("amplitude", "phase", "complex", "real")


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    shift : tuple of float
        ``(dy, dx)`` to apply to ``moving`` (``apply_shift(moving, shift)``)
        so that it lines up with ``reference``; scipy.ndimage.shift sign.
    error : float
        Translation-invariant normalised RMS error from
        ``phase_cross_correlation`` (with ``normalization="phase"`` it is close
        to 1 whatever the quality, see scikit-image issue #6376).
    phasediff : float
        Global phase difference of the two images (for complex input).
    upsample_factor : int
        Sub-pixel resolution used: the shift is known to ``1 / upsample_factor`` px.
    on : str
        What was registered: amplitude, phase, complex or real values.
    normalization : str or None
        Cross-correlation normalisation passed to scikit-image.
    """

    shift: tuple
    error: float
    phasediff: float
    upsample_factor: int
    on: str
    normalization: str | None

    @property
    def dy(self) -> float:
        """Row shift."""
        return self.shift[0]

    @property
    def dx(self) -> float:
        """Column shift."""
        return self.shift[1]


def _as_image(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise PtyAnalysisError(f"{name} must be a 2-D image, got shape {np.shape(a)}")
    if not (np.issubdtype(arr.dtype, np.number)):
        raise PtyAnalysisError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _view(a: np.ndarray, on: str) -> np.ndarray:
    if on == "amplitude":
        return np.abs(a)
    if on == "phase":
        return np.angle(a) if np.iscomplexobj(a) else a
    if on == "real":
        return np.real(a)
    return a  # complex


def register(reference, moving, upsample_factor: int = 50, on: str = "amplitude",
             normalization: str | None = "phase") -> Registration:
    """Sub-pixel shift that aligns ``moving`` with ``reference``.

    Wraps ``skimage.registration.phase_cross_correlation`` (upsampled DFT
    cross-correlation of Guizar-Sicairos et al. 2008).

    Parameters
    ----------
    reference, moving : array_like, shape (H, W)
        Images of the same shape (real or complex).
    upsample_factor : int
        Sub-pixel resolution: the shift is found to ``1 / upsample_factor`` px
        (the study used 50).
    on : {"amplitude", "phase", "complex", "real"}
        Which view of the images is correlated (the study: amplitude).
    normalization : {"phase", None}
        scikit-image's cross-power normalisation ("phase" = its default,
        phase correlation; None = plain cross-correlation, more robust for
        smooth or noisy images).

    Returns
    -------
    Registration
        ``shift = (dy, dx)`` such that ``apply_shift(moving, shift)`` matches
        ``reference``; error and phase difference estimates.

    Raises
    ------
    PtyAnalysisError
        Shapes differ, non-finite values, or bad options.
    """
    from skimage.registration import phase_cross_correlation

    ref = _as_image(reference, "reference")
    mov = _as_image(moving, "moving")
    if ref.shape != mov.shape:
        raise PtyAnalysisError(f"reference {ref.shape} and moving {mov.shape} must have the same shape")
    if on not in _ON:
        raise PtyAnalysisError(f"on must be one of {_ON}, got {on!r}")
    if isinstance(upsample_factor, bool) or int(upsample_factor) != upsample_factor or upsample_factor < 1:
        raise PtyAnalysisError(f"upsample_factor must be a positive integer, got {upsample_factor!r}")
    if normalization not in ("phase", None):
        raise PtyAnalysisError(f"normalization must be 'phase' or None, got {normalization!r}")
    r, m = _view(ref, on), _view(mov, on)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(m))):
        raise PtyAnalysisError("cannot register images containing NaN or Inf")
    shift, error, phasediff = phase_cross_correlation(
        r, m, upsample_factor=int(upsample_factor), normalization=normalization
    )
    return Registration(
        shift=(float(shift[0]), float(shift[1])),
        error=float(error),
        phasediff=float(phasediff),
        upsample_factor=int(upsample_factor),
        on=on,
        normalization=normalization,
    )


def apply_shift(image, shift) -> np.ndarray:
    """Shift an image by a (sub-pixel) amount with a Fourier phase ramp.

    Uses ``scipy.ndimage.fourier_shift``; the shift is circular (content that
    leaves one edge re-enters at the other: crop the borders afterwards, see
    :func:`crop_border`).

    Parameters
    ----------
    image : array_like, shape (H, W)
        Real or complex image.
    shift : tuple of float or Registration
        ``(dy, dx)``, scipy.ndimage.shift sign.

    Returns
    -------
    ndarray
        Complex for complex input (complex64 stays complex64), real part for
        real input.
    """
    from scipy import ndimage

    img = _as_image(image, "image")
    if isinstance(shift, Registration):
        shift = shift.shift
    s = np.asarray(shift, dtype=np.float64).reshape(-1)
    if s.shape != (2,) or not np.all(np.isfinite(s)):
        raise PtyAnalysisError(f"shift must be two finite numbers (dy, dx), got {shift!r}")
    single = img.dtype in (np.float32, np.complex64)
    F = np.fft.fft2(img.astype(np.complex128))
    out = np.fft.ifft2(ndimage.fourier_shift(F, s))
    if not np.iscomplexobj(img):
        out = out.real
        return out.astype(np.float32) if single else out
    return out.astype(np.complex64) if single else out


def crop_border(image, px: int) -> np.ndarray:
    """Remove ``px`` pixels from every border.

    Parameters
    ----------
    image : array_like, shape (H, W)
    px : int
        Pixels to drop on each side (0 returns the image unchanged).

    Returns
    -------
    ndarray, shape (H - 2 px, W - 2 px)
    """
    img = _as_image(image, "image")
    if isinstance(px, bool) or int(px) != px or px < 0:
        raise PtyAnalysisError(f"px must be a non-negative integer, got {px!r}")
    px = int(px)
    if 2 * px >= min(img.shape):
        raise PtyAnalysisError(f"cannot crop {px} px from each border of a {img.shape} image")
    return img[px:img.shape[0] - px, px:img.shape[1] - px] if px else img


def _mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    m = np.asarray(mask, bool)
    if m.shape != shape:
        raise PtyAnalysisError(f"mask has shape {m.shape} but the image is {shape}")
    return m


def fit_phase_plane(phase, mask=None) -> tuple:
    """Least-squares plane ``a * x + b * y + c`` through a phase image.

    Parameters
    ----------
    phase : array_like, shape (H, W)
        Real phase image (radians); x is the column index, y the row index.
    mask : array_like of bool, optional
        Pixels to fit (default all finite pixels).

    Returns
    -------
    tuple of float
        ``(a, b, c)``: slope along columns, slope along rows, constant.
    """
    ph = _as_image(phase, "phase")
    if np.iscomplexobj(ph):
        raise PtyAnalysisError("phase must be real (pass np.angle(obj))")
    m = _mask(mask, ph.shape) & np.isfinite(ph)
    if m.sum() < 3:
        raise PtyAnalysisError("need at least 3 valid pixels to fit a phase plane")
    y, x = np.nonzero(m)
    A = np.column_stack([x, y, np.ones_like(x)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(A, ph[m].astype(np.float64), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def remove_phase_plane(phase, mask=None) -> np.ndarray:
    """Subtract the least-squares plane ``a x + b y + c`` from a phase image.

    Parameters
    ----------
    phase : array_like, shape (H, W)
        Real phase (radians), no unwrapping is done.
    mask : array_like of bool, optional
        Pixels used for the fit (the plane is removed everywhere).

    Returns
    -------
    ndarray (float64)
        ``phase - plane``.
    """
    ph = _as_image(phase, "phase")
    a, b, c = fit_phase_plane(ph, mask)
    yy, xx = np.indices(ph.shape, dtype=np.float64)
    return ph.astype(np.float64) - (a * xx + b * yy + c)


def remove_phase_offset(pred, reference=None, mask=None) -> np.ndarray:
    """Remove a global phase offset.

    Parameters
    ----------
    pred : array_like, shape (H, W)
        Complex object or real phase image.
    reference : array_like, optional
        Same kind and shape: the offset is then the one that best matches it.
    mask : array_like of bool, optional
        Pixels used to estimate the offset.

    Returns
    -------
    ndarray
        Complex input: ``pred * exp(-i theta)`` with ``theta =
        angle(sum(pred * conj(reference)))`` (or ``angle(sum(pred))`` without a
        reference), i.e. the least-squares optimal global phase. Real input:
        ``pred - mean(pred - reference)`` (or ``pred - mean(pred)``).
    """
    p = _as_image(pred, "pred")
    m = _mask(mask, p.shape)
    if reference is not None:
        ref = _as_image(reference, "reference")
        if ref.shape != p.shape:
            raise PtyAnalysisError(f"pred {p.shape} and reference {ref.shape} must have the same shape")
    if np.iscomplexobj(p):
        z = p[m] * np.conj(ref[m]) if reference is not None else p[m]
        theta = float(np.angle(np.sum(z)))
        return p * np.exp(-1j * theta).astype(p.dtype)
    d = p[m] - ref[m] if reference is not None else p[m]
    return p - np.mean(d)


def normalize_amplitude_mean(pred_amp, ref_amp, mask=None) -> np.ndarray:
    """Rescale an amplitude image so that its mean equals the reference's.

    Parameters
    ----------
    pred_amp, ref_amp : array_like, shape (H, W)
        Real amplitude images.
    mask : array_like of bool, optional
        Pixels over which the means are taken.

    Returns
    -------
    ndarray (float64)
        ``pred_amp * mean(ref_amp) / mean(pred_amp)``; all NaN where the
        prediction's mean is 0 or not finite (e.g. an all-zero prediction),
        since no scale makes it match.
    """
    p = _as_image(pred_amp, "pred_amp").astype(np.float64)
    r = _as_image(ref_amp, "ref_amp").astype(np.float64)
    if p.shape != r.shape:
        raise PtyAnalysisError(f"pred_amp {p.shape} and ref_amp {r.shape} must have the same shape")
    m = _mask(mask, p.shape)
    mp, mr = float(np.mean(p[m])), float(np.mean(r[m]))
    if mp == 0 or not math.isfinite(mp):
        return np.full(p.shape, np.nan)
    return p * (mr / mp)


def crop_to_scan(obj, positions=None, N=None, *, frame=None, crop=None, method="bilinear",
                 fill=None) -> np.ndarray:
    """Cut the part of a ground-truth object that a stitched canvas shows.

    Parameters
    ----------
    obj : array_like, shape (H_obj, W_obj)
        Ground-truth object (object pixel (0, 0) is ``obj[0, 0]``).
    positions : array_like, shape (n, 2), optional
        Scan positions (row, col); with ``N`` they give the frame that
        :func:`ptyanalysis.imaging.stitching.stitch` derives (bounding box of the patches).
    N : int, optional
        Patch size (with ``positions``).
    frame : StitchResult or (origin, shape), optional
        The canvas frame directly: a :class:`~ptyanalysis.imaging.stitching.StitchResult`
        or a pair ``((row0, col0), (H, W))``. Takes precedence over positions.
    crop : int, optional
        Central crop used when stitching (with ``positions``).
    method : str
        Placement method used when stitching (with ``positions``).
    fill : float, optional
        Value for canvas pixels outside the object. Default: such pixels are
        an error.

    Returns
    -------
    ndarray, shape (H, W)
        ``obj[row0:row0 + H, col0:col0 + W]``, pixel for pixel aligned with the
        canvas.
    """
    from ..imaging.stitching import StitchResult, scan_frame

    o = np.asarray(obj)
    if o.ndim != 2:
        raise PtyAnalysisError(f"obj must be a 2-D object, got shape {o.shape}")
    if frame is not None:
        if isinstance(frame, StitchResult):
            origin, shape = frame.origin, frame.shape
        else:
            bad = PtyAnalysisError(f"frame must be a StitchResult or ((row0, col0), (H, W)), got {frame!r}")
            try:
                origin, shape = frame
                origin = tuple(int(v) for v in origin)
                shape = tuple(int(v) for v in shape)
            except (TypeError, ValueError):
                raise bad from None
            if len(origin) != 2 or len(shape) != 2:
                raise bad
    elif positions is not None and N is not None:
        origin, shape = scan_frame(positions, N, crop=crop, method=method)
    else:
        raise PtyAnalysisError("give either frame=(origin, shape) / a StitchResult, or positions and N")
    r0, c0 = origin
    H, W = shape
    if H < 1 or W < 1:
        raise PtyAnalysisError(f"frame shape must be positive, got {shape}")
    inside = r0 >= 0 and c0 >= 0 and r0 + H <= o.shape[0] and c0 + W <= o.shape[1]
    if inside:
        return o[r0:r0 + H, c0:c0 + W]
    if fill is None:
        raise PtyAnalysisError(
            f"the canvas frame rows {r0}..{r0 + H - 1}, cols {c0}..{c0 + W - 1} extends beyond the "
            f"{o.shape[0]} x {o.shape[1]} object; pass fill=np.nan to pad"
        )
    dtype = np.result_type(o.dtype, np.asarray(fill).dtype)
    out = np.full((H, W), fill, dtype=dtype)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + H, o.shape[0]), min(c0 + W, o.shape[1])
    if rs < re and cs < ce:
        out[rs - r0:re - r0, cs - c0:ce - c0] = o[rs:re, cs:ce]
    return out

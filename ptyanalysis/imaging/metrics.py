"""Image-quality metrics for reconstructions, on amplitude and phase separately.

Two conventions are offered by :func:`score`:

``"ptyanalysis"`` (ours; every parameter is explicit and reported)
    * ``border`` px trimmed from every side (default 2).
    * Phase: the global phase offset that best matches the ground truth is
      removed from the prediction (:func:`ptyanalysis.imaging.align.remove_phase_offset`
      on the complex images); phase errors (MAE, MSE, PSNR) use the wrapped
      difference ``angle(exp(i (phi_pred - phi_gt)))``.
    * Amplitude: not rescaled (``amplitude_scale="mean"`` rescales to the GT mean).
    * PSNR = ``10 log10(data_range^2 / MSE)`` with ``data_range`` given or GT
      max - min (reported).
    * SSIM: ``skimage.metrics.structural_similarity`` with the same
      ``data_range`` and scikit-image's defaults (7 x 7 uniform window, sample
      covariance) unless ``ssim_kwargs`` say otherwise (:func:`ssim`).
    * MS-SSIM: Wang, Simoncelli & Bovik 2003 (:func:`ms_ssim`): Gaussian window
      11 x 11, sigma 1.5, population covariance, contrast-structure at the first
      L - 1 scales and luminance x contrast-structure at the last, 2 x 2
      average-pool between scales, weights (0.0448, 0.2856, 0.3001, 0.2363,
      0.1333); L is reduced to fit the image (reported) and the weights
      renormalised; negative terms are clamped to 0.
    * FRC (:func:`frc`): rings one frequency step wide in cycles/pixel, the
      1/2-bit threshold of van Heel & Schatz (2005) and the fixed 1/7
      threshold; resolution = first interpolated crossing, as a frequency
      (cycles/pixel) and a period (pixels per cycle).

``"ptychopinn"`` (reproduces the study's ``compare_models``, docs/formats.md#metric-conventions)
    2 px trim; least-squares phase plane removed from prediction and GT
    separately (or the mean, ``phase_align="mean"``); prediction amplitude
    rescaled to the GT mean; MAE/MSE plain means; PSNR with a peak of 255;
    SSIM with scikit-image defaults, amplitude ``data_range`` = GT max - min,
    phase on ``(phi + pi) / 2 pi`` with ``data_range`` 1; MS-SSIM = product of
    full SSIM over up to 5 levels with ``[::2, ::2]`` decimation, stopping below
    7 px, negatives clamped to 1e-4, amplitude pre-smoothed with a Gaussian of
    sigma 1.0, ``data_range`` = the larger of the two images' ranges (inferred
    from the study's ``evaluation.ms_ssim``); FRC exactly as PtychoPINN's
    ``FSC`` computes it (docs/formats.md#frc, :func:`ptychopinn_frc`): both
    images centre-cropped to a square of side n, rings
    ``round(sqrt(dy^2 + dx^2))`` about pixel ``(n // 2, n // 2)`` of the
    fftshifted transforms over the *whole* square, so the curve runs to the
    corners (``round(sqrt(2) * (n // 2)) + 1`` rings: 66 for 92 px, 89 for
    124 px), ``|sum F1 F2*| / sqrt(sum |F1|^2 sum |F2|^2)``; ``frc50`` /
    ``frc1over7`` = the first ring index whose value is below the threshold,
    linearly interpolated from the ring before, ``len(curve)`` when the curve
    never drops below it (:func:`ptychopinn_frc_cutoff`). These are ring
    indices, not frequencies: ring ``k`` is ``k / n`` cycles/pixel, and rings
    beyond ``n // 2`` lie past Nyquist along the axes.

The two conventions are listed in :data:`ptyanalysis.conventions.METRIC_CONVENTIONS`
(re-exported here as ``CONVENTIONS``); every result of :func:`score` carries
its ``"convention"``.

An all-zero prediction has no scale and no phase: its metrics are NaN (never
an exception).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ..conventions import METRIC_CONVENTIONS as CONVENTIONS
from ..errors import PtyAnalysisError

__all__ = [
    "CONVENTIONS",
    "MS_SSIM_WEIGHTS",
    "FRCResult",
    "mae",
    "mse",
    "psnr",
    "ssim",
    "ms_ssim",
    "frc",
    "half_bit_threshold",
    "score",
    "ptychopinn_ms_ssim",
    "ptychopinn_ms_ssim_levels",
    "NEGATIVE_SSIM_CLAMP",
    "ptychopinn_frc",
    "ptychopinn_frc_rings",
    "ptychopinn_frc_cutoff",
    "metric_unit",
]

#: Unit of each metric's value: ``{metric: unit}`` or ``{metric: {component: unit}}``, the same in both
#: conventions except where :data:`_CONVENTION_UNITS` says otherwise; ``"1"`` is dimensionless.
_UNITS = {
    "mae": {"amplitude": "amplitude units (ground truth's)", "phase": "rad"},
    "mse": {"amplitude": "amplitude units^2", "phase": "rad^2"},
    "psnr": "dB",
    "ssim": "1",
    "ms_ssim": "1",
    "frc_half_bit": "cycles/pixel",
    "period_half_bit": "pixels",
    "period_one_seventh": "pixels",
    "registration_offset_dy": "pixels",
    "registration_offset_dx": "pixels",
    "computation_time_s": "s",
}
#: FRC cut-offs: PtychoPINN's are ring indices (ring k = k/n cycles/pixel), ptyanalysis's frequencies.
_CONVENTION_UNITS = {
    "ptychopinn": {"frc50": "ring index", "frc1over7": "ring index"},
    "ptyanalysis": {"frc50": "cycles/pixel", "frc1over7": "cycles/pixel"},
}


def metric_unit(metric: str, component: str = "amplitude", convention: str = "ptychopinn") -> str:
    """The unit of a metric's value: the one table every result file and report takes units from.

    Parameters
    ----------
    metric : str
        E.g. ``"mae"``, ``"frc50"``, ``"computation_time_s"``.
    component : {"amplitude", "phase", "value"}
    convention : {"ptychopinn", "ptyanalysis"}

    Returns
    -------
    str
        ``"1"`` for dimensionless values, ``""`` for a metric this table does not know.
    """
    if convention not in _CONVENTION_UNITS:
        raise PtyAnalysisError(f"convention must be one of {', '.join(map(repr, _CONVENTION_UNITS))}, "
                               f"got {convention!r}")
    u = _CONVENTION_UNITS[convention].get(metric, _UNITS.get(metric, ""))
    return u.get(component, "") if isinstance(u, dict) else u

#: Wang et al. (2003) scale weights.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: The 1/7 FRC threshold.
ONE_SEVENTH = 1.0 / 7.0


# --------------------------------------------------------------------------- #
# input helpers
# --------------------------------------------------------------------------- #
def _pair(a, b, names=("pred", "gt"), real=True):
    x = np.asarray(a)
    y = np.asarray(b)
    for arr, nm in ((x, names[0]), (y, names[1])):
        if arr.ndim != 2 or min(arr.shape) == 0:
            raise PtyAnalysisError(f"{nm} must be a 2-D image, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise PtyAnalysisError(f"{nm} must be numeric, got dtype {arr.dtype}")
        if real and np.iscomplexobj(arr):
            raise PtyAnalysisError(f"{nm} must be real here (pass the amplitude or the phase)")
    if x.shape != y.shape:
        raise PtyAnalysisError(f"{names[0]} {x.shape} and {names[1]} {y.shape} must have the same shape")
    return x.astype(np.float64), y.astype(np.float64)


def _squeeze2d(a, name):
    arr = np.asarray(a)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise PtyAnalysisError(f"{name} must be a 2-D image, got shape {np.shape(a)}")
    return arr


def _derive_range(ref: np.ndarray, data_range) -> float:
    if data_range is None:
        r = float(np.nanmax(ref) - np.nanmin(ref)) if np.isfinite(ref).any() else float("nan")
    else:
        r = float(data_range)
    if not (r > 0) and not math.isnan(r):
        raise PtyAnalysisError(
            f"data_range must be positive; the reference is constant (range {r}), pass data_range explicitly"
        )
    return r


def _nan_if_bad(x: np.ndarray) -> bool:
    return not np.all(np.isfinite(x))


# --------------------------------------------------------------------------- #
# scalar metrics
# --------------------------------------------------------------------------- #
def mae(pred, gt) -> float:
    """Mean absolute error ``mean |pred - gt|`` (NaN if any value is not finite)."""
    p, g = _pair(pred, gt)
    return float(np.mean(np.abs(p - g)))


def mse(pred, gt) -> float:
    """Mean squared error ``mean (pred - gt)^2`` (NaN if any value is not finite)."""
    p, g = _pair(pred, gt)
    return float(np.mean((p - g) ** 2))


def psnr(pred, gt, data_range=None) -> tuple:
    """Peak signal-to-noise ratio.

    Parameters
    ----------
    pred, gt : array_like, shape (H, W)
        Real images.
    data_range : float, optional
        Peak value range. Default: ``gt.max() - gt.min()``.

    Returns
    -------
    psnr : float
        ``10 log10(data_range^2 / MSE)`` in dB (inf for identical images).
    data_range : float
        The range used.
    """
    p, g = _pair(pred, gt)
    dr = _derive_range(g, data_range)
    m = float(np.mean((p - g) ** 2))
    if math.isnan(m) or math.isnan(dr):
        return float("nan"), dr
    if m == 0:
        return float("inf"), dr
    return float(10.0 * np.log10(dr * dr / m)), dr


def ssim(pred, gt, data_range=None, **kwargs) -> float:
    """Structural similarity, exactly ``skimage.metrics.structural_similarity``.

    Parameters
    ----------
    pred, gt : array_like, shape (H, W)
        Real images (``gt`` is the reference; SSIM is symmetric anyway).
    data_range : float, optional
        Passed to scikit-image. Default: ``gt.max() - gt.min()`` (scikit-image
        requires it for float images).
    **kwargs
        Passed through: ``win_size`` (default 7), ``gaussian_weights`` (False),
        ``sigma`` (1.5, only with Gaussian weights), ``use_sample_covariance``
        (True), ``K1`` (0.01), ``K2`` (0.03). Wang et al. 2004's settings are
        ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.

    Returns
    -------
    float
        Mean SSIM; NaN if any input value is not finite.
    """
    from skimage.metrics import structural_similarity

    p, g = _pair(pred, gt)
    dr = _derive_range(g, data_range)
    if _nan_if_bad(p) or _nan_if_bad(g) or math.isnan(dr):
        return float("nan")
    win = kwargs.get("win_size", 7 if not kwargs.get("gaussian_weights") else None)
    if win is not None and min(p.shape) < win:
        raise PtyAnalysisError(f"images of shape {p.shape} are smaller than the {win} x {win} SSIM window")
    return float(structural_similarity(g, p, data_range=dr, **kwargs))


def _gauss_stats(x, y, sigma=1.5, truncate=3.5, K1=0.01, K2=0.03, data_range=1.0):
    """Mean luminance and contrast-structure terms with a Gaussian window (valid region)."""
    from scipy.ndimage import gaussian_filter

    def f(a):
        return gaussian_filter(a, sigma=sigma, truncate=truncate, mode="reflect")

    ux, uy = f(x), f(y)
    vx = f(x * x) - ux * ux
    vy = f(y * y) - uy * uy
    vxy = f(x * y) - ux * uy
    C1 = (K1 * data_range) ** 2
    C2 = (K2 * data_range) ** 2
    lum = (2 * ux * uy + C1) / (ux * ux + uy * uy + C1)
    cs = (2 * vxy + C2) / (vx + vy + C2)
    pad = int(truncate * sigma + 0.5)
    sl = (slice(pad, -pad or None), slice(pad, -pad or None))
    return float(np.mean(lum[sl])), float(np.mean(cs[sl])), float(np.mean((lum * cs)[sl]))


def _ms_scales(shape, win: int, max_scales: int) -> int:
    """Number of MS-SSIM scales whose image is still at least ``win`` pixels on each side."""
    L, side = 0, min(shape)
    while L < max_scales and side >= win:
        L += 1
        side //= 2
    return L


def ms_ssim(pred, gt, data_range=None, *, weights=MS_SSIM_WEIGHTS, sigma=1.5, K1=0.01, K2=0.03,
            return_details=False):
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003).

    Parameters
    ----------
    pred, gt : array_like, shape (H, W)
        Real images.
    data_range : float, optional
        Default ``gt.max() - gt.min()``.
    weights : sequence of float
        Scale weights, finest first (default the standard five).
    sigma : float
        Gaussian window sigma; the window is truncated at 3.5 sigma (11 x 11
        for sigma 1.5, as in scikit-image's ``gaussian_weights=True``).
    K1, K2 : float
        Stability constants.
    return_details : bool
        Also return a dict with the scales used, the renormalised weights and
        the per-scale cs / luminance values.

    Returns
    -------
    float or (float, dict)
        MS-SSIM in [0, 1] (terms clamped at 0); NaN if inputs are not finite.
        The number of scales is the largest ``L <= len(weights)`` for which the
        coarsest image is still at least as large as the window; the weights
        are renormalised to sum to 1.
    """
    p, g = _pair(pred, gt)
    dr = _derive_range(g, data_range)
    win = 2 * int(3.5 * sigma + 0.5) + 1
    w = np.asarray(weights, dtype=np.float64)
    L = _ms_scales(p.shape, win, len(w))
    if L == 0:
        raise PtyAnalysisError(f"images of shape {p.shape} are smaller than the {win} x {win} MS-SSIM window")
    wn = w[:L] / w[:L].sum()
    details = {"scales": L, "weights": wn.tolist(), "data_range": dr, "window": win, "sigma": sigma,
               "cs": [], "luminance": []}
    if _nan_if_bad(p) or _nan_if_bad(g) or math.isnan(dr):
        return (float("nan"), details) if return_details else float("nan")
    x, y = g, p
    value = 1.0
    for j in range(L):
        lum, cs, full = _gauss_stats(x, y, sigma=sigma, K1=K1, K2=K2, data_range=dr)
        details["cs"].append(cs)
        details["luminance"].append(lum)
        term = cs if j < L - 1 else full  # last scale: mean of the luminance x cs map (= SSIM)
        value *= max(term, 0.0) ** wn[j]
        if j < L - 1:
            h, wd = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = x[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean(axis=(1, 3))
            y = y[:h, :wd].reshape(h // 2, 2, wd // 2, 2).mean(axis=(1, 3))
    return (float(value), details) if return_details else float(value)


# --------------------------------------------------------------------------- #
# FRC
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FRCResult:
    """A Fourier ring correlation curve and its resolution estimates.

    Attributes
    ----------
    frequency : ndarray
        Ring centre frequencies in cycles/pixel (0 .. 0.5).
    frc : ndarray
        Correlation per ring.
    half_bit : ndarray
        1/2-bit threshold curve (van Heel & Schatz 2005) for each ring.
    one_seventh : ndarray
        The 1/7 threshold (constant).
    n_per_ring : ndarray
        Fourier pixels per ring.
    resolution_half_bit : float
        Frequency (cycles/pixel) of the first crossing of the 1/2-bit curve,
        interpolated; the highest ring frequency if it never crosses (a lower
        bound); NaN if the FRC is undefined.
    resolution_one_seventh : float
        Same for the 1/7 threshold.
    period_half_bit, period_one_seventh : float
        The same resolutions in pixels per cycle (``1 / frequency``).
    crossed_half_bit, crossed_one_seventh : bool
        Whether the curve actually crosses the threshold.
    """

    frequency: np.ndarray
    frc: np.ndarray
    half_bit: np.ndarray
    one_seventh: np.ndarray
    n_per_ring: np.ndarray
    resolution_half_bit: float
    resolution_one_seventh: float
    period_half_bit: float
    period_one_seventh: float
    crossed_half_bit: bool
    crossed_one_seventh: bool

    def to_dict(self) -> dict:
        """JSON-friendly dict (arrays as lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def half_bit_threshold(n_per_ring) -> np.ndarray:
    """The 1/2-bit information threshold of van Heel & Schatz (2005).

    ``T = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))`` with ``n``
    the number of Fourier pixels in the ring.
    """
    n = np.asarray(n_per_ring, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = 1.0 / np.sqrt(n)
        return (0.2071 + 1.9102 * s) / (1.2071 + 0.9102 * s)


def _first_crossing(x, curve, threshold, start=1):
    """Interpolated x of the first index >= start where curve drops below threshold."""
    d = curve - threshold
    for k in range(max(start, 1), len(curve)):
        if d[k] < 0:
            if d[k - 1] >= 0:
                t = d[k - 1] / (d[k - 1] - d[k])
                return float(x[k - 1] + t * (x[k] - x[k - 1])), True
            return float(x[k - 1]), True  # already below before the search start
    return float(x[-1]), False


def frc(a, b, *, ring_width: float = 1.0) -> FRCResult:
    """Fourier ring correlation of two images.

    Parameters
    ----------
    a, b : array_like, shape (H, W)
        Real or complex images (e.g. prediction and ground truth, or two
        independent reconstructions). No window or padding is applied: remove
        phase ramps and register first.
    ring_width : float
        Ring width in units of the frequency step ``1 / min(H, W)``.

    Returns
    -------
    FRCResult
        Rings from 0 to 0.5 cycles/pixel (frequency measured per axis with
        ``numpy.fft.fftfreq``, so non-square images are handled). The
        resolution search skips the DC ring.
    """
    x = np.asarray(a)
    y = np.asarray(b)
    if x.ndim != 2 or x.shape != y.shape or min(x.shape) < 4:
        raise PtyAnalysisError(f"frc needs two 2-D images of the same shape (at least 4 x 4), got {x.shape} and {y.shape}")
    if not ring_width > 0:
        raise PtyAnalysisError(f"ring_width must be positive, got {ring_width!r}")
    H, W = x.shape
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.fftfreq(W)[None, :]
    r = np.sqrt(fy * fy + fx * fx)
    step = ring_width / min(H, W)
    idx = np.rint(r / step).astype(np.int64)
    nr = int(np.floor(0.5 / step)) + 1
    sel = idx < nr
    idx = idx[sel]
    F1 = np.fft.fft2(x)[sel]
    F2 = np.fft.fft2(y)[sel]
    c12 = np.bincount(idx, weights=(F1 * np.conj(F2)).real, minlength=nr)
    c12i = np.bincount(idx, weights=(F1 * np.conj(F2)).imag, minlength=nr)
    c11 = np.bincount(idx, weights=np.abs(F1) ** 2, minlength=nr)
    c22 = np.bincount(idx, weights=np.abs(F2) ** 2, minlength=nr)
    n = np.bincount(idx, minlength=nr)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = np.hypot(c12, c12i) / np.sqrt(c11 * c22)
    curve = np.where((c11 > 0) & (c22 > 0), curve, np.nan)
    freq = np.arange(nr) * step
    hb = half_bit_threshold(np.maximum(n, 1))
    s7 = np.full(nr, ONE_SEVENTH)
    valid = np.isfinite(curve[1:]).all() and np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    if valid:
        rh, ch = _first_crossing(freq, curve, hb)
        r7, c7 = _first_crossing(freq, curve, s7)
    else:
        rh = r7 = float("nan")
        ch = c7 = False
    with np.errstate(divide="ignore"):
        ph = 1.0 / rh if rh else float("inf")
        p7 = 1.0 / r7 if r7 else float("inf")
    return FRCResult(freq, curve, hb, s7, n, rh, r7, ph, p7, ch, c7)


# --------------------------------------------------------------------------- #
# the study's (PtychoPINN compare_models) metric variants
# --------------------------------------------------------------------------- #
def ptychopinn_ms_ssim(pred, gt, *, sigma_smooth: float = 0.0, levels: int = 5,
                       weights=MS_SSIM_WEIGHTS, min_size: int = 7) -> float:
    """MS-SSIM as the study computed it.

    Product over up to ``levels`` of full scikit-image SSIM (default 7 x 7
    window) raised to the weights, ``[::2, ::2]`` decimation between levels,
    stop when the image is smaller than ``min_size``, negative SSIM clamped to
    1e-4 (with a warning; :func:`ptychopinn_ms_ssim_levels` returns which),
    ``data_range`` = the larger of the two images' ranges; both images
    pre-smoothed with a Gaussian of ``sigma_smooth`` (the study: 1.0 for
    amplitude, 0 for phase).

    Returns
    -------
    float
        NaN if an input is not finite.
    """
    value, clamped = ptychopinn_ms_ssim_levels(pred, gt, sigma_smooth=sigma_smooth, levels=levels, weights=weights,
                                               min_size=min_size)
    for v in clamped:
        warnings.warn(f"negative SSIM {v:.4g} clamped to {NEGATIVE_SSIM_CLAMP:g} (study convention)", RuntimeWarning,
                      stacklevel=2)
    return value


#: What the study's MS-SSIM puts in place of a negative SSIM level.
NEGATIVE_SSIM_CLAMP = 1e-4


def ptychopinn_ms_ssim_levels(pred, gt, *, sigma_smooth: float = 0.0, levels: int = 5,
                              weights=MS_SSIM_WEIGHTS, min_size: int = 7) -> tuple[float, list]:
    """:func:`ptychopinn_ms_ssim` and the negative SSIM levels it clamped.

    A clamped level makes the MS-SSIM a floor set by the convention rather
    than a measurement (the prediction is anti-correlated with the truth at
    that scale); the comparison records them and the report says so.

    Returns
    -------
    value : float
        The MS-SSIM (NaN if an input is not finite).
    clamped : list of float
        The raw negative SSIM of each clamped level, coarse levels last.
    """
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    p, g = _pair(pred, gt)
    if _nan_if_bad(p) or _nan_if_bad(g):
        return float("nan"), []
    if sigma_smooth > 0:
        p = gaussian_filter(p, sigma_smooth)
        g = gaussian_filter(g, sigma_smooth)
    dr = max(float(g.max() - g.min()), float(p.max() - p.min()))
    if dr <= 0:
        return float("nan"), []
    vals, clamped = [], []
    for _ in range(levels):
        if min(p.shape) < min_size:
            break
        v = float(structural_similarity(g, p, data_range=dr))
        if v < 0:
            clamped.append(v)
            v = NEGATIVE_SSIM_CLAMP
        vals.append(v)
        p, g = p[::2, ::2], g[::2, ::2]
    if not vals:
        return float("nan"), clamped
    w = np.asarray(weights[: len(vals)], dtype=np.float64)
    return float(np.prod(np.power(vals, w))), clamped


def ptychopinn_frc_rings(n: int) -> np.ndarray:
    """Ring index of every pixel of an ``n x n`` fftshifted spectrum, as PtychoPINN's ``FSC`` bins it.

    ``round(sqrt(dy^2 + dx^2))`` with ``dy, dx`` measured from pixel
    ``(n // 2, n // 2)`` (numpy's ``rint``: halves go to the even integer, as
    numpy's ``round`` does), over the whole square, so the rings run to the
    corners: ``ring.max() + 1 = round(sqrt(2) * (n // 2)) + 1`` rings.

    Parameters
    ----------
    n : int
        Side of the square image.

    Returns
    -------
    ndarray, shape (n, n), int64
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise PtyAnalysisError(f"n must be a positive integer image side, got {n!r}")
    d = np.arange(int(n)) - int(n) // 2
    return np.rint(np.hypot(d[:, None], d[None, :])).astype(np.int64)


def ptychopinn_frc(a, b) -> np.ndarray:
    """FRC curve exactly as the study (PtychoPINN's ``FSC``) computes it.

    Both images are centre-cropped to the largest common square (side ``n``:
    rows and columns from ``(H - n) // 2`` and ``(W - n) // 2``), Fourier
    transformed and fftshifted; the rings are :func:`ptychopinn_frc_rings`
    (the whole square, to the corners) and
    ``FRC = |sum_ring F1 F2*| / sqrt(sum_ring |F1|^2 sum_ring |F2|^2)``
    (the absolute value of the cross term, not its real part; PtychoPINN
    divides each sum by the ring's pixel count, which cancels).

    Parameters
    ----------
    a, b : array_like, shape (H, W)
        The two images (the study passes the ground truth first; the value is
        symmetric).

    Returns
    -------
    ndarray, shape (round(sqrt(2) * (n // 2)) + 1,)
        One value per ring, ring 0 (DC) first; NaN for a ring where either
        image has no power.
    """
    x = np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)
    y = np.asarray(b, dtype=np.complex128 if np.iscomplexobj(b) else np.float64)
    if x.ndim != 2 or x.shape != y.shape or min(x.shape) == 0:
        raise PtyAnalysisError(f"FRC needs two 2-D images of the same shape, got {x.shape} and {y.shape}")
    side = min(x.shape)
    r0 = (x.shape[0] - side) // 2
    c0 = (x.shape[1] - side) // 2
    x = x[r0:r0 + side, c0:c0 + side]
    y = y[r0:r0 + side, c0:c0 + side]
    F1 = np.fft.fftshift(np.fft.fft2(x))
    F2 = np.fft.fftshift(np.fft.fft2(y))
    ring = ptychopinn_frc_rings(side).ravel()
    nr = int(ring.max()) + 1
    z = (F1 * np.conj(F2)).ravel()
    c12 = np.hypot(np.bincount(ring, z.real, nr), np.bincount(ring, z.imag, nr))
    c11 = np.bincount(ring, (np.abs(F1) ** 2).ravel(), nr)
    c22 = np.bincount(ring, (np.abs(F2) ** 2).ravel(), nr)
    with np.errstate(divide="ignore", invalid="ignore"):
        return c12 / np.sqrt(c11 * c22)


def ptychopinn_frc_cutoff(curve, threshold: float) -> float:
    """First ring index where ``curve`` drops below ``threshold``, as PtychoPINN computes it.

    Let ``i`` be the first index whose value is finite and below
    ``threshold``. The result is ``i - 1 + (threshold - c[i-1]) / (c[i] -
    c[i-1])`` (linear interpolation from the ring before), clipped to
    ``[i - 1, i]``; ``i`` itself when the ring before is not finite or the two
    values are equal; 0.0 when ``i == 0``; ``len(curve)`` when no finite value
    is below the threshold (the curve never crosses); NaN for an empty curve or
    one with no finite value.

    Parameters
    ----------
    curve : array_like, shape (rings,)
        An FRC curve (:func:`ptychopinn_frc`).
    threshold : float
        0.5 for ``frc50``, 1/7 for ``frc1over7``.

    Returns
    -------
    float
        In ring-index units.
    """
    c = np.asarray(curve, dtype=np.float64).reshape(-1)
    finite = np.isfinite(c)
    if c.size == 0 or not finite.any():
        return float("nan")
    below = np.flatnonzero(finite & (c < float(threshold)))
    if below.size == 0:
        return float(c.size)
    i = int(below[0])
    if i == 0:
        return 0.0
    y0, y1 = float(c[i - 1]), float(c[i])
    if not math.isfinite(y0) or np.isclose(y1 - y0, 0.0):
        return float(i)
    t = (i - 1) + (float(threshold) - y0) / (y1 - y0)
    return float(min(max(t, i - 1), i)) if math.isfinite(t) else float(i)


# --------------------------------------------------------------------------- #
# score
# --------------------------------------------------------------------------- #
def _trim(a, px):
    if px == 0:
        return a
    if 2 * px >= min(a.shape):
        raise PtyAnalysisError(f"cannot trim {px} px from each border of a {a.shape} image")
    return a[px:-px, px:-px]


def _nan_block(extra=()):
    keys = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7") + tuple(extra)
    return {k: float("nan") for k in keys}


def score(pred, gt, convention: str = "ptyanalysis", *, border: int = 2, data_range=None,
          phase_data_range=None, phase_align: str | None = None, amplitude_scale: str | None = None,
          ssim_kwargs: dict | None = None, ms_ssim_sigma: float = 1.0) -> dict:
    """Score a complex reconstruction against the ground truth, amplitude and phase separately.

    Inputs must already be registered and on the same pixel grid (see
    :mod:`ptyanalysis.imaging.align`).

    Parameters
    ----------
    pred, gt : array_like, shape (H, W)
        Complex objects (a real array is taken as an amplitude with zero phase).
    convention : {"ptyanalysis", "ptychopinn"}
        Which metric definitions (module docstring).
    border : int
        Pixels trimmed from each border first (both conventions default to 2).
    data_range : float, optional
        Amplitude data range for PSNR/SSIM/MS-SSIM ("ptyanalysis"); default
        GT max - min. Ignored by "ptychopinn" (fixed by its rules).
    phase_data_range : float, optional
        Same for the phase ("ptyanalysis"); default GT phase max - min.
    phase_align : {"offset", "plane", "mean", None}, optional
        Phase preparation. Defaults: "offset" (ptyanalysis: global offset vs
        GT removed from the prediction), "plane" (ptychopinn: plane removed
        from each separately; "mean" removes each one's mean).
    amplitude_scale : {"mean", None}, optional
        Rescale the prediction amplitude to the GT mean. Defaults: None
        (ptyanalysis), "mean" (ptychopinn).
    ssim_kwargs : dict, optional
        Extra arguments for :func:`ssim` ("ptyanalysis" only).
    ms_ssim_sigma : float
        Amplitude pre-smoothing of the study's MS-SSIM ("ptychopinn" only).

    Returns
    -------
    dict
        ``{"convention", "params", "amplitude": {...}, "phase": {...},
        "frc_curves": {"amplitude": ..., "phase": ...}}`` where each block has
        ``mae, mse, psnr, ssim, ms_ssim, frc50, frc1over7`` (ptyanalysis also
        ``frc_half_bit`` and the matching periods in pixels; its ``frc50`` /
        ``frc1over7`` are frequencies in cycles/pixel, the study's are ring
        indices), and ``params`` lists every setting used. The ``ptychopinn``
        convention adds ``ms_ssim_clamped``: ``{component: [negative SSIM, ...]}``
        for the components whose MS-SSIM clamped a level
        (:func:`ptychopinn_ms_ssim_levels`; empty when none did).
    """
    if convention not in CONVENTIONS:
        raise PtyAnalysisError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    p = _squeeze2d(pred, "pred")
    g = _squeeze2d(gt, "gt")
    if p.shape != g.shape:
        raise PtyAnalysisError(f"pred {p.shape} and gt {g.shape} must have the same shape (register/crop first)")
    if isinstance(border, bool) or int(border) != border or border < 0:
        raise PtyAnalysisError(f"border must be a non-negative integer, got {border!r}")
    p = _trim(p.astype(np.complex128), int(border))
    g = _trim(g.astype(np.complex128), int(border))
    if not np.all(np.isfinite(g)):
        raise PtyAnalysisError("gt contains NaN or Inf")
    zero_pred = bool(np.all(p == 0)) or not np.all(np.isfinite(p))
    if convention == "ptychopinn":
        if min(g.shape) < 7:
            raise PtyAnalysisError(f"images of shape {g.shape} after the {int(border)} px border trim are smaller "
                                   "than the 7 x 7 SSIM window of the ptychopinn convention")
        return _score_ptychopinn(p, g, int(border), phase_align or "plane",
                                 "mean" if amplitude_scale is None else amplitude_scale, ms_ssim_sigma, zero_pred)
    return _score_ours(p, g, int(border), data_range, phase_data_range, phase_align or "offset",
                       amplitude_scale, dict(ssim_kwargs or {}), zero_pred)


def _score_ours(p, g, border, data_range, phase_data_range, phase_align, amplitude_scale, ssim_kw, zero_pred):
    from ..imaging.align import normalize_amplitude_mean, remove_phase_offset, remove_phase_plane

    if phase_align not in ("offset", "plane", "mean", "none"):
        raise PtyAnalysisError(f"phase_align must be 'offset', 'plane', 'mean' or 'none', got {phase_align!r}")
    ga = np.abs(g)
    gp = np.angle(g)
    # A constant GT (e.g. a pure phase object's amplitude) has no range: PSNR/SSIM are then NaN
    # for the amplitude unless data_range is given; the phase falls back to 2 pi.
    dr_a = _derive_range(ga, data_range) if (np.ptp(ga) > 0 or data_range is not None) else float("nan")
    dr_p = _derive_range(gp, phase_data_range) if (np.ptp(gp) > 0 or phase_data_range is not None) else 2 * np.pi
    params = {
        "border": border, "phase_align": phase_align, "amplitude_scale": amplitude_scale,
        "data_range_amplitude": dr_a, "data_range_phase": dr_p,
        "ssim": {"win_size": 7, "gaussian_weights": False, "use_sample_covariance": True, **ssim_kw},
        "ms_ssim": {"window": 11, "sigma": 1.5, "weights": list(MS_SSIM_WEIGHTS), "downsample": "2x2 mean"},
        "frc": {"rings": "1/min(H,W) cycles/px", "thresholds": ["half_bit", "1/7"], "units": "cycles/pixel"},
        "phase_error": "wrapped difference",
    }
    extra = ("frc_half_bit", "period_half_bit", "period_one_seventh")
    out = {"convention": "ptyanalysis", "params": params}
    if zero_pred:
        out.update(amplitude=_nan_block(extra), phase=_nan_block(extra),
                   frc_curves={"amplitude": None, "phase": None})
        params["note"] = "prediction is all zero or not finite: metrics undefined (NaN)"
        return out
    if phase_align == "offset":
        pp = np.angle(remove_phase_offset(p, g))
        gpp = gp
    elif phase_align == "plane":
        pp, gpp = remove_phase_plane(np.angle(p)), remove_phase_plane(gp)
    elif phase_align == "mean":
        pp, gpp = np.angle(p) - np.angle(p).mean(), gp - gp.mean()
    else:
        pp, gpp = np.angle(p), gp
    pa = np.abs(p)
    if amplitude_scale == "mean":
        pa = normalize_amplitude_mean(pa, ga)
    elif amplitude_scale is not None:
        raise PtyAnalysisError(f"amplitude_scale must be 'mean' or None, got {amplitude_scale!r}")
    curves = {}
    blocks = {}
    for name, x, y, dr, wrap in (("amplitude", pa, ga, dr_a, False), ("phase", pp, gpp, dr_p, True)):
        if not np.all(np.isfinite(x)):
            blocks[name] = _nan_block(extra)
            curves[name] = None
            continue
        d = np.angle(np.exp(1j * (x - y))) if wrap else x - y
        m = float(np.mean(d * d))
        ok = not math.isnan(dr)
        ps = float("nan") if not ok else (float("inf") if m == 0 else float(10 * np.log10(dr * dr / m)))
        fr = frc(x, y)
        blocks[name] = {
            "mae": float(np.mean(np.abs(d))),
            "mse": m,
            "psnr": ps,
            "ssim": ssim(x, y, data_range=dr, **ssim_kw) if ok else float("nan"),
            "ms_ssim": ms_ssim(x, y, data_range=dr) if ok else float("nan"),
            # same validity rule as the other FRC cut-offs: an undefined curve gives NaN, not 0.5
            "frc50": (_first_crossing(fr.frequency, fr.frc, np.full(fr.frc.shape, 0.5))[0]
                      if math.isfinite(fr.resolution_one_seventh) else float("nan")),
            "frc1over7": fr.resolution_one_seventh,
            "frc_half_bit": fr.resolution_half_bit,
            "period_half_bit": fr.period_half_bit,
            "period_one_seventh": fr.period_one_seventh,
        }
        curves[name] = fr
    L = _ms_scales(ga.shape, 11, len(MS_SSIM_WEIGHTS))
    params["ms_ssim"]["scales"] = L
    params["ms_ssim"]["weights_used"] = (np.asarray(MS_SSIM_WEIGHTS[:L]) / sum(MS_SSIM_WEIGHTS[:L])).tolist()
    out.update(amplitude=blocks["amplitude"], phase=blocks["phase"], frc_curves=curves)
    return out


def _score_ptychopinn(p, g, border, phase_align, amplitude_scale, ms_sigma, zero_pred):
    from ..imaging.align import normalize_amplitude_mean, remove_phase_plane

    if phase_align not in ("plane", "mean"):
        raise PtyAnalysisError(f"ptychopinn phase_align must be 'plane' or 'mean', got {phase_align!r}")
    params = {
        "border": border, "phase_align": phase_align, "amplitude_scale": amplitude_scale,
        "psnr_peak": 255.0, "ssim": "skimage defaults (7x7 uniform, sample covariance)",
        "ssim_data_range_amplitude": "gt max - min", "ssim_phase": "(phi + pi) / 2 pi, data_range 1",
        "ms_ssim": {"levels": 5, "weights": list(MS_SSIM_WEIGHTS), "decimation": "[::2, ::2]",
                    "min_size": 7, "negative_clamp": NEGATIVE_SSIM_CLAMP, "amplitude_sigma": ms_sigma,
                    "data_range": "max of the two images' ranges (inferred)"},
        "frc": ("PtychoPINN FSC: rings round(hypot(dy, dx)) about (n//2, n//2) over the whole centre-cropped "
                "square (to the corners), |sum F1 F2*|; cut-offs = first ring below, interpolated, "
                "len(curve) if never, in ring-index units"),
    }
    out = {"convention": "ptychopinn", "params": params}
    if zero_pred:
        params["note"] = "prediction is all zero or not finite: metrics undefined (NaN)"
        out.update(amplitude=_nan_block(), phase=_nan_block(), frc_curves={"amplitude": None, "phase": None})
        return out
    ga, pa = np.abs(g), np.abs(p)
    if amplitude_scale == "mean":
        pa = normalize_amplitude_mean(pa, ga)
    elif amplitude_scale is not None:
        raise PtyAnalysisError(f"amplitude_scale must be 'mean' or None, got {amplitude_scale!r}")
    if phase_align == "plane":
        pp, gp = remove_phase_plane(np.angle(p)), remove_phase_plane(np.angle(g))
    else:
        pp = np.angle(p) - np.angle(p).mean()
        gp = np.angle(g) - np.angle(g).mean()
    blocks, curves, clamped = {}, {}, {}
    from skimage.metrics import structural_similarity

    for name in ("amplitude", "phase"):
        x, y = (pa, ga) if name == "amplitude" else (pp, gp)
        if not np.all(np.isfinite(x)):
            blocks[name], curves[name] = _nan_block(), None
            continue
        m = float(np.mean((y - x) ** 2))
        if name == "amplitude":
            dr = float(y.max() - y.min())
            s = float(structural_similarity(y, x, data_range=dr)) if dr > 0 else float("nan")
            ms, neg = ptychopinn_ms_ssim_levels(x, y, sigma_smooth=ms_sigma)
        else:
            xs, ys = (x + np.pi) / (2 * np.pi), (y + np.pi) / (2 * np.pi)
            s = float(structural_similarity(ys, xs, data_range=1.0))
            ms, neg = ptychopinn_ms_ssim_levels(xs, ys, sigma_smooth=0.0)
        if neg:
            clamped[name] = [float(v) for v in neg]
        curve = ptychopinn_frc(y, x)
        blocks[name] = {
            "mae": float(np.mean(np.abs(y - x))),
            "mse": m,
            "psnr": float("inf") if m == 0 else float(10 * np.log10(255.0 ** 2 / m)),
            "ssim": s,
            "ms_ssim": ms,
            "frc50": ptychopinn_frc_cutoff(curve, 0.5),
            "frc1over7": ptychopinn_frc_cutoff(curve, ONE_SEVENTH),
        }
        curves[name] = curve
    out.update(amplitude=blocks["amplitude"], phase=blocks["phase"], frc_curves=curves, ms_ssim_clamped=clamped)
    return out

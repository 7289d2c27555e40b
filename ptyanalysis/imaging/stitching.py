"""Stitching patches into an object, and cutting patches out of one.

The coordinate convention is the one defined in :mod:`ptyanalysis.conventions`
(it is not redefined here): positions are ``(n, 2)`` float arrays of
**(row, col) patch centres in object pixels**; the centre of an ``N x N``
patch is its pixel ``(N // 2, N // 2)``; the patch at integer position
``(r, c)`` is ``obj[r - N//2 : r - N//2 + N, c - N//2 : c - N//2 + N]``
(:func:`ptyanalysis.conventions.patch_slices`). :func:`stitch` puts a patch back
exactly there and :func:`extract` cuts it out from there, so the two are
adjoint.

Canvas frame
------------
A stitched canvas covers a rectangle of the object. Its frame is given by

* ``origin = (row0, col0)``: the **object coordinates of canvas pixel (0, 0)**
  (integers), so that ``canvas index = object coordinate - origin``; and
* ``canvas_shape = (H, W)``.

So ``canvas[i, j]`` is object pixel ``(origin[0] + i, origin[1] + j)`` and the
ground truth that matches a :class:`StitchResult` is
``obj[origin[0]:origin[0] + H, origin[1]:origin[1] + W]``
(:func:`ptyanalysis.imaging.align.crop_to_scan`). When ``canvas_shape`` is not given
it is derived as the bounding box of every pixel any patch touches, and the
derived origin is reported in the result.

Sub-pixel positions
-------------------
``method="nearest"``
    rounds each position (``np.rint``) and places the patch there.
``method="bilinear"``
    splits each patch over the four integer placements around its position
    with bilinear weights (the adjoint of bilinear interpolation); the
    coverage gets the same weights.
``method="fourier"``
    rounds the position, shifts the patch by the remainder (within
    +-0.5 px) with a Fourier phase ramp (circular on the patch, so the content
    that leaves one edge re-enters at the other), and places it at the
    rounded position; the coverage is the rounded box.

The coverage is computed from the placements alone (point masses of the
weights, box-summed through an integral image in float64, plus an integer
count of placements so that uncovered pixels are exactly 0), not by stitching
an image of ones; it costs O(n + canvas) instead of O(n N^2).

The stitched image is ``sum of weighted patches / coverage`` where the
coverage is positive and 0 elsewhere; the coverage (sum of weights) is
returned so callers can mask.

Backends
--------
``backend="numpy"`` (the CPU path) runs a compiled kernel (numba, no Python
per patch) that adds each patch's rows straight into the canvas, with the
bilinear split computed row by row in a one-row buffer (the Fourier shift is
done first, by ``scipy.fft`` on blocks of patches); threads own disjoint bands
of canvas rows (``threads``, default every core), and within a band patches
are added in their order, so the result is bit-identical for any number of
threads and any chunking (and to the numpy block code this kernel replaced).

``backend="cupy"`` / ``"torch"`` run one vectorised core, written against the
small :class:`ArrayBackend` interface, on a GPU. Patches go in blocks (sized by
device memory, :data:`_ARRAY_BLOCK_BYTES`); per block, the flat canvas index of
every pixel is one sum of a per-patch offset (computed on the host, sent once
per chunk) and one precomputed offset grid, the bilinear split (or the Fourier
shift) is array arithmetic on real views, and one scatter-add puts the block
into a flat canvas that has a spare row and column (so patches inside the
canvas need no bounds test). The coverage and the normalisation are computed
on the device as well, with the CPU path's operations in its order, and only
the image and the coverage come back. Patches already on that device (e.g.
network outputs) are used where they are; patches in host memory are staged
through page-locked buffers and copied on a side stream, overlapped with the
arithmetic (PyTorch on CUDA; CuPy uses plain copies), see
:class:`_HostStaging`. GPU atomics add in no fixed order, so results agree
with the CPU path to float32 round-off (the coverage to float64 round-off). The
same core runs on PyTorch CPU tensors and on numpy (``ArrayBackend("numpy")``);
both add in patch order and reproduce the CPU kernel exactly for the nearest
and bilinear methods: that is how the GPU code is tested without a GPU.
``"auto"`` picks a GPU array backend where CuPy or PyTorch can use a GPU, else
``"numpy"``; no path imports TensorFlow.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import os
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..conventions import check_positions, global_positions_from_offsets, patch_centre
from ..errors import PtyAnalysisError

__all__ = [
    "ARRAY_MODULES",
    "BACKENDS",
    "METHODS",
    "ArrayBackend",
    "StitchResult",
    "Stitcher",
    "extract",
    "gpu_backend",
    "ptychopinn_frame",
    "ptychopinn_reassemble",
    "scan_frame",
    "stitch",
]

#: Placement methods for sub-pixel positions.
METHODS = ("bilinear", "fourier", "nearest")
#: Stitching backends: the compiled CPU kernel ("numpy"), GPU array modules, or "auto".
BACKENDS = ("auto", "numpy", "cupy", "torch")
#: Array modules the vectorised core (:class:`ArrayBackend`) runs on.
ARRAY_MODULES = ("numpy", "cupy", "torch")

#: Patches per Fourier-shift block on the CPU path.
_FOURIER_BLOCK = 256
#: Most patches per block of the array backends (a block is one scatter-add; tests lower it to
#: run several blocks on small inputs).
_ARRAY_BLOCK = 16384
#: Device memory (bytes) that one block's temporaries may take on an array backend; with the
#: patch size and the method it sets the block size (:meth:`Stitcher._block_bytes`).
_ARRAY_BLOCK_BYTES = 1 << 30
#: Bytes of each of the two host staging buffers through which patches held in host memory
#: reach an array backend's device (a staged block is also a compute block).
_STAGE_BYTES = 32 << 20
#: Host bytes copied per thread when a block is staged (smaller blocks use fewer threads).
_STAGE_BYTES_PER_THREAD = 4 << 20
#: Bilinear placement on the array backends. ``False``: each patch's (M + 1) x (M + 1)
#: bilinear split is built (rows, then columns, with the CPU kernel's arithmetic) and added
#: with one scatter-add, so backends that add in order (numpy, PyTorch on the CPU) reproduce
#: the CPU kernel bit for bit. ``True``: four scatter-adds of the crop times the four corner
#: weights, at four shifted offsets (fewer passes over memory, four times the atomic adds;
#: agrees to float32 round-off). Read when a :class:`Stitcher` is made.
_BILINEAR_CORNERS = False
#: A CPU thread gets at least this many canvas rows and this many patches per chunk.
_MIN_BAND_ROWS = 8
_MIN_PATCHES_PER_THREAD = 16
#: Row bands per CPU thread: small bands are taken from a queue, so a thread that the OS
#: delays (a busy machine) holds up one small band, not a whole share of the canvas.
_BANDS_PER_THREAD = 4
#: Default number of patches handed to the accumulator at once by :func:`stitch`.
DEFAULT_CHUNK = 4096
_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


@dataclass(frozen=True)
class StitchResult:
    """A stitched canvas.

    Attributes
    ----------
    image : ndarray, shape (H, W)
        Weighted mean of the patches where ``coverage > 0``, 0 elsewhere.
    coverage : ndarray, shape (H, W), float64
        Sum of the placement weights at each pixel (a patch pixel counts 1,
        split over up to four pixels for bilinear placement).
    origin : tuple of int
        Object coordinates ``(row, col)`` of canvas pixel ``(0, 0)``:
        ``canvas index = object coordinate - origin``.
    method : str
        Placement method used.
    n_clipped : int
        Patches not entirely inside the canvas (their outside part is dropped).
    backend : str
        What ran the arithmetic: ``"numpy"`` (the CPU kernel) or an
        :class:`ArrayBackend` label such as ``"torch (cuda)"``.
    """

    image: np.ndarray
    coverage: np.ndarray
    origin: tuple
    method: str = "bilinear"
    n_clipped: int = 0
    backend: str = "numpy"

    @property
    def shape(self) -> tuple:
        """Canvas shape ``(H, W)``."""
        return tuple(self.image.shape)

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask of covered pixels (``coverage > 0``)."""
        return self.coverage > 0


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_method(method: str) -> str:
    if method not in METHODS:
        raise PtyAnalysisError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _as_patches(patches, name: str = "patches") -> np.ndarray:
    """Return patches as an (n, N, N) array; accept a trailing singleton axis."""
    p = np.asarray(patches)
    if p.ndim == 4 and p.shape[-1] == 1:
        p = p[..., 0]
    if p.ndim != 3 or p.shape[1] != p.shape[2] or p.shape[1] == 0:
        raise PtyAnalysisError(
            f"{name} must have shape (n, N, N) (or (n, N, N, 1)) with square N x N patches, "
            f"got {np.shape(patches)}"
        )
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.complexfloating)
            or np.issubdtype(p.dtype, np.integer)):
        raise PtyAnalysisError(f"{name} must be real or complex numbers, got dtype {p.dtype}")
    return p


def _check_crop(crop, N: int) -> int:
    if crop is None:
        return int(N)
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)):
        raise PtyAnalysisError(f"crop must be an integer number of pixels, got {crop!r}")
    crop = int(crop)
    if not 1 <= crop <= N:
        raise PtyAnalysisError(f"crop must be between 1 and the patch size {N}, got {crop}")
    return crop


def _check_pair(value, name: str, positive: bool = False) -> tuple:
    try:
        t = tuple(value)
    except TypeError:
        raise PtyAnalysisError(f"{name} must be a pair of integers (row, col), got {value!r}") from None
    if len(t) != 2:
        raise PtyAnalysisError(f"{name} must be a pair of integers (row, col), got {value!r}")
    out = []
    for v in t:
        fv = float(v)
        if not math.isfinite(fv) or fv != round(fv):
            raise PtyAnalysisError(f"{name} must hold whole numbers of pixels, got {value!r}")
        out.append(round(fv))
    if positive and min(out) < 1:
        raise PtyAnalysisError(f"{name} must be positive, got {value!r}")
    return tuple(out)


def _crop_start(N: int, M: int) -> int:
    """First patch index of the central M x M crop (its pixel M//2 is the patch's N//2)."""
    return patch_centre(N) - patch_centre(M)


def _placements(positions: np.ndarray, M: int, method: str):
    """Integer top-left object coordinates and fractional remainders of each patch.

    Returns ``(top_left (n, 2) int64, frac (n, 2) float64, extent (n, 2) int64)``
    where ``extent`` is the number of rows/cols with non-zero weight.
    """
    q = np.asarray(positions, np.float64)
    h = patch_centre(M)
    if method == "bilinear":
        base = np.floor(q)
        frac = q - base
        extent = M + (frac > 0).astype(np.int64)
    else:
        base = np.rint(q)
        frac = q - base  # in [-0.5, 0.5]; used by "fourier" only
        if method == "nearest":
            frac = np.zeros_like(frac)
        extent = np.full(q.shape, M, dtype=np.int64)
    return base.astype(np.int64) - h, frac, extent


def scan_frame(positions, N: int, *, crop=None, method: str = "bilinear"):
    """Bounding box of the pixels the patches at ``positions`` touch.

    Parameters
    ----------
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels (:mod:`ptyanalysis.conventions`).
    N : int
        Patch size.
    crop : int, optional
        Central crop size M actually placed (default N).
    method : {"bilinear", "fourier", "nearest"}
        Placement method (bilinear touches one more row/col at sub-pixel positions).

    Returns
    -------
    origin : tuple of int
        Object (row, col) of the box's first pixel.
    shape : tuple of int
        ``(H, W)`` of the box.
    """
    _check_method(method)
    N = int(N)
    M = _check_crop(crop, N)
    p = check_positions(positions)
    if p.shape[0] == 0:
        raise PtyAnalysisError("positions is empty: there is nothing to stitch")
    tl, _, ext = _placements(p, M, method)
    lo = tl.min(axis=0)
    hi = (tl + ext).max(axis=0)
    return (int(lo[0]), int(lo[1])), (int(hi[0] - lo[0]), int(hi[1] - lo[1]))


# --------------------------------------------------------------------------- #
# Fourier shift (numpy / scipy)
# --------------------------------------------------------------------------- #
def _fourier_ramps(frac: np.ndarray, M: int, cdt):
    """Phase ramps ``exp(-2 pi i f k)`` along rows and columns, each (B, M), dtype ``cdt``."""
    k = np.fft.fftfreq(M)
    ry = np.exp(-2j * np.pi * frac[:, 0, None] * k[None, :]).astype(cdt)
    rx = np.exp(-2j * np.pi * frac[:, 1, None] * k[None, :]).astype(cdt)
    return ry, rx


def _fourier_shift_block(P: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Shift each patch of P (B, M, M) by frac (B, 2) (scipy.ndimage.shift sign)."""
    import scipy.fft as sfft

    moving = np.any(frac != 0, axis=1)
    if not moving.all():  # integer positions stay exact
        out = np.array(P, copy=True)
        if moving.any():
            out[moving] = _fourier_shift_block(P[moving], frac[moving])
        return out
    M = P.shape[-1]
    cdt = np.complex128 if P.dtype in (np.complex128, np.float64) else np.complex64
    ry, rx = _fourier_ramps(frac, M, cdt)
    F = sfft.fft2(P, axes=(-2, -1), workers=-1)
    F *= ry[:, :, None]
    F *= rx[:, None, :]
    out = sfft.ifft2(F, axes=(-2, -1), workers=-1, overwrite_x=True)
    if not np.iscomplexobj(P):
        out = out.real
    return out.astype(P.dtype, copy=False)


def _bilinear_weights(frac: np.ndarray, rdtype) -> np.ndarray:
    """(B, 4) weights ``[1 - fy, fy, 1 - fx, fx]`` in the accumulator's real dtype.

    Computed in that dtype (as the arithmetic of every backend is), so all
    backends multiply by the same numbers.
    """
    f = frac.astype(rdtype)
    w = np.empty((f.shape[0], 4), rdtype)
    w[:, 0] = 1 - f[:, 0]
    w[:, 1] = f[:, 0]
    w[:, 2] = 1 - f[:, 1]
    w[:, 3] = f[:, 1]
    return w


# --------------------------------------------------------------------------- #
# the compiled CPU kernel (numba)
# --------------------------------------------------------------------------- #
@functools.cache
def _kernel():
    """The compiled placement kernel (built, or read from numba's cache, on first use)."""
    import numba
    from numba import uint64 as u64

    @numba.njit(nogil=True, cache=True)
    def place_rows(acc, P, a, M, k, tl, w, bilinear, r0, r1):  # pragma: no cover - compiled
        # acc: (H, k*W) C-contiguous real view of the canvas; P: (B, Np, k*Np) C-contiguous real
        # view of the patches, whose crop starts at pixel (a, a); tl: (B, 2) top-left canvas
        # placements; w: (B, 4) bilinear weights [1 - fy, fy, 1 - fx, fx]. Adds, in patch order,
        # the rows of every patch that fall in canvas rows [r0, r1). Flat arrays and unsigned
        # offsets (all >= 0 here) keep the inner loops free of negative-index checks, so they
        # vectorise; no fused multiply-adds (numba's default), so the arithmetic is numpy's.
        W = acc.shape[1] // k
        kW = acc.shape[1]
        Np = P.shape[1]
        kNp = P.shape[2]
        A = acc.reshape(-1)
        Pf = P.reshape(-1)
        kM = k * M
        ku = u64(k)
        kMu = u64(kM)
        R = np.zeros(kM + 2 * k, acc.dtype)  # one row-interpolated patch row at R[k:k + kM], zero guards
        for b in range(P.shape[0]):
            top = tl[b, 0]
            left = tl[b, 1]
            hr = M
            hc = M
            if bilinear:
                if w[b, 1] != 0:
                    hr = M + 1
                if w[b, 3] != 0:
                    hc = M + 1
            y0 = max(top, r0)
            y1 = min(top + hr, r1)
            x0 = max(left, 0)
            x1 = min(left + hc, W)
            if y0 >= y1 or x0 >= x1:
                continue
            lo = k * (x0 - left)  # first patch (window) column written, times k
            L = u64(k * (x1 - x0))
            pb = b * Np * kNp + k * a  # patch b, crop column 0, pixel row 0
            for y in range(y0, y1):
                i = y - top
                d0 = u64(y * kW + k * x0)
                if not bilinear:
                    s0 = u64(pb + (a + i) * kNp + lo)
                    for q in range(L):
                        A[d0 + q] += Pf[s0 + q]
                    continue
                wy0 = w[b, 0]
                wy1 = w[b, 1]
                wx0 = w[b, 2]
                wx1 = w[b, 3]
                # rows: R_i = (1 - fy) P[i] + fy P[i - 1]
                if i == 0:
                    s0 = u64(pb + a * kNp)
                    for q in range(kMu):
                        R[ku + q] = Pf[s0 + q] * wy0
                elif i == M:
                    s1 = u64(pb + (a + M - 1) * kNp)
                    for q in range(kMu):
                        R[ku + q] = Pf[s1 + q] * wy1
                else:
                    s0 = u64(pb + (a + i) * kNp)
                    s1 = u64(pb + (a + i - 1) * kNp)
                    for q in range(kMu):
                        R[ku + q] = Pf[s0 + q] * wy0 + Pf[s1 + q] * wy1
                # cols: out[j] = (1 - fx) R[j] + fx R[j - 1]  (k interleaved parts per column)
                lu = u64(lo)
                for q in range(L):
                    A[d0 + q] += R[ku + lu + q] * wx0 + R[lu + q] * wx1

    return place_rows


@functools.cache
def _cut_kernel():
    """The compiled patch cutter of :func:`extract` (nearest and bilinear)."""
    import numba
    from numba import uint64 as u64

    @numba.njit(nogil=True, cache=True)
    def cut(src, out, tl, w, k, bilinear, b0, b1):  # pragma: no cover - compiled
        # src: (H, k*W) C-contiguous real view of the image; out: (n, N, k*N) real view of the
        # patches; tl: (n, 2) top-left pixels; w: (n, 4) weights [1 - fy, fy, 1 - fx, fx].
        # Fills patches b0 .. b1 - 1 with numpy's arithmetic (rows first, then columns).
        N = out.shape[1]
        kN = out.shape[2]
        kWs = src.shape[1]
        S = src.reshape(-1)
        O = out.reshape(-1)
        ku = u64(k)
        kNu = u64(kN)
        R = np.empty(kN + k, src.dtype)
        for b in range(b0, b1):
            ob = b * N * kN
            for i in range(N):
                s0 = u64((tl[b, 0] + i) * kWs + k * tl[b, 1])
                o0 = u64(ob + i * kN)
                if not bilinear:
                    for q in range(kNu):
                        O[o0 + q] = S[s0 + q]
                    continue
                s1 = s0 + u64(kWs)
                wy0 = w[b, 0]
                wy1 = w[b, 1]
                wx0 = w[b, 2]
                wx1 = w[b, 3]
                for q in range(kNu + ku):
                    R[q] = S[s0 + q] * wy0 + S[s1 + q] * wy1
                for q in range(kNu):
                    O[o0 + q] = R[q] * wx0 + R[q + ku] * wx1

    return cut


@functools.cache
def _point_kernel():
    """Compiled in-order scatter-add of the coverage's point masses and counts."""
    import numba

    @numba.njit(nogil=True, cache=True)
    def add_points(points, counts, idx, w):  # pragma: no cover - compiled
        # points[idx[i]] += w[i]; counts[idx[i]] += 1, in order (as np.add.at, which is slower)
        for i in range(idx.shape[0]):
            points[idx[i]] += w[i]
            counts[idx[i]] += 1

    return add_points


def _default_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _check_threads(threads) -> int:
    if threads is None:
        return _default_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise PtyAnalysisError(f"threads must be a positive integer (or None for every core), got {threads!r}")
    return int(threads)


def _row_bands(H: int, tops, rows: int, threads: int) -> tuple:
    """Disjoint row bands covering ``0 .. H``, cut so each holds about the same work, and the threads to use.

    The work of a canvas row is the number of patch rows added to it, so a chunk of patches that
    covers only part of the canvas (a raster scan's chunk covers a strip) is still shared by every
    thread: cutting the whole canvas into equal bands would leave the threads whose bands the
    strip misses idle.

    Parameters
    ----------
    H : int
        Canvas rows.
    tops : ndarray of int, shape (B,)
        Top canvas row of each patch's placed window (may lie off the canvas).
    rows : int
        Rows of a placed window (``M``, or ``M + 1`` for a bilinear split).
    threads : int
        Threads available.

    Returns
    -------
    bands : list of (int, int)
        ``[(r0, r1), ...]``, in order, about ``_BANDS_PER_THREAD`` per thread used (equal work).
    workers : int
        Threads used (1: run in the calling thread, one band).
    """
    tops = np.asarray(tops, np.int64).reshape(-1)
    starts = np.clip(tops, 0, H)
    ends = np.clip(tops + int(rows), 0, H)
    # patch rows per canvas row: +1 where a window starts, -1 where it ends, summed down the canvas
    cover = np.cumsum(np.bincount(starts, minlength=H + 1)[:H] - np.bincount(ends, minlength=H + 1)[:H])
    busy = int(np.count_nonzero(cover))
    workers = max(1, min(threads, len(tops) // _MIN_PATCHES_PER_THREAD, busy // _MIN_BAND_ROWS))
    if workers == 1:
        return [(0, H)], 1
    nb = max(1, min(workers * _BANDS_PER_THREAD, busy // _MIN_BAND_ROWS))
    work = np.cumsum(cover)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, nb) / nb, side="right")
    edges = np.unique(np.concatenate(([0], np.clip(cuts, 1, H - 1), [H])))
    return [(int(edges[i]), int(edges[i + 1])) for i in range(len(edges) - 1)], workers


# --------------------------------------------------------------------------- #
# array backends (numpy reference, CuPy, PyTorch)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ArrayBackend:
    """An array module the vectorised stitching core runs on.

    The core (bilinear split, Fourier shift and one scatter-add per block of
    patches) is written once against the few operations below, so the same
    code runs on CuPy or PyTorch arrays on a GPU, on PyTorch CPU tensors, and
    on numpy (where ``np.add.at`` adds in patch order, so it reproduces the
    compiled CPU kernel bit for bit; a reference, not a fast path).

    Parameters
    ----------
    name : {"numpy", "cupy", "torch"}
        Array module.
    device : str
        ``"cpu"`` or a GPU device (``"cuda"``, ``"cuda:1"``). CuPy is GPU only,
        numpy CPU only.
    """

    name: str
    device: str = "cpu"

    def __post_init__(self):
        if self.name not in ARRAY_MODULES:
            raise PtyAnalysisError(f"array backend must be one of {ARRAY_MODULES}, got {self.name!r}")
        gpu = str(self.device).startswith("cuda")
        if (self.name == "numpy" and gpu) or (self.name == "cupy" and not gpu) or not (
                gpu or self.device == "cpu"):
            raise PtyAnalysisError(
                f"array backend {self.name!r} cannot run on device {self.device!r} "
                "(numpy: 'cpu'; cupy: 'cuda' or 'cuda:<n>'; torch: either)")

    @property
    def label(self) -> str:
        """Short description, e.g. ``"torch (cuda)"``."""
        return f"{self.name} ({self.device})"

    @property
    def xp(self):
        """The array module."""
        return importlib.import_module(self.name)

    # -- conversions ------------------------------------------------------------
    def owns(self, x) -> bool:
        """True if ``x`` is already an array of this module (no host copy needed)."""
        if self.name == "numpy":
            return False
        mod = sys.modules.get(self.name)
        if mod is None:
            return False
        return isinstance(x, mod.Tensor if self.name == "torch" else mod.ndarray)

    def native(self, x):
        """``x`` as an array of this module without a host copy, or None if it is not a device array.

        Arrays of this module are returned as they are; other device arrays
        that speak DLPack (a JAX array, a PyTorch tensor for CuPy, ...) are
        wrapped zero-copy. numpy arrays (and anything else) give None, and so
        do arrays in host memory when this backend runs on a GPU (a PyTorch
        CPU tensor for ``torch (cuda)``): those are host data, staged to the
        device like numpy arrays.
        """
        if self.name == "numpy" or isinstance(x, np.ndarray):
            return None
        gpu = self.device != "cpu"
        if self.owns(x):
            if gpu and self.name == "torch" and x.device.type == "cpu":
                return None
            return x
        if hasattr(x, "__dlpack__") and hasattr(x, "shape"):
            if gpu and hasattr(x, "__dlpack_device__") and int(x.__dlpack_device__()[0]) == 1:  # kDLCPU
                return None
            return self.xp.from_dlpack(x)
        return None

    def asarray(self, a, dtype=None):
        """A host (numpy) array on this backend's device, as ``dtype`` (a numpy dtype)."""
        if self.name == "numpy":
            return np.asarray(a, dtype=dtype)
        a = np.ascontiguousarray(a, dtype=dtype)
        if self.name == "cupy":
            with self.xp.cuda.Device(self._index()):
                return self.xp.asarray(a)
        return self.xp.as_tensor(a, device=self.device)

    def asarray_async(self, a, dtype=None):
        """Like :meth:`asarray`, without making the host wait, for small per-block data.

        PyTorch on a GPU copies through page-locked memory with
        ``non_blocking=True`` on the current stream (the page-locked block is
        PyTorch's cached one, reused only once the copy is done), so the host
        does not wait for the device's queued work as a plain (pageable) copy
        does; elsewhere it is :meth:`asarray`.
        """
        if self.name == "torch" and self.device != "cpu":
            t = self.xp.from_numpy(np.ascontiguousarray(a, dtype=dtype))
            return t.pin_memory().to(self.device, non_blocking=True)
        return self.asarray(a, dtype)

    def cast(self, x, dtype):
        """A native array as ``dtype`` (a numpy dtype); no copy when it already is."""
        if self.name == "torch":
            return x.to(dtype=self._torch_dtype(dtype), device=self.device)
        return x.astype(dtype, copy=False)

    def to_numpy(self, x) -> np.ndarray:
        """Copy a native array back to the host."""
        if self.name == "numpy":
            return np.asarray(x)
        if self.name == "cupy":
            return self.xp.asnumpy(x)
        return x.detach().resolve_conj().cpu().numpy()

    def is_complex(self, x) -> bool:
        """Whether a native array holds complex numbers."""
        if self.name == "torch":
            return bool(x.is_complex())
        return bool(np.issubdtype(x.dtype, np.complexfloating))

    # -- creation and arithmetic -------------------------------------------------
    def zeros(self, shape, dtype):
        """Zeros of a numpy dtype."""
        if self.name == "torch":
            return self.xp.zeros(shape, dtype=self._torch_dtype(dtype), device=self.device)
        if self.name == "cupy":
            with self.xp.cuda.Device(self._index()):
                return self.xp.zeros(shape, dtype)
        return np.zeros(shape, dtype)

    def empty(self, shape, dtype):
        """An uninitialised array of a numpy dtype (PyTorch and CuPy take it from their memory pools)."""
        if self.name == "torch":
            return self.xp.empty(shape, dtype=self._torch_dtype(dtype), device=self.device)
        if self.name == "cupy":
            with self.xp.cuda.Device(self._index()):
                return self.xp.empty(shape, dtype)
        return np.empty(shape, dtype)

    def multiply(self, a, b, out):
        """``out[...] = a * b`` (broadcasting), written into ``out`` (which may be a strided view)."""
        return self.xp.multiply(a, b, out=out)

    def add(self, a, b, out):
        """``out[...] = a + b`` (broadcasting); ``out`` may be ``a`` itself."""
        return self.xp.add(a, b, out=out)

    def add_product(self, acc, a, b) -> None:
        """``acc += a * b`` in place (``acc`` may be a strided view; ``b`` broadcasts).

        PyTorch on a GPU does it in one pass (``addcmul_``), where the product
        may be fused with the sum (one rounding), so the last bit may differ
        from the CPU kernel's; elsewhere the product is rounded, then added, as
        the CPU kernel does (a temporary for the product).
        """
        if self.name == "torch" and self.device != "cpu":
            acc.addcmul_(a, b)
        else:
            self.xp.add(acc, self.xp.multiply(a, b), out=acc)

    def arange(self, n: int):
        """``0 .. n - 1`` as int64."""
        if self.name == "torch":
            return self.xp.arange(n, dtype=self.xp.int64, device=self.device)
        return self.xp.arange(n, dtype=np.int64)

    def where(self, cond, a, b):
        """Elementwise ``a if cond else b``."""
        return self.xp.where(cond, a, b)

    def parts(self, x):
        """Complex (...) -> real (..., 2) view: real and imaginary parts on a last axis.

        A view of the same memory (``torch.view_as_real``; for numpy and CuPy a
        view as the real dtype), so writing into it writes the complex array;
        a copy only where numpy meets a strided last axis, or CuPy an array that
        is not C-contiguous. Real arrays get a trailing axis of length 1 (also a
        view).
        """
        if self.name == "torch":
            return self.xp.view_as_real(x.resolve_conj()) if x.is_complex() else x[..., None]
        if not np.issubdtype(x.dtype, np.complexfloating):
            return x[..., None]
        if (x.ndim and x.strides[-1] != x.itemsize) or (self.name == "cupy" and not x.flags.c_contiguous):
            x = self.xp.ascontiguousarray(x)
        return x.view(x.real.dtype).reshape(tuple(x.shape) + (2,))

    def cumsum(self, x, axis: int, dtype=None):
        """Cumulative sum along ``axis`` (in order on the CPU), optionally as a numpy ``dtype``."""
        if self.name == "torch":
            return self.xp.cumsum(x, dim=axis, dtype=None if dtype is None else self._torch_dtype(dtype))
        return self.xp.cumsum(x, axis=axis, dtype=dtype)

    def fft2(self, x):
        """2-D FFT over the last two axes."""
        if self.name == "torch":
            return self.xp.fft.fft2(x)
        return self.xp.fft.fft2(x, axes=(-2, -1))

    def ifft2(self, x):
        """Inverse 2-D FFT over the last two axes."""
        if self.name == "torch":
            return self.xp.fft.ifft2(x)
        return self.xp.fft.ifft2(x, axes=(-2, -1))

    def real(self, x):
        """Real part."""
        return x.real

    def scatter_add(self, acc, idx, vals) -> None:
        """``acc[idx[i]] += vals[i]`` for every i, repeated indices accumulating.

        ``acc`` may be a view (it is added into in place); ``idx`` is int32 or
        int64. numpy, and PyTorch on the CPU with a one-dimensional ``acc``,
        add in index order (deterministic); CuPy and PyTorch on a GPU use
        atomic adds, whose order (so the float32 round-off) may vary. CuPy
        adds complex values as (real, imaginary) pairs.
        """
        if self.name == "torch":
            acc.index_add_(0, idx, vals)
        elif self.name == "cupy":
            import cupyx

            if acc.ndim == 1 and np.issubdtype(acc.dtype, np.complexfloating):
                rd = acc.real.dtype
                acc = acc.view(rd).reshape(-1, 2)
                vals = self.xp.ascontiguousarray(vals).view(rd).reshape(-1, 2)
            cupyx.scatter_add(acc, idx, vals)
        else:
            np.add.at(acc, idx, vals)

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.name == "torch" and self.device != "cpu":
            self.xp.cuda.synchronize(self.device)
        elif self.name == "cupy":
            self.xp.cuda.Device(self._index()).synchronize()

    # -- internals ---------------------------------------------------------------
    def _index(self) -> int:
        d = str(self.device)
        return int(d.split(":", 1)[1]) if ":" in d else 0

    def _torch_dtype(self, dtype):
        t = self.xp
        return {np.dtype(np.float32): t.float32, np.dtype(np.float64): t.float64,
                np.dtype(np.complex64): t.complex64, np.dtype(np.complex128): t.complex128,
                np.dtype(np.int64): t.int64, np.dtype(np.int32): t.int32, np.dtype(bool): t.bool}[np.dtype(dtype)]


def _gpu_candidates() -> list:
    """GPU array modules to try, those already imported first (then CuPy, then PyTorch)."""
    order = [m for m in ("torch", "cupy") if m in sys.modules]
    return order + [m for m in ("cupy", "torch") if m not in order]


def _module_has_gpu(name: str) -> bool:
    try:
        mod = importlib.import_module(name)
    except (ImportError, OSError, RuntimeError):  # not installed, or broken (e.g. CUDA libraries)
        return False
    try:
        if name == "torch":
            return bool(mod.cuda.is_available())
        return mod.cuda.runtime.getDeviceCount() > 0
    except (RuntimeError, OSError):  # CuPy raises CUDARuntimeError when there is no driver
        return False


def gpu_backend():
    """The GPU array backend ``backend="auto"`` picks, or None without a usable GPU.

    A GPU counts when CuPy or PyTorch can use one (modules already imported
    are asked first, then CuPy, then PyTorch). The modules are imported only
    where a GPU may exist (:func:`ptyanalysis.accelerators.gpu_may_exist`: an
    NVIDIA or AMD device node, or ``nvidia-smi``), and never when
    ``CUDA_VISIBLE_DEVICES`` hides every GPU.

    Returns
    -------
    ArrayBackend or None
    """
    from ..accelerators import gpu_hidden, gpu_may_exist

    if gpu_hidden():
        return None
    if not gpu_may_exist() and not any(m in sys.modules for m in ("torch", "cupy")):
        return None
    for name in _gpu_candidates():
        if _module_has_gpu(name):
            return ArrayBackend(name, "cuda")
    return None


def _gpu_visible() -> bool:
    """True if a GPU array backend (CuPy or PyTorch) is usable here."""
    return gpu_backend() is not None


def _resolve_backend(backend):
    """``"numpy"`` (the compiled CPU kernel) or an :class:`ArrayBackend`."""
    if isinstance(backend, ArrayBackend):
        return backend
    if backend not in BACKENDS:
        hint = " (the TensorFlow backend was replaced by 'torch' and 'cupy')" if backend == "tensorflow" else ""
        raise PtyAnalysisError(f"backend must be one of {BACKENDS} or an ArrayBackend, got {backend!r}{hint}")
    if backend == "numpy":
        return "numpy"
    if backend == "auto":
        gpu = gpu_backend()
        return gpu if gpu is not None else "numpy"
    if not _module_has_gpu(backend):
        raise PtyAnalysisError(
            f"backend={backend!r} needs {backend} with a usable GPU, and there is none here; use "
            f"backend='numpy' (CPU), 'auto', or ArrayBackend({backend!r}, 'cpu') where {backend} runs on the CPU")
    return ArrayBackend(backend, "cuda")


# --------------------------------------------------------------------------- #
# the accumulator
# --------------------------------------------------------------------------- #
class Stitcher:
    """Streaming accumulator: add patches chunk by chunk, then take the result.

    Parameters
    ----------
    canvas_shape : tuple of int
        ``(H, W)`` of the canvas.
    origin : tuple of int
        Object coordinates (row, col) of canvas pixel (0, 0); ``canvas index =
        object coordinate - origin`` (see the module docstring).
    N : int
        Size of the (square) patches that will be added.
    dtype : dtype, optional
        Accumulator dtype: float32, float64, complex64 (default) or complex128.
        Patches are cast to it.
    method : {"bilinear", "fourier", "nearest"}
        Placement of sub-pixel positions (module docstring).
    crop : int, optional
        Keep only the central ``crop x crop`` of each patch (its pixel
        ``crop // 2`` is the patch's ``N // 2``). Default: the whole patch.
    backend : {"numpy", "auto", "cupy", "torch"} or ArrayBackend
        Where the arithmetic runs (module docstring). ``"auto"`` = a GPU array
        backend if one is usable, else ``"numpy"``.
    threads : int, optional
        Threads of the CPU kernel (default: every core this process may use).
        Each thread owns a band of canvas rows, so the result does not depend
        on it. Array backends use them to copy blocks of host patches into
        their staging buffers.

    Notes
    -----
    Extra memory is the canvas (dtype), a float64 point-mass map and an int32
    count map of the canvas size for the coverage, and (for the Fourier method,
    for a crop, or for patches of another dtype) a cast copy of the chunk. The
    array backends keep these on the device (the canvas with one spare row and
    column), plus one block's temporaries (at most about
    :data:`_ARRAY_BLOCK_BYTES`) and, for patches from host memory, two staging
    blocks on the host and the device (:data:`_STAGE_BYTES` each). Adding the
    same patches in any chunking gives bit-identical results on the CPU (each
    canvas pixel receives its contributions in patch order).

    Examples
    --------
    >>> st = Stitcher((128, 128), (0, 0), N=32)            # doctest: +SKIP
    >>> for p, pos in chunks:                              # doctest: +SKIP
    ...     st.add(p, pos)
    >>> res = st.result()                                  # doctest: +SKIP
    """

    def __init__(self, canvas_shape, origin, N, dtype=np.complex64, method="bilinear",
                 crop=None, backend="numpy", threads=None):
        self.canvas_shape = _check_pair(canvas_shape, "canvas_shape", positive=True)
        self.origin = _check_pair(origin, "origin")
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise PtyAnalysisError(f"N must be a positive integer patch size, got {N!r}")
        self.N = int(N)
        self.M = _check_crop(crop, self.N)
        self.method = _check_method(method)
        dt = np.dtype(dtype)
        if dt.type not in _DTYPES:
            raise PtyAnalysisError(f"dtype must be one of float32, float64, complex64, complex128; got {dt}")
        self.dtype = dt
        self.threads = _check_threads(threads)
        core = _resolve_backend(backend)
        self._be = core if isinstance(core, ArrayBackend) else None
        #: What runs the arithmetic: ``"numpy"`` (the CPU kernel) or an array backend's label.
        self.backend = "numpy" if self._be is None else self._be.label
        self._complex = np.issubdtype(dt, np.complexfloating)
        self._k = 2 if self._complex else 1
        self._rdtype = np.dtype(np.float32) if dt.itemsize // self._k == 4 else np.dtype(np.float64)
        H, W = self.canvas_shape
        M = self.M
        self.n_added = 0
        self.n_clipped = 0
        self.n_outside = 0
        self._pool = None  # CPU worker threads, started by the first chunk that uses them
        if self._be is None:
            # Point masses of the coverage, indexed by top-left placement + M (range -M .. H).
            self._points = np.zeros((H + M + 1, W + M + 1), np.float64)
            self._counts = np.zeros((H + M + 1, W + M + 1), np.int32)
            self._acc = np.zeros((H, W), dt)
            self._accv = self._acc.view(self._rdtype) if self._complex else self._acc
        else:
            self._array_setup()  # the same, on the device

    # -- public --------------------------------------------------------------
    def add(self, patches, positions) -> Stitcher:
        """Accumulate a chunk of patches.

        Parameters
        ----------
        patches : array_like, shape (n, N, N)
            Real or complex patches (a trailing singleton axis is accepted). With
            a CuPy or PyTorch backend, device arrays (that module's, or any that
            speak DLPack, such as JAX arrays) are used where they are, e.g.
            network outputs still on the GPU, without a host copy.
        positions : array_like, shape (n, 2)
            (row, col) patch centres in object pixels; exactly one per patch.

        Returns
        -------
        Stitcher
            ``self``, so calls can be chained.
        """
        dev = self._be.native(patches) if self._be is not None else None
        native = dev is not None
        P = _as_native_patches(dev) if native else _as_patches(_host_array(patches))
        if P.shape[1] != self.N:
            raise PtyAnalysisError(f"patches are {P.shape[1]} x {P.shape[2]} but this Stitcher was made for N = {self.N}")
        pos = check_positions(positions, P.shape[0])
        if P.shape[0] == 0:
            return self
        cplx = self._be.is_complex(P) if native else np.iscomplexobj(P)
        if cplx and not self._complex:
            raise PtyAnalysisError(
                f"complex patches cannot be stitched into a real ({self.dtype}) canvas; use dtype=complex64"
            )
        tl, frac, ext = _placements(pos, self.M, self.method)
        tl = tl - np.asarray(self.origin, np.int64)  # canvas coordinates
        H, W = self.canvas_shape
        lo_out = (tl + ext <= 0).any(axis=1) | (tl[:, 0] >= H) | (tl[:, 1] >= W)
        inside = (tl >= 0).all(axis=1) & (tl[:, 0] + ext[:, 0] <= H) & (tl[:, 1] + ext[:, 1] <= W)
        self.n_added += int(P.shape[0])
        self.n_outside += int(lo_out.sum())
        self.n_clipped += int((~inside).sum())
        keep = ~lo_out
        if not keep.all():
            sel = np.flatnonzero(keep)
            P = P[self._be.asarray_async(sel) if native else sel]
            tl, frac, inside = tl[keep], frac[keep], inside[keep]
        if P.shape[0] == 0:
            return self
        if self._be is None:
            self._add_points(tl, frac)
            self._kernel_add(P, tl, frac)
        else:
            self._array_add(P, tl, frac, inside, native)  # point masses included
        return self

    def result(self, normalise: bool = True) -> StitchResult:
        """Return the stitched canvas.

        Parameters
        ----------
        normalise : bool
            Divide the weighted sum by the coverage where it is positive
            (default). ``False`` returns the raw weighted sum.

        Returns
        -------
        StitchResult
        """
        if self._be is not None:
            return self._array_result(normalise)
        cov = self.coverage()
        total = self._acc
        if normalise:
            img = np.zeros_like(total)
            covr = cov.astype(self._rdtype)
            np.divide(total, covr, out=img, where=covr > 0)
            del covr
        else:
            img = total.copy()
        return StitchResult(img, cov, self.origin, self.method, self.n_clipped, self.backend)

    def weighted_sum(self) -> np.ndarray:
        """The raw accumulated sum of weighted patches, shape (H, W) (a copy)."""
        if self._be is None:
            return self._acc.copy()
        return self._array_total()

    def coverage(self) -> np.ndarray:
        """Sum of weights at each pixel (float64), shape (H, W); exactly 0 where no patch lands."""
        if self._be is not None:
            return self._be.to_numpy(self._array_coverage())
        H, W = self.canvas_shape
        M = self.M
        # Box-sum of the point masses over an M x M window via an integral image. Canvas pixel i
        # collects placements t with i - M + 1 <= t <= i, i.e. rows i + 1 .. i + M of the point
        # array (offset M), i.e. ii[i + M + 1] - ii[i + 1].
        ii = np.zeros((H + M + 2, W + M + 2), np.float64)
        np.cumsum(self._points, axis=0, out=ii[1:, 1:])
        np.cumsum(ii[1:, 1:], axis=1, out=ii[1:, 1:])
        cov = np.empty((H, W), np.float64)
        self._box(ii, cov)
        # The same box sum of the integer placement counts marks the uncovered pixels exactly
        # (the float sums above may leave ~1e-16 there). Reuses the buffer, in row strips.
        ic = ii.view(np.int64)
        ic[...] = 0
        np.cumsum(self._counts, axis=0, dtype=np.int64, out=ic[1:, 1:])
        np.cumsum(ic[1:, 1:], axis=1, out=ic[1:, 1:])
        for r in range(0, H, 256):
            t = np.empty((min(256, H - r), W), np.int64)
            self._box(ic, t, r)
            cov[r:r + t.shape[0]][t == 0] = 0.0
        return cov

    def _box(self, ii, out, r0: int = 0):
        """out[:] = box sums of rows r0 .. r0 + len(out) from integral image ii."""
        M = self.M
        h, W = out.shape
        hi_r, hi_c = slice(r0 + M + 1, r0 + M + 1 + h), slice(M + 1, M + 1 + W)
        lo_r, lo_c = slice(r0 + 1, r0 + 1 + h), slice(1, 1 + W)
        np.subtract(ii[hi_r, hi_c], ii[lo_r, hi_c], out=out)
        out -= ii[hi_r, lo_c]
        out += ii[lo_r, lo_c]
        return out

    # -- internals -----------------------------------------------------------
    def _add_points(self, tl, frac):
        """Add the chunk's point masses and placement counts (CPU path)."""
        idx, w = self._point_masses(tl, frac)
        if w is None:
            w = np.ones(len(idx), np.float64)
        _point_kernel()(self._points.reshape(-1), self._counts.reshape(-1), np.ascontiguousarray(idx), w)

    def _point_masses(self, tl, frac):
        """Flat indices (into the point-mass map) and weights of the chunk's placements.

        Returns ``(idx int64, w float64)``, in (patch, corner) order, or
        ``(idx, None)`` where every weight is 1 (nearest, fourier).
        """
        H, W = self.canvas_shape
        M = self.M
        Wp = W + M + 1
        r = tl[:, 0] + M
        c = tl[:, 1] + M
        if self.method == "bilinear":
            fy, fx = frac[:, 0], frac[:, 1]
            wy = (1 - fy, fy)
            wx = (1 - fx, fx)
            # (patch, corner) order, so that any chunking adds to each cell in the same order
            idx = np.empty((len(r), 4), np.int64)
            wts = np.empty((len(r), 4), np.float64)
            ok = np.empty((len(r), 4), bool)
            for j, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                wts[:, j] = wy[a] * wx[b]
                rr, cc = r + a, c + b
                ok[:, j] = (wts[:, j] != 0) & (rr < H + M + 1) & (cc < Wp) & (rr >= 0) & (cc >= 0)
                idx[:, j] = rr * Wp + cc
            ok = ok.reshape(-1)
            idx = idx.reshape(-1)[ok]
            w = wts.reshape(-1)[ok]
        else:
            idx = r * Wp + c
            w = None
        return idx, w

    def _kernel_add(self, P, tl, frac):
        """The CPU path: the compiled kernel, threads over disjoint row bands."""
        M, k = self.M, self._k
        a = _crop_start(self.N, M)
        if self.method == "fourier":
            blk = np.array(P[:, a:a + M, a:a + M], dtype=self.dtype, order="C")  # a copy: shifted in place
            for s in range(0, blk.shape[0], _FOURIER_BLOCK):
                blk[s:s + _FOURIER_BLOCK] = _fourier_shift_block(blk[s:s + _FOURIER_BLOCK], frac[s:s + _FOURIER_BLOCK])
            a = 0
        elif P.dtype == self.dtype and P.flags.c_contiguous:
            blk = P  # used in place: the kernel reads the crop at offset a
        else:
            blk = np.ascontiguousarray(P[:, a:a + M, a:a + M], dtype=self.dtype)
            a = 0
        view = blk.view(self._rdtype) if self._complex else blk
        bil = self.method == "bilinear"
        w = _bilinear_weights(frac, self._rdtype) if bil else np.zeros((len(tl), 4), self._rdtype)
        tl = np.ascontiguousarray(tl, dtype=np.int64)
        place = _kernel()
        bands, workers = _row_bands(self.canvas_shape[0], tl[:, 0], M + 1 if bil else M, self.threads)
        if workers == 1:
            place(self._accv, view, a, M, k, tl, w, bil, 0, self.canvas_shape[0])
            return
        ex = self._thread_pool(workers)
        futures = [ex.submit(place, self._accv, view, a, M, k, tl, w, bil, r0, r1) for r0, r1 in bands]
        for f in futures:
            f.result()

    def _thread_pool(self, workers: int) -> ThreadPoolExecutor:
        """This Stitcher's worker threads (started once, reused by every chunk; stopped with it)."""
        pool = self._pool
        if pool is None or pool._max_workers < workers:
            if pool is not None:
                pool.shutdown(wait=True)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="ptyanalysis-stitch")
            weakref.finalize(self, pool.shutdown, wait=False)
            self._pool = pool
        return pool

    # -- the array backends ------------------------------------------------------
    def _array_setup(self):
        """Device canvas, coverage maps, index type and offset grids of an array backend.

        The canvas is kept flat with one spare row and column, ``(H + 1) x (W + 1)``
        pixels, so that the zero-weight last row/column of a bilinear split that
        sits on the canvas's last row/column lands in the spare ones: a patch that
        is inside the canvas (``n_clipped`` does not count it) needs no bounds
        test. What falls off the canvas goes to the spare corner pixel.
        """
        be, M = self._be, self.M
        H, W = self.canvas_shape
        Wp = W + 1
        size = (H + 1) * Wp
        self._dacc = be.zeros((size,), self.dtype)
        self._dump = size - 1
        # point masses and placement counts of the coverage (as the CPU path's, on the device)
        self._dpoints = be.zeros(((H + M + 1) * (W + M + 1),), np.float64)
        self._dcounts = be.zeros(((H + M + 1) * (W + M + 1),), np.int32)
        # top-left offsets of clipped patches reach -(M + 1) rows / cols outside the canvas
        self._idt = np.dtype(np.int64 if (H + 2 * M + 3) * (W + 2 * M + 3) >= 2**31 else np.int32)
        self._corners = self.method == "bilinear" and bool(_BILINEAR_CORNERS)
        w = M + 1 if self.method == "bilinear" else M
        ar = np.arange(w, dtype=np.int64)
        self._ar = be.asarray_async(ar, self._idt)
        self._grid = be.asarray_async((ar[:, None] * Wp + ar[None, :]).reshape(-1), self._idt)  # (w * w,)
        self._grid_m = self._grid if w == M else be.asarray_async(
            (ar[:M, None] * Wp + ar[None, :M]).reshape(-1), self._idt)  # (M * M,)
        self._staging = None
        self._ones_kept = {}

    def _block_bytes(self) -> int:
        """Device bytes one patch takes in a block (temporaries of the method, indices)."""
        w2 = (self.M + 1) ** 2
        c = self.dtype.itemsize
        temps = {"nearest": 2, "fourier": 7, "bilinear": 3 if self._corners else 5}[self.method]
        return w2 * (temps * c + self._idt.itemsize)

    def _array_meta(self, tl, frac) -> dict:
        """Send a chunk's per-patch data to the device, and add its point masses there.

        One copy per dtype, none of which makes the host wait
        (:meth:`ArrayBackend.asarray_async`). Returns device views: ``"i"``:
        (n, 3) [flat canvas offset of the top-left pixel, top-left row,
        top-left col]; ``"w"``: (n, 4) bilinear weights ``[1 - fy, fy, 1 - fx,
        fx]``; ``"wc"``: (n, 4) corner weights ``[(1 - fy)(1 - fx), (1 - fy) fx,
        fy (1 - fx), fy fx]`` (with :data:`_BILINEAR_CORNERS`); ``"ry"``, ``"rx"``: (n, M)
        Fourier phase ramps, ``"mv"``: the patches that move (``"moving"``:
        the same on the host).
        """
        be, n, M = self._be, len(tl), self.M
        pidx, pw = self._point_masses(tl, frac)
        moving = np.any(frac != 0, axis=1) if self.method == "fourier" else None
        mixed = moving is not None and moving.any() and not moving.all()
        ints = np.empty(3 * n + len(pidx) + (n if mixed else 0), self._idt)
        ints[:3 * n].reshape(n, 3)[:, 0] = tl[:, 0] * (self.canvas_shape[1] + 1) + tl[:, 1]
        ints[:3 * n].reshape(n, 3)[:, 1:] = tl
        ints[3 * n:3 * n + len(pidx)] = pidx
        if mixed:
            ints[3 * n + len(pidx):] = moving
        di = be.asarray_async(ints)
        meta = {"i": di[:3 * n].reshape(n, 3), "moving": moving}
        # the point masses, in the CPU path's order
        pi = di[3 * n:3 * n + len(pidx)]
        be.scatter_add(self._dpoints, pi, self._ones(len(pidx), np.float64) if pw is None else be.asarray_async(pw))
        be.scatter_add(self._dcounts, pi, self._ones(len(pidx), np.int32))
        if mixed:
            meta["mv"] = di[3 * n + len(pidx):] != 0
        if self.method == "bilinear":
            w = _bilinear_weights(frac, self._rdtype)
            if self._corners:  # and the corner weights, (n, 8) in all
                w = np.concatenate([w, w[:, [0, 0, 1, 1]] * w[:, [2, 3, 2, 3]]], axis=1)
            dw = be.asarray_async(w)
            meta["w"], meta["wc"] = dw[:, :4], dw[:, 4:]
        elif moving is not None and moving.any():
            cdt = np.complex64 if self._rdtype == np.float32 else np.complex128
            ramps = be.asarray_async(np.stack(_fourier_ramps(frac, M, cdt)))  # (2, n, M)
            meta["ry"], meta["rx"] = ramps[0], ramps[1]
        return meta

    def _ones(self, n: int, dtype):
        """``n`` ones of a numpy dtype on the device (a view of a kept buffer, grown by doubling)."""
        key = np.dtype(dtype).str
        have = self._ones_kept.get(key)
        if have is None or have.shape[0] < n:
            have = self._be.asarray_async(np.ones(max(n, 2 * (0 if have is None else have.shape[0])), dtype))
            self._ones_kept[key] = have
        return have[:n]

    def _array_add(self, P, tl, frac, inside, native: bool):
        """The array-backend path: blocks of patches, each split (or shifted) and scatter-added once.

        Patches on the device are used where they are (their crop is a view);
        patches in host memory go through :class:`_HostStaging` (page-locked,
        double-buffered, copied on a side stream on a CUDA PyTorch backend; the
        next block is copied into the host buffer by worker threads while this
        one is queued).
        """
        M = self.M
        a = _crop_start(self.N, M)
        n = len(tl)
        meta = self._array_meta(tl, frac)
        if native:
            b = _even_block(n, min(_ARRAY_BLOCK, max(1, _ARRAY_BLOCK_BYTES // self._block_bytes())))
            for s in range(0, n, b):
                e = min(n, s + b)
                x = self._be.cast(P[s:e, a:a + M, a:a + M], self.dtype)
                self._block_add(x, meta, s, e, bool(inside[s:e].all()))
            return
        if self._staging is None:
            self._staging = _HostStaging(self._be, M, self.dtype)
        stage = self._staging
        most = min(_ARRAY_BLOCK, max(1, _ARRAY_BLOCK_BYTES // self._block_bytes()),
                   max(1, _STAGE_BYTES // (M * M * self.dtype.itemsize)))
        b = _even_block(n, most)
        pending = None
        try:
            for s in range(0, n, b):
                e = min(n, s + b)
                ticket = stage.begin(P[s:e, a:a + M, a:a + M], self._copy_async, most)
                if pending is not None:  # the previous block is queued while this one is copied
                    self._staged_block(stage, pending, meta, inside)
                pending = (ticket, s, e)
            self._staged_block(stage, pending, meta, inside)
            pending = None
        finally:
            if pending is not None:  # an error: let the copies into the host buffer end
                for f in pending[0].futures:
                    f.exception()

    def _staged_block(self, stage, pending, meta, inside):
        ticket, s, e = pending
        x = stage.finish(ticket)
        self._block_add(x, meta, s, e, bool(inside[s:e].all()))
        stage.release(ticket)

    def _copy_async(self, dst: np.ndarray, src: np.ndarray) -> list:
        """Start copying ``src`` into ``dst`` (cast, unsafe as ``np.asarray``) in worker threads.

        Split along the first axis into pieces of at least
        :data:`_STAGE_BYTES_PER_THREAD` bytes over at most ``threads`` threads
        (numpy releases the GIL while it copies). Returns the futures.
        """
        n = dst.shape[0]
        workers = max(1, min(self.threads, n, dst.nbytes // _STAGE_BYTES_PER_THREAD))
        ex = self._thread_pool(workers)
        edges = np.linspace(0, n, workers + 1).round().astype(int)
        return [ex.submit(np.copyto, dst[i0:i1], src[i0:i1], casting="unsafe")
                for i0, i1 in itertools.pairwise(edges.tolist()) if i1 > i0]

    def _block_add(self, x, meta, s: int, e: int, inside: bool):
        """Add block ``s:e`` of the chunk: ``x`` (B, M, M) in the accumulator dtype, on the device."""
        be = self._be
        mi = meta["i"][s:e]
        if self.method == "fourier":
            x = self._shift_block(x, meta, s, e)
        if self._corners and inside:
            self._corner_scatters(x, mi, meta["wc"][s:e])
            return
        vals = self._split_block(x, meta["w"][s:e]) if self.method == "bilinear" else x
        idx = mi[:, 0:1] + self._grid[None, :]  # (B, w * w): per-patch offset + the offset grid
        if not inside:  # pixels off the canvas go to the spare corner pixel
            H, W = self.canvas_shape
            w = self._ar.shape[0]
            rows = mi[:, 1:2] + self._ar[None, :]
            cols = mi[:, 2:3] + self._ar[None, :]
            ok = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
            idx = be.where(ok.reshape(e - s, w * w), idx, self._dump)
        be.scatter_add(self._dacc, idx.reshape(-1), vals.reshape(-1))

    def _split_block(self, x, w):
        """The (B, M + 1, M + 1) bilinear split of ``x`` (B, M, M), with the CPU kernel's arithmetic.

        Rows first, ``R[i] = x[i] (1 - fy) + x[i - 1] fy`` (``x[-1] = x[M] = 0``),
        then columns the same way with ``fx``, each product rounded before the
        sum, as the CPU kernel does (on a GPU the second product and the sum
        may be fused: :meth:`ArrayBackend.add_product`). Works on real views
        (complex numbers as (re, im) pairs) and writes into fresh buffers (no
        zero fill): per stage, one product over the patch, one over its last
        row/column, one multiply-add over the overlap.
        """
        be, M = self._be, self.M
        B = x.shape[0]
        wy0, wy1, wx0, wx1 = (w[:, j].reshape(B, 1, 1, 1) for j in range(4))
        X = be.parts(x)  # (B, M, M, k)
        R = be.empty((B, M + 1, M, self._k), self._rdtype)
        be.multiply(X, wy0, out=R[:, :M])
        be.multiply(X[:, M - 1], wy1[:, 0], out=R[:, M])
        be.add_product(R[:, 1:M], X[:, :M - 1], wy1)
        out = be.empty((B, M + 1, M + 1), self.dtype)
        S = be.parts(out)  # (B, M + 1, M + 1, k), a view: written through
        be.multiply(R, wx0, out=S[:, :, :M])
        be.multiply(R[:, :, M - 1], wx1[:, 0], out=S[:, :, M])
        be.add_product(S[:, :, 1:M], R[:, :, :M - 1], wx1)
        return out

    def _corner_scatters(self, x, mi, w):
        """Bilinear as four scatter-adds (:data:`_BILINEAR_CORNERS`), for a block inside the canvas."""
        be, M = self._be, self.M
        B = x.shape[0]
        Wp = self.canvas_shape[1] + 1
        idx = (mi[:, 0:1] + self._grid_m[None, :]).reshape(-1)
        X = be.parts(x)
        tmp = be.empty((B, M, M), self.dtype)
        T = be.parts(tmp)
        for j, off in enumerate((0, 1, Wp, Wp + 1)):  # corners (0, 0), (0, 1), (1, 0), (1, 1)
            be.multiply(X, w[:, j].reshape(B, 1, 1, 1), out=T)
            be.scatter_add(self._dacc[off:], idx, tmp.reshape(-1))

    def _shift_block(self, x, meta, s: int, e: int):
        """Fourier-shift the moving patches of block ``s:e`` (integer positions stay exact)."""
        be = self._be
        mv = meta["moving"][s:e]
        if not mv.any():
            return x
        cdt = np.complex64 if self._rdtype == np.float32 else np.complex128
        X = be.fft2(be.cast(x, cdt))
        X *= meta["ry"][s:e, :, None]
        X *= meta["rx"][s:e, None, :]
        shifted = be.ifft2(X)
        if not self._complex:
            shifted = be.real(shifted)
        shifted = be.cast(shifted, self.dtype)
        if mv.all():
            return shifted
        return be.where(meta["mv"][s:e, None, None], shifted, x)

    def _array_total(self) -> np.ndarray:
        H, W = self.canvas_shape
        a = self._be.to_numpy(self._dacc).reshape(H + 1, W + 1)[:H, :W]
        return np.array(a, dtype=self.dtype, order="C")

    def _array_coverage(self):
        """:meth:`coverage` on the device: the CPU path's integral-image box sums, same order of operations.

        On backends that add and sum in order (numpy, PyTorch on the CPU) it is
        bit-identical to the CPU path's; on a GPU the float64 sums may differ in
        the last bits (atomic adds, parallel prefix sums), the zeros are exact.
        """
        be, M = self._be, self.M
        H, W = self.canvas_shape
        shape = (H + M + 1, W + M + 1)

        def box(cs):  # canvas pixel (i, j) <- placements (i - M + 1 .. i, j - M + 1 .. j): see coverage()
            out = cs[M:M + H, M:M + W] - cs[:H, M:M + W]
            out -= cs[M:M + H, :W]
            out += cs[:H, :W]
            return out

        empty = box(be.cumsum(be.cumsum(self._dcounts.reshape(shape), 0, np.int64), 1)) == 0
        cov = box(be.cumsum(be.cumsum(self._dpoints.reshape(shape), 0), 1))
        return be.where(empty, 0.0, cov)

    def _array_result(self, normalise: bool) -> StitchResult:
        """:meth:`result` of an array backend: coverage and normalisation on the device, two copies back."""
        be = self._be
        H, W = self.canvas_shape
        cov = self._array_coverage()
        total = self._dacc.reshape(H + 1, W + 1)[:H, :W]
        if not normalise:
            img = self._array_total()  # a copy
        else:
            covr = be.cast(cov, self._rdtype)
            pos = covr > 0
            safe = be.where(pos, covr, 1.0)
            if self._complex:
                # numpy divides complex by real as (re, im) * (1 / c) (its complex division with
                # a zero imaginary part); the same products here, on real views
                out = be.empty((H, W), self.dtype)
                be.multiply(be.parts(total), (1.0 / safe)[..., None], out=be.parts(out))
            else:
                out = total / safe
            img = np.ascontiguousarray(be.to_numpy(be.where(pos, out, 0.0)), dtype=self.dtype)
        return StitchResult(img, be.to_numpy(cov), self.origin, self.method, self.n_clipped, self.backend)


def _even_block(n: int, most: int) -> int:
    """Block length that splits ``n`` into as few blocks of at most ``most`` as can be, of near-equal size."""
    nb = -(-n // max(1, most))
    return -(-n // nb)


@dataclass
class _Ticket:
    """One block on its way through :class:`_HostStaging`."""

    slot: int
    n: int
    futures: list
    direct: object = None  # the source itself, where no staging copy is needed


class _HostStaging:
    """Two host buffers through which blocks of host patches reach an array backend's device.

    PyTorch on a GPU: the buffers are page-locked (PyTorch's cached page-locked
    memory), each with a device twin. A block is copied into one host buffer by
    worker threads (:meth:`Stitcher._copy_async`, which also crops and casts),
    then to the device with ``non_blocking=True`` on a separate CUDA stream;
    the compute stream waits for that copy (an event) and scatter-adds the block
    while the host fills the other buffer and the copy engine moves it, so host
    copies, transfers and arithmetic overlap. Events also keep a buffer from
    being refilled (host) or overwritten (device) while it is still read.

    CuPy: plain copies (``cupy.asarray``, synchronous, not overlapped), as the
    page-locked path is written and tested for PyTorch only. CPU backends
    (numpy, PyTorch on the CPU): the host buffer is the array computed on, or,
    where a block already is C-contiguous in the accumulator dtype, the source
    itself (no copy), so the same code runs, and is tested, without a GPU.
    """

    def __init__(self, be: ArrayBackend, M: int, dtype, streams=None):
        self.be, self.M, self.dtype = be, int(M), np.dtype(dtype)
        # streams: use the CUDA path (default: PyTorch on a GPU); a test runs it on the CPU with stand-ins
        self.cuda = (be.name == "torch" and be.device != "cpu") if streams is None else bool(streams)
        self._host = [None, None]  # numpy views of the host buffers
        self._pinned = [None, None]  # the page-locked tensors behind them (CUDA)
        self._dev = [None, None]  # their device twins (CUDA)
        self._slot = 0
        if self.cuda:
            torch = be.xp
            self._device = torch.device(be.device)
            self._stream = torch.cuda.Stream(device=self._device)
            self._copied = [torch.cuda.Event(), torch.cuda.Event()]  # host buffer -> device copy done
            self._consumed = [torch.cuda.Event(), torch.cuda.Event()]  # the block's arithmetic done

    def _reserve(self, slot: int, n: int, most: int):
        """Buffers of ``slot`` for at least ``n`` patches (grown by doubling, to at most ``max(n, most)``)."""
        have = self._host[slot]
        if have is not None and have.shape[0] >= n:
            return
        cap = max(n, min(2 * have.shape[0], most)) if have is not None else n
        shape = (cap, self.M, self.M)
        if self.cuda:
            torch = self.be.xp
            td = self.be._torch_dtype(self.dtype)
            self._pinned[slot] = torch.empty(shape, dtype=td, pin_memory=self._device.type == "cuda")
            self._host[slot] = self._pinned[slot].numpy()
            self._dev[slot] = torch.empty(shape, dtype=td, device=self._device)
        else:
            self._host[slot] = np.empty(shape, self.dtype)

    def begin(self, src: np.ndarray, copy_async, most: int) -> _Ticket:
        """Start moving block ``src`` (B, M, M) (any strides and real/complex dtype) into a host buffer.

        ``copy_async(dst, src)`` starts the copy and returns its futures;
        ``most`` is the largest block this stitcher stages.
        """
        n = src.shape[0]
        slot = self._slot
        self._slot ^= 1
        if not self.cuda and (self.be.name == "cupy" or (
                src.dtype == self.dtype and src.flags.c_contiguous and src.flags.writeable)):
            return _Ticket(slot, n, [], direct=src)
        if self.cuda:
            self._copied[slot].synchronize()  # the buffer's last copy to the device has been read out
        self._reserve(slot, n, most)
        return _Ticket(slot, n, copy_async(self._host[slot][:n], src))

    def finish(self, t: _Ticket):
        """Wait for the host copy of ``t``; return the block as a device array (queued, not waited for)."""
        for f in t.futures:
            f.result()
        if t.direct is not None:
            return self.be.asarray(t.direct, self.dtype)
        if not self.cuda:
            return self.be.asarray(self._host[t.slot][:t.n])
        torch = self.be.xp
        dev = self._dev[t.slot][:t.n]
        self._stream.wait_event(self._consumed[t.slot])  # the device buffer's last block is done
        with torch.cuda.stream(self._stream):
            dev.copy_(self._pinned[t.slot][:t.n], non_blocking=True)
            self._copied[t.slot].record(self._stream)
        torch.cuda.current_stream(self._device).wait_event(self._copied[t.slot])
        return dev

    def release(self, t: _Ticket):
        """Mark ``t``'s device buffer free once the work queued on it so far is done."""
        if self.cuda:
            self._consumed[t.slot].record(self.be.xp.cuda.current_stream(self._device))


def _host_array(x):
    """A PyTorch CPU tensor as a numpy array (no copy); anything else as it is."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach") and x.device.type == "cpu":
        return x.detach().resolve_conj().numpy()
    return x


def _as_native_patches(x):
    """A CuPy / PyTorch patch stack as (n, N, N); accept a trailing singleton axis."""
    shape = tuple(x.shape)
    if len(shape) == 4 and shape[-1] == 1:
        x = x[..., 0]
        shape = shape[:3]
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] == 0:
        raise PtyAnalysisError(
            f"patches must have shape (n, N, N) (or (n, N, N, 1)) with square N x N patches, got {shape}")
    return x


# --------------------------------------------------------------------------- #
# one-shot API
# --------------------------------------------------------------------------- #
def stitch(patches, positions, *, method="bilinear", crop=None, canvas_shape=None, origin=None,
           backend="auto", chunk_size=DEFAULT_CHUNK, dtype=None, threads=None) -> StitchResult:
    """Stitch patches placed at their positions into one canvas.

    Parameters
    ----------
    patches : array_like, shape (n, N, N)
        Real or complex patches (a trailing singleton axis is accepted).
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels, one per patch (the
        convention of :mod:`ptyanalysis.conventions`). A count mismatch is an
        error, never a broadcast.
    method : {"bilinear", "fourier", "nearest"}
        Placement of sub-pixel positions (module docstring).
    crop : int, optional
        Keep only the central ``crop x crop`` of each patch.
    canvas_shape : tuple of int, optional
        ``(H, W)``. Default: the bounding box of all patches (from ``origin``
        if that is given). Patches partly outside a given canvas are clipped
        (counted in ``n_clipped``).
    origin : tuple of int, optional
        Object coordinates of canvas pixel (0, 0) (``canvas index = object
        coordinate - origin``). Default: ``(0, 0)`` when ``canvas_shape`` is
        given, else the bounding box's corner.
    backend : {"auto", "numpy", "cupy", "torch"} or ArrayBackend
        ``"auto"`` uses a GPU array backend (CuPy or PyTorch) if one is usable,
        else the compiled CPU kernel (``"numpy"``). The result's ``backend``
        says which ran.
    chunk_size : int
        Patches handed to the accumulator at once (bounds the extra memory).
    dtype : dtype, optional
        Accumulator dtype; default complex64 for complex patches (complex128
        for complex128 ones), float32 for real ones (float64 for float64).
    threads : int, optional
        CPU kernel threads (default every core); the result does not depend on it.

    Returns
    -------
    StitchResult
        ``image`` (weighted mean where covered, 0 elsewhere), ``coverage``,
        ``origin``.

    Raises
    ------
    PtyAnalysisError
        Bad shapes, mismatched counts, NaN/Inf positions, unknown method.
    """
    P = _as_patches(patches)
    pos = check_positions(positions, P.shape[0])
    _check_method(method)
    if P.shape[0] == 0:
        raise PtyAnalysisError("no patches to stitch (patches is empty)")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise PtyAnalysisError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    N = P.shape[1]
    M = _check_crop(crop, N)
    if canvas_shape is None:
        o, shape = scan_frame(pos, N, crop=M, method=method)
        if origin is not None:
            origin = _check_pair(origin, "origin")
            hi = (o[0] + shape[0], o[1] + shape[1])
            shape = (max(hi[0] - origin[0], 1), max(hi[1] - origin[1], 1))
            o = origin
        origin, canvas_shape = o, shape
    elif origin is None:
        origin = (0, 0)
    if dtype is None:
        if np.iscomplexobj(P):
            dtype = np.complex128 if P.dtype == np.complex128 else np.complex64
        else:
            dtype = np.float64 if P.dtype == np.float64 else np.float32
    st = Stitcher(canvas_shape, origin, N, dtype=dtype, method=method, crop=M, backend=backend,
                  threads=threads)
    for s in range(0, P.shape[0], int(chunk_size)):
        st.add(P[s:s + chunk_size], pos[s:s + chunk_size])
    return st.result()


def extract(image, positions, N, *, method="bilinear", origin=(0, 0), threads=None) -> np.ndarray:
    """Cut N x N patches out of an image: the adjoint of :func:`stitch`.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Real or complex image (e.g. the ground-truth object).
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels.
    N : int
        Patch size. The patch at integer ``(r, c)`` is
        ``image[r - N//2 : r - N//2 + N, c - N//2 : c - N//2 + N]``.
    method : {"bilinear", "fourier", "nearest"}
        ``"nearest"`` rounds; ``"bilinear"`` interpolates bilinearly (it reads
        one more row/col where the position is fractional); ``"fourier"`` cuts
        at the rounded position and shifts the patch by the remainder with a
        Fourier phase ramp (circular within the patch). All three are exact at
        integer positions.
    origin : tuple of int
        Object coordinates of ``image[0, 0]`` (default (0, 0): the image is the
        object). Use a :class:`StitchResult`'s origin to cut from a canvas.
    threads : int, optional
        Threads of the compiled cutter (default every core); each fills its
        own patches, so the result does not depend on it.

    Returns
    -------
    ndarray, shape (n, N, N)
        The image's dtype (float32, float64, complex64 or complex128; other
        types are computed in double precision).

    Raises
    ------
    PtyAnalysisError
        If a patch falls (partly) outside the image, or on bad input.
    """
    img = np.asarray(image)
    if img.ndim != 2 or min(img.shape) == 0:
        raise PtyAnalysisError(f"image must be a 2-D array, got shape {img.shape}")
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise PtyAnalysisError(f"N must be a positive integer patch size, got {N!r}")
    N = int(N)
    _check_method(method)
    o = np.asarray(_check_pair(origin, "origin"), np.int64)
    pos = check_positions(positions)
    n = pos.shape[0]
    tl, frac, ext = _placements(pos, N, method)
    tl = tl - o
    H, W = img.shape
    bad = (tl < 0).any(axis=1) | (tl[:, 0] + ext[:, 0] > H) | (tl[:, 1] + ext[:, 1] > W)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PtyAnalysisError(
            f"{int(bad.sum())} of {n} patches fall outside the {H} x {W} image "
            f"(first: #{i} at (row, col) = ({pos[i, 0]:g}, {pos[i, 1]:g}) needs rows "
            f"{tl[i, 0] + o[0]}..{tl[i, 0] + o[0] + ext[i, 0] - 1} and cols "
            f"{tl[i, 1] + o[1]}..{tl[i, 1] + o[1] + ext[i, 1] - 1} in object pixels); "
            "pad the image or drop those positions"
        )
    if img.dtype.type not in _DTYPES:  # integers, float16, long double: computed in double precision
        img = img.astype(np.complex128 if np.iscomplexobj(img) else np.float64)
    out = np.empty((n, N, N), img.dtype)
    k = 2 if np.iscomplexobj(img) else 1
    rd = np.dtype(np.float32) if img.dtype.itemsize // k == 4 else np.dtype(np.float64)
    bil = method == "bilinear"
    if bil:
        # pad by one row/col so the (N+1) window exists even where the weight is 0
        src = np.zeros((H + 1, W + 1), img.dtype)
        src[:H, :W] = img
        w = np.empty((n, 4), rd)  # 1 - f in double precision, then rounded (as numpy scalars did)
        w[:, 0] = (1 - frac[:, 0]).astype(rd)
        w[:, 1] = frac[:, 0].astype(rd)
        w[:, 2] = (1 - frac[:, 1]).astype(rd)
        w[:, 3] = frac[:, 1].astype(rd)
    else:
        src = np.ascontiguousarray(img)
        w = np.zeros((n, 4), rd)
    view = (lambda a: a.view(rd)) if k == 2 else (lambda a: a)
    cut, S, O = _cut_kernel(), view(src), view(out)
    tl = np.ascontiguousarray(tl, dtype=np.int64)
    workers = max(1, min(_check_threads(threads), n // 64))
    if workers == 1:
        cut(S, O, tl, w, k, bil, 0, n)
    else:
        edges = np.linspace(0, n, workers + 1).round().astype(int)
        with ThreadPoolExecutor(workers, thread_name_prefix="ptyanalysis-extract") as ex:
            for f in [ex.submit(cut, S, O, tl, w, k, bil, int(edges[i]), int(edges[i + 1]))
                      for i in range(workers)]:
                f.result()
    if method == "fourier":
        for s in range(0, n, 256):
            out[s:s + 256] = _fourier_shift_block(out[s:s + 256], -frac[s:s + 256])
    return out


# --------------------------------------------------------------------------- #
# the study's convention
# --------------------------------------------------------------------------- #
def _ptychopinn_offsets(global_offsets, n: int) -> np.ndarray:
    g = np.asarray(global_offsets, dtype=np.float64)
    # [x, y] -> (row, col) only through conventions; other accepted layouts are reshaped to its.
    if g.ndim == 4 and g.shape[1:] == (1, 1, 2):  # the study's docstrings also show this
        g = np.transpose(g, (0, 1, 3, 2))
    elif g.ndim == 2 and g.shape[1] == 2:
        g = g[:, None, :, None]
    elif not (g.ndim == 4 and g.shape[1:] == (1, 2, 1)):
        raise PtyAnalysisError(
            f"global_offsets must be (n, 1, 2, 1) as [x, y] (PtychoPINN layout), got {g.shape}"
        )
    return check_positions(global_positions_from_offsets(g), n, name="global_offsets")


def ptychopinn_frame(global_offsets, M: int = 20, n: int | None = None):
    """Canvas frame the study's ``reassemble_position`` uses.

    Parameters
    ----------
    global_offsets : array_like, shape (n, 1, 2, 1)
        PtychoPINN global offsets, [x, y] in object pixels.
    M : int
        Central crop size (the study keeps ``2 * (M // 2)`` pixels).
    n : int, optional
        Expected number of offsets.

    Returns
    -------
    positions : ndarray, shape (n, 2)
        (row, col) positions minus their mean (what gets placed).
    mean : ndarray, shape (2,)
        The subtracted mean (row, col).
    pad : int
        ``ceil(max |offset - mean|)`` rounded up to even.
    side : int
        Canvas side ``M_eff + 2 * pad``.
    origin : tuple of int
        Frame origin in the mean-subtracted coordinates: ``-(pad + M_eff // 2)``.
    """
    pos = _ptychopinn_offsets(global_offsets, n if n is not None else np.shape(global_offsets)[0])
    Meff = 2 * (int(M) // 2)
    mean = pos.mean(axis=0)
    adj = pos - mean
    pad = math.ceil(float(np.abs(adj).max())) if adj.size else 0
    pad += pad % 2
    side = Meff + 2 * pad
    o = -(pad + Meff // 2)
    return adj, mean, pad, side, (o, o)


def ptychopinn_reassemble(patches, global_offsets, M: int = 20, *, chunk_size=DEFAULT_CHUNK,
                          backend="numpy") -> StitchResult:
    """Reproduce the study's ``reassemble_position`` (docs/formats.md#ptychopinn-reassembly), fast.

    The study keeps the central ``M x M`` of each patch, subtracts the mean
    offset (per coordinate), places each crop at ``+offset`` (bilinear) on a
    square canvas of side ``M + 2 * pad`` with ``pad = ceil(max |offset|)``
    rounded up to even, sums, and divides by ``coverage + 1e-9`` (uncovered
    pixels are 0). Here the same numbers come from the streaming
    :class:`Stitcher` (cost grows with n x M^2, not n x canvas area).

    Parameters
    ----------
    patches : array_like, shape (n, N, N) or (n, N, N, 1)
        Object patches (complex or real).
    global_offsets : array_like, shape (n, 1, 2, 1)
        Global offsets as [x, y] (PtychoPINN layout); one per patch.
    M : int
        Crop size. As in the study, the crop is ``[N//2 - M//2, N//2 + M//2)``,
        i.e. ``2 * (M // 2)`` pixels (one less than M for odd M).
    chunk_size : int
        Patches per accumulator call.
    backend : {"numpy", "auto", "cupy", "torch"} or ArrayBackend
        Accumulator backend (:class:`Stitcher`).

    Returns
    -------
    StitchResult
        ``image`` = sum / (coverage + 1e-9) on the study's canvas (shape
        ``(side, side)``, no trailing axis); ``coverage``; ``origin`` in the
        mean-subtracted frame (object coordinate = mean offset + canvas index +
        origin), see :func:`ptychopinn_frame`.

    Notes
    -----
    A constant shift of all offsets does not change the result. Offsets are
    averaged in float64 (the study used float32), so numbers agree with the
    study's to float32 round-off.
    """
    P = _as_patches(patches)
    n = P.shape[0]
    if n == 0:
        raise PtyAnalysisError("no patches to reassemble (patches is empty)")
    N = P.shape[1]
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or not 2 <= 2 * (int(M) // 2) <= N:
        raise PtyAnalysisError(f"M must be an integer between 2 and the patch size {N}, got {M!r}")
    Meff = 2 * (int(M) // 2)
    adj, _, _, side, origin = ptychopinn_frame(global_offsets, M, n)
    dtype = np.complex64 if np.iscomplexobj(P) else np.float32
    st = Stitcher((side, side), origin, N, dtype=dtype, method="bilinear", crop=Meff, backend=backend)
    for s in range(0, n, int(chunk_size)):
        st.add(P[s:s + chunk_size], adj[s:s + chunk_size])
    total = st.weighted_sum()
    cov = st.coverage()
    img = (total / (cov + 1e-9).astype(np.float32)).astype(dtype)
    return StitchResult(img, cov, origin, "bilinear", st.n_clipped, st.backend)


def _naive_reassemble(patches, global_offsets, M: int = 20) -> np.ndarray:
    """Reference loop doing what the study did (for the benchmark; slow by design).

    Pads every central crop to the full canvas and translates it with
    ``scipy.ndimage.shift(order=1)`` (bilinear), for the patch and for a
    patch of ones, sums both, and divides by (count + 1e-9).

    Returns
    -------
    ndarray, shape (side, side)
    """
    from scipy import ndimage

    P = _as_patches(patches)
    n, N = P.shape[0], P.shape[1]
    adj, _, pad, side, _ = ptychopinn_frame(global_offsets, M, n)
    Meff = 2 * (int(M) // 2)
    a = _crop_start(N, Meff)
    crops = P[:, a:a + Meff, a:a + Meff]
    cplx = np.iscomplexobj(P)
    total = np.zeros((side, side), np.complex128 if cplx else np.float64)
    count = np.zeros((side, side), np.float64)
    canvas = np.zeros((side, side), total.dtype)
    ones = np.zeros((side, side), np.float64)
    ones[pad:pad + Meff, pad:pad + Meff] = 1.0
    for i in range(n):
        canvas[pad:pad + Meff, pad:pad + Meff] = crops[i]
        s = (float(adj[i, 0]), float(adj[i, 1]))
        if cplx:
            total += ndimage.shift(canvas.real, s, order=1, mode="grid-constant")
            total += 1j * ndimage.shift(canvas.imag, s, order=1, mode="grid-constant")
        else:
            total += ndimage.shift(canvas, s, order=1, mode="grid-constant")
        count += ndimage.shift(ones, s, order=1, mode="grid-constant")
    return (total / (count + 1e-9)).astype(np.complex64 if cplx else np.float32)

"""The iterative arm: a reference rPIE reconstruction (used when pty-chi is not installed).

The study's third arm is pty-chi (LSQML, 100 epochs). pty-chi is an optional
dependency; when it is absent ptyanalysis runs this small, honest reference
instead: minibatch **rPIE** (Maiden, Johnson & Li 2017) with a known probe,
amplitude projection on the measured far-field amplitudes. Every file and
table it produces says so (``algorithm`` names it).

Its output uses the study's ``ptychi_reconstruction.npz`` keys:
``reconstructed_object`` (2-D complex, in its own frame), ``reconstructed_probe``,
``algorithm``; plus ptyanalysis's ``origin`` (object pixel of the frame's
pixel (0, 0)), ``coverage`` and ``iterations``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions import check_positions, patch_centre
from ..errors import PtyAnalysisError

#: Label written with every reference reconstruction.
ALGORITHM = "rPIE (ptyanalysis reference, minibatch, fixed probe; pty-chi not used)"


@dataclass(frozen=True)
class RPIEConfig:
    """Options of :func:`rpie`.

    Attributes
    ----------
    iterations : int
        Passes over all positions.
    alpha : float
        rPIE regularisation (0 gives ePIE-like steps, 1 a uniform step).
    batch_size : int
        Positions updated together (their updates are averaged where they overlap).
    seed : int
        Order of positions in each pass.
    """

    iterations: int = 50
    alpha: float = 0.1
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Reconstruction:
    """Result of an iterative reconstruction."""

    obj: np.ndarray          # (H, W) complex64, its own frame
    probe: np.ndarray        # (N, N) complex64
    origin: tuple            # object pixel (row, col) of obj[0, 0]
    coverage: np.ndarray     # (H, W) float32, sum of |P|^2 over positions
    algorithm: str
    iterations: int
    error: np.ndarray        # per-iteration mean amplitude residual

    def to_npz_dict(self) -> dict:
        """Arrays for ``ptychi_reconstruction.npz`` (the study's keys plus ours)."""
        return {
            "reconstructed_object": self.obj, "reconstructed_probe": self.probe,
            "algorithm": np.array(self.algorithm), "origin": np.asarray(self.origin, np.float64),
            "coverage": self.coverage, "iterations": np.array(self.iterations),
            "amplitude_residual": self.error,
        }


def frame_for(positions, N: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Origin (row, col) and shape of the smallest frame holding every patch at ``positions``.

    Parameters
    ----------
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels (rounded to integers).
    N : int
        Patch size.

    Returns
    -------
    origin : tuple of int
        Object (row, col) of the frame's pixel (0, 0).
    shape : tuple of int
        ``(H, W)``.

    Notes
    -----
    The same box as :func:`ptyanalysis.imaging.stitching.scan_frame` with
    ``method="nearest"`` (it is computed there).
    """
    from ..imaging.stitching import scan_frame

    return scan_frame(positions, N, method="nearest")


def rpie(diffraction, positions, probe, config: RPIEConfig = RPIEConfig(), progress=None) -> Reconstruction:
    """Minibatch rPIE with a fixed probe.

    Parameters
    ----------
    diffraction : (n, N, N) array
        Measured far-field **amplitudes** (fftshifted), in the units of the
        dataset (``|FFT2_ortho(O P)|`` for the study's normalisation).
    positions : (n, 2) array
        Patch centres (row, col), object pixels; rounded to integers.
    probe : (N, N) complex array
    config : RPIEConfig
    progress : callable, optional
        Called with ``(iteration, residual)`` after each pass.

    Returns
    -------
    Reconstruction
    """
    d = np.asarray(diffraction, dtype=np.float32)
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise PtyAnalysisError(f"diffraction must be (n, N, N), got {d.shape}")
    n, N, _ = d.shape
    pos = np.rint(check_positions(positions, n=n)).astype(np.int64)
    P = np.asarray(probe, dtype=np.complex64)
    if P.shape != (N, N):
        raise PtyAnalysisError(f"probe must be ({N}, {N}) to match the patterns, got {P.shape}")
    origin, shape = frame_for(pos, N)
    H, W = shape
    obj = np.ones(shape, np.complex64)
    top_left = pos - np.asarray(origin) - patch_centre(N)
    rr = top_left[:, 0, None, None] + np.arange(N)[None, :, None]
    cc = top_left[:, 1, None, None] + np.arange(N)[None, None, :]
    flat = (rr * W + cc)  # (n, N, N) flat frame indices of every patch pixel
    P2 = (np.abs(P) ** 2).astype(np.float32)
    weight = (1 - config.alpha) * P2 + config.alpha * P2.max()
    coverage = np.bincount(flat.ravel(), weights=np.broadcast_to(P2, flat.shape).ravel(),
                           minlength=H * W).reshape(shape).astype(np.float32)
    rng = np.random.default_rng(config.seed)
    d_unshift = np.fft.ifftshift(d, axes=(-2, -1))
    errors = []
    for it in range(config.iterations):
        order = rng.permutation(n)
        resid = 0.0
        for start in range(0, n, config.batch_size):
            b = order[start:start + config.batch_size]
            fb = flat[b]
            o = obj.ravel()[fb]
            psi = o * P
            F = np.fft.fft2(psi, norm="ortho")
            mag = np.abs(F)
            resid += float(np.sum(np.abs(mag - d_unshift[b])))
            F = d_unshift[b] * np.exp(1j * np.angle(F))
            delta = np.fft.ifft2(F, norm="ortho") - psi
            upd = np.conj(P) * delta
            num_re = np.bincount(fb.ravel(), weights=upd.real.ravel(), minlength=H * W)
            num_im = np.bincount(fb.ravel(), weights=upd.imag.ravel(), minlength=H * W)
            den = np.bincount(fb.ravel(), weights=np.broadcast_to(weight, fb.shape).ravel(), minlength=H * W)
            touched = den > 0
            step = np.zeros(H * W, np.complex128)
            step[touched] = (num_re[touched] + 1j * num_im[touched]) / den[touched]
            obj = (obj.ravel() + step.astype(np.complex64)).reshape(shape)
        errors.append(resid / d.size)
        if progress is not None:
            progress(it, errors[-1])
    return Reconstruction(obj=obj, probe=P, origin=origin, coverage=coverage, algorithm=ALGORITHM,
                          iterations=config.iterations, error=np.asarray(errors, np.float64))

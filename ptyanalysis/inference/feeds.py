"""How a split is fed to a model: normalisation, intensity scale, groups and offsets (the study's conventions)."""

from __future__ import annotations

import math
import numpy as np
from ..conventions import global_positions_from_offsets, ptychopinn_offsets, xy_from_positions
from ..errors import PtyAnalysisError


def mean_total_intensity(diffraction) -> float:
    """Mean over patterns of the total intensity ``sum(diffraction**2)`` (float64, in row blocks).

    This is the dataset statistic :func:`scale_diffraction` normalises by; compute it
    once on a whole split and pass it on when the split is processed in chunks, so
    every chunk gets the same normalisation.
    """
    d = diffraction if hasattr(diffraction, "shape") else np.asarray(diffraction)
    if len(d.shape) < 2:
        raise PtyAnalysisError(f"diffraction must be (n, N, N), got shape {d.shape}")
    d3 = d if len(d.shape) == 3 else np.reshape(np.asarray(d), (-1,) + tuple(d.shape[-2:]))
    n = d3.shape[0]
    step = max(1, (1 << 22) // max(1, d3.shape[1] * d3.shape[2]))
    totals = np.empty(n, np.float64)
    for s0 in range(0, n, step):
        block = np.asarray(d3[s0:s0 + step], dtype=np.float64)
        totals[s0:s0 + step] = np.sum(block ** 2, axis=(-2, -1))
    return float(np.mean(totals)) if n else float("nan")


def scale_diffraction(diffraction, intensity_scale: float, *, mean_total: float | None = None) -> np.ndarray:
    """The network input the study's loader builds from a dataset's ``diffraction``.

    The loader rescales the amplitudes so the mean total intensity per pattern
    is ``(N/2)^2``, then multiplies by ``intensity_scale`` (``sqrt(nphotons) /
    (N/2)`` for a model trained at that dose): the result's squares are counts.

    Parameters
    ----------
    diffraction : array_like, shape (..., N, N)
        Normalized amplitudes.
    intensity_scale : float
        The model's intensity scale.
    mean_total : float, optional
        The split's mean total intensity per pattern
        (:func:`mean_total_intensity`). Default: computed from ``diffraction``
        itself, which is only right when ``diffraction`` is the whole split.

    Returns
    -------
    ndarray, float32, same shape as ``diffraction``
    """
    d = np.asarray(diffraction, dtype=np.float32)
    N = d.shape[-1]
    if mean_total is None:
        mean_total = mean_total_intensity(d)
    mean_total = float(mean_total)
    if not np.isfinite(mean_total) or mean_total <= 0:
        raise PtyAnalysisError("diffraction has no positive finite intensity: cannot normalise it")
    return (d * np.float32(math.sqrt((N / 2) ** 2 / mean_total) * intensity_scale)).astype(np.float32)


def intensity_scale_for(nphotons: float, N: int) -> float:
    """``sqrt(nphotons) / (N/2)``: the study's intensity scale."""
    return float(math.sqrt(nphotons) / (N / 2))


def group_members(positions, gridsize: int, K: int, rng) -> np.ndarray:
    """Groups for gridsize ``g``: each position seeds a group of ``C = g*g`` members.

    Members are drawn (seeded, without replacement) from the seed's ``K + 1``
    nearest positions, the seed included. For ``g = 1`` each group is its own
    position.

    Parameters
    ----------
    positions : array_like, shape (n, 2)
        (row, col) scan positions.
    gridsize : int
        Group side ``g``.
    K : int
        Neighbours a group is drawn from.
    rng : numpy.random.Generator
        Source of the random choice.

    Returns
    -------
    ndarray of int, shape (n, C)
        Member indices.
    """
    from scipy.spatial import cKDTree

    p = np.asarray(positions, dtype=np.float64)
    C = gridsize * gridsize
    if C == 1:
        return np.arange(len(p))[:, None]
    k = min(K + 1, len(p))
    if k < C:
        raise PtyAnalysisError(f"{len(p)} positions cannot form groups of {C}")
    _, nn = cKDTree(p).query(p, k=k)
    pick = np.argsort(rng.random((len(p), k)), axis=1)[:, :C]
    return np.take_along_axis(nn, pick, axis=1)


def group_inputs(data, gridsize: int, intensity_scale: float, K: int = 7, seed: int = 0, *,
                 members=None, mean_total: float | None = None):
    """Model inputs for a dataset grouped for ``gridsize``.

    Parameters
    ----------
    data : PtychoData
        The split.
    gridsize : int
        Group side; groups have ``C = gridsize**2`` members.
    intensity_scale : float
        The model's intensity scale.
    K : int
        Neighbours a group is drawn from (:func:`group_members`).
    seed : int
        Grouping seed.
    members : array_like of int, shape (b, C), optional
        Precomputed member indices into ``data`` (e.g. one chunk of the groups
        of the whole split); default: :func:`group_members` on all of ``data``.
    mean_total : float, optional
        Normalisation statistic of the whole split (:func:`scale_diffraction`).

    Returns
    -------
    inputs : dict
        ``input`` (b, N, N, C) and ``input_positions`` (b, 1, 2, C) negated
        local offsets, for ``diffraction_to_obj``.
    centres : ndarray, shape (b, 2)
        (row, col) centre of each group's output patch.
    members : ndarray, shape (b, C)
        Member indices.
    """
    C = gridsize * gridsize
    if members is None:
        members = group_members(data.positions, gridsize, K, np.random.default_rng(seed))
    else:
        members = np.asarray(members)
        if members.ndim != 2 or members.shape[1] != C or members.dtype.kind not in "iu" or (
                members.size and (members.min() < 0 or members.max() >= data.n)):
            raise PtyAnalysisError(
                f"members must be (b, {C}) integer indices into the {data.n} patterns, got shape "
                f"{members.shape} dtype {members.dtype}")
    if mean_total is None:
        mean_total = mean_total_intensity(data.diffraction)
    x = scale_diffraction(np.asarray(data.diffraction)[members], intensity_scale, mean_total=mean_total)
    x = np.transpose(x, (0, 2, 3, 1))
    glob, local = ptychopinn_offsets(data.positions[members])
    centres = global_positions_from_offsets(glob)
    return {"input": np.ascontiguousarray(x), "input_positions": local}, centres, members


def study_model_inputs(data, sidecar: dict, mode: str = "trained", *, mean_total: float | None = None) -> dict:
    """Map a study dataset to the Baseline's (gridsize 1) inputs.

    Parameters
    ----------
    data : PtychoData
        A split.
    sidecar : dict
        The model's parameters (needs ``intensity_scale``).
    mode : {"trained", "study"}
        ``"trained"`` feeds what the model was trained with: all-zero local
        offsets. ``"study"`` does what the study's comparison script did to
        the positions: feed the absolute global scan positions [x, y] as
        ``input_positions`` (the cause of the all-zero output). The diffraction
        input is scaled by ``intensity_scale`` in both modes; the study's script
        also omitted that factor (contract section 3), a second, separable
        fault that this mode does not reproduce.
    mean_total : float, optional
        Normalisation statistic of the whole split when ``data`` is one chunk
        of it (:func:`scale_diffraction`).

    Returns
    -------
    dict
        ``{"input": (n, N, N, 1) float32, "input_positions": (n, 1, 2, 1) float32}``.
    """
    if "intensity_scale" not in sidecar:
        raise PtyAnalysisError("model sidecar has no 'intensity_scale': cannot build the model input")
    x = scale_diffraction(data.diffraction, float(sidecar["intensity_scale"]), mean_total=mean_total)[..., None]
    if mode == "trained":
        pos = np.zeros((data.n, 1, 2, 1), np.float32)
    elif mode == "study":
        xc, yc = xy_from_positions(data.positions)
        pos = np.stack([xc, yc], axis=1)[:, None, :, None].astype(np.float32)
    else:
        raise PtyAnalysisError(f"mode must be 'trained' or 'study', got {mode!r}")
    return {"input": x, "input_positions": pos}

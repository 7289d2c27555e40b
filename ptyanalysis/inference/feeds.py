"""How a split is fed to a model: normalisation, intensity scale, groups and offsets (the study's conventions).

The one place that knows the feeds of a split (:data:`FEEDS`):

``"trained"``
    What the model was trained with: the loader's normalised amplitudes
    (mean total intensity per pattern ``(N/2)^2``) times the model's
    ``intensity_scale``, and the groups' local offsets as ``input_positions``
    (all zero for gridsize 1).
``"study"``
    What the study's comparison script (PtychoPINN's ``compare_models``) fed:
    for the gridsize-1 Baseline the normalised amplitudes NOT multiplied by
    ``intensity_scale`` and the absolute scan positions [x, y] as
    ``input_positions`` (docs/formats.md#the-study-feed: two faults); for a
    gridsize > 1 PINN the same as ``"trained"`` (the script scaled its input and
    gave it the local offsets; its fault there was the batch merge, which
    :func:`ptyanalysis.inference.run_inference` handles).
``"torch_cli"``
    What PtychoPINN's PyTorch inference CLI (``ptycho_torch/inference.py``,
    ``_run_inference_and_reconstruct``) feeds a PyTorch bundle: each pattern
    on its own, normalised by the same factor ``sqrt((N/2)^2 / mean total
    intensity)`` over the patterns fed (the CLI passes it as the model's input
    scale, i.e. it multiplies the raw patterns by it) and, for gridsize > 1,
    COPIED into all ``C`` channels instead of a group of neighbours; positions
    zero. For gridsize 1 this equals ``"trained"`` (a PyTorch bundle's input
    scale is 1); for gridsize 2 each output channel saw the same pattern, so
    the C outputs are placed at that pattern's own position and averaged by
    the stitcher (the CLI's offsets are the pattern's, repeated per channel).
    Only PyTorch bundles (parameters ``backend == "pytorch"``) take it.

Compare (:mod:`ptyanalysis.pipeline.compare`), the diagnosis input loaders
(:mod:`ptyanalysis.diagnosis.inputs`), the synthetic training and the demo all
build model inputs with these functions: a model's gridsize by
:func:`feed_gridsize`, what the whole split's inputs depend on by
:func:`plan_feed` (the groups and the normalisation statistic), and the
inputs of any chunk of outputs by :func:`plan_inputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..conventions import global_positions_from_offsets, ptychopinn_offsets, xy_from_positions
from ..errors import PtyAnalysisError
from ..memmap import BLOCK_BYTES, release_pages, row_blocks


def pattern_totals(diffraction, *, source=None) -> np.ndarray:
    """Each pattern's total intensity ``sum(diffraction**2)`` (float64, in row blocks).

    NaN / Inf values are left out of the sums (they count as 0), with a
    :class:`ptyanalysis.io.DatasetNotice` naming ``source`` (the file), the key,
    the count and the first pattern.
    """
    d = diffraction if hasattr(diffraction, "shape") else np.asarray(diffraction)
    if len(d.shape) < 2:
        raise PtyAnalysisError(f"diffraction must be (n, N, N), got shape {d.shape}")
    d3 = d if len(d.shape) == 3 else np.reshape(np.asarray(d), (-1,) + tuple(d.shape[-2:]))
    n = d3.shape[0]
    totals = np.empty(n, np.float64)
    bad, first = 0, -1
    for s0, block in row_blocks(d3):
        block = block.astype(np.float64)
        sums = np.sum(block ** 2, axis=(-2, -1))
        if not np.isfinite(sums).all():  # only then look for the NaN/Inf values
            fin = np.isfinite(block)
            if first < 0:
                first = s0 + int(np.argmax(~fin.reshape(len(block), -1).all(axis=1)))
            bad += int(fin.size - np.count_nonzero(fin))
            sums = np.sum(np.where(fin, block, 0.0) ** 2, axis=(-2, -1))
        totals[s0:s0 + len(block)] = sums
    mean = float(np.mean(totals)) if n else float("nan")  # for the notice
    if bad:
        import warnings

        from ..io import DatasetNotice

        size = int(np.prod(d3.shape))
        warnings.warn(
            f"{source if source is not None else '<array>'}: key 'diffraction' contains {bad} NaN/Inf "
            f"value(s) among {size} (first in pattern {first}): the normalisation uses the mean total "
            f"intensity of the {size - bad} finite values ({mean:.6g} per pattern); the NaN/Inf values "
            "stay in the model input", DatasetNotice, stacklevel=3)
    return totals


def mean_total_intensity(diffraction, *, source=None, members=None) -> float:
    """Mean total intensity per pattern, ``sum(diffraction**2)`` averaged (float64): the normalisation statistic.

    This is the dataset statistic :func:`scale_diffraction` normalises by; compute it
    once on a whole split and pass it on when the split is processed in chunks, so
    every chunk gets the same normalisation.

    Parameters
    ----------
    diffraction : array_like, shape (n, N, N)
    source : str or Path, optional
        The file, for the notice about NaN / Inf values (:func:`pattern_totals`).
    members : array_like of int, optional
        Group members (b, C): the mean is then over the grouped stack, each
        pattern counted as often as it appears in a group, as PtychoPINN's
        loader normalises grouped data (``ptycho.raw_data.normalize_data`` on the
        (b, N, N, C) stack; docs/formats.md#normalisation-and-dose). Default: over the
        patterns, each once.
    """
    totals = pattern_totals(diffraction, source=source)
    if members is not None:
        totals = totals[np.asarray(members).reshape(-1)]
    return float(np.mean(totals)) if totals.size else float("nan")


#: The ways a split is fed (module docstring).
FEEDS = ("trained", "study", "torch_cli")


def _normalisation(d: np.ndarray, mean_total: float | None) -> float:
    """``sqrt((N/2)^2 / mean_total)``: the factor of the loader's normalisation."""
    N = d.shape[-1]
    if mean_total is None:
        mean_total = mean_total_intensity(d)
    mean_total = float(mean_total)
    if not np.isfinite(mean_total) or mean_total <= 0:
        raise PtyAnalysisError(f"diffraction has no positive finite intensity (mean total {mean_total!r} per "
                               "pattern over its finite values): cannot normalise it; the patterns are empty")
    return math.sqrt((N / 2) ** 2 / mean_total)


def normalise_diffraction(diffraction, *, mean_total: float | None = None) -> np.ndarray:
    """The study's loader normalisation: amplitudes rescaled so the mean total intensity per pattern is ``(N/2)^2``.

    This (not multiplied by ``intensity_scale``) is what the study's comparison
    script fed the Baseline (the ``"study"`` feed).

    Parameters
    ----------
    diffraction : array_like, shape (..., N, N)
        Normalized amplitudes (a dataset's ``diffraction``).
    mean_total : float, optional
        The split's mean total intensity per pattern (:func:`mean_total_intensity`);
        default computed from ``diffraction`` itself (right only for a whole split).

    Returns
    -------
    ndarray, float32, same shape as ``diffraction``
    """
    d = np.asarray(diffraction, dtype=np.float32)
    return (d * np.float32(_normalisation(d, mean_total))).astype(np.float32)


def scale_diffraction(diffraction, intensity_scale: float, *, mean_total: float | None = None) -> np.ndarray:
    """The network input the study's loader builds from a dataset's ``diffraction``.

    The loader rescales the amplitudes so the mean total intensity per pattern
    is ``(N/2)^2`` (:func:`normalise_diffraction`), then the model's input is
    that multiplied by ``intensity_scale`` (``sqrt(nphotons) /
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
    return (d * _input_factor(d, mean_total, intensity_scale)).astype(np.float32, copy=False)


def _input_factor(d, mean_total: float | None, intensity_scale: float) -> np.float32:
    """The one float32 factor :func:`scale_diffraction` multiplies the amplitudes by."""
    return np.float32(_normalisation(d, mean_total) * intensity_scale)


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
        Normalisation statistic of the whole split's grouped stack
        (:func:`mean_total_intensity` with ``members`` = all its groups, as
        PtychoPINN's loader normalises grouped data); default: over ``members``
        (right only when they are all the groups).

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
        mean_total = mean_total_intensity(data.diffraction, source=data.path, members=members)
    x = _grouped_stack(data.diffraction, members, _input_factor(data.diffraction, mean_total, intensity_scale))
    glob, local = ptychopinn_offsets(data.positions[members])
    centres = global_positions_from_offsets(glob)
    return {"input": x, "input_positions": local}, centres, members


def _grouped_stack(diffraction, members, scale) -> np.ndarray:
    """``diffraction[members] * scale`` with the members last, ``(b, N, N, C)`` float32, built block by block.

    One pass over the output (gather, scale and move the member axis in one multiply per block): the
    same values as :func:`scale_diffraction` of the gathered stack, without its three full-size
    temporaries; a memory-mapped stack's pages are given back after each block (:mod:`ptyanalysis.memmap`).
    """
    members = np.asarray(members)
    b, C = members.shape
    N = diffraction.shape[-1]
    out = np.empty((b, N, N, C), np.float32)
    step = max(1, BLOCK_BYTES // (C * N * N * 4))
    for s in range(0, b, step):
        block = np.asarray(diffraction[members[s:s + step]], dtype=np.float32)
        np.multiply(block.transpose(0, 2, 3, 1), scale, out=out[s:s + step])
        release_pages(diffraction)
    return out


def _intensity_scale(params: dict | None, what: str) -> float:
    if not params or params.get("intensity_scale") is None:
        raise PtyAnalysisError(
            f"the model's parameters have no 'intensity_scale': cannot build {what}. Put a params.json "
            "(or <model>.json) with intensity_scale next to the model; a PtychoPINN bundle holds it in "
            "its params.dill")
    isc = float(params["intensity_scale"])
    if not np.isfinite(isc) or isc <= 0:
        raise PtyAnalysisError(f"the model's intensity_scale must be a positive number, got {params['intensity_scale']!r}")
    return isc


def trained_input_scale(params: dict | None, what: str = "the trained feed") -> float:
    """What the model's training multiplied the normalised patterns by: its ``input_scale``, else ``intensity_scale``.

    A TensorFlow PtychoPINN model was trained on normalised patterns times
    ``intensity_scale``; a PtychoPINN PyTorch bundle on the normalised patterns
    with scale 1 (its ``intensity_scale`` is used only inside the loss), which
    its parameters state as ``input_scale = 1.0``
    (:func:`ptyanalysis.inference.torch_bundle.metadata_params`). This is the
    one place that decides it.
    """
    if params and params.get("input_scale") is not None:
        s = float(params["input_scale"])
        if not np.isfinite(s) or s <= 0:
            raise PtyAnalysisError(f"the model's input_scale must be a positive number, got {params['input_scale']!r}")
        return s
    return _intensity_scale(params, what)


def trained_feed_text(params: dict | None) -> str:
    """How the ``"trained"`` feed builds a model's input, in words (for messages and reports).

    E.g. ``"diffraction x intensity_scale 3.125, local offsets"`` (a TensorFlow
    model) or ``"normalised diffraction x input_scale 1 (its intensity_scale
    3.125 is used only in its loss), local offsets"`` (a PtychoPINN PyTorch bundle).
    """
    params = params or {}
    if params.get("input_scale") is not None:
        isc = params.get("intensity_scale")
        extra = f" (its intensity_scale {float(isc):g} is used only in its loss)" if isc is not None else ""
        return f"normalised diffraction x input_scale {float(params['input_scale']):g}{extra}, local offsets"
    return f"diffraction x intensity_scale {float(params['intensity_scale']):g}, local offsets"


def study_model_inputs(data, sidecar: dict | None, mode: str = "trained", *, mean_total: float | None = None) -> dict:
    """Map a study dataset to a gridsize-1 model's (the Baseline's) inputs.

    Parameters
    ----------
    data : PtychoData
        A split.
    sidecar : dict or None
        The model's parameters (``intensity_scale``; needed for ``"trained"``).
    mode : {"trained", "study"}
        ``"trained"`` feeds what the model was trained with: normalised
        diffraction times ``intensity_scale`` and all-zero local offsets.
        ``"study"`` feeds exactly what the study's comparison script fed: the
        normalised diffraction NOT multiplied by ``intensity_scale`` and the
        absolute global scan positions [x, y] as ``input_positions`` (both
        faults of the incident; the positions alone make the output zero).
    mean_total : float, optional
        Normalisation statistic of the whole split when ``data`` is one chunk
        of it (:func:`scale_diffraction`).

    Returns
    -------
    dict
        ``{"input": (n, N, N, 1) float32, "input_positions": (n, 1, 2, 1) float32}``.
    """
    if mean_total is None:
        mean_total = mean_total_intensity(data.diffraction, source=data.path)
    if mode == "trained":
        x = scale_diffraction(data.diffraction, trained_input_scale(sidecar), mean_total=mean_total)
        pos = np.zeros((data.n, 1, 2, 1), np.float32)
    elif mode == "study":
        x = normalise_diffraction(data.diffraction, mean_total=mean_total)
        xc, yc = xy_from_positions(data.positions)
        pos = np.stack([xc, yc], axis=1)[:, None, :, None].astype(np.float32)
    else:
        raise PtyAnalysisError(f"mode must be one of {', '.join(map(repr, FEEDS))}, got {mode!r}")
    return {"input": x[..., None], "input_positions": pos}


def feed_gridsize(params: dict | None, input_shapes=None) -> int:
    """The gridsize a model is fed with: its parameters' ``gridsize``, else its input's channel count.

    Parameters
    ----------
    params : dict or None
        Model parameters (sidecar, or a PtychoPINN bundle's params).
    input_shapes : list of tuple, optional
        The model's declared input shapes (first: ``(None, N, N, C)``).

    Returns
    -------
    int

    Raises
    ------
    PtyAnalysisError
        The parameters' gridsize disagrees with the input's channel count, or
        the channel count is not a square.
    """
    C = None
    if input_shapes and input_shapes[0] is not None and len(input_shapes[0]) == 4 and input_shapes[0][-1]:
        C = int(input_shapes[0][-1])
    g = (params or {}).get("gridsize")
    if g is not None:
        g = int(g)
        if C is not None and g * g != C:
            raise PtyAnalysisError(f"the model's parameters say gridsize {g} but its input has {C} channels "
                                   f"(gridsize^2 expected)")
        return g
    if C is None:
        return 1
    g = math.isqrt(C)
    if g * g != C:
        raise PtyAnalysisError(f"the model's input has {C} channels, not gridsize^2 for any gridsize")
    return g


def torch_cli_inputs(data, params: dict | None, *, gridsize: int = 1, members=None,
                     mean_total: float | None = None):
    """A split fed as PtychoPINN's PyTorch inference CLI feeds it (the ``"torch_cli"`` feed).

    Parameters
    ----------
    data : PtychoData
    params : dict or None
        The bundle's parameters; ``backend`` must be ``"pytorch"``.
    gridsize : int
        Each pattern is copied into ``gridsize**2`` channels.
    members : array_like, optional
        Pattern indices to feed (default all), e.g. one chunk.
    mean_total : float, optional
        Normalisation statistic of the patterns the CLI would feed together
        (default: of ``data``, the whole split).

    Returns
    -------
    inputs : dict
        ``input`` (n, N, N, C) float32 and ``input_positions`` (n, 1, 2, C) zeros.
    centres : ndarray, shape (n, 2)
        Each pattern's own (row, col) position.
    members : ndarray, shape (n, C)
        The pattern index, once per channel.
    """
    if (params or {}).get("backend") != "pytorch":
        raise PtyAnalysisError(
            "the 'torch_cli' feed is what PtychoPINN's PyTorch inference CLI feeds a PyTorch bundle; this model's "
            f"parameters say backend {(params or {}).get('backend')!r}: use the 'trained' or 'study' feed")
    if mean_total is None:
        mean_total = mean_total_intensity(data.diffraction, source=data.path)
    idx = np.arange(data.n) if members is None else np.asarray(members).reshape(len(members), -1)[:, 0]
    part = data if members is None else data.subset(idx)
    C = int(gridsize) ** 2
    x = normalise_diffraction(part.diffraction, mean_total=mean_total)
    x = np.repeat(x[..., None], C, axis=-1)
    pos = np.zeros((len(idx), 1, 2, C), np.float32)
    return {"input": x, "input_positions": pos}, np.asarray(part.positions), np.repeat(idx[:, None], C, axis=1)


def split_inputs(data, params: dict | None, mode: str = "trained", *, gridsize: int = 1, K: int | None = None,
                 seed: int = 0, members=None, mean_total: float | None = None):
    """A split's model inputs in one of the feeds (:data:`FEEDS`), for any gridsize.

    Parameters
    ----------
    data : PtychoData
    params : dict or None
        Model parameters (``intensity_scale``; ``K_inference`` for groups).
    mode : {"trained", "study", "torch_cli"}
        See the module docstring.
    gridsize : int
        :func:`feed_gridsize` of the model.
    K : int, optional
        Neighbours a group is drawn from; default the parameters'
        ``K_inference``, else 7 (as the study's comparison).
    seed : int
        Grouping seed.
    members : array_like, optional
        Precomputed groups (:func:`group_inputs`).
    mean_total : float, optional
        Normalisation statistic of the whole split.

    Returns
    -------
    inputs : dict
        ``input`` and ``input_positions``.
    centres : ndarray, shape (b, 2)
        (row, col) centre of each output patch.
    members : ndarray, shape (b, C)
    """
    if mode not in FEEDS:
        raise PtyAnalysisError(f"mode must be one of {', '.join(map(repr, FEEDS))}, got {mode!r}")
    if mode == "torch_cli":
        return torch_cli_inputs(data, params, gridsize=gridsize, members=members, mean_total=mean_total)
    if int(gridsize) == 1:
        if mean_total is None:
            mean_total = mean_total_intensity(data.diffraction, source=data.path)
        idx = np.arange(data.n) if members is None else np.asarray(members).reshape(-1)
        part = data if members is None else data.subset(idx)
        return study_model_inputs(part, params, mode, mean_total=mean_total), part.positions, idx[:, None]
    if K is None:
        K = int((params or {}).get("K_inference", 7))
    return group_inputs(data, int(gridsize), trained_input_scale(params, "grouped inputs"), K=K, seed=seed,
                        members=members, mean_total=mean_total)


@dataclass(frozen=True)
class FeedPlan:
    """What a split's model inputs depend on across the whole split, so that any chunk is built alike.

    Attributes
    ----------
    mode : {"trained", "study", "torch_cli"}
        The feed (:data:`FEEDS`).
    gridsize : int
        :func:`feed_gridsize` of the model.
    members : ndarray, shape (n_outputs, C)
        The pattern(s) of each output: the seeded groups of the whole split for a grouped feed, else
        each pattern (once per channel).
    mean_total : float
        The whole split's normalisation statistic (over the grouped stack for groups, as PtychoPINN's
        loader normalises grouped data).
    """

    mode: str
    gridsize: int
    members: np.ndarray
    mean_total: float

    @property
    def n_outputs(self) -> int:
        return int(len(self.members))


def plan_feed(data, params: dict | None, mode: str = "trained", *, gridsize: int = 1, K: int | None = None,
              seed: int = 0) -> FeedPlan:
    """Plan a split's feed: its groups and normalisation, computed once over the whole split.

    Parameters
    ----------
    data : PtychoData
        The whole split.
    params : dict or None
        Model parameters (``intensity_scale``; ``K_inference`` for groups; ``backend`` for ``"torch_cli"``).
    mode : {"trained", "study", "torch_cli"}
    gridsize : int
        :func:`feed_gridsize` of the model.
    K : int, optional
        Neighbours a group is drawn from; default the parameters' ``K_inference``, else 7.
    seed : int
        Grouping seed.

    Returns
    -------
    FeedPlan

    Raises
    ------
    PtyAnalysisError
        An unknown mode, or a grouped feed for a model whose parameters have no ``intensity_scale``.
    """
    if mode not in FEEDS:
        raise PtyAnalysisError(f"mode must be one of {', '.join(map(repr, FEEDS))}, got {mode!r}")
    g = int(gridsize)
    C = g * g
    if mode == "torch_cli" or g == 1:
        members = np.repeat(np.arange(data.n)[:, None], C, axis=1)
        return FeedPlan(mode, g, members, mean_total_intensity(data.diffraction, source=data.path))
    trained_input_scale(params, "grouped inputs")  # before the grouping's work
    K = int(K or (params or {}).get("K_inference", 7))
    members = group_members(data.positions, g, K, np.random.default_rng(seed))
    return FeedPlan(mode, g, members, mean_total_intensity(data.diffraction, source=data.path, members=members))


def plan_inputs(data, params: dict | None, plan: FeedPlan, index=None):
    """Model inputs of some outputs of a planned feed: exactly the rows of the whole split's inputs.

    Parameters
    ----------
    data : PtychoData
        The whole split the plan was made for.
    params : dict or None
    plan : FeedPlan
    index : slice or array_like, optional
        Which outputs (rows of ``plan.members``); default all.

    Returns
    -------
    inputs : dict
        ``input`` and ``input_positions``.
    centres : ndarray, shape (b, 2)
        (row, col) centre of each output patch.
    """
    members = plan.members if index is None else plan.members[index]
    inputs, centres, _ = split_inputs(data, params, plan.mode, gridsize=plan.gridsize, members=members,
                                      mean_total=plan.mean_total)
    return inputs, centres

"""One comparison job: every arm on one dose / view / split, stitched, aligned and scored.

:func:`compare_job` is what the study's ``compare_models`` did, done so that
nothing is implicit:

1. load the split (restricted to the view's positions) and each arm: the
   PtychoPINN model (``data/phase_e/dose_<D>/<view>/gs2``), the Baseline
   (``.../baseline/gs1``) and the iterative reconstruction
   (``data/phase_f/.../ptychi_reconstruction.npz``);
2. stream each network's inference (:func:`ptyanalysis.inference.run_inference`)
   straight into a :class:`~ptyanalysis.imaging.stitching.Stitcher` on the ground
   truth's frame, in chunks, so memory does not grow with the split;
3. find the region every arm covers, register the iterative arm (or every arm) to the ground truth
   (sub-pixel, :func:`ptyanalysis.imaging.align.register`), and score amplitude and
   phase with **both** metric conventions (:func:`ptyanalysis.imaging.metrics.score`);
4. write the study's per-job files under ``analysis/dose_<D>/<view>/<split>/``
   (``comparison_metrics.csv``, ``reconstructions.npz``,
   ``reconstructions_aligned.npz``, ``<arm>_frc_curves.csv``,
   ``comparison_plot.png``) plus ``comparison.nc``, an ``xarray.Dataset`` with
   dims (convention, arm, metric, component), its parameters and the software
   versions.

How the Baseline is fed is explicit (:mod:`ptyanalysis.inference.feeds`):
``baseline_positions="trained"`` gives it what it was trained with (diffraction
x intensity_scale, all-zero local offsets); ``"study"`` reproduces the study's
comparison script (absolute global positions, diffraction not multiplied by
intensity_scale), i.e. the incident with both its faults.
An arm whose files are missing, or whose output is all zero, is kept in
every table with empty values and a status, never dropped.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import (
    ARMS,
    PTYANALYSIS_KEY_PREFIX,
    RECONSTRUCTION_OFFSET_PREFIXES,
    RECONSTRUCTION_PREFIXES,
    arm_status_text,
    canonical_arm,
    reconstruction_key,
)
from ..conventions import METRIC_CONVENTIONS as CONVENTIONS  # conventions scored in every job
from ..diagnosis.health import COLLAPSE_TOL, FLAT_RATIO, sample_spread
from ..errors import PtyAnalysisError
from ..fileutil import atomic_path, write_netcdf, write_npz, write_text
from ..hub import load_view
from ..imaging import metrics as _metrics
from ..imaging import stitching as _stitching
from ..imaging.align import apply_shift, register, remove_phase_offset
from ..imaging.metrics import metric_unit
from ..imaging.placement import MIN_OVERLAP, PlacementAudit, overlap_pairs, placement_audit
from ..imaging.stitching import ArrayBackend, Stitcher, scan_frame
from ..inference import feeds
from ..inference.backends import executor_for
from ..inference.loading import load_model
from ..inference.runtime import RuntimeConfig, auto_batch_size, batch_values
from ..inference.streaming import run_inference
from ..io import ground_truth_patches
from ..plotting import subplots
from ..provenance import software_versions, utc_now
from .grid.job import JobProfile
from .modelcache import shared_model_cache

#: Metrics written per arm (amplitude and phase).
PAIR_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")

#: Model input (float32 diffraction) prepared at a time by a network arm when
#: :attr:`CompareConfig.chunk` is None (at least :data:`CHUNK_BATCHES` batches): 64 gridsize-2 groups at
#: N = 128. Blocks below glibc's 32 MiB mmap threshold are reused from the heap instead of being mapped
#: (and page-faulted) afresh each time: 256 MiB chunks made the study-size job slower (94 s against 80 s).
CHUNK_BYTES = 16 * 2**20
#: Batches per chunk at least, so the device is fed without a pause per call.
CHUNK_BATCHES = 4


def arm_batching(gridsize: int, N: int, config: CompareConfig, *, on_gpu: bool = False) -> dict:
    """Batch size and chunk length of a network arm: the config's, else sized by memory.

    Parameters
    ----------
    gridsize : int
        Patterns per sample (side): a sample feeds gridsize**2 patterns of N x N.
    N : int
        Pattern side.
    config : CompareConfig
    on_gpu : bool
        The model runs on a GPU: the automatic batch allows
        :data:`~ptyanalysis.inference.runtime.BATCH_VALUES` input values per call, else (a CPU)
        :data:`~ptyanalysis.inference.runtime.CPU_BATCH_VALUES`
        (:func:`~ptyanalysis.inference.runtime.batch_values`).

    Returns
    -------
    dict
        ``batch_size``, ``chunk`` (a multiple of the batch size when automatic)
        and ``source`` (how each was chosen, recorded in the job's arm details).
    """

    values = int(gridsize) ** 2 * int(N) ** 2
    if config.batch_size is not None:
        bs, src = int(config.batch_size), "batch_size requested"
    else:
        budget = batch_values(on_gpu)
        bs = auto_batch_size(values, budget=budget)
        src = (f"batch_size automatic (at most {budget / 2**20:g} Mi input values per call on a "
               f"{'GPU' if on_gpu else 'CPU'})")
    if config.chunk is not None:
        chunk, src = int(config.chunk), src + "; chunk requested"
    else:
        chunk = max(CHUNK_BATCHES * bs, CHUNK_BYTES // (4 * values) // bs * bs)
        src += f"; chunk automatic ({CHUNK_BYTES / 2**20:.0f} MiB of input, at least {CHUNK_BATCHES} batches)"
    return {"batch_size": bs, "chunk": chunk, "source": src}


@dataclass(frozen=True)
class CompareConfig:
    """Options of a comparison job.

    Attributes
    ----------
    arms : tuple of str
        Arms to compare (canonical names).
    baseline_positions : {"trained", "study"}
        What the Baseline's ``input_positions`` gets (module docstring).
    feed : {"trained", "torch_cli"}
        How the network arms are fed (:data:`ptyanalysis.inference.feeds.FEEDS`):
        ``"trained"`` (default) as each model was trained (the Baseline as
        ``baseline_positions`` says); ``"torch_cli"`` as PtychoPINN's PyTorch
        inference CLI feeds a PyTorch bundle (each pattern alone, copied into
        every channel; PyTorch bundles only).
    placement : {"per_member", "channel_mean"}
        Where a network output with one channel per group member (a PtychoPINN
        PyTorch bundle, no in-model merge) is stitched: ``"per_member"``
        (default) each channel at its member's scan position;
        ``"channel_mean"`` the channels' mean at the group's centre, as
        PtychoPINN's ``run_cdi_example_torch`` stitches (blurs by the group's
        extent). A one-channel output is always placed at its centre.
    crop : int or None
        Central crop M of each network patch when stitching; ``None`` = N // 2.
    method : str
        Sub-pixel placement for stitching (bilinear, fourier, nearest).
    register : {"ptychi", "all", "none"}
        Which arms are registered to the ground truth. Default ``"ptychi"``,
        the study's default: the networks' patches are placed at the known scan
        positions, while an iterative reconstruction may drift as a whole.
        Registering a blurred or failed network output can lock onto a
        spurious peak tens of pixels away.
    max_shift : float
        A registration shift longer than this (pixels) is treated as a failed
        registration: recorded, not applied (the arm is scored unshifted).
    upsample_factor : int
        Registration precision (1/upsample px).
    registration_normalization : {"phase", None}
        Cross-power normalisation of the phase cross-correlation: ``"phase"``
        (scikit-image's default, what the study used; the most precise on
        sharp images) or ``None`` (plain cross-correlation, more robust for
        smooth or very noisy reconstructions).
    border : int
        Pixels trimmed from each border before scoring.
    csv_convention : str
        Metric convention written to ``comparison_metrics.csv`` (the study's
        file; default its own convention so numbers compare with theirs).
        ``comparison.nc`` holds both.
    batch_size : int or None
        Inference batch size (halved automatically, and recorded in each arm's
        runtime record, when a batch runs out of memory or the model's outputs
        do not have one row per sample, e.g. a PtychoPINN bundle). ``None``
        (default): per arm, :func:`ptyanalysis.inference.runtime.auto_batch_size`
        of its samples' input size and the device (:func:`arm_batching`; on a GPU
        256 at N = 64 and 64 gridsize-2 groups at the study's N = 128, where 256
        groups per call made a 5.9 GB job; on a CPU 32 and 8).
    chunk : int or None
        Samples (groups or patterns) prepared and streamed at a time, which
        bounds the job's memory. ``None`` (default): as many as fit
        :data:`CHUNK_BYTES` of model input, at least :data:`CHUNK_BATCHES` batches.
    K : int or None
        Neighbours a PtychoPINN group is drawn from (None: the model's
        ``K_inference``, else 7 as the study's comparison did).
    stitch_on : {"auto", "cpu"}
        Where a network arm's outputs are stitched: ``"auto"`` (default) where
        they are, on the GPU array backend when the model ran on a GPU and
        CuPy or PyTorch can use it (:func:`stitch_backend_for`), else the
        compiled CPU kernel; ``"cpu"`` always the CPU kernel. Both give the
        same image to float32 round-off; the arm's details record which ran.
    seed : int
        Grouping seed.
    """

    arms: tuple = ARMS
    baseline_positions: str = "trained"
    feed: str = "trained"
    placement: str = "per_member"
    crop: int | None = None
    method: str = "bilinear"
    register: str = "ptychi"
    max_shift: float = 8.0
    upsample_factor: int = 50
    registration_normalization: str | None = "phase"
    border: int = 2
    csv_convention: str = "ptychopinn"
    batch_size: int | None = None
    chunk: int | None = None
    K: int | None = None
    seed: int = 0
    stitch_on: str = "auto"

    def __post_init__(self):
        if self.stitch_on not in ("auto", "cpu"):
            raise PtyAnalysisError(f"CompareConfig.stitch_on must be 'auto' or 'cpu', got {self.stitch_on!r}")
        if self.placement not in ("per_member", "channel_mean"):
            raise PtyAnalysisError(f"CompareConfig.placement must be 'per_member' or 'channel_mean', got "
                                   f"{self.placement!r}")
        if self.feed not in ("trained", "torch_cli"):
            raise PtyAnalysisError(f"CompareConfig.feed must be 'trained' or 'torch_cli', got {self.feed!r}")


@dataclass
class ArmResult:
    """One arm's stitched reconstruction on the ground truth's frame."""

    arm: str
    status: str                      # "ok", "missing", "zero", "nonfinite", "failed"
    image: np.ndarray | None = None
    coverage: np.ndarray | None = None
    elapsed_s: float = float("nan")
    detail: dict = field(default_factory=dict)


def _frame(data):

    if data.obj is not None:
        return (0, 0), tuple(data.obj.shape)
    return scan_frame(data.positions, data.N)


def feed_mode(config: CompareConfig, gridsize: int) -> str:
    """The feed (:data:`ptyanalysis.inference.feeds.FEEDS`) compare gives a network arm of ``gridsize``.

    ``config.feed == "torch_cli"`` feeds every network as PtychoPINN's PyTorch inference CLI does; else a
    gridsize-1 model gets ``config.baseline_positions`` and a grouped model the feed it was trained with.
    """
    return "torch_cli" if config.feed == "torch_cli" else config.baseline_positions if gridsize == 1 else "trained"


def network_plan(data, sidecar: dict, config: CompareConfig, *, input_shapes=None):
    """The feed plan of a network arm on a whole split (:func:`ptyanalysis.inference.feeds.plan_feed`).

    Parameters
    ----------
    data : PtychoData
        The whole split (view).
    sidecar : dict
        The model's parameters (``gridsize``, ``intensity_scale``, ``K_inference``).
    config : CompareConfig
    input_shapes : list, optional
        The model's input shapes (``LoadedModel.input_shapes``): the gridsize is the parameters', else the
        input's channel count (:func:`ptyanalysis.inference.feeds.feed_gridsize`, the rule the diagnosis
        commands use too).

    Returns
    -------
    FeedPlan
    """

    gridsize = feeds.feed_gridsize(sidecar, input_shapes)
    return feeds.plan_feed(data, sidecar, feed_mode(config, gridsize), gridsize=gridsize, K=config.K,
                           seed=config.seed)


def network_inputs(data, sidecar: dict, config: CompareConfig, *, input_shapes=None, index=None, plan=None):
    """Inputs and output-patch centres of a network arm on a dataset.

    Parameters
    ----------
    data : PtychoData
        The whole split (view).
    sidecar : dict
        The model's parameters (``gridsize``, ``intensity_scale``, ``K_inference``).
    config : CompareConfig
    input_shapes : list, optional
        See :func:`network_plan`.
    index : slice, optional
        Which output samples (groups for gridsize 2, patterns for gridsize 1)
        to build; default all. Chunks built this way are exactly the rows of
        the whole split's inputs: the normalisation and the grouping are those
        of the whole split.
    plan : FeedPlan, optional
        :func:`network_plan` of ``data`` (computed when absent; pass it when calling once per chunk).

    Returns
    -------
    inputs : dict
        For the model's two inputs.
    centres : ndarray, shape (b, 2)
        (row, col) position of each output patch.
    """

    plan = plan if plan is not None else network_plan(data, sidecar, config, input_shapes=input_shapes)
    return feeds.plan_inputs(data, sidecar, plan, index)


def stitch_backend_for(output_device: str | None, stitch_on: str = "auto"):
    """Where network outputs on ``output_device`` are stitched: ``"numpy"`` (the CPU kernel) or a GPU ArrayBackend.

    Parameters
    ----------
    output_device : str or None
        Where the model's outputs are (``"cpu:0"``, ``"gpu:1"``; the runtime record's ``device``).
    stitch_on : {"auto", "cpu"}
        :attr:`CompareConfig.stitch_on`.

    Returns
    -------
    str or ArrayBackend
        The GPU array backend (CuPy or PyTorch, on the outputs' GPU) when the
        outputs are on a GPU and one can use it, else ``"numpy"``.
    """

    if stitch_on == "cpu" or not str(output_device or "").startswith("gpu"):
        return "numpy"
    be = _stitching.gpu_backend()  # looked up when called (a GPU array library is found at run time)
    if be is None:
        return "numpy"
    index = str(output_device).split(":", 1)[1] if ":" in str(output_device) else "0"
    return ArrayBackend(be.name, f"cuda:{index}")


#: Ground-truth patches drawn (seeded) to measure how much the true object varies from sample to sample.
TRUTH_SPREAD_SAMPLES = 512


def _truth_amplitude_spread(data, seed: int = 0) -> float | None:
    """Sample spread of the true object's amplitude patches (:func:`ptyanalysis.diagnosis.health.sample_spread`),
    on a seeded subsample of at most :data:`TRUTH_SPREAD_SAMPLES` patterns; None without ground truth."""

    if data.Y is None and data.obj is None:
        return None
    k = min(data.n, TRUTH_SPREAD_SAMPLES)
    idx = np.sort(np.random.default_rng(seed).choice(data.n, size=k, replace=False))
    try:
        return float(sample_spread(ground_truth_patches(data, idx))[0])
    except PtyAnalysisError:
        return None


def _flat_output(stats: list, truth: float | None) -> dict | None:
    """Whether a network arm's output amplitude varies between samples far less than the truth's
    (:data:`ptyanalysis.diagnosis.health.FLAT_RATIO`); ``{"sample_spread", "truth_spread", "text"}`` or None."""

    rows = [next(iter(s.values())) for s in stats if s]
    spreads = [r.get("sample_spread") for r in rows]
    if not rows or truth is None or not np.isfinite(truth) or truth <= 0 or any(
            v is None or not np.isfinite(v) for v in spreads):
        return None
    v = max(spreads)
    if v >= FLAT_RATIO * truth:
        return None
    return {"sample_spread": v, "truth_spread": truth,
            "text": (f"the output's amplitude varies {truth / max(v, 1e-30):.0f}x less from sample to sample than "
                     f"the true object's (spread {v:.2g} against {truth:.2g} of the maximum): it barely depends on "
                     "the input (an under-trained or collapsed model)")}


def _collapsed_output(stats: list) -> dict | None:
    """Whether a network arm's (first) output is the same for every sample, from its per-chunk statistics.

    Returns ``{"sample_spread", "text"}`` when every chunk's sample spread
    (:attr:`ptyanalysis.inference.OutputStats.sample_spread`) is at most
    :data:`ptyanalysis.diagnosis.health.COLLAPSE_TOL` and the chunks' means
    agree to it, else None. Such an arm is still stitched and scored (its
    status stays ``ok``); the reports flag it (the output does not depend on
    the input, e.g. an under-trained model).
    """

    rows = [next(iter(s.values())) for s in stats if s]
    spreads = [r.get("sample_spread") for r in rows]
    if not rows or any(v is None or not np.isfinite(v) for v in spreads):
        return None
    means = [float(r["mean"]) for r in rows]
    top = max(abs(m) for m in means) or 1.0
    if max(spreads) > COLLAPSE_TOL or (max(means) - min(means)) > COLLAPSE_TOL * top:
        return None
    n = sum(int(r["shape"][0]) for r in rows)
    return {"sample_spread": max(spreads),
            "text": (f"the output's magnitude is the same for every one of its {n:,} samples (sample spread "
                     f"{max(spreads):.2g} of its maximum): it does not depend on the input (an under-trained or "
                     "collapsed model)")}


class _PlacementSample:
    """The few placed patches a network arm's placement audit compares (:mod:`ptyanalysis.imaging.placement`).

    The neighbour pairs are chosen before the patches arrive, from the places
    they are meant for (each output's centre, the mean of its group's
    positions, or each member's position for one patch per channel); while the
    outputs stream into the stitcher, the central ``crop x crop`` of the
    patches of those pairs (at most ``2 x`` :data:`~ptyanalysis.imaging.placement.MAX_PAIRS`) and the
    positions they were actually stitched at are copied to the host. The
    audit then runs on them (:meth:`result`) with the places as stitched:
    the convention used is the identity, ``"as used"``.
    """

    def __init__(self, member_pos, N: int, crop: int, seed: int = 0):
        self.member_pos, self.N, self.M, self.seed = member_pos, int(N), int(crop), int(seed)
        self.slot = None  # place index -> row of the buffers (-1: not compared)

    def _start(self, per_member: bool, channels: int):

        places = (self.member_pos.reshape(-1, 2) if per_member
                  else np.asarray(self.member_pos, np.float64).mean(axis=1))
        self.stride = channels if per_member else 1
        self.pairs = overlap_pairs(places, self.M, seed=self.seed) if len(places) >= 2 else np.zeros((0, 2), int)
        keep = np.unique(self.pairs)
        self.slot = np.full(len(places), -1, np.int64)
        self.slot[keep] = np.arange(len(keep))
        self.pairs = self.slot[self.pairs]  # as rows of the buffers
        self.patches = np.zeros((len(keep), self.M, self.M), np.complex64)
        self.positions = np.full((len(keep), 2), np.nan)

    def take(self, patches, positions, first: int, backend, executor, channel: int = 0, channels: int = 1):
        """Copy the compared ones among a batch of patches placed at ``positions`` (outputs ``first``, ...)."""
        if self.slot is None:
            self._start(channels > 1, channels)
        k = len(positions)
        places = (first + np.arange(k)) * self.stride + (channel if self.stride > 1 else 0)
        rows = self.slot[places]
        t = np.flatnonzero(rows >= 0)
        if not len(t):
            return
        got = None
        if not isinstance(patches, np.ndarray) and hasattr(backend, "native"):
            nat = backend.native(patches)
            if nat is not None:
                got = backend.to_numpy(nat[backend.asarray(t)])
        if got is None:
            got = np.asarray(patches if isinstance(patches, np.ndarray) else executor.to_numpy(patches))[t]
        got = np.asarray(got)
        if got.ndim == 4 and got.shape[-1] == 1:
            got = got[..., 0]
        s0 = self.N // 2 - self.M // 2
        self.patches[rows[t]] = got[:, s0:s0 + self.M, s0:s0 + self.M]
        self.positions[rows[t]] = np.asarray(positions, np.float64)[t]

    def result(self) -> dict | None:
        """The audit's record (:meth:`~ptyanalysis.imaging.placement.PlacementAudit.to_dict`); None without outputs."""

        if self.slot is None:
            return None
        got = np.isfinite(self.positions).all(axis=1)
        pairs = self.pairs[got[self.pairs].all(axis=1)] if len(self.pairs) else self.pairs
        if got.sum() < 2 or not len(pairs):
            why = (f"no two patches overlap by at least {MIN_OVERLAP:.0%} of their stitched {self.M} x {self.M} "
                   "centre (a scan too sparse for this crop)")
            return PlacementAudit(status="undetermined", used="as used", best=None, best_class=(), patch_size=self.M,
                                  reason=why).to_dict()
        remap = np.cumsum(got) - 1
        return placement_audit(self.patches[got], self.positions[got], pairs=remap[pairs],
                               seed=self.seed).to_dict()


def run_network_arm(arm: str, model_dir, data, frame, config: CompareConfig, models=None, *,
                    truth_spread=None) -> ArmResult:
    """Stream a network arm's inference into a stitcher on ``frame``.

    Parameters
    ----------
    arm : str
        ``"PtychoPINN"`` or ``"Baseline"``.
    model_dir : path
        The model directory (``model.keras`` + ``params.json``).
    data : PtychoData
    frame : (origin, shape)
        Canvas frame (the ground truth's).
    config : CompareConfig
    models : ModelCache, optional
        Where the model is loaded from or reused
        (:class:`ptyanalysis.pipeline.modelcache.ModelCache`; default: load it afresh).
    truth_spread : callable, optional
        Returns how much the true object's amplitude varies between samples, which a flat output is
        judged against; called only when needed (default: :func:`_truth_amplitude_spread` of ``data``;
        :func:`compare_job` passes one that reads it once for both arms).

    Returns
    -------
    ArmResult
        Status ``"missing"`` when the model directory does not exist,
        ``"nonfinite"`` when any output value is NaN or Inf (checked first: an
        all-NaN output has no nonzero value but is not "zero"; the counts are in
        ``detail["output_stats"]``), ``"zero"`` when every output value is 0,
        else ``"ok"``.
    """

    model_dir = Path(model_dir)
    if not model_dir.exists():
        return ArmResult(arm, "missing", detail={"error": f"{model_dir} does not exist"})
    t0 = time.perf_counter()
    if models is not None:
        loaded, load_info = models.load(model_dir)
    else:
        t_load = time.perf_counter()
        loaded = load_model(model_dir)
        load_info = {"cached": False, "load_s": round(time.perf_counter() - t_load, 3)}
    sidecar = loaded.sidecar or {}
    if "intensity_scale" not in sidecar:
        raise PtyAnalysisError(f"{model_dir}: no params.json with 'intensity_scale' next to the model")
    M = config.crop or data.N // 2
    origin, shape = frame
    stitcher = {}  # made at the first chunk, where the outputs are (stitch_backend_for)
    stats, runtimes = [], []
    plan = network_plan(data, sidecar, config, input_shapes=loaded.input_shapes)
    executor = executor_for(loaded)
    batching = arm_batching(plan.gridsize, data.N, config,
                            on_gpu=any(d.startswith("gpu") for d in executor.devices()))
    chunk = batching["chunk"]
    # one patch per output channel: a model without an in-model merge (a PtychoPINN PyTorch bundle) returns
    # each group member's patch, placed at that member's scan position; a one-channel output (the
    # TensorFlow PINN's merged group, a gridsize-1 model) at the output's centre
    member_pos = data.positions[plan.members]
    audit = _PlacementSample(member_pos, data.N, M, config.seed)  # the few patches the placement audit compares
    for s in range(0, plan.n_outputs, chunk):
        inputs, centres = network_inputs(data, sidecar, config, index=slice(s, s + chunk), plan=plan)

        def consume(native, start, centres=centres, s=s):
            first = native[0]
            if "st" not in stitcher:
                be = stitch_backend_for(executor.device_of(first), config.stitch_on)
                stitcher["st"] = Stitcher(shape, origin, data.N, dtype=np.complex64, method=config.method,
                                          crop=M, backend=be)
                stitcher["be"] = be
            st = stitcher["st"]
            patches = first if st.backend != "numpy" else executor.to_numpy(first)
            k = int(first.shape[0])
            channels = int(first.shape[-1])
            o = s + start  # index of the first output of this batch
            if channels > 1 and config.placement == "channel_mean":
                stitcher["places"] = stitcher.get("places", 0) + k
                mean = patches.mean(axis=-1)
                st.add(mean, centres[start:start + k])
                audit.take(mean, centres[start:start + k], o, stitcher["be"], executor)
                stitcher["placement"] = "channel mean at the group centre (as PtychoPINN's run_cdi_example_torch)"
            elif channels > 1 and member_pos is not None and channels == member_pos.shape[1]:
                stitcher["places"] = stitcher.get("places", 0) + k * channels
                for c in range(channels):
                    st.add(patches[..., c], member_pos[o:o + k, c])
                    audit.take(patches[..., c], member_pos[o:o + k, c], o, stitcher["be"], executor, channel=c,
                               channels=channels)
                stitcher["placement"] = "per member (one patch per channel at its scan position)"
            else:
                stitcher["places"] = stitcher.get("places", 0) + k
                st.add(patches[..., 0], centres[start:start + k])
                audit.take(patches[..., 0], centres[start:start + k], o, stitcher["be"], executor)
                stitcher["placement"] = "per output (channel 0 at the output's centre)"

        res = run_inference(loaded, inputs, RuntimeConfig(batch_size=batching["batch_size"]),
                            device_consumers=[consume], progress=False)
        stats.append({k: v.to_dict() for k, v in (res.stats or {}).items()})
        runtimes.append(res.runtime)
    st = stitcher.get("st") or Stitcher(shape, origin, data.N, dtype=np.complex64, method=config.method, crop=M)
    out = st.result()
    total = {k: sum(int(next(iter(s.values())).get(k, 0)) for s in stats) for k in ("nonzero", "size", "nan", "inf")}
    # non-finite first: NaN / Inf are never "nonzero" (stats.count_values), so an all-NaN arm would read "zero"
    status = "nonfinite" if total["nan"] + total["inf"] else "zero" if total["nonzero"] == 0 else "ok"
    collapsed = _collapsed_output(stats) if status == "ok" else None
    if status == "ok" and collapsed is None:
        truth = truth_spread or (lambda: _truth_amplitude_spread(data, config.seed))
        collapsed = _flat_output(stats, truth())
    return ArmResult(arm, status, out.image, out.coverage, time.perf_counter() - t0,
                     {"model": str(model_dir), "output_stats": total, "runtime": runtimes[-1] if runtimes else {},
                      "crop": M, "baseline_positions": config.baseline_positions if arm == "Baseline" else None,
                      "feed": plan.mode,
                      # the places patches were meant for (one per output, or one per member channel), the
                      # count a patch-count check compares n_patches with
                      "n_patches": st.n_added, "n_offsets": stitcher.get("places", plan.n_outputs),
                      "n_outputs": plan.n_outputs, "model_load": load_info,
                      "batching": batching, "stitched_on": out.backend, "placement": stitcher.get("placement"),
                      "collapsed": collapsed,
                      "placement_audit": audit.result(),
                      "model_kind": loaded.kind,
                      "sidecar": {k: sidecar.get(k) for k in ("arm", "gridsize", "N", "intensity_scale", "input_scale",
                                                               "nphotons", "backend", "bundle_version")}})


def load_iterative_arm(path, frame) -> ArmResult:
    """Place an iterative reconstruction (``ptychi_reconstruction.npz``) on ``frame``.

    Parameters
    ----------
    path : path
        The reconstruction: ``reconstructed_object`` (2-D complex), optionally
        ``origin`` (object pixel of its pixel (0, 0); default (0, 0), the study's
        files are in their own frame), ``coverage`` (summed probe intensity),
        ``reconstructed_probe`` and ``algorithm``.
    frame : (origin, shape)
        Canvas frame (the ground truth's).

    Returns
    -------
    ArmResult
        Status ``"missing"`` when the file does not exist, else ``"ok"``; the
        coverage keeps pixels lit to at least 10 % of the probe's peak intensity.

    Raises
    ------
    PtyAnalysisError
        Unreadable file, missing key, or inconsistent shapes.
    """
    path = Path(path)
    if not path.exists():
        return ArmResult("PtyChi", "missing", detail={"error": f"{path} does not exist"})
    t0 = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as z:
            obj = np.asarray(z["reconstructed_object"])
            origin = tuple(np.asarray(z["origin"], np.float64).reshape(-1)) if "origin" in z else (0, 0)
            has_cov = "coverage" in z
            cov = np.asarray(z["coverage"]) if has_cov else np.ones(obj.shape, np.float32)
            algorithm = str(z["algorithm"]) if "algorithm" in z else "unknown"
            probe = np.asarray(z["reconstructed_probe"]) if "reconstructed_probe" in z else None
    except (OSError, ValueError, KeyError) as exc:
        raise PtyAnalysisError(f"{path}: cannot read the iterative reconstruction "
                               f"(expected keys reconstructed_object, origin, coverage): {exc}") from exc
    if obj.ndim != 2:
        raise PtyAnalysisError(f"{path}: key 'reconstructed_object' must be 2-D, got shape {obj.shape}")
    if cov.shape != obj.shape:
        raise PtyAnalysisError(f"{path}: key 'coverage' has shape {cov.shape} but 'reconstructed_object' has "
                               f"{obj.shape}; they must match pixel for pixel")
    if len(origin) != 2 or not all(np.isfinite(v) and v == round(v) for v in origin):
        raise PtyAnalysisError(f"{path}: key 'origin' must be two whole numbers (row, col) in object pixels, "
                               f"got {[float(v) for v in origin]}")
    origin = (int(round(origin[0])), int(round(origin[1])))
    (fr, fc), (H, W) = frame
    img = np.zeros((H, W), np.complex64)
    coverage = np.zeros((H, W), np.float32)
    r0, c0 = origin[0] - fr, origin[1] - fc
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + obj.shape[0], H), min(c0 + obj.shape[1], W)
    if rs < re and cs < ce:
        img[rs:re, cs:ce] = obj[rs - r0:re - r0, cs - c0:ce - c0]
        coverage[rs:re, cs:ce] = cov[rs - r0:re - r0, cs - c0:ce - c0]
    # a pixel is covered (reconstructable) where the summed illumination reaches 10 % of the
    # probe's peak intensity, i.e. at least one position lit it well
    # (a file without 'coverage', e.g. the study's own, counts as covered wherever it has pixels: the
    # probe-intensity threshold only makes sense for a summed-illumination map)
    if has_cov:
        peak = float(np.max(np.abs(probe)) ** 2) if probe is not None else float(coverage.max())
        coverage = np.where(coverage > 0.1 * max(peak, 1e-30), coverage, 0)
    return ArmResult("PtyChi", "ok", img, coverage, time.perf_counter() - t0,
                     {"reconstruction": str(path), "algorithm": algorithm})


def covered_box(mask, min_side: int = 8):
    """The largest axis-aligned rectangle of covered pixels (every pixel inside is covered).

    Uses the classic row-by-row histogram / monotonic-stack search (O(H W)).
    Holes of a single pixel are closed first (binary closing, 3 x 3), so one
    unlucky pixel does not split the region.

    Parameters
    ----------
    mask : array_like of bool, shape (H, W)
        Covered pixels.
    min_side : int
        Smallest acceptable side of the rectangle.

    Returns
    -------
    tuple of slice or None
        ``(slice_rows, slice_cols)``, or ``None`` when no rectangle of at
        least ``min_side`` pixels on each side exists.
    """
    from scipy.ndimage import binary_closing

    m = np.asarray(mask, bool)
    if not m.any():
        return None
    m = m | (binary_closing(m, np.ones((3, 3), bool)) & ~_border(m.shape))
    H, W = m.shape
    heights = np.zeros(W + 1, np.int64)
    best, best_box = 0, None
    for r in range(H):
        heights[:W] = np.where(m[r], heights[:W] + 1, 0)
        stack = []
        for c in range(W + 1):
            start = c
            while stack and heights[stack[-1][1]] >= heights[c] if stack else False:
                start, top = stack.pop()
                h = heights[top]
                w = c - start
                if h >= min_side and w >= min_side and h * w > best:
                    best, best_box = h * w, (slice(int(r - h + 1), int(r + 1)), slice(int(start), int(c)))
            stack.append((start, c))
    return best_box


def _border(shape):
    b = np.zeros(shape, bool)
    b[0, :] = b[-1, :] = b[:, 0] = b[:, -1] = True
    return b


def _metrics_rows(arm, status, scores, reg, elapsed):
    rows = []
    for metric in PAIR_METRICS:
        a = scores["amplitude"].get(metric) if scores else None
        p = scores["phase"].get(metric) if scores else None
        rows.append((arm, metric, a, p, None))
    rows.append((arm, "registration_offset_dy", None, None, reg[0] if reg else None))
    rows.append((arm, "registration_offset_dx", None, None, reg[1] if reg else None))
    rows.append((arm, "computation_time_s", None, None, elapsed))
    return rows


def _fmt(v):
    if v is None:
        return ""
    v = float(v)
    return "" if not np.isfinite(v) else f"{v:.6f}"


def write_metrics_csv(path, rows) -> Path:
    """Write ``comparison_metrics.csv`` in the study's format (``%.6f``, NaN empty), atomically.

    Parameters
    ----------
    path : path
        Destination file.
    rows : iterable of (model, metric, amplitude, phase, value)
        One row each; ``None`` or non-finite values are written as empty cells.

    Returns
    -------
    Path
    """
    lines = ["model,metric,amplitude,phase,value"]
    lines += [f"{m},{k},{_fmt(a)},{_fmt(p)},{_fmt(v)}" for m, k, a, p, v in rows]
    return write_text(path, "\n".join(lines) + "\n")


def write_frc_csv(path, arm, curves) -> Path:
    """Write ``<arm>_frc_curves.csv`` (``model, frequency_bin, amplitude_frc, phase_frc``), atomically.

    Parameters
    ----------
    path : path
        Destination file.
    arm : str
        Model name written in every row.
    curves : dict
        ``{"amplitude": curve, "phase": curve}``; rows up to the shorter curve.

    Returns
    -------
    Path
    """
    a = np.asarray(curves["amplitude"], float)
    p = np.asarray(curves["phase"], float)
    n = min(len(a), len(p))
    lines = ["model,frequency_bin,amplitude_frc,phase_frc"]
    lines += [f"{arm},{i},{_fmt(a[i])},{_fmt(p[i])}" for i in range(n)]
    return write_text(path, "\n".join(lines) + "\n")


def plot_comparison(images: dict, mask=None, title: str = ""):
    """The study's comparison plot: rows phase and amplitude, columns the arms and ground truth.

    Colour limits are shared per row: the 10-90 percentile of the ground truth
    (where covered), so every arm is judged on the same scale.

    Parameters
    ----------
    images : dict
        ``{arm: complex image or None}`` plus ``"GroundTruth"``; ``None`` is
        drawn as "missing".
    mask : array_like of bool, optional
        Pixels shown (others blank); default all.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """

    names = [k for k in images if k != "GroundTruth"] + ["GroundTruth"]
    fig, axes = subplots(2, len(names), figsize=(3.2 * len(names), 6.2), squeeze=False)
    gt = images["GroundTruth"]
    sel = mask if mask is not None else np.ones(gt.shape, bool)
    for row, (label, fn) in enumerate((("phase", np.angle), ("amplitude", np.abs))):
        lo, hi = np.percentile(fn(gt)[sel], [10, 90]) if sel.any() else (0, 1)
        for col, name in enumerate(names):
            ax = axes[row, col]
            img = images[name]
            if img is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            else:
                shown = np.where(sel, fn(img), np.nan)
                im = ax.imshow(shown, vmin=lo, vmax=hi, cmap="gray" if label == "amplitude" else "viridis")
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_title(f"{name} {label}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare_job(hub, dose, view: str, split: str, config: CompareConfig = CompareConfig(), out_dir=None,
                write: bool = True, models=None):
    """Run one comparison job and (by default) write its files.

    Parameters
    ----------
    hub : path
        Study hub.
    dose : float
        Photons per pattern.
    view, split : str
    config : CompareConfig
    out_dir : path, optional
        Default ``analysis/dose_<D>/<view>/<split>/``.
    write : bool
        Write the per-job files.
    models : ModelCache, optional
        Loaded models to reuse (default: the process's
        :func:`~ptyanalysis.pipeline.modelcache.shared_model_cache`, so the
        cells a grid worker runs in one kernel load each model once; pass
        ``ModelCache(max_models=0)`` to load afresh). Each arm's
        ``model_load`` detail says whether its model was reused.

    Returns
    -------
    xarray.Dataset
        ``metrics`` (convention, arm, metric, component), ``registration``
        (arm, axis), ``elapsed_s`` (arm), ``status`` (arm); attrs: job,
        parameters, software versions, per-arm details (JSON).
    """


    hub = Path(hub)
    if models is None:

        models = shared_model_cache()
    arms = tuple(canonical_arm(a) for a in config.arms)
    if not arms or any(a not in ARMS for a in arms) or len(set(arms)) != len(arms):
        raise PtyAnalysisError(f"CompareConfig.arms must name distinct arms among {', '.join(ARMS)}, "
                               f"got {list(config.arms)}")
    data = load_view(hub, dose, view, split)
    if data.obj is None:
        raise PtyAnalysisError(f"{_hub.dataset_path(hub, dose, split)}: key 'objectGuess' (ground truth) "
                               "is needed to score the arms")
    frame = _frame(data)
    results = {}
    # the true object's spread, which flat network outputs are judged against: read once, if an arm needs it
    truth_spread = functools.cache(lambda: _truth_amplitude_spread(data, config.seed))
    for arm in arms:
        if arm == "PtyChi":
            results[arm] = load_iterative_arm(_hub.ptychi_path(hub, dose, view, split), frame)
        else:
            results[arm] = run_network_arm(arm, _hub.model_dir(hub, dose, arm, view), data, frame, config,
                                           models=models, truth_spread=truth_spread)
    gt_full = np.asarray(data.obj, np.complex64)
    usable = [r for r in results.values() if r.status == "ok"]
    mask = np.ones(gt_full.shape, bool)
    for r in usable:
        mask &= r.coverage > 0
    if not usable:  # nothing to align to: evaluate on the scanned area

        (o0, o1), (h, w) = scan_frame(data.positions, data.N, crop=config.crop or data.N // 2)
        mask[:] = False
        mask[max(o0, 0):o0 + h, max(o1, 0):o1 + w] = True
    min_side = 16 + 2 * config.border  # room for the SSIM / MS-SSIM windows after the border trim
    box = covered_box(mask, min_side=min_side)
    if box is None:
        raise PtyAnalysisError(
            f"dose {dose:g} {view} {split}: the arms' covered regions share no rectangle of "
            f"{min_side} x {min_side} pixels; the scan is too sparse for image metrics "
            "(use a larger crop, or a denser view)")
    gt = gt_full[box]
    scores = {c: {} for c in CONVENTIONS}
    regs, aligned = {}, {"GroundTruth": gt}
    for arm in arms:
        r = results[arm]
        if r.status != "ok":
            aligned[arm] = None
            regs[arm] = None
            continue
        img = r.image[box]
        if config.register == "all" or (config.register == "ptychi" and arm == "PtyChi"):
            reg = register(gt, img, upsample_factor=config.upsample_factor, on="amplitude",
                           normalization=config.registration_normalization)
            regs[arm] = (float(reg.shift[0]), float(reg.shift[1]))
            if float(np.hypot(*reg.shift)) <= config.max_shift:
                img = apply_shift(img, reg.shift)
            else:
                results[arm].detail["registration_rejected"] = (
                    f"shift {regs[arm]} px is longer than max_shift {config.max_shift} px; not applied")
        else:
            regs[arm] = (0.0, 0.0)
        aligned[arm] = remove_phase_offset(img, gt)  # for display and the aligned NPZ
        for conv in CONVENTIONS:
            scores[conv][arm] = _metrics.score(img, gt, convention=conv, border=config.border)
            if scores[conv][arm].get("ms_ssim_clamped"):  # the value is the convention's floor: recorded
                results[arm].detail["ms_ssim_clamped"] = {
                    comp: {"convention": conv, "levels": len(v), "ssim": [round(x, 4) for x in v]}
                    for comp, v in scores[conv][arm]["ms_ssim_clamped"].items()}
    job = {"dose": float(dose), "view": view, "split": split}
    ds = _to_dataset(job, arms, results, scores, regs, config, box)
    if write:
        out = Path(out_dir) if out_dir is not None else _hub.analysis_dir(hub, dose, view, split)
        _write_job(out, job, arms, results, scores, regs, aligned, gt_full, mask, box, config, ds, origin=frame[0])
    return ds


def _to_dataset(job, arms, results, scores, regs, config, box):
    import xarray as xr

    comps = ("amplitude", "phase")
    vals = np.full((len(CONVENTIONS), len(arms), len(PAIR_METRICS), 2), np.nan)
    for i, conv in enumerate(CONVENTIONS):
        for j, arm in enumerate(arms):
            s = scores[conv].get(arm)
            if s is None:
                continue
            for k, m in enumerate(PAIR_METRICS):
                for c, comp in enumerate(comps):
                    v = s[comp].get(m)
                    vals[i, j, k, c] = np.nan if v is None else float(v)
    reg = np.array([regs.get(a) or (np.nan, np.nan) for a in arms], float)
    units = np.array([[[metric_unit(m, c, conv) for c in comps] for m in PAIR_METRICS] for conv in CONVENTIONS])
    ds = xr.Dataset(
        {
            "metrics": (("convention", "arm", "metric", "component"), vals),
            "registration_offset": (("arm", "axis"), reg),
            "elapsed_s": (("arm",), np.array([results[a].elapsed_s for a in arms], float)),
            "status": (("arm",), np.array([results[a].status for a in arms], dtype=str)),
        },
        coords={"convention": list(CONVENTIONS), "arm": list(arms), "metric": list(PAIR_METRICS),
                "component": list(comps), "axis": ["dy", "dx"],
                "units": (("convention", "metric", "component"), units),
                "dose": job["dose"], "view": job["view"], "split": job["split"]},
        attrs={
            "title": f"ptyanalysis comparison dose {job['dose']:g} {job['view']} {job['split']}",
            "parameters": json.dumps(asdict(config)),
            "evaluation_box": json.dumps([[box[0].start, box[0].stop], [box[1].start, box[1].stop]]),
            "arm_details": json.dumps({a: {"status": results[a].status, **results[a].detail} for a in arms},
                                      default=str),
            "frc_units": json.dumps({conv: metric_unit("frc50", "amplitude", conv) for conv in CONVENTIONS}),
            "software_versions": json.dumps(software_versions()),
            "created": utc_now(),
        },
    )
    ds["metrics"].attrs["units"] = "per value: the 'units' coordinate (convention, metric, component)"
    ds["registration_offset"].attrs["units"] = metric_unit("registration_offset_dy")
    ds["elapsed_s"].attrs["units"] = "s"
    return ds


def reconstruction_arrays(images: dict, *, coverage=None, arm_coverage=None, offsets=None, origin=None,
                          counts=None) -> dict:
    """The arrays of a job's ``reconstructions.npz`` / ``reconstructions_aligned.npz``.

    The study's layout (``compare_models``): ``<prefix>_{amplitude,phase,complex}`` per image
    (:data:`~ptyanalysis.conventions.RECONSTRUCTION_PREFIXES`) and ``<prefix>_offset_{dy,dx}``
    (0-d float, ``None`` as a 0-d object array), so the study's readers read it; ptyanalysis's
    extras under ``ptyanalysis__`` names, which cannot collide with the study's.

    Parameters
    ----------
    images : dict
        ``{arm | "GroundTruth": complex 2-D image}`` (``None`` values are left out).
    coverage : ndarray, optional
        The evaluation mask (``ptyanalysis__coverage``).
    arm_coverage : dict, optional
        ``{arm: coverage map}`` (``ptyanalysis__coverage_<prefix>``).
    offsets : dict, optional
        ``{arm: (dy, dx) or None}``: registration offsets.
    origin : (int, int), optional
        Object pixel of pixel (0, 0) of every image (``ptyanalysis__origin``).
    counts : dict, optional
        ``{arm: {"n_patches": int, "n_offsets": int}}``: patches stitched and the places they were
        meant for (``ptyanalysis__n_patches_<prefix>``, ``ptyanalysis__n_offsets_<prefix>``).

    Returns
    -------
    dict
        Name -> array, for :func:`ptyanalysis.fileutil.write_npz`.
    """
    P = PTYANALYSIS_KEY_PREFIX
    out: dict = {}
    for name, img in images.items():
        if img is None:
            continue
        z = np.asarray(img, np.complex64)
        out[reconstruction_key(name, "amplitude")] = np.abs(z)
        out[reconstruction_key(name, "phase")] = np.angle(z)
        out[reconstruction_key(name, "complex")] = z
    for arm, off in (offsets or {}).items():
        prefix = RECONSTRUCTION_OFFSET_PREFIXES[canonical_arm(arm)]
        for i, axis in enumerate(("dy", "dx")):
            out[f"{prefix}_offset_{axis}"] = (np.array(None, dtype=object) if off is None
                                              else np.array(float(off[i]), dtype=np.float64))
    if coverage is not None:
        out[P + "coverage"] = np.asarray(coverage, np.float32)
    for arm, cov in (arm_coverage or {}).items():
        if cov is not None:
            out[f"{P}coverage_{RECONSTRUCTION_PREFIXES[canonical_arm(arm)]}"] = np.asarray(cov, np.float32)
    if origin is not None:
        out[P + "origin"] = np.asarray(origin, np.int64).reshape(2)
    for arm, c in (counts or {}).items():
        for what in ("n_patches", "n_offsets"):
            if c.get(what) is not None:
                out[f"{P}{what}_{RECONSTRUCTION_PREFIXES[canonical_arm(arm)]}"] = np.array(int(c[what]), np.int64)
    return out


def _write_job(out, job, arms, results, scores, regs, aligned, gt_full, mask, box, config, ds, origin=(0, 0)):
    out.mkdir(parents=True, exist_ok=True)
    conv = config.csv_convention
    rows = []
    for arm in arms:
        rows += _metrics_rows(arm, results[arm].status, scores[conv].get(arm), regs.get(arm), results[arm].elapsed_s)
    write_metrics_csv(out / "comparison_metrics.csv", rows)
    for arm in arms:
        s = scores[conv].get(arm)
        if s is not None and s.get("frc_curves"):
            write_frc_csv(out / f"{arm}_frc_curves.csv", arm, s["frc_curves"])
    # the study's names (its readers read our files) plus ptyanalysis__ extras; every arm on the ground truth's frame
    counts = {a: {k: results[a].detail.get(k) for k in ("n_patches", "n_offsets")} for a in arms
              if results[a].detail.get("n_patches") is not None}
    kept = [a for a in arms if results[a].image is not None]
    write_npz(out / "reconstructions.npz", reconstruction_arrays(
        {"GroundTruth": gt_full, **{a: results[a].image for a in kept}}, coverage=mask,
        arm_coverage={a: results[a].coverage for a in kept}, origin=origin, counts=counts))
    write_npz(out / "reconstructions_aligned.npz", reconstruction_arrays(
        aligned, coverage=mask[box], offsets={a: regs.get(a) for a in arms if aligned.get(a) is not None},
        origin=(origin[0] + box[0].start, origin[1] + box[1].start)))
    fig = plot_comparison({**{a: aligned[a] for a in arms}, "GroundTruth": aligned["GroundTruth"]},
                          mask[box], f"dose {job['dose']:g}, {job['view']}, {job['split']}")
    with atomic_path(out / "comparison_plot.png") as tmp:
        fig.savefig(tmp, dpi=90)
    write_netcdf(out / "comparison.nc", ds)


def arm_table(ds, convention: str = "ptychopinn"):
    """SSIM and MS-SSIM of each arm with its status (``ok``, ``zero (all N outputs are 0)``, ``missing (why)``).

    Parameters
    ----------
    ds : xarray.Dataset
        :func:`compare_job`'s result.
    convention : str
        Metric convention shown (named in the column header).

    Returns
    -------
    pandas.DataFrame
        One row per arm.
    """
    import pandas as pd


    details = json.loads(ds.attrs.get("arm_details", "{}"))
    rows = []
    for arm in ds["arm"].values:
        arm = str(arm)
        d = details.get(arm, {})
        row = {"arm": arm, "status": arm_status_text(str(ds["status"].sel(arm=arm).values), d)}
        for metric in ("ssim", "ms_ssim"):
            for comp in ("amplitude", "phase"):
                v = float(ds["metrics"].sel(convention=convention, arm=arm, metric=metric, component=comp))
                row[f"{metric} {comp} ({convention})"] = round(v, 4) if np.isfinite(v) else "—"
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


# --------------------------------------------------------------------------- what the grid knows of this job


def _grid_models(hub, dose, view: str) -> tuple:
    """The models a job of (dose, view) loads, which a grid worker's kernel keeps across its cells."""
    return _hub.model_dir(hub, dose, "Baseline"), _hub.model_dir(hub, dose, "PtychoPINN", view)


def _grid_split(hub, dose, view: str, split: str) -> tuple:
    """The job's own input file: its split's dataset."""
    return (_hub.dataset_path(hub, dose, split),)


#: The comparison job, as the grid runner sees it (:class:`~ptyanalysis.pipeline.grid.job.JobProfile`, the
#: default of :func:`~ptyanalysis.pipeline.grid.run_grid`): it loads both network arms' models (shared by the
#: cells of a dose and view; about 4 bytes of memory per byte of model file: the weights plus the framework's
#: copies while loading) and its split (at most 1 byte per byte of the file: the view's diffraction rows are
#: read into memory, ``Y`` is read only where used and the inputs are fed in 16 MiB chunks; the study-size
#: job peaked at 1.8 GB with a 1.0 GB split file), and its time grows with the scan positions of its view.
COMPARISON_JOB = JobProfile(name="comparison", shared_inputs=_grid_models, cell_inputs=_grid_split,
                            work=_hub.view_positions, shared_memory_factor=4, cell_memory_factor=1)

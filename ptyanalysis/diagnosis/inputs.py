"""Input sets for the diagnosis engines: validation, the CLI loaders and references built from a sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PtyAnalysisError
from ..inference import feeds
from ..inference.feeds import FEEDS, trained_feed_text
from ..io import DatasetNotice, ground_truth_patches, ground_truth_source, load_dataset


def normalise_input_set(x, names: list, label: str) -> dict | None:
    """Validate one input set and return it as ``{input name: array}`` in the model's input order.

    The one place split comparison and bisection (:mod:`ptyanalysis.diagnosis.bisection`)
    turn what the caller gave into named model inputs.

    Parameters
    ----------
    x : dict, list, tuple, ndarray or None
        ``{input name: array}`` named like the model's inputs, a list in input
        order, or one array for a one-input model. None is returned as None.
    names : list of str
        The model's input names (empty: use the given names, or ``input_<i>``).
    label : str
        Name of the set in error messages (e.g. ``"failing"``).

    Returns
    -------
    dict or None

    Raises
    ------
    PtyAnalysisError
        Names that differ from the model's, a wrong number of arrays, inputs
        with different sample counts, or an empty set.
    """
    if x is None:
        return None
    if isinstance(x, dict):
        d = {str(k): np.asarray(v) for k, v in x.items()}
        if names and set(d) != set(names):
            raise PtyAnalysisError(
                f"{label} set holds inputs [{', '.join(sorted(d))}] but the model's inputs are "
                f"[{', '.join(names)}]: name them exactly like the model's input layers")
        if names:
            d = {k: d[k] for k in names}
    elif isinstance(x, (list, tuple)):
        if names and len(x) != len(names):
            raise PtyAnalysisError(
                f"{label} set has {len(x)} arrays but the model takes {len(names)} inputs [{', '.join(names)}]")
        keys = names or [f"input_{i}" for i in range(len(x))]
        d = {k: np.asarray(v) for k, v in zip(keys, x)}
    else:
        if names and len(names) != 1:
            raise PtyAnalysisError(
                f"{label} set is one array but the model takes {len(names)} inputs [{', '.join(names)}]")
        d = {(names[0] if names else "input_0"): np.asarray(x)}
    if not d:
        raise PtyAnalysisError(f"{label} set holds no input arrays")
    counts = {k: (v.shape[0] if v.ndim else 0) for k, v in d.items()}
    if len(set(counts.values())) > 1:
        raise PtyAnalysisError(
            f"{label} set: inputs have different sample counts "
            + ", ".join(f"{k}={v}" for k, v in counts.items()) + "; every input needs one row per sample")
    if min(counts.values()) == 0:
        raise PtyAnalysisError(f"{label} set holds no samples")
    return d


def check_input_shapes(loaded, sets: dict) -> None:
    """Refuse input sets whose arrays cannot be fed to the model (rank or a fixed dimension differs).

    Checked against the model's declared input shapes (``None`` = any size)
    before anything runs, so a command exits with status 2 and writes nothing.

    Parameters
    ----------
    loaded : LoadedModel
    sets : dict
        ``{label: {input name: array} or None}``.

    Raises
    ------
    PtyAnalysisError
        Naming the set, the input, its shape and the shape the model takes.
    """
    shapes = list(getattr(loaded, "input_shapes", None) or [])
    for label, s in sets.items():
        if not s:
            continue
        for name, want in zip(loaded.input_names, shapes):
            if want is None or name not in s:
                continue
            want = tuple(None if w is None else int(w) for w in want)
            got = tuple(int(g) for g in np.shape(s[name]))
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want[1:], got[1:])):
                shown = "(" + ", ".join("any" if w is None else str(w) for w in want) + ")"
                raise PtyAnalysisError(
                    f"{label} set: input {name!r} has shape {got} but model {loaded.source} takes {shown}: it cannot "
                    "be fed (wrong file, or study datasets given without --study-inputs?); nothing was run")


def reference_from_sidecar(sidecar: dict, like: dict, *, seed: int = 0) -> dict | None:
    """Draw reference inputs from a sidecar's training input statistics.

    Parameters
    ----------
    sidecar : dict or None
        Model parameters; uses ``training_inputs`` / ``input_stats`` /
        ``training_input_stats``: ``{input name: {"mean": m, "std": s}}``
        (``std`` 0 gives a constant, e.g. all-zero offsets).
    like : dict
        An input set giving names, shapes and dtypes (and the sample count).
    seed : int

    Returns
    -------
    dict or None
        ``{name: array}`` drawn as N(mean, std) per value, or None when the
        sidecar has no such statistics for every input.
    """
    if not sidecar:
        return None
    st = None
    for key in ("training_inputs", "input_stats", "training_input_stats", "train_input_stats"):
        if isinstance(sidecar.get(key), dict):
            st = sidecar[key]
            break
    if st is None or not all(k in st and isinstance(st[k], dict) for k in like):
        return None
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in like.items():
        m, s = float(st[k].get("mean", 0.0)), float(st[k].get("std", 0.0))
        arr = m + s * rng.standard_normal(v.shape) if s > 0 else np.full(v.shape, m)
        out[k] = arr.astype(v.dtype if v.dtype.kind == "f" else np.float32)
    return out




def load_input_sets(loaded, paths: dict, *, study_inputs: bool = False, allow_nonfinite: bool = True,
                    mode: str = "study", seed: int = 0) -> tuple:
    """Load input sets for a model from NPZ files.

    Parameters
    ----------
    loaded : LoadedModel
    paths : dict
        ``{label: path}``; a None path is skipped.
    study_inputs : bool
        Treat the files as study datasets (:func:`ptyanalysis.io.load_dataset`)
        mapped by :func:`ptyanalysis.inference.feeds.split_inputs`.
    allow_nonfinite : bool
        Passed to the dataset loader.
    mode : {"study", "trained", "torch_cli"}
        The feed of study datasets: ``"study"`` (default) exactly what the
        study's comparison script fed (for the gridsize-1 Baseline: diffraction
        not multiplied by ``intensity_scale``, absolute positions), ``"trained"``
        what the model was trained with, ``"torch_cli"`` what PtychoPINN's
        PyTorch inference CLI feeds (module docstring of
        :mod:`ptyanalysis.inference.feeds`).
    seed : int
        Grouping seed (gridsize > 1).

    Returns
    -------
    sets : dict
        ``{label: {input name: array}}``.
    datasets : dict
        ``{label: PtychoData}`` for study inputs, else empty.
    """
    names = list(loaded.input_names)
    sets, datasets = {}, {}
    for label, p in paths.items():
        if p is None:
            continue
        path = Path(p)
        if path.is_dir():
            raise PtyAnalysisError(f"{label} file {path} is a folder: give the .npz file inside it (e.g. a hub's "
                                   "data/phase_c/dose_<D>/patched_<split>.npz, with --study-inputs)")
        if not path.is_file():
            raise PtyAnalysisError(f"{label} file not found: {path}; give an existing .npz")
        if study_inputs:

            data = load_dataset(path, allow_nonfinite=allow_nonfinite)
            datasets[label] = data
            sets[label] = feed_split(loaded, data, mode, seed=seed, label=f"{label} file {path}")
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                members = list(z.files)
                if is_study_dataset(members) and not set(names) <= set(members):
                    raise PtyAnalysisError(
                        f"{label} file {path} is a study dataset (a split file: {', '.join(sorted(members)[:6])}"
                        f"{', ...' if len(members) > 6 else ''}), not the model's inputs "
                        f"[{', '.join(names) or '?'}]: add --study-inputs to feed it as the study did "
                        "(--feed trained: as the model was trained)")
                arrays = {k: z[k] for k in members}
        except PtyAnalysisError:
            raise
        except Exception as exc:
            raise PtyAnalysisError(f"{label} file {path} is not a readable .npz ({exc})") from None
        if names:
            if set(arrays) != set(names):
                if len(names) == 1 and len(arrays) == 1:
                    import warnings


                    (given, value), = arrays.items()
                    warnings.warn(f"{label} file {path}: its only array {given!r} is fed as the model's only input "
                                  f"{names[0]!r} (the names differ; save it as {names[0]!r} to silence this)",
                                  DatasetNotice, stacklevel=2)
                    arrays = {names[0]: value}
                else:
                    raise PtyAnalysisError(
                        f"{label} file {path} holds arrays [{', '.join(sorted(arrays))}] but the model's "
                        f"inputs are [{', '.join(names)}]: save one array per model input, named like "
                        "the model's input layers (or pass --study-inputs for study datasets)")
            arrays = {k: arrays[k] for k in names}
        counts = {k: (v.shape[0] if v.ndim else 0) for k, v in arrays.items()}
        if len(set(counts.values())) > 1:
            raise PtyAnalysisError(
                f"{label} file {path}: arrays have different sample counts "
                + ", ".join(f"{k}={v}" for k, v in counts.items())
                + "; every input needs one row per sample")
        sets[label] = arrays
    return sets, datasets


def is_study_dataset(members) -> bool:
    """Whether NPZ members look like a study dataset (a split file) rather than model inputs.

    A split file has its patterns (``diffraction``, or PtychoPINN's legacy ``diff3d``)
    and scan coordinates (``xcoords`` and ``ycoords``): :func:`ptyanalysis.io.load_dataset`
    reads it.
    """
    m = set(members)
    return bool(m & {"diffraction", "diff3d"}) and {"xcoords", "ycoords"} <= m


def feed_split(loaded, data, mode: str = "study", *, seed: int = 0, label: str = "split") -> dict:
    """A study dataset as a model's inputs, in one of the feeds: the plan compare uses too
    (:func:`ptyanalysis.inference.feeds.plan_feed`, :func:`~ptyanalysis.inference.feeds.plan_inputs`).

    Parameters
    ----------
    loaded : LoadedModel
        Its parameters (sidecar, or a PtychoPINN bundle's params) give
        ``intensity_scale`` and ``gridsize`` (else the input's channel count).
    data : PtychoData
    mode : {"study", "trained", "torch_cli"}
    seed : int
        Grouping seed (gridsize > 1).
    label : str
        What ``data`` is, for error messages.

    Returns
    -------
    dict
        ``{input name: array}`` named like the model's inputs.

    Raises
    ------
    PtyAnalysisError
        The feed needs ``intensity_scale`` and the model's parameters have none,
        or the model's inputs are not ``(input, input_positions)``.
    """

    params = loaded.sidecar or {}
    gridsize = feeds.feed_gridsize(params, loaded.input_shapes)
    try:
        inputs, _ = feeds.plan_inputs(data, params, feeds.plan_feed(data, params, mode, gridsize=gridsize, seed=seed))
    except PtyAnalysisError as exc:
        raise PtyAnalysisError(f"{label}: {exc} (model {loaded.source})") from None
    names = list(loaded.input_names)
    if names and set(names) != set(inputs):
        raise PtyAnalysisError(
            f"{label}: a study dataset feeds the inputs [{', '.join(inputs)}] but model {loaded.source} takes "
            f"[{', '.join(names)}]; save the model inputs themselves in the NPZ (without --study-inputs)")
    return {k: inputs[k] for k in names} if names else inputs


def split_ground_truth(datasets: dict, names: dict, *, say=None) -> dict | None:
    """Ground-truth object patches of the study datasets a diagnosis command compares.

    The one rule of :func:`ptyanalysis.io.ground_truth_patches` (a per-pattern
    ``Y``, else PtychoPINN's ``ground_truth_patches``, else patches cut from
    ``objectGuess``), used by ``compare-splits`` and notebook 01.

    Parameters
    ----------
    datasets : dict
        ``{label: PtychoData}`` (:func:`cli_input_sets`).
    names : dict
        ``{label: split name}``: the keys of the result.
    say : callable, optional
        Where the notice goes when a split has no ground truth (default: the log).

    Returns
    -------
    dict or None
        ``{split name: (n, N, N) complex64}``, or None (with a notice naming
        the file and why) unless every split has ground truth.
    """
    import logging


    log = logging.getLogger("ptyanalysis.diagnosis")
    out = {}
    for label, name in names.items():
        data = datasets.get(label)
        if data is None:
            return None
        try:
            out[name] = ground_truth_patches(data)
        except PtyAnalysisError as exc:
            (say or log.warning)(f"no ground truth compared: {exc}")
            return None
        (say or log.info)(f"ground truth of {name}: {data.path}: key {ground_truth_source(data)!r}")
    return out


def check_feed(feed: str, study_inputs: bool) -> None:
    """Refuse a feed that is not one of :data:`~ptyanalysis.inference.feeds.FEEDS`, or one given without study inputs.

    Cheap: the commands call it before loading anything.
    """

    if feed not in FEEDS:
        raise PtyAnalysisError(f"feed must be one of {', '.join(FEEDS)}, got {feed!r}")
    if feed != "study" and not study_inputs:
        raise PtyAnalysisError(f"--feed {feed} applies to study datasets: add --study-inputs (the NPZs are then "
                               "split files), or drop --feed for NPZs of model inputs")


def cli_input_sets(loaded, paths: dict, reference=None, *, study_inputs: bool = False, trained_like: str,
                   feed: str = "study", seed: int = 0, say=None):
    """Load the input sets of a diagnosis command (``compare-splits``, ``bisect``).

    Parameters
    ----------
    loaded : LoadedModel
    paths : dict
        ``{label: NPZ path}`` of the sets to compare (model inputs, or study
        datasets with ``study_inputs``).
    reference : str or Path, optional
        NPZ of model inputs drawn like the training inputs (e.g. a model's
        ``reference_inputs.npz``); always read as model inputs, never as a
        study dataset.
    study_inputs : bool
        The files of ``paths`` are study datasets, fed as ``feed`` says.
    trained_like : str
        Label of ``paths`` whose dataset gives the reference when none is given
        and ``study_inputs`` is set: that dataset fed as the model was trained
        (``"trained"`` feed: normalised diffraction x ``intensity_scale`` from
        the model's parameters, local offsets, zeros for gridsize 1).
    feed : {"study", "trained", "torch_cli"}
        How study datasets are fed (:data:`ptyanalysis.inference.feeds.FEEDS`):
        default exactly as the study's comparison script fed them.
    seed : int
        Grouping seed (gridsize > 1).
    say : callable, optional
        Where the notice about the reference goes (default: the
        ``ptyanalysis.diagnosis`` logger, WARNING when no reference can be built).

    Returns
    -------
    sets : dict
        ``{label: {input name: array}}``.
    datasets : dict
        ``{label: PtychoData}`` for study inputs, else empty.
    reference : dict or None
        The reference input set.
    """
    import logging

    log = logging.getLogger("ptyanalysis.diagnosis")
    check_feed(feed, study_inputs)
    sets, datasets = load_input_sets(loaded, paths, study_inputs=study_inputs, mode=feed, seed=seed)
    if study_inputs and feed != "study":
        (say or log.info)(f"the study datasets are fed with the {feed!r} feed (ptyanalysis.inference.feeds)")
    ref = None
    if reference is not None:
        ref = load_input_sets(loaded, {"reference": reference})[0]["reference"]
    elif study_inputs:
        params = loaded.sidecar or {}
        if params.get("intensity_scale") is None:
            log.warning("no --reference and model %s has no intensity_scale in its parameters: no reference "
                        "built as the model was trained (the diagnosis falls back to what it can find)",
                        loaded.source)
        else:
            ref = feed_split(loaded, datasets[trained_like], "trained", seed=seed,
                             label=f"{trained_like} file {paths[trained_like]}")
            msg = (f"reference: the {trained_like} split fed as model {loaded.source} was trained "
                   f"({trained_feed_text(params)})")
            (say or log.info)(msg)
    return sets, datasets, ref


def default_paired_set(loaded, datasets: dict, paths: dict, label: str, *, study_inputs: bool, reference_given: bool,
                       seed: int = 0, say=None, feed: str = "study") -> dict | None:
    """The paired reference ``bisect`` uses when the user gave none: the rule of the CLI and notebook 02.

    With study inputs fed as the study fed them (``feed="study"``) and no ``--reference`` (the reference
    is then built as the model was trained), the ``label`` split is re-fed as trained
    (:func:`paired_trained_set`); otherwise None (health by output statistics: the other feeds are
    not paired sample by sample with the trained one).
    """
    if not study_inputs or reference_given or feed != "study":
        return None
    return paired_trained_set(loaded, datasets, paths, label, seed=seed, say=say)


def paired_trained_set(loaded, datasets: dict, paths: dict, label: str, *, seed: int = 0, say=None) -> dict | None:
    """The ``label`` split re-fed as the model was trained: a reference PAIRED with that split's study feed.

    Same samples, same order as ``feed_split(loaded, datasets[label], "study")`` (the feeds differ in
    the diffraction's scale and the positions only), so a diagnosis can score each sample's output
    against its own as-trained output (:func:`ptyanalysis.diagnosis.bisection.bisect`'s
    ``paired_reference``).

    Parameters
    ----------
    loaded : LoadedModel
    datasets : dict
        ``{label: PtychoData}`` (:func:`cli_input_sets` with ``study_inputs``).
    paths : dict
        ``{label: NPZ path}``, for the notice.
    label : str
        The split to re-feed (e.g. ``"failing"``).
    seed : int
        Grouping seed (gridsize > 1): the same as the study feed's, so the groups are the same.
    say : callable, optional
        Where the notice goes (default: the ``ptyanalysis.diagnosis`` logger).

    Returns
    -------
    dict or None
        ``{input name: array}``, or None when the model's parameters have no ``intensity_scale``
        (then nothing can be fed as trained; said in the log).
    """
    import logging

    log = logging.getLogger("ptyanalysis.diagnosis")
    params = loaded.sidecar or {}
    if label not in datasets or params.get("intensity_scale") is None:
        log.warning("no paired reference for the %s split: model %s has no intensity_scale in its parameters "
                    "or the split is not a study dataset (health falls back to output statistics)", label,
                    loaded.source)
        return None
    out = feed_split(loaded, datasets[label], "trained", seed=seed, label=f"{label} file {paths[label]}")
    (say or log.info)(f"paired reference: the {label} split's own samples, in the same order, fed as model "
                      f"{loaded.source} was trained ({trained_feed_text(params)}): each sample is scored against "
                      "its own as-trained output")
    return out

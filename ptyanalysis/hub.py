"""On-disk layout of a study hub (the PtychoPINN study's layout, kept exactly).

::

    HUB/
      data/phase_c/dose_<D>/patched_{train,test}.npz          datasets
      data/phase_e/dose_<D>/baseline/gs1/                     Baseline model
      data/phase_e/dose_<D>/{dense,sparse}/gs2/               PtychoPINN models
      data/phase_f/dose_<D>/<view>/<split>/ptychi_reconstruction.npz
      analysis/dose_<D>/<view>/<split>/                       per-job comparisons
      analysis/                                               Phase G artifacts

A view of a split (dense, sparse) is a seeded subsample of the split's
positions; its indices are stored in ``data/phase_c/dose_<D>/views.json``
(ptyanalysis's addition; PtychoPINN hubs without it use all positions).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .conventions import dose_label
from .errors import PtyAnalysisError, did_you_mean


def dataset_path(hub, dose, split: str) -> Path:
    """``HUB/data/phase_c/dose_<D>/patched_<split>.npz``."""
    return Path(hub) / "data" / "phase_c" / dose_label(dose) / f"patched_{split}.npz"


def views_path(hub, dose) -> Path:
    """``HUB/data/phase_c/dose_<D>/views.json``: indices of each view's subsample."""
    return Path(hub) / "data" / "phase_c" / dose_label(dose) / "views.json"


def model_dir(hub, dose, arm: str, view: str | None = None) -> Path:
    """Model directory of an arm: ``baseline/gs1`` or ``<view>/gs2`` under ``data/phase_e/dose_<D>``."""
    base = Path(hub) / "data" / "phase_e" / dose_label(dose)
    if arm == "Baseline":
        return base / "baseline" / "gs1"
    if arm == "PtychoPINN":
        if view is None:
            raise PtyAnalysisError("the PtychoPINN model directory depends on the view: pass view=")
        return base / view / "gs2"
    raise PtyAnalysisError(f"arm {arm!r} has no trained model directory (only 'Baseline' and 'PtychoPINN')")


def ptychi_path(hub, dose, view: str, split: str) -> Path:
    """``HUB/data/phase_f/dose_<D>/<view>/<split>/ptychi_reconstruction.npz``."""
    return Path(hub) / "data" / "phase_f" / dose_label(dose) / view / split / "ptychi_reconstruction.npz"


def analysis_dir(hub, dose, view: str, split: str) -> Path:
    """``HUB/analysis/dose_<D>/<view>/<split>/``: one comparison job's outputs."""
    return Path(hub) / "analysis" / dose_label(dose) / view / split


def analysis_root(hub) -> Path:
    """``HUB/analysis``: where Phase G writes its artifacts."""
    return Path(hub) / "analysis"


def datasets_root(hub) -> Path:
    """``HUB/data/phase_c``: one ``dose_<D>`` folder of split datasets per dose."""
    return Path(hub) / "data" / "phase_c"


def models_root(hub, dose=None) -> Path:
    """``HUB/data/phase_e`` (or its ``dose_<D>`` folder): the trained models."""
    root = Path(hub) / "data" / "phase_e"
    return root if dose is None else root / dose_label(dose)


def iterative_root(hub, dose=None) -> Path:
    """``HUB/data/phase_f`` (or its ``dose_<D>`` folder): the iterative arm's reconstructions."""
    root = Path(hub) / "data" / "phase_f"
    return root if dose is None else root / dose_label(dose)


def training_summary_path(hub) -> Path:
    """``HUB/data/phase_e/training_summary.json``: what ``ptyanalysis train`` did."""
    return models_root(hub) / "training_summary.json"


def logs_dir(hub) -> Path:
    """``HUB/analysis/logs``: the grid's orchestrator logs (and ``kernels/``, its kernels' output)."""
    return analysis_root(hub) / "logs"


def kernel_logs_dir(hub) -> Path:
    """``HUB/analysis/logs/kernels``: what the grid's notebook kernels print."""
    return logs_dir(hub) / "kernels"


def diagnosis_dir(hub, name: str | None = None) -> Path:
    """``HUB/analysis/diagnosis`` (or its ``<name>`` folder): split comparison and bisection results."""
    root = analysis_root(hub) / "diagnosis"
    return root if name is None else root / name


def load_views(hub, dose) -> dict:
    """Read ``views.json`` of a dose: ``{view: {split: indices}}``; ``{}`` when absent."""
    p = views_path(hub, dose)
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text())
        return {v: {s: np.asarray(ix, dtype=np.int64) for s, ix in d.items()} for v, d in raw["views"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PtyAnalysisError(f"{p}: cannot read view indices ({exc}); regenerate with 'ptyanalysis simulate'") from exc


def load_view(hub, dose, view: str, split: str):
    """Load a split's dataset restricted to a view's subsample (all positions when the hub has no views.json).

    ``diffraction`` (and ``Y``) stay memory-mapped onto the NPZ file where they are stored uncompressed and
    the view is a run of consecutive patterns (:func:`ptyanalysis.io.load_dataset` ``mmap=True``,
    :meth:`ptyanalysis.io.PtychoData.subset`); other views are copied rows.

    Parameters
    ----------
    hub : path
        Study hub holding ``data/phase_c/dose_<D>/patched_<split>.npz`` and ``views.json``.
    dose : float
        Photons per pattern.
    view, split : str
        E.g. ``"dense"``, ``"test"``.

    Returns
    -------
    PtychoData

    Raises
    ------
    PtyAnalysisError
        Missing dataset, or a view / split that ``views.json`` does not list.
    """
    from . import io

    # memory-mapped (a study-size split is GBs): only the rows a job feeds are read, chunk by chunk
    data = io.load_dataset(dataset_path(hub, dose, split), mmap=True)
    views = load_views(hub, dose)
    if not views:
        return data
    if view not in views or split not in views[view]:
        raise PtyAnalysisError(
            f"{views_path(hub, dose)}: no view {view!r} for split {split!r}; "
            f"available: {sorted(views)}"
        )
    return data.subset(views[view][split])




def hub_inventory(hub) -> dict:
    """What a hub holds, per dose, read from the files: the one rule for every command and the grid.

    Doses are the ``data/phase_c/dose_<D>`` folders (D a positive whole
    number); a dose's splits are its ``patched_<split>.npz`` files; its views
    are the entries of its ``views.json``, the PtychoPINN model folders
    ``data/phase_e/dose_<D>/<view>/gs2`` and the iterative arm's folders
    ``data/phase_f/dose_<D>/<view>/`` (the Baseline's ``baseline/gs1`` is
    not a view).

    Parameters
    ----------
    hub : str or Path
        Study hub (only its ``data`` folders and ``views.json`` files are read).

    Returns
    -------
    dict
        ``{dose: {"views": [str, ...], "splits": [str, ...]}}`` with int doses,
        in increasing order, and sorted lists (empty when the hub has no such files).

    Raises
    ------
    PtyAnalysisError
        A ``views.json`` that cannot be read (:func:`load_views`).
    """
    hub = Path(hub)
    out = {}
    root = datasets_root(hub)
    for ddir in root.glob("dose_*") if root.is_dir() else ():
        try:
            d = float(ddir.name[5:])
        except ValueError:
            continue
        if not (ddir.is_dir() and np.isfinite(d) and d > 0 and d == int(d)):
            continue
        splits = {p.name[len("patched_"):-len(".npz")] for p in ddir.glob("patched_*.npz")}
        views = set(load_views(hub, int(d))) if (ddir / "views.json").exists() else set()
        views.update(g.parent.name for g in (models_root(hub) / ddir.name).glob("*/gs2"))
        it = iterative_root(hub) / ddir.name
        views.update(p.name for p in (it.iterdir() if it.is_dir() else ()) if p.is_dir())
        out[int(d)] = {"views": sorted(views), "splits": sorted(splits)}
    return dict(sorted(out.items()))


def hub_grid(hub) -> dict:
    """What a hub holds: its doses, views and splits, read from the files.

    The union over the doses of :func:`hub_inventory` (doses: the
    ``data/phase_c/dose_<D>`` folders; splits: the ``patched_<split>.npz``
    files in them; views: the ``views.json`` entries, the ``<view>/gs2`` model
    folders and the iterative arm's ``<view>`` folders).

    Parameters
    ----------
    hub : str or Path
        Study hub (only its ``data`` folders and ``views.json`` files are read).

    Returns
    -------
    dict
        ``{"doses": [int, ...], "views": [str, ...], "splits": [str, ...]}``,
        sorted (empty lists when the hub has no such files).
    """
    inventory = hub_inventory(hub)
    return {"doses": list(inventory),
            "views": sorted({v for held in inventory.values() for v in held["views"]}),
            "splits": sorted({s for held in inventory.values() for s in held["splits"]})}


def view_positions(hub, dose, view: str, split: str) -> int | None:
    """How many scan positions a view of a split holds (its ``views.json`` subsample, else the whole split).

    Read without loading the diffraction: the length of the view's indices,
    or of the dataset's ``xcoords`` when the hub has no ``views.json``.

    Parameters
    ----------
    hub : str or Path
    dose : float
    view, split : str

    Returns
    -------
    int or None
        None when the hub holds neither (a missing or unreadable file, a view
        or split that ``views.json`` does not list).
    """
    try:
        views = load_views(hub, dose)
        if views:
            ix = views.get(view, {}).get(split)
            return None if ix is None else int(len(ix))
        with np.load(dataset_path(hub, dose, split)) as f:
            return int(np.size(f["xcoords"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, PtyAnalysisError):
        return None


def check_hub_folder(hub) -> None:
    """Refuse a hub path that does not exist or is a file (the one message for every command).

    Raises
    ------
    PtyAnalysisError
    """
    hub = Path(hub)
    if hub.is_file():
        raise PtyAnalysisError(f"{hub} is a file, not a study hub: give the hub's folder (the one holding data/ "
                               "and analysis/)")
    if not hub.is_dir():
        raise PtyAnalysisError(f"hub not found: {hub} does not exist")


def check_in_hub(hub, dose=None, view=None, split=None) -> None:
    """Raise a :class:`PtyAnalysisError` listing what the hub has when ``dose``, ``view`` or ``split`` is not in it.

    Parameters
    ----------
    hub : str or Path
    dose : float, optional
    view, split : str, optional
        Only the ones given are checked.
    """
    have = hub_grid(hub)
    bad = []
    if dose is not None and have["doses"] and float(dose) not in [float(d) for d in have["doses"]]:
        bad.append(f"dose {dose:g} (the hub has {', '.join(f'{d:g}' for d in have['doses'])})")
    for what, value in (("view", view), ("split", split)):
        if value is not None and have[what + "s"] and value not in have[what + "s"]:
            bad.append(f"{what} {value!r} (the hub has {', '.join(have[what + 's'])}"
                       + did_you_mean(value, have[what + "s"]) + ")")
    if not any(have.values()):
        expected = (dataset_path(hub, dose, split) if dose is not None and split is not None
                    else Path(hub) / "data" / "phase_c" / "dose_<D>" / "patched_<split>.npz")
        raise PtyAnalysisError(f"{hub}: no study data found (expected {expected}); "
                               "create one with `ptyanalysis simulate` or point at a study hub")
    if bad:
        raise PtyAnalysisError(f"{hub}: not in this hub: {'; '.join(bad)}")

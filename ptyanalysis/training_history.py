"""Training histories, whichever tool wrote them, and whether a model was trained enough.

Readers (one per format; :func:`read_training_history` picks by file name and content):

``lightning_csv``
    PtychoPINN's PyTorch backend with Lightning's ``CSVLogger``:
    ``lightning_logs/version_<N>/metrics.csv``. The header is the sorted union of
    every logged key plus ``epoch`` and ``step``; every ``log_metrics`` call is one
    row and a key not logged by that call is an empty cell, so the rows interleave:
    per-step rows (``<name>_step``), validation rows (``poisson_val_Amp_loss``,
    ``mae_val_Phase_loss``, ...: ``self.log(..., on_epoch=True)`` in
    ``validation_step``) and end-of-epoch training rows (``<name>_epoch``, e.g.
    ``poisson_train_Amp_loss_epoch``), plus ``learning_rate`` and, when enabled,
    ``grad_norm_preclip_*`` and ``raw_count_nll_*``. Per-epoch series are the
    columns without a ``_step`` suffix, indexed by the row's ``epoch``;
    ``*_step`` columns are kept as per-step series (never judged).
``history_json``
    A ``history.json`` of PtychoPINN's study runners. Two forms: the TensorFlow
    rows of ``grid_lines_workflow`` write Keras' ``History.history`` (``loss``,
    ``val_loss`` and one list per output loss) plus ``epoch`` (the epoch indices);
    the PyTorch runner (``grid_lines_torch_runner``) writes
    ``{"train_loss": [...], "val_loss": [...] or null}`` from its loss callback,
    whose ``val_loss`` may hold one more value than ``train_loss`` (Lightning's
    sanity-check validation before the first epoch: dropped, with a note).
``ptyanalysis_params``
    This package's own model sidecar ``params.json`` (:mod:`ptyanalysis.synthetic.training`):
    ``{"training": {"loss": [...], "epochs", "steps", ...}}``.

The verdict (:func:`loss_still_falling`) judges one per-epoch loss series:

* the tail is the last ``max(min_tail, ceil(tail_fraction * n))`` epochs
  (default: the last 20 %, at least 3 epochs);
* a least-squares line through the tail gives the drop over it
  (``-slope * (k - 1)``) and the slope's standard error from the residuals
  (the epoch-to-epoch noise: one run has no run-to-run spread to offer);
* the loss is **still falling** when the slope is negative by more than
  ``noise_factor`` standard errors **and** the drop is at least ``min_drop`` of
  the loss's whole range over training (``max - min``; a range, not the value,
  because a Poisson negative log-likelihood has an arbitrary offset and can be
  negative). With 2 tail points there is no noise estimate and the range test
  decides alone; with fewer than 2 finite epochs there is no verdict.

A model whose training loss is still falling at the end was stopped before it
converged: its numbers say little about what the architecture can do.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PtyAnalysisError

#: Default fraction of the epochs forming the tail that is judged.
TAIL_FRACTION = 0.2
#: Default minimum number of epochs in the tail.
MIN_TAIL = 3
#: Default significance: the tail's slope must exceed this many standard errors.
NOISE_FACTOR = 2.0
#: Default minimum drop over the tail, as a fraction of the loss's range over training.
MIN_DROP = 0.05

#: Series names tried, in order, as "the" training loss of each format.
TRAIN_LOSS_NAMES = ("loss", "train_loss")
#: Series names tried, in order, as the validation loss.
VAL_LOSS_NAMES = ("val_loss",)
#: Lightning CSV columns that are bookkeeping, not metrics.
LIGHTNING_INDEX_COLUMNS = ("epoch", "step")


@dataclass(frozen=True)
class LossSeries:
    """One logged series.

    Attributes
    ----------
    name : str
        As the file names it (e.g. ``poisson_train_Amp_loss_epoch``, ``val_loss``).
    x : ndarray
        Epoch index of each value (step index for ``per == "step"``).
    values : ndarray
        The values (float; NaN where the file holds a NaN).
    per : str
        ``"epoch"`` or ``"step"``.
    role : str
        ``"train"``, ``"val"`` or ``"other"`` (learning rate, gradient norms, ...).
    """

    name: str
    x: np.ndarray
    values: np.ndarray
    per: str = "epoch"
    role: str = "other"

    @property
    def is_loss(self) -> bool:
        """True for a loss (the name contains ``loss`` or ``nll``)."""
        return "loss" in self.name.lower() or "nll" in self.name.lower()


@dataclass(frozen=True)
class TrainingVerdict:
    """Whether one loss series was still falling at the end of training.

    Attributes
    ----------
    series : str
        The series judged.
    still_falling : bool or None
        ``None`` when it cannot be told (fewer than 2 finite epochs).
    n_epochs, tail_epochs : int
        Finite epochs in the series and in the judged tail.
    drop : float
        Fitted drop over the tail (positive = falling).
    drop_fraction : float
        ``drop`` over the range of the whole series.
    slope_se_ratio : float or None
        ``-slope / standard error`` (None with 2 tail points, inf for a noiseless tail).
    rule : str
        The rule and thresholds used, in words.
    message : str
        One sentence for a report.
    """

    series: str
    still_falling: bool | None
    n_epochs: int
    tail_epochs: int
    drop: float
    drop_fraction: float
    slope_se_ratio: float | None
    rule: str
    message: str

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        r = self.slope_se_ratio
        return {"series": self.series, "still_falling": self.still_falling, "n_epochs": self.n_epochs,
                "tail_epochs": self.tail_epochs, "drop": _finite_or_none(self.drop),
                "drop_fraction": _finite_or_none(self.drop_fraction),
                "slope_se_ratio": None if r is None else (r if math.isfinite(r) else str(r)),
                "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class TrainingHistory:
    """A training history read from one file.

    Attributes
    ----------
    path : Path
    format : str
        ``"lightning_csv"``, ``"history_json"`` (``history_form`` says which) or ``"ptyanalysis_params"``.
    series : dict
        ``{name: LossSeries}`` in file order.
    history_form : str
        ``"keras"``, ``"torch_runner"``, ``"lightning"`` or ``"ptyanalysis"``.
    notes : tuple of str
        What was accepted loosely or skipped.
    budget : dict
        The training budget the file records (:data:`BUDGET_KEYS`; only those known): ``epochs``
        (always, from the loss series), ``steps`` (optimiser steps), ``elapsed_s``, ``batch_size``,
        ``n_samples``.
    """

    path: Path
    format: str
    series: dict = field(default_factory=dict)
    history_form: str = ""
    notes: tuple = ()
    budget: dict = field(default_factory=dict)

    def budget_text(self) -> str:
        """The budget in words, e.g. ``"150 optimiser steps (4 epochs, 31 s)"``; ``""`` when nothing is known."""
        return budget_text(self.budget)

    def losses(self, per: str = "epoch") -> dict:
        """``{name: LossSeries}`` of the loss series logged per ``per``."""
        return {k: s for k, s in self.series.items() if s.is_loss and s.per == per}

    def train_loss(self) -> LossSeries | None:
        """The per-epoch training loss (the optimised objective), or None."""
        return _pick(self, "train", TRAIN_LOSS_NAMES)

    def val_loss(self) -> LossSeries | None:
        """The per-epoch validation loss, or None."""
        return _pick(self, "val", VAL_LOSS_NAMES)


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None


def _pick(h: TrainingHistory, role: str, names) -> LossSeries | None:
    for n in names:
        s = h.series.get(n)
        if s is not None and s.per == "epoch" and len(s.values):
            return s
    cands = [s for s in h.series.values() if s.per == "epoch" and s.role == role and s.is_loss and len(s.values)]
    cands.sort(key=lambda s: "loss" not in s.name.lower())  # a "loss" before an auxiliary NLL; stable otherwise
    return cands[0] if cands else None


def _role(name: str) -> str:
    n = name.lower()
    if not ("loss" in n or "nll" in n):
        return "other"
    if n.startswith("val") or "_val" in n or "val_" in n:
        return "val"
    return "train"


# --------------------------------------------------------------------------- readers


def _number(text, path, where: str) -> float:
    s = (text if isinstance(text, str) else str(text)).strip()
    try:
        return float(s)
    except ValueError:
        raise PtyAnalysisError(f"{path}: {where}: expected a number, got {s!r}; "
                               "regenerate the file with the training run") from None


def read_lightning_metrics(path) -> TrainingHistory:
    """Read Lightning's ``CSVLogger`` file ``metrics.csv``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    TrainingHistory
        Per-epoch series for every column without a ``_step`` suffix (indexed by
        ``epoch``; a value logged twice in one epoch keeps the last), per-step
        series for the ``*_step`` columns (indexed by ``step``).

    Raises
    ------
    PtyAnalysisError
        No ``epoch`` column, or a cell that is neither empty nor a number.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = list(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PtyAnalysisError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    if "epoch" not in cols:
        raise PtyAnalysisError(f"{path}: no 'epoch' column (columns: {', '.join(cols) or 'none'}); expected "
                               "Lightning's CSVLogger metrics.csv (epoch, step and one column per logged name)")
    notes = []
    per_epoch: dict = {}
    per_step: dict = {}
    for i, row in enumerate(rows, start=2):
        ep_text = (row.get("epoch") or "").strip()
        st_text = (row.get("step") or "").strip()
        for c in cols:
            if c in LIGHTNING_INDEX_COLUMNS:
                continue
            cell = (row.get(c) or "").strip()
            if not cell:
                continue
            v = _number(cell, path, f"row {i}, column {c!r}")
            if c.endswith("_step"):
                if not st_text:
                    continue
                per_step.setdefault(c, {})[int(_number(st_text, path, f"row {i}, column 'step'"))] = v
            else:
                if not ep_text:
                    notes.append(f"{path.name}: row {i} has {c!r} but no epoch; skipped")
                    continue
                per_epoch.setdefault(c, {})[int(_number(ep_text, path, f"row {i}, column 'epoch'"))] = v
    series = {}
    for c in cols:
        for store, per in ((per_epoch, "epoch"), (per_step, "step")):
            if c in store:
                d = store[c]
                xs = np.array(sorted(d), dtype=float)
                series[c] = LossSeries(c, xs, np.array([d[int(x)] for x in xs], dtype=float), per, _role(c))
    budget = {"epochs": len({int(x) for d in per_epoch.values() for x in d}) or None}
    steps = [int(_number(r["step"], path, "column 'step'")) for r in rows if (r.get("step") or "").strip()]
    if steps:
        budget["steps"] = max(steps) + 1  # Lightning logs the global step, counted from 0
    return TrainingHistory(path, "lightning_csv", series, "lightning", tuple(notes),
                           {k: v for k, v in budget.items() if v is not None})


def _series_from_lists(payload: dict, path: Path, notes: list) -> dict:
    epochs = payload.get("epoch")
    series = {}
    for k, v in payload.items():
        if k == "epoch":
            continue
        if v is None:
            notes.append(f"{path.name}: {k!r} is null (not logged); skipped")
            continue
        if not isinstance(v, list):
            notes.append(f"{path.name}: {k!r} is not a list of per-epoch values; skipped")
            continue
        vals = []
        for j, e in enumerate(v):
            if e is None:
                vals.append(np.nan)
            elif isinstance(e, bool) or not isinstance(e, (int, float, str)):
                raise PtyAnalysisError(f"{path}: key {k!r}, item {j}: expected a number, got {e!r}")
            else:
                vals.append(_number(e, path, f"key {k!r}, item {j}"))
        x = np.arange(len(vals), dtype=float)
        if isinstance(epochs, list) and len(epochs) == len(vals):
            x = np.array([_number(e, path, f"key 'epoch', item {j}") for j, e in enumerate(epochs)])
        series[k] = LossSeries(k, x, np.array(vals, dtype=float), "epoch", _role(k))
    return series


def read_history_json(path) -> TrainingHistory:
    """Read a PtychoPINN study runner's ``history.json`` (Keras ``History.history`` or the torch runner's).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    TrainingHistory
        ``history_form`` ``"keras"`` or ``"torch_runner"`` (``train_loss`` present).

    Raises
    ------
    PtyAnalysisError
        Not JSON, not an object, or a non-numeric value in a series.
    """
    path = Path(path)
    payload = _load_json(path)
    if isinstance(payload, dict) and isinstance(payload.get("history"), dict) and not any(
            isinstance(v, list) for k, v in payload.items() if k != "history"):
        payload = payload["history"]
    if not isinstance(payload, dict):
        raise PtyAnalysisError(f"{path}: expected a JSON object of per-epoch lists (e.g. {{\"loss\": [...], "
                               f"\"val_loss\": [...]}}), got {type(payload).__name__}")
    notes: list = []
    series = _series_from_lists(payload, path, notes)
    form = "torch_runner" if "train_loss" in payload else "keras"
    tr, va = series.get("train_loss"), series.get("val_loss")
    if form == "torch_runner" and tr is not None and va is not None and len(va.values) == len(tr.values) + 1:
        series["val_loss"] = LossSeries("val_loss", np.arange(len(tr.values), dtype=float), va.values[1:],
                                        "epoch", "val")
        notes.append(f"{path.name}: val_loss has one value more than train_loss: the first (Lightning's sanity-check "
                     "validation before epoch 0) was dropped")
    if not series:
        notes.append(f"{path.name}: no per-epoch series")
    return TrainingHistory(path, "history_json", series, form, tuple(notes),
                           {"epochs": _epoch_count(series)} if _epoch_count(series) else {})


#: Budget fields a history may record (:attr:`TrainingHistory.budget`).
BUDGET_KEYS = ("epochs", "steps", "elapsed_s", "batch_size", "n_samples")


def budget_text(budget: dict) -> str:
    """A training budget in words: ``"150 optimiser steps (4 epochs, 31 s)"``, ``"5 epochs"``; ``""`` if empty.

    Parameters
    ----------
    budget : dict
        :attr:`TrainingHistory.budget`.

    Returns
    -------
    str
    """
    inner = []
    if budget.get("epochs") is not None:
        inner.append(f"{int(budget['epochs'])} epoch{'s' if int(budget['epochs']) != 1 else ''}")
    if budget.get("elapsed_s") is not None:
        inner.append(f"{float(budget['elapsed_s']):.0f} s")
    if budget.get("steps") is not None:
        return f"{int(budget['steps'])} optimiser steps" + (f" ({', '.join(inner)})" if inner else "")
    return ", ".join(inner)


def _epoch_count(series: dict) -> int | None:
    counts = [len(s.values) for s in series.values() if s.per == "epoch"]
    return max(counts) if counts else None


def read_ptyanalysis_params(path) -> TrainingHistory:
    """Read the training history in this package's model sidecar ``params.json`` (``training.loss``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    TrainingHistory
        One series ``loss`` (per epoch).

    Raises
    ------
    PtyAnalysisError
        No ``training`` object with a ``loss`` list.
    """
    path = Path(path)
    payload = _load_json(path)
    tr = payload.get("training") if isinstance(payload, dict) else None
    if not isinstance(tr, dict) or not isinstance(tr.get("loss"), list):
        raise PtyAnalysisError(f"{path}: key 'training.loss': expected the per-epoch loss list that "
                               "`ptyanalysis train` writes; retrain or point at a history file")
    notes: list = []
    series = _series_from_lists({"loss": tr["loss"]}, path, notes)
    budget = {k: tr[k] for k in BUDGET_KEYS if isinstance(tr.get(k), (int, float)) and not isinstance(tr.get(k), bool)}
    budget.setdefault("epochs", _epoch_count(series))
    return TrainingHistory(path, "ptyanalysis_params", series, "ptyanalysis", tuple(notes), budget)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PtyAnalysisError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise PtyAnalysisError(f"{path}: invalid JSON ({exc}); regenerate it with the training run") from None


def read_training_history(path) -> TrainingHistory:
    """Read any supported history file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``*.csv`` (Lightning), ``params.json`` with a ``training`` object (ptyanalysis) or another JSON (``history.json``).

    Returns
    -------
    TrainingHistory

    Raises
    ------
    PtyAnalysisError
        Unknown or malformed file.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_lightning_metrics(path)
    if path.suffix.lower() == ".json":
        if path.name == "params.json":
            return read_ptyanalysis_params(path)
        return read_history_json(path)
    raise PtyAnalysisError(f"{path}: unknown training-history format (expected Lightning's metrics.csv, "
                           "a history.json or ptyanalysis's params.json)")


_VERSION = re.compile(r"^version_(\d+)$")


def find_training_histories(directory) -> tuple[list, list]:
    """The training histories next to a model: in ``directory`` and its ``lightning_logs``.

    Parameters
    ----------
    directory : str or Path
        A model (or run) folder.

    Returns
    -------
    paths : list of Path
        ``params.json`` (when it has ``training``), ``history.json`` and the newest
        ``lightning_logs/version_<N>/metrics.csv``, those that exist, in that order.
    notes : list of str
        E.g. older Lightning versions not read.
    """
    d = Path(directory)
    out, notes = [], []
    if not d.is_dir():
        return out, notes
    p = d / "params.json"
    if p.is_file():
        try:
            if isinstance(_load_json(p).get("training"), dict):
                out.append(p)
        except (PtyAnalysisError, AttributeError):
            pass
    if (d / "history.json").is_file():
        out.append(d / "history.json")
    logs = d / "lightning_logs"
    if logs.is_dir():
        versions = sorted((int(m.group(1)), v) for v in logs.iterdir()
                           if (m := _VERSION.match(v.name)) and (v / "metrics.csv").is_file())
        if versions:
            out.append(versions[-1][1] / "metrics.csv")
            if len(versions) > 1:
                notes.append(f"{logs}: read version_{versions[-1][0]} (the newest); "
                             f"{len(versions) - 1} older version(s) not read")
    return out, notes


# --------------------------------------------------------------------------- verdict


def rule_text(tail_fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL, noise_factor: float = NOISE_FACTOR,
              min_drop: float = MIN_DROP) -> str:
    """The verdict's rule in words, with its thresholds."""
    return (f"still falling = over the last {tail_fraction:.0%} of the epochs (at least {min_tail}), a least-squares "
            f"line falls by more than {noise_factor:g} standard errors of its slope and by at least {min_drop:.0%} "
            "of the loss's range over training")


def loss_still_falling(series: LossSeries, *, tail_fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL,
                       noise_factor: float = NOISE_FACTOR, min_drop: float = MIN_DROP) -> TrainingVerdict:
    """Judge whether a per-epoch loss was still falling at the end of training.

    Parameters
    ----------
    series : LossSeries
        A per-epoch series (non-finite values are left out).
    tail_fraction : float
        Fraction of the epochs forming the judged tail.
    min_tail : int
        Minimum tail length in epochs (at least 2).
    noise_factor : float
        How many standard errors of the tail's slope the fall must exceed.
    min_drop : float
        Minimum fitted drop over the tail as a fraction of the series' range.

    Returns
    -------
    TrainingVerdict
    """
    if not 0 < tail_fraction <= 1 or min_tail < 2 or noise_factor < 0 or min_drop < 0:
        raise PtyAnalysisError("loss_still_falling: expected 0 < tail_fraction <= 1, min_tail >= 2, "
                               f"noise_factor >= 0, min_drop >= 0; got {tail_fraction}, {min_tail}, "
                               f"{noise_factor}, {min_drop}")
    rule = rule_text(tail_fraction, min_tail, noise_factor, min_drop)
    ok = np.isfinite(series.values) & np.isfinite(series.x)
    x, y = series.x[ok], series.values[ok]
    n = len(y)
    if n < 2:
        return TrainingVerdict(series.name, None, n, n, float("nan"), float("nan"), None, rule,
                               f"{series.name}: {n} finite epoch(s), too few to tell whether it was still falling")
    k = min(n, max(min_tail, math.ceil(tail_fraction * n)))
    xt, yt = x[-k:], y[-k:]
    xc = xt - xt.mean()
    sxx = float((xc ** 2).sum())
    slope = float((xc * (yt - yt.mean())).sum() / sxx) if sxx > 0 else 0.0
    span = float(xt[-1] - xt[0])
    drop = -slope * span
    rng = float(y.max() - y.min())
    frac = drop / rng if rng > 0 else 0.0
    ratio = None
    if k > 2:
        resid = yt - (yt.mean() + slope * xc)
        se = math.sqrt(float((resid ** 2).sum()) / (k - 2) / sxx) if sxx > 0 else float("inf")
        ratio = (-slope / se) if se > 0 else (float("inf") if slope < 0 else 0.0)
    significant = slope < 0 and (ratio is None or ratio > noise_factor)
    falling = bool(significant and frac >= min_drop)
    sig_text = "" if ratio is None else (f", {ratio:.1f} standard errors" if math.isfinite(ratio) else ", noiseless")
    if falling:
        msg = (f"{series.name} still falling at the end: down {frac:.0%} of its range over the last {k} of {n} epochs"
               f"{sig_text} (not converged: under-trained)")
    else:
        msg = f"{series.name} flat at the end: {frac:+.0%} of its range over the last {k} of {n} epochs{sig_text}"
    return TrainingVerdict(series.name, falling, n, k, drop, frac, ratio, rule, msg)


@dataclass(frozen=True)
class TrainingReport:
    """What a model's training histories say: the histories read and the verdict on each loss.

    Attributes
    ----------
    histories : tuple of TrainingHistory
    verdicts : tuple of TrainingVerdict
        The training loss of each history (or its validation loss when it has none), then its validation loss.
    under_trained : bool or None
        True when a judged training loss (or, without one, the validation loss) is still falling;
        None when nothing could be judged.
    notes : tuple of str
    """

    histories: tuple = ()
    verdicts: tuple = ()
    under_trained: bool | None = None
    notes: tuple = ()

    def as_dict(self) -> dict:
        """JSON-ready fields (history paths as strings)."""
        return {"under_trained": self.under_trained, "histories": [str(h.path) for h in self.histories],
                "formats": [h.format + (f"/{h.history_form}" if h.history_form else "") for h in self.histories],
                "budgets": [dict(h.budget) for h in self.histories],
                "verdicts": [v.as_dict() for v in self.verdicts], "notes": list(self.notes)}


def judge_histories(paths, **thresholds) -> TrainingReport:
    """Read every history file and judge its losses (:func:`loss_still_falling`).

    Parameters
    ----------
    paths : iterable of str or Path
    **thresholds
        ``tail_fraction``, ``min_tail``, ``noise_factor``, ``min_drop``.

    Returns
    -------
    TrainingReport
        A malformed file is a note, not an error (the other files are still judged).
    """
    hists, verdicts, notes = [], [], []
    decisive = []
    for p in paths:
        try:
            h = read_training_history(p)
        except PtyAnalysisError as exc:
            notes.append(f"training history not read: {exc}")
            continue
        hists.append(h)
        notes += list(h.notes)
        tr, va = h.train_loss(), h.val_loss()
        if tr is None and va is None:
            notes.append(f"{Path(p).name}: no per-epoch loss series")
            continue
        main = loss_still_falling(tr if tr is not None else va, **thresholds)
        verdicts.append(main)
        decisive.append(main.still_falling)
        if tr is not None and va is not None:
            verdicts.append(loss_still_falling(va, **thresholds))
    known = [d for d in decisive if d is not None]
    under = any(known) if known else None
    return TrainingReport(tuple(hists), tuple(verdicts), under, tuple(notes))

"""Collecting per-job results from a hub: the comparison CSVs, FRC curves, reconstructions and the manifest."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
from ..conventions import VIEWS, SPLITS, canonical_arm, dose_label
from ..errors import PtyAnalysisError
from ..phase_g.schema import FILES, FRC_COLUMNS, METRICS_COLUMNS, SCALAR_METRICS, TUPLE_METRICS


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class JobRecord:
    """One comparison job (a dose/view/split cell) as Phase G sees it.

    Attributes
    ----------
    dose : int
        Photons per pattern.
    view, split : str
        Overlap view and data split.
    output_dir : Path
        ``HUB/analysis/dose_<D>/<view>/<split>``.
    status : str
        ``"success"`` (metrics read), ``"failed"`` (the grid runner reported a
        failure) or ``"missing"`` (no ``comparison_metrics.csv``).
    metrics : tuple of dict
        Rows ``{model, metric, amplitude, phase}`` or ``{model, metric, value}``;
        missing numbers are ``None``.
    error : str or None
        Why the job has no metrics.
    """

    dose: int
    view: str
    split: str
    output_dir: Path
    status: str
    metrics: tuple = ()
    error: str | None = None

    @property
    def label(self) -> str:
        """``dose_<D>/<view>/<split>``: the job's path under ``analysis/``."""
        return f"{dose_label(self.dose)}/{self.view}/{self.split}"


@dataclass(frozen=True)
class PhaseGResult:
    """What :func:`phase_g` wrote.

    Attributes
    ----------
    hub : Path
        The study hub.
    summary : dict
        Content of ``metrics_summary.json``.
    deltas : dict
        Content of ``metrics_delta_summary.json``.
    dataset : xarray.Dataset
        :func:`results_dataset` of the jobs.
    files : dict
        Artifact key (see :data:`FILES`) -> path written.
    figures : tuple of Path
        PNG files written under ``analysis/figures``.
    missing : tuple of str
        One line per missing job or arm value (also in the summary).
    """

    hub: Path
    summary: dict
    deltas: dict
    dataset: object
    files: dict = field(default_factory=dict)
    figures: tuple = ()
    missing: tuple = ()


# --------------------------------------------------------------------------- reading


def _float_or_none(text: str, path, row_no: int, column: str):
    s = (text or "").strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        raise PtyAnalysisError(
            f"{path}: row {row_no}, column {column!r}: expected a number or an empty cell, got {s!r}; "
            "fix or regenerate the file with the comparison job"
        ) from None
    return v if math.isfinite(v) else None


def read_comparison_metrics(path) -> list[dict]:
    """Read one job's ``comparison_metrics.csv``.

    Parameters
    ----------
    path : str or Path
        The CSV (columns ``model, metric, amplitude, phase, value``).

    Returns
    -------
    list of dict
        ``{model, metric, amplitude, phase}`` for the metrics of
        :data:`TUPLE_METRICS` (or any row with an amplitude or phase value),
        ``{model, metric, value}`` otherwise. Model names are canonical; an
        empty or non-finite cell is ``None``.

    Raises
    ------
    PtyAnalysisError
        Missing columns, a non-numeric cell, or an unknown model label.
    """
    path = Path(path)
    try:
        return _read_comparison_metrics(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PtyAnalysisError(f"{path}: not a readable UTF-8 CSV ({exc}); regenerate it with the comparison job") from None


def _read_comparison_metrics(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = tuple(reader.fieldnames or ())
        missing = [c for c in METRICS_COLUMNS if c not in cols]
        if missing:
            raise PtyAnalysisError(
                f"{path}: missing column(s) {', '.join(missing)}; expected columns "
                f"{', '.join(METRICS_COLUMNS)} (PtychoPINN compare_models format)"
            )
        rows = []
        for i, row in enumerate(reader, start=2):
            label = (row["model"] or "").strip()
            try:
                model = canonical_arm(label)
            except PtyAnalysisError as exc:
                raise PtyAnalysisError(f"{path}: row {i}: {exc}") from None
            metric = (row["metric"] or "").strip()
            if not metric:
                raise PtyAnalysisError(f"{path}: row {i}: empty 'metric' cell")
            amp = _float_or_none(row["amplitude"], path, i, "amplitude")
            pha = _float_or_none(row["phase"], path, i, "phase")
            val = _float_or_none(row["value"], path, i, "value")
            has_pair_text = bool((row["amplitude"] or "").strip() or (row["phase"] or "").strip())
            if metric in TUPLE_METRICS or (metric not in SCALAR_METRICS and has_pair_text):
                rows.append({"model": model, "metric": metric, "amplitude": amp, "phase": pha})
            else:
                rows.append({"model": model, "metric": metric, "value": val})
    return rows


def read_frc_curves(job_dir) -> dict:
    """Read every ``*_frc_curves.csv`` of a job.

    Parameters
    ----------
    job_dir : str or Path
        A job's output folder.

    Returns
    -------
    dict
        ``{arm: {"frequency_bin": ndarray, "amplitude_frc": ndarray, "phase_frc": ndarray}}``
        (empty when there is no FRC file).

    Raises
    ------
    PtyAnalysisError
        Missing columns, non-numeric values or an unknown model label.
    """
    out: dict = {}
    for path in sorted(Path(job_dir).glob("*_frc_curves.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in FRC_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise PtyAnalysisError(
                    f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(FRC_COLUMNS)}"
                )
            acc: dict = {}
            for i, row in enumerate(reader, start=2):
                try:
                    arm = canonical_arm((row["model"] or "").strip())
                except PtyAnalysisError as exc:
                    raise PtyAnalysisError(f"{path}: row {i}: {exc}") from None
                vals = []
                for c in FRC_COLUMNS[1:]:
                    v = _float_or_none(row[c], path, i, c)
                    vals.append(np.nan if v is None else v)
                acc.setdefault(arm, []).append(vals)
        for arm, vals in acc.items():
            a = np.asarray(vals, dtype=float)
            a = a[np.argsort(a[:, 0], kind="stable")]
            out[arm] = {"frequency_bin": a[:, 0], "amplitude_frc": a[:, 1], "phase_frc": a[:, 2]}
    return out


def read_reconstructions(path) -> tuple[dict, np.ndarray | None]:
    """Read a job's ``reconstructions.npz``.

    Parameters
    ----------
    path : str or Path
        The NPZ: ``ground_truth``, one complex 2-D array per arm, optional
        ``coverage``. Other non-image arrays are ignored.

    Returns
    -------
    images : dict
        ``{"GroundTruth" | arm: complex 2-D ndarray}``.
    coverage : ndarray or None
        The coverage count map, if present.

    Raises
    ------
    PtyAnalysisError
        A 2-D complex array under a label that is not a known arm.
    """
    path = Path(path)
    images: dict = {}
    coverage = None
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise PtyAnalysisError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc}); "
                               "regenerate it with the comparison job") from None
    with z:
        for key in z.files:
            try:
                arr = z[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    continue  # an object array: not an image, ignored like the other non-image arrays
                raise PtyAnalysisError(f"{path}: array {key!r} cannot be read ({exc})") from None
            except Exception as exc:  # a damaged member
                raise PtyAnalysisError(f"{path}: array {key!r} cannot be read ({type(exc).__name__}: {exc}); "
                                       "store plain numeric arrays") from None
            if key == "coverage":
                coverage = np.asarray(arr)
                continue
            if arr.ndim != 2 or not (np.iscomplexobj(arr) or key.lower() in ("ground_truth", "gt")):
                continue
            try:
                name = canonical_arm(key)
            except PtyAnalysisError as exc:
                raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
            images[name] = np.asarray(arr)
    return images, coverage


def read_manifest(hub) -> dict | None:
    """Return ``HUB/analysis/comparison_manifest.json`` parsed, or ``None`` if absent.

    Raises
    ------
    PtyAnalysisError
        If the file exists but is not valid JSON.

    Parameters
    ----------
    hub : str or Path
        Study hub.

    Returns
    -------
    dict or None
    """
    path = Path(hub) / "analysis" / FILES["manifest"]
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PtyAnalysisError(f"{path}: invalid JSON ({exc}); rerun `ptyanalysis grid` to rewrite it") from None


def _job_sort_key(dose, view, split):
    vi = VIEWS.index(view) if view in VIEWS else len(VIEWS)
    si = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    return (int(dose), vi, view, si, split)


def _parse_dose_dir(name: str):
    if not name.startswith("dose_"):
        return None
    try:
        d = float(name[5:])
    except ValueError:
        return None
    return int(d) if math.isfinite(d) and d > 0 and d == int(d) else None


def _manifest_key(entry: dict) -> tuple:
    dose = float(entry["dose"])
    if not (math.isfinite(dose) and dose > 0 and dose == int(dose)):
        raise ValueError(f"dose {entry['dose']!r} is not a positive whole number of photons")
    view, split = entry["view"], entry["split"]
    if not (isinstance(view, str) and isinstance(split, str)):
        raise TypeError(f"view and split must be strings, got {view!r}, {split!r}")
    return int(dose), view, split


def collect_jobs(hub) -> list[JobRecord]:
    """Find every comparison job of a hub and read its metrics.

    The jobs are the union of the grid manifest's jobs (if
    ``analysis/comparison_manifest.json`` exists) and the folders
    ``analysis/dose_<D>/<view>/<split>/`` holding a ``comparison_metrics.csv``.
    A job the manifest marks failed is ``"failed"`` even if old metrics exist.

    Parameters
    ----------
    hub : str or Path
        Study hub.

    Returns
    -------
    list of JobRecord
        Sorted by dose, view, split.
    """
    hub = Path(hub)
    analysis = hub / "analysis"
    status: dict = {}
    manifest = read_manifest(hub)
    if manifest is not None:
        mpath = analysis / FILES["manifest"]
        try:
            results = {_manifest_key(r): r for r in manifest.get("execution_results", [])}
            for j in manifest.get("jobs", []):
                key = _manifest_key(j)
                r = results.get(key)
                if r is None:
                    status[key] = ("failed", "not executed by the grid runner")
                elif int(r.get("returncode", 1)) != 0:
                    err = r.get("error") or f"returncode {r.get('returncode')}"
                    if r.get("error_name"):
                        err = f"{r['error_name']}: {r.get('error_value', '')}".strip()
                    status[key] = ("failed", err)
                else:
                    status[key] = ("success", None)
            for key, r in results.items():
                status.setdefault(key, ("success", None) if int(r.get("returncode", 1)) == 0
                                  else ("failed", r.get("error")))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise PtyAnalysisError(
                f"{mpath}: malformed manifest ({type(exc).__name__}: {exc}); expected 'jobs' and "
                "'execution_results' lists of {dose, view, split, returncode, ...}; rerun `ptyanalysis grid` "
                "to rewrite it") from None
    if analysis.is_dir():
        for ddir in analysis.glob("dose_*"):
            dose = _parse_dose_dir(ddir.name)
            if dose is None or not ddir.is_dir():
                continue
            for csv_path in ddir.glob("*/*/comparison_metrics.csv"):
                key = (dose, csv_path.parent.parent.name, csv_path.parent.name)
                status.setdefault(key, ("success", None))
    jobs = []
    for key in sorted(status, key=lambda k: _job_sort_key(*k)):
        dose, view, split = key
        out_dir = analysis / dose_label(dose) / view / split
        st, err = status[key]
        csv_path = out_dir / "comparison_metrics.csv"
        if st == "success":
            if csv_path.exists():
                jobs.append(JobRecord(dose, view, split, out_dir, "success", tuple(read_comparison_metrics(csv_path))))
            else:
                jobs.append(JobRecord(dose, view, split, out_dir, "missing", (), f"{csv_path.relative_to(hub).as_posix()} not found"))
        else:
            jobs.append(JobRecord(dose, view, split, out_dir, "failed", (), err))
    return jobs



"""Phase G: aggregate the per-job comparison results of a study hub.

``ptyanalysis phase-g HUB`` (Python: :func:`phase_g`) reads every comparison
job under ``HUB/analysis/dose_<D>/<view>/<split>/`` and writes, under
``HUB/analysis/``:

=====================================  ==================================================
file                                   content
=====================================  ==================================================
``metrics_summary.json`` / ``.md``     per-job metrics and per-arm aggregates
``metrics_delta_summary.json``         PtychoPINN minus Baseline / PtyChi (numbers)
``metrics_delta_highlights.txt``       the 4 delta lines (amplitude and phase)
``metrics_delta_highlights_preview.txt``  the same 4 deltas, phase only
``ssim_grid_summary.md``               2x2 phase-only delta tables
``aggregate_report.md``                aggregates, MS-SSIM sanity check, delta tables
``aggregate_highlights.txt``           absolute MS-SSIM and deltas, plain text
``metrics_digest.md``                  digest (``# Phase G Dense Metrics Digest``, ...)
``phase_g_metrics.nc``                 :func:`results_dataset` as netCDF
``figures/*.png``                      heat maps, reconstructions, FRC, metrics vs dose
``phase_g_report.html``                executed Phase G notebook (when one is given)
``artifact_inventory.txt``             every file of the hub, written last
=====================================  ==================================================

Formats follow the PtychoPINN study (``summarize_phase_g_outputs``,
``persist_delta_highlights`` in ``run_phase_g_dense.py``,
``report_phase_g_dense_metrics.py``, ``analyze_dense_metrics.py`` and
``ssim_grid.py`` in ``plans/active/STUDY-SYNTH-FLY64-DOSE-OVERLAP-001/bin``),
with these deliberate differences:

* Every canonical arm (:data:`~ptyanalysis.conventions.ARMS`) is always in
  ``aggregate_metrics``; an arm without values has ``null`` aggregates and
  the deltas against it are ``null`` / ``"N/A"`` (the study dropped the arm,
  and its reporter then aborted).
* A failed job, or an arm with an empty value in a job, is never silently
  left out of an average: each aggregate carries ``n_jobs`` (values used) and
  ``missing_jobs`` (labels left out), the summary lists every gap under
  ``missing`` and the Markdown files show them. Per-job values that are
  missing print as ``N/A`` (the study printed an empty cell).
* Aggregate tables print MAE deltas with 6 decimals everywhere (the study's
  report used 3 in ``aggregate_report.md`` and ``metrics_digest.md``).
* A delta that rounds to zero prints as ``+0.000`` (never ``-0.000``).
* Failed jobs stay in ``jobs`` with ``status`` and ``error``; the study
  refused to summarise when any job failed.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conventions import ARMS, VIEWS, SPLITS, canonical_arm, dose_label
from .errors import PtyAnalysisError
from .fileutil import atomic_path, write_json, write_text
from .provenance import software_versions, utc_now

#: Metrics with an amplitude and a phase value.
TUPLE_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")
#: Metrics with a single value.
SCALAR_METRICS = ("registration_offset_dy", "registration_offset_dx", "computation_time_s")
#: Metrics that enter ``aggregate_metrics`` (as in the study).
AGGREGATE_METRICS = ("ms_ssim", "mae")
#: The xarray component axis.
COMPONENTS = ("amplitude", "phase", "value")
#: The arms PtychoPINN is compared with, in the order of every delta table.
DELTA_ARMS = ("Baseline", "PtyChi")
#: Default MS-SSIM "health" threshold of ``aggregate_report.md`` (study default).
MS_SSIM_THRESHOLD = 0.80
#: Columns of ``comparison_metrics.csv``.
METRICS_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
#: Columns of ``*_frc_curves.csv``.
FRC_COLUMNS = ("model", "frequency_bin", "amplitude_frc", "phase_frc")

#: Phase G artifact file names (under ``analysis/``).
FILES = {
    "metrics_summary_json": "metrics_summary.json",
    "metrics_summary_md": "metrics_summary.md",
    "delta_summary_json": "metrics_delta_summary.json",
    "delta_highlights": "metrics_delta_highlights.txt",
    "delta_preview": "metrics_delta_highlights_preview.txt",
    "ssim_grid_summary": "ssim_grid_summary.md",
    "aggregate_report": "aggregate_report.md",
    "aggregate_highlights": "aggregate_highlights.txt",
    "metrics_digest": "metrics_digest.md",
    "dataset": "phase_g_metrics.nc",
    "inventory": "artifact_inventory.txt",
    "html": "phase_g_report.html",
    "executed_notebook": "phase_g_report.ipynb",
    "manifest": "comparison_manifest.json",
}
#: Sub-folder of ``analysis/`` holding the figures.
FIGURES_DIR = "figures"
#: Files the verifier writes after Phase G (never expected in the inventory).
POST_INVENTORY_FILES = ("analysis/verification_report.json",)

#: Line prefixes of ``metrics_delta_highlights.txt`` (with the study's padding).
HIGHLIGHT_PREFIXES = (
    "MS-SSIM Δ (PtychoPINN - Baseline)  : ",
    "MS-SSIM Δ (PtychoPINN - PtyChi)    : ",
    "MAE Δ (PtychoPINN - Baseline)      : ",
    "MAE Δ (PtychoPINN - PtyChi)        : ",
)
#: Line prefixes of ``metrics_delta_highlights_preview.txt``.
PREVIEW_PREFIXES = (
    "MS-SSIM Δ (PtychoPINN - Baseline): ",
    "MS-SSIM Δ (PtychoPINN - PtyChi): ",
    "MAE Δ (PtychoPINN - Baseline): ",
    "MAE Δ (PtychoPINN - PtyChi): ",
)
#: (metric, other arm) of each of the 4 highlight lines, in order.
HIGHLIGHT_ORDER = (("ms_ssim", "Baseline"), ("ms_ssim", "PtyChi"), ("mae", "Baseline"), ("mae", "PtyChi"))
#: Decimals of each delta metric.
DELTA_DECIMALS = {"ms_ssim": 3, "mae": 6}


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


# --------------------------------------------------------------------------- summaries


def phase_c_metadata_compliance(hub) -> dict:
    """Check the Phase C datasets for ``_metadata`` (the study's compliance block).

    Parameters
    ----------
    hub : str or Path
        Study hub.

    Returns
    -------
    dict
        ``{dose_<D>: {split: {npz_path, has_metadata, has_canonical_transform,
        compliant, error?}}}`` or ``{"error": ...}`` when ``data/phase_c`` is
        absent. ``compliant`` means the file has a JSON ``_metadata`` record
        (ptyanalysis hubs are not made by the study's
        ``transpose_rename_convert`` tool, so that is reported, not required).
    """
    hub = Path(hub)
    root = hub / "data" / "phase_c"
    if not root.is_dir():
        return {"error": f"Phase C root not found: {root.relative_to(hub).as_posix()}"}
    out: dict = {}
    for ddir in sorted(root.glob("dose_*"), key=lambda p: _parse_dose_dir(p.name) or 0):
        dose = _parse_dose_dir(ddir.name)
        if dose is None or not ddir.is_dir():
            continue
        entry: dict = {}
        for split in SPLITS:
            npz = ddir / f"patched_{split}.npz"
            rec = {"npz_path": npz.relative_to(hub).as_posix(), "has_metadata": False,
                   "has_canonical_transform": False, "compliant": False}
            if not npz.exists():
                rec["error"] = "File not found"
            else:
                try:
                    with np.load(npz, allow_pickle=True) as z:
                        if "_metadata" in z.files:
                            meta = json.loads(str(z["_metadata"].item()))
                            rec["has_metadata"] = True
                            rec["has_canonical_transform"] = any(
                                t.get("tool") == "transpose_rename_convert"
                                for t in meta.get("data_transformations", []) if isinstance(t, dict))
                            rec["compliant"] = True
                except Exception as exc:  # a damaged file is reported, not fatal
                    rec["error"] = f"{type(exc).__name__}: {exc}"
            entry[split] = rec
        out[dose_label(dose)] = entry
    return out


def _aggregate(jobs: list[JobRecord]) -> tuple[dict, list[str]]:
    agg: dict = {}
    missing: list[str] = []
    models = set(ARMS)
    for j in jobs:
        models.update(m["model"] for m in j.metrics if m["model"] != "GroundTruth")
    for model in sorted(models):
        agg[model] = {}
        for metric in AGGREGATE_METRICS:
            amps, phs, gaps = [], [], []
            for j in jobs:
                row = next((m for m in j.metrics if m["model"] == model and m["metric"] == metric), None)
                if row is not None and row.get("amplitude") is not None and row.get("phase") is not None:
                    amps.append(row["amplitude"])
                    phs.append(row["phase"])
                else:
                    gaps.append(j.label)
                    if j.status == "success":  # failed jobs are listed once, by summarize_jobs
                        why = "no row" if row is None else "empty value"
                        missing.append(f"{j.label}: {model} {metric} missing ({why})")
            entry: dict = {}
            entry["mean_amplitude"] = sum(amps) / len(amps) if amps else None
            if metric == "ms_ssim":
                entry["best_amplitude"] = max(amps) if amps else None
            entry["mean_phase"] = sum(phs) / len(phs) if phs else None
            if metric == "ms_ssim":
                entry["best_phase"] = max(phs) if phs else None
            entry["n_jobs"] = len(amps)
            entry["missing_jobs"] = gaps
            agg[model][metric] = entry
    return agg, missing


def summarize_jobs(jobs: list[JobRecord], hub) -> dict:
    """Build the content of ``metrics_summary.json``.

    Parameters
    ----------
    jobs : list of JobRecord
        From :func:`collect_jobs`.
    hub : str or Path
        Study hub (for the Phase C compliance block).

    Returns
    -------
    dict
        ``{n_jobs, n_success, n_failed, jobs, aggregate_metrics,
        phase_c_metadata_compliance, missing, generated_at}``. Aggregates are
        means over the jobs where both amplitude and phase are present.
    """
    agg, missing_values = _aggregate(jobs)
    missing = [f"{j.label}: job {j.status} ({j.error})" for j in jobs if j.status != "success"]
    missing += missing_values
    job_entries = []
    for j in jobs:
        e = {"dose": j.dose, "view": j.view, "split": j.split, "status": j.status, "metrics": [dict(m) for m in j.metrics]}
        if j.error:
            e["error"] = j.error
        job_entries.append(e)
    n_success = sum(j.status == "success" for j in jobs)
    return {
        "n_jobs": len(jobs),
        "n_success": n_success,
        "n_failed": len(jobs) - n_success,
        "jobs": job_entries,
        "aggregate_metrics": agg,
        "phase_c_metadata_compliance": phase_c_metadata_compliance(hub),
        "missing": missing,
        "generated_at": utc_now(),
    }


def compute_deltas(aggregate_metrics: dict) -> dict:
    """PtychoPINN minus each other arm on the mean aggregates.

    Parameters
    ----------
    aggregate_metrics : dict
        ``metrics_summary.json["aggregate_metrics"]``.

    Returns
    -------
    dict
        ``{vs_Baseline|vs_PtyChi: {ms_ssim|mae: {amplitude, phase}}}``; a
        delta is ``None`` when either value is missing.
    """
    pinn = aggregate_metrics.get("PtychoPINN", {})
    out: dict = {}
    for other in DELTA_ARMS:
        o = aggregate_metrics.get(other, {})
        out[f"vs_{other}"] = {}
        for metric in AGGREGATE_METRICS:
            out[f"vs_{other}"][metric] = {}
            for comp in ("amplitude", "phase"):
                a = pinn.get(metric, {}).get(f"mean_{comp}")
                b = o.get(metric, {}).get(f"mean_{comp}")
                out[f"vs_{other}"][metric][comp] = None if a is None or b is None else a - b
    return out


def delta_summary(summary: dict, source_metrics: str = "analysis/metrics_summary.json") -> dict:
    """Content of ``metrics_delta_summary.json``: ``{generated_at, source_metrics, deltas}``.

    Parameters
    ----------
    summary : dict
        Content of ``metrics_summary.json``.
    source_metrics : str
        Hub-relative path of that file.

    Returns
    -------
    dict
        ``generated_at`` is UTC and ends in ``Z``.
    """
    return {"generated_at": utc_now(), "source_metrics": source_metrics,
            "deltas": compute_deltas(summary["aggregate_metrics"])}


def format_delta(value, decimals: int) -> str:
    """Format a delta with an explicit sign: ``+0.015``; ``"N/A"`` when missing.

    A value that rounds to zero prints as ``+0.000`` (never ``-0.000``).

    Parameters
    ----------
    value : float or None
    decimals : int
        3 for MS-SSIM, 6 for MAE (:data:`DELTA_DECIMALS`).

    Returns
    -------
    str
    """
    if value is None or not math.isfinite(float(value)):  # numpy float32 NaN too (not a float)
        return "N/A"
    s = f"{float(value):+.{decimals}f}"
    if float(s) == 0.0:
        s = "+" + s[1:]
    return s


def _fmt(value, spec: str = ".3f") -> str:
    return "N/A" if value is None else format(value, spec)


def delta_highlight_lines(deltas: dict) -> list[str]:
    """The 4 lines of ``metrics_delta_highlights.txt`` (amplitude and phase).

    Parameters
    ----------
    deltas : dict
        ``metrics_delta_summary.json["deltas"]`` (:func:`compute_deltas`).

    Returns
    -------
    list of str
        ``<prefix>amplitude <delta>  phase <delta>`` with the prefixes of
        :data:`HIGHLIGHT_PREFIXES`, in :data:`HIGHLIGHT_ORDER`.
    """
    lines = []
    for prefix, (metric, other) in zip(HIGHLIGHT_PREFIXES, HIGHLIGHT_ORDER):
        d = deltas[f"vs_{other}"][metric]
        n = DELTA_DECIMALS[metric]
        lines.append(f"{prefix}amplitude {format_delta(d['amplitude'], n)}  phase {format_delta(d['phase'], n)}")
    return lines


def delta_preview_lines(deltas: dict) -> list[str]:
    """The 4 phase-only lines of ``metrics_delta_highlights_preview.txt``.

    Parameters
    ----------
    deltas : dict
        ``metrics_delta_summary.json["deltas"]`` (:func:`compute_deltas`).

    Returns
    -------
    list of str
        ``<prefix><phase delta>`` with the prefixes of :data:`PREVIEW_PREFIXES`;
        the word "amplitude" never appears.
    """
    return [f"{prefix}{format_delta(deltas[f'vs_{other}'][metric]['phase'], DELTA_DECIMALS[metric])}"
            for prefix, (metric, other) in zip(PREVIEW_PREFIXES, HIGHLIGHT_ORDER)]


def ssim_grid_markdown(deltas: dict) -> str:
    """``ssim_grid_summary.md``: the study's 2x2 phase-only delta tables.

    Parameters
    ----------
    deltas : dict
        ``metrics_delta_summary.json["deltas"]`` (:func:`compute_deltas`).

    Returns
    -------
    str
        Markdown; no "amplitude" anywhere.
    """
    b, p = deltas["vs_Baseline"], deltas["vs_PtyChi"]
    lines = [
        "# SSIM Grid Summary (Phase-Only)",
        "",
        "**Generated from:** `analysis/metrics_delta_summary.json`",
        "**Preview validated:** `analysis/metrics_delta_highlights_preview.txt` (phase-only)",
        "",
        "## MS-SSIM Deltas (Phase)",
        "",
        "| Comparison | Phase MS-SSIM Delta |",
        "|------------|---------------------|",
        f"| vs_Baseline | {format_delta(b['ms_ssim']['phase'], 3)} |",
        f"| vs_PtyChi   | {format_delta(p['ms_ssim']['phase'], 3)} |",
        "",
        "## MAE Deltas (Phase)",
        "",
        "| Comparison | Phase MAE Delta |",
        "|------------|-----------------|",
        f"| vs_Baseline | {format_delta(b['mae']['phase'], 6)} |",
        f"| vs_PtyChi   | {format_delta(p['mae']['phase'], 6)} |",
        "",
        "---",
        "",
        "_Note: This summary enforces PREVIEW-PHASE-001 (phase-only formatting)._",
        "_MS-SSIM formatted to ±0.000 (3 decimals), MAE to ±0.000000 (6 decimals) per STUDY-001._",
    ]
    return "\n".join(lines) + "\n"


def _missing_section(summary: dict) -> list[str]:
    miss = summary.get("missing") or []
    if not miss:
        return []
    lines = ["## Missing Results", "", f"{len(miss)} missing job(s) or arm value(s); "
             "aggregates are means over the jobs that have a value (see `n_jobs`).", ""]
    lines += [f"- {m}" for m in miss]
    lines.append("")
    return lines


def metrics_summary_markdown(summary: dict) -> str:
    """``metrics_summary.md`` in the study's layout (plus a missing-results section).

    Parameters
    ----------
    summary : dict
        Content of ``metrics_summary.json`` (:func:`summarize_jobs`).

    Returns
    -------
    str
        Markdown.
    """
    agg = summary["aggregate_metrics"]
    L = ["# Phase G Metrics Summary", "",
         f"**Total Jobs:** {summary['n_jobs']}  ",
         f"**Successful:** {summary['n_success']}  ",
         f"**Failed:** {summary['n_failed']}  ", "", "---", "",
         "## Aggregate Metrics", "", "Summary statistics across all jobs per model.", ""]
    for model in sorted(agg):
        a = agg[model]
        L += [f"### {model}", ""]
        ms = a.get("ms_ssim", {})
        L += ["**MS-SSIM:**", "", "| Statistic | Amplitude | Phase |", "|-----------|-----------|-------|",
              f"| Mean | {_fmt(ms.get('mean_amplitude'))} | {_fmt(ms.get('mean_phase'))} |",
              f"| Best | {_fmt(ms.get('best_amplitude'))} | {_fmt(ms.get('best_phase'))} |", ""]
        mae = a.get("mae", {})
        L += ["**MAE:**", "", "| Statistic | Amplitude | Phase |", "|-----------|-----------|-------|",
              f"| Mean | {_fmt(mae.get('mean_amplitude'))} | {_fmt(mae.get('mean_phase'))} |", ""]
        n_all = summary["n_jobs"]
        if ms.get("n_jobs", n_all) < n_all or mae.get("n_jobs", n_all) < n_all:
            L += [f"_Incomplete: MS-SSIM from {ms.get('n_jobs', 0)} of {n_all} jobs, "
                  f"MAE from {mae.get('n_jobs', 0)} of {n_all} jobs._", ""]
    L += ["---", ""]
    for job in summary["jobs"]:
        L += [f"## Job: {job['view']}/{job['split']} (dose={job['dose']})", ""]
        if job.get("status", "success") != "success":
            L += [f"**{job['status'].upper()}:** {job.get('error', '')}", "", "---", ""]
            continue
        models: dict = {}
        for m in job["metrics"]:
            models.setdefault(m["model"], []).append(m)
        for model, rows in models.items():
            L += [f"### {model}", "", "| Metric | Amplitude | Phase | Value |", "|--------|-----------|-------|-------|"]
            for m in rows:
                if "value" in m:
                    L.append(f"| {m['metric']} |  |  | {_fmt(m['value'], '.4f')} |")
                else:
                    L.append(f"| {m['metric']} | {_fmt(m['amplitude'], '.4f')} | {_fmt(m['phase'], '.4f')} |  |")
            L.append("")
        L += ["---", ""]
    L += _missing_section(summary)
    comp = summary.get("phase_c_metadata_compliance", {})
    L += ["## Phase C Metadata Compliance", "",
          "Validation of Phase C NPZ files for _metadata and canonical transformations.", ""]
    if "error" in comp:
        L += [f"**Error:** {comp['error']}", ""]
    else:
        L += ["| Dose | Split | Compliant | Has Metadata | Has Canonical Transform | Path |",
              "|------|-------|-----------|--------------|-------------------------|------|"]
        for dk in comp:
            for split, rec in comp[dk].items():
                ck = lambda b: "✓" if b else "✗"  # noqa: E731
                note = f" ({rec['error']})" if "error" in rec else ""
                L.append(f"| {dk} | {split} | {ck(rec.get('compliant'))} | {ck(rec.get('has_metadata'))} | "
                         f"{ck(rec.get('has_canonical_transform'))} | {rec.get('npz_path', '')}{note} |")
        L.append("")
    return "\n".join(L)


def aggregate_report_markdown(summary: dict, threshold: float = MS_SSIM_THRESHOLD) -> str:
    """``aggregate_report.md`` (the study's ``report_phase_g_dense_metrics.py`` layout).

    Parameters
    ----------
    summary : dict
        Content of ``metrics_summary.json`` (:func:`summarize_jobs`).
    threshold : float
        MS-SSIM sanity threshold.

    Returns
    -------
    str
        Markdown.
    """
    agg = summary["aggregate_metrics"]
    d = compute_deltas(agg)
    L = ["# Phase G Dense Metrics Report", "",
         f"**Total Jobs:** {summary['n_jobs']}  ", f"**Successful:** {summary['n_success']}  ",
         f"**Failed:** {summary['n_failed']}  ", "",
         "## MS-SSIM Sanity Check", "", f"_Threshold: mean amplitude/phase ≥ {threshold:.2f}_", "",
         "| Model | Mean Amplitude | Mean Phase | Status |", "|-------|----------------|------------|--------|"]
    for model in sorted(agg):
        ms = agg[model].get("ms_ssim", {})
        a, p = ms.get("mean_amplitude"), ms.get("mean_phase")
        if a is None or p is None:
            status = "MISSING"
        else:
            issues = [n for n, v in (("amp", a), ("phase", p)) if v < threshold]
            status = "LOW (" + ",".join(issues) + ")" if issues else "OK"
        L.append(f"| {model} | {_fmt(a)} | {_fmt(p)} | {status} |")
    L += ["", "## Aggregate Metrics", ""]
    for model in sorted(agg):
        ms, mae = agg[model].get("ms_ssim", {}), agg[model].get("mae", {})
        L += [f"### {model}", "", "**MS-SSIM:**", "", "| Statistic | Amplitude | Phase |", "|-----------|-----------|-------|",
              f"| Mean | {_fmt(ms.get('mean_amplitude'))} | {_fmt(ms.get('mean_phase'))} |",
              f"| Best | {_fmt(ms.get('best_amplitude'))} | {_fmt(ms.get('best_phase'))} |", "",
              "**MAE:**", "", "| Statistic | Amplitude | Phase |", "|-----------|-----------|-------|",
              f"| Mean | {_fmt(mae.get('mean_amplitude'))} | {_fmt(mae.get('mean_phase'))} |", ""]
    ms_best = {m: agg.get(m, {}).get("ms_ssim", {}) for m in ("PtychoPINN",) + DELTA_ARMS}

    def best_delta(other, comp):
        a, b = ms_best["PtychoPINN"].get(f"best_{comp}"), ms_best[other].get(f"best_{comp}")
        return format_delta(None if a is None or b is None else a - b, 3)

    L += ["## Deltas (PtychoPINN vs Baselines)", "",
          "Positive values indicate PtychoPINN performs better (higher MS-SSIM or lower MAE).", "",
          "### MS-SSIM Deltas", "",
          "| Comparison | Mean Amplitude | Best Amplitude | Mean Phase | Best Phase |",
          "|------------|----------------|----------------|------------|------------|"]
    for other in DELTA_ARMS:
        x = d[f"vs_{other}"]["ms_ssim"]
        L.append(f"| vs {other} | {format_delta(x['amplitude'], 3)} | {best_delta(other, 'amplitude')} | "
                 f"{format_delta(x['phase'], 3)} | {best_delta(other, 'phase')} |")
    L += ["", "### MAE Deltas", "",
          "**Note:** For MAE, negative values indicate PtychoPINN performs better (lower error).", "",
          "| Comparison | Mean Amplitude | Mean Phase |", "|------------|----------------|------------|"]
    for other in DELTA_ARMS:
        x = d[f"vs_{other}"]["mae"]
        L.append(f"| vs {other} | {format_delta(x['amplitude'], 6)} | {format_delta(x['phase'], 6)} |")
    L.append("")
    L += _missing_section(summary)
    return "\n".join(L)


def aggregate_highlights_text(summary: dict, threshold: float = MS_SSIM_THRESHOLD) -> str:
    """``aggregate_highlights.txt`` (the study's ``generate_highlights`` layout).

    Parameters
    ----------
    summary : dict
        Content of ``metrics_summary.json`` (:func:`summarize_jobs`).
    threshold : float
        MS-SSIM threshold printed in the header.

    Returns
    -------
    str
    """
    agg = summary["aggregate_metrics"]
    d = compute_deltas(agg)
    ms = {m: agg.get(m, {}).get("ms_ssim", {}) for m in ARMS}
    L = ["Phase G Dense Metrics — Highlights", "=" * 50, "",
         f"MS-SSIM (mean) threshold: {threshold:.2f}",
         f"  PtychoPINN amplitude/phase: {_fmt(ms['PtychoPINN'].get('mean_amplitude'))} / {_fmt(ms['PtychoPINN'].get('mean_phase'))}",
         f"  Baseline amplitude/phase:  {_fmt(ms['Baseline'].get('mean_amplitude'))} / {_fmt(ms['Baseline'].get('mean_phase'))}",
         f"  PtyChi amplitude/phase:    {_fmt(ms['PtyChi'].get('mean_amplitude'))} / {_fmt(ms['PtyChi'].get('mean_phase'))}",
         ""]
    for other in DELTA_ARMS:
        x = d[f"vs_{other}"]["ms_ssim"]
        L += [f"MS-SSIM Deltas (PtychoPINN - {other}):", f"  Amplitude (mean): {format_delta(x['amplitude'], 3)}",
              f"  Phase (mean):     {format_delta(x['phase'], 3)}", ""]
    for i, other in enumerate(DELTA_ARMS):
        x = d[f"vs_{other}"]["mae"]
        L += [f"MAE Deltas (PtychoPINN - {other}):", "  [Note: Negative = PtychoPINN better (lower error)]",
              f"  Amplitude (mean): {format_delta(x['amplitude'], 6)}", f"  Phase (mean):     {format_delta(x['phase'], 6)}"]
        if i < len(DELTA_ARMS) - 1:
            L.append("")
    if summary.get("missing"):
        L += ["", f"Missing: {len(summary['missing'])} job(s)/arm value(s) (see metrics_summary.md)"]
    return "\n".join(L) + "\n"


def metrics_digest_markdown(summary: dict, highlights: str) -> str:
    """``metrics_digest.md`` (the study's ``analyze_dense_metrics.py`` layout).

    Parameters
    ----------
    summary : dict
        Content of ``metrics_summary.json`` (:func:`summarize_jobs`).
    highlights : str
        Text of ``aggregate_highlights.txt`` (quoted under ``## Highlights``).

    Returns
    -------
    str
        Markdown with the headings the verifier checks.
    """
    n_jobs, n_ok, n_failed = summary["n_jobs"], summary["n_success"], summary["n_failed"]
    L = ["# Phase G Dense Metrics Digest", ""]
    if n_failed > 0:
        L += ["**⚠️ FAILURES PRESENT ⚠️**", "", f"**{n_failed} of {n_jobs} comparison job(s) failed.**",
              "Review pipeline logs for diagnostic information.", ""]
    else:
        L += ["**✓ ALL COMPARISONS SUCCESSFUL ✓**", "", f"All {n_jobs} comparison job(s) completed successfully.", ""]
    L += ["## Pipeline Summary", "", f"- Total comparison jobs: {n_jobs}", f"- Successful: {n_ok}",
          f"- Failed: {n_failed}", "", "## Highlights", "", "```", highlights.strip(), "```", ""]
    d = compute_deltas(summary["aggregate_metrics"])
    L += ["## Key Deltas", "", "### MS-SSIM (Mean Values)", "", "| Comparison | Amplitude | Phase |",
          "|------------|-----------|-------|"]
    for other in DELTA_ARMS:
        x = d[f"vs_{other}"]["ms_ssim"]
        L.append(f"| PtychoPINN - {other} | {format_delta(x['amplitude'], 3)} | {format_delta(x['phase'], 3)} |")
    L += ["", "### MAE (Mean Values)", "", "**Note:** Negative delta = PtychoPINN better (lower error)", "",
          "| Comparison | Amplitude | Phase |", "|------------|-----------|-------|"]
    for other in DELTA_ARMS:
        x = d[f"vs_{other}"]["mae"]
        L.append(f"| PtychoPINN - {other} | {format_delta(x['amplitude'], 6)} | {format_delta(x['phase'], 6)} |")
    L.append("")
    L += _missing_section(summary)
    L += ["## References", "", "- Full metrics report: `aggregate_report.md`", "- Raw metrics data: `metrics_summary.json`",
          "- Detailed highlights: `aggregate_highlights.txt`"]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- inventory


def list_hub_files(hub, exclude=()) -> list[str]:
    """Every file of the hub as a sorted list of POSIX paths relative to the hub.

    In-flight temporary files of atomic writes (``.name.*.tmp*``) are left out,
    as is anything in ``exclude`` (relative POSIX paths).

    Parameters
    ----------
    hub : str or Path
    exclude : iterable of str
        Relative POSIX paths to leave out.

    Returns
    -------
    list of str
    """
    hub = Path(hub)
    out = []
    skip = set(exclude)
    for root, dirs, files in os.walk(hub):
        dirs[:] = [d for d in dirs if not (d.startswith(".") and ".tmp" in d)]
        for f in files:
            if f.startswith(".") and ".tmp" in f:
                continue
            rel = (Path(root) / f).relative_to(hub).as_posix()
            if rel not in skip:
                out.append(rel)
    return sorted(out)


def write_artifact_inventory(hub) -> Path:
    """Write ``analysis/artifact_inventory.txt``: every hub file, itself included, sorted.

    Call it last: a file written afterwards is missing from the inventory
    (``ptyanalysis verify`` reports it). ``analysis/verification_report.json``
    is never listed (the verifier writes it after checking).

    Parameters
    ----------
    hub : str or Path

    Returns
    -------
    Path
        The inventory (written atomically).
    """
    hub = Path(hub)
    inv = hub / "analysis" / FILES["inventory"]
    rel_inv = inv.relative_to(hub).as_posix()
    files = set(list_hub_files(hub, exclude=POST_INVENTORY_FILES))
    files.add(rel_inv)
    return write_text(inv, "".join(f"{p}\n" for p in sorted(files)))


# --------------------------------------------------------------------------- xarray


def results_dataset(jobs: list[JobRecord], parameters: dict | None = None):
    """All job metrics as an ``xarray.Dataset``.

    Parameters
    ----------
    jobs : list of JobRecord
        From :func:`collect_jobs`.
    parameters : dict, optional
        Stored (as JSON) in ``attrs["parameters"]``.

    Returns
    -------
    xarray.Dataset
        ``value`` (float64, NaN = missing) with dims
        ``(arm, dose, view, split, metric, component)``, and ``job_status``
        (str) with dims ``(dose, view, split)`` (``"absent"`` for a cell not
        in the grid). ``attrs``: ``parameters`` and ``software_versions``
        (JSON strings), ``generated_at``, ``conventions``.
    """
    import xarray as xr

    doses = sorted({j.dose for j in jobs})
    views = sorted({j.view for j in jobs}, key=lambda v: (VIEWS.index(v) if v in VIEWS else 99, v))
    splits = sorted({j.split for j in jobs}, key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s))
    arms = list(ARMS) + sorted({m["model"] for j in jobs for m in j.metrics} - set(ARMS) - {"GroundTruth"})
    metrics = list(TUPLE_METRICS) + list(SCALAR_METRICS)
    metrics += sorted({m["metric"] for j in jobs for m in j.metrics} - set(metrics))
    val = np.full((len(arms), len(doses), len(views), len(splits), len(metrics), len(COMPONENTS)), np.nan)
    status = np.full((len(doses), len(views), len(splits)), "absent", dtype=object)
    for j in jobs:
        di, vi, si = doses.index(j.dose), views.index(j.view), splits.index(j.split)
        status[di, vi, si] = j.status
        for m in j.metrics:
            if m["model"] not in arms:
                continue
            ai, mi = arms.index(m["model"]), metrics.index(m["metric"])
            for ci, comp in enumerate(COMPONENTS):
                v = m.get(comp)
                if v is not None:
                    val[ai, di, vi, si, mi, ci] = v
    ds = xr.Dataset(
        {"value": (("arm", "dose", "view", "split", "metric", "component"), val),
         "job_status": (("dose", "view", "split"), status.astype(str))},
        coords={"arm": arms, "dose": np.asarray(doses, dtype=np.int64), "view": views, "split": splits,
                "metric": metrics, "component": list(COMPONENTS)},
    )
    ds["value"].attrs["long_name"] = "comparison metric (NaN = missing)"
    ds["dose"].attrs["units"] = "expected photons per diffraction pattern"
    ds.attrs["parameters"] = json.dumps(parameters or {}, sort_keys=True, default=str)
    ds.attrs["software_versions"] = json.dumps(software_versions(), sort_keys=True)
    ds.attrs["generated_at"] = utc_now()
    ds.attrs["conventions"] = ("PtychoPINN compare_models metrics; amplitude/phase per metric, "
                               "scalar metrics in component 'value'")
    return ds


def save_dataset(ds, path) -> Path:
    """Atomically write a dataset as netCDF-4 (h5netcdf engine).

    Parameters
    ----------
    ds : xarray.Dataset
    path : str or Path

    Returns
    -------
    Path
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_results(hub):
    """The hub's results dataset: ``analysis/phase_g_metrics.nc`` if present, else built from the jobs.

    Parameters
    ----------
    hub : str or Path
        Study hub.

    Returns
    -------
    xarray.Dataset
        See :func:`results_dataset`.
    """
    import xarray as xr

    path = Path(hub) / "analysis" / FILES["dataset"]
    if path.exists():
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    return results_dataset(collect_jobs(hub))


# --------------------------------------------------------------------------- figures


def _new_figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Atomically save a matplotlib Figure as PNG and return the path.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
    dpi : int

    Returns
    -------
    Path
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _cell_labels(ds):
    return [f"{v}\n{s}" for v in ds["view"].values for s in ds["split"].values]


def plot_metric_grid(ds, metric: str = "ms_ssim", arms=None):
    """Heat maps of one metric for each arm over dose x (view, split).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metric : str
        ``"ms_ssim"``, ``"ssim"`` (fixed 0-1 colour scale) or any metric of ``ds``.
    arms : sequence of str, optional
        Arms to show (default all of ``ds``).

    Returns
    -------
    matplotlib.figure.Figure
        One row per arm, columns amplitude and phase; each cell shows its value,
        a missing cell is grey, hatched and labelled "missing".
    """
    from matplotlib.patches import Rectangle

    if metric not in ds["metric"].values:
        raise PtyAnalysisError(f"metric {metric!r} not in the dataset; available: {', '.join(map(str, ds['metric'].values))}")
    arms = list(ds["arm"].values) if arms is None else [canonical_arm(a) for a in arms]
    doses = list(ds["dose"].values)
    labels = _cell_labels(ds)
    bounded = metric in ("ms_ssim", "ssim")
    sub = ds["value"].sel(metric=metric)
    vals_all = sub.sel(component=["amplitude", "phase"]).values
    finite = vals_all[np.isfinite(vals_all)]
    vmin, vmax = (0.0, 1.0) if bounded or finite.size == 0 else (float(finite.min()), float(finite.max()) or 1.0)
    fig = _new_figure((2.2 + 1.3 * len(labels) * 2, 0.9 + 1.1 * len(doses) * len(arms)))
    axes = fig.subplots(len(arms), 2, squeeze=False)
    im = None
    for r, arm in enumerate(arms):
        for c, comp in enumerate(("amplitude", "phase")):
            ax = axes[r, c]
            m = sub.sel(arm=arm, component=comp).values.reshape(len(doses), -1)  # dose x (view*split)
            im = ax.imshow(np.ma.masked_invalid(m), vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
            for i in range(m.shape[0]):
                for k in range(m.shape[1]):
                    v = m[i, k]
                    if np.isfinite(v):
                        frac = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                        ax.text(k, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                                color="black" if frac > 0.6 else "white")
                    else:
                        ax.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.5",
                                               hatch="///", linewidth=0.5))
                        ax.text(k, i, "missing", ha="center", va="center", fontsize=8, color="0.2")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(doses)), [f"{int(d):g}" for d in doses], fontsize=8)
            ax.set_title(f"{arm} — {comp}", fontsize=9)
            if c == 0:
                ax.set_ylabel("dose (photons)")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=metric.upper().replace("_", "-"))
    fig.suptitle(f"{metric.upper().replace('_', '-')} per arm over dose x view x split")
    return fig


def _masked(img, coverage):
    img = np.asarray(img, dtype=float)
    if coverage is not None and coverage.shape == img.shape:
        img = np.where(coverage > 0, img, np.nan)
    return img


def plot_reconstructions(job_dir, title: str | None = None):
    """Ground truth and each arm, amplitude and phase, with shared colour limits.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``reconstructions.npz``.
    title : str, optional
        Figure title (default: the folder path below ``analysis``).

    Returns
    -------
    matplotlib.figure.Figure
        Rows amplitude and phase; columns ground truth then
        :data:`~ptyanalysis.conventions.ARMS`. Colour limits of a row are the
        1-99 percentiles of the ground truth on covered pixels (of all images
        when there is no ground truth); uncovered pixels (``coverage == 0``)
        are grey; an arm absent from the file is a hatched "missing" panel.
    """
    import matplotlib

    job_dir = Path(job_dir)
    images, coverage = read_reconstructions(job_dir / "reconstructions.npz")
    cols = ["GroundTruth"] + list(ARMS) + sorted(set(images) - set(ARMS) - {"GroundTruth"})
    fig = _new_figure((2.6 * len(cols) + 1, 5.4))
    axes = fig.subplots(2, len(cols), squeeze=False)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="0.75")
    pcmap = matplotlib.colormaps["twilight"].with_extremes(bad="0.75")
    for r, (comp, fn, cm) in enumerate((("amplitude", np.abs, cmap), ("phase", np.angle, pcmap))):
        ref = [images["GroundTruth"]] if "GroundTruth" in images else list(images.values())
        pool = np.concatenate([_masked(fn(x), coverage).ravel() for x in ref]) if ref else np.array([])
        pool = pool[np.isfinite(pool)]
        lo, hi = (np.percentile(pool, [1, 99]) if pool.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1e-6
        im = None
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name not in images:
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
                ax.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, hatch="///",
                                                          edgecolor="0.5"))
            else:
                img = _masked(fn(images[name]), coverage)
                im = ax.imshow(img, cmap=cm, vmin=lo, vmax=hi)
                if not np.any(np.abs(images[name]) > 0):
                    ax.text(0.5, 0.05, "all zero", ha="center", color="red", transform=ax.transAxes)
            if r == 0:
                ax.set_title("ground truth" if name == "GroundTruth" else name, fontsize=10)
            if c == 0:
                ax.set_ylabel(comp)
        if im is not None:
            fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.85, label=f"{comp} (shared limits)")
    fig.suptitle(title or "/".join(job_dir.parts[-3:]))
    return fig


def plot_frc_curves(job_dir, title: str | None = None):
    """FRC curves of every arm, amplitude and phase, with the 0.5 and 1/7 thresholds.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``*_frc_curves.csv`` files.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (amplitude, phase); an arm without a curve is named in the legend as missing.
    """
    job_dir = Path(job_dir)
    curves = read_frc_curves(job_dir)
    fig = _new_figure((10, 4))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colors = {"PtychoPINN": "tab:blue", "Baseline": "tab:orange", "PtyChi": "tab:green"}
    for ax, comp in zip(axes, ("amplitude", "phase")):
        for arm in list(ARMS) + sorted(set(curves) - set(ARMS)):
            if arm in curves:
                c = curves[arm]
                ax.plot(c["frequency_bin"], c[f"{comp}_frc"], label=arm, color=colors.get(arm))
            else:
                ax.plot([], [], label=f"{arm} (missing)", color=colors.get(arm), linestyle=":")
        ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8, label="0.5 threshold")
        ax.axhline(1 / 7, color="0.4", linestyle=":", linewidth=0.8, label="1/7 threshold")
        ax.set_xlabel("ring index (frequency bin)")
        ax.set_ylabel("FRC")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{comp} FRC")
        ax.legend(fontsize=7)
    fig.suptitle(title or "/".join(job_dir.parts[-3:]))
    return fig


def plot_metrics_vs_dose(ds, metrics=("ms_ssim", "ssim", "mae", "frc50")):
    """Metrics against dose: one panel per metric and component, one line per arm/view/split.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metrics : sequence of str
        Metrics to plot (rows).

    Returns
    -------
    matplotlib.figure.Figure
        Colour = arm, line style = view, marker = split; dose on a log axis.
        Missing values leave gaps.
    """
    metrics = [m for m in metrics if m in ds["metric"].values]
    fig = _new_figure((10, 2.6 * max(1, len(metrics)) + 0.6))
    axes = fig.subplots(max(1, len(metrics)), 2, squeeze=False)
    colors = {"PtychoPINN": "tab:blue", "Baseline": "tab:orange", "PtyChi": "tab:green"}
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D"]
    doses = ds["dose"].values.astype(float)
    for r, metric in enumerate(metrics):
        for c, comp in enumerate(("amplitude", "phase")):
            ax = axes[r, c]
            for arm in ds["arm"].values:
                for vi, view in enumerate(ds["view"].values):
                    for si, split in enumerate(ds["split"].values):
                        y = ds["value"].sel(arm=arm, view=view, split=split, metric=metric, component=comp).values
                        if not np.any(np.isfinite(y)):
                            continue
                        ax.plot(doses, y, color=colors.get(str(arm)), linestyle=styles[vi % 4],
                                marker=markers[si % 4], label=f"{arm} {view}/{split}")
            ax.set_xscale("log")
            ax.set_title(f"{metric} — {comp}", fontsize=9)
            ax.set_xlabel("dose (photons per pattern)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7)
    fig.suptitle("Metrics against dose (gaps = missing)")
    return fig


def _job_stem(job: JobRecord) -> str:
    return f"{dose_label(job.dose)}_{job.view}_{job.split}"


def expected_figures(jobs) -> list[str]:
    """Figure paths (relative to ``analysis/``) :func:`write_figures` produces for ``jobs``.

    Parameters
    ----------
    jobs : list of JobRecord

    Returns
    -------
    list of str
        The grids and dose plot, plus reconstructions / FRC per successful job
        that has the input files.
    """
    out = [f"{FIGURES_DIR}/ms_ssim_grid.png", f"{FIGURES_DIR}/ssim_grid.png", f"{FIGURES_DIR}/metrics_vs_dose.png"]
    for j in jobs:
        if j.status != "success":
            continue
        if (j.output_dir / "reconstructions.npz").exists():
            out.append(f"{FIGURES_DIR}/reconstructions_{_job_stem(j)}.png")
        if any(j.output_dir.glob("*_frc_curves.csv")):
            out.append(f"{FIGURES_DIR}/frc_{_job_stem(j)}.png")
    return out


def write_figures(hub, ds, jobs) -> list[Path]:
    """Write every Phase G figure under ``analysis/figures`` and return the paths.

    Parameters
    ----------
    hub : str or Path
    ds : xarray.Dataset
        :func:`results_dataset` of ``jobs``.
    jobs : list of JobRecord

    Returns
    -------
    list of Path
        Every PNG written (atomically).
    """
    figdir = Path(hub) / "analysis" / FIGURES_DIR
    written = [save_figure(plot_metric_grid(ds, "ms_ssim"), figdir / "ms_ssim_grid.png"),
               save_figure(plot_metric_grid(ds, "ssim"), figdir / "ssim_grid.png"),
               save_figure(plot_metrics_vs_dose(ds), figdir / "metrics_vs_dose.png")]
    for j in jobs:
        if j.status != "success":
            continue
        if (j.output_dir / "reconstructions.npz").exists():
            written.append(save_figure(plot_reconstructions(j.output_dir, j.label), figdir / f"reconstructions_{_job_stem(j)}.png"))
        if any(j.output_dir.glob("*_frc_curves.csv")):
            written.append(save_figure(plot_frc_curves(j.output_dir, j.label), figdir / f"frc_{_job_stem(j)}.png"))
    return written


# --------------------------------------------------------------------------- notebook + HTML


def execute_report_notebook(notebook, hub, out_ipynb=None, kernel_name: str = "python3", timeout_s: int | None = 1800) -> Path:
    """Execute the Phase G notebook with papermill (parameter ``hub``).

    Parameters
    ----------
    notebook : str or Path
        The notebook (``notebooks/03_phase_g_figures.ipynb``); its parameters
        cell must define ``hub``.
    hub : str or Path
        Study hub (passed as an absolute path).
    out_ipynb : str or Path, optional
        Executed notebook (default ``HUB/analysis/phase_g_report.ipynb``).
    kernel_name : str
        Jupyter kernel.
    timeout_s : int, optional
        Per-cell execution timeout.

    Returns
    -------
    Path
        The executed notebook (written atomically).
    """
    import papermill as pm

    notebook, hub = Path(notebook).resolve(), Path(hub).resolve()
    if not notebook.exists():
        raise PtyAnalysisError(f"Phase G notebook not found: {notebook}")
    declared = pm.inspect_notebook(str(notebook))
    if "hub" not in declared:
        raise PtyAnalysisError(f"{notebook}: the cell tagged 'parameters' must define `hub` (found: {', '.join(declared) or 'none'})")
    # phase_g has just written the artifacts: the notebook only shows them (when it can be told so)
    params = {"hub": str(hub), **({"write_artifacts": False} if "write_artifacts" in declared else {})}
    out = Path(out_ipynb) if out_ipynb else hub / "analysis" / FILES["executed_notebook"]
    with atomic_path(out) as tmp:
        pm.execute_notebook(str(notebook), str(tmp), parameters=params, kernel_name=kernel_name,
                            progress_bar=False, execution_timeout=timeout_s,
                            resources={"metadata": {"path": str(notebook.parent)}})
    return out


def render_html(executed_notebook_path, out_html) -> Path:
    """Render an executed notebook as one self-contained HTML file.

    Parameters
    ----------
    executed_notebook_path : str or Path
        An executed ``.ipynb``.
    out_html : str or Path
        Destination (written atomically); images are embedded.

    Returns
    -------
    Path
        ``out_html``.
    """
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(executed_notebook_path)
    if not src.exists():
        raise PtyAnalysisError(f"executed notebook not found: {src}; run the Phase G notebook first")
    nb = nbformat.read(src, as_version=4)
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(src.parent)}})
    return write_text(out_html, body)


def default_notebook() -> Path | None:
    """``notebooks/03_phase_g_figures.ipynb`` next to the package, if it exists."""
    p = Path(__file__).resolve().parents[1] / "notebooks" / "03_phase_g_figures.ipynb"
    return p if p.exists() else None


# --------------------------------------------------------------------------- driver


def phase_g(hub, notebook=None, html: bool = True, figures: bool = True,
            ms_ssim_threshold: float = MS_SSIM_THRESHOLD) -> PhaseGResult:
    """Aggregate a hub's per-job results into every Phase G artifact.

    Parameters
    ----------
    hub : str or Path
        Study hub with ``analysis/dose_<D>/<view>/<split>/comparison_metrics.csv``
        files (and, usually, the grid's ``comparison_manifest.json``).
    notebook : str or Path, optional
        Phase G notebook to execute and render as ``analysis/phase_g_report.html``
        (default :func:`default_notebook`; skipped when there is none or
        ``html`` is False). It runs after the artifacts, the netCDF file and
        the figures are written, with the parameter ``hub``; it should read
        them (:func:`load_results`, the ``plot_*`` functions) and must not
        call :func:`phase_g` itself.
    html : bool
        Execute and render the notebook.
    figures : bool
        Write the PNG figures.
    ms_ssim_threshold : float
        Threshold of the MS-SSIM sanity check in ``aggregate_report.md``.

    Returns
    -------
    PhaseGResult

    Raises
    ------
    PtyAnalysisError
        No hub, no job at all, or malformed per-job files.
    """
    hub = Path(hub).resolve()
    analysis = hub / "analysis"
    if not hub.is_dir():
        raise PtyAnalysisError(f"hub not found: {hub}")
    jobs = collect_jobs(hub)
    if not jobs:
        raise PtyAnalysisError(
            f"{analysis}: no comparison job found (expected comparison_manifest.json or "
            "dose_<D>/<view>/<split>/comparison_metrics.csv); run `ptyanalysis grid` first")
    summary = summarize_jobs(jobs, hub)
    deltas = delta_summary(summary)
    files: dict = {}
    files["metrics_summary_json"] = write_json(analysis / FILES["metrics_summary_json"], summary)
    files["metrics_summary_md"] = write_text(analysis / FILES["metrics_summary_md"], metrics_summary_markdown(summary))
    files["delta_summary_json"] = write_json(analysis / FILES["delta_summary_json"], deltas)
    d = deltas["deltas"]
    files["delta_highlights"] = write_text(analysis / FILES["delta_highlights"], "\n".join(delta_highlight_lines(d)) + "\n")
    files["delta_preview"] = write_text(analysis / FILES["delta_preview"], "\n".join(delta_preview_lines(d)) + "\n")
    files["ssim_grid_summary"] = write_text(analysis / FILES["ssim_grid_summary"], ssim_grid_markdown(d))
    files["aggregate_report"] = write_text(analysis / FILES["aggregate_report"], aggregate_report_markdown(summary, ms_ssim_threshold))
    hl = aggregate_highlights_text(summary, ms_ssim_threshold)
    files["aggregate_highlights"] = write_text(analysis / FILES["aggregate_highlights"], hl)
    files["metrics_digest"] = write_text(analysis / FILES["metrics_digest"], metrics_digest_markdown(summary, hl))
    manifest = read_manifest(hub) or {}
    params = {"hub": str(hub), "ms_ssim_threshold": ms_ssim_threshold,
              "grid_parameters": manifest.get("parameters"), "grid_spec": manifest.get("spec"),
              "n_jobs": summary["n_jobs"], "n_success": summary["n_success"]}
    ds = results_dataset(jobs, params)
    files["dataset"] = save_dataset(ds, analysis / FILES["dataset"])
    figs = tuple(write_figures(hub, ds, jobs)) if figures else ()
    if html:
        nb = Path(notebook) if notebook else default_notebook()
        if nb is not None:
            executed = execute_report_notebook(nb, hub)
            files["executed_notebook"] = executed
            files["html"] = render_html(executed, analysis / FILES["html"])
    files["inventory"] = write_artifact_inventory(hub)
    return PhaseGResult(hub=hub, summary=summary, deltas=deltas, dataset=ds, files=files, figures=figs,
                        missing=tuple(summary["missing"]))


def configure_parser(parser) -> None:
    """Add the ``phase-g`` command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", help="study hub (with analysis/dose_<D>/<view>/<split>/ job folders)")
    parser.add_argument("--notebook", default=None,
                        help="Phase G notebook to execute and render to analysis/phase_g_report.html "
                             "(default: notebooks/03_phase_g_figures.ipynb when present)")
    parser.add_argument("--no-html", action="store_true", help="do not execute/render the Phase G notebook")
    parser.add_argument("--no-figures", action="store_true", help="do not write the PNG figures")
    parser.add_argument("--ms-ssim-threshold", type=float, default=MS_SSIM_THRESHOLD,
                        help="MS-SSIM sanity threshold in aggregate_report.md (default 0.80)")


def run_cli(args) -> int:
    """Run ``ptyanalysis phase-g``; print the highlights and any missing results.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0 (bad input raises :class:`PtyAnalysisError`: exit status 2).
    """
    res = phase_g(args.hub, notebook=args.notebook, html=not args.no_html, figures=not args.no_figures,
                  ms_ssim_threshold=args.ms_ssim_threshold)
    print(f"Phase G: {res.summary['n_success']}/{res.summary['n_jobs']} jobs with metrics; "
          f"wrote {len(res.files)} artifacts and {len(res.figures)} figures under {res.hub / 'analysis'}")
    print("\n".join(delta_highlight_lines(res.deltas["deltas"])))
    if res.missing:
        print(f"missing ({len(res.missing)}):")
        for m in res.missing:
            print(f"  - {m}")
    return 0

"""Collecting per-job results from a hub: the comparison CSVs, FRC curves, reconstructions and the manifest."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import (
    PTYANALYSIS_KEY_PREFIX,
    RECONSTRUCTION_COMPONENTS,
    RECONSTRUCTION_OFFSET_PREFIXES,
    RECONSTRUCTION_PREFIXES,
    SPLITS,
    VIEWS,
    arm_from_reconstruction_prefix,
    canonical_arm,
    dose_label,
)
from ..errors import PtyAnalysisError
from ..phase_g.schema import (
    FILES,
    FRC_COLUMNS,
    METRICS_COLUMNS,
    SCALAR_METRICS,
    TUPLE_METRICS,
)

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
    trust : JobTrust or None
        Whether its per-job results can be trusted (:func:`ptyanalysis.phase_g.trust.job_trust`);
        ``None`` when not checked (a job without metrics, or ``collect_jobs(check_trust=False)``).
    """

    dose: int
    view: str
    split: str
    output_dir: Path
    status: str
    metrics: tuple = ()
    error: str | None = None
    trust: object = None

    @property
    def trust_flags(self) -> tuple:
        """The :class:`~ptyanalysis.phase_g.trust.TrustFlag` s of the job (empty when none or not checked)."""
        return self.trust.flags if self.trust is not None else ()

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
    imported : StudyImport or None
        The PtychoPINN study folders read as jobs first
        (:func:`ptyanalysis.phase_g.ptychopinn_study.import_studies`), or ``None``.
    """

    hub: Path
    summary: dict
    deltas: dict
    dataset: object
    files: dict = field(default_factory=dict)
    figures: tuple = ()
    missing: tuple = ()
    imported: object = None


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


@dataclass(frozen=True)
class ReconstructionFile:
    """A job's ``reconstructions.npz`` (or ``reconstructions_aligned.npz``), whichever tool wrote it.

    Attributes
    ----------
    path : Path
    layout : str
        ``"study"`` (PtychoPINN ``compare_models``: ``<prefix>_{amplitude,phase,complex}``),
        ``"ptyanalysis"`` (the study's names plus ``ptyanalysis__*`` arrays) or
        ``"ptyanalysis-legacy"`` (one complex array per arm name, ``ground_truth``, ``coverage``).
    images : dict
        ``{"GroundTruth" | arm: complex 2-D ndarray}``, each on its own canvas as stored.
    coverage : ndarray or None
        The evaluation mask / coverage map of all arms (ptyanalysis files only).
    arm_coverage : dict
        ``{arm: coverage map}`` on the arm's canvas (ptyanalysis files only).
    offsets : dict
        ``{arm: (dy, dx) or None}``: registration offsets (aligned files; ``None`` = not registered).
    origin : tuple or None
        Object pixel (row, col) of pixel (0, 0) of every arm's canvas, when the file says
        (ptyanalysis files); ``None``: unknown (the study's own canvases are centred on the scan).
    counts : dict
        ``{arm: {"n_patches": int, "n_offsets": int}}``: patches stitched and the places they were meant for, where the file records them.
    notes : tuple of str
        What was accepted loosely (e.g. an object array that was skipped).
    """

    path: Path
    layout: str
    images: dict
    coverage: np.ndarray | None = None
    arm_coverage: dict = field(default_factory=dict)
    offsets: dict = field(default_factory=dict)
    origin: tuple | None = None
    counts: dict = field(default_factory=dict)
    notes: tuple = ()


def _npz_members(path: Path) -> dict:
    """Every member of an NPZ as an array; 0-d object members (e.g. a ``None`` offset) unpickled, others skipped.

    Returns ``{key: ndarray}`` plus a list of skipped keys under ``None``.
    """
    import zipfile

    out: dict = {}
    skipped: list = []
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PtyAnalysisError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc}); "
                               "regenerate it with the comparison job") from None
    with zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            key = name[:-4]
            try:
                with zf.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(fh))
                if dtype.hasobject and shape != ():
                    skipped.append(key)  # an object array that is not a scalar: never unpickled
                    continue
                with zf.open(name) as fh:
                    # only a 0-d object member (the study's None offsets) is unpickled, as io.py does for _metadata
                    out[key] = np.lib.format.read_array(fh, allow_pickle=dtype.hasobject)
            except Exception as exc:  # noqa: BLE001 - a damaged member, whatever numpy/zipfile raise
                raise PtyAnalysisError(f"{path}: array {key!r} cannot be read ({type(exc).__name__}: {exc}); "
                                       "store plain numeric arrays (regenerate the file with the comparison job)") from None
    out[None] = skipped
    return out


def _scalar(arr, path, key):
    v = np.asarray(arr)
    if v.shape != () and v.size != 1:
        raise PtyAnalysisError(f"{path}: array {key!r} must be a scalar (0-d), got shape {v.shape}")
    v = v.reshape(()).item()
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise PtyAnalysisError(f"{path}: array {key!r} must hold a number or None, got {v!r}") from None


def _image_from_components(parts: dict, path, prefix) -> np.ndarray | None:
    """One image from its ``amplitude`` / ``phase`` / ``complex`` arrays (complex preferred; squeezed to 2-D)."""
    arrs = {}
    for comp, a in parts.items():
        a = np.asarray(a)
        if a.dtype.hasobject:  # the study writes None for a missing arm
            if a.shape == () and a.item() is None:
                continue
            raise PtyAnalysisError(f"{path}: array '{prefix}_{comp}' is an object array, expected an image")
        a = np.squeeze(a)
        if a.ndim != 2:
            raise PtyAnalysisError(f"{path}: array '{prefix}_{comp}' must be a 2-D image (after squeezing), "
                                   f"got shape {np.shape(parts[comp])}")
        arrs[comp] = a
    shapes = {c: a.shape for c, a in arrs.items()}
    if len(set(shapes.values())) > 1:
        raise PtyAnalysisError(f"{path}: the arrays of {prefix!r} disagree in shape ({shapes}); "
                               "amplitude, phase and complex must be on the same canvas")
    if "complex" in arrs:
        return arrs["complex"].astype(np.complex64)
    if "amplitude" in arrs and "phase" in arrs:
        return (arrs["amplitude"] * np.exp(1j * arrs["phase"])).astype(np.complex64)
    if "amplitude" in arrs:
        return arrs["amplitude"].astype(np.complex64)
    return None


def read_reconstruction_file(path) -> ReconstructionFile:
    """Read a job's reconstruction NPZ in the study's layout, ptyanalysis's, or ptyanalysis's previous one.

    Parameters
    ----------
    path : str or Path
        ``reconstructions.npz`` or ``reconstructions_aligned.npz``. Study layout: arrays
        ``<prefix>_{amplitude,phase,complex}`` (prefixes
        :data:`~ptyanalysis.conventions.RECONSTRUCTION_PREFIXES`, aliases accepted), offsets
        ``<prefix>_offset_{dy,dx}`` as 0-d arrays (``None`` as a 0-d object array: only such 0-d
        object members are unpickled). ptyanalysis adds ``ptyanalysis__*`` arrays. The previous
        ptyanalysis layout (one complex array per arm name, ``ground_truth``, ``coverage``,
        ``coverage_<arm>``) is read too.

    Returns
    -------
    ReconstructionFile

    Raises
    ------
    PtyAnalysisError
        Unreadable file or member, an image array under an unknown arm prefix, or the arrays of one
        image disagreeing in shape.
    """
    path = Path(path)
    members = _npz_members(path)
    skipped = members.pop(None)
    notes = [f"{path.name}: object array {k!r} skipped (not an image)" for k in skipped]
    P = PTYANALYSIS_KEY_PREFIX
    comps = RECONSTRUCTION_COMPONENTS
    offset_prefix = {v: k for k, v in RECONSTRUCTION_OFFSET_PREFIXES.items()}
    study_keys = [k for k in members if not k.startswith(P) and k.rpartition("_")[2] in comps and "_" in k]
    ours = any(k.startswith(P) for k in members)
    images: dict = {}
    arm_coverage: dict = {}
    offsets: dict = {}
    counts: dict = {}
    coverage = None
    origin = None
    if study_keys or ours:
        layout = "ptyanalysis" if ours else "study"
        groups: dict = {}
        for key in study_keys:
            prefix, _, comp = key.rpartition("_")
            try:
                arm = arm_from_reconstruction_prefix(prefix)
            except PtyAnalysisError as exc:
                raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
            groups.setdefault(arm, {})[comp] = members[key]
        for arm, parts in groups.items():
            img = _image_from_components(parts, path, RECONSTRUCTION_PREFIXES.get(arm, arm))
            if img is not None:
                images[arm] = img
        for key, arr in members.items():
            if key.endswith(("_offset_dy", "_offset_dx")) and not key.startswith(P):
                prefix, axis = key[:-len("_offset_dy")], key[-2:]
                arm = offset_prefix.get(prefix)
                if arm is None:
                    try:
                        arm = canonical_arm(prefix)
                    except PtyAnalysisError as exc:
                        raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
                offsets.setdefault(arm, {})[axis] = _scalar(arr, path, key)
        offsets = {a: (None if d.get("dy") is None or d.get("dx") is None else (d["dy"], d["dx"]))
                   for a, d in offsets.items()}
        for key, arr in members.items():
            if not key.startswith(P):
                continue
            name = key[len(P):]
            if name == "coverage":
                coverage = np.asarray(arr)
            elif name == "origin":
                o = np.asarray(arr, dtype=np.float64).reshape(-1)
                if o.size != 2 or not np.all(np.isfinite(o)):
                    raise PtyAnalysisError(f"{path}: array {key!r} must be (row, col), got {o.tolist()}")
                origin = (round(o[0]), round(o[1]))
            elif name.startswith(("coverage_", "n_patches_", "n_offsets_")):
                what, _, prefix = name.partition("_") if name.startswith("coverage_") else name.rpartition("_")
                try:
                    arm = arm_from_reconstruction_prefix(prefix)
                except PtyAnalysisError as exc:
                    raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
                if what == "coverage":
                    arm_coverage[arm] = np.asarray(arr)
                else:
                    v = _scalar(arr, path, key)
                    if v is not None:
                        counts.setdefault(arm, {})[what] = int(v)
    else:
        layout = "ptyanalysis-legacy"
        for key, arr in members.items():
            if key == "coverage":
                coverage = np.asarray(arr)
                continue
            if key.startswith("coverage_"):
                try:
                    arm_coverage[canonical_arm(key[len("coverage_"):])] = np.asarray(arr)
                except PtyAnalysisError as exc:
                    raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
                continue
            if arr.ndim != 2 or not (np.iscomplexobj(arr) or key.lower() in ("ground_truth", "gt")):
                continue
            try:
                name = canonical_arm(key)
            except PtyAnalysisError as exc:
                raise PtyAnalysisError(f"{path}: array {key!r}: {exc}") from None
            images[name] = np.asarray(arr)
    return ReconstructionFile(path=path, layout=layout, images=images, coverage=coverage,
                              arm_coverage=arm_coverage, offsets=offsets, origin=origin, counts=counts,
                              notes=tuple(notes))


def read_reconstructions(path) -> tuple[dict, np.ndarray | None]:
    """Read a job's ``reconstructions.npz`` (any layout of :func:`read_reconstruction_file`).

    Parameters
    ----------
    path : str or Path
        The NPZ.

    Returns
    -------
    images : dict
        ``{"GroundTruth" | arm: complex 2-D ndarray}`` (each arm on its own canvas in the study's files).
    coverage : ndarray or None
        The coverage / evaluation mask of all arms, if the file has one.

    Raises
    ------
    PtyAnalysisError
        See :func:`read_reconstruction_file`.
    """
    rec = read_reconstruction_file(path)
    return rec.images, rec.coverage


def read_manifest(hub) -> dict | None:
    """Return ``HUB/analysis/comparison_manifest.json`` parsed, or ``None`` if absent.

    Raises
    ------
    PtyAnalysisError
        If the file exists but is not valid JSON.

    Parameters
    ----------
    hub : str or Path
        Study hub after ``ptyanalysis grid``.

    Returns
    -------
    dict or None
        The manifest ``ptyanalysis grid`` wrote.
    """
    path = _hub.analysis_root(hub) / FILES["manifest"]
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


def collect_jobs(hub, check_trust: bool = True) -> list[JobRecord]:
    """Find every comparison job of a hub and read its metrics.

    The jobs are the union of the grid manifest's jobs (if
    ``analysis/comparison_manifest.json`` exists) and the folders
    ``analysis/dose_<D>/<view>/<split>/`` holding a ``comparison_metrics.csv``.
    A job the manifest marks failed is ``"failed"`` even if old metrics exist.

    Parameters
    ----------
    hub : str or Path
        Study hub.
    check_trust : bool
        Check each successful job's reconstructions and logs
        (:func:`ptyanalysis.phase_g.trust.job_trust`) into :attr:`JobRecord.trust`.

    Returns
    -------
    list of JobRecord
        Sorted by dose, view, split.
    """
    hub = Path(hub)
    analysis = _hub.analysis_root(hub)
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
                metrics = tuple(read_comparison_metrics(csv_path))
                trust = None
                if check_trust:
                    from .trust import job_trust

                    trust = job_trust(hub, dose, view, split, out_dir)
                jobs.append(JobRecord(dose, view, split, out_dir, "success", metrics, trust=trust))
            else:
                jobs.append(JobRecord(dose, view, split, out_dir, "missing", (), f"{csv_path.relative_to(hub).as_posix()} not found"))
        else:
            jobs.append(JobRecord(dose, view, split, out_dir, "failed", (), err))
    return jobs



"""Whether a job's per-job results can be trusted: checks on the reconstructions behind its numbers.

A comparison job's metrics are only as good as the images they were computed on.
The study's own comparison script (PtychoPINN ``compare_models``) exited 0 while
it stitched its PtychoPINN arm from ``ceil(n/32)`` blended outputs at the first
``ceil(n/32)`` offsets (a model that merges a call with >= 64 patches into one
output) and fed its Baseline inputs unlike its training (a mostly-zero output).
Nothing in ``comparison_metrics.csv`` says so. :func:`job_trust` checks, for each
arm of a job's ``reconstructions.npz`` (whichever tool wrote it:
:func:`ptyanalysis.phase_g.collect.read_reconstruction_file`):

``mostly_zero``
    The fraction of zero (or non-finite) pixels of the arm's image within the
    region the scan positions span (the bounding box of the positions on the
    arm's canvas; the whole canvas when the positions or the frame are unknown)
    is at least :data:`MOSTLY_ZERO_FRACTION`. "Nonzero" is the package's one rule
    (:func:`ptyanalysis.inference.stats.count_values`: finite and different from 0).
``low_scan_coverage``
    Fewer than :data:`SCAN_COVERAGE_MIN` of the scan positions fall on a nonzero
    pixel of the arm's image: the reconstruction covers only part of the scan
    (e.g. a few scattered tiles). Positions come from the hub's
    ``data/phase_c/dose_<D>/patched_<split>.npz`` (``xcoords``, ``ycoords``),
    restricted to the view when ``views.json`` lists it.
``patch_count``
    The number of patches stitched differs from the number of offsets (places)
    they were stitched at, where the files (ptyanalysis's
    ``ptyanalysis__n_patches_<prefix>`` / ``ptyanalysis__n_offsets_<prefix>``) or
    the job's logs (``*.log`` under the job folder, e.g. ``logs/debug.log``;
    compare_models logs ``PINN patches shape before reassembly: (19, 64, 64, 1)``
    and ``PINN offsets shape before reassembly: (604, 1, 2, 1)``, and for the
    Baseline ``Complex patches shape: (...)`` and ``Baseline inference offsets
    shape: (...)``) tell them.

``placement``
    The job's ``comparison.nc`` (``arm_details[arm].placement_audit``, written by
    :func:`ptyanalysis.pipeline.compare.run_network_arm`) found that the arm's
    patches agree where neighbours overlap clearly better under another
    placement convention (offsets negated, x/y swapped, patch transposed, ...)
    than under the one they were stitched with
    (:func:`ptyanalysis.imaging.placement.placement_audit`, status
    ``contradicted``): the stitched image is not consistent with itself, so
    its metrics measure the reassembly, not the model.

``under_trained``
    The model's training loss was still falling at the end of training
    (:func:`ptyanalysis.training_history.loss_still_falling`: over the last 20 % of
    the epochs, at least 3, a fitted fall beyond 2 standard errors of the slope and
    at least 5 % of the loss's range). Histories are looked for next to the model
    (the hub's ``data/phase_e/dose_<D>/baseline/gs1`` and ``<view>/gs2`` folders:
    ptyanalysis's ``params.json``, a ``history.json``, Lightning's
    ``lightning_logs/version_<N>/metrics.csv``) and, for a job imported from a
    PtychoPINN study folder, where its import record points
    (:mod:`ptyanalysis.phase_g.ptychopinn_study`). The numbers are those of an
    unconverged model: they say little about what the method can do. The same
    flag is raised when the job's ``comparison.nc`` (``arm_details[arm].collapsed``,
    :func:`ptyanalysis.pipeline.compare.run_network_arm`) found the arm's output the
    same for every sample: it does not depend on the input.

Frames: ptyanalysis's files record the object pixel of each canvas's pixel
(0, 0) (``ptyanalysis__origin``); its previous files put every arm on the ground
truth's frame; the study's canvases are the arm's own, centred on the mean of the
offsets (``reassemble_position``: position ``p`` lands at ``side / 2 + (p - mean)``).
When more than :data:`OUTSIDE_MAX` of the positions fall outside a canvas the
frame is taken as unknown and the coverage check is skipped, with a note.

Nothing here changes a number: the flags are added beside the study's fields
(``metrics_summary.json``, ``metrics_summary.md``, ``verify``'s own check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import dose_label, positions_from_xy
from ..errors import PtyAnalysisError
from ..training_history import find_training_histories, judge_histories
from .collect import read_reconstruction_file
from .ptychopinn_study import training_histories

#: An arm is "mostly zero" when at least this fraction of its pixels in the scan region is zero.
MOSTLY_ZERO_FRACTION = 0.9
#: An arm covers "too little of the scan" when fewer than this fraction of the positions are on nonzero pixels.
SCAN_COVERAGE_MIN = 0.8
#: More than this fraction of positions outside a canvas: its frame is unknown (coverage not checked).
OUTSIDE_MAX = 0.05
#: Largest log file read (bytes, from its end); bigger logs are read from their last part, with a note.
MAX_LOG_BYTES = 64 * 2**20

#: compare_models' log lines giving the patches stitched and the offsets they were stitched at, per arm.
LOG_PATTERNS = {
    "PtychoPINN": {"n_patches": re.compile(r"PINN patches shape before reassembly: \((\d+)\s*,"),
                   "n_offsets": re.compile(r"PINN offsets shape before reassembly: \((\d+)\s*,")},
    "Baseline": {"n_patches": re.compile(r"Complex patches shape: \((\d+)\s*,"),
                 "n_offsets": re.compile(r"Baseline inference offsets shape: \((\d+)\s*,")},
}


@dataclass(frozen=True)
class TrustFlag:
    """One reason not to trust one arm of one job.

    Attributes
    ----------
    arm : str
        Canonical arm name.
    check : str
        ``"mostly_zero"``, ``"low_scan_coverage"``, ``"patch_count"``, ``"placement"`` or ``"under_trained"``.
    message : str
        One sentence with the evidence, e.g. ``"19 patches stitched for 604 offsets (logs/debug.log)"``.
    evidence : dict
        The numbers behind it and where they come from.
    job : str
        The job's label ``dose_<D>/<view>/<split>`` (empty when checked without a hub).
    """

    arm: str
    check: str
    message: str
    evidence: dict = field(default_factory=dict)
    job: str = ""

    def as_dict(self) -> dict:
        """JSON-ready ``{job, arm, check, message, evidence}``."""
        return {"job": self.job, "arm": self.arm, "check": self.check, "message": self.message,
                "evidence": dict(self.evidence)}

    def __str__(self) -> str:
        """``dose_<D>/<view>/<split>: <arm> <check>: <message>`` (one line of the summary's ``untrusted``)."""
        return f"{self.job + ': ' if self.job else ''}{self.arm} {self.check}: {self.message}"


@dataclass(frozen=True)
class JobTrust:
    """What :func:`job_trust` measured for one job.

    Attributes
    ----------
    flags : tuple of TrustFlag
        Empty when nothing checked is wrong.
    arms : dict
        ``{arm: {...}}``: per-arm measurements (canvas, frame, zero fraction, scan coverage,
        patch counts) whether flagged or not.
    notes : tuple of str
        What could not be checked and why, and what was accepted loosely.
    sources : tuple of str
        Files read (job-relative).
    """

    flags: tuple = ()
    arms: dict = field(default_factory=dict)
    notes: tuple = ()
    sources: tuple = ()

    @property
    def trusted(self) -> bool:
        """True when no check flagged anything (which is not proof: see :attr:`notes`)."""
        return not self.flags

    def as_dict(self) -> dict:
        """JSON-ready ``{trusted, flags, arms, notes, sources}``."""
        return {"trusted": self.trusted, "flags": [f.as_dict() for f in self.flags], "arms": self.arms,
                "notes": list(self.notes), "sources": list(self.sources)}


# --------------------------------------------------------------------------- inputs


def scan_positions(hub, dose, view: str, split: str):
    """The scan positions of a job, from the hub's split file (restricted to the view when known).

    Parameters
    ----------
    hub : str or Path
        Study hub (its split file and ``views.json`` are read).
    dose : float
        Photons per pattern.
    view, split : str
        The job's view and split.

    Returns
    -------
    positions : ndarray of shape (n, 2) or None
        (row, col) in object pixels; ``None`` when the hub has no such split file or it holds no positions.
    note : str
        Where the positions come from, or why there are none.
    """

    path = _hub.dataset_path(hub, dose, split)
    rel = _relative(path, hub)
    if not path.is_file():
        return None, f"scan positions unknown: {rel} not found"
    try:
        with np.load(path, allow_pickle=False) as z:
            if "xcoords" not in z.files or "ycoords" not in z.files:
                return None, f"scan positions unknown: {rel} has no xcoords/ycoords"
            pos = positions_from_xy(z["xcoords"], z["ycoords"])
    except (OSError, ValueError, EOFError) as exc:
        return None, f"scan positions unknown: {rel} cannot be read ({type(exc).__name__}: {exc})"
    except PtyAnalysisError as exc:
        return None, f"scan positions unknown: {rel}: {exc}"
    if not np.all(np.isfinite(pos)) or not len(pos):
        return None, f"scan positions unknown: {rel} has no finite positions"
    views = _hub.load_views(hub, dose)
    if views.get(view, {}).get(split) is not None:
        ix = views[view][split]
        if ix.size and (ix.min() < 0 or ix.max() >= len(pos)):
            return None, f"scan positions unknown: {_relative(_hub.views_path(hub, dose), hub)} indexes past {rel}"
        return pos[ix], f"{len(ix)} positions of {rel} (view {view!r} of views.json)"
    return pos, f"{len(pos)} positions of {rel} (all of the split: the hub has no view subsample for {view!r})"


def _relative(path: Path, root) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def log_patch_counts(job_dir) -> tuple[dict, list]:
    """Patches stitched and offsets per arm, from the logs of a job folder (compare_models' log lines).

    Parameters
    ----------
    job_dir : str or Path
        The job folder; every ``*.log`` below it is read (the last occurrence of a line wins).

    Returns
    -------
    counts : dict
        ``{arm: {"n_patches": int, "n_offsets": int, "source": str}}`` (either count may be absent).
    sources : list of str
        Logs read (job-relative).
    """
    job_dir = Path(job_dir)
    counts: dict = {}
    sources = []
    for log in sorted(job_dir.rglob("*.log")):
        if not log.is_file():
            continue
        with log.open("rb") as fh:
            size = log.stat().st_size
            if size > MAX_LOG_BYTES:
                fh.seek(size - MAX_LOG_BYTES)
            text = fh.read().decode("utf-8", errors="replace")
        rel = _relative(log, job_dir)
        found = False
        for arm, pats in LOG_PATTERNS.items():
            for what, pat in pats.items():
                last = None
                for line in text.splitlines():
                    m = pat.search(line)
                    if m:
                        last = int(m.group(1))
                if last is not None:
                    counts.setdefault(arm, {})[what] = last
                    counts[arm].setdefault("source", rel)
                    found = True
        if found:
            sources.append(rel)
    return counts, sources


# --------------------------------------------------------------------------- checks


def _nonzero(img) -> np.ndarray:
    """The package's rule (:func:`ptyanalysis.inference.stats.count_values`): finite and different from 0."""
    a = np.asarray(img)
    return np.isfinite(a) & (a != 0)


def _canvas_positions(rec, arm: str, shape, positions):
    """Positions in the pixel frame of ``arm``'s canvas, and how the frame was found (or None, reason)."""
    if rec.origin is not None:
        return positions - np.asarray(rec.origin, float), f"origin {list(rec.origin)} recorded in the file"
    gt = rec.images.get("GroundTruth")
    if rec.layout == "ptyanalysis-legacy":
        if gt is not None and gt.shape == tuple(shape):
            return positions.copy(), "the ground truth's frame (previous ptyanalysis layout)"
        return None, "previous ptyanalysis layout on a canvas unlike the ground truth's: frame unknown"
    # the study's reassemble_position: a square canvas centred on the mean offset
    centre = np.asarray(shape, float) / 2
    return positions - positions.mean(axis=0) + centre, "own canvas centred on the scan (compare_models)"


def _check_arm(rec, arm: str, img, positions, pos_note: str) -> tuple[dict, list, list]:
    """Measurements, flags and notes of one arm's image."""
    flags, notes = [], []
    nz = _nonzero(img)
    info = {"canvas": list(img.shape), "nonzero_fraction_canvas": float(nz.mean()) if nz.size else 0.0}
    region, region_desc = nz, "whole canvas"
    if positions is not None:
        mapped, frame = _canvas_positions(rec, arm, img.shape, positions)
        info["frame"] = frame
        if mapped is None:
            notes.append(f"{arm}: scan coverage not checked ({frame})")
        else:
            ij = np.rint(mapped).astype(np.int64)
            inside = (ij[:, 0] >= 0) & (ij[:, 0] < img.shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < img.shape[1])
            outside = float(1 - inside.mean())
            if outside > OUTSIDE_MAX:
                notes.append(f"{arm}: scan coverage not checked: {outside:.0%} of the positions fall outside its "
                             f"{img.shape[0]}x{img.shape[1]} canvas ({frame})")
            else:
                ij = ij[inside]
                on = nz[ij[:, 0], ij[:, 1]]
                cov = float(on.mean())
                info.update({"scan_coverage": cov, "n_positions": len(positions),
                             "n_positions_covered": int(on.sum())})
                (r0, c0), (r1, c1) = ij.min(axis=0), ij.max(axis=0)
                region, region_desc = nz[r0:r1 + 1, c0:c1 + 1], f"scan region rows {r0}-{r1}, cols {c0}-{c1}"
                if cov < SCAN_COVERAGE_MIN:
                    flags.append(("low_scan_coverage",
                                  (f"only {on.sum()} of {len(ij)} scan positions ({cov:.1%}) fall on nonzero pixels "
                                   f"of its {img.shape[0]}x{img.shape[1]} reconstruction (< {SCAN_COVERAGE_MIN:.0%})"),
                                  {"scan_coverage": cov, "n_positions": len(ij),
                                   "n_positions_covered": int(on.sum()), "threshold": SCAN_COVERAGE_MIN,
                                   "positions": pos_note, "frame": frame}))
    zero = float(1 - region.mean()) if region.size else 1.0
    info.update({"zero_fraction": zero, "zero_fraction_region": region_desc})
    if zero >= MOSTLY_ZERO_FRACTION:
        what = "all zero" if not region.any() else f"{zero:.1%} zero"
        flags.append(("mostly_zero", f"its reconstruction is {what} in the {region_desc} (>= {MOSTLY_ZERO_FRACTION:.0%})",
                      {"zero_fraction": zero, "region": region_desc, "threshold": MOSTLY_ZERO_FRACTION,
                       "nonzero_pixels": int(region.sum()), "pixels": int(region.size)}))
    return info, flags, notes


def check_reconstructions(job_dir, positions=None, positions_note: str = "scan positions not given") -> JobTrust:
    """Check one job folder's reconstructions (and logs) without a hub.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``reconstructions.npz``.
    positions : ndarray of shape (n, 2), optional
        The job's scan positions (row, col); without them only the zero fraction of each whole
        canvas and the patch counts are checked.
    positions_note : str
        Where the positions come from (kept in the evidence).

    Returns
    -------
    JobTrust

    Raises
    ------
    PtyAnalysisError
        An unreadable ``reconstructions.npz`` (see
        :func:`ptyanalysis.phase_g.collect.read_reconstruction_file`).
    """

    job_dir = Path(job_dir)
    path = job_dir / "reconstructions.npz"
    notes, sources, flags, arms = [], [], [], {}
    if positions is None:
        notes.append(f"scan coverage not checked: {positions_note}")
    if not path.is_file():
        notes.append("reconstructions not checked: reconstructions.npz not found")
        rec = None
    else:
        rec = read_reconstruction_file(path)
        sources.append(path.name)
        notes += list(rec.notes)
        for arm, img in rec.images.items():
            if arm == "GroundTruth":
                continue
            info, fl, nt = _check_arm(rec, arm, np.asarray(img), positions, positions_note)
            arms[arm] = info
            flags += [TrustFlag(arm, c, m, e) for c, m, e in fl]
            notes += nt
    log_counts, logs = log_patch_counts(job_dir)
    sources += logs
    file_counts = dict(rec.counts) if rec is not None else {}
    for arm in sorted(set(log_counts) | set(file_counts)):
        c = dict(log_counts.get(arm, {}))
        src = c.pop("source", None)
        for k, v in file_counts.get(arm, {}).items():
            c.setdefault(k, v)
            src = src or "reconstructions.npz"
        arms.setdefault(arm, {}).update({k: c[k] for k in ("n_patches", "n_offsets") if k in c})
        if "n_patches" in c and "n_offsets" in c:
            if c["n_patches"] != c["n_offsets"]:
                ratio = c["n_offsets"] / max(c["n_patches"], 1)
                flags.append(TrustFlag(arm, "patch_count",
                                       f"{c['n_patches']} patches stitched for {c['n_offsets']} offsets ({src}): the "
                                       f"outputs are not one per position (about {ratio:.0f} offsets per patch), so "
                                       "the stitched image is not this arm's reconstruction of the scan",
                                       {"n_patches": c["n_patches"], "n_offsets": c["n_offsets"], "source": src}))
        else:
            notes.append(f"{arm}: patch count not checked ({src} gives only {', '.join(sorted(c)) or 'nothing'})")
    if not log_counts and not file_counts:
        notes.append("patch counts not checked: neither the files nor a *.log in the job folder record them")
    try:
        misplaced = misplaced_arms(job_dir)
    except PtyAnalysisError as exc:  # an unreadable comparison.nc: reported, the other checks stand
        misplaced = {}
        notes.append(f"placement not checked: {exc}")
    for arm, audit in misplaced.items():
        arms.setdefault(arm, {})["placement"] = audit
        flags.append(TrustFlag(arm, "placement",
                               f"{audit.get('text', 'its overlaps contradict the placement used')} [comparison.nc]; "
                               "the stitched image is not consistent with itself, so its numbers measure the "
                               "reassembly, not the model",
                               {"source": "comparison.nc",
                                **{k: audit.get(k) for k in ("used", "best", "best_class", "margin_used", "n_pairs",
                                                             "scores")}}))
    if misplaced:
        sources.append("comparison.nc")
    flags.sort(key=lambda f: (f.arm, f.check))
    return JobTrust(flags=tuple(flags), arms=arms, notes=tuple(notes), sources=tuple(sources))


def training_trust(hub, dose, view: str, job_dir) -> tuple[list, dict, list, list]:
    """The ``under_trained`` check of one job's arms, from the training histories found for them.

    Parameters
    ----------
    hub : str or Path
        Study hub (its model folders are searched).
    dose : float
        The job's dose.
    view : str
        The job's view (the PtychoPINN model folder depends on it).
    job_dir : str or Path
        The job folder (an imported PtychoPINN study's record names its histories).

    Returns
    -------
    flags : list of TrustFlag
    arms : dict
        ``{arm: {"training": TrainingReport.as_dict()}}`` for every arm with a history.
    notes : list of str
    sources : list of str
        History files read (hub-relative).
    """

    hub = Path(hub)
    found: dict = {arm: list(paths) for arm, paths in training_histories(job_dir, hub).items()}
    notes: list = []
    try:
        dirs = {"Baseline": _hub.model_dir(hub, dose, "Baseline"), "PtychoPINN": _hub.model_dir(hub, dose, "PtychoPINN", view)}
    except PtyAnalysisError:
        dirs = {}
    for arm, d in dirs.items():
        paths, n = find_training_histories(d)
        found.setdefault(arm, []).extend(paths)
        notes += n
    flags, arms, sources = [], {}, []
    for arm, paths in sorted(found.items()):
        paths = list(dict.fromkeys(paths))
        if not paths:
            continue
        rep = judge_histories(paths)
        arms[arm] = {"training": rep.as_dict()}
        sources += [_relative(p, hub) for p in paths]
        notes += [f"{arm}: {n}" for n in rep.notes]
        if rep.under_trained:
            falling = [v for v in rep.verdicts if v.still_falling]
            v = falling[0]
            h = next(h for h in rep.histories if v.series in h.series)
            src = _relative(h.path, hub)
            budget = h.budget_text()
            flags.append(TrustFlag(arm, "under_trained", (f"trained {budget}; " if budget else "")
                                   + f"{v.message} [{src}]; its numbers say little about the method",
                                   {"source": src, "budget": dict(h.budget), **v.as_dict()}))
        elif rep.under_trained is None:
            notes.append(f"{arm}: training history found but not judged (too few epochs or no loss series)")
    collapsed = collapsed_arms(job_dir)
    for arm, info in collapsed.items():
        arms.setdefault(arm, {})["collapsed"] = info
        if not any(f.arm == arm for f in flags):
            flags.append(TrustFlag(arm, "under_trained", f"{info['text']} [comparison.nc]; its numbers say little "
                                   "about the method", {"source": "comparison.nc", **info}))
    if collapsed:
        sources.append("comparison.nc")
    return flags, arms, notes, sources


def collapsed_arms(job_dir) -> dict:
    """The arms whose outputs the job's comparison found input-independent (``arm_details[arm].collapsed``).

    Parameters
    ----------
    job_dir : str or Path
        A job folder; its ``comparison.nc`` is read when present (a job without
        one, e.g. one made by compare_models, gives ``{}``).

    Returns
    -------
    dict
        ``{arm: {"sample_spread", "text"}}``.
    """
    details = _arm_details(job_dir)
    return {a: d["collapsed"] for a, d in sorted(details.items()) if isinstance(d, dict) and d.get("collapsed")}


def misplaced_arms(job_dir) -> dict:
    """The arms whose patches' overlaps contradict the placement the job stitched them with.

    Parameters
    ----------
    job_dir : str or Path
        A job folder; its ``comparison.nc`` is read when present (a job without
        one gives ``{}``).

    Returns
    -------
    dict
        ``{arm: placement audit record}`` (``arm_details[arm].placement_audit``,
        :meth:`ptyanalysis.imaging.placement.PlacementAudit.to_dict`) for the arms
        whose audit's status is ``"contradicted"``.
    """
    details = _arm_details(job_dir)
    out = {}
    for a, d in sorted(details.items()):
        audit = d.get("placement_audit") if isinstance(d, dict) else None
        if isinstance(audit, dict) and audit.get("status") == "contradicted":
            out[a] = audit
    return out


def _arm_details(job_dir) -> dict:
    """``arm_details`` of a job's ``comparison.nc`` (``{}`` without the file)."""
    import json

    path = Path(job_dir) / "comparison.nc"
    if not path.is_file():
        return {}
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            return json.loads(ds.attrs.get("arm_details", "{}"))
    except (OSError, ValueError) as exc:
        raise PtyAnalysisError(f"{path}: not a readable comparison file ({exc}); rerun the job with "
                               "`ptyanalysis grid` or `ptyanalysis compare`") from exc


def job_trust(hub, dose, view: str, split: str, job_dir=None) -> JobTrust:
    """Check one job of a hub: :func:`check_reconstructions` with the hub's scan positions.

    Parameters
    ----------
    hub : str or Path
        Study hub after ``ptyanalysis grid``.
    dose : float
        The job's dose (photons per pattern).
    view, split : str
        The job's view and split.
    job_dir : str or Path, optional
        Default ``analysis/dose_<D>/<view>/<split>``.

    Returns
    -------
    JobTrust
    """

    job_dir = Path(job_dir) if job_dir is not None else _hub.analysis_dir(hub, dose, view, split)
    try:
        positions, note = scan_positions(hub, dose, view, split)
    except PtyAnalysisError as exc:  # e.g. an unreadable views.json: reported, the other checks still run
        positions, note = None, f"scan positions unknown: {exc}"
    res = check_reconstructions(job_dir, positions, note)
    t_flags, t_arms, t_notes, t_sources = training_trust(hub, dose, view, job_dir)
    label = f"{dose_label(dose)}/{view}/{split}"
    flags = tuple(replace(f, job=label) for f in sorted(list(res.flags) + t_flags, key=lambda f: (f.arm, f.check)))
    arms = {a: dict(v) for a, v in res.arms.items()}
    for a, v in t_arms.items():
        arms.setdefault(a, {}).update(v)
    notes = ((f"scan positions: {note}",) if positions is not None else ()) + res.notes + tuple(t_notes)
    return JobTrust(flags, arms, notes, res.sources + tuple(t_sources))


def trust_flags(job, hub=None) -> tuple:
    """The trust flags of one :class:`~ptyanalysis.phase_g.collect.JobRecord` (checked now when it was collected without).

    Parameters
    ----------
    job : JobRecord
    hub : str or Path, optional
        The hub (default: three folders above the job's ``output_dir``, i.e. ``HUB/analysis/dose_<D>/<view>/<split>``).

    Returns
    -------
    tuple of TrustFlag
        ``str(flag)`` is its line ``dose_<D>/<view>/<split>: <arm> <check>: <message>``.
    """
    t = trust_of(job, hub)
    return t.flags if t is not None else ()


def trust_of(job, hub=None):
    """The :class:`JobTrust` of one job: recorded when it was collected, else checked now; None for a failed job.

    Parameters
    ----------
    job : JobRecord
    hub : str or Path, optional
        As :func:`trust_flags`.

    Returns
    -------
    JobTrust or None
    """
    if job.trust is not None:
        return job.trust
    if job.status != "success":
        return None
    hub = Path(hub) if hub is not None else Path(job.output_dir).parents[3]
    return job_trust(hub, job.dose, job.view, job.split, job.output_dir)


def flag_lines(jobs) -> list[str]:
    """One line per flag of every job: ``dose_<D>/<view>/<split>: <arm> <check>: <message>``.

    Parameters
    ----------
    jobs : list of JobRecord
        Collected with their trust check (:attr:`JobRecord.trust_flags`).

    Returns
    -------
    list of str
    """
    return [str(f) for j in jobs for f in j.trust_flags]

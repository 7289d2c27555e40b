"""The Phase G report's story: what a scientist reads first.

:func:`build_story` turns a hub's per-job results (and, when present, the
diagnosis of the incident) into a structured summary and renders it as
Markdown and as HTML:

* per dose x view x split, which arm is best on phase and on amplitude
  (MS-SSIM, higher is better);
* how each arm's quality changes with dose;
* the deltas PtychoPINN minus the other arms, with what their sign means;
* anything missing, failed or all-zero, with its reason;
* the incident and its diagnosis (split comparison, bisection: verdict, fix,
  how much of the reference health the fix restores), linked to the notebooks;
* trust flags (:mod:`ptyanalysis.phase_g.trust`, when that module is present);
* provenance: what ran in each arm (e.g. "PtyChi arm: rPIE reference; pty-chi
  not used"), the metric convention of every number, software versions, dates.

Every number comes from the hub's files; nothing is hard-coded.
"""

from __future__ import annotations

import html as _html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import ARMS, arm_status_text, zero_text  # noqa: F401 (re-exported)
from ..hub import ptychi_path
from ..imaging.metrics import NEGATIVE_SSIM_CLAMP, metric_unit
from ..phase_g import trust
from ..phase_g.collect import JobRecord, collect_jobs
from ..phase_g.results import load_results
from ..phase_g.schema import FILES
from ..phase_g.summary import compute_deltas, summarize_jobs
from ..provenance import software_versions, utc_now
from ..training_history import budget_text

#: The metric convention of ``comparison_metrics.csv`` when a job does not record it
#: (:class:`ptyanalysis.pipeline.compare.CompareConfig` ``csv_convention`` default).
DEFAULT_CSV_CONVENTION = "ptychopinn"
#: One sentence per metric convention (:mod:`ptyanalysis.imaging.metrics`).
CONVENTION_TEXT = {
    "ptychopinn": ("ptychopinn convention (the study's compare_models: phase plane removed from each image, "
                   "amplitude rescaled to the ground-truth mean, FRC in ring-index units)"),
    "ptyanalysis": ("ptyanalysis convention (global phase offset removed, explicit data range, "
                    "FRC in cycles/pixel)"),
}
#: Sign of each delta metric: +1 when higher is better.
BETTER_SIGN = {"ms_ssim": +1, "ssim": +1, "psnr": +1, "frc50": +1, "mae": -1, "mse": -1}


@dataclass(frozen=True)
class Story:
    """The report's summary.

    Attributes
    ----------
    data : dict
        JSON-friendly facts (best arms, trends, deltas, problems, incident, provenance).
    markdown : str
        The summary as Markdown (terminal, README).
    html : str
        The summary as an HTML fragment (the report's first screen).
    """

    data: dict
    markdown: str
    html: str = field(repr=False)


# --------------------------------------------------------------------------- reading


def _read_nc_attrs(path: Path) -> dict:
    """Attributes and per-arm status of a job's ``comparison.nc`` (``{}`` when unreadable)."""
    try:
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            attrs = dict(ds.attrs)
            status = ({str(a): str(s) for a, s in zip(ds["arm"].values, ds["status"].values)}
                      if "status" in ds and "arm" in ds.coords else {})
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the job's CSV is still the record: say so
        return {"error": f"{path.name} not readable ({type(exc).__name__}: {exc}); arm provenance unknown"}
    out = {"status": status}
    for key in ("arm_details", "parameters", "software_versions"):
        try:
            out[key] = json.loads(attrs.get(key, "{}"))
        except (TypeError, ValueError):
            out[key] = {}
    out["created"] = attrs.get("created")
    return out


def _iterative_algorithm_from_npz(hub: Path, job: JobRecord) -> str | None:

    p = ptychi_path(hub, job.dose, job.view, job.split)
    if not p.exists():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return str(z["algorithm"]) if "algorithm" in z.files else None
    except (OSError, ValueError, KeyError):
        return None


def job_arms(hub, job: JobRecord) -> dict:
    """What ran in each arm of one job and its status.

    Parameters
    ----------
    hub : str or Path
    job : JobRecord

    Returns
    -------
    dict
        ``{arm: {"status", "text", "detail", "algorithm"?}}`` from the job's
        ``comparison.nc`` (the iterative arm's ``algorithm`` falls back to
        ``ptychi_reconstruction.npz``); plus ``"_convention"`` (metric
        convention of the job's CSV), ``"_created"`` and ``"_versions"``.
    """
    hub = Path(hub)
    nc = job.output_dir / "comparison.nc"
    info = _read_nc_attrs(nc) if job.status == "success" and nc.exists() else {}
    details = info.get("arm_details", {})
    out: dict = {}
    for arm in ARMS:
        d = dict(details.get(arm, {}))
        st = info.get("status", {}).get(arm) or d.get("status")
        if st is None:
            st = "ok" if _has_values(job, arm) else "missing"
            if st == "missing" and job.status == "success":
                d.setdefault("error", "no values in comparison_metrics.csv")
        entry = {"status": st, "text": arm_status_text(st, d), "detail": d}
        if arm == "PtyChi":
            entry["algorithm"] = d.get("algorithm") or _iterative_algorithm_from_npz(hub, job)
        out[arm] = entry
    params = info.get("parameters", {})
    out["_convention"] = params.get("csv_convention") if isinstance(params, dict) else None
    out["_baseline_positions"] = params.get("baseline_positions") if isinstance(params, dict) else None
    out["_created"] = info.get("created")
    out["_error"] = info.get("error")
    out["_versions"] = info.get("software_versions") or {}
    return out


def cell_statuses(hub, jobs) -> dict:
    """``{(arm, dose, view, split): status text}`` for every arm of a successful job that is not ``ok``.

    Parameters
    ----------
    hub : str or Path
    jobs : list of JobRecord

    Returns
    -------
    dict
        E.g. ``{("Baseline", 1000, "dense", "test"): "zero (all 419,840 outputs are 0)"}``.
    """
    out = {}
    for j in jobs:
        if j.status != "success":
            continue
        for arm, a in job_arms(hub, j).items():
            if arm in ARMS and a["status"] != "ok":
                out[(arm, int(j.dose), j.view, j.split)] = a["text"]
    return out


def _has_values(job: JobRecord, arm: str) -> bool:
    return any(m["model"] == arm and m.get("amplitude") is not None for m in job.metrics)


def arm_label(arm: str, algorithm: str | None = None) -> str:
    """An arm's name as shown in figures: the iterative arm carries the engine that ran, e.g. ``PtyChi (rPIE)``."""
    if arm == "PtyChi" and algorithm:
        engine = algorithm.split("(")[0].strip() or algorithm
        return f"PtyChi ({engine})"
    return arm


def iterative_provenance(algorithms) -> str:
    """One sentence on what ran in the iterative arm, from the recorded ``algorithm`` strings."""
    algs = sorted({a for a in algorithms if a})
    if not algs:
        return "PtyChi arm: algorithm not recorded in the job files (ptychi_reconstruction.npz has no 'algorithm')"
    parts = []
    for a in algs:
        low = a.lower()
        if low.startswith("rpie"):
            note = "; pty-chi not used" if "pty-chi not used" in low or "not used" in low else ""
            parts.append(f"rPIE reference{note} (recorded: {a!r})")
        else:
            parts.append(a)
    return "PtyChi arm: " + " and ".join(parts)


def read_diagnosis(hub) -> dict:
    """The incident's diagnosis records under ``analysis/diagnosis``, if any.

    Looks for ``split_comparison.json`` (:func:`ptyanalysis.diagnosis.splits.write_split_comparison`)
    and ``bisection.json`` (:func:`ptyanalysis.diagnosis.bisection.write_bisection`) anywhere below it,
    and for the executed notebooks next to them.

    Parameters
    ----------
    hub : str or Path
        Study hub (its ``analysis/diagnosis`` folder is searched).

    Returns
    -------
    dict
        ``{"split_comparison": {...}|None, "bisection": {...}|None}`` with the
        hub-relative paths of each record and notebook; a record that cannot be
        read is reported with its ``error``.
    """
    hub = Path(hub)
    root = _hub.diagnosis_dir(hub)
    out = {"split_comparison": None, "bisection": None}
    if not root.is_dir():
        return out
    for key, fname in (("split_comparison", "split_comparison.json"), ("bisection", "bisection.json")):
        found = sorted(root.rglob(fname))
        if not found:
            continue
        p = found[0]
        rec: dict = {"path": p.relative_to(hub).as_posix()}
        try:
            rec["record"] = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            rec["error"] = f"{p.relative_to(hub).as_posix()}: not readable JSON ({exc})"
        nb = p.parent.with_suffix(".ipynb")
        nbs = [nb] if nb.exists() else sorted(p.parent.glob("*.ipynb"))
        if nbs:
            rec["notebook"] = nbs[0].relative_to(hub).as_posix()
            html = nbs[0].with_suffix(".html")
            if html.exists():
                rec["notebook_html"] = html.relative_to(hub).as_posix()
        out[key] = rec
    return out


def read_trust(hub, jobs) -> list:
    """One line per trust flag of every job (:mod:`ptyanalysis.phase_g.trust`); ``[]`` when nothing is flagged."""

    return [f"{j.label}: {f.arm} {f.check}: {f.message}" for j in jobs for f in trust.trust_flags(j, hub)]


def under_trained(hub, jobs) -> dict:
    """The arms flagged ``under_trained`` (:mod:`ptyanalysis.phase_g.trust`) and in how many of the scored jobs.

    Returns
    -------
    dict
        ``{arm: {"jobs": [label, ...], "n_scored": int, "example": message, "budgets": [budget, ...],
        "drop_fractions": [float, ...]}}`` (``budgets``: the distinct training budgets recorded for the
        flagged models, :attr:`ptyanalysis.training_history.TrainingHistory.budget`; ``drop_fractions``:
        how much of its range each flagged loss still fell over its last epochs); empty when no arm is.
    """

    out: dict = {}
    scored = [j for j in jobs if j.status == "success"]
    for j in scored:
        for f in trust.trust_flags(j, hub):
            if f.check == "under_trained":
                e = out.setdefault(f.arm, {"jobs": [], "n_scored": len(scored), "example": f.message, "budgets": [],
                                           "drop_fractions": []})
                e["jobs"].append(j.label)
                if f.evidence.get("drop_fraction") is not None:
                    e["drop_fractions"].append(float(f.evidence["drop_fraction"]))
                b = f.evidence.get("budget")
                if b and b not in e["budgets"]:
                    e["budgets"].append(b)
    return out


def training_budgets(hub, jobs) -> dict:
    """The distinct training budgets recorded for each arm's models (their histories, found by the trust check).

    Parameters
    ----------
    hub : str or Path
    jobs : list of JobRecord

    Returns
    -------
    dict
        ``{arm: [budget, ...]}`` (:attr:`ptyanalysis.training_history.TrainingHistory.budget`); arms whose
        models record none are absent.
    """

    out: dict = {}
    for j in jobs:
        jt = trust.trust_of(j, hub) if j.status == "success" else None
        if jt is None:
            continue
        for arm, info in jt.arms.items():
            for b in (info.get("training") or {}).get("budgets", []):
                if b and b not in out.setdefault(arm, []):
                    out[arm].append(b)
    return {a: b for a, b in out.items() if b}


def _budget_words(budgets: list) -> str:
    """``"160 optimiser steps (4 epochs, 28 s) per model"`` or a range over several models; ``""`` when unknown."""

    texts = list(dict.fromkeys(budget_text(b) for b in budgets if b))
    if not texts:
        return ""
    steps = sorted({int(b["steps"]) for b in budgets if b.get("steps") is not None})
    if len(texts) == 1:
        return texts[0]
    if steps:
        return f"{steps[0]}-{steps[-1]} optimiser steps" if steps[0] != steps[-1] else f"{steps[0]} optimiser steps"
    return texts[0]


def _seconds_per_step(ut: dict) -> float | None:
    """Median training seconds per optimiser step over the flagged models whose budget records both."""
    rates = [b["elapsed_s"] / b["steps"] for e in ut.values() for b in e.get("budgets", ())
             if b.get("elapsed_s") and b.get("steps")]
    return float(np.median(rates)) if rates else None


def clamped_ms_ssim(jobs, arms_info: dict, convention) -> dict:
    """The arms whose MS-SSIM clamped a negative SSIM level (a floor, not a measurement), per component.

    Parameters
    ----------
    jobs : list of JobRecord
    arms_info : dict
        ``{job.label: job_arms(...)}``.
    convention : str or list
        The report's metric convention; only clamps in it count (a list: mixed, every clamp counts).

    Returns
    -------
    dict
        ``{arm: {component: {"jobs": [label, ...], "example_ssim": float}}}``; empty when none clamped.
    """
    out: dict = {}
    for j in jobs:
        for arm in ARMS:
            rec = ((arms_info.get(j.label) or {}).get(arm) or {}).get("detail", {}).get("ms_ssim_clamped") or {}
            for comp, c in rec.items():
                if isinstance(convention, str) and c.get("convention") != convention:
                    continue
                e = out.setdefault(arm, {}).setdefault(comp, {"jobs": [], "example_ssim": min(c.get("ssim") or [0.0])})
                e["jobs"].append(j.label)
    return out


# --------------------------------------------------------------------------- facts


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating)) and math.isfinite(float(v))


def _metric(ds, arm, dose, view, split, metric, comp):
    try:
        v = float(ds["value"].sel(arm=arm, dose=dose, view=view, split=split, metric=metric, component=comp))
    except (KeyError, IndexError, ValueError):
        return None
    return v if math.isfinite(v) else None


def best_arms(ds, jobs, arms_info: dict, metric: str = "ms_ssim") -> list:
    """Best arm on phase and on amplitude for every job.

    Parameters
    ----------
    ds : xarray.Dataset
        :func:`~ptyanalysis.phase_g.results.results_dataset`.
    jobs : list of JobRecord
    arms_info : dict
        ``{job.label: job_arms(...)}``.
    metric : str
        Higher-is-better metric (MS-SSIM by default).

    Returns
    -------
    list of dict
        One per job: ``dose, view, split, status, phase, amplitude`` where
        each of the last two is ``{"best", "value", "runner_up", "margin",
        "values", "unscored", "best_by_ssim"}`` (``best_by_ssim``: the best arm
        by plain SSIM, which can disagree with MS-SSIM).
    """
    rows = []
    for j in jobs:
        row = {"dose": j.dose, "view": j.view, "split": j.split, "status": j.status, "error": j.error}
        info = arms_info.get(j.label, {})
        for comp in ("phase", "amplitude"):
            vals = {a: _metric(ds, a, j.dose, j.view, j.split, metric, comp) for a in ARMS} if j.status == "success" else {}
            scored = sorted(((v, a) for a, v in vals.items() if v is not None), reverse=True)
            unscored = {a: info.get(a, {}).get("text", "missing") for a, v in vals.items() if v is None}
            e = {"values": vals, "unscored": unscored, "best": None, "value": None, "runner_up": None, "margin": None,
                 "best_by_ssim": None}
            if j.status == "success" and metric != "ssim":
                ssim = sorted(((v, a) for a in ARMS if (v := _metric(ds, a, j.dose, j.view, j.split, "ssim", comp))
                               is not None), reverse=True)
                e["best_by_ssim"] = ssim[0][1] if ssim else None
            if scored:
                e["best"], e["value"] = scored[0][1], scored[0][0]
                if len(scored) > 1:
                    e["runner_up"], e["margin"] = scored[1][1], scored[0][0] - scored[1][0]
            row[comp] = e
        rows.append(row)
    return rows


#: A dose step of a trend counts only when its mean paired change exceeds this many standard errors
#: (across the view/split cells present at both doses) and :data:`TREND_MIN_STEP`.
TREND_SE = 2.0
#: Smallest change of a mean metric that can count as a step.
TREND_MIN_STEP = 1e-3
#: How a trend label is decided, in words (shown with the trends).
TREND_RULE = (f"means over the view/split cells present at every dose; a step between doses counts only when the "
              f"mean change of the same cells exceeds {TREND_SE:g} standard errors of that change across the cells "
              f"(the run-to-run spread stands in for it) and {TREND_MIN_STEP:g}; otherwise it is within the spread")


def dose_trends(ds, metric: str = "ms_ssim") -> dict:
    """Each arm's mean ``metric`` per dose and the direction of the trend, when it exceeds the spread.

    Only the (view, split) cells with a value at every dose that has one are
    averaged, so a missing job never changes one dose's mean alone; the cells
    left out are named. A step between two doses counts when the mean of the
    cells' paired changes exceeds :data:`TREND_SE` standard errors of that mean
    and :data:`TREND_MIN_STEP` (:data:`TREND_RULE`); with one common cell no
    spread can be measured and the step counts on its size alone.

    Returns
    -------
    dict
        ``{arm: {comp: {"doses", "means", "trend", "n_cells", "left_out", "steps"}}}``;
        ``trend`` is ``"improves"``, ``"worsens"``, ``"mixed"``, ``"within spread"``,
        ``"flat"``, ``"single dose"``, ``"no common jobs"`` or ``"no data"``;
        each step is ``{"from", "to", "change", "se", "counts"}``.
    """
    out: dict = {}
    doses = [int(d) for d in ds["dose"].values]
    sign = BETTER_SIGN.get(metric, 1)
    for arm in [str(a) for a in ds["arm"].values]:
        out[arm] = {}
        for comp in ("phase", "amplitude"):
            v = ds["value"].sel(arm=arm, metric=metric, component=comp).transpose("dose", "view", "split")
            cells = [f"{vw}/{sp}" for vw in v["view"].values for sp in v["split"].values]
            arr = np.asarray(v.values, float).reshape(len(doses), -1)
            have = np.isfinite(arr)
            rows = np.flatnonzero(have.any(axis=1))
            common = have[rows].all(axis=0) if rows.size else np.zeros(arr.shape[1], bool)
            left_out = [c for c, h, k in zip(cells, have.any(axis=0), common) if h and not k]
            means = [float(arr[i, common].mean()) if i in rows and common.any() else None for i in range(len(doses))]
            steps, trend = [], None
            if not rows.size:
                trend = "no data"
            elif not common.any():
                trend = "no common jobs"
            elif rows.size < 2:
                trend = "single dose"
            else:
                for a, b in zip(rows[:-1], rows[1:]):
                    d = arr[b, common] - arr[a, common]
                    se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else None
                    change = float(d.mean())
                    counts = abs(change) >= TREND_MIN_STEP and (se is None or abs(change) > TREND_SE * se)
                    steps.append({"from": doses[a], "to": doses[b], "change": change, "se": se, "counts": bool(counts)})
                signs = {int(np.sign(sign * st["change"])) for st in steps if st["counts"]}
                if not signs:
                    trend = "flat" if all(abs(st["change"]) < TREND_MIN_STEP for st in steps) else "within spread"
                elif signs == {1}:
                    trend = "improves"
                elif signs == {-1}:
                    trend = "worsens"
                else:
                    trend = "mixed"
            out[arm][comp] = {"doses": doses, "means": means, "trend": trend, "n_cells": int(common.sum()),
                              "left_out": left_out, "steps": steps}
    return out


def paired_deltas(ds, metrics=("ms_ssim", "mae"), others=("Baseline", "PtyChi")) -> dict:
    """PtychoPINN minus each other arm, averaged over the jobs where both have a value.

    Returns
    -------
    dict
        ``{vs_<arm>: {metric: {comp: {"delta", "n_jobs", "n_total"}}}}``; ``n_total`` counts the
        jobs where either arm has a value (the difference is the jobs left out), ``delta`` is None
        when no job has both.
    """
    out: dict = {}
    for other in others:
        out[f"vs_{other}"] = {}
        if "PtychoPINN" not in ds["arm"].values or other not in ds["arm"].values:
            continue
        for metric in metrics:
            out[f"vs_{other}"][metric] = {}
            for comp in ("amplitude", "phase"):
                a = np.asarray(ds["value"].sel(arm="PtychoPINN", metric=metric, component=comp).values, float).ravel()
                b = np.asarray(ds["value"].sel(arm=other, metric=metric, component=comp).values, float).ravel()
                both = np.isfinite(a) & np.isfinite(b)
                out[f"vs_{other}"][metric][comp] = {
                    "delta": float((a[both] - b[both]).mean()) if both.any() else None,
                    "n_jobs": int(both.sum()), "n_total": int((np.isfinite(a) | np.isfinite(b)).sum())}
    return out


def problems(jobs, arms_info: dict) -> list:
    """Every failed or missing job and every arm that is missing or all zero, with its reason."""
    out = []
    for j in jobs:
        if j.status != "success":
            out.append({"job": j.label, "arm": None, "kind": j.status, "text": f"job {j.status}: {j.error}"})
            continue
        info = arms_info.get(j.label, {})
        if info.get("_error"):
            out.append({"job": j.label, "arm": None, "kind": "unreadable", "text": info["_error"]})
        for arm in ARMS:
            a = info.get(arm, {})
            if a.get("status", "ok") != "ok":
                out.append({"job": j.label, "arm": arm, "kind": a["status"], "text": a["text"]})
    return out


def _diagnosis_record(inc: dict, found: dict, link: str, error_key: str) -> dict:
    """Link one diagnosis record of :func:`read_diagnosis` into ``inc``; its readable record, or ``{}``.

    An unreadable record's error goes under ``inc[error_key]``.
    """
    inc["links"][link] = found.get("notebook_html") or found.get("notebook") or found["path"]
    if found.get("error"):
        inc[error_key] = found["error"]
        return {}
    return found.get("record") or {}


def verdict_words(verdict: dict) -> str:
    """A bisection verdict's kind and name in plain words (``"inputs 'input' and 'input_positions' together"``).

    Parameters
    ----------
    verdict : dict
        ``bisection.json``'s ``verdict`` (``kind``, ``name``).

    Returns
    -------
    str
    """
    kind, name = verdict.get("kind"), verdict.get("name")
    if kind == "input" and name:
        parts = [p for p in str(name).split("+") if p]
        if len(parts) > 1:
            return "inputs " + ", ".join(repr(p) for p in parts[:-1]) + f" and {parts[-1]!r} together"
        return f"input {parts[0]!r}"
    words = {"runtime": "runtime factor", "model": "the model itself", "collapsed": "collapsed outputs",
             "samples": "a subset of samples", "none": "no failure reproduced", "unknown": "no cause found",
             "pairing": "inputs misaligned with each other", "criterion": "a criterion that does not fit the outputs"}
    head = words.get(kind, str(kind))
    return f"{head} ({name})" if name else head


def _incident(diag: dict) -> dict | None:
    bis = (diag.get("bisection") or {})
    spl = (diag.get("split_comparison") or {})
    if not bis and not spl:
        return None
    inc: dict = {"links": {}}
    r = _diagnosis_record(inc, spl, "split comparison", "split_error") if spl else {}
    if r:
        health = r.get("output_health", {})
        inc["splits"] = r.get("splits")
        inc["degraded_splits"] = [s for s, h in health.items() if isinstance(h, dict) and h.get("degraded")]
        inc["health"] = {s: h.get("health") for s, h in health.items() if isinstance(h, dict)}
        inc["most_drifted_input"] = (r.get("ranking") or [None])[0]
        inc["split_flags"] = list(r.get("flags") or [])
    r = _diagnosis_record(inc, bis, "bisection", "bisection_error") if bis else {}
    if r:
        v = r.get("verdict") or {}
        inc["reproduced"] = r.get("reproduced")
        inc["verdict"] = {"kind": v.get("kind"), "name": v.get("name"), "summary": v.get("summary")}
        inc["fix"] = r.get("fix")
        causes = r.get("causes") or []
        inc["restores"] = causes[0].get("restores") if causes else None
        h = r.get("health") or {}
        inc["bisection_health"] = {k: h.get(k) for k in ("failing", "passing", "reference")}
        inc["criterion"] = (r.get("criterion") or {}).get("name") or r.get("criterion")
    return inc


def build_story(hub, ds=None, jobs=None, deltas=None) -> Story:
    """The report's summary of a hub.

    Parameters
    ----------
    hub : str or Path
        Study hub after the comparison grid (and usually after ``phase-g``).
    ds : xarray.Dataset, optional
        Results dataset (default :func:`~ptyanalysis.phase_g.results.load_results`).
    jobs : list of JobRecord, optional
        Default :func:`~ptyanalysis.phase_g.collect.collect_jobs`.
    deltas : dict, optional
        ``metrics_delta_summary.json`` content (default: read it, else computed).

    Returns
    -------
    Story
    """

    hub = Path(hub).resolve()
    jobs = collect_jobs(hub) if jobs is None else jobs
    ds = load_results(hub) if ds is None else ds
    if deltas is None:
        p = _hub.analysis_root(hub) / FILES["delta_summary_json"]
        try:
            deltas = json.loads(p.read_text(encoding="utf-8"))["deltas"]
        except (OSError, ValueError, KeyError):
            deltas = compute_deltas(summarize_jobs(jobs, hub)["aggregate_metrics"])
    elif "deltas" in deltas:
        deltas = deltas["deltas"]
    arms_info = {j.label: job_arms(hub, j) for j in jobs}
    conventions = sorted({i["_convention"] or DEFAULT_CSV_CONVENTION for i in arms_info.values()})
    recorded = any(i["_convention"] for i in arms_info.values())
    algorithms = [i["PtyChi"].get("algorithm") for i in arms_info.values()]
    created = sorted(c for c in (i["_created"] for i in arms_info.values()) if c)
    versions = next((i["_versions"] for i in arms_info.values() if i["_versions"]), None)
    baseline_feeds = sorted({i["_baseline_positions"] for i in arms_info.values() if i["_baseline_positions"]})
    try:
        ds_versions = json.loads(ds.attrs.get("software_versions", "{}"))
    except (TypeError, ValueError):
        ds_versions = {}
    data = {
        "hub": str(hub),
        "n_jobs": len(jobs),
        "n_success": sum(j.status == "success" for j in jobs),
        "metric": "ms_ssim",
        "convention": conventions[0] if len(conventions) == 1 else conventions,
        "convention_recorded": recorded,
        "best": best_arms(ds, jobs, arms_info),
        "trends": dose_trends(ds),
        "deltas": deltas,
        "paired_deltas": paired_deltas(ds),
        "trend_rule": TREND_RULE,
        "problems": problems(jobs, arms_info),
        "incident": _incident(read_diagnosis(hub)),
        "trust": read_trust(hub, jobs),
        "under_trained": under_trained(hub, jobs),
        "training_budgets": training_budgets(hub, jobs),
        "ms_ssim_clamped": clamped_ms_ssim(jobs, arms_info, conventions[0] if len(conventions) == 1 else conventions),
        "provenance": {
            "PtyChi": iterative_provenance(algorithms),
            "PtyChi_label": arm_label("PtyChi", next((a for a in algorithms if a), None)),
            "PtychoPINN": "PtychoPINN arm: the physics-informed network (gridsize 2), one model per dose and view",
            "Baseline": ("Baseline arm: the supervised network (gridsize 1), one model per dose"
                         + (f"; fed positions: {', '.join(baseline_feeds)}" if baseline_feeds else "")),
            "jobs_created": [created[0], created[-1]] if created else None,
            "results_generated_at": ds.attrs.get("generated_at"),
            "report_generated_at": utc_now(),
            "software_versions": versions or ds_versions or software_versions(),
        },
    }
    return Story(data=data, markdown=story_markdown(data), html=story_html(data))


# --------------------------------------------------------------------------- rendering


def _f(v, spec=".3f") -> str:
    return "n/a" if not _finite(v) else format(float(v), spec)


def _dose(d) -> str:
    return f"{int(d):,}"


def _arm(a: str, data: dict) -> str:
    return data["provenance"]["PtyChi_label"] if a == "PtyChi" else a


def _convention_sentence(data: dict) -> str:
    conv = data["convention"]
    if isinstance(conv, list):
        return "Metric convention: mixed across jobs (" + ", ".join(conv) + "); compare numbers with care."
    how = "" if data["convention_recorded"] else " (not recorded in the job files; the comparison job's default)"
    return f"Every number is in the {CONVENTION_TEXT.get(conv, conv)}{how}. MS-SSIM: higher is better (1 = identical)."


def headline(data: dict) -> list[str]:
    """The first sentences of the report (plain text)."""
    best = [b for b in data["best"] if b["status"] == "success"]
    lines = [f"{data['n_success']} of {data['n_jobs']} comparison jobs have metrics."]
    for comp in ("phase", "amplitude"):
        wins: dict = {}
        for b in best:
            if b[comp]["best"]:
                wins[b[comp]["best"]] = wins.get(b[comp]["best"], 0) + 1
        if wins:
            order = sorted(wins.items(), key=lambda kv: -kv[1])
            lines.append(f"Best on {comp} (MS-SSIM): " + ", ".join(
                f"{_arm(a, data)} in {n} of {len(best)} jobs" for a, n in order) + ".")
    for comp in ("phase", "amplitude"):
        split_votes = [b for b in best if b[comp]["best"] and b[comp].get("best_by_ssim")
                       and b[comp]["best_by_ssim"] != b[comp]["best"]]
        if split_votes:
            b = split_votes[0]
            lines.append(f"SSIM and MS-SSIM disagree on the best {comp} arm in {len(split_votes)} of {len(best)} jobs "
                         f"(e.g. {_dose(b['dose'])} {b['view']} {b['split']}: MS-SSIM {_arm(b[comp]['best'], data)}, "
                         f"SSIM {_arm(b[comp]['best_by_ssim'], data)}): MS-SSIM weighs coarse structure, SSIM "
                         "fine detail; the ranking is not robust there.")
    ut = data.get("under_trained") or {}
    if ut:
        parts = []
        for a, e in sorted(ut.items()):
            budget = _budget_words(e.get("budgets", []))
            drops = e.get("drop_fractions") or []
            how = [f"trained {budget}"] if budget else []
            if drops:
                how.append(f"loss still fell {min(drops):.0%}-{max(drops):.0%} of its range in the last epochs"
                           if len(drops) > 1 and min(drops) != max(drops)
                           else f"loss still fell {drops[0]:.0%} of its range in the last epochs")
            parts.append(f"{_arm(a, data)} in {len(e['jobs'])} of {e['n_scored']} jobs"
                         + (f" ({'; '.join(how)})" if how else f" ({e['example']})"))
        rate = _seconds_per_step(ut)
        cost = (f" (at the recorded {rate:.2f} s per step, --steps 2000 takes about {2000 * rate / 60:.0f} min "
                "per network here)" if rate else "")
        lines.append("Under-trained: " + ", ".join(parts) + ". The ranking above compares models stopped before "
                     "they converged, not the methods. For numbers about the methods train longer: ptyanalysis "
                     f"train HUB --steps N --force{cost}; README, 'Training budget', gives what it gave on the demo.")
    cl = data.get("ms_ssim_clamped") or {}
    if cl:
        parts = [f"{_arm(a, data)} {comp} in {len(e['jobs'])} job(s)" for a, comps in sorted(cl.items())
                 for comp, e in sorted(comps.items())]
        worst = min(e["example_ssim"] for comps in cl.values() for e in comps.values())
        lines.append(f"MS-SSIM floors: {', '.join(parts)} had an SSIM level below 0 (lowest {worst:.3f}: no "
                     f"structural agreement with the truth at that scale), which the convention clamps to "
                     f"{NEGATIVE_SSIM_CLAMP:g}; those MS-SSIM values are floors, not measurements.")
    zeros = [p for p in data["problems"] if p["kind"] == "zero"]
    if zeros:
        arms = sorted({p["arm"] for p in zeros})
        lines.append(f"{', '.join(arms)} output is all zero in {len(zeros)} job(s): {zeros[0]['text']}.")
    other = [p for p in data["problems"] if p["kind"] != "zero"]
    if other:
        lines.append(f"{len(other)} missing or failed result(s), listed below with their reasons.")
    inc = data.get("incident")
    if inc and inc.get("verdict"):
        v = inc["verdict"]
        lines.append(f"Incident diagnosis (bisection): {verdict_words(v)}"
                     + (f", fix restores {_f(inc.get('restores'), '.0%')} of the reference health" if _finite(inc.get('restores')) else "")
                     + ".")
    lines.append(_convention_sentence(data))
    lines.append(data["provenance"]["PtyChi"] + ".")
    return lines


#: Title of the report's deltas section.
DELTAS_TITLE = "Deltas (PtychoPINN minus each arm, means over the jobs where both have a value)"


def _unit_text(metric: str, comp: str) -> str:
    """`` rad`` / `` (amplitude units)`` after a value; nothing for unitless ones (imaging.metrics.metric_unit)."""
    u = metric_unit(metric, comp)
    return "" if u in ("", "1") else f" ({u.split(' (')[0]})" if u.startswith("amplitude") else f" {u}"


def _delta_lines(data: dict) -> list[str]:
    out = []
    d = data.get("paired_deltas") or {}
    for other in ("Baseline", "PtyChi"):
        for metric in ("ms_ssim", "mae"):
            x = (d.get(f"vs_{other}") or {}).get(metric) or {}
            sign = BETTER_SIGN[metric]
            parts = []
            for comp in ("amplitude", "phase"):
                e = x.get(comp) or {}
                v = e.get("delta")
                if not _finite(v):
                    parts.append(f"{comp} n/a (no job has both arms)")
                    continue
                better = (sign * v) > 0
                who = "PtychoPINN better" if better else (f"{_arm(other, data)} better" if v != 0 else "equal")
                unit = _unit_text(metric, comp)
                jobs = (f"{e['n_jobs']} jobs" if e["n_jobs"] == e["n_total"]
                        else f"{e['n_jobs']} of {e['n_total']} jobs; {e['n_total'] - e['n_jobs']} without both arms "
                             "left out")
                parts.append(f"{comp} {v:+.3g}{unit} ({who}; {jobs})")
            meaning = "positive = PtychoPINN better" if sign > 0 else "negative = PtychoPINN better (lower error)"
            out.append(f"{metric.upper().replace('_', '-')} PtychoPINN − {_arm(other, data)}: "
                       + "; ".join(parts) + f" [{meaning}]")
    return out


def _trend_lines(data: dict) -> list[str]:
    out = []
    for arm, comps in data["trends"].items():
        for comp in ("phase", "amplitude"):
            t = comps[comp]
            if t["trend"] in ("no data", "no common jobs"):
                out.append(f"{_arm(arm, data)} {comp}: "
                           + ("no value at any dose" if t["trend"] == "no data"
                              else "no view/split has a value at every dose: no trend"))
                continue
            series = " → ".join(f"{_f(m)} @ {_dose(d)} photons" for d, m in zip(t["doses"], t["means"]) if m is not None)
            cells = f"{t.get('n_cells', '?')} view/split cell(s)"
            if t.get("left_out"):
                cells += f"; left out, not at every dose: {', '.join(t['left_out'])}"
            if t.get("n_cells") == 1 and t["trend"] not in ("single dose",):
                cells += "; one cell: no spread measured"
            out.append(f"{_arm(arm, data)} {comp}: {t['trend']} with dose ({series}; {cells})")
    return out


def _incident_lines(data: dict) -> list[str]:
    inc = data.get("incident")
    if not inc:
        return []
    out = []
    if inc.get("degraded_splits") is not None:
        h = ", ".join(f"{s} {_f(v)}" for s, v in (inc.get("health") or {}).items())
        out.append(f"Split comparison: output health against the reference {h}; degraded: "
                   f"{', '.join(inc['degraded_splits']) or 'none'}; most drifted input: {inc.get('most_drifted_input')}.")
        for f in inc.get("split_flags", [])[:3]:
            out.append(f"Flag: {f}")
    for key in ("split_error", "bisection_error"):
        if inc.get(key):
            out.append(inc[key])
    if inc.get("verdict"):
        v = inc["verdict"]
        out.append(f"Bisection verdict: {verdict_words(v)} — {v.get('summary')}")
        out.append(f"Fix: {inc.get('fix') or 'none proposed'}")
        if _finite(inc.get("restores")):
            out.append(f"The fix restores {float(inc['restores']):.0%} of the reference output health.")
        h = inc.get("bisection_health") or {}
        if h:
            out.append("Health: " + ", ".join(f"{k} {_f(v)}" for k, v in h.items()))
    return out


def _best_table(data: dict) -> tuple[list[str], list[list[str]]]:
    head = ["dose (photons per pattern)", "view", "split", "best on phase (MS-SSIM)", "best on amplitude (MS-SSIM)",
            "not scored"]
    rows = []
    for b in data["best"]:
        if b["status"] != "success":
            rows.append([_dose(b["dose"]), b["view"], b["split"], f"job {b['status']}", "", b.get("error") or ""])
            continue
        cells = []
        for comp in ("phase", "amplitude"):
            e = b[comp]
            if e["best"] is None:
                cells.append("no arm scored")
            else:
                margin = f", +{e['margin']:.3f} over {_arm(e['runner_up'], data)}" if e["runner_up"] else ""
                cells.append(f"{_arm(e['best'], data)} {e['value']:.3f}{margin}")
        uns = {**b["phase"]["unscored"], **b["amplitude"]["unscored"]}
        cells.append("; ".join(f"{_arm(a, data)}: {t}" for a, t in uns.items()))
        rows.append([_dose(b["dose"]), b["view"], b["split"], *cells])
    return head, rows


def story_markdown(data: dict) -> str:
    """Render the story's facts as Markdown."""
    L = ["## Summary", ""] + [f"- {s}" for s in headline(data)] + [""]
    head, rows = _best_table(data)
    L += ["### Best arm per dose × view × split (MS-SSIM)", "", "| " + " | ".join(head) + " |",
          "|" + "---|" * len(head)]
    L += ["| " + " | ".join(r) + " |" for r in rows]
    L += ["", "### Dose trend (mean MS-SSIM over views and splits)", "", f"How: {data['trend_rule']}.", ""]
    L += [f"- {s}" for s in _trend_lines(data)]
    L += ["", f"### {DELTAS_TITLE}", ""] + [f"- {s}" for s in _delta_lines(data)]
    probs = data["problems"]
    L += ["", "### Missing, failed or all-zero results", ""]
    L += [f"- {p['job']}{' ' + _arm(p['arm'], data) if p['arm'] else ''}: {p['text']}" for p in probs] or ["- none"]
    inc = _incident_lines(data)
    if inc:
        L += ["", "### The incident and its diagnosis", ""] + [f"- {s}" for s in inc]
        L += [f"- {k}: [{v}]({_rel(v)})" for k, v in data["incident"]["links"].items()]
    if data["trust"]:
        L += ["", "### Trust flags", ""] + [f"- {t}" for t in data["trust"]]
    L += ["", "### Provenance", ""] + [f"- {s}" for s in _provenance_lines(data)]
    return "\n".join(L) + "\n"


def _rel(path: str) -> str:
    """A hub-relative path as a link from ``analysis/phase_g_report.html``."""
    return path[len("analysis/"):] if path.startswith("analysis/") else "../" + path


def _provenance_lines(data: dict) -> list[str]:
    p = data["provenance"]
    budgets = data.get("training_budgets") or {}
    out = [p[a] + (f"; trained {_budget_words(budgets[a])} per model" if budgets.get(a) else "")
           for a in ("PtychoPINN", "Baseline")] + [p["PtyChi"], _convention_sentence(data)]
    if p.get("jobs_created"):
        a, b = p["jobs_created"]
        out.append(f"Comparison jobs run {a}" + (f" to {b}" if b != a else ""))
    out.append(f"Results aggregated {p.get('results_generated_at') or 'n/a'}; report built {p['report_generated_at']}")
    v = p.get("software_versions") or {}
    out.append("Software: " + ", ".join(f"{k} {val}" for k, val in v.items() if val and k != "platform"))
    return out


def _esc(s) -> str:
    return _html.escape(str(s), quote=True)


def story_html(data: dict) -> str:
    """Render the story's facts as an HTML fragment (no scripts, no external resources)."""
    H = ['<section id="summary" class="pty-summary">', "<h2>Summary</h2>", "<ul>"]
    H += [f"<li>{_esc(s)}</li>" for s in headline(data)]
    H += ["</ul>"]
    head, rows = _best_table(data)
    H += ['<h3 id="best-arms">Best arm per dose × view × split (MS-SSIM)</h3>', '<table class="pty-table"><thead><tr>']
    H += [f"<th>{_esc(h)}</th>" for h in head] + ["</tr></thead><tbody>"]
    for r in rows:
        H.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>")
    H += ["</tbody></table>"]
    H += ['<h3 id="dose-trend">Dose trend (mean MS-SSIM over views and splits)</h3>',
          f'<p class="note">How: {_esc(data["trend_rule"])}.</p>', "<ul>"]
    H += [f"<li>{_esc(s)}</li>" for s in _trend_lines(data)] + ["</ul>"]
    H += [f'<h3 id="deltas">{_esc(DELTAS_TITLE)}</h3>', "<ul>"]
    H += [f"<li>{_esc(s)}</li>" for s in _delta_lines(data)] + ["</ul>"]
    H += ['<h3 id="problems">Missing, failed or all-zero results</h3>', "<ul>"]
    probs = data["problems"]
    H += [f"<li>{_esc(p['job'])}{(' ' + _esc(_arm(p['arm'], data))) if p['arm'] else ''}: {_esc(p['text'])}</li>"
          for p in probs] or ["<li>none</li>"]
    H += ["</ul>"]
    inc = _incident_lines(data)
    if inc:
        H += ['<h3 id="incident">The incident and its diagnosis</h3>', "<ul>"]
        H += [f"<li>{_esc(s)}</li>" for s in inc]
        H += [f'<li>{_esc(k)} notebook: <a href="{_esc(_rel(v))}">{_esc(v)}</a></li>'
              for k, v in data["incident"]["links"].items()]
        H += ["</ul>"]
    if data["trust"]:
        H += ['<h3 id="trust">Trust flags</h3>', "<ul>"] + [f"<li>{_esc(t)}</li>" for t in data["trust"]] + ["</ul>"]
    H += ['<h3 id="provenance">Provenance</h3>', "<ul>"] + [f"<li>{_esc(s)}</li>" for s in _provenance_lines(data)]
    H += ["</ul>", "</section>"]
    return "\n".join(H)


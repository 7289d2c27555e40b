"""The Phase G text artifacts: metrics summary, deltas, highlights, digest and the SSIM grid."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import ARMS, SPLITS, dose_label
from ..phase_g.collect import JobRecord, _parse_dose_dir
from ..phase_g.schema import (
    AGGREGATE_METRICS,
    DELTA_ARMS,
    DELTA_DECIMALS,
    HIGHLIGHT_ORDER,
    HIGHLIGHT_PREFIXES,
    MS_SSIM_THRESHOLD,
    PREVIEW_PREFIXES,
)
from ..provenance import utc_now

# --------------------------------------------------------------------------- summaries


def phase_c_metadata_compliance(hub) -> dict:
    """Check the Phase C datasets for ``_metadata`` (the study's compliance block).

    Parameters
    ----------
    hub : str or Path
        Study hub (its ``data/phase_c`` datasets are opened).

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
    root = _hub.datasets_root(hub)
    if not root.is_dir():
        return {"error": f"Phase C root not found: {root.relative_to(hub).as_posix()}"}
    out: dict = {}
    for ddir in sorted(root.glob("dose_*"), key=lambda p: _parse_dose_dir(p.name) or 0):
        dose = _parse_dose_dir(ddir.name)
        if dose is None or not ddir.is_dir():
            continue
        entry: dict = {}
        for split in SPLITS:
            npz = _hub.dataset_path(hub, dose, split)
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
                except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a damaged file is reported
                    rec["error"] = f"{type(exc).__name__}: {exc}"
            entry[split] = rec
        out[dose_label(dose)] = entry
    return out


def _aggregate(jobs: list[JobRecord], statuses: dict | None = None) -> tuple[dict, list[str]]:
    agg: dict = {}
    missing: list[str] = []
    models = set(ARMS)
    for j in jobs:
        models.update(m["model"] for m in j.metrics if m["model"] != "GroundTruth")
    for model in sorted(models):
        agg[model] = {}
        for metric in AGGREGATE_METRICS:
            amps, phs, gaps, untrusted = [], [], [], []
            for j in jobs:
                row = next((m for m in j.metrics if m["model"] == model and m["metric"] == metric), None)
                if row is not None and row.get("amplitude") is not None and row.get("phase") is not None:
                    amps.append(row["amplitude"])
                    phs.append(row["phase"])
                    if any(f.arm == model for f in j.trust_flags):
                        untrusted.append(j.label)
                else:
                    gaps.append(j.label)
                    if j.status == "success":  # failed jobs are listed once, by summarize_jobs
                        known = (statuses or {}).get((model, int(j.dose), j.view, j.split))
                        if known and known.startswith("zero"):  # an all-zero arm is zero, never "missing"
                            missing.append(f"{j.label}: {model} {metric} not scored: output {known}")
                        else:
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
            entry["untrusted_jobs"] = untrusted  # counted in the means above, flagged (see "untrusted")
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
        phase_c_metadata_compliance, missing, untrusted, n_untrusted_jobs,
        generated_at}``. Aggregates are means over the jobs where both amplitude
        and phase are present. ``untrusted`` has one line per trust flag
        (:mod:`ptyanalysis.phase_g.trust`); each job entry has ``trust_flags``
        and ``trust`` (measurements and notes) when it was checked. The flags
        are added beside the study's fields: no number is dropped or changed.
    """
    from ..phase_g.story import cell_statuses

    agg, missing_values = _aggregate(jobs, cell_statuses(hub, jobs))
    missing = [f"{j.label}: job {j.status} ({j.error})" for j in jobs if j.status != "success"]
    missing += missing_values
    job_entries = []
    for j in jobs:
        e = {"dose": j.dose, "view": j.view, "split": j.split, "status": j.status, "metrics": [dict(m) for m in j.metrics]}
        if j.error:
            e["error"] = j.error
        if j.trust is not None:
            e["trust_flags"] = [f.as_dict() for f in j.trust.flags]
            e["trust"] = {k: v for k, v in j.trust.as_dict().items() if k != "flags"}
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
        "untrusted": [str(f) for j in jobs for f in j.trust_flags],
        "n_untrusted_jobs": sum(bool(j.trust_flags) for j in jobs),
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


def _untrusted_section(summary: dict) -> list[str]:
    flags = summary.get("untrusted") or []
    if not flags:
        return []
    lines = ["## Untrusted Results", "",
             f"{len(flags)} flag(s) in {summary.get('n_untrusted_jobs', '?')} job(s): the reconstructions behind these "
             "numbers are not what they claim to be (checked by ptyanalysis: covered fraction of the scan, patches "
             "stitched against offsets, mostly-zero output). The numbers are kept as the job wrote them.", ""]
    lines += [f"- {m}" for m in flags]
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
        for f in job.get("trust_flags") or []:
            L += [f"**UNTRUSTED {f['arm']}** ({f['check']}): {f['message']}  "]
        if job.get("trust_flags"):
            L.append("")
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
    L += _untrusted_section(summary)
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
    L += _untrusted_section(summary)
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
    if summary.get("untrusted"):
        L += ["", f"Untrusted: {len(summary['untrusted'])} flag(s) in {summary.get('n_untrusted_jobs', '?')} job(s) "
              "(see metrics_summary.md, 'Untrusted Results')"]
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
    if summary.get("untrusted"):
        L += [f"**⚠️ UNTRUSTED RESULTS: {len(summary['untrusted'])} flag(s) in {summary.get('n_untrusted_jobs', '?')} "
              "job(s); see 'Untrusted Results' below.**", ""]
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
    L += _untrusted_section(summary)
    L += ["## References", "", "- Full metrics report: `aggregate_report.md`", "- Raw metrics data: `metrics_summary.json`",
          "- Detailed highlights: `aggregate_highlights.txt`"]
    return "\n".join(L) + "\n"



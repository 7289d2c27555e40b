"""The Phase G driver (``ptyanalysis phase-g``): collect, write the artifacts, figures and the report."""

from __future__ import annotations

from pathlib import Path

from .. import hub as _hub
from ..errors import PtyAnalysisError
from ..fileutil import write_json, write_text
from ..phase_g.collect import PhaseGResult, collect_jobs, read_manifest
from ..phase_g.figures import write_figures
from ..phase_g.html import default_notebook, execute_report_notebook, render_html
from ..phase_g.inventory import write_artifact_inventory
from ..phase_g.ptychopinn_study import find_studies, import_studies
from ..phase_g.results import results_dataset, save_dataset
from ..phase_g.schema import FILES, MS_SSIM_THRESHOLD
from ..phase_g.summary import (
    aggregate_highlights_text,
    aggregate_report_markdown,
    delta_highlight_lines,
    delta_preview_lines,
    delta_summary,
    metrics_digest_markdown,
    metrics_summary_markdown,
    ssim_grid_markdown,
    summarize_jobs,
)

# --------------------------------------------------------------------------- driver


def phase_g(hub, notebook=None, html: bool = True, figures: bool = True,
            ms_ssim_threshold: float = MS_SSIM_THRESHOLD, arms: dict | None = None,
            dose: float | None = None) -> PhaseGResult:
    """Aggregate a hub's per-job results into every Phase G artifact.

    Parameters
    ----------
    hub : str or Path
        Study hub with ``analysis/dose_<D>/<view>/<split>/comparison_metrics.csv``
        files (and, usually, the grid's ``comparison_manifest.json``), or a
        folder of today's PtychoPINN study outputs (one grid-lines study folder or
        several: :mod:`ptyanalysis.phase_g.ptychopinn_study`), whose studies are
        first written as jobs under its ``analysis/`` (refreshed at every call).
    notebook : str or Path, optional
        Phase G notebook to execute and render as ``analysis/phase_g_report.html``
        (default :func:`default_notebook`, the package's own; skipped when
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
    arms : dict, optional
        PtychoPINN study folders only: ``{arm: model_id}`` choosing which of the
        study's models is reported as which arm (default: ``pinn`` and ``baseline``).
    dose : float, optional
        PtychoPINN study folders only: the photons per pattern of every study, instead of its recorded
        ``nphotons`` (needed when a study records none).

    Returns
    -------
    PhaseGResult

    Raises
    ------
    PtyAnalysisError
        No hub, no job at all, or malformed per-job files.
    """
    hub = Path(hub).resolve()
    analysis = _hub.analysis_root(hub)
    _hub.check_hub_folder(hub)
    imported = None
    if find_studies(hub):
        imported = import_studies(hub, arms=arms, dose=dose)
    elif arms or dose is not None:
        raise PtyAnalysisError(f"{hub}: arms / dose apply to PtychoPINN study folders only, and none was found there")
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
                        missing=tuple(summary["missing"]), imported=imported)

"""The study's manifest (``HUB/analysis/comparison_manifest.json``): one run's, and its merge into the hub's."""

from __future__ import annotations

from ... import hub as _hub
from ...provenance import software_versions, utc_now
from .cell import cell_attempts
from .spec import LOG_NAME


def _job_key(d: dict) -> tuple:
    try:
        dose = float(d.get("dose"))
    except (TypeError, ValueError):
        dose = d.get("dose")
    return (dose, d.get("view"), d.get("split"))


def merge_manifest(old: dict | None, new: dict) -> dict:
    """Merge a grid run's manifest into the hub's existing one.

    The cells of ``new`` replace their entries in ``old`` (matched by dose,
    view and split); every other job of ``old`` is kept as it was, so a
    rerun of a subset of the cells never drops the rest of the study. The
    totals (``n_jobs``, ``n_success``, ``n_failed``) are recounted over the
    merged jobs; ``n_executed`` / ``n_skipped`` describe this run;
    ``grid`` is the union of both grids; ``merged`` says what was kept.

    Parameters
    ----------
    old : dict or None
        The existing manifest (None, or not a manifest: ``new`` is returned).
    new : dict
        This run's manifest.

    Returns
    -------
    dict
    """
    if (not isinstance(old, dict) or not isinstance(old.get("jobs"), list)
            or not isinstance(old.get("execution_results"), list)):
        return new
    ours = {_job_key(j) for j in new["jobs"]}
    old_exec = {_job_key(e): e for e in old["execution_results"] if isinstance(e, dict)}
    kept_jobs = [j for j in old["jobs"] if isinstance(j, dict) and _job_key(j) not in ours]
    jobs, execs = [], []
    new_exec = {_job_key(e): e for e in new["execution_results"]}
    by_key = {_job_key(j): j for j in new["jobs"]}
    placed = set()
    for j in old["jobs"]:  # the study's order, with this run's cells in their places
        if not isinstance(j, dict):
            continue
        k = _job_key(j)
        if k in ours:
            jobs.append(by_key[k])
            execs.append(new_exec[k])
            placed.add(k)
        else:
            jobs.append(j)
            execs.append(old_exec.get(k, {"dose": j.get("dose"), "view": j.get("view"), "split": j.get("split"),
                                          "status": "unknown", "returncode": 1,
                                          "error": "no execution result in the previous manifest"}))
    for j in new["jobs"]:
        k = _job_key(j)
        if k not in placed:
            jobs.append(j)
            execs.append(new_exec[k])
    n_ok = sum(int(e.get("returncode", 1)) == 0 for e in execs)
    grid = {}
    for axis in ("doses", "views", "splits"):
        vals = list((old.get("grid") or {}).get(axis) or [])
        grid[axis] = vals + [v for v in new["grid"][axis] if v not in vals]
    out = dict(new)
    out.update({"n_jobs": len(jobs), "n_success": n_ok, "n_failed": len(jobs) - n_ok, "grid": grid,
                "jobs": jobs, "execution_results": execs,
                "merged": {"previous_generated_at": old.get("generated_at"), "kept_jobs": len(kept_jobs),
                           "replaced_jobs": len(placed), "added_jobs": len(new["jobs"]) - len(placed),
                           "this_run_jobs": len(new["jobs"])}})
    return out


def _entries(spec, cells, results, settings) -> tuple[list, list]:
    """The manifest's ``jobs`` and ``execution_results``, one of each per cell."""
    analysis = _hub.analysis_root(spec.hub)
    jobs, execs = [], []
    for c in cells:
        r = results[c.label]
        rel = c.output_dir.relative_to(analysis).as_posix()
        jobs.append({"dose": c.dose, "view": c.view, "split": c.split, "output_dir": rel,
                     "notebook": f"{rel}/{c.output_notebook.name}", "parameters": c.parameters,
                     "param_hash": c.param_hash, "outputs": list(spec.outputs)})
        e = {"dose": c.dose, "view": c.view, "split": c.split, "status": r.status, "returncode": r.returncode,
             "log_path": f"{rel}/{LOG_NAME}", "output_notebook": f"{rel}/{c.output_notebook.name}",
             "attempts": r.attempts, "lost_attempts": r.lost_attempts, "elapsed_s": round(r.elapsed_s, 3),
             "peak_rss_bytes": r.peak_rss_bytes}
        if settings is not None and r.status != "skipped":
            e["attempt_logs"] = [f"{rel}/{a['log']}" for a in cell_attempts(c, settings.run_id) if a.get("log")]
        if r.status == "failed":
            e.update({"error_name": r.error_name, "error_value": r.error_value, "cell_index": r.cell_index,
                      "error": f"{r.error_name}: {r.error_value}"})
        execs.append(e)
    return jobs, execs


def _manifest(spec, cells, results, wall_s, backend, declared, settings=None, plan=None) -> dict:
    """This run's manifest, in the study's format (``n_jobs, n_success, n_failed, jobs, execution_results`` ...)."""
    jobs, execs = _entries(spec, cells, results, settings)
    n_ok = sum(results[c.label].returncode == 0 for c in cells)
    return {
        "generated_at": utc_now(), "spec": spec.source, "hub": str(spec.hub), "notebook": str(spec.notebook),
        "n_jobs": len(cells), "n_executed": sum(results[c.label].status in ("success", "failed") for c in cells),
        "n_skipped": sum(results[c.label].status == "skipped" for c in cells),
        "n_success": n_ok, "n_failed": len(cells) - n_ok,
        "filters": {"dose": None, "view": None, "split": None},
        "grid": {"doses": list(spec.doses), "views": list(spec.views), "splits": list(spec.splits)},
        "parameters": spec.parameters, "declared_parameters": sorted(declared), "retries": spec.retries,
        "backend": backend, "wall_s": round(wall_s, 3), "software_versions": software_versions(),
        "run_id": settings.run_id if settings is not None else None,
        "reuse_kernel": settings.reuse_kernel if settings is not None else None,
        "memory": plan.to_dict() if plan is not None else None,
        "jobs": jobs, "execution_results": execs,
    }

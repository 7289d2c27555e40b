"""Phase G results as an ``xarray.Dataset`` (dims dose, view, split, arm, metric, component)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import ARMS, SPLITS, VIEWS
from ..fileutil import write_netcdf
from ..imaging.metrics import metric_unit
from ..phase_g.collect import JobRecord, collect_jobs
from ..phase_g.schema import COMPONENTS, FILES, SCALAR_METRICS, TUPLE_METRICS
from ..provenance import software_versions, utc_now

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
    ds = ds.assign_coords(units=(("metric", "component"), np.array(
        [[metric_unit(m, c, "ptychopinn") for c in COMPONENTS] for m in metrics])))
    ds["value"].attrs["long_name"] = "comparison metric (NaN = missing)"
    ds["value"].attrs["units"] = "per value: the 'units' coordinate (metric, component; PtychoPINN convention)"
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
    return write_netcdf(path, ds)


def load_results(hub):
    """The hub's results dataset: ``analysis/phase_g_metrics.nc`` if present, else built from the jobs.

    Parameters
    ----------
    hub : str or Path
        Study hub after ``ptyanalysis grid`` (and usually ``phase-g``).

    Returns
    -------
    xarray.Dataset
        See :func:`results_dataset`.
    """
    import xarray as xr

    path = _hub.analysis_root(hub) / FILES["dataset"]
    if path.exists():
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    return results_dataset(collect_jobs(hub))



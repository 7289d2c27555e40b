"""The synthetic study end to end: what ``make demo`` runs.

1. simulate the study (:mod:`ptyanalysis.synthetic.simulate`) and train its arms
   (:mod:`ptyanalysis.synthetic.training`), skipping what already exists;
2. run the per-job comparison notebook over the grid dose x view x split
   (:mod:`ptyanalysis.pipeline.grid`, papermill on a Dask LocalCluster);
3. run the split-comparison and zero-prediction-bisection notebooks on the
   reproduced incident (the Baseline fed as the study fed it);
4. Phase G: artifacts, figures and the HTML report (:mod:`ptyanalysis.phase_g`);
5. verification (:mod:`ptyanalysis.phase_g.verify`);

then prints where everything is, the timings, and each arm's reconstruction
quality.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .. import hub as _hub
from ..conventions import DOSES, SPLITS, VIEWS

#: Files every comparison cell must leave.
JOB_OUTPUTS = ("comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png", "comparison.nc")
#: The diagnosis notebooks (the package's templates) run on the reproduced incident.
DIAGNOSIS_NOTEBOOKS = ("01_split_comparison", "02_zero_prediction_bisection")


def ensure_study(hub, size: str = "ci", doses=None, say=print) -> Path:
    """Make sure ``hub`` holds a simulated, trained synthetic study of ``size``.

    Simulates when ``HUB/study.json`` is absent and trains whatever model or
    iterative reconstruction is missing; an existing complete hub is left as is.

    Parameters
    ----------
    hub : str or Path
    size : str
        ``ci``, ``demo`` or ``study``.
    doses : sequence of float, optional
        Default :data:`~ptyanalysis.conventions.DOSES`.
    say : callable
        Progress messages.

    Returns
    -------
    Path
    """
    from ..synthetic import training as arms
    from . import simulate

    hub = Path(hub)
    cfg = simulate.simulation_config(size, doses=doses or DOSES)  # an unknown size is refused here
    if not (hub / "study.json").exists():
        say(f"simulating the {size} study in {hub}")
        simulate.simulate_study(hub, cfg, progress=say)
    arms.train_study(hub, arms.TRAIN_CONFIGS[size], say=say)
    return hub


def grid_spec(hub, workers=None):
    """The comparison grid of a synthetic hub (every dose x view x split).

    Parameters
    ----------
    hub : str or Path
        A hub with ``study.json``.
    workers : int, optional

    Returns
    -------
    GridSpec
    """
    from ..pipeline import grid as grid
    from ..pipeline.notebook import template_path

    doses = json.loads((Path(hub) / "study.json").read_text())["config"]["doses"]
    return grid.spec_from_dict({
        "hub": str(hub), "notebook": str(template_path("00_compare_arms")),
        "doses": [int(d) for d in doses], "views": list(VIEWS), "splits": list(SPLITS),
        "outputs": list(JOB_OUTPUTS), "retries": 1,
        **({"workers": workers} if workers else {}),
    }, source="ptyanalysis.synthetic.demo")


def run_comparison_grid(hub, workers=None):
    """Run the comparison notebook over every job of a synthetic hub (:func:`grid_spec`).

    Parameters
    ----------
    hub : str or Path
        A simulated, trained hub (:func:`ensure_study`).
    workers : int, optional
        Grid workers (default: one per core, as the grid decides).

    Returns
    -------
    GridResult
        Its ``ok`` says whether every cell completed.
    """
    from ..pipeline import grid as grid

    return grid.run_grid(grid_spec(Path(hub).resolve(), workers))


def incident_dose(hub) -> tuple[float, str]:
    """The dose the demo diagnoses: where the study's feed differs most from the trained one.

    The study fed the Baseline its diffraction without ``intensity_scale = sqrt(nphotons) / (N/2)``
    (and absolute positions). Where that factor is close to 1 (dose 1000 at N = 64: 0.99) the
    missing factor is no fault at all, so the demo picks the dose whose factor is farthest from 1
    (in log), where the incident has both of its faults.

    Returns
    -------
    (float, str)
        The dose and a sentence saying why.
    """
    from ..inference.feeds import intensity_scale_for

    config = json.loads((Path(hub) / "study.json").read_text())["config"]
    N = int(config["size"]["N"])
    scales = {float(d): intensity_scale_for(float(d), N) for d in config["doses"]}
    dose = max(scales, key=lambda d: abs(math.log(scales[d])))
    return dose, (f"its intensity_scale {scales[dose]:.3g} is the farthest from 1 at N = {N}, so the study's "
                  "unscaled feed is a fault there as well as its absolute positions")


def diagnosis_parameters(hub, name: str, dose: float) -> dict:
    """Parameters of a diagnosis notebook on the incident of a synthetic hub (absolute paths)."""

    hub = Path(hub).resolve()
    model = _hub.model_dir(hub, dose, "Baseline")
    # no reference: the tools build it as the model was trained (and the bisection pairs it with the failing set)
    common = {"hub": str(hub), "dose": float(dose), "model": str(model),
              "study_inputs": True, "ensure_synthetic": None,
              "output_dir": str(_hub.diagnosis_dir(hub, name))}
    train, test = (str(_hub.dataset_path(hub, dose, s)) for s in ("train", "test"))
    if name == "01_split_comparison":
        return {**common, "split_a": train, "split_b": test, "names": ["train", "test"]}
    return {**common, "failing": test, "passing": train, "criterion": "all-zero"}


def run_demo(hub, size: str = "demo", workers=None, say=print) -> dict:
    """Run the whole synthetic study; returns timings, paths and the verification result.

    Parameters
    ----------
    hub : str or Path
    size : str
    workers : int, optional
    say : callable

    Returns
    -------
    dict
        ``hub, timings_s, grid_ok, html, verification, bisection_verdict, bisection_fix,
        diagnosis_notebooks``.
    """
    from ..phase_g import report
    from ..phase_g import verify as verify
    from ..pipeline import notebook as nbk

    hub = Path(hub).resolve()
    t = {}
    t0 = time.perf_counter()
    ensure_study(hub, size, say=say)
    t["simulate+train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("running the comparison grid (papermill on Dask)")
    res = run_comparison_grid(hub, workers)
    say(res.table() if hasattr(res, "table") else str(res))
    t["grid"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dose, why = incident_dose(hub)
    diag = {}
    for name in DIAGNOSIS_NOTEBOOKS:
        params = diagnosis_parameters(hub, name, dose)
        out = _hub.diagnosis_dir(hub, f"{name}.ipynb")
        out.parent.mkdir(parents=True, exist_ok=True)
        say(f"running {name} on the reproduced incident (dose {dose:g}: {why})")
        nbk.execute(name, out, params, cwd=out.parent)
        diag[name] = out
    t["diagnosis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("Phase G: artifacts, figures, HTML report")
    pg = report.phase_g(hub)
    t["phase_g"] = time.perf_counter() - t0
    vr = verify.verify_hub(hub)
    bis = json.loads((_hub.diagnosis_dir(hub, "02_zero_prediction_bisection") / "bisection.json").read_text())
    summary = {"hub": str(hub), "timings_s": t, "grid_ok": res.ok, "html": str(pg.files.get("html", "")),
               "verification": f"{vr.n_valid}/{vr.n_checks}" if hasattr(vr, "n_valid") else str(vr),
               "bisection_verdict": bis.get("verdict"), "bisection_fix": bis.get("fix"), "diagnosis_notebooks": {k: str(v) for k, v in diag.items()}}
    return summary


def quality_table(hub, convention: str | None = None):
    """Mean SSIM / MS-SSIM of each arm over the hub's jobs, as a DataFrame.

    Parameters
    ----------
    hub : str or Path
    convention : str, optional
        Metric convention; default the one of ``comparison_metrics.csv`` and the
        Phase G report (:class:`~ptyanalysis.pipeline.compare.CompareConfig` ``csv_convention``).

    Returns
    -------
    pandas.DataFrame
        Rows arms, columns (metric, component); empty when there is no job.
    """
    import xarray as xr

    from ..pipeline.compare import CompareConfig

    convention = convention or CompareConfig().csv_convention
    rows = []
    for nc in sorted(Path(hub).glob("analysis/dose_*/*/*/comparison.nc")):
        with xr.open_dataset(nc, engine="h5netcdf") as ds:
            m = ds["metrics"].sel(convention=convention, metric=["ssim", "ms_ssim"]).load()
        for arm in m["arm"].values:
            for metric in ("ssim", "ms_ssim"):
                for comp in ("amplitude", "phase"):
                    rows.append({"arm": str(arm), "metric": metric, "component": comp,
                                 "value": float(m.sel(arm=arm, metric=metric, component=comp))})
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    return df.pivot_table(index="arm", columns=["metric", "component"], values="value", aggfunc="mean")

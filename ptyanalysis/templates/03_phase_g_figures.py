# ---
# jupyter:
#   jupytext:
#     formats: notebooks///ipynb,ptyanalysis/templates///py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Phase G: the study's report, with the figures people want
#
# Aggregates every per-job comparison of the hub into the study's artifacts (byte-for-byte formats)
# and draws: heat-map grids of MS-SSIM and SSIM (amplitude and phase) per arm over dose x view x split,
# reconstruction panels, FRC curves with thresholds, and metrics against dose. A missing arm or failed
# job is shown as missing, never dropped.

# %%
# %matplotlib inline
import json
from pathlib import Path

from IPython.display import display

from ptyanalysis import hub as hubs
from ptyanalysis import phase_g
from ptyanalysis.pipeline import notebook as nbk

# %% tags=["parameters"]
hub: Path = "../demo_hub"  # study hub (a relative path is relative to this notebook's folder)
write_artifacts: bool = True  # write the study's artifacts first (`ptyanalysis phase-g` passes False: it already did)

# %%
params = nbk.check_parameters(globals(), "03_phase_g_figures")

# %%
if write_artifacts:
    phase_g.phase_g(hub, html=False)
analysis = hubs.analysis_root(hub)
summary = json.loads((analysis / "metrics_summary.json").read_text())

# %%
# NBVAL_CHECK_OUTPUT
# jobs, and anything shown as missing; the phase-only delta preview
print("jobs:", summary["n_jobs"], "succeeded:", summary["n_success"], "missing:", summary["missing"])
print((analysis / "metrics_delta_highlights_preview.txt").read_text())

# %% [markdown]
# ## MS-SSIM grid (amplitude and phase, every arm, dose x view x split)

# %%
ds = phase_g.load_results(hub)
phase_g.plot_metric_grid(ds, "ms_ssim")

# %% [markdown]
# ## SSIM grid

# %%
phase_g.plot_metric_grid(ds, "ssim")

# %% [markdown]
# ## Metrics against dose

# %%
phase_g.plot_metrics_vs_dose(ds)

# %% [markdown]
# ## Reconstructions and FRC, one job per dose (test split, dense view)

# %%
for d in sorted(float(x) for x in ds["dose"].values):
    job = hubs.analysis_dir(hub, d, "dense", "test")
    if (job / "reconstructions.npz").exists():
        display(phase_g.plot_reconstructions(job, title=f"dose {d:g}, dense, test"))
        display(phase_g.plot_frc_curves(job, title=f"FRC dose {d:g}, dense, test"))

# %% [markdown]
# ## Study text artifacts

# %%
print((analysis / "metrics_delta_highlights.txt").read_text())

# %%
print((analysis / "ssim_grid_summary.md").read_text())

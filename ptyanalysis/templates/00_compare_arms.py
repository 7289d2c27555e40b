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
# # Per-job comparison: PtychoPINN vs Baseline vs iterative
#
# One dose / view / split of a study hub: every arm's inference is streamed into the stitcher
# on the ground truth's frame, registered (sub-pixel) and scored on amplitude and phase with
# both metric conventions (`ptychopinn` = the study's `compare_models`, `ptyanalysis` = ours).
# Writes the study's per-job files under `analysis/dose_<D>/<view>/<split>/`.
# `baseline_positions="study"` feeds the Baseline what the study's script fed it (diffraction
# not multiplied by its intensity scale, and absolute positions) and reproduces the all-zero incident.
#
# Edit the parameters cell and run all cells; nothing is simulated or trained unless
# `ensure_synthetic` names a synthetic study size.

# %%
# %matplotlib inline
from pathlib import Path
from typing import Optional

from IPython.display import Image, display

from ptyanalysis import hub as hubs
from ptyanalysis import phase_g
from ptyanalysis.pipeline import compare
from ptyanalysis.pipeline import notebook as nbk

# %% tags=["parameters"]
hub: Path = "../demo_hub"  # study hub (data/phase_c, phase_e, phase_f); relative to this notebook's folder
dose: float = 1000.0  # photons per pattern
view: str = "dense"  # dense | sparse
split: str = "test"  # train | test
baseline_positions: str = "trained"  # trained (as the model was trained) | study (as the study's script fed it)
register: str = "ptychi"  # ptychi (the study default) | all | none
batch_size: Optional[int] = None  # inference batch size of the network arms (None: sized by memory and device)
output_dir: Optional[Path] = None  # default: HUB/analysis/dose_<D>/<view>/<split>
ensure_synthetic: Optional[str] = None  # e.g. "ci": simulate and train this synthetic study if the hub has none

# %%
params = nbk.check_parameters(globals(), "00_compare_arms")

# %%
nbk.ensure_synthetic_study(hub, ensure_synthetic)  # simulates and trains only when ensure_synthetic names a size
config = compare.CompareConfig(baseline_positions=baseline_positions, register=register, batch_size=batch_size)
ds = compare.compare_job(hub, dose, view, split, config, out_dir=output_dir)
job_dir = output_dir or hubs.analysis_dir(hub, dose, view, split)

# %%
# NBVAL_CHECK_OUTPUT
# status of each arm (ok / zero / missing)
ds["status"].to_series()

# %% [markdown]
# ## Metrics, study convention (`comparison_metrics.csv`)

# %%
ds["metrics"].sel(convention="ptychopinn").to_dataframe()["metrics"].unstack("component").round(4)

# %% [markdown]
# ## Metrics, ptyanalysis convention (explicit data range, FRC in cycles/pixel)

# %%
ds["metrics"].sel(convention="ptyanalysis").to_dataframe()["metrics"].unstack("component").round(4)

# %% [markdown]
# ## Reconstructions (registered, shared colour limits, covered region)

# %%
display(Image(filename=str(job_dir / "comparison_plot.png")))

# %%
phase_g.plot_frc_curves(job_dir, title=f"FRC, dose {dose:g} {view} {split}")

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
# # Split comparison: how do a model's inputs and outputs differ between two splits?
#
# For each model input: summary statistics per split, two-sample drift measures with stated
# thresholds (KS, Wasserstein in units of the reference std, standardized mean difference),
# inputs ranked by drift; per-pattern summaries for image inputs and scan maps for positions.
# Output health per split is scored against a **reference** (the model's output on inputs drawn
# like its training inputs), so a split that is itself degraded is flagged even when the other is worse.
# The inputs are loaded exactly as `ptyanalysis compare-splits` loads them.
#
# Edit the parameters cell and run all cells; nothing is simulated or trained unless
# `ensure_synthetic` names a synthetic study size.

# %%
# %matplotlib inline
from pathlib import Path
from typing import Optional

from ptyanalysis.diagnosis import inputs, splits
from ptyanalysis.inference import RuntimeConfig
from ptyanalysis.pipeline import notebook as nbk

# %% tags=["parameters"]
hub: Path = "../demo_hub"  # study hub; the defaults below come from it (relative to this notebook's folder)
dose: float = 1000.0  # dose of the defaults below
model: Optional[Path] = None  # model file or directory; default: HUB's Baseline at DOSE
split_a: Optional[Path] = None  # first split NPZ; default: HUB's train dataset at DOSE
split_b: Optional[Path] = None  # second split NPZ; default: HUB's test dataset at DOSE
reference: Optional[Path] = None  # NPZ of inputs drawn like the training inputs; default: derived like the CLI
names: list[str] = ["train", "test"]  # names of the two splits ("train,test" is read as a list)
study_inputs: bool = True  # the split files are study datasets, fed exactly as the study's script fed them
batch_size: int = 256  # inference batch size
max_output_samples: Optional[int] = 2000  # run the model on at most this many (seeded) samples per split
seed: int = 0  # seed of every subsample
output_dir: Optional[Path] = None  # default: HUB/analysis/diagnosis/split_comparison/dose_<D>
ensure_synthetic: Optional[str] = None  # e.g. "ci": simulate and train this synthetic study if the hub has none

# %%
params = nbk.check_parameters(globals(), "01_split_comparison")

# %%
nbk.ensure_synthetic_study(hub, ensure_synthetic)  # simulates and trains only when ensure_synthetic names a size
# the model, the inputs, the reference and the ground truth exactly as `ptyanalysis compare-splits` takes them
run = nbk.diagnosis_inputs(hub, dose, {"a": split_a, "b": split_b}, {"a": "train", "b": "test"},
                           output_name="split_comparison", model=model, reference=reference,
                           study_inputs=study_inputs, trained_like="a", seed=seed, output_dir=output_dir,
                           say=params.say)
truth = inputs.split_ground_truth(run.datasets, dict(zip(("a", "b"), names)), say=params.say) if study_inputs else None
result = splits.compare_splits(run.model, run.sets["a"], run.sets["b"], reference=run.reference, ground_truth=truth,
                               names=tuple(names), seed=seed, max_output_samples=max_output_samples,
                               runtime=RuntimeConfig(batch_size=batch_size))
written = splits.write_split_comparison(result, run.output_dir)

# %% [markdown]
# ## Inputs ranked by drift

# %%
# NBVAL_CHECK_OUTPUT
# most drifted input first
list(result.ranking)

# %%
result.summary_table().round(3)

# %% [markdown]
# ## Output health against the reference

# %%
# NBVAL_CHECK_OUTPUT
result.health_table()[["split", "degraded"]]

# %%
result.health_table().round(3)

# %%
for f in result.flags:
    print("-", f)

# %%
splits.plot_split_comparison(result)

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
# # Zero-prediction bisection: isolate why a model fails on one set and passes on another
#
# Reproduce first; then runtime factors (batch size, XLA, eager/graph, dtype, device), input swaps
# and interventions (delta debugging over inputs), sample subsets (ddmin) and the first dead layer.
# Every experiment is recorded; causes are ranked by how much of the **reference** health they restore.
# The inputs are loaded exactly as `ptyanalysis bisect` loads them, so both give the same verdict.
#
# Edit the parameters cell and run all cells; nothing is simulated or trained unless
# `ensure_synthetic` names a synthetic study size.

# %%
# %matplotlib inline
from pathlib import Path
from typing import Optional

from ptyanalysis.diagnosis import bisection, health
from ptyanalysis.inference import RuntimeConfig
from ptyanalysis.pipeline import notebook as nbk

# %% tags=["parameters"]
hub: Path = "../demo_hub"  # study hub; the defaults below come from it (relative to this notebook's folder)
dose: float = 1000.0  # dose of the defaults below
model: Optional[Path] = None  # model file or directory; default: HUB's Baseline at DOSE
failing: Optional[Path] = None  # NPZ of the failing inputs; default: HUB's test dataset at DOSE
passing: Optional[Path] = None  # NPZ of the passing inputs; default: HUB's train dataset at DOSE
reference: Optional[Path] = None  # NPZ of inputs drawn like the training inputs; default: derived like the CLI
criterion: str = "all-zero"  # all-zero | non-finite | collapsed[:tol] | module:function
study_inputs: bool = True  # failing/passing are study datasets, fed exactly as the study's script fed them
batch_size: int = 256  # as `ptyanalysis bisect --batch-size`
max_samples: int = 2000  # as `ptyanalysis bisect --max-samples`
max_evaluations: int = 58  # as `ptyanalysis bisect --max-evaluations`
seed: int = 0  # as `ptyanalysis bisect --seed`
output_dir: Optional[Path] = None  # default: HUB/analysis/diagnosis/bisection/dose_<D>
ensure_synthetic: Optional[str] = None  # e.g. "ci": simulate and train this synthetic study if the hub has none

# %%
params = nbk.check_parameters(globals(), "02_zero_prediction_bisection")

# %%
nbk.ensure_synthetic_study(hub, ensure_synthetic)  # simulates and trains only when ensure_synthetic names a size
# the model, the inputs and the reference exactly as `ptyanalysis bisect` takes them
run = nbk.diagnosis_inputs(hub, dose, {"failing": failing, "passing": passing}, {"failing": "test", "passing": "train"},
                           output_name="bisection", model=model, reference=reference, study_inputs=study_inputs,
                           trained_like="passing", seed=seed, paired_label="failing", output_dir=output_dir,
                           say=params.say)
result = bisection.bisect(run.model, run.sets["failing"], run.sets["passing"], run.reference,
                          health.parse_criterion(criterion), max_samples=max_samples,
                          max_evaluations=max_evaluations, seed=seed, runtime=RuntimeConfig(batch_size=batch_size),
                          paired_reference=run.paired)
path = bisection.write_bisection(result, run.output_dir)

# %% [markdown]
# ## Verdict

# %%
# NBVAL_CHECK_OUTPUT
print(result.verdict["kind"], "|", result.verdict["name"])
print(result.verdict["summary"])
print("fix (verified: the failing set passes with it):" if result.verdict["verified"] else "fix (not verified):",
      result.fix)

# %%
print(f"health: failing {result.health['failing']:.3f}, passing {result.health['passing']:.3f}, "
      f"reference {result.health['reference']:.3f}; {result.evaluations} model evaluations, {result.elapsed_s:.1f} s")

# %% [markdown]
# ## Causes ranked by restored health

# %%
result.causes_table()

# %% [markdown]
# ## Every experiment

# %%
result.experiments_table()

# %% [markdown]
# ## Layers: zero fraction per layer on both sets

# %%
result.layer_table()

# %%
bisection.plot_bisection(result)

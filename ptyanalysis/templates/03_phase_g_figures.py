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
# # Phase G report
#
# The study's comparison of PtychoPINN, the Baseline and the iterative arm over dose x view x split:
# the summary first, then the figures, then the study's text artifacts.

# %% tags=["report-hide"]
# %matplotlib inline
import json
from pathlib import Path
from typing import Optional

from IPython.display import HTML, Markdown, display

from ptyanalysis import hub as hubs
from ptyanalysis import phase_g
from ptyanalysis.pipeline import notebook as nbk

# %% tags=["parameters", "report-hide"]
hub: Path = "../demo_hub"  # study hub (a relative path is relative to this notebook's folder)
write_artifacts: bool = True  # write the study's artifacts first (`ptyanalysis phase-g` passes False: it already did)
job_panels: Optional[int] = None  # reconstruction and FRC panels for at most this many jobs (None: every job)

# %% tags=["report-hide"]
params = nbk.check_parameters(globals(), "03_phase_g_figures")

# %% tags=["report-hide"]
if write_artifacts:
    phase_g.phase_g(hub, html=False)
analysis = hubs.analysis_root(hub)
summary = json.loads((analysis / "metrics_summary.json").read_text())
ds = phase_g.load_results(hub)
jobs = phase_g.collect_jobs(hub)
story = phase_g.build_story(hub, ds=ds, jobs=jobs)
labels = {"PtyChi": story.data["provenance"]["PtyChi_label"]}
statuses = phase_g.cell_statuses(hub, jobs)

# %% tags=["report-hide"]
# NBVAL_CHECK_OUTPUT
# jobs, and anything shown as missing; the phase-only delta preview
print("jobs:", summary["n_jobs"], "succeeded:", summary["n_success"], "missing:", summary["missing"])
print((analysis / "metrics_delta_highlights_preview.txt").read_text())

# %%
display(HTML(story.html))

# %% [markdown]
# ## MS-SSIM grid
#
# Amplitude and phase, every arm, dose x view x split (higher is better). A cell without a value names why:
# "zero (all N outputs are 0)" for an arm whose output is all zero, "missing" otherwise.

# %%
phase_g.plot_metric_grid(ds, "ms_ssim", statuses=statuses, arm_labels=labels)

# %% [markdown]
# ## SSIM grid

# %%
phase_g.plot_metric_grid(ds, "ssim", statuses=statuses, arm_labels=labels)

# %% [markdown]
# ## Metrics against dose
#
# One panel per metric and component; colour = arm, line style = view / split.

# %%
phase_g.plot_metrics_vs_dose(ds, arm_labels=labels)

# %% [markdown]
# ## Reconstructions and FRC per job
#
# Each arm's amplitude and phase as they were scored (registered, border trimmed, the phase plane or offset
# removed as the metric convention does), colour limits from the images shown, and the difference from the
# ground truth; then the Fourier ring correlation against spatial frequency with the 1/2-bit and 1/7 thresholds.

# %%
shown = jobs if job_panels is None else jobs[:job_panels]
if len(shown) < len(jobs):
    display(Markdown(f"Panels for {len(shown)} of {len(jobs)} jobs (parameter `job_panels`); every job's files "
                     "are in its analysis folder."))
for job in shown:
    display(Markdown(f"### dose {job.dose:,}, {job.view}, {job.split}"))
    if job.status != "success":
        display(Markdown(f"Job {job.status}: {job.error}"))
        continue
    if (job.output_dir / "reconstructions.npz").exists():
        display(phase_g.plot_reconstructions(job.output_dir, title=f"dose {job.dose:,}, {job.view}, {job.split}"))
    if any(job.output_dir.glob("*_frc_curves.csv")):
        display(phase_g.plot_frc_curves(job.output_dir, title=f"FRC, dose {job.dose:,}, {job.view}, {job.split}"))

# %% [markdown]
# ## Study text artifacts
#
# The study's own files, in its formats (metric convention as in the summary's provenance).

# %%
print((analysis / "metrics_delta_highlights.txt").read_text())

# %%
print((analysis / "ssim_grid_summary.md").read_text())

"""Write the notebooks' sources and execute them on the ci-size study (``make notebooks``).

The notebooks are thin: a parameters cell, one call into the package, tables
and figures. Their sources live here so that they stay reviewable as code;
``make notebooks`` rewrites ``notebooks/*.ipynb`` and executes each one in
place with papermill (parameters from ``params/ci_*.yaml``) so the committed
outputs are what nbval checks in ``make test``.

Usage: ``python tools/build_notebooks.py [--no-execute] [NAME ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
PARAMS = ROOT / "params"

CHECK = "# NBVAL_CHECK_OUTPUT\n"
SETUP = (
    "%matplotlib inline\n"
    "import os\n"
    "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # keep TensorFlow's C++ log out of the outputs\n"
    "import warnings\n"
    "warnings.filterwarnings('ignore')\n"
    "import pandas as pd\n"
    "pd.set_option('display.width', 160)\n"
    "from ptyanalysis import notebook as nbk\n"
)


def md(text):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(src, tags=()):
    c = nbformat.v4.new_code_cell(src.strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def params_cell(src):
    return code(src.strip() + "\n_declared = nbk.declared_parameters(globals())", tags=("parameters",))


CHECK_PARAMS = code("params = nbk.check_parameters(globals(), _declared)\nparams")


NOTEBOOKS = {
    "00_compare_arms": [
        md("""
# Per-job comparison: PtychoPINN vs Baseline vs iterative

One dose / view / split of a study hub: every arm's inference is streamed into the stitcher
on the ground truth's frame, registered (sub-pixel) and scored on amplitude and phase with
both metric conventions (`ptychopinn` = the study's `compare_models`, `ptyanalysis` = ours).
Writes the study's per-job files under `analysis/dose_<D>/<view>/<split>/`.
`baseline_positions="study"` feeds the Baseline what the study's script fed it (absolute
positions) and reproduces the all-zero incident.
"""),
        code(SETUP + "from ptyanalysis import compare, report\nfrom IPython.display import Image, display"),
        params_cell("""
hub = "../build/ci_hub"          # study hub (data/phase_c, phase_e, phase_f)
dose = 1000.0                    # photons per pattern
view = "dense"                   # dense | sparse
split = "test"                   # train | test
baseline_positions = "trained"   # trained (zeros, as trained) | study (absolute positions)
register = "ptychi"              # ptychi (the study default) | all | none
output_dir = None                # default: HUB/analysis/dose_<D>/<view>/<split>
ensure_synthetic = None           # e.g. "ci": build this synthetic study if the hub is missing
"""),
        CHECK_PARAMS,
        code("""
from ptyanalysis.synthetic import demo as demo
if ensure_synthetic:
    demo.ensure_study(hub, size=ensure_synthetic)
config = compare.CompareConfig(baseline_positions=baseline_positions, register=register)
ds = compare.compare_job(hub, dose, view, split, config, out_dir=output_dir)
"""),
        code(CHECK + "# status of each arm (ok / zero / missing)\nds['status'].to_series()"),
        md("## Metrics, study convention (`comparison_metrics.csv`)"),
        code("ds['metrics'].sel(convention='ptychopinn').to_dataframe()['metrics'].unstack('component').round(4)"),
        md("## Metrics, ptyanalysis convention (explicit data range, FRC in cycles/pixel)"),
        code("ds['metrics'].sel(convention='ptyanalysis').to_dataframe()['metrics'].unstack('component').round(4)"),
        md("## Reconstructions (registered, shared colour limits, covered region)"),
        code("""
from pathlib import Path
from ptyanalysis import hub as hublib
job_dir = Path(output_dir) if output_dir else hublib.analysis_dir(hub, dose, view, split)
display(Image(filename=str(job_dir / 'comparison_plot.png')))
"""),
        code("report.plot_frc_curves(job_dir, title=f'FRC, dose {dose:g} {view} {split}')"),
    ],
    "01_split_comparison": [
        md("""
# Split comparison: how do a model's inputs and outputs differ between two splits?

For each model input: summary statistics per split, two-sample drift measures with stated
thresholds (KS, Wasserstein in units of the reference std, standardized mean difference),
inputs ranked by drift; per-pattern summaries for image inputs and scan maps for positions.
Output health per split is scored against a **reference** (the model's output on inputs drawn
like its training inputs), so a split that is itself degraded is flagged even when the other is worse.
"""),
        code(SETUP + "from ptyanalysis import splits, inference"),
        params_cell("""
model = "../build/ci_hub/data/phase_e/dose_1000/baseline/gs1"   # model file or directory
split_a = "../build/ci_hub/data/phase_c/dose_1000/patched_train.npz"
split_b = "../build/ci_hub/data/phase_c/dose_1000/patched_test.npz"
reference = "../build/ci_hub/data/phase_e/dose_1000/baseline/gs1/reference_inputs.npz"  # or None
names = ["train", "test"]
study_inputs = True       # the split files are study datasets, fed as the study's script did
max_output_samples = 2000 # run the model on at most this many (seeded) samples per split
output_dir = "../build/ci_hub/analysis/diagnosis/split_comparison"
ensure_synthetic = None           # e.g. "ci": build this synthetic study if the hub is missing
"""),
        CHECK_PARAMS,
        code("""
from ptyanalysis.synthetic import demo as demo
if ensure_synthetic:
    demo.ensure_study(split_a.split('/data/')[0], size=ensure_synthetic)
loaded = inference.load_model(model)
sets, truth = splits.load_input_sets(loaded, {names[0]: split_a, names[1]: split_b}, study_inputs=study_inputs)
ref = splits.load_input_sets(loaded, {'reference': reference})[0].get('reference') if reference else None
result = splits.compare_splits(loaded, sets[names[0]], sets[names[1]], reference=ref, names=tuple(names),
                               max_output_samples=max_output_samples)
written = splits.write_split_comparison(result, output_dir)
"""),
        md("## Inputs ranked by drift"),
        code(CHECK + "# most drifted input first\nlist(result.ranking)"),
        code("result.summary_table().round(3)"),
        md("## Output health against the reference"),
        code(CHECK + "result.health_table()[['split', 'degraded']]"),
        code("result.health_table().round(3)"),
        code("for f in result.flags:\n    print('-', f)"),
        code("splits.plot_split_comparison(result);"),
    ],
    "02_zero_prediction_bisection": [
        md("""
# Zero-prediction bisection: isolate why a model fails on one set and passes on another

Reproduce first; then runtime factors (batch size, XLA, eager/graph, dtype, device), input swaps
and interventions (delta debugging over inputs), sample subsets (ddmin) and the first dead layer.
Every experiment is recorded; causes are ranked by how much of the **reference** health they restore.
"""),
        code(SETUP + "from ptyanalysis import bisect, splits, inference"),
        params_cell("""
model = "../build/ci_hub/data/phase_e/dose_1000/baseline/gs1"
failing = "../build/ci_hub/data/phase_c/dose_1000/patched_test.npz"
passing = "../build/ci_hub/data/phase_c/dose_1000/patched_train.npz"
reference = "../build/ci_hub/data/phase_e/dose_1000/baseline/gs1/reference_inputs.npz"
criterion = "all-zero"     # all-zero | non-finite | collapsed[:tol] | module:function
study_inputs = True        # failing/passing are study datasets, mapped as the study's script did
output_dir = "../build/ci_hub/analysis/diagnosis/bisection"
ensure_synthetic = None           # e.g. "ci": build this synthetic study if the hub is missing
"""),
        CHECK_PARAMS,
        code("""
from ptyanalysis.synthetic import demo as demo
if ensure_synthetic:
    demo.ensure_study(failing.split('/data/')[0], size=ensure_synthetic)
loaded = inference.load_model(model)
sets, _ = splits.load_input_sets(loaded, {'failing': failing, 'passing': passing}, study_inputs=study_inputs)
ref = splits.load_input_sets(loaded, {'reference': reference})[0].get('reference') if reference else None
result = bisect.bisect(loaded, sets['failing'], sets['passing'], reference=ref, criterion=criterion)
path = bisect.write_bisection(result, output_dir)
"""),
        md("## Verdict"),
        code(CHECK + "print(result.verdict['kind'], '|', result.verdict['name'])\nprint(result.verdict['summary'])\nprint('fix:', result.fix)"),
        code("print(f\"health: failing {result.health['failing']:.3f}, passing {result.health['passing']:.3f}, reference {result.health['reference']:.3f}; {result.evaluations} model evaluations, {result.elapsed_s:.1f} s\")"),
        md("## Causes ranked by restored health"),
        code("result.causes_table()"),
        md("## Every experiment"),
        code("result.experiments_table()"),
        md("## Layers: zero fraction per layer on both sets"),
        code("result.layer_table()"),
        code("bisect.plot_bisection(result);"),
    ],
    "03_phase_g_figures": [
        md("""
# Phase G: the study's report, with the figures people want

Aggregates every per-job comparison of the hub into the study's artifacts (byte-for-byte formats)
and draws: heat-map grids of MS-SSIM and SSIM (amplitude and phase) per arm over dose x view x split,
reconstruction panels, FRC curves with thresholds, and metrics against dose. A missing arm or failed
job is shown as missing, never dropped.
"""),
        code(SETUP + "from ptyanalysis import report\nfrom pathlib import Path\nfrom IPython.display import display"),
        params_cell("""
hub = "../build/ci_hub"
write_artifacts = True   # write the study's artifacts first (ptyanalysis phase-g sets False: it already did)
"""),
        CHECK_PARAMS,
        code("""
import json
if write_artifacts:
    report.phase_g(hub, html=False)
analysis = Path(hub) / 'analysis'
summary = json.loads((analysis / 'metrics_summary.json').read_text())
"""),
        code(CHECK + "# jobs, and anything shown as missing; the phase-only delta preview\n"
             "print('jobs:', summary['n_jobs'], 'succeeded:', summary['n_success'], 'missing:', summary['missing'])\n"
             "print((analysis / 'metrics_delta_highlights_preview.txt').read_text())"),
        md("## MS-SSIM grid (amplitude and phase, every arm, dose x view x split)"),
        code("ds = report.load_results(hub)\nreport.plot_metric_grid(ds, 'ms_ssim')"),
        md("## SSIM grid"),
        code("report.plot_metric_grid(ds, 'ssim')"),
        md("## Metrics against dose"),
        code("report.plot_metrics_vs_dose(ds)"),
        md("## Reconstructions and FRC, one job per dose (test split, dense view)"),
        code("""
for d in sorted(float(x) for x in ds['dose'].values):
    job = Path(hub) / 'analysis' / f'dose_{int(d)}' / 'dense' / 'test'
    if (job / 'reconstructions.npz').exists():
        display(report.plot_reconstructions(job, title=f'dose {d:g}, dense, test'))
        display(report.plot_frc_curves(job, title=f'FRC dose {d:g}, dense, test'))
"""),
        md("## Study text artifacts"),
        code("print((Path(hub) / 'analysis' / 'metrics_delta_highlights.txt').read_text())"),
        code("print((Path(hub) / 'analysis' / 'ssim_grid_summary.md').read_text())"),
    ],
}


def build(name: str) -> Path:
    """Write ``notebooks/<name>.ipynb`` (sources only, no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    from ptyanalysis.fileutil import atomic_path

    path = NB_DIR / f"{name}.ipynb"
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return path


def execute(name: str) -> Path:
    """Execute ``notebooks/<name>.ipynb`` in place with ``params/ci_<name>.yaml``."""
    from ptyanalysis.pipeline import notebook as nbk

    path = NB_DIR / f"{name}.ipynb"
    pfile = PARAMS / f"ci_{name}.yaml"
    params = nbk.load_params(pfile) if pfile.exists() else {}
    return nbk.execute(path, path, params, cwd=NB_DIR)


def main(argv=None) -> int:
    """Build (and, unless ``--no-execute``, execute) the named notebooks; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    p.add_argument("--no-execute", action="store_true")
    args = p.parse_args(argv)
    for name in args.names:
        print("build", build(name))
        if not args.no_execute:
            print("execute", execute(name), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

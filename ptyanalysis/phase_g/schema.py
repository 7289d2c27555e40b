"""The Phase G artifacts' schema: metric names, file names, line prefixes and formats (the study's, kept exactly)."""

from __future__ import annotations

TUPLE_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")
#: Metrics with a single value.
SCALAR_METRICS = ("registration_offset_dy", "registration_offset_dx", "computation_time_s")
#: Metrics that enter ``aggregate_metrics`` (as in the study).
AGGREGATE_METRICS = ("ms_ssim", "mae")
#: The xarray component axis.
COMPONENTS = ("amplitude", "phase", "value")
#: The arms PtychoPINN is compared with, in the order of every delta table.
DELTA_ARMS = ("Baseline", "PtyChi")
#: Default MS-SSIM "health" threshold of ``aggregate_report.md`` (study default).
MS_SSIM_THRESHOLD = 0.80
#: Columns of ``comparison_metrics.csv``.
METRICS_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
#: Columns of ``*_frc_curves.csv``.
FRC_COLUMNS = ("model", "frequency_bin", "amplitude_frc", "phase_frc")

#: Phase G artifact file names (under ``analysis/``).
FILES = {
    "metrics_summary_json": "metrics_summary.json",
    "metrics_summary_md": "metrics_summary.md",
    "delta_summary_json": "metrics_delta_summary.json",
    "delta_highlights": "metrics_delta_highlights.txt",
    "delta_preview": "metrics_delta_highlights_preview.txt",
    "ssim_grid_summary": "ssim_grid_summary.md",
    "aggregate_report": "aggregate_report.md",
    "aggregate_highlights": "aggregate_highlights.txt",
    "metrics_digest": "metrics_digest.md",
    "dataset": "phase_g_metrics.nc",
    "inventory": "artifact_inventory.txt",
    "html": "phase_g_report.html",
    "executed_notebook": "phase_g_report.ipynb",
    "manifest": "comparison_manifest.json",
}
#: Sub-folder of ``analysis/`` holding the figures.
FIGURES_DIR = "figures"
#: Files the verifier writes after Phase G (never expected in the inventory).
POST_INVENTORY_FILES = ("analysis/verification_report.json",)

#: Line prefixes of ``metrics_delta_highlights.txt`` (with the study's padding).
HIGHLIGHT_PREFIXES = (
    "MS-SSIM Δ (PtychoPINN - Baseline)  : ",
    "MS-SSIM Δ (PtychoPINN - PtyChi)    : ",
    "MAE Δ (PtychoPINN - Baseline)      : ",
    "MAE Δ (PtychoPINN - PtyChi)        : ",
)
#: Line prefixes of ``metrics_delta_highlights_preview.txt``.
PREVIEW_PREFIXES = (
    "MS-SSIM Δ (PtychoPINN - Baseline): ",
    "MS-SSIM Δ (PtychoPINN - PtyChi): ",
    "MAE Δ (PtychoPINN - Baseline): ",
    "MAE Δ (PtychoPINN - PtyChi): ",
)
#: (metric, other arm) of each of the 4 highlight lines, in order.
HIGHLIGHT_ORDER = (("ms_ssim", "Baseline"), ("ms_ssim", "PtyChi"), ("mae", "Baseline"), ("mae", "PtyChi"))
#: Decimals of each delta metric.
DELTA_DECIMALS = {"ms_ssim": 3, "mae": 6}



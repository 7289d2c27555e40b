"""Synthetic per-job comparison outputs (the comparison job's file formats) for Phase G tests.

``make_hub(root, ...)`` writes, for each dose/view/split cell, what the
comparison job writes under ``HUB/analysis/dose_<D>/<view>/<split>/``:
``comparison_metrics.csv``, ``reconstructions.npz``, ``<arm>_frc_curves.csv``,
``comparison_plot.png`` and ``comparison.nc``, with plausible numbers (the
real dose-1000 dense test figures of the contract at the low end, improving
with dose), plus a grid manifest, grid logs and Phase C datasets with
``_metadata``. Not a test module (no ``test_`` prefix); tests load it by path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

ARMS = ("PtychoPINN", "Baseline", "PtyChi")
TUPLE = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")
SCALAR = ("registration_offset_dy", "registration_offset_dx", "computation_time_s")


def _quality(arm, dose, view, split):
    """A number in (0, 1) that grows with dose; arms and views differ."""
    base = {"PtychoPINN": 0.55, "Baseline": 0.40, "PtyChi": 0.62}[arm]
    q = base + 0.1 * np.log10(dose / 1e3) + (0.03 if view == "dense" else -0.03) + (0.01 if split == "train" else 0.0)
    return float(np.clip(q, 0.01, 0.97))


def metric_rows(arm, dose, view, split, empty=False):
    """Rows of comparison_metrics.csv for one arm (``empty``: all cells empty, as a zero-output arm)."""
    q = _quality(arm, dose, view, split)
    vals = {
        "mae": (0.12 * (1 - q), 0.30 * (1 - q)),
        "mse": (0.02 * (1 - q) ** 2, 0.12 * (1 - q) ** 2),
        "psnr": (55 + 15 * q, 52 + 15 * q),
        "ssim": (q * 0.95, min(0.99, q * 1.05)),
        "ms_ssim": (q, min(0.99, q * 1.1)),
        "frc50": (8 + 20 * q, 6 + 22 * q),
    }
    rows = []
    for m in TUPLE:
        a, p = vals[m]
        rows.append([arm, m, "" if empty else f"{a:.6f}", "" if empty else f"{p:.6f}", ""])
    scal = {"registration_offset_dy": 0.25 if arm == "PtyChi" else 0.0,
            "registration_offset_dx": -0.5 if arm == "PtyChi" else 0.0,
            "computation_time_s": 3.2 if arm != "PtyChi" else 41.0}
    for m in SCALAR:
        rows.append([arm, m, "", "", "" if empty else f"{scal[m]:.6f}"])
    return rows


def write_job(job_dir, dose, view, split, empty_arms=(), absent_arms=(), labels=None, size=48, runner_files=True):
    """Write one job's files; ``labels`` maps canonical arm -> label written in the files.

    ``runner_files``: also write the executed notebook and ``run.log`` the grid runner would leave
    (False when this runs inside a notebook executed by the grid runner).
    """
    from PIL import Image

    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    labels = labels or {}
    arms = [a for a in ARMS if a not in absent_arms]
    with (job_dir / "comparison_metrics.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "metric", "amplitude", "phase", "value"])
        for arm in arms:
            for r in metric_rows(arm, dose, view, split, empty=arm in empty_arms):
                r[0] = labels.get(arm, arm)
                w.writerow(r)
    rng = np.random.default_rng(int(dose) + len(view) + len(split))
    yy, xx = np.mgrid[:size, :size] / size
    gt = (0.6 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)) * np.exp(1j * (1.2 * np.sin(5 * yy + 2 * xx)))
    arrays = {"ground_truth": gt.astype(np.complex64)}
    for arm in arms:
        q = _quality(arm, dose, view, split)
        if arm in empty_arms:
            arrays[labels.get(arm, arm)] = np.zeros_like(gt, dtype=np.complex64)
        else:
            noise = (1 - q) * (rng.standard_normal(gt.shape) + 1j * rng.standard_normal(gt.shape)) * 0.2
            arrays[labels.get(arm, arm)] = (gt + noise).astype(np.complex64)
    cov = np.ones(gt.shape, dtype=np.float32) * 3
    cov[:4, :] = 0
    arrays["coverage"] = cov
    np.savez(job_dir / "reconstructions.npz", **arrays)
    for arm in arms:
        q = _quality(arm, dose, view, split)
        with (job_dir / f"{arm.lower()}_frc_curves.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["model", "frequency_bin", "amplitude_frc", "phase_frc"])
            for k in range(24):
                a = 0.0 if arm in empty_arms else 1 / (1 + np.exp((k - 24 * q) / 2.5))
                p = 0.0 if arm in empty_arms else 1 / (1 + np.exp((k - 26 * q) / 2.5))
                w.writerow([labels.get(arm, arm), k, f"{a:.6f}", f"{p:.6f}"])
    Image.new("RGB", (32, 16), (40, 80, 120)).save(job_dir / "comparison_plot.png")
    try:
        import xarray as xr

        xr.Dataset({"amplitude": (("y", "x"), np.abs(gt))}).to_netcdf(job_dir / "comparison.nc", engine="h5netcdf")
    except Exception:  # pragma: no cover - xarray/h5netcdf are pinned dependencies
        (job_dir / "comparison.nc").write_bytes(b"CDF")
    if not runner_files:
        return
    (job_dir / "00_compare_arms.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (job_dir / "run.log").write_text("ok\n")


def make_hub(root, doses=(1000, 10000), views=("dense", "sparse"), splits=("train", "test"),
             empty_arms=None, absent_arms=None, failed=(), labels=None, manifest=True, logs=True, phase_c=True):
    """Write a synthetic hub under ``root`` and return its path.

    Parameters
    ----------
    empty_arms, absent_arms : dict, optional
        ``{(dose, view, split): (arm, ...)}``: arms written with empty cells /
        left out of that job's files.
    failed : sequence of (dose, view, split)
        Cells the manifest reports failed (no files written).
    labels : dict, optional
        Arm label overrides, e.g. ``{"PtyChi": "Pty-chi (pty-chi)"}``.
    """
    hub = Path(root)
    analysis = hub / "analysis"
    empty_arms, absent_arms = empty_arms or {}, absent_arms or {}
    jobs, results = [], []
    for d in doses:
        for v in views:
            for s in splits:
                rel = f"dose_{d}/{v}/{s}"
                jobs.append({"dose": d, "view": v, "split": s, "output_dir": rel,
                             "outputs": ["comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png", "comparison.nc"]})
                if (d, v, s) in failed:
                    (analysis / rel).mkdir(parents=True, exist_ok=True)
                    (analysis / rel / "run.log").write_text("DeadKernelError\n")
                    results.append({"dose": d, "view": v, "split": s, "returncode": 1, "status": "failed",
                                    "log_path": f"{rel}/run.log", "error_name": "DeadKernelError",
                                    "error_value": "Kernel died", "error": "DeadKernelError: Kernel died"})
                    continue
                write_job(analysis / rel, d, v, s, empty_arms.get((d, v, s), ()), absent_arms.get((d, v, s), ()), labels)
                results.append({"dose": d, "view": v, "split": s, "returncode": 0, "status": "success",
                                "log_path": f"{rel}/run.log"})
    n_ok = sum(r["returncode"] == 0 for r in results)
    if manifest:
        analysis.mkdir(parents=True, exist_ok=True)
        (analysis / "comparison_manifest.json").write_text(json.dumps({
            "generated_at": "2026-01-01T00:00:00Z", "n_jobs": len(jobs), "n_executed": len(jobs),
            "n_success": n_ok, "n_failed": len(jobs) - n_ok, "n_skipped": 0, "parameters": {"n_groups": 64},
            "jobs": jobs, "execution_results": results}, indent=2))
    if logs:
        (analysis / "logs").mkdir(parents=True, exist_ok=True)
        status = "SUCCESS: all cells completed" if n_ok == len(jobs) else f"FAILED: {len(jobs) - n_ok} cell(s) failed"
        (analysis / "logs" / "grid_20260101T000000Z.log").write_text(f"grid started\n{status}\n")
    if phase_c:
        for d in doses:
            for s in splits:
                p = hub / "data" / "phase_c" / f"dose_{d}" / f"patched_{s}.npz"
                p.parent.mkdir(parents=True, exist_ok=True)
                meta = json.dumps({"physics_parameters": {"nphotons": d}, "data_transformations": []})
                np.savez(p, diffraction=np.zeros((2, 4, 4), np.float32), _metadata=np.array(meta, dtype=object))
    return hub

"""Synthetic per-job comparison outputs (the comparison job's file formats) for Phase G tests.

``make_hub(root, ...)`` writes, for each dose/view/split cell, what the
comparison job writes under ``HUB/analysis/dose_<D>/<view>/<split>/``:
``comparison_metrics.csv``, ``reconstructions.npz``, ``<arm>_frc_curves.csv``,
``comparison_plot.png`` and ``comparison.nc``, with plausible numbers (the
real dose-1000 dense test figures (docs/formats.md#metric-conventions) at the low end, improving
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


def write_job(job_dir, dose, view, split, empty_arms=(), absent_arms=(), labels=None, size=48, runner_files=True,
              recon_arrays=None, aligned_arrays=None, netcdf=True):
    """Write one job's files; ``labels`` maps canonical arm -> label written in the files.

    ``runner_files``: also write the executed notebook and ``run.log`` the grid runner would leave
    (False when this runs inside a notebook executed by the grid runner).
    ``recon_arrays`` / ``aligned_arrays``: the arrays of ``reconstructions.npz`` /
    ``reconstructions_aligned.npz`` (written with ``np.savez_compressed`` as compare_models does)
    instead of the previous ptyanalysis layout. ``netcdf``: also write ``comparison.nc``.
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
    if recon_arrays is None:
        np.savez(job_dir / "reconstructions.npz", **arrays)
    else:
        np.savez_compressed(job_dir / "reconstructions.npz", **recon_arrays)
    if aligned_arrays is not None:
        np.savez_compressed(job_dir / "reconstructions_aligned.npz", **aligned_arrays)
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
    if netcdf:
        import xarray as xr

        xr.Dataset({"amplitude": (("y", "x"), np.abs(gt))}).to_netcdf(job_dir / "comparison.nc", engine="h5netcdf")
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


# --------------------------------------------------------------------------- hubs with real scans

#: compare_models' default stitching crop (``--stitch-crop-size``).
STUDY_M = 20


def scan(n, obj, seed, margin=32):
    """``n`` positions (row, col) uniform in ``[margin, obj - margin]^2``, split along y (train = smaller y)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(margin, obj - margin, size=(n, 2))
    mid = (margin + obj - margin) / 2
    return {"train": pos[pos[:, 0] < mid], "test": pos[pos[:, 0] >= mid]}


def object_image(obj):
    """A smooth complex object, ``obj x obj`` complex64."""
    yy, xx = np.mgrid[:obj, :obj] / obj
    return ((0.6 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)) * np.exp(1j * (1.2 * np.sin(5 * yy + 2 * xx)))).astype(np.complex64)


def study_canvas_side(offsets, M=STUDY_M):
    """The side of compare_models' canvas (``reassemble_position``): ``M + 2 pad``, pad = ceil(max |offset - mean|) made even."""
    pad = int(np.ceil(np.max(np.abs(offsets - offsets.mean(axis=0)))))
    pad += pad % 2
    return M + 2 * pad


def tiles_on_canvas(gt, placed, mean, side, M=STUDY_M, value=None, rng=None):
    """A reconstruction on a study canvas of ``side`` px centred on ``mean``: M x M tiles at ``placed``.

    A tile's pixels hold the ground truth seen through it (plus a little noise) or ``value`` (a blend).
    """
    img = np.zeros((side, side), np.complex64)
    covered = np.zeros((side, side), bool)
    for p in placed:
        c = np.rint(side / 2 + (p - mean)).astype(int)
        r0, c0 = c - M // 2
        covered[max(r0, 0):max(r0 + M, 0), max(c0, 0):max(c0 + M, 0)] = True
    rr, cc = np.nonzero(covered)
    orow = np.clip(np.rint(rr - side / 2 + mean[0]).astype(int), 0, gt.shape[0] - 1)
    ocol = np.clip(np.rint(cc - side / 2 + mean[1]).astype(int), 0, gt.shape[1] - 1)
    vals = gt[orow, ocol] if value is None else np.full(len(rr), value, np.complex64)
    rng = rng or np.random.default_rng(0)
    img[rr, cc] = vals + 0.02 * (rng.standard_normal(len(rr)) + 1j * rng.standard_normal(len(rr)))
    return img


def tiles_on_frame(gt, placed, M):
    """A correct ptyanalysis reconstruction on the ground truth's frame: M x M crops at every position."""
    img = np.zeros(gt.shape, np.complex64)
    cov = np.zeros(gt.shape, np.float32)
    for p in placed:
        r0, c0 = np.rint(p).astype(int) - M // 2
        cov[max(r0, 0):r0 + M, max(c0, 0):c0 + M] += 1
    img[cov > 0] = gt[cov > 0] * 0.98
    return img, cov


def study_log(n_pinn_patches, n_offsets, n_baseline_patches):
    """The lines of compare_models' ``logs/debug.log`` that give the patch counts."""
    return "\n".join([
        f"2026-12-01 20:57:01,120 - __main__ - INFO - Final configuration: gridsize=2, N=64, n_images={n_offsets}",
        (f"2026-12-01 20:57:03,402 - __main__ - INFO - PINN patches shape before reassembly: ({n_pinn_patches}, 64, 64, 1), "
         "dtype: complex64"),
        "2026-12-01 20:57:03,402 - __main__ - INFO - Reassembling PINN patches...",
        (f"2026-12-01 20:57:03,403 - __main__ - INFO - PINN offsets shape before reassembly: ({n_offsets}, 1, 2, 1), "
         "dtype: float64"),
        f"2026-12-01 20:57:04,010 - __main__ - INFO - Baseline inference offsets shape: ({n_offsets}, 1, 2, 1)",
        f"2026-12-01 20:57:05,771 - __main__ - INFO - Complex patches shape: ({n_baseline_patches}, 64, 64), dtype: complex64",
    ]) + "\n"


def study_reconstructions(gt, pos, faults, rng, M=STUDY_M):
    """``reconstructions.npz`` / ``_aligned.npz`` arrays as compare_models writes them, and the log text.

    Each network arm is on its own canvas (its offsets: the positions). With ``faults`` the
    PtychoPINN image is ``ceil(n/32)`` blended tiles at the first ``ceil(n/32)`` offsets (a model
    merging >= 64 patches per call, predicted with batch 32) and the Baseline (fed absolute
    positions) is mostly zero.
    """
    n = len(pos)
    mean = pos.mean(axis=0)
    k = int(np.ceil(n / 32))
    pinn_side = study_canvas_side(pos, M)
    base_side = pinn_side + 12  # the Baseline's own offsets span a little more (own canvas, as 176 vs 188 px)
    if faults:
        pinn = tiles_on_canvas(gt, pos[:k], mean, pinn_side, M, value=np.complex64(0.7 * np.exp(0.3j)), rng=rng)
        base = np.zeros((base_side, base_side), np.complex64)
        c = base_side // 2
        base[c:c + 3, c:c + 4] = 0.01  # 12 nonzero pixels: ~0.1 % nonzero
    else:
        pinn = tiles_on_canvas(gt, pos, mean, pinn_side, M, rng=rng)
        base = tiles_on_canvas(gt, pos, mean, base_side, M, rng=rng)

    def arrays(images):
        out = {}
        for prefix, z in images.items():
            out[f"{prefix}_amplitude"] = np.abs(z)
            out[f"{prefix}_phase"] = np.angle(z)
            out[f"{prefix}_complex"] = z
        return out

    raw = arrays({"ptychopinn": pinn, "baseline": base, "ground_truth": gt})
    crop = min(pinn_side, base_side, gt.shape[0]) - 8

    def sl(a):
        return a[(a.shape[0] - crop) // 2:(a.shape[0] + crop) // 2, (a.shape[1] - crop) // 2:(a.shape[1] + crop) // 2]

    aligned = arrays({"ptychopinn": sl(pinn), "baseline": sl(base), "ground_truth": sl(gt)})
    # --register-ptychi-only: the networks are not registered, their offsets are None (0-d object arrays)
    aligned.update({"pinn_offset_dy": None, "pinn_offset_dx": None, "baseline_offset_dy": None, "baseline_offset_dx": None})
    log = study_log(k if faults else n, n, n)
    return raw, aligned, log


def ptyanalysis_reconstructions(gt, pos, M):
    """``reconstructions.npz`` arrays as this package's comparison job writes them (a correct job)."""
    from ptyanalysis.pipeline.compare import reconstruction_arrays

    images, covs = {}, {}
    for arm in ARMS:
        images[arm], covs[arm] = tiles_on_frame(gt, pos, M)
    mask = np.logical_and.reduce([c > 0 for c in covs.values()])
    counts = {a: {"n_patches": len(pos), "n_offsets": len(pos)} for a in ("PtychoPINN", "Baseline")}
    return reconstruction_arrays({"GroundTruth": gt, **images}, coverage=mask, arm_coverage=covs, origin=(0, 0),
                                 counts=counts)


def make_scan_hub(root, layout="study", faults=True, doses=(1000,), views=("dense",), splits=("train", "test"),
                  n=400, obj=192, M=None, seed=42):
    """A hub whose jobs have real scans: Phase C splits with positions and reconstructions made from them.

    Parameters
    ----------
    layout : {"study", "ptyanalysis"}
        ``"study"``: files as PtychoPINN's compare_models writes them (own canvases, None offsets,
        ``logs/debug.log``, no ``comparison.nc``); ``"ptyanalysis"``: as this package writes them.
    faults : bool
        (study layout) reproduce the study's two faults: a PtychoPINN image of a few scattered
        tiles with fewer patches than positions in the log, and a mostly-zero Baseline.
    n : int
        Positions of the whole scan (split along y).
    """
    hub = Path(root)
    analysis = hub / "analysis"
    M = M or (STUDY_M if layout == "study" else 32)
    gt = object_image(obj)
    jobs, results = [], []
    outputs = ["comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png"]
    if layout != "study":
        outputs.append("comparison.nc")
    for d in doses:
        splits_pos = scan(n, obj, seed)
        for s in splits:
            p = hub / "data" / "phase_c" / f"dose_{d}" / f"patched_{s}.npz"
            p.parent.mkdir(parents=True, exist_ok=True)
            pos = splits_pos[s]
            meta = json.dumps({"physics_parameters": {"nphotons": d}, "data_transformations": []})
            np.savez(p, diffraction=np.zeros((len(pos), 8, 8), np.float32), xcoords=pos[:, 1], ycoords=pos[:, 0],
                     objectGuess=gt, _metadata=np.array(meta, dtype=object))
        for v in views:
            for s in splits:
                rel = f"dose_{d}/{v}/{s}"
                pos = splits_pos[s]
                rng = np.random.default_rng(d + len(s))
                if layout == "study":
                    raw, aligned, log = study_reconstructions(gt, pos, faults, rng, M)
                else:
                    raw, aligned, log = ptyanalysis_reconstructions(gt, pos, M), None, None
                write_job(analysis / rel, d, v, s, empty_arms=("Baseline",) if faults and layout == "study" else (),
                          absent_arms=("PtyChi",) if layout == "study" else (), recon_arrays=raw,
                          aligned_arrays=aligned, netcdf=layout != "study")
                if log is not None:
                    (analysis / rel / "logs").mkdir(exist_ok=True)
                    (analysis / rel / "logs" / "debug.log").write_text(log)
                jobs.append({"dose": d, "view": v, "split": s, "output_dir": rel, "outputs": outputs})
                results.append({"dose": d, "view": v, "split": s, "returncode": 0, "status": "success",
                                "log_path": f"{rel}/run.log"})
    analysis.mkdir(parents=True, exist_ok=True)
    (analysis / "comparison_manifest.json").write_text(json.dumps({
        "generated_at": "2026-01-01T00:00:00Z", "n_jobs": len(jobs), "n_executed": len(jobs), "n_success": len(jobs),
        "n_failed": 0, "n_skipped": 0, "parameters": {}, "jobs": jobs, "execution_results": results}, indent=2))
    (analysis / "logs").mkdir(parents=True, exist_ok=True)
    (analysis / "logs" / "grid_20260101T000000Z.log").write_text("grid started\nSUCCESS: all cells completed\n")
    return hub

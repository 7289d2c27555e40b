"""Phase G figures: metric grids, reconstruction panels, FRC curves, metrics against dose."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import ARMS, canonical_arm, dose_label
from ..errors import PtyAnalysisError
from ..fileutil import atomic_path
from ..phase_g.collect import JobRecord, read_frc_curves, read_reconstructions
from ..phase_g.schema import FIGURES_DIR
from ..plotting import new_figure

# --------------------------------------------------------------------------- figures


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Atomically save a matplotlib Figure as PNG and return the path.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
    dpi : int

    Returns
    -------
    Path
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _cell_labels(ds):
    return [f"{v}\n{s}" for v in ds["view"].values for s in ds["split"].values]


def _cell_text(why: str | None) -> str:
    if why and why.startswith("zero"):
        return why.replace("zero (", "zero\n(").replace(" outputs", "\noutputs")
    return "missing"


def cell_statuses(hub, jobs) -> dict:
    """``{(arm, dose, view, split): status text}`` of every arm that is not ``ok`` (:func:`ptyanalysis.phase_g.story.cell_statuses`)."""
    from ..phase_g.story import cell_statuses as _cell_statuses

    return _cell_statuses(hub, jobs)


def plot_metric_grid(ds, metric: str = "ms_ssim", arms=None, statuses=None, arm_labels=None):
    """Heat maps of one metric for each arm over dose x (view, split).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metric : str
        ``"ms_ssim"``, ``"ssim"`` (fixed 0-1 colour scale) or any metric of ``ds``.
    arms : sequence of str, optional
        Arms to show (default all of ``ds``).
    statuses : dict, optional
        :func:`cell_statuses`: a cell of an all-zero arm is labelled
        ``zero (all N outputs are 0)``, never "missing".
    arm_labels : dict, optional
        ``{arm: label}`` for the panel titles (e.g. ``PtyChi (rPIE)``).

    Returns
    -------
    matplotlib.figure.Figure
        One row per arm, columns amplitude and phase; each cell shows its value,
        a cell without one is grey, hatched and labelled with its reason
        ("zero (...)" or "missing").
    """
    from matplotlib.patches import Rectangle

    if metric not in ds["metric"].values:
        raise PtyAnalysisError(f"metric {metric!r} not in the dataset; available: {', '.join(map(str, ds['metric'].values))}")
    arms = list(ds["arm"].values) if arms is None else [canonical_arm(a) for a in arms]
    doses = list(ds["dose"].values)
    labels = _cell_labels(ds)
    bounded = metric in ("ms_ssim", "ssim")
    sub = ds["value"].sel(metric=metric)
    vals_all = sub.sel(component=["amplitude", "phase"]).values
    finite = vals_all[np.isfinite(vals_all)]
    vmin, vmax = (0.0, 1.0) if bounded or finite.size == 0 else (float(finite.min()), float(finite.max()) or 1.0)
    fig = new_figure((2.2 + 1.3 * len(labels) * 2, 0.9 + 1.1 * len(doses) * len(arms)))
    axes = fig.subplots(len(arms), 2, squeeze=False)
    im = None
    for r, arm in enumerate(arms):
        for c, comp in enumerate(("amplitude", "phase")):
            ax = axes[r, c]
            m = sub.sel(arm=arm, component=comp).values.reshape(len(doses), -1)  # dose x (view*split)
            im = ax.imshow(np.ma.masked_invalid(m), vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
            for i in range(m.shape[0]):
                for k in range(m.shape[1]):
                    v = m[i, k]
                    if np.isfinite(v):
                        frac = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                        ax.text(k, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                                color="black" if frac > 0.6 else "white")
                    else:
                        ax.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.5",
                                               hatch="///", linewidth=0.5))
                        view, split = ds["view"].values[k // len(ds["split"])], ds["split"].values[k % len(ds["split"])]
                        why = (statuses or {}).get((str(arm), int(doses[i]), str(view), str(split)))
                        ax.text(k, i, _cell_text(why), ha="center", va="center", fontsize=6 if why else 8,
                                color="darkred" if why and why.startswith("zero") else "0.2")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(doses)), [f"{int(d):g}" for d in doses], fontsize=8)
            ax.set_title(f"{(arm_labels or {}).get(str(arm), arm)} — {comp}", fontsize=9)
            if c == 0:
                ax.set_ylabel("dose (photons)")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=metric.upper().replace("_", "-"))
    fig.suptitle(f"{metric.upper().replace('_', '-')} per arm over dose x view x split")
    return fig


def _masked(img, coverage):
    img = np.asarray(img, dtype=float)
    if coverage is not None and coverage.shape == img.shape:
        img = np.where(coverage > 0, img, np.nan)
    return img


#: Colour of each arm in every line plot.
ARM_COLORS = {"PtychoPINN": "tab:blue", "Baseline": "tab:orange", "PtyChi": "tab:green"}


def _job_meta(job_dir: Path) -> dict:
    """Border, csv convention, per-arm status text and iterative engine of a job (from ``comparison.nc``)."""
    from ..conventions import arm_status_text
    from ..phase_g.story import _read_nc_attrs, arm_label

    nc = job_dir / "comparison.nc"
    info = _read_nc_attrs(nc) if nc.exists() else {}
    params = info.get("parameters") or {}
    details = info.get("arm_details") or {}
    status = info.get("status") or {}
    out = {"border": int(params.get("border", 2)) if isinstance(params, dict) else 2,
           "convention": (params.get("csv_convention") if isinstance(params, dict) else None) or "ptychopinn",
           "labels": {}, "status": {}}
    for arm in ARMS:
        d = details.get(arm, {})
        st = status.get(arm) or d.get("status")
        out["labels"][arm] = arm_label(arm, d.get("algorithm"))
        if st:
            out["status"][arm] = arm_status_text(st, d)
    return out


def scored_images(job_dir) -> dict:
    """Each arm's amplitude and phase as the job scored them, and their differences from the ground truth.

    Reads ``reconstructions_aligned.npz`` (registered, on the evaluation box),
    else ``reconstructions.npz`` cropped to the covered box (then not registered:
    said in ``note``). Trims the scoring border, then prepares the images as the
    job's metric convention did (:func:`ptyanalysis.imaging.metrics.score`):
    ``ptychopinn``: amplitude rescaled to the ground-truth mean, a least-squares
    phase plane removed from each image; ``ptyanalysis``: the global phase
    offset against the ground truth removed. A constant phase offset therefore
    never clips a panel flat.

    Parameters
    ----------
    job_dir : str or Path

    Returns
    -------
    dict
        ``{"images": {name: {"amplitude", "phase", "d_amplitude"?, "d_phase"?}},
        "status": {arm: text}, "labels": {arm: label}, "convention", "note"}``;
        an arm that is all zero has no images and a status text.
    """
    from ..imaging.align import (
        normalize_amplitude_mean,
        remove_phase_offset,
        remove_phase_plane,
    )

    job_dir = Path(job_dir)
    meta = _job_meta(job_dir)
    aligned = job_dir / "reconstructions_aligned.npz"
    note = ""
    if aligned.exists():
        images, coverage = read_reconstructions(aligned)
        box = None
    else:
        images, coverage = read_reconstructions(job_dir / "reconstructions.npz")
        note = "reconstructions_aligned.npz absent: raw reconstructions on the covered box, not registered"
        box = None
        if coverage is not None and np.any(coverage > 0):
            rows, cols = np.nonzero(coverage > 0)
            box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    b = meta["border"]

    def prep(x):
        x = np.asarray(x)
        if box is not None:
            x = x[box]
        return x[b:-b, b:-b] if b and min(x.shape) > 2 * b + 4 else x

    out = {"images": {}, "status": dict(meta["status"]), "labels": meta["labels"], "convention": meta["convention"],
           "note": note}
    if "GroundTruth" not in images:
        raise PtyAnalysisError(f"{job_dir}: the reconstructions have no 'ground_truth' array; "
                               "regenerate the job with `ptyanalysis compare`")
    gt = prep(images["GroundTruth"]).astype(np.complex128)
    ga = np.abs(gt)
    plane = meta["convention"] == "ptychopinn"
    gp = remove_phase_plane(np.angle(gt)) if plane else np.angle(gt)
    out["images"]["GroundTruth"] = {"amplitude": ga, "phase": gp}
    for name in [a for a in ARMS if a in images] + sorted(set(images) - set(ARMS) - {"GroundTruth"}):
        x = prep(images[name]).astype(np.complex128)
        if not np.any(np.abs(x) > 0) or not np.all(np.isfinite(x)):
            out["status"].setdefault(name, "zero")
            continue
        pa = normalize_amplitude_mean(np.abs(x), ga) if plane else np.abs(x)
        pp = remove_phase_plane(np.angle(x)) if plane else np.angle(remove_phase_offset(x, gt))
        out["images"][name] = {"amplitude": pa, "phase": pp, "d_amplitude": pa - ga,
                               "d_phase": np.angle(np.exp(1j * (pp - gp)))}
    return out


def _limits(arrays, symmetric=False):
    pool = np.concatenate([np.asarray(a, float).ravel() for a in arrays]) if arrays else np.array([])
    pool = pool[np.isfinite(pool)]
    if not pool.size:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    if symmetric:
        m = float(np.percentile(np.abs(pool), 99)) or 1e-6
        return -m, m
    lo, hi = (float(v) for v in np.percentile(pool, [1, 99]))
    return (lo, hi) if hi > lo else (lo - 1e-6, lo + 1e-6)


def plot_reconstructions(job_dir, title: str | None = None):
    """Ground truth and each arm as scored (amplitude, phase) and each arm's difference from the ground truth.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``reconstructions_aligned.npz`` or ``reconstructions.npz``.
    title : str, optional
        Figure title (default: the folder path below ``analysis``).

    Returns
    -------
    matplotlib.figure.Figure
        Rows: amplitude, phase (as scored, :func:`scored_images`), amplitude
        difference, phase difference (wrapped, radians); columns ground truth
        then :data:`~ptyanalysis.conventions.ARMS`. Colour limits of a row are
        the 1-99 percentiles of the images shown in it (differences: symmetric,
        99th percentile of their magnitude). An arm without an image is a
        hatched panel naming why (``zero (all N outputs are 0)``, ``missing``).
    """
    import matplotlib

    job_dir = Path(job_dir)
    sc = scored_images(job_dir)
    imgs = sc["images"]
    cols = ["GroundTruth"] + list(ARMS) + sorted(set(imgs) - set(ARMS) - {"GroundTruth"})
    rows = (("amplitude", "amplitude (as scored)", "gray", False),
            ("phase", "phase (rad, as scored)", "viridis", False),
            ("d_amplitude", "amplitude − GT", "RdBu_r", True),
            ("d_phase", "phase − GT (rad)", "RdBu_r", True))
    fig = new_figure((2.4 * len(cols) + 1.4, 2.3 * len(rows) + 0.8))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, (key, label, cmap, sym) in enumerate(rows):
        shown = [imgs[c][key] for c in cols if c in imgs and key in imgs[c]]
        lo, hi = _limits(shown, symmetric=sym)
        cm = matplotlib.colormaps[cmap].with_extremes(bad="0.75")
        im = None
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name in imgs and key in imgs[name]:
                im = ax.imshow(imgs[name][key], cmap=cm, vmin=lo, vmax=hi)
            elif name == "GroundTruth":
                gshape = imgs["GroundTruth"]["amplitude"].shape
                ax.set_box_aspect(gshape[0] / max(gshape[1], 1))
                ax.set_axis_off()
                ax.text(0.5, 0.5, "(reference)", ha="center", va="center", transform=ax.transAxes, color="0.4")
            else:
                why = sc["status"].get(name, "missing")
                gshape = imgs["GroundTruth"]["amplitude"].shape
                ax.set_box_aspect(gshape[0] / max(gshape[1], 1))  # same shape as the images beside it
                ax.set_facecolor("0.88")
                ax.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                                                          hatch="///", edgecolor="0.6"))
                ax.text(0.5, 0.5, why.replace(" (", "\n("), ha="center", va="center", fontsize=8,
                        transform=ax.transAxes, wrap=True, color="darkred" if why.startswith("zero") else "0.2")
            if r == 0:
                ax.set_title("ground truth" if name == "GroundTruth" else sc["labels"].get(name, name), fontsize=10)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
        if im is not None:
            fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.9, label=label.split(" (")[0])
    sub = f"{sc['convention']} convention" + (f"; {sc['note']}" if sc["note"] else "")
    fig.suptitle(f"{title or '/'.join(job_dir.parts[-3:])}\n{sub}", fontsize=10)
    return fig


def frc_rings(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequency (cycles/pixel) and pixel count of each ring of the study's FRC on a ``side`` x ``side`` square.

    The rings are :func:`ptyanalysis.imaging.metrics.ptychopinn_frc_rings`
    (integer radius ``k`` about pixel ``side // 2``, to the corners); ring
    ``k`` is at ``k / side`` cycles/pixel.

    Parameters
    ----------
    side : int

    Returns
    -------
    frequency, n_per_ring : ndarray
    """
    from ..imaging.metrics import ptychopinn_frc_rings

    ring = ptychopinn_frc_rings(int(side)).ravel()
    n = np.bincount(ring)
    return np.arange(n.size) / int(side), n


def _frc_side(job_dir: Path, n_rings: int, border: int) -> tuple[int, bool]:
    """Side of the scored square: exact from the aligned ground truth when it matches the curve length,
    else the side whose ring count is ``n_rings`` (approximate)."""
    p = job_dir / "reconstructions_aligned.npz"
    if p.exists():
        try:
            images, _ = read_reconstructions(p)
        except PtyAnalysisError:
            images = {}
        if "GroundTruth" in images:
            side = min(images["GroundTruth"].shape) - 2 * border
            if side > 0 and frc_rings(side)[1].size == n_rings:
                return side, True
    half = round((n_rings - 1) / np.sqrt(2))
    return max(2 * half, 2), False


def plot_frc_curves(job_dir, title: str | None = None):
    """FRC of every arm against spatial frequency (cycles/pixel), amplitude and phase, with the 1/2-bit and 1/7 thresholds.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``*_frc_curves.csv`` files.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (amplitude, phase); the legend is outside the axes; an arm
        without a curve is named in it with its status (``zero (...)``, ``missing``).
        The frequencies beyond Nyquist (0.5 cycles/pixel along an axis), which
        only the corner pixels of the spectrum sample and which the
        ``ptychopinn`` convention's rings reach, are shaded and labelled.
    """
    job_dir = Path(job_dir)
    curves = read_frc_curves(job_dir)
    meta = _job_meta(job_dir)
    fig = new_figure((10, 4.4))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    n_rings = max((len(c["frequency_bin"]) for c in curves.values()), default=0)
    side, exact = _frc_side(job_dir, n_rings, meta["border"]) if n_rings else (0, False)
    freq_of = (lambda k: np.asarray(k, float) / side) if side else (lambda k: np.asarray(k, float))
    for ax, comp in zip(axes, ("amplitude", "phase")):
        for arm in list(ARMS) + sorted(set(curves) - set(ARMS)):
            label = meta["labels"].get(arm, arm)
            if arm in curves and np.any(np.isfinite(curves[arm][f"{comp}_frc"])):
                c = curves[arm]
                ax.plot(freq_of(c["frequency_bin"]), c[f"{comp}_frc"], label=label, color=ARM_COLORS.get(arm))
            else:
                why = meta["status"].get(arm, "missing")
                ax.plot([], [], label=f"{label}: {why}", color=ARM_COLORS.get(arm), linestyle=":")
        if side:
            f, n = frc_rings(side)
            from ..imaging.metrics import half_bit_threshold

            ax.plot(f[1:], half_bit_threshold(n[1:]), color="k", linestyle="--", linewidth=0.9, label="1/2-bit threshold")
        ax.axhline(1 / 7, color="0.4", linestyle=":", linewidth=0.9, label="1/7 threshold")
        ax.set_xlabel("spatial frequency (cycles/pixel)" + ("" if exact or not side else ", approximate"))
        ax.set_ylabel("FRC")
        if side:
            fmax = float(frc_rings(side)[0][-1])
            ax.axvline(0.5, color="0.6", linewidth=0.8, label="0.5 cycles/pixel: Nyquist along each axis")
            if fmax > 0.5:  # the ptychopinn convention's rings run to the corners (docs/formats.md#frc)
                ax.axvspan(0.5, fmax, color="0.88", zorder=0,
                           label="beyond Nyquist: only the corner pixels of the spectrum (not a resolution)")
            ax.set_xlim(0, fmax)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{comp} FRC", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    note = (" - rings and thresholds as PtychoPINN defines them, to the spectrum's corners"
            if meta["convention"] == "ptychopinn" else "")
    fig.suptitle(f"{title or '/'.join(job_dir.parts[-3:])} ({meta['convention']} convention{note})", fontsize=10)
    return fig


#: Line style of each (view, split) in :func:`plot_metrics_vs_dose`.
VIEW_SPLIT_STYLES = {("dense", "train"): ("-", "o"), ("dense", "test"): ("--", "s"),
                     ("sparse", "train"): ("-.", "^"), ("sparse", "test"): (":", "D")}
#: Readable metric names.
METRIC_NAMES = {"ms_ssim": "MS-SSIM (higher is better)", "ssim": "SSIM (higher is better)",
                "mae": "MAE (lower is better)", "frc50": "FRC50 (ring index; higher is better)",
                "psnr": "PSNR (dB; higher is better)", "mse": "MSE (lower is better)"}


def plot_metrics_vs_dose(ds, metrics=("ms_ssim", "ssim", "mae", "frc50"), arm_labels=None):
    """Metrics against dose: one panel per metric and component; arms by colour, view and split by line style.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metrics : sequence of str
        Metrics to plot (rows).
    arm_labels : dict, optional
        ``{arm: label}`` (e.g. ``{"PtyChi": "PtyChi (rPIE)"}``).

    Returns
    -------
    matplotlib.figure.Figure
        Dose on a log axis; two legends outside the panels (arm colours; view /
        split line styles). Missing values leave gaps.
    """
    from matplotlib.lines import Line2D

    arm_labels = arm_labels or {}
    metrics = [m for m in metrics if m in ds["metric"].values]
    fig = new_figure((10, 2.5 * max(1, len(metrics)) + 1.0))
    axes = fig.subplots(max(1, len(metrics)), 2, squeeze=False)
    doses = ds["dose"].values.astype(float)
    views, splits = [str(v) for v in ds["view"].values], [str(s) for s in ds["split"].values]
    extra = ["-", "--", "-.", ":"]
    styles = {}
    for i, (v, s) in enumerate((v, s) for v in views for s in splits):
        styles[(v, s)] = VIEW_SPLIT_STYLES.get((v, s), (extra[i % 4], "x"))
    for r, metric in enumerate(metrics):
        for c, comp in enumerate(("amplitude", "phase")):
            ax = axes[r, c]
            for arm in ds["arm"].values:
                for (view, split), (ls, mk) in styles.items():
                    y = ds["value"].sel(arm=arm, view=view, split=split, metric=metric, component=comp).values
                    if not np.any(np.isfinite(y)):
                        continue
                    ax.plot(doses, y, color=ARM_COLORS.get(str(arm)), linestyle=ls, marker=mk, markersize=4,
                            linewidth=1.2)
            ax.set_xscale("log")
            ax.set_title(f"{comp}", fontsize=9)
            if c == 0:
                ax.set_ylabel(METRIC_NAMES.get(metric, metric), fontsize=8)
            if r == len(metrics) - 1:
                ax.set_xlabel("dose (photons per pattern)")
            ax.grid(True, which="major", alpha=0.3)
    arm_h = [Line2D([], [], color=ARM_COLORS.get(str(a)), linewidth=3, label=arm_labels.get(str(a), str(a)))
             for a in ds["arm"].values]
    sty_h = [Line2D([], [], color="0.3", linestyle=ls, marker=mk, label=f"{v} / {s}")
             for (v, s), (ls, mk) in styles.items()]
    fig.legend(handles=arm_h, loc="outside upper center", ncol=len(arm_h), fontsize=8, title="arm (colour)",
               frameon=False)
    fig.legend(handles=sty_h, loc="outside lower center", ncol=len(sty_h), fontsize=8,
               title="view / split (line style)", frameon=False)
    return fig


def _job_stem(job: JobRecord) -> str:
    return f"{dose_label(job.dose)}_{job.view}_{job.split}"


def expected_figures(jobs) -> list[str]:
    """Figure paths (relative to ``analysis/``) :func:`write_figures` produces for ``jobs``.

    Parameters
    ----------
    jobs : list of JobRecord

    Returns
    -------
    list of str
        The grids and dose plot, plus reconstructions / FRC per successful job
        that has the input files.
    """
    out = [f"{FIGURES_DIR}/ms_ssim_grid.png", f"{FIGURES_DIR}/ssim_grid.png", f"{FIGURES_DIR}/metrics_vs_dose.png"]
    for j in jobs:
        if j.status != "success":
            continue
        if (j.output_dir / "reconstructions.npz").exists():
            out.append(f"{FIGURES_DIR}/reconstructions_{_job_stem(j)}.png")
        if any(j.output_dir.glob("*_frc_curves.csv")):
            out.append(f"{FIGURES_DIR}/frc_{_job_stem(j)}.png")
    return out


#: Name patterns of the per-job figures :func:`write_figures` draws (under ``analysis/figures``).
PER_JOB_FIGURES = ("reconstructions_*.png", "frc_*.png")


def stale_figures(hub, jobs) -> list[Path]:
    """Per-job figures under ``analysis/figures`` that no job of ``jobs`` produces (left from an earlier run).

    Only names Phase G writes (:data:`PER_JOB_FIGURES`) are considered; other PNGs are the user's.

    Parameters
    ----------
    hub : str or Path
    jobs : list of JobRecord

    Returns
    -------
    list of Path
    """
    root = _hub.analysis_root(hub)
    figdir = root / FIGURES_DIR
    if not figdir.is_dir():
        return []
    expected = {root / p for p in expected_figures(jobs)}
    return sorted(p for pat in PER_JOB_FIGURES for p in figdir.glob(pat) if p not in expected)


def write_figures(hub, ds, jobs) -> list[Path]:
    """Write every Phase G figure under ``analysis/figures`` and return the paths.

    Parameters
    ----------
    hub : str or Path
    ds : xarray.Dataset
        :func:`results_dataset` of ``jobs``.
    jobs : list of JobRecord

    Returns
    -------
    list of Path
        Every PNG written (atomically). Per-job figures of jobs no longer
        present or no longer scored (:func:`stale_figures`) are removed, so a
        figure never outlives its job.
    """
    from ..phase_g.story import arm_label, job_arms

    figdir = _hub.analysis_root(hub) / FIGURES_DIR
    statuses = cell_statuses(hub, jobs)
    algs = [job_arms(hub, j)["PtyChi"].get("algorithm") for j in jobs if j.status == "success"]
    labels = {"PtyChi": arm_label("PtyChi", next((a for a in algs if a), None))}
    written = [save_figure(plot_metric_grid(ds, "ms_ssim", statuses=statuses, arm_labels=labels), figdir / "ms_ssim_grid.png"),
               save_figure(plot_metric_grid(ds, "ssim", statuses=statuses, arm_labels=labels), figdir / "ssim_grid.png"),
               save_figure(plot_metrics_vs_dose(ds, arm_labels=labels), figdir / "metrics_vs_dose.png")]
    for j in jobs:
        if j.status != "success":
            continue
        if (j.output_dir / "reconstructions.npz").exists():
            written.append(save_figure(plot_reconstructions(j.output_dir, j.label), figdir / f"reconstructions_{_job_stem(j)}.png"))
        if any(j.output_dir.glob("*_frc_curves.csv")):
            written.append(save_figure(plot_frc_curves(j.output_dir, j.label), figdir / f"frc_{_job_stem(j)}.png"))
    for p in stale_figures(hub, jobs):
        p.unlink()
    return written



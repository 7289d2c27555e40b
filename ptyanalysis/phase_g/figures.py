"""Phase G figures: metric grids, reconstruction panels, FRC curves, metrics against dose."""

from __future__ import annotations

from pathlib import Path
import numpy as np
from ..conventions import ARMS, canonical_arm, dose_label
from ..errors import PtyAnalysisError
from ..fileutil import atomic_path
from ..phase_g.schema import FIGURES_DIR
from ..phase_g.collect import JobRecord, read_frc_curves, read_reconstructions


# --------------------------------------------------------------------------- figures


def _new_figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


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


def plot_metric_grid(ds, metric: str = "ms_ssim", arms=None):
    """Heat maps of one metric for each arm over dose x (view, split).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metric : str
        ``"ms_ssim"``, ``"ssim"`` (fixed 0-1 colour scale) or any metric of ``ds``.
    arms : sequence of str, optional
        Arms to show (default all of ``ds``).

    Returns
    -------
    matplotlib.figure.Figure
        One row per arm, columns amplitude and phase; each cell shows its value,
        a missing cell is grey, hatched and labelled "missing".
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
    fig = _new_figure((2.2 + 1.3 * len(labels) * 2, 0.9 + 1.1 * len(doses) * len(arms)))
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
                        ax.text(k, i, "missing", ha="center", va="center", fontsize=8, color="0.2")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(doses)), [f"{int(d):g}" for d in doses], fontsize=8)
            ax.set_title(f"{arm} — {comp}", fontsize=9)
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


def plot_reconstructions(job_dir, title: str | None = None):
    """Ground truth and each arm, amplitude and phase, with shared colour limits.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``reconstructions.npz``.
    title : str, optional
        Figure title (default: the folder path below ``analysis``).

    Returns
    -------
    matplotlib.figure.Figure
        Rows amplitude and phase; columns ground truth then
        :data:`~ptyanalysis.conventions.ARMS`. Colour limits of a row are the
        1-99 percentiles of the ground truth on covered pixels (of all images
        when there is no ground truth); uncovered pixels (``coverage == 0``)
        are grey; an arm absent from the file is a hatched "missing" panel.
    """
    import matplotlib

    job_dir = Path(job_dir)
    images, coverage = read_reconstructions(job_dir / "reconstructions.npz")
    cols = ["GroundTruth"] + list(ARMS) + sorted(set(images) - set(ARMS) - {"GroundTruth"})
    fig = _new_figure((2.6 * len(cols) + 1, 5.4))
    axes = fig.subplots(2, len(cols), squeeze=False)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="0.75")
    pcmap = matplotlib.colormaps["twilight"].with_extremes(bad="0.75")
    for r, (comp, fn, cm) in enumerate((("amplitude", np.abs, cmap), ("phase", np.angle, pcmap))):
        ref = [images["GroundTruth"]] if "GroundTruth" in images else list(images.values())
        pool = np.concatenate([_masked(fn(x), coverage).ravel() for x in ref]) if ref else np.array([])
        pool = pool[np.isfinite(pool)]
        lo, hi = (np.percentile(pool, [1, 99]) if pool.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1e-6
        im = None
        for c, name in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name not in images:
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
                ax.add_patch(matplotlib.patches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, hatch="///",
                                                          edgecolor="0.5"))
            else:
                img = _masked(fn(images[name]), coverage)
                im = ax.imshow(img, cmap=cm, vmin=lo, vmax=hi)
                if not np.any(np.abs(images[name]) > 0):
                    ax.text(0.5, 0.05, "all zero", ha="center", color="red", transform=ax.transAxes)
            if r == 0:
                ax.set_title("ground truth" if name == "GroundTruth" else name, fontsize=10)
            if c == 0:
                ax.set_ylabel(comp)
        if im is not None:
            fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.85, label=f"{comp} (shared limits)")
    fig.suptitle(title or "/".join(job_dir.parts[-3:]))
    return fig


def plot_frc_curves(job_dir, title: str | None = None):
    """FRC curves of every arm, amplitude and phase, with the 0.5 and 1/7 thresholds.

    Parameters
    ----------
    job_dir : str or Path
        A job folder with ``*_frc_curves.csv`` files.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (amplitude, phase); an arm without a curve is named in the legend as missing.
    """
    job_dir = Path(job_dir)
    curves = read_frc_curves(job_dir)
    fig = _new_figure((10, 4))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colors = {"PtychoPINN": "tab:blue", "Baseline": "tab:orange", "PtyChi": "tab:green"}
    for ax, comp in zip(axes, ("amplitude", "phase")):
        for arm in list(ARMS) + sorted(set(curves) - set(ARMS)):
            if arm in curves:
                c = curves[arm]
                ax.plot(c["frequency_bin"], c[f"{comp}_frc"], label=arm, color=colors.get(arm))
            else:
                ax.plot([], [], label=f"{arm} (missing)", color=colors.get(arm), linestyle=":")
        ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8, label="0.5 threshold")
        ax.axhline(1 / 7, color="0.4", linestyle=":", linewidth=0.8, label="1/7 threshold")
        ax.set_xlabel("ring index (frequency bin)")
        ax.set_ylabel("FRC")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{comp} FRC")
        ax.legend(fontsize=7)
    fig.suptitle(title or "/".join(job_dir.parts[-3:]))
    return fig


def plot_metrics_vs_dose(ds, metrics=("ms_ssim", "ssim", "mae", "frc50")):
    """Metrics against dose: one panel per metric and component, one line per arm/view/split.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`results_dataset` / :func:`load_results`.
    metrics : sequence of str
        Metrics to plot (rows).

    Returns
    -------
    matplotlib.figure.Figure
        Colour = arm, line style = view, marker = split; dose on a log axis.
        Missing values leave gaps.
    """
    metrics = [m for m in metrics if m in ds["metric"].values]
    fig = _new_figure((10, 2.6 * max(1, len(metrics)) + 0.6))
    axes = fig.subplots(max(1, len(metrics)), 2, squeeze=False)
    colors = {"PtychoPINN": "tab:blue", "Baseline": "tab:orange", "PtyChi": "tab:green"}
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D"]
    doses = ds["dose"].values.astype(float)
    for r, metric in enumerate(metrics):
        for c, comp in enumerate(("amplitude", "phase")):
            ax = axes[r, c]
            for arm in ds["arm"].values:
                for vi, view in enumerate(ds["view"].values):
                    for si, split in enumerate(ds["split"].values):
                        y = ds["value"].sel(arm=arm, view=view, split=split, metric=metric, component=comp).values
                        if not np.any(np.isfinite(y)):
                            continue
                        ax.plot(doses, y, color=colors.get(str(arm)), linestyle=styles[vi % 4],
                                marker=markers[si % 4], label=f"{arm} {view}/{split}")
            ax.set_xscale("log")
            ax.set_title(f"{metric} — {comp}", fontsize=9)
            ax.set_xlabel("dose (photons per pattern)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7)
    fig.suptitle("Metrics against dose (gaps = missing)")
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
        Every PNG written (atomically).
    """
    figdir = Path(hub) / "analysis" / FIGURES_DIR
    written = [save_figure(plot_metric_grid(ds, "ms_ssim"), figdir / "ms_ssim_grid.png"),
               save_figure(plot_metric_grid(ds, "ssim"), figdir / "ssim_grid.png"),
               save_figure(plot_metrics_vs_dose(ds), figdir / "metrics_vs_dose.png")]
    for j in jobs:
        if j.status != "success":
            continue
        if (j.output_dir / "reconstructions.npz").exists():
            written.append(save_figure(plot_reconstructions(j.output_dir, j.label), figdir / f"reconstructions_{_job_stem(j)}.png"))
        if any(j.output_dir.glob("*_frc_curves.csv")):
            written.append(save_figure(plot_frc_curves(j.output_dir, j.label), figdir / f"frc_{_job_stem(j)}.png"))
    return written



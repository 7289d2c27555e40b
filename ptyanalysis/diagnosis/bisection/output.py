"""The bisection's result on disk (``bisection.json``) and as a figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...fileutil import write_json
from ...plotting import subplots
from ...provenance import software_versions, utc_now
from .records import BisectionResult


def write_bisection(result: BisectionResult, out_dir) -> Path:
    """Write ``bisection.json`` atomically into ``out_dir``; return its path.

    Parameters
    ----------
    result : BisectionResult
    out_dir : str or Path
    """
    d = result.to_dict()
    d.update(generated_at=utc_now(), versions=software_versions(("ptyanalysis", "numpy", "keras", "tensorflow", "jax", "torch")))
    return write_json(Path(out_dir) / "bisection.json", d)


def plot_bisection(result: BisectionResult):
    """Figure: ``restores`` per failing-set experiment and per-layer zero fractions.

    Parameters
    ----------
    result : BisectionResult

    Returns
    -------
    matplotlib.figure.Figure
    """
    ex = [e for e in result.experiments if e.restores is not None]
    rows = result.layers.get("rows", [])
    fig, axes = subplots(1, 2 if rows else 1, figsize=(11 if rows else 6, max(3, 0.25 * len(ex) + 1)),
                             squeeze=False)
    ax = axes[0, 0]
    ax.barh([e.name for e in ex][::-1], [e.restores for e in ex][::-1],
            color=["C2" if e.fails is False else "C3" for e in ex][::-1])
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of reference health restored (green: the failing set passes)")
    ax.set_title(f"verdict: {result.verdict.get('kind')} {result.verdict.get('name')}", fontsize=9)
    if rows:
        ax = axes[0, 1]
        y = np.arange(len(rows))
        # passing underneath (thick, pale, squares), failing on top (thin, dashed, dots): both stay visible
        ax.plot([r["zero_fraction_passing"] for r in rows], y, "s-", color="C0", lw=4, ms=9, alpha=0.45,
                label=(result.layers or {}).get("compared_with", "passing"), zorder=2)
        ax.plot([r["zero_fraction_failing"] for r in rows], y, "o--", color="C3", lw=1.5, ms=4,
                label="failing", zorder=3)
        ax.set_yticks(y, [r["layer"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("zero fraction of activations")
        ax.set_ylabel("layer (input to output)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig



"""``ptyanalysis simulate``: write a synthetic dose/overlap study hub (:mod:`ptyanalysis.synthetic.simulate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..conventions import DOSES
from ..synthetic import simulate


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", type=Path, help="output hub directory")
    parser.add_argument("--size", choices=sorted(simulate.SIZES), default="demo",
                        help="geometry preset (default: demo)")
    parser.add_argument("--N", type=int, help="override the patch size (64 or 128, ...)")
    parser.add_argument("--positions", type=int, help="override the number of scan positions")
    parser.add_argument("--object-size", type=int, help="override the object side in pixels")
    parser.add_argument("--doses", type=float, nargs="+", default=list(DOSES), help="photons per pattern")
    parser.add_argument("--seed", type=int, default=42)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis simulate``: write the hub and print each view's overlap.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser`.

    Returns
    -------
    int
        0 (bad input raises :class:`~ptyanalysis.errors.PtyAnalysisError`: exit status 2).
    """
    config = simulate.simulation_config(args.size, N=args.N, n_positions=args.positions,
                                        object_size=args.object_size, doses=args.doses, seed=args.seed)
    desc = simulate.simulate_study(args.hub, config, progress=print)
    for v, d in desc["overlap"].items():
        for s, m in d.items():
            print(f"view {v:6s} {s:5s}: {m['n_positions']:6d} positions, "
                  f"mean disc overlap {m['mean_disc_overlap']:.3f} (k={m['k']}, R={m['probe_radius_px']:.1f} px)")
    print(f"study written to {args.hub}")
    return 0

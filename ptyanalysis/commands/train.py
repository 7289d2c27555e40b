"""``ptyanalysis train``: train the network arms and run the iterative arm on a hub (:mod:`ptyanalysis.synthetic.training`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..conventions import REASSEMBLY
from ..synthetic import training


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", type=Path, help="study hub (from 'ptyanalysis simulate')")
    parser.add_argument("--budget", choices=sorted(training.TRAIN_CONFIGS), default=None,
                        help="training budget preset (default: the hub's simulation size)")
    parser.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                        help="optimiser steps for each network, overriding the preset (e.g. a few hundred "
                             "to try the study size on a CPU; the real study budget needs a GPU)")
    parser.add_argument("--baseline-reassembly", choices=REASSEMBLY, default=None,
                        help="the Baseline's in-model merge: as the study ran it (default) or centred "
                             "on the batch mean as PtychoPINN's current code")
    parser.add_argument("--doses", type=float, nargs="+", help="only these doses")
    parser.add_argument("--force", action="store_true", help="retrain even if models exist")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis train``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser`.

    Returns
    -------
    int
        0 (bad input raises :class:`~ptyanalysis.errors.PtyAnalysisError`: exit status 2).
    """
    budget = args.budget or training.hub_budget(args.hub)
    config = training.config_with(training.TRAIN_CONFIGS[budget], steps=args.steps,
                                  baseline_reassembly=args.baseline_reassembly)
    training.train_study(args.hub, config, doses=args.doses, force=args.force)
    print(f"models under {args.hub / 'data' / 'phase_e'}; iterative arm under {args.hub / 'data' / 'phase_f'}")
    return 0

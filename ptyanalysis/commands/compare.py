"""``ptyanalysis compare``: one comparison job, every arm on one dose / view / split (:mod:`ptyanalysis.pipeline.compare`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..conventions import DOSES, SPLITS, VIEWS
from ..errors import PtyAnalysisError
from ..fileutil import check_output_dir
from ..hub import check_in_hub
from ..pipeline import compare
from .options import add_batch_size_argument, runtime_from_args


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", type=Path, help="study hub (data/phase_c, phase_e, phase_f)")
    parser.add_argument("--dose", type=float, required=True, metavar="PHOTONS",
                        help="photons per pattern, one of the hub's data/phase_c/dose_<D> folders "
                             f"(the synthetic study: {', '.join(f'{d:g}' for d in DOSES)}); checked against the hub")
    parser.add_argument("--view", required=True, metavar="VIEW",
                        help=f"scan-overlap view, one of the hub's ({' | '.join(VIEWS)} in the synthetic study); "
                             "checked against the hub")
    parser.add_argument("--split", required=True, metavar="SPLIT",
                        help=f"data split, one of the hub's patched_<split>.npz ({' | '.join(SPLITS)}); "
                             "checked against the hub")
    parser.add_argument("--baseline-positions", choices=("trained", "study"), default="trained",
                        help="'study' feeds the Baseline exactly as the study's script did: absolute positions and "
                             "diffraction not multiplied by intensity_scale (reproduces the incident)")
    parser.add_argument("--feed", choices=("trained", "torch_cli"), default="trained",
                        help="'torch_cli' feeds PyTorch bundles as PtychoPINN's PyTorch inference CLI does (each "
                             "pattern alone, copied into every channel); default as each model was trained")
    parser.add_argument("--placement", choices=("per_member", "channel_mean"), default="per_member",
                        help="multi-channel outputs (PyTorch bundles): each channel at its member's position "
                             "(default), or their mean at the group centre as PtychoPINN's run_cdi_example_torch")
    parser.add_argument("--register", choices=("all", "ptychi", "none"), default="ptychi",
                        help="arms registered to the ground truth (default ptychi, as the study)")
    parser.add_argument("--out", type=Path, help="output folder (default analysis/dose_<D>/<view>/<split>)")
    add_batch_size_argument(parser, default=None)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis compare``: print each arm's scores and status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser`.

    Returns
    -------
    int
        0 when every arm was compared.

    Raises
    ------
    PtyAnalysisError
        Bad input (checked before any work), or an arm that could not be compared (the job's files are
        written and record it): exit status 2.
    """
    cfg = compare.CompareConfig(baseline_positions=args.baseline_positions, feed=args.feed,
                                placement=args.placement, register=args.register,
                                batch_size=None if args.batch_size is None else runtime_from_args(args).batch_size)
    check_in_hub(args.hub, args.dose, args.view, args.split)
    check_output_dir(args.out)
    ds = compare.compare_job(args.hub, args.dose, args.view, args.split, cfg, out_dir=args.out)
    print(compare.arm_table(ds).to_string())
    details = json.loads(ds.attrs.get("arm_details", "{}"))
    missing = {a: d for a, d in details.items() if d.get("status") in ("missing", "failed")}
    if missing:
        why = "; ".join(f"{a}: {d.get('error', d.get('status'))}" for a, d in missing.items())
        raise PtyAnalysisError(f"dose {args.dose:g} {args.view} {args.split}: {len(missing)} arm(s) could not be "
                               f"compared ({why}); the job files record them as missing. Train the arms with "
                               f"`ptyanalysis train {args.hub}` (or point at a hub that has them)")
    return 0

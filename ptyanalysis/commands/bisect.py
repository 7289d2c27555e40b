"""``ptyanalysis bisect``: why a model fails on one input set and passes on another (:mod:`ptyanalysis.diagnosis.bisection`)."""

from __future__ import annotations

import argparse

from ..diagnosis.bisection import Settings, bisect, write_bisection
from ..diagnosis.health import parse_criterion
from ..diagnosis.inputs import check_feed, cli_input_sets, default_paired_set, split_ground_truth
from ..errors import PtyAnalysisError
from ..fileutil import check_output_dir
from ..inference.loading import load_model
from .options import add_batch_size_argument, add_feed_argument, runtime_from_args


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``bisect`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--model", required=True, help="model spec (see ptyanalysis.inference.load_model)")
    parser.add_argument("--failing", required=True, help="NPZ of the failing inputs (one array per model input)")
    parser.add_argument("--passing", required=True, help="NPZ of the passing inputs")
    parser.add_argument("--reference", default=None, help="NPZ of inputs drawn like the training inputs")
    parser.add_argument("--criterion", default="all-zero",
                        help="all-zero (default), any-blank (some sample's output blank), non-finite, collapsed[:tol], "
                             "zero-fraction>=F (some output at least the share F zero or non-finite), mostly-zero "
                             "(= zero-fraction>=0.5) or module:function")
    parser.add_argument("--study-inputs", action="store_true",
                        help="the NPZs are study datasets, fed exactly as the study's comparison script fed them "
                             "(Baseline: diffraction not x intensity_scale, absolute positions; "
                             "ptyanalysis.inference.feeds); without --reference the reference is the passing "
                             "split fed as the model was trained")
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--max-evaluations", type=int, default=58)
    add_feed_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    add_batch_size_argument(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis bisect``; return the exit status (0 whatever the verdict).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser`.

    Returns
    -------
    int
        0 (bad input raises :class:`~ptyanalysis.errors.PtyAnalysisError`: exit status 2).
    """
    crit = parse_criterion(args.criterion)
    check_feed(args.feed, args.study_inputs)
    check_output_dir(args.out)
    try:
        Settings(args.max_samples, args.max_evaluations, args.seed)
    except PtyAnalysisError as exc:  # the same rule, named as the options are
        raise PtyAnalysisError(f"--{str(exc).replace('_', '-')}") from None
    runtime = runtime_from_args(args)
    loaded = load_model(args.model)
    paths = {"failing": args.failing, "passing": args.passing}
    sets, datasets, reference = cli_input_sets(loaded, paths, args.reference, study_inputs=args.study_inputs,
                                               trained_like="passing", feed=args.feed, seed=args.seed, say=print)
    # the failing split re-fed as trained (the same samples in the same order): health is paired
    paired = default_paired_set(loaded, datasets, paths, "failing", study_inputs=args.study_inputs,
                                reference_given=args.reference is not None or reference is None, seed=args.seed,
                                say=print, feed=args.feed)
    gt = None
    if args.study_inputs:
        gt = split_ground_truth(datasets, {"failing": "failing", "passing": "passing"}, say=print)
        if gt is not None and args.reference is None and reference is not None:
            gt["reference"] = gt["passing"]  # the reference is the passing split fed as trained
    res = bisect(loaded, sets["failing"], sets["passing"], reference, crit, max_samples=args.max_samples,
                 max_evaluations=args.max_evaluations, seed=args.seed, runtime=runtime, paired_reference=paired,
                 ground_truth=gt)
    path = write_bisection(res, args.out)
    print(f"wrote {path}")
    print(f"verdict: {res.verdict['kind']} {res.verdict.get('name')}: {res.verdict['summary']}")
    print(f"fix{' (verified: the failing set passes with it)' if res.verdict.get('verified') else ''}: {res.fix}")
    return 0

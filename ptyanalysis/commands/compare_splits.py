"""``ptyanalysis compare-splits``: a model's inputs and outputs across two splits (:mod:`ptyanalysis.diagnosis.splits`)."""

from __future__ import annotations

import argparse

from ..diagnosis import splits
from ..diagnosis.inputs import check_feed, cli_input_sets, split_ground_truth
from ..errors import PtyAnalysisError
from ..fileutil import check_output_dir
from ..inference.loading import load_model
from .options import add_batch_size_argument, add_feed_argument, runtime_from_args


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare-splits`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--model", required=True, help="model spec (see ptyanalysis.inference.load_model)")
    parser.add_argument("--a", required=True, help="first split NPZ (arrays named like the model inputs)")
    parser.add_argument("--b", required=True, help="second split NPZ")
    parser.add_argument("--reference", default=None, help="NPZ of inputs drawn like the training inputs")
    parser.add_argument("--names", default="train,test", help="names of the two splits (default train,test)")
    parser.add_argument("--study-inputs", action="store_true",
                        help="the NPZs are study datasets, fed exactly as the study's comparison script fed them "
                             "(Baseline: diffraction not x intensity_scale, absolute positions); without "
                             "--reference the reference is split a fed as the model was trained")
    add_feed_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    add_batch_size_argument(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis compare-splits``; return the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser`.

    Returns
    -------
    int
        0 (bad input raises :class:`~ptyanalysis.errors.PtyAnalysisError`: exit status 2).
    """
    names = tuple(s.strip() for s in str(args.names).split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1] or "reference" in names:
        raise PtyAnalysisError(f"--names must be two different names separated by a comma (not 'reference'), "
                               f"got {args.names!r}")
    if args.seed < 0:
        raise PtyAnalysisError(f"--seed must be >= 0, got {args.seed}")
    runtime = runtime_from_args(args)
    check_feed(args.feed, args.study_inputs)
    check_output_dir(args.out)
    loaded = load_model(args.model)
    sets, datasets, reference = cli_input_sets(loaded, {"a": args.a, "b": args.b}, args.reference,
                                               study_inputs=args.study_inputs, trained_like="a",
                                               feed=args.feed, seed=args.seed, say=print)
    gt = split_ground_truth(datasets, dict(zip(("a", "b"), names)), say=print) if args.study_inputs else None
    res = splits.compare_splits(loaded, sets["a"], sets["b"], reference=reference, ground_truth=gt,
                                names=names, seed=args.seed, runtime=runtime)
    paths = splits.write_split_comparison(res, args.out)
    print(f"wrote {paths['json']}")
    for f in res.flags:
        print(f"  - {f}")
    return 0

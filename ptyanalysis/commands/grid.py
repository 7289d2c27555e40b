"""``ptyanalysis grid``: run the per-job notebook over a study grid (:mod:`ptyanalysis.pipeline.grid`; guide: docs/grid.md)."""

from __future__ import annotations

import argparse

from ..errors import PtyAnalysisError
from ..pipeline.grid import load_spec, run_grid


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``grid`` command's options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("spec", help="grid YAML file, e.g. params/study.yaml (schema and examples: docs/grid.md)")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: min(cells, CPU count))")
    parser.add_argument("--force", action="store_true", help="rerun cells that are already complete")
    parser.add_argument("--retries", type=int, default=None, help="extra attempts per failing cell (overrides the YAML)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the cells; run nothing, write nothing")
    parser.add_argument("--serial", action="store_true", help="run the cells one by one in this process (no Dask)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the orchestrator log")
    parser.add_argument("--memory", type=float, default=None, metavar="GB",
                        help="memory the grid may use, GB (default: 85%% of what the machine has available); "
                             "cells run at once only as far as their measured or estimated peaks fit")
    parser.add_argument("--fresh-kernels", action="store_true",
                        help="start a fresh kernel for every cell (default: each worker reuses one kernel, so "
                             "imports and loaded models are reused across its cells)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis grid``: 0 when every cell is complete, 1 when any failed.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options (see :func:`configure_parser`).

    Returns
    -------
    int
        0 when every cell is complete (or a dry run), 1 when a cell failed.
    """
    if args.workers is not None and args.workers < 1:
        raise PtyAnalysisError(f"--workers must be >= 1, got {args.workers}")
    spec = load_spec(args.spec)
    memory = getattr(args, "memory", None)
    res = run_grid(spec, scheduler=args.scheduler, workers=args.workers, force=args.force, retries=args.retries,
                   dry_run=args.dry_run, serial=args.serial, echo=not args.quiet and not args.dry_run,
                   memory_bytes=None if memory is None else int(memory * 1e9),
                   reuse_kernel=not getattr(args, "fresh_kernels", False))
    if args.dry_run:
        for n in res.notices:
            print(f"notice: {n}")
        for r in res.results:
            print(f"{r.label}: {'complete (skip)' if r.status == 'skipped' else 'would run'}")
        print(f"{sum(r.status == 'pending' for r in res.results)} of {len(res.results)} cell(s) would run")
        return 0
    if args.quiet:  # otherwise the echoed log already ended with the table
        print(res.table())
    print(f"manifest: {res.manifest_path}\nlog: {res.log_path}")
    return 0 if res.ok else 1

"""``ptyanalysis demo``: the synthetic study end to end (:mod:`ptyanalysis.synthetic.demo`), and what it prints."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..phase_g.story import build_story, verdict_words
from ..pipeline.compare import CompareConfig
from ..synthetic import demo


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--hub", type=Path, default=Path("demo_hub"), help="where the study goes (default demo_hub)")
    parser.add_argument("--size", default="demo", help="study size: ci, demo or study (default demo)")
    parser.add_argument("--workers", type=int, help="grid workers (default: one per core)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only simulate and train (and run the grid with --grid)")
    parser.add_argument("--grid", action="store_true", help="with --prepare-only: also run the comparison grid")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis demo``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser` (``hub``, ``size``, ``workers``, ...).

    Returns
    -------
    int
        0 when the grid succeeded, 1 otherwise.
    """
    t0 = time.perf_counter()
    if args.prepare_only:
        demo.ensure_study(args.hub, args.size)
        if args.grid and not demo.run_comparison_grid(args.hub, args.workers).ok:
            return 1
        return 0
    s = demo.run_demo(args.hub, args.size, args.workers)
    print()
    print("=" * 72)
    print(f"ptyanalysis demo finished in {time.perf_counter() - t0:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in s['timings_s'].items())})")
    print(f"  hub:                 {s['hub']}")
    print(f"  HTML report:         {s['html']}")
    print(f"  per-job results:     {s['hub']}/analysis/dose_<D>/<view>/<split>/")
    print(f"  diagnosis notebooks: {', '.join(s['diagnosis_notebooks'].values())}")
    print(f"  verification:        {s['verification']} checks passed")
    print(f"  bisection verdict:   {verdict_words(s['bisection_verdict'] or {})} "
          "(the whole reasoning: bisection.json, or the report)")
    if s.get("bisection_fix"):
        print(f"  bisection fix:       {s['bisection_fix']}")
    prov = build_story(s["hub"]).data["provenance"]
    print("  what ran in each arm:")
    for arm in ("PtychoPINN", "Baseline", "PtyChi"):
        print(f"    {prov[arm]}")
    conv = CompareConfig().csv_convention
    q = demo.quality_table(s["hub"], conv)
    if len(q):
        print(f"  mean reconstruction quality per arm ({conv} convention, as in the HTML report; higher is better):")
        print(q.round(3).to_string())
    return 0 if s["grid_ok"] else 1

"""``ptyanalysis verify``: check a hub's Phase G artifacts (:mod:`ptyanalysis.phase_g.verify`)."""

from __future__ import annotations

import argparse

from ..phase_g.verify import verify_hub


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", help="study hub")
    parser.add_argument("--report", default=None, help="report path (default HUB/analysis/verification_report.json)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis verify``: print each check; exit 0 only when all pass.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser` (``hub``, ``report``).

    Returns
    -------
    int
        0 when every check passes, 1 otherwise.
    """
    res = verify_hub(args.hub, report_path=args.report)
    for v in res.validations:
        mark = "ok  " if v["valid"] else "FAIL"
        line = f"[{mark}] {v['description']} ({v['path']})"
        if not v["valid"]:
            line += f": {v.get('error', 'unknown error')}"
        print(line)
    print(f"{res.n_valid}/{res.n_checks} checks passed; report: {res.report_path}")
    return 0 if res.all_valid else 1

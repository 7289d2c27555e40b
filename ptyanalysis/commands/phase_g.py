"""``ptyanalysis phase-g``: the Phase G artifacts, figures and report of a hub (:mod:`ptyanalysis.phase_g.report`)."""

from __future__ import annotations

import argparse

from ..conventions import dose_label
from ..phase_g.report import phase_g
from ..phase_g.schema import MS_SSIM_THRESHOLD
from ..phase_g.summary import delta_highlight_lines


def _arm_option(text: str) -> tuple:
    arm, sep, mid = text.partition("=")
    if not sep or not arm.strip() or not mid.strip():
        raise argparse.ArgumentTypeError(f"expected ARM=MODEL_ID (e.g. PtychoPINN=pinn_ffno), got {text!r}")
    return arm.strip(), mid.strip()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``phase-g`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("hub", help="study hub (with analysis/dose_<D>/<view>/<split>/ job folders)")
    parser.add_argument("--notebook", default=None,
                        help="Phase G notebook to execute and render to analysis/phase_g_report.html "
                             "(default: the package's 03_phase_g_figures notebook)")
    parser.add_argument("--no-html", action="store_true", help="do not execute/render the Phase G notebook")
    parser.add_argument("--no-figures", action="store_true", help="do not write the PNG figures")
    parser.add_argument("--ms-ssim-threshold", type=float, default=MS_SSIM_THRESHOLD,
                        help="MS-SSIM sanity threshold in aggregate_report.md (default 0.80)")
    parser.add_argument("--arm", action="append", type=_arm_option, default=[], metavar="ARM=MODEL_ID",
                        help="PtychoPINN study folders: report the study's model MODEL_ID as ARM (PtychoPINN, Baseline "
                             "or PtyChi), e.g. --arm PtychoPINN=pinn_ffno (default: pinn and baseline); repeatable")
    parser.add_argument("--dose", type=float, default=None,
                        help="PtychoPINN study folders: photons per pattern of every study folder, instead of its recorded "
                             "nphotons (needed when a folder records none)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ptyanalysis phase-g``; print the highlights and any missing results.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`configure_parser` (``hub``, ``notebook``, ``no_html``, ...).

    Returns
    -------
    int
        0 (bad input raises :class:`~ptyanalysis.errors.PtyAnalysisError`: exit status 2).
    """
    res = phase_g(args.hub, notebook=args.notebook, html=not args.no_html, figures=not args.no_figures,
                  ms_ssim_threshold=args.ms_ssim_threshold, arms=dict(args.arm) or None, dose=args.dose)
    if res.imported is not None:
        imp = res.imported
        print(f"PtychoPINN study outputs: {len(imp.studies)} study folder(s) read as Phase G jobs "
              f"(written under {res.hub / 'analysis'}):")
        for st in imp.studies:
            arms_txt = ", ".join(f"{m.arm} = {m.model_id}" for m in st.models if m.arm) or "no arm"
            print(f"  - {st.root}: {dose_label(st.dose)}/{st.view}/{st.split} {st.status}; {arms_txt}")
        if imp.notes:
            print("accepted loosely, inferred or skipped:")
            for n in imp.notes:
                print(f"  - {n}")
    print(f"Phase G: {res.summary['n_success']}/{res.summary['n_jobs']} jobs with metrics; "
          f"wrote {len(res.files)} artifacts and {len(res.figures)} figures under {res.hub / 'analysis'}")
    print("\n".join(delta_highlight_lines(res.deltas["deltas"])))
    print("(deltas: PtychoPINN minus the other arm, in the metric convention of comparison_metrics.csv; "
          "MS-SSIM positive = PtychoPINN better, MAE negative = PtychoPINN better)")
    if "html" in res.files:
        print(f"report: {res.files['html']}")
    flags = res.summary.get("untrusted") or []
    if flags:
        print(f"trust flags ({len(flags)}):")
        for f in flags:
            print(f"  - {f}")
    if res.missing:
        print(f"missing, failed or all-zero results ({len(res.missing)}):")
        for m in res.missing:
            print(f"  - {m}")
    return 0

"""Verify a hub's Phase G artifacts: ``ptyanalysis verify HUB`` (exit 0 only when all pass).

Writes ``HUB/analysis/verification_report.json`` in the study's schema::

    {all_valid, n_checks, n_valid, n_invalid, validations: [{valid, path, description, error?}]}

(``path`` is relative to the hub). The checks, in order:

1.  comparison manifest: ``analysis/comparison_manifest.json`` has ``n_jobs,
    n_success, n_failed, jobs`` and no failed job;
2.  metrics summary JSON: ``n_jobs, n_success, n_failed, jobs,
    aggregate_metrics, phase_c_metadata_compliance``;
3.  metrics summary Markdown (``# Phase G Metrics Summary``);
4.  aggregate highlights (non-empty, study title line);
5.  metrics digest headings (``# Phase G Dense Metrics Digest``,
    ``## Pipeline Summary``, ``## Highlights``);
6.  delta summary JSON (``generated_at`` ending in ``Z``, ``source_metrics``
    an existing hub file, ``deltas.vs_{Baseline,PtyChi}.{ms_ssim,mae}.{amplitude,phase}``
    numeric or null);
7.  delta highlights: exactly 4 lines with the study's prefixes;
8.  SSIM grid summary, phase-only: no "amplitude" in it or in
    ``metrics_delta_highlights_preview.txt``, which must be 4 lines with the
    preview prefixes;
9.  orchestrator logs: ``analysis/logs/grid_*.log`` exists and the newest ends
    the run with ``SUCCESS: all cells completed`` (the grid runner's sentinel);
10. artifact inventory: every line a POSIX relative path (no leading ``/``,
    drive letter, backslash or ``..``) of an existing file, sorted, no
    duplicates, and every hub file listed (``analysis/verification_report.json``
    excepted: it is written after the check);

and ptyanalysis's own:

11. numbers agree: the aggregates of ``metrics_summary.json`` are the means of
    its jobs, ``metrics_delta_summary.json`` is PtychoPINN minus each arm on
    them, and every number in ``metrics_delta_highlights.txt``, the preview,
    ``ssim_grid_summary.md`` and ``aggregate_highlights.txt`` is that delta
    formatted (MS-SSIM 3 decimals, MAE 6, explicit sign, ``N/A`` when missing);
12. figures: every figure Phase G draws for the hub's jobs, and every PNG under
    ``analysis/figures``, exists and is a valid image (``PIL.Image.verify``), and no
    per-job figure is left from a job no longer scored (a stale figure fails);
13. job files: every successful job of the manifest has its output folder, the
    files listed in its ``outputs`` (default: ``comparison_metrics.csv``,
    ``reconstructions.npz``, ``comparison_plot.png``, ``comparison.nc``), all
    non-empty, the PNGs valid images, and its log;
14. per-job results can be trusted: every successful job's reconstructions
    (any tool's layout) and logs pass :func:`ptyanalysis.phase_g.trust.job_trust`
    (covered fraction of the scan, patches stitched against offsets, mostly-zero
    output); invalid, with each flag's evidence under ``flags``, when any job
    is flagged; an under-trained model (:data:`CAVEAT_CHECKS`) is listed under
    ``caveats`` and does not make it invalid. Checks 1-10 keep the study's schema and meaning.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import ptyanalysis.phase_g.collect as R_collect
import ptyanalysis.phase_g.figures as R_figures
import ptyanalysis.phase_g.inventory as R_inventory
import ptyanalysis.phase_g.schema as R_schema
import ptyanalysis.phase_g.summary as R_summary

from .. import hub as _hub
from ..errors import PtyAnalysisError
from ..fileutil import write_json

#: Sentinel the grid runner writes as the last line of a fully successful run.
GRID_SUCCESS_SENTINEL = "SUCCESS: all cells completed"
#: Files every comparison job must produce when the manifest does not list them.
DEFAULT_JOB_FILES = ("comparison_metrics.csv", "reconstructions.npz", "comparison_plot.png", "comparison.nc")
#: Report file name under ``analysis/``.
REPORT_NAME = "verification_report.json"
#: Study prefixes of the 4 highlight lines (as the study's verifier compares them, stripped).
STUDY_HIGHLIGHT_PREFIXES = tuple(p.rstrip(" :") for p in R_schema.HIGHLIGHT_PREFIXES)
#: Headings the digest must contain.
DIGEST_HEADINGS = ("# Phase G Dense Metrics Digest", "## Pipeline Summary", "## Highlights")

_NUM = re.compile(r"N/A|[+-]?\d+\.\d+")


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_hub`.

    Attributes
    ----------
    all_valid : bool
    n_checks, n_valid, n_invalid : int
    validations : tuple of dict
        ``{valid, path, description, error?}`` per check.
    report_path : Path or None
        Where the JSON report was written.
    """

    all_valid: bool
    n_checks: int
    n_valid: int
    n_invalid: int
    validations: tuple
    report_path: Path | None = None

    def as_dict(self) -> dict:
        """The report's JSON content."""
        return {"all_valid": self.all_valid, "n_checks": self.n_checks, "n_valid": self.n_valid,
                "n_invalid": self.n_invalid, "validations": list(self.validations)}


# --------------------------------------------------------------------------- helpers


def _rel(hub: Path, path: Path) -> str:
    try:
        return path.relative_to(hub).as_posix()
    except ValueError:
        return path.as_posix()


def _result(hub, path, description, error=None, **extra) -> dict:
    r = {"valid": error is None, "path": _rel(hub, Path(path)), "description": description}
    if error is not None:
        r["error"] = error
    r.update(extra)
    return r


def _load_json(path: Path):
    """(data, error)"""
    if not path.is_file():
        return None, "File not found"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"Invalid JSON: {exc}"


def _read_text(path: Path):
    if not path.is_file():
        return None, "File not found"
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text: {exc}"


def _image_error(path: Path) -> str | None:
    from PIL import Image

    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # what PIL raises on a bad file
        return f"not a valid image ({type(exc).__name__}: {exc})"
    return None


def _json_keys_check(hub, path, description, keys):
    data, err = _load_json(path)
    if err:
        return _result(hub, path, description, err), data
    if not isinstance(data, dict):
        return _result(hub, path, description, "top level must be a JSON object"), None
    missing = [k for k in keys if k not in data]
    if missing:
        return _result(hub, path, description, f"Missing required keys: {', '.join(missing)}"), data
    return None, data


#: Parameters and Returns of every check (appended to each check's docstring by :func:`_check`).
_CHECK_DOC = """

    Parameters
    ----------
    hub : Path
        Study hub (absolute).

    Returns
    -------
    dict
        {returns}
    """
#: What a check returns (:data:`_CHECK_DOC`), unless it says more.
_CHECK_RETURNS = "``{valid, path, description, error?}`` (:func:`verify_hub`'s entries)."


def _check(fn=None, *, returns: str = _CHECK_RETURNS):
    """Give a check the docstring sections every check shares (:data:`_CHECK_DOC`), with ``returns``."""
    def add(fn):
        fn.__doc__ = fn.__doc__.rstrip() + _CHECK_DOC.replace("{returns}", returns)
        return fn

    return add(fn) if fn is not None else add


def _analysis_path(hub: Path, key: str) -> Path:
    """The analysis file ``R_schema.FILES[key]`` of ``hub``."""
    return _hub.analysis_root(hub) / R_schema.FILES[key]


def _analysis_text(hub: Path, key: str):
    """``(path, text, error)`` of the analysis file ``R_schema.FILES[key]`` (:func:`_read_text`)."""
    path = _analysis_path(hub, key)
    return (path, *_read_text(path))


def _text_check(key: str, description: str):
    """Make the decorated ``problem(text) -> str | None`` the check of the analysis text file ``FILES[key]``.

    The check (``check(hub) -> dict``, named and documented as ``problem``)
    reads the file and reports its reading error, else ``problem``'s verdict
    on its text (None: valid).
    """
    def make(problem):
        def check(hub: Path) -> dict:
            path, text, err = _analysis_text(hub, key)
            return _result(hub, path, description, err or problem(text))

        check.__name__, check.__qualname__, check.__doc__ = problem.__name__, problem.__qualname__, problem.__doc__
        return _check(check)

    return make


# --------------------------------------------------------------------------- the checks


@_check
def check_manifest(hub: Path) -> dict:
    """Check 1: the grid's comparison manifest."""
    path = _analysis_path(hub, "manifest")
    desc = "Phase G comparison manifest"
    bad, data = _json_keys_check(hub, path, desc, ["n_jobs", "n_success", "n_failed", "jobs"])
    if bad:
        return bad
    if not isinstance(data["jobs"], list) or len(data["jobs"]) != data["n_jobs"]:
        return _result(hub, path, desc, f"n_jobs is {data['n_jobs']} but 'jobs' has "
                       f"{len(data['jobs']) if isinstance(data['jobs'], list) else 'no list of'} entries")
    if data["n_failed"]:
        failed = [f"dose_{r.get('dose')}/{r.get('view')}/{r.get('split')}"
                  for r in data.get("execution_results", []) if int(r.get("returncode", 1)) != 0]
        return _result(hub, path, desc, f"{data['n_failed']} failed job(s): {', '.join(failed) or 'see manifest'}; "
                       "rerun `ptyanalysis grid` (failed cells rerun, complete ones are skipped)")
    return _result(hub, path, desc)


@_check
def check_metrics_summary_json(hub: Path) -> dict:
    """Check 2: ``metrics_summary.json`` keys."""
    path = _analysis_path(hub, "metrics_summary_json")
    bad, _ = _json_keys_check(hub, path, "Phase G metrics summary JSON",
                              ["n_jobs", "n_success", "n_failed", "jobs", "aggregate_metrics", "phase_c_metadata_compliance"])
    return bad or _result(hub, path, "Phase G metrics summary JSON")


@_text_check("metrics_summary_md", "Phase G metrics summary Markdown")
def check_metrics_summary_md(text: str) -> str | None:
    """Check 3: ``metrics_summary.md``."""
    return None if text.startswith("# Phase G Metrics Summary") else "does not start with '# Phase G Metrics Summary'"


@_text_check("aggregate_highlights", "Phase G aggregate highlights")
def check_aggregate_highlights(text: str) -> str | None:
    """Check 4: ``aggregate_highlights.txt``."""
    if not text.strip():
        return "file is empty"
    if not text.startswith("Phase G Dense Metrics — Highlights"):
        return "first line is not 'Phase G Dense Metrics — Highlights'"
    return None


@_text_check("metrics_digest", "Metrics digest")
def check_metrics_digest(text: str) -> str | None:
    """Check 5: digest headings."""
    lines = {ln.rstrip() for ln in text.splitlines()}
    missing = [h for h in DIGEST_HEADINGS if h not in lines]
    return f"Missing sections: {', '.join(missing)}" if missing else None


@_check
def check_delta_summary(hub: Path) -> dict:
    """Check 6: ``metrics_delta_summary.json`` structure and provenance."""
    path = _analysis_path(hub, "delta_summary_json")
    desc = "Metrics delta summary JSON"
    bad, data = _json_keys_check(hub, path, desc, ["generated_at", "source_metrics", "deltas"])
    if bad:
        return bad
    ga = data["generated_at"]
    if not isinstance(ga, str) or not ga.endswith("Z"):
        return _result(hub, path, desc, f"generated_at must be an ISO-8601 UTC timestamp ending with Z, got: {ga!r}")
    src = data["source_metrics"]
    if not isinstance(src, str) or src.startswith("/") or not (hub / src).is_file():
        return _result(hub, path, desc, f"source_metrics must be a hub-relative path of an existing file, got: {src!r}")
    deltas = data["deltas"]
    if not isinstance(deltas, dict):
        return _result(hub, path, desc, "deltas must be an object")
    for comp in ("vs_Baseline", "vs_PtyChi"):
        for metric in ("ms_ssim", "mae"):
            block = (deltas.get(comp) or {}).get(metric) if isinstance(deltas.get(comp), dict) else None
            if not isinstance(block, dict):
                return _result(hub, path, desc, f"deltas.{comp}.{metric} missing (expected {{amplitude, phase}})")
            for c in ("amplitude", "phase"):
                if c not in block:
                    return _result(hub, path, desc, f"deltas.{comp}.{metric} missing component {c!r}")
                v = block[c]
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    return _result(hub, path, desc, f"deltas.{comp}.{metric}.{c} must be numeric or null, got {v!r}")
    return _result(hub, path, desc)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().splitlines() if ln.strip()]


@_check
def check_delta_highlights(hub: Path) -> dict:
    """Check 7: ``metrics_delta_highlights.txt`` has exactly the 4 prefixed lines."""
    desc = "Metrics delta highlights"
    path, text, err = _analysis_text(hub, "delta_highlights")
    if err:
        return _result(hub, path, desc, err)
    lines = _lines(text)
    if len(lines) != 4:
        return _result(hub, path, desc, f"Expected exactly 4 lines, got {len(lines)}")
    for i, (ln, pre) in enumerate(zip(lines, STUDY_HIGHLIGHT_PREFIXES), start=1):
        if not ln.startswith(pre):
            return _result(hub, path, desc, f"Line {i} does not start with expected prefix: {pre}", invalid_line=ln)
        if "amplitude" not in ln or "phase" not in ln:
            return _result(hub, path, desc, f"Line {i} must give 'amplitude <delta>  phase <delta>'", invalid_line=ln)
    return _result(hub, path, desc)


@_check
def check_ssim_grid(hub: Path) -> dict:
    """Check 8: phase-only SSIM grid summary and preview."""
    desc = "SSIM grid summary (phase-only)"
    path, text, err = _analysis_text(hub, "ssim_grid_summary")
    if err:
        return _result(hub, path, desc, err)
    if "amplitude" in text.lower():
        bad = [f"line {i}" for i, ln in enumerate(text.splitlines(), 1) if "amplitude" in ln.lower()]
        return _result(hub, path, desc, f"contains 'amplitude' ({', '.join(bad)}): the grid summary must be phase-only")
    for needed in ("# SSIM Grid Summary (Phase-Only)", "| vs_Baseline |", "| vs_PtyChi"):
        if needed not in text:
            return _result(hub, path, desc, f"missing {needed!r} (expected the 2x2 phase-only delta tables)")
    preview, ptext, perr = _analysis_text(hub, "delta_preview")
    if perr:
        return _result(hub, preview, desc, f"preview: {perr}")
    plines = _lines(ptext)
    amp = [f"line {i}" for i, ln in enumerate(ptext.splitlines(), 1) if "amplitude" in ln.lower()]
    if amp:
        return _result(hub, preview, desc, f"preview contains 'amplitude' ({', '.join(amp)}): it must be phase-only (PREVIEW-PHASE-001)")
    if len(plines) != 4:
        return _result(hub, preview, desc, f"preview: expected exactly 4 lines, got {len(plines)}")
    for i, (ln, pre) in enumerate(zip(plines, R_schema.PREVIEW_PREFIXES), start=1):
        if not ln.startswith(pre.strip()):
            return _result(hub, preview, desc, f"preview line {i} does not start with {pre.strip()!r}", invalid_line=ln)
        if len(_NUM.findall(ln[len(pre.strip()):])) != 1:
            return _result(hub, preview, desc, f"preview line {i} must hold exactly one delta", invalid_line=ln)
    return _result(hub, path, desc)


def _log_order(path: Path):
    """Sort key of ``grid_<UTC stamp>[_<k>].log``: stamp, then the numeric suffix (``_10`` after ``_9``)."""
    stem = path.stem[len("grid_"):]
    base, _, k = stem.rpartition("_")
    if base and k.isdigit():
        return (base, int(k), path.name)
    return (stem, 0, path.name)


@_check
def check_orchestrator_logs(hub: Path) -> dict:
    """Check 9: the grid runner's logs."""
    logdir = _hub.logs_dir(hub)
    desc = "Orchestrator logs (grid runner)"
    logs = sorted(logdir.glob("grid_*.log"), key=_log_order) if logdir.is_dir() else []
    if not logs:
        return _result(hub, logdir, desc, "no analysis/logs/grid_*.log: run the study grid with `ptyanalysis grid`")
    newest = logs[-1]
    text, err = _read_text(newest)
    if err:
        return _result(hub, newest, desc, err)
    last = next((ln.rstrip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    if not last.endswith(GRID_SUCCESS_SENTINEL):
        return _result(hub, newest, desc, f"newest grid log does not end with the sentinel {GRID_SUCCESS_SENTINEL!r} "
                       "(the last grid run did not complete every cell)")
    return _result(hub, newest, desc, found_logs=[_rel(hub, p) for p in logs])


def _path_problem(line: str) -> str | None:
    if line != line.strip():
        return "leading/trailing whitespace"
    if line.startswith("/") or re.match(r"^[A-Za-z]:", line):
        return "absolute path (must be relative to the hub)"
    if "\\" in line:
        return "contains backslashes (must use POSIX forward slashes)"
    if any(part in ("..", ".", "") for part in line.split("/")):
        return "not a normalized relative path ('.', '..' or empty component)"
    return None


@_check
def check_inventory(hub: Path) -> dict:
    """Check 10: ``artifact_inventory.txt`` lists exactly the hub's files."""
    desc = "Artifact inventory"
    path, text, err = _analysis_text(hub, "inventory")
    if err:
        return _result(hub, path, desc, err)
    lines = [ln for ln in text.split("\n") if ln != ""]
    if not lines:
        return _result(hub, path, desc, "artifact_inventory.txt is empty")
    invalid = []
    for i, ln in enumerate(lines, start=1):
        prob = _path_problem(ln)
        if prob is None and not (hub / ln).is_file():
            prob = "referenced file not found"
        if prob:
            invalid.append({"line": i, "path": ln, "reason": prob})
    if invalid:
        first = invalid[0]
        return _result(hub, path, desc, f"{len(invalid)} invalid entries; first: line {first['line']} "
                       f"{first['path']!r}: {first['reason']}", invalid_entries=invalid[:50])
    if lines != sorted(lines) or len(set(lines)) != len(lines):
        return _result(hub, path, desc, "entries must be sorted and unique")
    listed = set(lines)
    unlisted = [p for p in R_inventory.list_hub_files(hub, exclude=R_schema.POST_INVENTORY_FILES) if p not in listed]
    if unlisted:
        return _result(hub, path, desc, f"{len(unlisted)} hub file(s) not in the inventory, e.g. {unlisted[0]!r}; "
                       "rerun `ptyanalysis phase-g` (it writes the inventory last)", unlisted=unlisted[:50])
    return _result(hub, path, desc, line_count=len(lines))


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@_check
def check_numbers(hub: Path) -> dict:
    """Check 11: summary aggregates, deltas and every highlighted number agree."""
    analysis = _hub.analysis_root(hub)
    desc = "Highlights, preview and grid numbers match the summary and deltas"
    summary, err = _load_json(analysis / R_schema.FILES["metrics_summary_json"])
    if err:
        return _result(hub, analysis / R_schema.FILES["metrics_summary_json"], desc, err)
    dsum, err = _load_json(analysis / R_schema.FILES["delta_summary_json"])
    if err:
        return _result(hub, analysis / R_schema.FILES["delta_summary_json"], desc, err)
    try:
        agg = summary["aggregate_metrics"]
        # 1. aggregates are the means over the summary's own jobs
        for model, metrics in agg.items():
            for metric in R_schema.AGGREGATE_METRICS:
                if metric not in metrics:
                    continue
                amps, phs = [], []
                for job in summary["jobs"]:
                    row = next((m for m in job.get("metrics", []) if m.get("model") == model and m.get("metric") == metric), None)
                    if row and row.get("amplitude") is not None and row.get("phase") is not None:
                        amps.append(row["amplitude"])
                        phs.append(row["phase"])
                for comp, vals in (("amplitude", amps), ("phase", phs)):
                    want = sum(vals) / len(vals) if vals else None
                    got = metrics[metric].get(f"mean_{comp}")
                    if not _close(want, got):
                        return _result(hub, analysis / R_schema.FILES["metrics_summary_json"], desc,
                                       f"aggregate_metrics.{model}.{metric}.mean_{comp} is {got} but the mean of the jobs is {want}")
        # 2. deltas are PtychoPINN minus each arm
        want_d = R_summary.compute_deltas(agg)
        got_d = dsum["deltas"]
        for other in R_schema.DELTA_ARMS:
            for metric in R_schema.AGGREGATE_METRICS:
                for comp in ("amplitude", "phase"):
                    w, g = want_d[f"vs_{other}"][metric][comp], got_d[f"vs_{other}"][metric][comp]
                    if not _close(w, g):
                        return _result(hub, analysis / R_schema.FILES["delta_summary_json"], desc,
                                       f"deltas.vs_{other}.{metric}.{comp} is {g} but the summary gives {w}")
    except (KeyError, TypeError, AttributeError) as exc:
        return _result(hub, analysis / R_schema.FILES["delta_summary_json"], desc, f"malformed summary or deltas: {exc!r}")

    def fmt(other, metric, comp):
        return R_summary.format_delta(got_d[f"vs_{other}"][metric][comp], R_schema.DELTA_DECIMALS[metric])

    expected = {
        R_schema.FILES["delta_highlights"]: [[fmt(o, m, "amplitude"), fmt(o, m, "phase")] for m, o in R_schema.HIGHLIGHT_ORDER],
        R_schema.FILES["delta_preview"]: [[fmt(o, m, "phase")] for m, o in R_schema.HIGHLIGHT_ORDER],
    }
    for name, want_lines in expected.items():
        text, err = _read_text(analysis / name)
        if err:
            return _result(hub, analysis / name, desc, err)
        lines = _lines(text)
        if len(lines) != len(want_lines):
            return _result(hub, analysis / name, desc, f"expected {len(want_lines)} lines, got {len(lines)}")
        for i, (ln, want) in enumerate(zip(lines, want_lines), start=1):
            got = _NUM.findall(ln.split(":", 1)[1] if ":" in ln else ln)
            if got != want:
                return _result(hub, analysis / name, desc, f"line {i}: numbers {got} but the deltas give {want}", invalid_line=ln)
    # ssim grid rows
    text, err = _read_text(analysis / R_schema.FILES["ssim_grid_summary"])
    if err:
        return _result(hub, analysis / R_schema.FILES["ssim_grid_summary"], desc, err)
    rows = [ln for ln in text.splitlines() if ln.startswith("| vs_")]
    want_rows = [fmt(o, "ms_ssim", "phase") for o in R_schema.DELTA_ARMS] + [fmt(o, "mae", "phase") for o in R_schema.DELTA_ARMS]
    got_rows = [(_NUM.findall(ln.split("|")[2]) or ["?"])[0] for ln in rows]
    if got_rows != want_rows:
        return _result(hub, analysis / R_schema.FILES["ssim_grid_summary"], desc,
                       f"table values {got_rows} but the deltas give {want_rows} (MS-SSIM vs Baseline, vs PtyChi, MAE ...)")
    # aggregate highlights deltas
    text, err = _read_text(analysis / R_schema.FILES["aggregate_highlights"])
    if err:
        return _result(hub, analysis / R_schema.FILES["aggregate_highlights"], desc, err)
    block = None
    for i, ln in enumerate(text.splitlines(), start=1):
        m = re.match(r"(MS-SSIM|MAE) Deltas \(PtychoPINN - (\w+)\):", ln.strip())
        if m:
            block = ("ms_ssim" if m.group(1) == "MS-SSIM" else "mae", m.group(2))
            continue
        m = re.match(r"(Amplitude|Phase) \(mean\):\s*(\S+)", ln.strip())
        if m and block and block[1] in R_schema.DELTA_ARMS:
            want = fmt(block[1], block[0], m.group(1).lower())
            if m.group(2) != want:
                return _result(hub, analysis / R_schema.FILES["aggregate_highlights"], desc,
                               f"line {i}: {m.group(2)} but the deltas give {want}", invalid_line=ln)
    return _result(hub, analysis / R_schema.FILES["delta_summary_json"], desc)


@_check
def check_figures(hub: Path) -> dict:
    """Check 12: every expected figure (and every PNG under ``analysis/figures``) is a valid image; none is stale."""
    figdir = _hub.analysis_root(hub) / R_schema.FIGURES_DIR
    desc = "Figures exist and are valid images"
    try:
        jobs = R_collect.collect_jobs(hub, check_trust=False)
    except PtyAnalysisError as exc:
        return _result(hub, figdir, desc, f"cannot read the jobs: {exc}")
    expected = {_hub.analysis_root(hub) / p for p in R_figures.expected_figures(jobs)}
    present = set(figdir.glob("*.png")) if figdir.is_dir() else set()
    bad = [f"{_rel(hub, p)}: stale (no scored job draws it any more; run ptyanalysis phase-g again)"
           for p in R_figures.stale_figures(hub, jobs)]
    for p in sorted(expected | present):
        e = _image_error(p)
        if e:
            bad.append(f"{_rel(hub, p)}: {e}")
    if bad:
        return _result(hub, figdir, desc, f"{len(bad)} figure problem(s): {'; '.join(bad[:5])}", problems=bad)
    return _result(hub, figdir, desc, n_figures=len(expected | present))


@_check
def check_job_files(hub: Path) -> dict:
    """Check 13: every successful manifest job has its files and log."""
    path = _analysis_path(hub, "manifest")
    desc = "Every manifest job has its output files"
    data, err = _load_json(path)
    if err:
        return _result(hub, path, desc, err)
    results = {(str(r.get("dose")), r.get("view"), r.get("split")): r for r in data.get("execution_results", [])}
    problems = []
    for job in data.get("jobs", []):
        key = (str(job.get("dose")), job.get("view"), job.get("split"))
        res = results.get(key)
        if res is None or int(res.get("returncode", 1)) != 0:
            continue  # failed jobs are reported by check 1
        rel = job.get("output_dir") or f"dose_{job.get('dose')}/{job.get('view')}/{job.get('split')}"
        out = _hub.analysis_root(hub) / rel
        if not out.is_dir():
            problems.append(f"{rel}: output folder missing")
            continue
        for name in job.get("outputs") or DEFAULT_JOB_FILES:
            f = out / name
            if not f.is_file() or f.stat().st_size == 0:
                problems.append(f"{rel}/{name}: missing or empty")
            elif f.suffix.lower() == ".png":
                e = _image_error(f)
                if e:
                    problems.append(f"{rel}/{name}: {e}")
        log = res.get("log_path")
        if log and not (_hub.analysis_root(hub) / log).is_file():
            problems.append(f"{log}: log missing")
    if problems:
        return _result(hub, path, desc, f"{len(problems)} problem(s): {'; '.join(problems[:5])}", problems=problems)
    return _result(hub, path, desc)


#: Trust checks that are caveats about the method, not faults of the files: listed in check 14's
#: ``caveats`` (and in the report's trust flags) without failing it.
CAVEAT_CHECKS = frozenset({"under_trained"})


@_check(returns="``{valid, path, description, error?}`` plus ``flags`` (``{job, arm, check, message, evidence}``)\n"
                "        ``caveats`` (lines of the under-trained flags) and ``notes`` (what could not be checked, per job).")
def check_trust(hub: Path) -> dict:
    """Check 14: no job's per-job results are flagged as untrustworthy (:mod:`ptyanalysis.phase_g.trust`).

    Flags of the checks in :data:`CAVEAT_CHECKS` (an under-trained model) are
    listed as ``caveats`` and do not fail the check: the files are right, the
    model behind them is not converged, and the report says so.
    """

    path = _hub.analysis_root(hub)
    desc = "Per-job results can be trusted (scan coverage, patch counts, zero output, placement; under-trained models as caveats)"
    try:
        jobs = R_collect.collect_jobs(hub)
    except PtyAnalysisError as exc:
        return _result(hub, path, desc, f"cannot read the jobs: {exc}")
    checked = [j for j in jobs if j.trust is not None]
    flags = [f.as_dict() for j in checked for f in j.trust.flags if f.check not in CAVEAT_CHECKS]
    caveats = [str(f) for j in checked for f in j.trust.flags if f.check in CAVEAT_CHECKS]
    notes = {j.label: list(j.trust.notes) for j in checked if j.trust.notes}
    if not checked:
        return _result(hub, path, desc, "no job with metrics to check", notes=notes)
    if flags:
        lines = [str(f) for j in checked for f in j.trust.flags if f.check not in CAVEAT_CHECKS]
        n_jobs = sum(any(f.check not in CAVEAT_CHECKS for f in j.trust.flags) for j in checked)
        return _result(hub, path, desc, f"{len(flags)} flag(s) in {n_jobs} of {len(checked)} job(s): "
                       + "; ".join(lines[:5]) + ("; ..." if len(lines) > 5 else ""), flags=flags, caveats=caveats,
                       notes=notes)
    return _result(hub, path, desc, n_jobs_checked=len(checked), caveats=caveats, notes=notes)


#: The checks, in report order.
CHECKS = (check_manifest, check_metrics_summary_json, check_metrics_summary_md, check_aggregate_highlights,
          check_metrics_digest, check_delta_summary, check_delta_highlights, check_ssim_grid,
          check_orchestrator_logs, check_inventory, check_numbers, check_figures, check_job_files, check_trust)


def verify_hub(hub, report_path=None, write: bool = True) -> VerifyResult:
    """Run every check on a hub and write the verification report.

    Parameters
    ----------
    hub : str or Path
        Study hub.
    report_path : str or Path, optional
        Report destination (default ``HUB/analysis/verification_report.json``).
    write : bool
        Write the report (atomically).

    Returns
    -------
    VerifyResult

    Raises
    ------
    PtyAnalysisError
        If the hub does not exist, is a file, or has no ``analysis/`` folder (nothing is written then).
    """
    hub = Path(hub).resolve()
    _hub.check_hub_folder(hub)
    if not _hub.analysis_root(hub).is_dir():
        raise PtyAnalysisError(f"{hub} is not a study hub with results: it has no analysis/ folder. Run the study "
                               f"grid (`ptyanalysis grid`) or `ptyanalysis phase-g {hub}` first; nothing was written")
    validations = []
    for check in CHECKS:
        try:
            validations.append(check(hub))
        except Exception as exc:  # a check must never crash the report
            validations.append(_result(hub, _hub.analysis_root(hub), check.__doc__.splitlines()[0],
                                       f"check crashed: {type(exc).__name__}: {exc}"))
    n_valid = sum(v["valid"] for v in validations)
    res = VerifyResult(all_valid=n_valid == len(validations), n_checks=len(validations), n_valid=n_valid,
                       n_invalid=len(validations) - n_valid, validations=tuple(validations))
    if write:
        out = Path(report_path) if report_path else _hub.analysis_root(hub) / REPORT_NAME
        write_json(out, res.as_dict())
        res = VerifyResult(**{**res.__dict__, "report_path": out})
    return res

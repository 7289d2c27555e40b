"""The Phase G report in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The report is built from the synthetic per-job files of ``data/phase_g_fixture.py`` (no training) plus a
bisection record, an all-zero Baseline and a failed job, executed through the report notebook and rendered
as the package renders it. Asserts: no console errors, no failed requests, every image decoded, the summary
visible in the first screen, every section present. Saves ``build/report_first_screen.png``.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("Summary", "Best arm per dose", "Dose trend", "Deltas", "Missing, failed or all-zero results",
            "The incident and its diagnosis", "Provenance", "MS-SSIM grid", "SSIM grid", "Metrics against dose",
            "Reconstructions and FRC per job", "Study text artifacts")

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def _add_provenance(hub: Path):
    """What the comparison job records: comparison.nc with per-arm status/details, and a bisection record."""
    import xarray as xr

    for nc in sorted(hub.glob("analysis/dose_*/*/*/comparison.nc")):
        zero = nc.parent.match("*/dose_1000/dense/test")
        details = {"PtychoPINN": {"status": "ok"},
                   "Baseline": ({"status": "zero", "output_stats": {"nonzero": 0, "size": 2629632}} if zero
                                else {"status": "ok"}),
                   "PtyChi": {"status": "ok", "algorithm": "rPIE (ptyanalysis reference, minibatch, fixed probe; "
                                                           "pty-chi not used)"}}
        ds = xr.Dataset({"status": (("arm",), np.array([details[a]["status"] for a in F.ARMS]))},
                        coords={"arm": list(F.ARMS)},
                        attrs={"arm_details": json.dumps(details),
                               "parameters": json.dumps({"csv_convention": "ptychopinn", "border": 2}),
                               "software_versions": json.dumps({"ptyanalysis": "test"}), "created": "2026-01-01T00:00:00Z"})
        nc.unlink()
        ds.to_netcdf(nc, engine="h5netcdf")
    # a Baseline whose loss was still falling when its (recorded) budget ran out, as `ptyanalysis train` writes it
    for d in (1000, 10000):
        base = hub / "data" / "phase_e" / f"dose_{d}" / "baseline" / "gs1"
        base.mkdir(parents=True)
        (base / "params.json").write_text(json.dumps({"arm": "Baseline", "training": {
            "loss": [0.9, 0.6, 0.48, 0.43, 0.37], "epochs": 5, "steps": 160, "elapsed_s": 28.0, "batch_size": 32}}))
    diag = hub / "analysis" / "diagnosis" / "02_zero_prediction_bisection"
    diag.mkdir(parents=True)
    (diag / "bisection.json").write_text(json.dumps({
        "reproduced": True, "criterion": {"name": "all-zero"},
        "health": {"failing": 0.0, "passing": 0.91, "reference": 0.93},
        "causes": [{"kind": "input", "name": "input_positions", "restores": 0.98, "evidence": {}}],
        "verdict": {"kind": "input", "name": "input_positions", "summary": "the positions input alone explains it"},
        "fix": "feed zeros as local offsets, as in training"}))
    (diag.parent / "02_zero_prediction_bisection.ipynb").write_text("{}")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    from ptyanalysis.phase_g import html, report
    from ptyanalysis.pipeline import notebook as nbk

    hub = F.make_hub(tmp_path_factory.mktemp("browser") / "hub", doses=(1000, 10000), views=("dense",),
                     splits=("train", "test"), empty_arms={(1000, "dense", "test"): ("Baseline",)},
                     failed=[(10000, "dense", "train")])
    _add_provenance(hub)
    report.phase_g(hub, html=False)
    out = hub / "analysis" / "phase_g_report.ipynb"
    nbk.execute(ROOT / "ptyanalysis" / "templates" / "03_phase_g_figures.py", out,
                {"hub": str(hub), "write_artifacts": False})
    return html.render_html(out, hub / "analysis" / "phase_g_report.html")


@pytest.mark.slow  # report_html executes the figures notebook
def test_report_html_is_self_contained(report_html):
    text = report_html.read_text(encoding="utf-8")
    assert "<script src=" not in text and "require.js" not in text and "mathjax" not in text.lower()
    assert "hl-ipython3" not in text and "import json" not in text  # no code
    for word in ("rPIE", "pty-chi", "ptychopinn convention", "zero (all 2,629,632 outputs are 0)", "bisection",
                 "input_positions", "98%"):
        assert word in text, word


@pytest.mark.slow  # the figures notebook, then chromium
def test_report_in_chromium(report_html):
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; make test does "
                    "through tools/ensure_chromium.sh)")
    console, failed = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(report_html.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            box = page.evaluate("(() => { const r = document.getElementById('summary').getBoundingClientRect();"
                                " return [r.top, r.bottom, window.innerHeight]; })()")
            headings = page.evaluate("Array.from(document.querySelectorAll('h1,h2,h3')).map(h => h.textContent)")
            first_li = page.evaluate("document.querySelector('#summary li').getBoundingClientRect().bottom")
            budget = page.evaluate("(() => { const li = Array.from(document.querySelectorAll('#summary li'))"
                                   ".find(l => l.textContent.startsWith('Under-trained'));"
                                   " return li ? [li.textContent, li.getBoundingClientRect().top] : null; })()")
            table_head = page.evaluate("Array.from(document.querySelectorAll('th')).map(h => h.textContent)")
            page_text = page.evaluate("document.body.textContent")
            out = ROOT / "build"
            out.mkdir(exist_ok=True)
            page.screenshot(path=str(out / "report_first_screen.png"))
        finally:
            browser.close()
    assert console == [], console
    assert failed == [], failed
    assert len(images) >= 6 and all(ok and w > 0 for ok, w in images), images
    top, _bottom, height = box
    assert 0 <= top < height and first_li < height  # the summary starts in the first screen
    # the training budget decides the ranking here: said on the first screen, with the budget and what to do
    assert budget is not None, "no under-trained line in the summary"
    text, line_top = budget
    assert line_top < height, "the under-trained line is below the first screen"
    assert "Baseline in 3 of 3 jobs (trained 160 optimiser steps (5 epochs, 28 s); loss still fell" in text and "--steps" in text
    assert "0.17 s per step" in text  # 28 s / 160 steps, from the recorded budget
    assert "trained 160 optimiser steps (5 epochs, 28 s) per model" in page_text  # and in the provenance
    # units on the numbers: dose in photons, MS-SSIM named, MAE deltas in rad for phase
    assert "dose (photons per pattern)" in table_head and "best on phase (MS-SSIM)" in table_head
    assert " rad (" in page_text and "@ 1,000 photons" in page_text
    for s in SECTIONS:
        assert any(h.strip().startswith(s) for h in headings), (s, headings)


def test_make_test_installs_the_browser_this_test_drives():
    """make test (which .ci/run calls) installs chromium first, or stops at once saying how."""
    make = (ROOT / "Makefile").read_text()
    test_recipe = make.split("\ntest: venv\n", 1)[1].split("\n\n", 1)[0]
    assert test_recipe.lstrip().startswith("@tools/ensure_chromium.sh")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    text = (ROOT / "tools" / "ensure_chromium.sh").read_text()
    assert "apt-get install -y" in text and str(CHROMIUM) in text and shutil.which("bash")

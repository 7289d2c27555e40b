"""Phase G artifacts, formats, missing arms/jobs, the xarray results and the figures."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import ptyanalysis.phase_g.collect as R_collect
import ptyanalysis.phase_g.figures as R_figures
import ptyanalysis.phase_g.inventory as R_inventory
import ptyanalysis.phase_g.report as R_report
import ptyanalysis.phase_g.results as R_results
import ptyanalysis.phase_g.summary as R_summary
from ptyanalysis.errors import PtyAnalysisError

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

SMALL = dict(doses=(1000, 10000), views=("dense",), splits=("train", "test"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small hub (one Baseline job empty, PtyChi under its old label) after phase_g."""
    hub = F.make_hub(tmp_path_factory.mktemp("rep") / "hub", **SMALL,
                     empty_arms={(1000, "dense", "test"): ("Baseline",)},
                     labels={"PtyChi": "Pty-chi (pty-chi)"})
    res = R_report.phase_g(hub, html=False)
    return hub, res


def _expected_mean(arm, metric, comp, jobs):
    vals = []
    for d, v, s in jobs:
        rows = {r[1]: r for r in F.metric_rows(arm, d, v, s)}
        vals.append(float(rows[metric][2 if comp == "amplitude" else 3]))
    return sum(vals) / len(vals)


def test_all_artifacts_written(built):
    hub, res = built
    a = hub / "analysis"
    for name in ("metrics_summary.json", "metrics_summary.md", "metrics_delta_summary.json", "metrics_delta_highlights.txt",
                 "metrics_delta_highlights_preview.txt", "ssim_grid_summary.md", "aggregate_report.md",
                 "aggregate_highlights.txt", "metrics_digest.md", "artifact_inventory.txt", "phase_g_metrics.nc"):
        assert (a / name).is_file() and (a / name).stat().st_size > 0, name


def test_summary_aggregates_and_missing(built):
    hub, res = built
    s = json.loads((hub / "analysis" / "metrics_summary.json").read_text())
    assert (s["n_jobs"], s["n_success"], s["n_failed"]) == (4, 4, 0)
    assert set(s["aggregate_metrics"]) == {"PtychoPINN", "Baseline", "PtyChi"}  # alias mapped, nothing dropped
    jobs = [(d, v, sp) for d in SMALL["doses"] for v in SMALL["views"] for sp in SMALL["splits"]]
    pinn = s["aggregate_metrics"]["PtychoPINN"]["ms_ssim"]
    assert pinn["mean_amplitude"] == pytest.approx(_expected_mean("PtychoPINN", "ms_ssim", "amplitude", jobs), abs=1e-9)
    assert pinn["n_jobs"] == 4 and pinn["missing_jobs"] == []
    base = s["aggregate_metrics"]["Baseline"]["ms_ssim"]
    assert base["n_jobs"] == 3 and base["missing_jobs"] == ["dose_1000/dense/test"]
    ok = [j for j in jobs if j != (1000, "dense", "test")]
    assert base["mean_phase"] == pytest.approx(_expected_mean("Baseline", "ms_ssim", "phase", ok), abs=1e-9)
    assert any("Baseline ms_ssim missing" in m for m in s["missing"])
    # per-job rows: empty cells are null, scalar metrics have "value"
    job = next(j for j in s["jobs"] if (j["dose"], j["view"], j["split"]) == (1000, "dense", "test"))
    row = next(m for m in job["metrics"] if m["model"] == "Baseline" and m["metric"] == "ms_ssim")
    assert row == {"model": "Baseline", "metric": "ms_ssim", "amplitude": None, "phase": None}
    t = next(m for m in job["metrics"] if m["model"] == "PtyChi" and m["metric"] == "computation_time_s")
    assert t == {"model": "PtyChi", "metric": "computation_time_s", "value": 41.0}
    md = (hub / "analysis" / "metrics_summary.md").read_text()
    assert md.startswith("# Phase G Metrics Summary\n") and "## Missing Results" in md and "N/A" in md


def test_deltas_and_highlight_formats(built):
    hub, res = built
    a = hub / "analysis"
    s = json.loads((a / "metrics_summary.json").read_text())
    d = json.loads((a / "metrics_delta_summary.json").read_text())
    assert d["generated_at"].endswith("Z") and d["source_metrics"] == "analysis/metrics_summary.json"
    agg = s["aggregate_metrics"]
    want = agg["PtychoPINN"]["ms_ssim"]["mean_phase"] - agg["Baseline"]["ms_ssim"]["mean_phase"]
    assert d["deltas"]["vs_Baseline"]["ms_ssim"]["phase"] == pytest.approx(want, abs=1e-12)
    hl = (a / "metrics_delta_highlights.txt").read_text().splitlines()
    assert len(hl) == 4
    v = d["deltas"]
    assert hl[0] == (f"MS-SSIM Δ (PtychoPINN - Baseline)  : amplitude {v['vs_Baseline']['ms_ssim']['amplitude']:+.3f}"
                     f"  phase {v['vs_Baseline']['ms_ssim']['phase']:+.3f}")
    assert hl[3].startswith("MAE Δ (PtychoPINN - PtyChi)        : amplitude ")
    assert hl[3].endswith(f"phase {v['vs_PtyChi']['mae']['phase']:+.6f}")
    pv = (a / "metrics_delta_highlights_preview.txt").read_text()
    assert "amplitude" not in pv.lower()
    assert pv.splitlines()[0] == f"MS-SSIM Δ (PtychoPINN - Baseline): {v['vs_Baseline']['ms_ssim']['phase']:+.3f}"
    grid = (a / "ssim_grid_summary.md").read_text()
    assert grid.startswith("# SSIM Grid Summary (Phase-Only)\n") and "amplitude" not in grid.lower()
    assert f"| vs_PtyChi   | {v['vs_PtyChi']['mae']['phase']:+.6f} |" in grid
    dig = (a / "metrics_digest.md").read_text()
    for h in ("# Phase G Dense Metrics Digest", "## Pipeline Summary", "## Highlights"):
        assert h in dig.splitlines()


def test_format_delta():
    assert R_summary.format_delta(0.0, 3) == "+0.000"
    assert R_summary.format_delta(-0.0001, 3) == "+0.000"
    assert R_summary.format_delta(-0.0151, 3) == "-0.015"
    assert R_summary.format_delta(0.01, 6) == "+0.010000"
    assert R_summary.format_delta(None, 3) == "N/A"
    assert R_summary.format_delta(float("nan"), 3) == "N/A"


def test_missing_arm_everywhere_gives_na(tmp_path):
    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",),
                     empty_arms={(1000, "dense", "test"): ("Baseline",)})
    res = R_report.phase_g(hub, html=False, figures=False)
    agg = res.summary["aggregate_metrics"]["Baseline"]["ms_ssim"]
    assert agg["mean_amplitude"] is None and agg["n_jobs"] == 0
    assert res.deltas["deltas"]["vs_Baseline"]["ms_ssim"] == {"amplitude": None, "phase": None}
    a = hub / "analysis"
    assert (a / "metrics_delta_highlights.txt").read_text().splitlines()[0] == \
        "MS-SSIM Δ (PtychoPINN - Baseline)  : amplitude N/A  phase N/A"
    assert "| vs_Baseline | N/A |" in (a / "ssim_grid_summary.md").read_text()
    assert json.loads((a / "metrics_delta_summary.json").read_text())["deltas"]["vs_Baseline"]["mae"]["phase"] is None
    assert "| Baseline | N/A | N/A | MISSING |" in (a / "aggregate_report.md").read_text()


def test_failed_job_listed_not_dropped(tmp_path):
    hub = F.make_hub(tmp_path / "hub", **SMALL, failed=[(10000, "dense", "test")])
    res = R_report.phase_g(hub, html=False, figures=False)
    s = res.summary
    assert (s["n_jobs"], s["n_success"], s["n_failed"]) == (4, 3, 1)
    failed = [j for j in s["jobs"] if j["status"] == "failed"]
    assert len(failed) == 1 and "DeadKernelError" in failed[0]["error"]
    for arm in ("PtychoPINN", "Baseline", "PtyChi"):
        assert s["aggregate_metrics"][arm]["ms_ssim"]["missing_jobs"] == ["dose_10000/dense/test"]
    assert any("job failed" in m for m in res.missing)
    assert "FAILURES PRESENT" in (hub / "analysis" / "metrics_digest.md").read_text()
    assert res.dataset["job_status"].sel(dose=10000, view="dense", split="test").item() == "failed"


def test_unknown_arm_label_is_an_error(tmp_path):
    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",), labels={"PtyChi": "ePIE"})
    with pytest.raises(PtyAnalysisError, match=r"comparison_metrics.csv: row \d+: unknown arm name 'ePIE'"):
        R_report.phase_g(hub, html=False, figures=False)


def test_bad_csv_columns_and_cells(tmp_path):
    p = tmp_path / "comparison_metrics.csv"
    p.write_text("model,metric,amplitude\nPtychoPINN,mae,0.1\n")
    with pytest.raises(PtyAnalysisError, match="missing column"):
        R_collect.read_comparison_metrics(p)
    p.write_text("model,metric,amplitude,phase,value\nPtychoPINN,mae,abc,0.1,\n")
    with pytest.raises(PtyAnalysisError, match="row 2, column 'amplitude'"):
        R_collect.read_comparison_metrics(p)


def test_bad_job_files_are_errors_not_tracebacks(tmp_path):
    p = tmp_path / "comparison_metrics.csv"
    p.write_bytes(b"model,metric,amplitude,phase,value\n\xff,mae,1,2,\n")
    with pytest.raises(PtyAnalysisError, match="not a readable UTF-8 CSV"):
        R_collect.read_comparison_metrics(p)
    bad = tmp_path / "reconstructions.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PtyAnalysisError, match=r"reconstructions.npz: not a readable \.npz"):
        R_collect.read_reconstructions(bad)
    ok = tmp_path / "ok.npz"
    np.savez(ok, PtychoPINN=np.ones((4, 4), complex), meta=np.array([{"a": 1}], dtype=object))
    assert set(R_collect.read_reconstructions(ok)[0]) == {"PtychoPINN"}  # an object array is skipped, not fatal
    hub = tmp_path / "hub"
    (hub / "analysis" / "dose_inf" / "dense" / "test").mkdir(parents=True)  # not a dose folder: ignored
    (hub / "analysis" / "comparison_manifest.json").write_text('{"jobs": [{"dose": 1000}]}')
    with pytest.raises(PtyAnalysisError, match="comparison_manifest.json: malformed manifest"):
        R_collect.collect_jobs(hub)


def test_no_jobs_is_an_error(tmp_path):
    (tmp_path / "analysis").mkdir()
    with pytest.raises(PtyAnalysisError, match="no comparison job found"):
        R_report.phase_g(tmp_path, html=False)


def test_dataset_dims_attrs_and_netcdf(built):
    hub, res = built
    import xarray as xr

    ds = res.dataset
    assert ds["value"].dims == ("arm", "dose", "view", "split", "metric", "component")
    assert list(ds["arm"].values) == ["PtychoPINN", "Baseline", "PtyChi"]
    v = ds["value"].sel(arm="PtyChi", dose=1000, view="dense", split="train", metric="ms_ssim", component="phase").item()
    rows = {r[1]: r for r in F.metric_rows("PtyChi", 1000, "dense", "train")}
    assert v == pytest.approx(float(rows["ms_ssim"][3]))
    assert np.isnan(ds["value"].sel(arm="Baseline", dose=1000, view="dense", split="test", metric="ms_ssim",
                                    component="amplitude").item())
    with xr.open_dataset(hub / "analysis" / "phase_g_metrics.nc", engine="h5netcdf") as back:
        assert json.loads(back.attrs["software_versions"])["numpy"] == np.__version__
        assert json.loads(back.attrs["parameters"])["hub"] == str(hub.resolve())
        assert back["value"].shape == ds["value"].shape
        assert back["units"].sel(metric="frc50", component="amplitude").item() == "ring index"
        assert back["units"].sel(metric="computation_time_s", component="value").item() == "s"
    loaded = R_results.load_results(hub)
    assert float(loaded["value"].sel(arm="PtyChi", dose=1000, view="dense", split="train", metric="ms_ssim",
                                     component="phase")) == pytest.approx(v)


def test_figures_written_and_valid(built):
    from PIL import Image

    hub, res = built
    names = {p.name for p in res.figures}
    assert {"ms_ssim_grid.png", "ssim_grid.png", "metrics_vs_dose.png",
            "reconstructions_dose_1000_dense_test.png", "frc_dose_10000_dense_train.png"} <= names
    for p in res.figures:
        with Image.open(p) as im:
            im.verify()


def test_plot_functions_return_figures(built, tmp_path):
    from matplotlib.figure import Figure

    hub, res = built
    job = hub / "analysis" / "dose_1000" / "dense" / "test"
    fig = R_figures.plot_metric_grid(res.dataset, "ms_ssim")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "missing" in texts  # the empty Baseline cell
    assert any(t.count(".") == 1 and len(t) == 5 for t in texts)  # numbers printed on the cells
    assert isinstance(R_figures.plot_reconstructions(job), Figure)
    fig = R_figures.plot_frc_curves(job)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "1/2-bit threshold" in labels and "1/7 threshold" in labels  # the issue-10 thresholds
    assert "cycles/pixel" in fig.axes[0].get_xlabel()
    assert fig.axes[0].get_legend() is None and fig.legends  # the legend is outside the data
    # Nyquist marked; the ptychopinn convention's rings beyond it (to the corners) shaded and labelled
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("0.5 cycles/pixel: Nyquist") for t in legend)
    spans = [p for p in fig.axes[0].patches if p.get_label().startswith("beyond Nyquist")]
    assert len(spans) == 1 and spans[0].get_x() == pytest.approx(0.5)
    assert fig.axes[0].get_xlim()[1] > 0.69  # sqrt(2)/2: the corners
    assert "as PtychoPINN defines them" in fig._suptitle.get_text()
    assert isinstance(R_figures.plot_metrics_vs_dose(res.dataset), Figure)
    with pytest.raises(PtyAnalysisError, match="not in the dataset"):
        R_figures.plot_metric_grid(res.dataset, "nonsense")


def test_reconstructions_missing_arm_panel(tmp_path):
    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",),
                     absent_arms={(1000, "dense", "test"): ("Baseline",)})
    fig = R_figures.plot_reconstructions(hub / "analysis" / "dose_1000" / "dense" / "test")
    assert "missing" in [t.get_text() for ax in fig.axes for t in ax.texts]


def test_inventory_lists_every_file_itself_included(built):
    hub, _ = built
    inv = (hub / "analysis" / "artifact_inventory.txt").read_text().splitlines()
    assert inv == sorted(inv)
    assert "analysis/artifact_inventory.txt" in inv
    assert set(inv) == set(R_inventory.list_hub_files(hub))
    assert all(not p.startswith("/") for p in inv)


def test_phase_c_compliance(built):
    hub, res = built
    comp = res.summary["phase_c_metadata_compliance"]
    assert comp["dose_1000"]["train"]["compliant"] is True
    assert comp["dose_1000"]["train"]["npz_path"] == "data/phase_c/dose_1000/patched_train.npz"


@pytest.mark.slow
def test_html_report_from_notebook(tmp_path):
    """Execute a thin Phase G notebook with papermill and render one self-contained HTML file."""
    import nbformat

    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("hub = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from ptyanalysis import phase_g as report\nds = report.load_results(hub)\n"
                                          "report.plot_metric_grid(ds, 'ms_ssim')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "03_phase_g_figures.ipynb"
    nbformat.write(nb, path)
    res = R_report.phase_g(hub, notebook=path, figures=False)
    html = res.files["html"].read_text()
    assert "<html" in html and "data:image/png;base64" in html
    inv = (hub / "analysis" / "artifact_inventory.txt").read_text().splitlines()
    assert "analysis/phase_g_report.html" in inv


def test_cli_phase_g(tmp_path, capsys):
    from ptyanalysis.cli import main

    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",))
    assert main(["phase-g", str(hub), "--no-html", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "MS-SSIM Δ (PtychoPINN - Baseline)" in out
    assert main(["phase-g", str(tmp_path / "nope")]) == 2

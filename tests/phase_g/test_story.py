"""The report's summary (phase_g.story): best arms, trends, deltas with their sign, problems, provenance."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ptyanalysis.phase_g import report, story

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


@pytest.fixture(scope="module")
def told(tmp_path_factory):
    hub = F.make_hub(tmp_path_factory.mktemp("story") / "hub", doses=(1000, 10000), views=("dense",),
                     splits=("train", "test"), empty_arms={(1000, "dense", "test"): ("Baseline",)},
                     failed=[(10000, "dense", "train")])
    report.phase_g(hub, html=False, figures=False)
    return hub, story.build_story(hub)


def test_best_arm_per_job_follows_the_numbers(told):
    _hub, s = told
    ok = [b for b in s.data["best"] if b["status"] == "success"]
    assert len(ok) == 3 and len(s.data["best"]) == 4
    for b in ok:
        for comp in ("phase", "amplitude"):
            vals = {a: v for a, v in b[comp]["values"].items() if v is not None}
            assert b[comp]["best"] == max(vals, key=vals.get)
            assert b[comp]["value"] == pytest.approx(max(vals.values()))
    # the fixture's iterative arm is the best one everywhere
    assert "Best on phase (MS-SSIM): PtyChi in 3 of 3 jobs." in s.markdown


def test_trend_and_delta_signs(told):
    _hub, s = told
    assert s.data["trends"]["PtychoPINN"]["phase"]["trend"] == "improves"
    d = s.data["deltas"]["vs_PtyChi"]["ms_ssim"]["phase"]
    assert d < 0 and "PtyChi better" in s.markdown and "positive = PtychoPINN better" in s.markdown
    assert "negative = PtychoPINN better (lower error)" in s.markdown


def test_problems_listed_with_reasons(told):
    _hub, s = told
    texts = [p["text"] for p in s.data["problems"]]
    assert any("DeadKernelError" in t for t in texts)
    assert any(p["arm"] == "Baseline" and p["job"] == "dose_1000/dense/test" for p in s.data["problems"])


def test_convention_and_provenance_named(told):
    _hub, s = told
    assert "ptychopinn convention" in s.markdown
    assert "PtyChi arm: algorithm not recorded" in s.markdown  # the fixture has no algorithm field: said so
    assert s.data["incident"] is None and "incident" not in s.html.lower()


def test_incident_from_bisection_record(told, tmp_path):
    hub, _ = told
    d = hub / "analysis" / "diagnosis" / "02_zero_prediction_bisection"
    d.mkdir(parents=True, exist_ok=True)
    (d / "bisection.json").write_text(json.dumps({
        "reproduced": True, "verdict": {"kind": "input", "name": "input_positions", "summary": "positions"},
        "fix": "feed zeros", "causes": [{"kind": "input", "name": "input_positions", "restores": 0.97}],
        "health": {"failing": 0.0, "passing": 0.9, "reference": 0.92}}))
    try:
        s = story.build_story(hub)
        assert s.data["incident"]["restores"] == pytest.approx(0.97)
        assert "fix restores 97%" in s.markdown and "Fix: feed zeros" in s.markdown
        assert 'id="incident"' in s.html
    finally:
        (d / "bisection.json").unlink()


def test_iterative_provenance_text():
    t = story.iterative_provenance(["rPIE (ptyanalysis reference, minibatch, fixed probe; pty-chi not used)"])
    assert t.startswith("PtyChi arm: rPIE reference; pty-chi not used")
    assert story.arm_label("PtyChi", "rPIE (x)") == "PtyChi (rPIE)"


def _record_zero_baseline(job_dir, size=2629632):
    """comparison.nc as the comparison job writes it for an all-zero Baseline."""
    import numpy as np
    import xarray as xr

    details = {"PtychoPINN": {"status": "ok"}, "Baseline": {"status": "zero", "output_stats": {"nonzero": 0, "size": size}},
               "PtyChi": {"status": "ok", "algorithm": "rPIE (ptyanalysis reference; pty-chi not used)"}}
    nc = job_dir / "comparison.nc"
    nc.unlink()
    xr.Dataset({"status": (("arm",), np.array([details[a]["status"] for a in F.ARMS]))}, coords={"arm": list(F.ARMS)},
               attrs={"arm_details": json.dumps(details), "parameters": json.dumps({"csv_convention": "ptychopinn"})}
               ).to_netcdf(nc, engine="h5netcdf")


def test_all_zero_arm_is_zero_never_missing(tmp_path):
    from ptyanalysis.phase_g import collect, figures, summary

    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",),
                     empty_arms={(1000, "dense", "test"): ("Baseline",)})
    _record_zero_baseline(hub / "analysis" / "dose_1000" / "dense" / "test")
    jobs = collect.collect_jobs(hub)
    s = summary.summarize_jobs(jobs, hub)
    zero_lines = [m for m in s["missing"] if "Baseline" in m]
    assert zero_lines and all("zero (all 2,629,632 outputs are 0)" in m and "missing" not in m for m in zero_lines)
    st = story.build_story(hub, jobs=jobs)
    assert "zero (all 2,629,632 outputs are 0)" in st.html and "Baseline: missing" not in st.markdown
    assert "PtyChi (rPIE)" in st.markdown  # the arm named with what ran
    res = report.phase_g(hub, html=False, figures=False)
    fig = figures.plot_metric_grid(res.dataset, "ms_ssim", statuses=figures.cell_statuses(hub, jobs))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("zero") and "2,629,632" in t for t in texts) and "missing" not in texts
    fig = figures.plot_reconstructions(hub / "analysis" / "dose_1000" / "dense" / "test")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("2,629,632" in t for t in texts)


def test_a_missing_job_is_left_out_of_trends_and_deltas_and_said(told):
    """dose_10000/dense/train failed: the trend uses only the cells at every dose and names the one left out;
    the deltas say over how many jobs they are."""
    _hub, s = told
    t = s.data["trends"]["PtychoPINN"]["phase"]
    assert t["n_cells"] == 1 and t["left_out"] == ["dense/train"]
    assert "left out, not at every dose: dense/train" in s.markdown and "one cell: no spread measured" in s.markdown
    pd_ = s.data["paired_deltas"]["vs_Baseline"]["ms_ssim"]["phase"]
    # the 10000/dense/train job failed; the Baseline is empty at 1000/dense/test: 2 of the 3 jobs have both arms
    assert (pd_["n_jobs"], pd_["n_total"]) == (2, 3) and "2 of 3 jobs; 1 without both arms left out" in s.markdown
    assert "How: means over the view/split cells present at every dose" in s.markdown


def test_a_trend_label_needs_a_change_beyond_the_spread():
    import numpy as np
    import xarray as xr

    def ds_of(values):  # values[dose][cell]
        v = np.asarray(values, float).reshape(len(values), 2, 2)[None, :, :, :, None, None]
        return xr.Dataset({"value": (("arm", "dose", "view", "split", "metric", "component"),
                                     np.repeat(v, 2, axis=-1))},
                          coords={"arm": ["PtychoPINN"], "dose": [1000, 10000], "view": ["dense", "sparse"],
                                  "split": ["train", "test"], "metric": ["ms_ssim"],
                                  "component": ["phase", "amplitude"]})

    clear = story.dose_trends(ds_of([[0.5, 0.6, 0.55, 0.52], [0.6, 0.7, 0.66, 0.61]]))["PtychoPINN"]["phase"]
    assert clear["trend"] == "improves" and clear["steps"][0]["counts"]
    noisy = story.dose_trends(ds_of([[0.5, 0.6, 0.55, 0.52], [0.62, 0.5, 0.66, 0.45]]))["PtychoPINN"]["phase"]
    assert noisy["trend"] == "within spread" and not noisy["steps"][0]["counts"]


def test_ssim_and_ms_ssim_disagreeing_is_said(told):
    from ptyanalysis.phase_g.results import load_results

    hub, s = told
    assert not any(h.startswith("SSIM and MS-SSIM disagree") for h in story.headline(s.data))
    ds = load_results(hub).load()
    ds["value"].loc[dict(arm="Baseline", dose=1000, view="dense", split="train", metric="ssim",
                         component="phase")] = 1.0
    s2 = story.build_story(hub, ds=ds)
    line = next(h for h in story.headline(s2.data) if h.startswith("SSIM and MS-SSIM disagree on the best phase"))
    assert "in 1 of 3 jobs" in line and "SSIM Baseline" in line


def test_a_clamped_ms_ssim_is_called_a_floor_on_the_first_screen(tmp_path):
    import xarray as xr

    from ptyanalysis.imaging import metrics

    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",))
    # what compare records when the study's MS-SSIM clamps: an anti-correlated phase scores a floor
    g = np.random.default_rng(0).random((64, 64))
    scored = metrics.score(np.exp(1j * (1 - g)), np.exp(1j * g), convention="ptychopinn")
    neg = scored["ms_ssim_clamped"]["phase"]
    assert neg and all(v < 0 for v in neg) and "amplitude" not in scored["ms_ssim_clamped"]
    nc = hub / "analysis" / "dose_1000" / "dense" / "test" / "comparison.nc"
    ds = xr.load_dataset(nc, engine="h5netcdf")
    ds.attrs["arm_details"] = json.dumps({"PtychoPINN": {"status": "ok", "ms_ssim_clamped": {
        "phase": {"convention": "ptychopinn", "levels": len(neg), "ssim": neg}}}})
    ds.attrs["parameters"] = json.dumps({"csv_convention": "ptychopinn"})
    ds.to_netcdf(nc, engine="h5netcdf")
    s = story.build_story(hub)
    assert s.data["ms_ssim_clamped"] == {"PtychoPINN": {"phase": {"jobs": ["dose_1000/dense/test"],
                                                                  "example_ssim": min(neg)}}}
    line = next(h for h in story.headline(s.data) if h.startswith("MS-SSIM floors"))
    assert "PtychoPINN phase in 1 job(s)" in line and "floors, not measurements" in line


def test_verdicts_are_said_in_plain_words():
    assert story.verdict_words({"kind": "input", "name": "input+input_positions"}) == \
        "inputs 'input' and 'input_positions' together"
    assert story.verdict_words({"kind": "input", "name": "diffraction"}) == "input 'diffraction'"
    assert story.verdict_words({"kind": "runtime", "name": "batch_size"}) == "runtime factor (batch_size)"
    assert story.verdict_words({"kind": "unknown", "name": None}) == "no cause found"
    assert story.verdict_words({"kind": "pairing", "name": "pulse_energy"}) == \
        "inputs misaligned with each other (pulse_energy)"
    assert story.verdict_words({"kind": "criterion", "name": "zero-fraction>=0.5"}).startswith("a criterion that")

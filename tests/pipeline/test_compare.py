"""The comparison job on the ci study: the study's per-job files, both conventions, the incident."""

import csv
import json

import numpy as np
import pytest
import xarray as xr

from ptyanalysis.cli import main
from ptyanalysis.pipeline import compare as compare

pytestmark = pytest.mark.neutral  # make test runs it again under JAX without TensorFlow

DOSE = 1e3


@pytest.fixture(scope="module")
def job(ci_hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    ds = compare.compare_job(ci_hub, DOSE, "dense", "test", compare.CompareConfig(), out_dir=out)
    return ds, out


def test_per_job_files_in_the_studys_format(job):
    ds, out = job
    for name in ("comparison_metrics.csv", "reconstructions.npz", "reconstructions_aligned.npz",
                 "comparison_plot.png", "comparison.nc"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "comparison_metrics.csv").open()))
    assert list(rows[0]) == ["model", "metric", "amplitude", "phase", "value"]
    models = {r["model"] for r in rows}
    assert models == {"PtychoPINN", "Baseline", "PtyChi"}
    for r in rows:
        if r["metric"] in compare.PAIR_METRICS:
            assert r["value"] == "" and len(r["amplitude"].split(".")[-1]) == 6
        else:
            assert r["amplitude"] == r["phase"] == ""
    frc = list(csv.DictReader((out / "PtyChi_frc_curves.csv").open()))
    assert list(frc[0]) == ["model", "frequency_bin", "amplitude_frc", "phase_frc"]
    with np.load(out / "reconstructions.npz") as z:  # the study's names, our extras under ptyanalysis__
        assert {"ground_truth_complex", "ptyanalysis__coverage", "ptychopinn_complex", "baseline_amplitude",
                "ptychi_phase"} <= set(z.files)
        assert z["ptychi_complex"].shape == z["ground_truth_complex"].shape


def test_dataset_holds_both_conventions_and_provenance(job):
    ds, out = job
    back = xr.open_dataset(out / "comparison.nc", engine="h5netcdf")
    assert set(back["convention"].values) == {"ptychopinn", "ptyanalysis"}
    assert list(back["arm"].values) == ["PtychoPINN", "Baseline", "PtyChi"]
    assert "tensorflow" in back.attrs["software_versions"] and "baseline_positions" in back.attrs["parameters"]
    assert list(back["status"].values) == ["ok", "ok", "ok"]
    # units per value: FRC50 is a ring index in PtychoPINN's convention and a frequency in ours
    assert back["units"].sel(convention="ptychopinn", metric="frc50", component="phase").item() == "ring index"
    assert back["units"].sel(convention="ptyanalysis", metric="frc50", component="phase").item() == "cycles/pixel"
    assert back["units"].sel(convention="ptyanalysis", metric="mae", component="phase").item() == "rad"
    assert back["elapsed_s"].attrs["units"] == "s" and back["registration_offset"].attrs["units"] == "pixels"
    # the iterative arm reconstructs the object well; metrics are finite for every arm
    ms = back["metrics"].sel(convention="ptyanalysis", metric="ms_ssim")
    assert float(ms.sel(arm="PtyChi", component="phase")) > 0.5
    assert np.all(np.isfinite(back["metrics"].sel(metric=["mae", "ssim"]).values))
    # registration offsets of a well-placed reconstruction are small
    assert np.all(np.abs(back["registration_offset"].sel(arm="PtyChi").values) < 2)
    # each network arm records the batch and chunk it was run with, and why (sized by memory by default)
    details = json.loads(back.attrs["arm_details"])
    for arm, gridsize in (("PtychoPINN", 2), ("Baseline", 1)):  # on this machine's CPU
        b = details[arm]["batching"]
        want = compare.arm_batching(gridsize, details[arm]["sidecar"]["N"], compare.CompareConfig())
        assert b["batch_size"] == details[arm]["runtime"]["batch_size"] == want["batch_size"]
        assert (b["chunk"], b["source"]) == (want["chunk"], want["source"]) and "CPU" in b["source"]


def test_the_study_feeding_gives_an_empty_baseline_not_a_dropped_one(ci_hub, tmp_path):
    cfg = compare.CompareConfig(baseline_positions="study", arms=("Baseline", "PtyChi"))
    ds = compare.compare_job(ci_hub, DOSE, "dense", "test", cfg, out_dir=tmp_path)
    assert ds["status"].sel(arm="Baseline").item() == "zero"
    assert np.all(np.isnan(ds["metrics"].sel(arm="Baseline").values))
    rows = [r for r in csv.DictReader((tmp_path / "comparison_metrics.csv").open()) if r["model"] == "Baseline"]
    assert rows and all(r["amplitude"] == r["phase"] == "" for r in rows if r["metric"] in compare.PAIR_METRICS)


def test_covered_box_is_inside_the_mask():
    rng = np.random.default_rng(0)
    m = np.ones((60, 80), bool)
    m[rng.integers(0, 60, 30), rng.integers(0, 80, 30)] = False  # isolated holes get closed
    m[:, 50:53] = False  # a real gap splits the region
    box = compare.covered_box(m)
    assert box is not None
    sub = m[box]
    assert sub.shape[1] <= 50 and sub.mean() > 0.97
    assert compare.covered_box(np.zeros((20, 20), bool)) is None


def test_cli_errors_name_the_file(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nohub"), "--dose", "1000", "--view", "dense", "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "patched_test.npz" in err
    assert main(["train", str(tmp_path / "nohub")]) == 2
    assert "simulate" in capsys.readouterr().err


def test_a_mistyped_view_or_split_gets_a_did_you_mean(ci_hub, capsys):
    assert main(["compare", str(ci_hub), "--dose", "1000", "--view", "dnese", "--split", "tset"]) == 2
    err = capsys.readouterr().err
    assert "view 'dnese'" in err and "did you mean 'dense'?" in err and "did you mean 'test'?" in err


def _toy_split(n=60, N=16, seed=0):
    from ptyanalysis.io import PtychoData

    rng = np.random.default_rng(seed)
    pos = rng.integers(N, 6 * N, (n, 2)).astype(float)
    d = (rng.random((n, N, N)) * rng.uniform(0.5, 2.0, (n, 1, 1))).astype(np.float32)
    return PtychoData(diffraction=d, xcoords=pos[:, 1], ycoords=pos[:, 0], probe=np.ones((N, N)))


@pytest.mark.parametrize("sidecar", [{"gridsize": 2, "intensity_scale": 0.7}, {"gridsize": 1, "intensity_scale": 0.7}])
def test_chunked_network_inputs_equal_the_whole_splits(sidecar):
    """Normalisation and grouping belong to the whole split, whatever CompareConfig.chunk is: the chunks
    compare builds are the rows of feeds.split_inputs on the whole split."""
    from ptyanalysis.inference import feeds

    data = _toy_split()
    cfg = compare.CompareConfig(chunk=7)
    plan = compare.network_plan(data, sidecar, cfg)
    parts = [compare.network_inputs(data, sidecar, cfg, index=slice(s, s + 7), plan=plan)
             for s in range(0, plan.n_outputs, 7)]
    whole, centres, _ = feeds.split_inputs(data, sidecar, plan.mode, gridsize=sidecar["gridsize"], seed=cfg.seed)
    assert len(parts) > 2
    for key in ("input", "input_positions"):
        np.testing.assert_array_equal(np.concatenate([p[0][key] for p in parts]), whole[key])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), centres)


@pytest.mark.parametrize("sidecar,channels,cfg,mode", [
    ({"gridsize": 2, "intensity_scale": 0.7}, 4, {}, "trained"),
    ({"intensity_scale": 0.7}, 4, {}, "trained"),  # no gridsize in the parameters: the input's 4 channels say 2
    ({"intensity_scale": 0.7}, 1, {}, "trained"),  # ... and 1 channel says 1, whatever the arm is called
    ({"gridsize": 1, "intensity_scale": 0.7}, 1, {"baseline_positions": "study"}, "study"),
    ({"gridsize": 2, "intensity_scale": 3.1, "input_scale": 1.0, "backend": "pytorch"}, 4, {}, "trained"),
    ({"gridsize": 2, "intensity_scale": 3.1, "input_scale": 1.0, "backend": "pytorch"}, 4,
     {"feed": "torch_cli"}, "torch_cli")])
def test_compare_feeds_a_split_as_the_diagnosis_does(sidecar, channels, cfg, mode):
    """One feed: compare's inputs are exactly what the diagnosis commands (bisect, compare-splits) feed the
    same model in the same mode (diagnosis.inputs.feed_split), same gridsize rule, same groups."""
    from types import SimpleNamespace

    from ptyanalysis.diagnosis.inputs import feed_split

    data = _toy_split()
    shapes = [(None, 16, 16, channels), (None, 1, 2, channels)]
    loaded = SimpleNamespace(sidecar=sidecar, input_shapes=shapes, input_names=["input", "input_positions"],
                             source="toy")
    cfg = compare.CompareConfig(**cfg)
    got, _ = compare.network_inputs(data, sidecar, cfg, input_shapes=shapes)
    assert compare.network_plan(data, sidecar, cfg, input_shapes=shapes).mode == mode
    want = feed_split(loaded, data, mode, seed=cfg.seed)
    assert got["input"].shape[-1] == channels
    for key in ("input", "input_positions"):
        np.testing.assert_array_equal(got[key], want[key])


def test_iterative_arm_file_checks(tmp_path):
    f = tmp_path / "ptychi_reconstruction.npz"
    obj = np.ones((10, 10), np.complex64)
    # the study's own files have no coverage: covered wherever they have pixels, whatever the probe's scale
    np.savez(f, reconstructed_object=obj, reconstructed_probe=100 * np.ones((4, 4), np.complex64))
    r = compare.load_iterative_arm(f, ((0, 0), (20, 20)))
    assert r.status == "ok" and (r.coverage > 0).sum() == 100
    np.savez(f, reconstructed_object=obj, origin=np.array([2.0, 3.0]), coverage=np.ones((9, 10), np.float32))
    with pytest.raises(compare.PtyAnalysisError, match="coverage"):
        compare.load_iterative_arm(f, ((0, 0), (20, 20)))
    np.savez(f, reconstructed_object=obj, origin=np.array([2.5, 3.0]))
    with pytest.raises(compare.PtyAnalysisError, match="origin"):
        compare.load_iterative_arm(f, ((0, 0), (20, 20)))


def test_network_arm_with_non_finite_outputs_is_nonfinite_not_zero(tmp_path, keras):
    """NaN is never "nonzero": an all-NaN arm must not be labelled "zero" (non-finite is checked first)."""
    import json

    from ptyanalysis.conventions import arm_status_text

    @keras.saving.register_keras_serializable(package="ptyanalysis_tests_compare")
    class Fill(keras.layers.Layer):
        """Each output pixel is ``value`` where the input is > ``above``, else 0 (value may be NaN / Inf)."""

        def __init__(self, value=0.0, above=-1.0, **kw):
            super().__init__(**kw)
            self.value, self.above = float(value), float(above)

        def get_config(self):
            return {**super().get_config(), "value": self.value, "above": self.above}

        def call(self, x):
            return keras.ops.where(x > self.above, keras.ops.full_like(x, self.value), keras.ops.zeros_like(x))

    data = _toy_split(n=40)
    N = data.N
    frame = ((0, 0), (7 * N, 7 * N))
    cfg = compare.CompareConfig(baseline_positions="trained")
    results = {}
    for name, value, above in (("nan", float("nan"), -1.0), ("zero", 0.0, -1.0), ("some_inf", float("inf"), 0.4)):
        d = tmp_path / name
        d.mkdir()
        img = keras.Input((N, N, 1), name="input")
        pos = keras.Input((1, 2, 1), name="input_positions")
        keras.Model([img, pos], Fill(value, above, name="fill")(img)).save(d / "model.keras")
        (d / "params.json").write_text(json.dumps({"gridsize": 1, "intensity_scale": 1.0, "N": N}))
        results[name] = compare.run_network_arm("Baseline", d, data, frame, cfg)
    size = 40 * N * N
    nan = results["nan"]
    assert nan.status == "nonfinite"
    assert nan.detail["output_stats"] == {"nonzero": 0, "size": size, "nan": size, "inf": 0}
    assert arm_status_text(nan.status, nan.detail) == f"nonfinite ({size:,} of {size:,} outputs are NaN or Inf: " \
                                                      f"{size:,} NaN, 0 Inf)"
    assert results["zero"].status == "zero"
    some = results["some_inf"]  # a few Inf among finite values: still not usable as an image
    assert some.status == "nonfinite" and 0 < some.detail["output_stats"]["inf"] < size


def test_an_output_far_flatter_than_the_truth_is_flagged():
    """A real 5-epoch PtychoPINN gs1 bundle: amplitude spread 0.005 where the true object's is 0.6."""
    stats = [{"object": {"sample_spread": 0.004, "mean": 0.4, "shape": [300, 64, 64, 1]}},
             {"object": {"sample_spread": 0.005, "mean": 0.4, "shape": [267, 64, 64, 1]}}]
    flat = compare._flat_output(stats, 0.6)
    assert flat["sample_spread"] == 0.005 and "120x less from sample to sample than the true object's" in flat["text"]
    assert compare._flat_output(stats, 0.05) is None and compare._flat_output(stats, None) is None
    data = _toy_split()
    assert compare._truth_amplitude_spread(data) is None  # no ground truth: not judged


def test_network_arm_records_its_placement_audit_and_a_contradicted_one_is_flagged(tmp_path, keras):
    """A model that returns its input, fed object patches: as extracted they fit the stitching's placement;
    transposed they do not, and the job's trust check says so from comparison.nc."""
    import xarray as xr

    from ptyanalysis.conventions import patch_slices
    from ptyanalysis.fileutil import write_netcdf
    from ptyanalysis.io import PtychoData
    from ptyanalysis.phase_g.trust import check_reconstructions, misplaced_arms

    N, step = 16, 3  # the stitched 8 x 8 centres of neighbours overlap by 62 %
    rng = np.random.default_rng(0)
    k = np.fft.fftfreq(96)
    sigma = 2.0  # a gaussian-filtered noise object
    obj = np.fft.ifft2(np.fft.fft2(rng.standard_normal((96, 96)))
                       * np.exp(-2 * (np.pi * sigma) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))).real
    obj = 1.0 + 0.5 * obj / np.abs(obj).max()
    g = 20 + step * np.arange(14)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(float)
    patches = np.stack([obj[patch_slices(p, N)] for p in pos]).astype(np.float32)
    d = tmp_path / "model"
    d.mkdir()
    img = keras.Input((N, N, 1), name="input")
    keras.Model([img, keras.Input((1, 2, 1), name="input_positions")],
                keras.layers.Activation("linear", name="same")(img)).save(d / "model.keras")
    (d / "params.json").write_text(json.dumps({"gridsize": 1, "intensity_scale": 1.0, "N": N}))
    frame = ((0, 0), obj.shape)
    audits = {}
    for name, P in (("as extracted", patches), ("transposed", np.swapaxes(patches, 1, 2))):
        data = PtychoData(diffraction=P, xcoords=pos[:, 1], ycoords=pos[:, 0], probe=np.ones((N, N)))
        r = compare.run_network_arm("Baseline", d, data, frame, compare.CompareConfig())
        assert r.status == "ok" and r.detail["placement"].startswith("per output")
        audits[name] = r.detail["placement_audit"]
    ok, bad = audits["as extracted"], audits["transposed"]
    assert ok["status"] == "supported" and ok["best"] == ok["used"] == "as used" and ok["patch_size"] == N // 2
    assert ok["n_pairs"] > 100 and ok["margin"] > 0.2
    assert bad["status"] == "contradicted" and "patch transposed" in bad["best_class"] and bad["margin_used"] > 0.2
    # the report's trust check reads it back from comparison.nc: a placement flag on that arm only
    write_netcdf(tmp_path / "comparison.nc", xr.Dataset(attrs={"arm_details": json.dumps(
        {"Baseline": {"status": "ok", "placement_audit": bad}, "PtychoPINN": {"status": "ok", "placement_audit": ok}})}))
    assert list(misplaced_arms(tmp_path)) == ["Baseline"]
    flags = [f for f in check_reconstructions(tmp_path).flags if f.check == "placement"]
    assert [(f.arm, f.evidence["best"]) for f in flags] == [("Baseline", bad["best"])]
    assert "[comparison.nc]" in flags[0].message

"""A comparison job whose arms are PtychoPINN PyTorch bundles (the layout of docs/formats.md#pytorch-bundles)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from ptyanalysis.pipeline import compare

pytestmark = [pytest.mark.neutral]

STANDIN = Path(__file__).resolve().parents[1] / "support" / "ptychopinn_torch"
DOSE = 1e3


@pytest.fixture(scope="module")
def torch_hub(ci_hub, torch, tmp_path_factory):
    """The ci study with its dose-1000 Baseline and dense PINN replaced by PyTorch bundles (gs1, gs2)."""
    sys.path.insert(0, str(STANDIN))
    import make_bundle

    root = tmp_path_factory.mktemp("torch_hub")
    (root / "study.json").symlink_to(ci_hub / "study.json")
    (root / "data").mkdir()
    for d in ("phase_c", "phase_f"):
        (root / "data" / d).symlink_to(ci_hub / "data" / d)
    N = json.loads((ci_hub / "study.json").read_text())["config"]["size"]["N"]
    base = root / "data" / "phase_e" / "dose_1000"
    for arm, g, flat in (("baseline", 1, True), ("dense", 2, False), ("sparse", 2, False)):
        (base / arm / f"gs{g}").mkdir(parents=True)
        make_bundle.write_torch_bundle(base / arm / f"gs{g}" / "wts.h5.zip", gridsize=g, N=N, seed=g,
                                       flat_amplitude=flat)
    yield root
    sys.path.remove(str(STANDIN))


def test_compare_job_runs_pytorch_bundle_arms(torch_hub, tmp_path):
    ds = compare.compare_job(torch_hub, DOSE, "dense", "test", compare.CompareConfig(), out_dir=tmp_path)
    details = json.loads(ds.attrs["arm_details"])
    pinn, base = details["PtychoPINN"], details["Baseline"]
    for d in (pinn, base):
        assert d["status"] == "ok" and d["model_kind"] == "ptychopinn_torch_bundle"
        assert d["sidecar"]["backend"] == "pytorch" and d["sidecar"]["input_scale"] == 1.0
    # no in-model merge: each group member's patch is placed at its own scan position
    assert pinn["placement"].startswith("per member") and pinn["n_patches"] == pinn["n_offsets"] == 4 * pinn["n_outputs"]
    # the placement audit compared member patches; the stand-ins' untrained outputs show no placement fault
    assert pinn["placement_audit"]["n_pairs"] > 0 and pinn["placement_audit"]["status"] != "contradicted"
    assert base["placement"].startswith("per output") and base["n_patches"] == base["n_offsets"]
    # the stand-in Baseline's amplitude ignores its input: flagged, still scored
    assert base["collapsed"] and "does not depend on the input" in base["collapsed"]["text"]
    assert pinn["collapsed"] is None
    assert np.isfinite(ds["metrics"].sel(convention="ptychopinn", arm=["PtychoPINN", "Baseline"], metric="mae")).all()
    assert (tmp_path / "comparison_metrics.csv").is_file()
    # the report's trust check reads the collapse back from comparison.nc: an under-trained Baseline
    from ptyanalysis.phase_g.trust import collapsed_arms, training_trust

    assert list(collapsed_arms(tmp_path)) == ["Baseline"]
    flags = training_trust(torch_hub, DOSE, "dense", tmp_path)[0]
    assert [(f.arm, f.check) for f in flags] == [("Baseline", "under_trained")]
    from ptyanalysis.phase_g.trust import check_reconstructions

    # one patch per member channel is not the compare_models fault the patch-count check looks for
    assert not [f for f in check_reconstructions(tmp_path).flags if f.check == "patch_count"]


def test_compare_job_feeds_pytorch_bundles_as_ptychopinns_inference_cli(torch_hub, tmp_path):
    ds = compare.compare_job(torch_hub, DOSE, "dense", "test", compare.CompareConfig(feed="torch_cli"),
                             out_dir=tmp_path)
    from ptyanalysis import hub as _hub

    pinn = json.loads(ds.attrs["arm_details"])["PtychoPINN"]
    n = _hub.load_view(torch_hub, DOSE, "dense", "test").n
    assert pinn["status"] == "ok" and pinn["feed"] == "torch_cli"
    # one output per pattern (not per group), its four channels all at that pattern's position
    assert pinn["n_outputs"] == n and pinn["n_patches"] == pinn["n_offsets"] == 4 * n
    assert pinn["placement"].startswith("per member")
    with pytest.raises(Exception, match="feed must be"):
        compare.CompareConfig(feed="study")


def test_compare_job_can_stitch_as_run_cdi_example_torch(torch_hub, tmp_path):
    ds = compare.compare_job(torch_hub, DOSE, "dense", "test", compare.CompareConfig(placement="channel_mean"),
                             out_dir=tmp_path)
    pinn = json.loads(ds.attrs["arm_details"])["PtychoPINN"]
    assert pinn["placement"].startswith("channel mean at the group centre") and pinn["n_patches"] == pinn["n_offsets"]


def test_the_cli_picks_pytorch_for_a_hub_of_pytorch_bundles(torch_hub, tmp_path):
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")])}
    env.pop("KERAS_BACKEND", None)
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "compare", str(torch_hub), "--dose", "1000",
                        "--view", "dense", "--split", "test", "--out", str(tmp_path / "job")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Keras backend torch (automatic: " in r.stderr and "PyTorch bundle" in r.stderr


def test_the_placement_sample_reads_device_patches_as_host_ones(torch):
    """Outputs left on the stitching device (a GPU; here PyTorch on the CPU) give the audit the same patches."""
    from ptyanalysis.imaging.stitching import ArrayBackend

    rng = np.random.default_rng(0)
    n, C, N = 30, 4, 16
    pos = rng.uniform(20, 40, (n, 2))
    members = np.stack([np.arange(n)] + [rng.integers(0, n, n) for _ in range(C - 1)], 1)
    outs = (rng.standard_normal((n, N, N, C)) + 1j * rng.standard_normal((n, N, N, C))).astype(np.complex64)
    got = []
    for be, wrap in (("numpy", lambda x: x), (ArrayBackend("torch", "cpu"), torch.from_numpy)):
        sample = compare._PlacementSample(pos[members], N, N // 2)
        for s in range(0, n, 7):  # batches, one patch per member channel
            for c in range(C):
                sample.take(wrap(outs[s:s + 7, ..., c]), pos[members[s:s + 7, c]], s, be, None, channel=c,
                            channels=C)
        assert np.isfinite(sample.positions).all()
        got.append((sample.patches.copy(), sample.result()))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1] and got[0][1]["n_pairs"] > 0

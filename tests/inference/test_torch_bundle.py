"""PtychoPINN PyTorch bundles: recognised, rebuilt strictly, fed as trained, run without TensorFlow, diagnosed.

The bundles have the real layout (docs/formats.md#pytorch-bundles); their model is the
stand-in in tests/support/ptychopinn_torch (PtychoPINN cannot be downloaded at test
time). The real PtychoPINN bundles were checked by hand (docs/formats.md#checked-against-ptychopinn).
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptyanalysis.errors import PtyAnalysisError

pytestmark = [pytest.mark.neutral]

STANDIN = Path(__file__).resolve().parents[1] / "support" / "ptychopinn_torch"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standin(torch):
    sys.path.insert(0, str(STANDIN))
    try:
        import make_bundle

        yield make_bundle
    finally:
        sys.path.remove(str(STANDIN))
        for name in [m for m in sys.modules if m == "ptycho_torch" or m.startswith("ptycho_torch.")]:
            del sys.modules[name]


def test_format_is_recognised_without_a_framework(standin, tmp_path):
    from ptyanalysis.inference import bundle_params
    from ptyanalysis.inference.torch_bundle import bundle_format, find_torch_bundles, is_torch_bundle

    (tmp_path / "m").mkdir()
    b = standin.write_torch_bundle(tmp_path / "m" / "wts.h5.zip", gridsize=1, N=16)
    fmt = bundle_format(b)
    assert fmt.backend == "pytorch" and fmt.version == "2.0-pytorch" and fmt.has_metadata
    assert "torch_scaling_metadata.pt" in fmt.evidence
    assert is_torch_bundle(tmp_path / "m") and find_torch_bundles([tmp_path]) == [b]
    p = bundle_params(b)  # read without dill when it is not installed, and said so
    assert p["bundle_backend"] == "pytorch" and p["intensity_scale"] == 3.125 and p["backend"] == "pytorch"
    tf_like = tmp_path / "tf.zip"
    with zipfile.ZipFile(tf_like, "w") as zf:
        zf.writestr("diffraction_to_obj/model.keras", b"")
    assert bundle_format(tf_like).backend == "tensorflow" and not is_torch_bundle(tf_like)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_loaded_model_runs_as_ptychopinn_calls_forward_predict(standin, tmp_path, gridsize, torch):
    from ptyanalysis.inference import load_model, predict

    N, C = 16, gridsize * gridsize
    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=gridsize, N=N, seed=3)
    m = load_model(b)
    assert m.kind == "ptychopinn_torch_bundle" and m.backend == "torch"
    assert m.input_names == ["input", "input_positions"] and m.output_names == ["object"]
    side = m.sidecar
    assert side["gridsize"] == gridsize and side["N"] == N and side["input_scale"] == 1.0
    assert side["intensity_scale"] == 3.125 and side["bundle_version"] == "2.0-pytorch"
    rng = np.random.default_rng(0)
    x = rng.random((5, N, N, C)).astype(np.float32)
    pos = rng.normal(size=(5, 1, 2, C)).astype(np.float32)
    (out,) = predict(m, [x, pos])
    assert out.shape == (5, N, N, C) and out.dtype == np.complex64
    # the same as PtychoPINN's own call: channel-first, input_scale_factor 1
    net = m.model.net
    with torch.no_grad():
        want = net.forward_predict(torch.from_numpy(x).permute(0, 3, 1, 2), torch.zeros(5, C, 1, 2),
                                   torch.ones(N, N, dtype=torch.complex64), torch.ones(5, 1, 1, 1))
    np.testing.assert_allclose(out, want.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-7)


def test_trained_feed_is_the_normalised_patterns_with_scale_one(standin, tmp_path):
    from ptyanalysis.inference import feeds, load_model
    from ptyanalysis.io import PtychoData

    m = load_model(standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=1, N=16))
    rng = np.random.default_rng(1)
    d = rng.random((20, 16, 16)).astype(np.float32)
    data = PtychoData(diffraction=d, xcoords=rng.random(20) * 50, ycoords=rng.random(20) * 50, probe=np.ones((16, 16)))
    inputs, _, _ = feeds.split_inputs(data, m.sidecar, "trained")
    np.testing.assert_allclose(inputs["input"][..., 0], feeds.normalise_diffraction(d), rtol=1e-6)
    assert feeds.trained_input_scale(m.sidecar) == 1.0
    assert feeds.trained_input_scale({"intensity_scale": 3.0}) == 3.0  # a TensorFlow model's


def test_bad_bundles_get_clear_errors(standin, tmp_path):
    from ptyanalysis.inference import load_model

    old = standin.write_torch_bundle(tmp_path / "old.zip", N=16, metadata=False)
    with pytest.raises(PtyAnalysisError, match="torch_scaling_metadata.pt.*Re-save"):
        load_model(old)
    broken = standin.write_torch_bundle(tmp_path / "broken.zip", N=16, break_weights=True)
    with pytest.raises(PtyAnalysisError, match="(?s)strict loading.*not loaded non-strictly"):
        load_model(broken)


def test_without_ptychopinn_the_error_names_what_is_missing_and_the_version(standin, tmp_path):
    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", N=16)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", "from ptyanalysis.cli import main; import sys; "
                        f"sys.exit(main(['bisect', '--model', {str(b)!r}, '--failing', 'x', '--passing', 'x', "
                        f"'--out', {str(tmp_path / 'o')!r}]))"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "ptycho_torch" in r.stderr and "2.0-pytorch" in r.stderr and "Traceback" not in r.stderr


def test_loading_and_running_imports_no_tensorflow(standin, tmp_path):
    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=2, N=16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), str(REPO)])}
    env.pop("KERAS_BACKEND", None)
    code = ("import sys, numpy as np\n"
            "from ptyanalysis.inference.backends import select_keras_backend\n"
            "from ptyanalysis.inference.torch_bundle import find_torch_bundles\n"
            f"c = select_keras_backend(None, torch_models=find_torch_bundles([{str(tmp_path)!r}]))\n"
            "from ptyanalysis.inference import load_model, predict\n"
            f"m = load_model({str(b)!r})\n"
            "predict(m, [np.ones((2, 16, 16, 4), 'f4'), np.zeros((2, 1, 2, 4), 'f4')])\n"
            "print(c.name, 'tensorflow' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["torch", "False"]


def _sets(rng, N, n=40):
    d = rng.random((n, N, N, 1)).astype(np.float32) * rng.uniform(0.2, 3.0, (n, 1, 1, 1)).astype(np.float32)
    return {"input": d, "input_positions": np.zeros((n, 1, 2, 1), np.float32)}


def test_a_flat_amplitude_is_named_collapsed_not_missed(standin, tmp_path):
    from ptyanalysis.diagnosis.bisection import bisect
    from ptyanalysis.diagnosis.health import outputs_stats, parse_criterion
    from ptyanalysis.inference import load_model, predict

    flat = load_model(standin.write_torch_bundle(tmp_path / "flat.zip", N=16, flat_amplitude=True))
    fine = load_model(standin.write_torch_bundle(tmp_path / "fine.zip", N=16))
    rng = np.random.default_rng(2)
    F, P = _sets(rng, 16), _sets(rng, 16)
    st_flat = outputs_stats(predict(flat, [F["input"], F["input_positions"]]))[0]
    st_fine = outputs_stats(predict(fine, [F["input"], F["input_positions"]]))[0]
    assert st_flat.collapsed_components() == ["amplitude"] and st_flat.sample_spread < 1e-6  # round-off of |polar(a, phi)|
    assert st_fine.collapsed_components() == [] and st_fine.sample_spread > 1e-3
    crit = parse_criterion("collapsed")
    assert crit.fails([np.zeros((3, 2), np.complex64) + np.array([1, 2j])]) and not crit.fails(
        [np.random.default_rng(0).random((3, 4))])
    res = bisect(flat, F, P, max_evaluations=20)
    assert res.verdict["kind"] == "collapsed" and res.verdict["name"] == "object amplitude"
    assert "does not depend on the input" in res.verdict["summary"]
    assert res.health["collapsed"]["failing"][0]["component"] == "amplitude"
    assert res.layers["status"] == "done"  # the forward-hook probe ran on the PyTorch module
    ok = bisect(fine, F, P, max_evaluations=20)
    assert ok.verdict["kind"] == "none" and not ok.health["collapsed"]["failing"]


def test_inputs_the_model_ignores_are_named_not_swapped(standin, tmp_path):
    """PtychoPINN's forward_predict ignores positions and probe: the diagnosis says so instead of swapping them."""
    from ptyanalysis.diagnosis.bisection import bisect
    from ptyanalysis.diagnosis.usage import input_usage
    from ptyanalysis.inference import load_model, predict

    rng = np.random.default_rng(4)
    F, P = _sets(rng, 16), _sets(rng, 16)
    for use_positions, unused in ((False, {"input_positions", "probe"}), (True, {"probe"})):
        m = load_model(standin.write_torch_bundle(tmp_path / f"u{use_positions}.zip", N=16,
                                                  use_positions=use_positions))
        usage = input_usage(lambda xs, m=m: predict(m, xs), F, m.input_names, model=m.model)
        assert {u.name for u in usage if u.used is False} == unused
        assert {u.name for u in usage if u.used} == {"input", "input_positions"} - unused
    res = bisect(load_model(tmp_path / "uFalse.zip"), F, P, criterion="collapsed:0.5",
                 max_evaluations=40)
    assert {u["name"] for u in res.to_dict()["input_usage"] if u["used"] is False} == {"input_positions", "probe"}
    assert not any(e.name.endswith(":input_positions") and e.stage == "input" for e in res.experiments)
    assert "does not use input_positions, probe at all" in res.verdict["summary"]


def test_compare_splits_flags_a_collapsed_output_and_an_unused_input(standin, tmp_path):
    from ptyanalysis.diagnosis.splits import compare_splits
    from ptyanalysis.inference import load_model

    m = load_model(standin.write_torch_bundle(tmp_path / "flat.zip", N=16, flat_amplitude=True))
    rng = np.random.default_rng(5)
    a, b = _sets(rng, 16), _sets(rng, 16)
    b["input_positions"] = b["input_positions"] + 40.0  # absolute positions, as the study fed: drifted, unused
    res = compare_splits(m, a, b)
    d = res.to_dict()
    assert [c["component"] for c in d["output_health"]["test"]["collapsed"]] == ["amplitude"]
    assert any("object amplitude is the same for every sample" in f for f in res.flags)
    assert any(f.startswith("input 'input_positions' drifted") and f.endswith("the model does not use it")
               for f in res.flags)
    assert {u["name"] for u in d["input_usage"] if u["used"] is False} == {"input_positions", "probe"}


def _split(rng, N, n=30):
    from ptyanalysis.io import PtychoData

    d = (rng.random((n, N, N)) * rng.uniform(0.5, 2.0, (n, 1, 1))).astype(np.float32)
    return PtychoData(diffraction=d, xcoords=rng.random(n) * 40 + 20, ycoords=rng.random(n) * 40 + 20,
                      probe=np.ones((N, N), np.complex64))


def test_the_torch_cli_feed_copies_each_pattern_into_every_channel(standin, tmp_path):
    from ptyanalysis.inference import feeds, load_model

    m = load_model(standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=2, N=16))
    data = _split(np.random.default_rng(6), 16)
    inputs, centres, members = feeds.split_inputs(data, m.sidecar, "torch_cli", gridsize=2)
    x = inputs["input"]
    assert x.shape == (30, 16, 16, 4) and inputs["input_positions"].shape == (30, 1, 2, 4)
    assert not inputs["input_positions"].any()
    for c in range(4):  # one pattern in all four channels, normalised over the patterns fed
        np.testing.assert_array_equal(x[..., c], feeds.normalise_diffraction(data.diffraction))
    np.testing.assert_array_equal(centres, data.positions)
    assert (members == np.arange(30)[:, None]).all() and members.shape == (30, 4)
    part, _, _ = feeds.split_inputs(data, m.sidecar, "torch_cli", gridsize=2, members=members[5:9],
                                    mean_total=feeds.mean_total_intensity(data.diffraction))
    np.testing.assert_array_equal(part["input"], x[5:9])  # a chunk is rows of the whole
    trained, _, _ = feeds.split_inputs(data, m.sidecar, "trained", gridsize=1)
    g1, _, _ = feeds.split_inputs(data, m.sidecar, "torch_cli", gridsize=1)
    np.testing.assert_allclose(g1["input"], trained["input"], rtol=1e-6)  # gs1: the CLI feed is the trained one
    with pytest.raises(PtyAnalysisError, match="torch_cli.*backend None"):
        feeds.split_inputs(data, {"intensity_scale": 2.0}, "torch_cli")


def test_compare_splits_cli_takes_the_torch_cli_feed(standin, tmp_path):
    import json

    from ptyanalysis.io import save_dataset

    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=2, N=16)
    rng = np.random.default_rng(7)
    for name in ("a", "b"):
        save_dataset(tmp_path / f"{name}.npz", _split(rng, 16))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), str(REPO)])}
    cmd = [sys.executable, "-m", "ptyanalysis", "compare-splits", "--model", str(b), "--a", str(tmp_path / "a.npz"),
           "--b", str(tmp_path / "b.npz"), "--study-inputs", "--feed", "torch_cli", "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "'torch_cli' feed" in r.stdout
    res = json.loads((tmp_path / "out" / "split_comparison.json").read_text())
    assert {u["name"] for u in res["input_usage"] if u["used"] is False} == {"input_positions", "probe"}
    no_study = [c for c in cmd if c != "--study-inputs"]
    no_study[-1] = str(tmp_path / "o2")
    bad = subprocess.run(no_study, capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and "--feed torch_cli applies to study datasets" in bad.stderr


def test_a_set_that_cannot_be_fed_exits_2_and_writes_nothing(standin, tmp_path):
    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=1, N=16)
    rng = np.random.default_rng(8)
    good = _sets(rng, 16)
    np.savez(tmp_path / "p.npz", **good)
    np.savez(tmp_path / "f.npz", input=rng.random((40, 32, 32, 1)).astype(np.float32),
             input_positions=good["input_positions"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "bisect", "--model", str(b), "--failing",
                        str(tmp_path / "f.npz"), "--passing", str(tmp_path / "p.npz"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "failing set: input 'input' has shape (40, 32, 32, 1) but model" in r.stderr and "(any, 16, 16, 1)" in r.stderr
    assert not (tmp_path / "o").exists()


def test_nonfinite_inputs_are_named_whatever_the_criterion(standin, tmp_path):
    from ptyanalysis.io import save_dataset

    b = standin.write_torch_bundle(tmp_path / "wts.h5.zip", gridsize=1, N=16)
    rng = np.random.default_rng(9)
    save_dataset(tmp_path / "a.npz", _split(rng, 16))
    bad = _split(rng, 16)
    bad.diffraction[5] = np.nan  # one whole pattern, as a beam-off frame exported as NaN
    save_dataset(tmp_path / "b.npz", bad, validate=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", "bisect", "--model", str(b), "--failing",
                        str(tmp_path / "b.npz"), "--passing", str(tmp_path / "a.npz"), "--study-inputs",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ptyanalysis bisect: notice: " in r.stderr and "load_dataset(" not in r.stderr  # no source line echoed
    import json

    v = json.loads((tmp_path / "o" / "bisection.json").read_text())["verdict"]
    assert "holds non-finite (NaN/Inf) input values: 256 in 'input' (1 sample(s): 5)" in v["summary"]


def test_an_identical_input_set_is_run_once(standin, tmp_path):
    """PtychoPINN torch gs1: the study feed equals the trained one, so the reference is the passing set itself."""
    from ptyanalysis.diagnosis.bisection import bisect
    from ptyanalysis.inference import load_model

    m = load_model(standin.write_torch_bundle(tmp_path / "wts.h5.zip", N=16))
    rng = np.random.default_rng(10)
    F, P = _sets(rng, 16), _sets(rng, 16)
    res = bisect(m, F, P, reference={k: v.copy() for k, v in P.items()}, max_evaluations=20)
    rep = {e.name: e for e in res.experiments if e.stage == "reproduce"}
    assert "reused" in rep["passing"].details and "reused" not in rep["reference"].details
    assert rep["passing"].health == rep["reference"].health


def test_an_output_far_flatter_than_the_ground_truth_is_named():
    """A real 5-epoch PtychoPINN gs1 bundle: amplitude varied 0.5 % between samples where the truth varied 60 %."""
    from ptyanalysis.diagnosis.health import OutputHealth, collapsed_outputs, truth_sample_spread

    rng = np.random.default_rng(11)
    truth = (1 + rng.random((50, 8, 8))) * np.exp(1j * rng.random((50, 8, 8)))
    ts = truth_sample_spread(truth)
    st = OutputHealth(n_values=3200, n_samples=50, finite_fraction=1.0, nonzero_fraction=1.0, mean=0.5, std=0.3,
                      min=0.0, max=1.0, nonfinite_count=0, sample_spread=0.005, phase_spread=1.0)
    assert collapsed_outputs([st], ["object"]) == []  # not collapsed by itself
    found = collapsed_outputs([st], ["object"], truth_spread=ts)
    assert [(c["component"], c["kind"]) for c in found] == [("amplitude", "flat")]
    assert "barely depends on the input" in found[0]["text"] and "less from sample to sample than the ground truth" \
        in found[0]["text"]
    from ptyanalysis.diagnosis.bisection.stages.criterion import collapse_criterion_for as _collapse_criterion_for

    assert _collapse_criterion_for(found) == "collapsed:0.01"

"""Models whose outputs do not have one row per sample: a batch merged into one output (PtychoPINN's
``ReassemblePatchesLayer`` puts a call of >= 64 patches, batch x gridsize^2, on ONE canvas).

Inference must never pair an output with the wrong sample: it halves the batch until the rows
match, then bisects between that size and the bad one above it, so it keeps the LARGEST batch size
that gives one row per sample, records it and says so once.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.inference import RuntimeConfig, load_model, predict, run_inference

N = 8


@pytest.fixture(scope="module")
def merging_model(keras, tensorflow):
    """``merging_model(C=1, limit=64)``: builds the model below (Keras layers running TensorFlow ops: tier tf)."""
    tf = tensorflow

    @keras.saving.register_keras_serializable(package="ptyanalysis_tests")
    class MergeBigBatch(keras.layers.Layer):
        """Sums each sample's C channels into one patch; a call with batch x C >= ``limit`` patches is summed
        into ONE row (as PtychoPINN's reassembly of a big batch onto one canvas). No PtychoPINN code."""

        def __init__(self, limit=64, **kwargs):
            super().__init__(**kwargs)
            self.limit = int(limit)

        def call(self, x):
            per = tf.reduce_sum(x, axis=-1, keepdims=True)
            patches = tf.shape(x)[0] * x.shape[-1]
            return tf.cond(patches >= self.limit, lambda: tf.reduce_sum(per, axis=0, keepdims=True), lambda: per)

        def compute_output_shape(self, input_shape):
            return (None,) + tuple(input_shape[1:-1]) + (1,)

        def get_config(self):
            return {**super().get_config(), "limit": self.limit}

    def build(C=1, limit=64):
        """PINN-like inputs (``input`` (N, N, C), ``input_positions`` (1, 2, C)); output (N, N, 1) per sample
        (x summed over channels + the mean offset), merged into one row for a big call."""
        img = keras.Input((N, N, C), name="input")
        pos = keras.Input((1, 2, C), name="input_positions")
        shift = keras.ops.mean(pos, axis=(1, 2, 3), keepdims=True)
        out = MergeBigBatch(limit, name="trimmed_obj")(img + shift)
        return keras.Model([img, pos], out)

    return build



def _inputs(n, C=1, seed=0):
    rng = np.random.default_rng(seed)
    return {"input": rng.normal(size=(n, N, N, C)).astype(np.float32),
            "input_positions": rng.normal(size=(n, 1, 2, C)).astype(np.float32)}


def _expected(x):
    C = x["input"].shape[-1]
    return x["input"].sum(-1, keepdims=True) + C * x["input_positions"].mean(axis=(1, 2, 3))[:, None, None, None]


# the largest batch with batch x C < 64 patches: 63 for C=1, 15 for C=4 (PtychoPINN gridsize 2), not
# the halvings 32 and 8
@pytest.mark.parametrize("C,limit_bs,halvings,probes", [
    (1, 63, [256, 128, 64], [(48, True), (56, True), (60, True), (62, True), (63, True)]),
    (4, 15, [256, 128, 64, 32, 16], [(12, True), (14, True), (15, True)]),
])
def test_run_inference_finds_the_largest_batch_with_one_row_per_sample(C, limit_bs, halvings, probes, caplog,
                                                                       merging_model):
    model, x = merging_model(C), _inputs(300, C)
    with caplog.at_level(logging.WARNING, logger="ptyanalysis.inference"):
        res = run_inference(model, x)  # default batch 256: no option given
    out = res.outputs[0]
    assert out.shape == (300, N, N, 1)
    np.testing.assert_allclose(out, _expected(x), rtol=1e-5, atol=1e-5)  # row i is sample i's output
    assert [(e.start, e.batch_before, e.batch_after) for e in res.row_events] == \
        [(0, b, b // 2) for b in halvings]
    assert all(e.rows == (1,) and e.search == "halving" for e in res.row_events)
    # the bisection between the halving's good size and the bad one above, on the same chunk
    assert [(p["start"], p["batch"], p["one_row_per_sample"]) for p in res.runtime["batch_size_probes"]] == \
        [(0, b, ok) for b, ok in probes]
    rt = res.runtime
    assert rt["batch_size"] == 256 and rt["batch_size_limit"] == limit_bs
    assert rt["batch_size_limit_source"] == "this run"
    assert rt["batch_sizes"] == [limit_bs] + ([300 % limit_bs] if 300 % limit_bs else [])
    assert [e["batch_before"] for e in rt["row_mismatch_events"]] == halvings
    json.dumps(res.to_dict())  # the record is JSON-safe
    notices = [r for r in caplog.records if "one row per sample" in r.getMessage()]
    assert len(notices) == 1 and f"batch size {limit_bs}" in notices[0].getMessage()
    # statistics are those of the per-sample outputs
    st = res.stats["trimmed_obj"]
    assert st.shape == (300, N, N, 1) and st.mean == pytest.approx(float(np.mean(_expected(x))), abs=1e-4)
    assert [c["stop"] - c["start"] for c in st.chunks][0] == limit_bs


def test_the_limit_is_kept_for_later_runs_on_the_model_and_said_once(caplog, merging_model):
    model = merging_model(1)
    x = _inputs(100)
    first_res = run_inference(model, x)
    first = first_res.outputs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptyanalysis.inference"):
        rec = {}
        again = predict(model, x, record=rec)
        res = run_inference(model, _inputs(70, seed=1), RuntimeConfig(batch_size=64))
    np.testing.assert_allclose(first[0], again[0])
    np.testing.assert_allclose(again[0], _expected(x), rtol=1e-5, atol=1e-5)
    # 100 bad, 50 good, then bisection: 75 bad, 62 good, 68 bad, 65 bad, 63 good, 64 bad -> 63
    assert [e.batch_before for e in first_res.row_events] == [100, 75, 68, 65, 64]
    assert [e.search for e in first_res.row_events] == ["halving"] + ["bisection"] * 4
    assert [e.batch_after for e in first_res.row_events] == [50, 62, 65, 63, 63]  # the next size tried
    assert rec["batch_size_limit"] == 63 and rec["batch_size_limit_source"] == "an earlier run on this model"
    assert rec["row_mismatch_events"] == [] and rec["batch_sizes"] == [63, 37] and rec["batch_size_probes"] == []
    assert res.row_events == () and res.runtime["batch_sizes"] == [63, 7]
    assert not [r for r in caplog.records if "one row per sample" in r.getMessage()]  # said once, earlier
    # a smaller requested batch is used as asked
    small = run_inference(model, x, RuntimeConfig(batch_size=16))
    assert small.runtime["batch_sizes"] == [16, 4]


def test_an_exact_batch_size_raises_instead_of_adapting(merging_model):
    model, x = merging_model(1), _inputs(100)
    with pytest.raises(PtyAnalysisError, match=r"one row per input sample.*adapt_batch=False"):
        predict(model, x, RuntimeConfig(adapt_batch=False))
    # a batch that fits is fine, and the default adapts
    np.testing.assert_allclose(predict(model, x, RuntimeConfig(batch_size=50, adapt_batch=False))[0],
                               _expected(x), rtol=1e-5, atol=1e-5)


def test_saved_merging_model_runs_from_file_and_without_merge_is_untouched(tmp_path, merging_model):
    model = merging_model(4)
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    x = _inputs(40, 4)
    rec = {}
    out = predict(loaded, x, record=rec)[0]
    np.testing.assert_allclose(out, _expected(x), rtol=1e-5, atol=1e-5)
    # 40 -> 20 (80 patches) -> 10 good; bisection: 15 good (60 patches), 17 bad, 16 bad -> 15
    assert rec["batch_size_limit"] == 15 and rec["batch_sizes"] == [15, 10]
    plain = merging_model(4, limit=10**9)
    res = run_inference(plain, x)
    assert res.row_events == () and res.runtime["batch_size_limit"] is None and res.runtime["batch_sizes"] == [40]


def test_compare_arm_stitches_every_patch_at_its_own_position(tmp_path, merging_model):
    """The comparison job's network arm with a merging model gives the per-sample model's image."""
    from ptyanalysis.io import PtychoData
    from ptyanalysis.pipeline import compare

    rng = np.random.default_rng(3)
    n = 150
    pos = rng.uniform(N, 5 * N, (n, 2))
    data = PtychoData(diffraction=rng.random((n, N, N)).astype(np.float32), xcoords=pos[:, 1], ycoords=pos[:, 0],
                      probe=np.ones((N, N)))
    frame = ((0, 0), (7 * N, 7 * N))
    cfg = compare.CompareConfig(baseline_positions="trained")
    results = {}
    for name, limit in (("merging", 64), ("per_sample", 10**9)):
        d = tmp_path / name
        d.mkdir()
        merging_model(1, limit).save(d / "model.keras")
        (d / "params.json").write_text(json.dumps({"gridsize": 1, "intensity_scale": 2.0, "N": N}))
        results[name] = compare.run_network_arm("Baseline", d, data, frame, cfg)
    a, b = results["merging"], results["per_sample"]
    assert a.status == b.status == "ok"
    np.testing.assert_allclose(a.image, b.image, rtol=1e-5, atol=1e-5)
    assert a.detail["runtime"]["batch_size_limit"] == 63  # 150 -> 75 (still >= 64 patches) -> 37, bisected to 63
    assert b.detail["runtime"]["batch_size_limit"] is None


def test_cli_commands_take_batch_size(capsys):
    from ptyanalysis.cli import build_parser, main

    parser = build_parser()
    for cmd, extra in (("compare", ["hub", "--dose", "1", "--view", "v", "--split", "s"]),
                       ("compare-splits", ["--model", "m", "--a", "a", "--b", "b", "--out", "o"]),
                       ("bisect", ["--model", "m", "--failing", "f", "--passing", "p", "--out", "o"])):
        args = parser.parse_args([cmd, *extra, "--batch-size", "8"])
        assert args.batch_size == 8
        # compare sizes each arm's batch by memory unless one is given; the diagnosis commands default to 256
        assert parser.parse_args([cmd, *extra]).batch_size == (None if cmd == "compare" else 256)
    assert main(["compare-splits", "--model", "m", "--a", "a", "--b", "b", "--out", "o", "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive integer" in capsys.readouterr().err

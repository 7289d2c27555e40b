"""The benchmark keeps its prepared study hub between runs, and never keeps a half-prepared one."""

import json
import subprocess

import numpy as np
import pytest

from ptyanalysis import __version__, bench


def test_a_prepared_study_hub_is_reused_with_what_preparing_it_cost(tmp_path):
    hub = tmp_path / "study"
    hub.mkdir()
    (hub / "study.json").write_text("{}")
    record = {"size": "study", "doses": [1000.0, 10000.0, 100000.0], "steps": 5, "iterations": 3,
              "ptyanalysis": __version__, "simulate_s": 120.0, "train_and_iterative_s": 600.0, "prepared_s": 720.0}
    (hub / bench.STUDY_STAMP).write_text(json.dumps(record))
    got = bench.prepare_study_hub(hub, 5, say=lambda *a: None)
    assert got["reused"] and got["prepared_s"] == 720.0


def test_a_failed_preparation_leaves_no_hub_and_a_changed_request_prepares_anew(tmp_path, monkeypatch):
    hub = tmp_path / "study"
    hub.mkdir()
    (hub / "study.json").write_text("{}")
    (hub / bench.STUDY_STAMP).write_text(json.dumps({"size": "study", "doses": [1000.0], "steps": 5,
                                                     "iterations": 3, "ptyanalysis": __version__}))
    calls = []

    def fail(cmd, **kw):
        calls.append(cmd)
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "run", fail)
    with pytest.raises(subprocess.CalledProcessError):
        bench.prepare_study_hub(hub, 7, say=lambda *a: None)  # other steps than recorded: prepares anew
    assert calls and "simulate" in calls[0]
    assert json.loads((hub / bench.STUDY_STAMP).read_text())["steps"] == 5  # the earlier hub is untouched
    assert not [p for p in tmp_path.iterdir() if p.name != "study"]  # no half-prepared folder left


def test_the_default_study_hub_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.STUDY_HUB_ENV, str(tmp_path / "h"))
    assert bench.default_study_hub() == tmp_path / "h"
    monkeypatch.delenv(bench.STUDY_HUB_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert bench.default_study_hub() == tmp_path / "c" / "ptyanalysis" / "bench_study_hub"


def test_the_compute_floor_counts_every_convolution(tensorflow, keras):
    # a conv (counted by TensorFlow's profiler), a transposed conv and an einsum (counted from their shapes):
    # conv 3x3, 1 -> 4 channels, stride 2 on 16 x 16: 8*8 outputs x 4 x 9 x 1 multiply-adds;
    # transposed conv 3x3 stride 2, 4 -> 2 channels: each of the 8*8*4 input values scatters 9 x 2
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the floor traces a TensorFlow graph")
    x = keras.Input((16, 16, 1))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(x)
    y = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", use_bias=False)(y)
    mix = np.ones((2, 3), np.float32)
    y = keras.layers.Lambda(lambda t: keras.ops.einsum("bhwc,cd->bhwd", t, mix))(y)  # an einsum: 16*16*2*3
    model = keras.Model(x, y)
    want = 2 * (8 * 8 * 4 * 9 * 1) + 2 * (8 * 8 * 4 * 9 * 2) + 2 * (16 * 16 * 2 * 3)
    assert bench._graph_flops(model, [(None, 16, 16, 1)]) == pytest.approx(want, rel=0.01)
    assert bench._matmul_gflops(n=256, repeats=1) > 0

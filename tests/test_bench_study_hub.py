"""The benchmark keeps its prepared study hub between runs, and never keeps a half-prepared one."""

import json
import subprocess

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

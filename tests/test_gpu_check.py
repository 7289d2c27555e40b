"""The prepared GPU check: its stitching section on the numpy array backend, no TensorFlow, a CPU dry run."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ptyanalysis.gpu_check import check_stitching
from ptyanalysis.imaging.stitching import ArrayBackend


def test_stitching_section_agrees_on_the_numpy_array_backend():
    rows = check_stitching(ArrayBackend("numpy"), n=300, repeats=1)
    assert [r["case"].split(":")[0] for r in rows] == ["nearest"] * 3 + ["bilinear"] * 3 + ["fourier"] * 3
    diffs = {r["case"]: r["max_rel_diff"] for r in rows if "max_rel_diff" in r}
    assert len(diffs) == 6
    for case, d in diffs.items():
        assert d == 0.0 if not case.startswith("fourier") else d < 1e-5, (case, d)


def test_the_check_and_the_stitching_never_import_tensorflow():
    code = ("import sys, numpy as np; import ptyanalysis.gpu_check, ptyanalysis.bench; "
            "from ptyanalysis.imaging.stitching import stitch; "
            "stitch(np.ones((3, 8, 8), np.complex64), [[9, 9], [10.5, 11], [12, 9.25]]); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_the_keras_backend_module_it_says_what_to_install():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    res = subprocess.run([sys.executable, "-m", "ptyanalysis.gpu_check", "--keras-backend", "torch"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 1 and "install keras==3.15.1 and torch" in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_dry_run_on_the_cpu(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-m", "ptyanalysis.gpu_check", "--dry-run-cpu", "--keras-backend", backend,
                    "--n", "300", "--n-infer", "64", "--n-infer-cpu", "32", "--batch", "32", "--json", str(out)],
                   check=True, env=env)
    res = json.loads(out.read_text())
    assert res["dry_run_cpu"] and not res["failures"] and res["machine"]["tensorflow_imported"] is False
    sections = {r["section"] for r in res["rows"]}
    assert sections == {"stitching", "inference", "inference+stitching"}
    for r in res["rows"]:
        if "max_rel_diff" in r:
            assert r["max_rel_diff"] < 1e-4, r


def test_the_study_script_runs_the_four_stages_at_the_studys_budget(tmp_path):
    from ptyanalysis import gpu_study
    from ptyanalysis.pipeline import grid

    cmds = dict(gpu_study.stage_commands(tmp_path / "hub", [1000, 1e4], backend="jax"))
    assert list(cmds) == ["simulate", "train", "grid", "phase-g"]
    assert cmds["simulate"][2:] == ["--size", "study", "--doses", "1000", "10000"]
    assert cmds["train"][2:] == ["--budget", "study", "--doses", "1000", "10000", "--backend", "jax"]
    spec = grid.spec_from_dict(gpu_study.grid_spec(tmp_path / "hub", [1000]))
    assert len(grid.expand(spec)) == 4  # one dose: 2 views x 2 splits
    r = subprocess.run([sys.executable, "-m", "ptyanalysis.gpu_study", str(tmp_path / "h"), "--dry-run",
                        "--size", "ci", "--steps", "3"], capture_output=True, text=True, check=True)
    assert "train: python -m ptyanalysis train" in r.stdout and "--steps 3" in r.stdout
    assert not (tmp_path / "h").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_both_backends_in_one_run_give_their_ratio(tmp_path):
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is None:
            pytest.skip(f"{backend} is not installed")
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, "-m", "ptyanalysis.gpu_check", "--dry-run-cpu", "--keras-backend", "both",
                    "--only", "inference", "--n-infer", "64", "--n-infer-cpu", "32", "--batch", "32",
                    "--json", str(out)], check=True)
    res = json.loads(out.read_text())
    assert not res["failures"] and res["machine"]["tensorflow_imported"] is False
    runs = {(r.get("keras_backend"), r["note"] == "reference") for r in res["rows"] if r["section"] == "inference"}
    assert {("jax", False), ("jax", True), ("torch", False), ("torch", True)} <= runs
    ratio = [r for r in res["rows"] if "torch_over_jax" in r]
    assert len(ratio) == 1 and ratio[0]["torch_over_jax"] > 0

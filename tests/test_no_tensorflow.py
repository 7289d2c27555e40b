"""The same results without TensorFlow: compare and bisect under Keras-JAX with TensorFlow unimportable.

``compare`` and ``bisect --study-inputs`` run on the ci hub in fresh processes, once under TensorFlow and once
under JAX with TensorFlow blocked (``tests/support/no_tensorflow``), and must agree: metrics within 2e-3
relative, the same arm statuses and the same verdict.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: A folder whose sitecustomize makes TensorFlow unimportable (put it first on PYTHONPATH).
NO_TF = ROOT / "tests" / "support" / "no_tensorflow"


def _env(backend: str, block_tf: bool) -> dict:
    """This environment with ``KERAS_BACKEND=backend``, and TensorFlow hidden (first on PYTHONPATH) or not."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_BACKEND"] = backend
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != NO_TF]
    env["PYTHONPATH"] = os.pathsep.join(([str(NO_TF)] if block_tf else []) + path)
    return env


def _run(args, backend, block_tf, cwd):
    r = subprocess.run([sys.executable, "-m", "ptyanalysis", *args], capture_output=True, text=True,
                       env=_env(backend, block_tf), cwd=cwd, timeout=900)
    assert r.returncode == 0, f"{backend}: {r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_compare_and_bisect_without_tensorflow_agree_with_the_tensorflow_run(ci_hub, tmp_path):
    """Keras on JAX with TensorFlow unimportable gives the TensorFlow run's metrics (2e-3 relative) and verdict."""
    import xarray as xr

    from ptyanalysis import hub as hubs

    job = ["compare", str(ci_hub), "--dose", "1000", "--view", "dense", "--split", "test"]
    bis = ["bisect", "--model", str(hubs.model_dir(ci_hub, 1000, "Baseline")),
           "--failing", str(hubs.dataset_path(ci_hub, 1000, "test")),
           "--passing", str(hubs.dataset_path(ci_hub, 1000, "train")), "--study-inputs"]
    import importlib.util

    got = {}
    runs = [("tensorflow", False), ("jax", True)]
    if importlib.util.find_spec("torch") is not None:  # Keras-torch too, where PyTorch is installed
        runs.append(("torch", True))
    for backend, block in runs:
        _run(job + ["--out", str(tmp_path / f"cmp_{backend}")], backend, block, tmp_path)
        _run(bis + ["--out", str(tmp_path / f"bis_{backend}")], backend, block, tmp_path)
        ds = xr.load_dataset(tmp_path / f"cmp_{backend}" / "comparison.nc")
        details = json.loads(ds.attrs["arm_details"])
        assert details["PtychoPINN"]["runtime"]["backend"] == backend
        assert json.loads(ds.attrs["software_versions"])["keras_backend"] == backend
        got[backend] = (ds, json.loads((tmp_path / f"bis_{backend}" / "bisection.json").read_text()))
    tf_ds, tf_b = got.pop("tensorflow")
    for backend, (ds, b) in got.items():
        assert list(tf_ds["status"].values) == list(ds["status"].values), backend
        x, y = tf_ds["metrics"].values, ds["metrics"].values
        assert np.array_equal(np.isnan(x), np.isnan(y)), backend
        ok = ~np.isnan(x)
        rel = np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-6)
        assert rel.max() <= 2e-3, f"{backend}: largest relative metric difference {rel.max():.2e}"
        for key in ("kind", "name"):
            assert tf_b["verdict"][key] == b["verdict"][key], (backend, key)
        assert b["versions"]["keras_backend"] == backend
    assert tf_b["versions"]["keras_backend"] == "tensorflow"

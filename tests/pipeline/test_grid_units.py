"""The grid's pieces that need no kernel: lanes by cost, the job profile, one hub inventory, the exports."""

import json
from pathlib import Path

import numpy as np
import pytest

from ptyanalysis import hub as hubs
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.pipeline import grid as G

OK_NB = Path(__file__).parent / "notebooks" / "grid_ok.ipynb"


def cells_of(hub, doses=(1000, 10000, 100000), views=("dense", "sparse"), splits=("train", "test")):
    spec = G.spec_from_dict({"hub": str(hub), "notebook": str(OK_NB), "doses": list(doses), "views": list(views),
                             "splits": list(splits)}, source="test.yaml")
    return G.expand(spec, declared={})


def record_attempt(cell, seconds=None, status="success", n=1, **fields):
    d = cell.output_dir / "attempts" / str(n)
    d.mkdir(parents=True)
    rec = {"n": n, "status": status, **fields}
    if seconds is not None:
        rec["elapsed_s"] = seconds
    (d / "attempt.json").write_text(json.dumps(rec))


# --------------------------------------------------------------------------- lanes


def test_lanes_balance_measured_costs_longest_first(tmp_path):
    """Dense cells ~140 s, sparse ~40 s: cut by count one lane gets 640 s and the other 440 s; by cost 560 / 520."""
    cells = cells_of(tmp_path / "hub")
    for c in cells:
        record_attempt(c, 140.0 if c.view == "dense" else 40.0)
    costs = G.cell_costs(cells, tmp_path / "hub")
    assert set(costs.sources.values()) == {"measured"} and costs.unit == "s"
    where = G.assign_workers(cells, ["a", "b"], costs.costs)
    for c in cells:  # both splits of a dose x view on one worker: its kernel loads that model once
        assert where[c.label] == where[f"{c.label.rsplit('/', 1)[0]}/{'test' if c.split == 'train' else 'train'}"]
    loads = G.lane_loads(where, costs.costs)
    assert sorted(load for _, load in loads.values()) == [520.0, 560.0]
    assert sum(n for n, _ in loads.values()) == len(cells)
    by_count = G.assign_workers(cells, ["a", "b"])  # every cell costs 1: six cells each
    assert sorted(n for n, _ in G.lane_loads(by_count, {}).values()) == [6, 6]
    assert G.assign_workers(cells, []) == {}


def test_costs_from_scan_positions_calibrated_on_measured_cells(tmp_path):
    hub = tmp_path / "hub"
    cells = cells_of(hub, doses=(1000,))
    views = {"dense": {"train": list(range(400)), "test": list(range(400))},
             "sparse": {"train": list(range(100)), "test": list(range(100))}}
    hubs.views_path(hub, 1000).parent.mkdir(parents=True)
    hubs.views_path(hub, 1000).write_text(json.dumps({"views": views}))
    assert hubs.view_positions(hub, 1000, "dense", "test") == 400
    assert hubs.view_positions(hub, 1000, "other", "test") is None
    costs = G.cell_costs(cells, hub)  # nothing measured: the comparison job's work, its scan positions
    assert costs.unit == "work" and costs.costs["dose_1000/dense/test"] == 400.0
    assert costs.costs["dose_1000/sparse/test"] == 100.0
    dense_train = next(c for c in cells if (c.view, c.split) == ("dense", "train"))
    record_attempt(dense_train, 120.0)  # 0.3 s per position
    costs = G.cell_costs(cells, hub)
    assert costs.unit == "s" and costs.sources[dense_train.label] == "measured"
    assert costs.costs["dose_1000/sparse/test"] == pytest.approx(30.0)
    assert costs.sources["dose_1000/sparse/test"] == "work x measured rate"
    generic = G.cell_costs(cells, hub, G.GENERIC_JOB)  # a job the grid knows nothing about
    assert generic.costs["dose_1000/sparse/test"] == 120.0 and generic.sources["dose_1000/sparse/test"] == "default"
    assert G.cell_costs(cells_of(tmp_path / "empty"), tmp_path / "empty").unit == "cells"


def test_positions_without_views_json_and_durations_from_timestamps(tmp_path):
    hub = tmp_path / "hub"
    p = hubs.dataset_path(hub, 1000, "test")
    p.parent.mkdir(parents=True)
    np.savez(p, xcoords=np.zeros(37), ycoords=np.zeros(37))
    assert hubs.view_positions(hub, 1000, "dense", "test") == 37  # no views.json: the whole split
    assert hubs.view_positions(hub, 1000, "dense", "train") is None
    (cell,) = cells_of(hub, doses=(1000,), views=("dense",), splits=("test",))
    record_attempt(cell, status="failed", n=1, started_at="2024-01-01T00:00:00Z", finished_at="2024-01-01T00:00:03Z")
    assert G.measured_duration(cell) is None  # only successful attempts are measured
    record_attempt(cell, status="success", n=2, started_at="2024-01-01T00:01:00Z", finished_at="2024-01-01T00:02:30Z")
    assert G.measured_duration(cell) == 90.0
    record_attempt(cell, 200.0, n=3, kernel_reused=False)
    assert G.measured_duration(cell) == 200.0  # the last one
    record_attempt(cell, 60.0, n=4, kernel_reused=True)
    record_attempt(cell, 300.0, n=5, kernel_reused=False)
    assert G.measured_duration(cell) == 60.0  # on a reused kernel: without the imports every lane pays once


# --------------------------------------------------------------------------- the job profile


def test_memory_estimate_from_the_job_profile(tmp_path):
    hub = tmp_path / "hub"
    (hub / "m").mkdir(parents=True)
    (hub / "m" / "w.bin").write_bytes(b"x" * 100)
    (hub / "d.npz").write_bytes(b"x" * 10)
    job = G.JobProfile(name="toy", shared_inputs=lambda h, d, v: (Path(h) / "m",),
                       cell_inputs=lambda h, d, v, s: (Path(h) / "d.npz",), shared_memory_factor=2,
                       cell_memory_factor=5)
    assert G.files_estimate(hub, 1000, "dense", "test", job) == G.KERNEL_BASE_MEMORY + 200 + 50
    assert G.files_estimate(hub, 1000, "dense", "test", G.GENERIC_JOB) is None


def test_the_runner_holds_no_arm_names():
    src = Path(G.__file__).parent
    for f in sorted(src.glob("*.py")):
        text = f.read_text(encoding="utf-8").lower()
        for name in ("ptychopinn", "baseline", "ptychi"):
            assert name not in text, (f.name, name)


# --------------------------------------------------------------------------- one hub inventory


def _hand_made_hub(root):
    for d in (1000, 10000):
        for s in ("train", "test"):
            p = hubs.dataset_path(root, d, s)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    (root / "data" / "phase_e" / "dose_1000" / "baseline" / "gs1").mkdir(parents=True)  # the Baseline: not a view
    (root / "data" / "phase_e" / "dose_1000" / "dense" / "gs2").mkdir(parents=True)
    (root / "data" / "phase_f" / "dose_10000" / "sparse" / "test").mkdir(parents=True)  # iterative only
    return root


def _agree(hub):
    """The grid's check accepts exactly what hub.hub_grid lists."""
    have = hubs.hub_grid(hub)
    inventory = hubs.hub_inventory(hub)
    assert list(inventory) == have["doses"]
    spec = G.spec_from_dict({"hub": str(hub), "notebook": str(OK_NB), "doses": have["doses"],
                             "views": have["views"], "splits": have["splits"]}, source="agree.yaml")
    assert G.check_hub(spec) == []
    for key, extra in (("doses", 777), ("views", "not_a_view"), ("splits", "not_a_split")):
        bad = {"doses": have["doses"], "views": have["views"], "splits": have["splits"]}
        bad[key] = bad[key] + [extra]
        spec = G.spec_from_dict({"hub": str(hub), "notebook": str(OK_NB), **bad}, source="agree.yaml")
        with pytest.raises(PtyAnalysisError, match=f"key '{key}'"):
            G.check_hub(spec)
    return have


def test_grid_check_and_hub_grid_agree_on_a_hand_made_hub(tmp_path):
    hub = _hand_made_hub(tmp_path / "hub")
    have = _agree(hub)
    assert have == {"doses": [1000, 10000], "views": ["dense", "sparse"], "splits": ["test", "train"]}
    assert hubs.hub_inventory(hub) == {1000: {"views": ["dense"], "splits": ["test", "train"]},
                                       10000: {"views": ["sparse"], "splits": ["test", "train"]}}
    spec = G.spec_from_dict({"hub": str(hub), "notebook": str(OK_NB), "doses": [1000], "views": ["baseline"],
                             "splits": ["test"]}, source="agree.yaml")
    with pytest.raises(PtyAnalysisError, match="view 'baseline' is not in the hub"):
        G.check_hub(spec)
    hubs.check_in_hub(hub, 10000, "sparse", "test")  # the commands' check reads the same inventory


def test_grid_check_and_hub_grid_agree_on_the_ci_hub(ci_hub):
    have = _agree(ci_hub)
    assert {"dense", "sparse"} <= set(have["views"]) and {"train", "test"} <= set(have["splits"])


# --------------------------------------------------------------------------- exports


def test_pipeline_exports_one_validate_parameters_per_meaning():
    from ptyanalysis import pipeline
    from ptyanalysis.pipeline import notebook

    assert pipeline.validate_parameters is notebook.validate_parameters
    assert pipeline.validate_grid_parameters is G.validate_grid_parameters
    assert G.validate_parameters is G.validate_grid_parameters  # the former name, kept in the grid package
    for name in G.__all__:  # the grid's public names that the pipeline exports are the grid package's
        if name in pipeline.__all__:
            assert getattr(pipeline, name) is getattr(G, name) or name == "validate_parameters", name

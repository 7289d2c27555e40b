"""A grid kernel has the notebook's folder in its environment from its start, reused or not."""

import json
from pathlib import Path

import pytest

from ptyanalysis.pipeline import grid as G
from ptyanalysis.pipeline.notebook import NOTEBOOK_DIR_ENV

OK_NB = Path(__file__).parent / "notebooks" / "grid_ok.ipynb"


@pytest.mark.slow
def test_grid_kernels_get_the_notebook_folder_before_the_notebook_runs(tmp_path):
    s = G.spec_from_dict({"hub": str(tmp_path / "hub"), "notebook": str(OK_NB), "doses": [1000],
                          "views": ["dense"], "splits": ["train", "test"], "retries": 0,
                          "outputs": ["result.json"]}, source="test.yaml")
    res = G.run_grid(s, workers=1)  # one worker: the second cell runs on the first cell's kernel
    assert res.ok, res.table()
    pids = set()
    for r in res.results:
        got = json.loads((r.output_dir / "result.json").read_text())
        assert got["notebook_dir"] == str(r.output_dir.resolve()), NOTEBOOK_DIR_ENV
        pids.add(got["pid"])
    assert len(pids) == 1  # the kernel was reused, and the reused one got the second cell's folder

"""The grid runs a Jupytext ``.py`` source (the package's templates) as it runs an ``.ipynb``."""

from pathlib import Path

import pytest

from ptyanalysis.pipeline import grid as G

OK_NB = Path(__file__).parent / "notebooks" / "grid_ok.ipynb"


@pytest.mark.slow  # a notebook kernel per cell
def test_grid_runs_a_jupytext_source(tmp_path):
    import jupytext

    src = tmp_path / "grid_ok.py"
    jupytext.write(jupytext.read(OK_NB), src, fmt="py:percent")
    spec = G.spec_from_dict({"hub": str(tmp_path / "hub"), "notebook": str(src), "doses": [1000], "views": ["dense"],
                             "splits": ["test"], "outputs": ["result.json"], "retries": 0}, source="test.yaml")
    cell = G.expand(spec)[0]
    assert cell.output_notebook.name == "grid_ok.ipynb"
    same = G.expand(G.spec_from_dict({**{"hub": str(tmp_path / "hub"), "notebook": str(OK_NB), "doses": [1000],
                                         "views": ["dense"], "splits": ["test"], "outputs": ["result.json"],
                                         "retries": 0}}, source="test.yaml"))[0]
    assert cell.param_hash == same.param_hash  # the source's form does not invalidate a complete cell
    res = G.run_grid(spec, serial=True)
    assert res.ok, res.table()
    assert (cell.output_dir / "result.json").is_file() and cell.output_notebook.is_file()

"""Every YAML example of the grid's user guide (docs/grid.md) passes the grid's own validation."""

import re
from pathlib import Path

import pytest
import yaml

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.pipeline import grid as G

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "grid.md"


def yaml_blocks(text: str) -> list:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)


BLOCKS = yaml_blocks(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_yaml_examples_covering_every_key():
    assert len(BLOCKS) >= 3
    keys = set().union(*(yaml.safe_load(b) for b in BLOCKS))
    assert keys == set(G.SPEC_KEYS)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_each_yaml_example_validates(i, tmp_path):
    path = tmp_path / f"grid_md_{i}.yaml"
    path.write_text(BLOCKS[i], encoding="utf-8")
    spec = G.load_spec(path, base_dir=ROOT)  # paths relative to the repository root, as the guide says
    declared = G.validate_grid_parameters(spec)  # the notebook declares every parameter, of a fitting type
    cells = G.expand(spec, declared)
    assert len(cells) == len(spec.doses) * len(spec.views) * len(spec.splits)


def test_the_old_docstring_example_is_still_refused():
    """The example the guide replaced (``n_groups: 512``): the grid's validation refuses it, and the guide says so."""
    spec = G.spec_from_dict({"hub": "demo_hub", "notebook": "notebooks/00_compare_arms.ipynb", "doses": [1000],
                             "views": ["dense"], "splits": ["test"], "parameters": {"n_groups": 512}},
                            base_dir=ROOT)
    with pytest.raises(PtyAnalysisError, match=r"unknown parameter\(s\) 'n_groups'"):
        G.validate_grid_parameters(spec)
    assert "unknown parameter(s) 'n_groups'" in GUIDE.read_text(encoding="utf-8")


def test_the_package_docstring_points_at_the_guide():
    assert "docs/grid.md" in G.__doc__ and len(G.__doc__.splitlines()) < 30

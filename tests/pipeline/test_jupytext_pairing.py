"""JupyterLab started at the repository's top folder keeps each notebook paired with its template (issue 19)."""

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def lab_root(tmp_path):
    """A copy of what JupyterLab's contents manager sees from the repository's top folder."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(ROOT / "ptyanalysis" / "templates", tmp_path / "ptyanalysis" / "templates")
    shutil.copy(ROOT / "jupytext.toml", tmp_path)
    return tmp_path


def _contents_manager(root):
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    return build_sync_jupytext_contents_manager_class(FileContentsManager)(root_dir=str(root))


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_a_save_in_jupyterlab_updates_the_template(lab_root, name):
    cm = _contents_manager(lab_root)
    model = cm.get(f"notebooks/{name}.ipynb")
    cells = model["content"]["cells"]
    md = next(c for c in cells if c["cell_type"] == "markdown")
    md["source"] += "\n\nA sentence added in JupyterLab."
    cm.save(model, f"notebooks/{name}.ipynb")
    assert "A sentence added in JupyterLab." in (lab_root / "ptyanalysis" / "templates" / f"{name}.py").read_text()

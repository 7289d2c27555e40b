"""Shared pytest set-up: quiet TensorFlow, headless matplotlib, one thread pool."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ci_hub(tmp_path_factory):
    """A trained ci-size synthetic study.

    ``make test`` prepares ``build/ci_hub`` (all doses, plus the comparison grid) before
    pytest and points ``PTYANALYSIS_CI_HUB`` at it; run alone, pytest builds a one-dose
    study in a temporary folder.
    """
    from ptyanalysis.synthetic import demo as demo

    given = os.environ.get("PTYANALYSIS_CI_HUB")
    if given and (Path(given) / "study.json").exists():
        return Path(given)
    root = tmp_path_factory.mktemp("ci_hub")
    demo.ensure_study(root, size="ci", doses=(1e3,), say=lambda *a: None)
    return root


# Test notebooks and fixtures used by the grid/report tests are data, not tests to collect with nbval.
collect_ignore = ["notebooks", "data"]

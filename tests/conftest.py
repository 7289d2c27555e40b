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
        return Path(given).resolve()  # absolute: tests symlink into it and change folders
    root = tmp_path_factory.mktemp("ci_hub")
    demo.ensure_study(root, size="ci", doses=(1e3,), say=lambda *a: None)
    return root


# Test notebooks and fixtures used by the grid/report tests are data, not tests to collect with nbval.
collect_ignore = ["pipeline/notebooks", "phase_g/data"]


TIERS = ("fast", "tf", "slow")


def pytest_collection_modifyitems(config, items):
    """Give every test one tier: ``slow`` when it needs the trained ci study (``ci_hub``) or is
    marked slow, else the module's own tier (``pytestmark``), else ``fast`` (numpy only).

    ``make test-fast`` runs ``-m fast``; ``make test`` runs every tier.
    """
    for item in items:
        if "ci_hub" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.fast)

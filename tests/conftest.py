"""Shared pytest set-up: quiet TensorFlow, headless matplotlib, one thread pool; the test tiers.

Tiers (markers ``fast``, ``tf``, ``slow``; rules in tests/support/tiers/tiers.py): every test is in exactly
one, derived from what it uses, not from the module it lives in. ``slow`` when it uses the trained ci study
(the ``ci_hub`` fixture) or is marked slow; ``tf`` when it uses a framework fixture (``keras``,
``tensorflow``, ``jax``, ``torch`` below, directly or through a fixture that takes one, such as the fault
models in tests/diagnosis/conftest.py) or is marked tf (a model built or loaded by ptyanalysis code); else
``fast`` (numpy-only), wherever it lives. Mark tests, classes or ``pytest.param`` cases (a fixture gets its tier
by taking a framework fixture), never a whole module: module-level tier marks, two tiers on one test and a
fast mark on a test that needs more are errors at collection. nbval's notebook cells are slow.

``make test-fast`` runs ``-m fast``, with keras, tensorflow, jax and torch made unimportable in the test
process and the processes it starts: a fast test that reaches a framework fails and says to mark it tf.
``make test`` runs every tier (fast + tf + slow is the whole suite).
"""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support" / "tiers"))
import tiers  # noqa: E402 - tests/support/tiers: tier rules and the fast tier's import blocker


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


TIERS = tiers.TIERS


# ----------------------------------------------------------------------------- the frameworks, as fixtures
# A test (or fixture) that needs a framework takes it from one of these: that puts it in the tf tier
# (tiers.FIXTURE_TIERS). A missing framework skips the test (as under tests/support/no_tensorflow).


@pytest.fixture(scope="session")
def keras():
    """The keras module (tier tf), imported as ptyanalysis imports it (the backend its rule picks)."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    from ptyanalysis.inference.backends import import_keras

    return import_keras()


@pytest.fixture(scope="session")
def tensorflow():
    """The tensorflow module (tier tf)."""
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="session")
def jax():
    """The jax module (tier tf)."""
    return pytest.importorskip("jax")


@pytest.fixture(scope="session")
def torch():
    """The torch module (tier tf)."""
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- tiers
def _selects_only_fast(config) -> bool:
    """Whether this run can select fast tests only (``-m fast``, ``-m "not tf and not slow"``, ...)."""
    if os.environ.get(tiers.ENV) == "1":  # a process started by a fast-tier run
        return True
    others = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    return tiers.selects_only_fast(config.getoption("markexpr", "") or "", others)


def pytest_configure(config):
    config.fast_tier_blocked = _selects_only_fast(config)
    if config.fast_tier_blocked:
        early = tiers.install()
        if early:
            raise pytest.UsageError(f"the fast tier blocks frameworks, but {early} were imported before "
                                    "tests/conftest.py (a plugin?): run with -p no:<plugin>")


def pytest_report_header(config):
    if getattr(config, "fast_tier_blocked", False):
        return f"tiers: fast only, these imports refused: {', '.join(tiers.BLOCKED)}"
    return None


def pytest_collectstart(collector):
    tiers.current_test = collector.nodeid or None


def _tier_marks(node) -> list[str]:
    return [m.name for m in node.own_markers if m.name in TIERS]


@pytest.hookimpl(tryfirst=True)  # before pytest's -m deselection
def pytest_collection_modifyitems(config, items):
    """Give every test exactly one tier (:func:`tiers.tier_of`); contradictions stop the run."""
    problems, refused = [], set()
    for module in {item.module for item in items if isinstance(item, pytest.Function)}:
        marks = getattr(module, "pytestmark", [])
        try:
            tiers.check_module_marks([m.name for m in (marks if isinstance(marks, list) else [marks])])
        except tiers.TierError as e:
            problems.append(f"{Path(module.__file__).relative_to(config.rootpath)}: {e}")
            refused.add(module)
    for item in items:
        if getattr(item, "module", None) in refused:
            continue
        if not isinstance(item, pytest.Function):  # a notebook's cells (nbval): run on the ci study
            explicit, fixtures = _tier_marks(item), ("ci_hub",)
        else:
            explicit = [t for node in item.listchain() if isinstance(node, (pytest.Class, pytest.Function))
                        for t in _tier_marks(node)]
            fixtures = item.fixturenames
        try:
            tier = tiers.tier_of(explicit, fixtures)
        except tiers.TierError as e:
            problems.append(f"{item.nodeid}: {e}")
            continue
        if tier not in explicit:
            item.add_marker(getattr(pytest.mark, tier))
        have = {m.name for m in item.iter_markers() if m.name in TIERS}
        if have != {tier}:
            problems.append(f"{item.nodeid}: tiers {sorted(have)}, expected exactly [{tier!r}]")
    if problems:
        raise pytest.UsageError("test tiers (tests/conftest.py):\n  " + "\n  ".join(problems))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    tiers.current_test = item.nodeid
    tiers.attempts.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """In the fast tier, a test that imported a framework fails, also when its code caught the ImportError."""
    result = yield
    if getattr(item.config, "fast_tier_blocked", False) and tiers.attempts:
        names = sorted({name for name, _ in tiers.attempts})
        pytest.fail(f"imported {names} (refused; the ImportError was caught on the way). "
                    + tiers.message(names[0], item.nodeid), pytrace=False)
    return result

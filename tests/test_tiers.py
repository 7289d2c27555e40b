"""The test tiers themselves: one tier per test from what it uses, and a fast tier that cannot import a framework.

The rules are in tests/support/tiers/tiers.py and tests/conftest.py applies them; these tests are fast.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tiers

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = [m for m in ("keras", "tensorflow", "jax", "torch") if importlib.util.find_spec(m) is not None]


def _env() -> dict:
    """This environment without the fast tier's blocker (the child decides for itself)."""
    env = {k: v for k, v in os.environ.items() if k != tiers.ENV}
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != tiers.FOLDER]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def test_the_blocker_refuses_each_installed_framework_with_what_to_do():
    """A process with tests/support/tiers first on PYTHONPATH (a fast-tier run's children, and the run itself
    through tests/conftest.py) finds the frameworks but cannot import them; numpy still imports."""
    if not INSTALLED:
        pytest.skip("no framework installed")
    code = ("import importlib, importlib.util, sys, numpy\n"
            f"for name in {INSTALLED!r}:\n"
            "    assert importlib.util.find_spec(name) is not None, name\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError as e:\n"
            "        print(name, type(e).__name__, e)\n"
            "    else:\n"
            "        print(name, 'IMPORTED')\n"
            "    assert name not in sys.modules\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([tiers.FOLDER, env["PYTHONPATH"]]).strip(os.pathsep)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) == len(INSTALLED)
    for name, line in zip(INSTALLED, lines):
        assert line.startswith(f"{name} FrameworkBlocked '{name}' cannot be imported in the fast test tier"), line
        assert "@pytest.mark.tf" in line


def test_this_run_blocks_the_frameworks_exactly_when_it_selects_fast_tests_only(request):
    blocked = request.config.fast_tier_blocked
    assert tiers.installed() == blocked
    if not blocked:
        return
    assert not [m for m in tiers.BLOCKED if m in sys.modules]  # nothing reached a framework before this test
    for name in INSTALLED:
        with pytest.raises(ImportError, match=r"fast test tier .*Mark the test @pytest.mark.tf"):
            importlib.import_module(name)
    assert {name for name, _ in tiers.attempts} == set(INSTALLED)
    tiers.attempts.clear()  # refused on purpose: not a failure of this test


@pytest.mark.parametrize("explicit, fixtures, want", [
    ([], ["tmp_path"], "fast"),
    ([], ["tmp_path", "keras"], "tf"),
    ([], ["faults", "keras"], "tf"),  # a fixture that takes keras: its closure holds keras
    ([], ["torch", "ci_hub"], "slow"),
    (["tf"], ["tmp_path"], "tf"),  # a model built by the code under test: marked
    (["slow"], ["keras"], "slow"),  # a mark may raise the tier
    (["fast"], [], "fast"),
    (["tf", "tf"], [], "tf"),  # the same mark on a class and its test
])
def test_a_tier_comes_from_the_fixtures_and_the_marks(explicit, fixtures, want):
    assert tiers.tier_of(explicit, fixtures) == want


@pytest.mark.parametrize("explicit, fixtures, match", [
    (["tf", "slow"], [], "two tiers"),
    (["fast"], ["keras"], r"marked fast but uses keras \(tier tf\)"),
    (["tf"], ["ci_hub"], r"marked tf but uses ci_hub \(tier slow\)"),
])
def test_contradicting_tiers_are_errors(explicit, fixtures, match):
    with pytest.raises(tiers.TierError, match=match):
        tiers.tier_of(explicit, fixtures)


def test_module_level_tier_marks_are_refused():
    tiers.check_module_marks(["neutral"])  # other marks may stay module-wide
    with pytest.raises(tiers.TierError, match="module-level tier mark"):
        tiers.check_module_marks(["tf", "neutral"])


@pytest.mark.parametrize("expr, only_fast", [
    ("", False), ("fast", True), ("fast and not neutral", True), ("not tf and not slow", True),
    ("fast or neutral", False), ("not slow", False), ("tf", False), ("fast or tf", False), ("neutral", False),
])
def test_which_marker_expressions_select_the_fast_tier_only(expr, only_fast):
    assert tiers.selects_only_fast(expr, ["neutral"]) is only_fast


def test_a_fast_test_that_reaches_a_framework_fails_and_a_mis_marked_module_stops_the_run(tmp_path):
    """End to end, in a child pytest with this conftest: under -m fast a test that imports a framework fails
    (also when it catches the ImportError), a numpy test passes, a tf test is deselected; a module-level
    tier mark stops the collection with the reason."""
    if not INSTALLED:
        pytest.skip("no framework installed")
    name = INSTALLED[0]
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(tiers.FOLDER, tmp_path / "support" / "tiers", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    fast: f\n    tf: t\n    slow: s\n")
    (tmp_path / "test_kinds.py").write_text(
        "import pytest\n\n"
        "def test_numpy():\n    import numpy\n\n"
        f"def test_imports():\n    import {name}  # noqa: F401\n\n"
        f"def test_swallows():\n    try:\n        import {name}  # noqa: F401\n    except ImportError:\n        pass\n\n"
        f"@pytest.mark.tf\ndef test_marked():\n    import {name}  # noqa: F401\n")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-m", "fast"]
    r = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "2 failed, 1 passed, 1 deselected" in out, out
    assert f"'{name}' cannot be imported in the fast test tier" in out
    assert "the ImportError was caught on the way" in out  # test_swallows
    (tmp_path / "test_kinds.py").write_text("import pytest\n\npytestmark = pytest.mark.tf\n\n\ndef test_a():\n    pass\n")
    r = subprocess.run(args[:-2], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr  # usage error
    assert "test_kinds.py: module-level tier mark ['tf']" in r.stderr

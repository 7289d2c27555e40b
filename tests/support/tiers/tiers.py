"""Test tiers: which tier a test is in, and the import blocker that keeps the fast tier free of frameworks.

A test is in exactly one tier (``fast``, ``tf`` or ``slow``), derived from what it uses (tests/conftest.py
applies :func:`tier_of` to every collected test):

- a fixture in :data:`FIXTURE_TIERS` anywhere in the test's fixture closure sets its lowest tier: ``keras``,
  ``tensorflow``, ``jax`` and ``torch`` (the frameworks) give ``tf``, ``ci_hub`` (the trained ci study)
  gives ``slow``; a fixture that builds a model takes the ``keras`` fixture, so its tests are ``tf`` too;
- an explicit ``@pytest.mark.tf`` / ``@pytest.mark.slow`` on the test (or its class, or a ``pytest.param``)
  for what fixtures cannot show (a model built by ptyanalysis code, a long run); it may raise the tier,
  never lower it below what the fixtures need;
- else ``fast``: numpy, scipy, scikit-image, xarray, no framework.

Parametrizations must not depend on which frameworks import (a tier would then depend on the run): give a
framework's case its own ``pytest.param(..., marks=pytest.mark.tf)``.

Module-level tier marks (``pytestmark = pytest.mark.tf``) are refused: they put a module's numpy-only tests in
a slower tier. Two explicit tiers on one test, or a fast mark on a test that needs more, are errors too.

The fast tier is enforced: when a run selects only fast tests (``pytest -m fast``, ``make test-fast``),
tests/conftest.py calls :func:`install`, after which importing a framework (:data:`BLOCKED`) raises
:class:`FrameworkBlocked`, an ``ImportError`` that says to mark the test ``tf``; ``importlib.util.find_spec``
still finds the package (it is installed). Every refused import is recorded in :data:`attempts`, so a
test whose code swallowed the ``ImportError`` fails as well. Processes started by a fast test are blocked
too: this folder goes first on ``PYTHONPATH`` and its ``sitecustomize`` installs the blocker.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from importlib.machinery import PathFinder

TIERS = ("fast", "tf", "slow")

#: Fixtures whose use puts a test in at least this tier (also when a fixture the test uses takes them).
FIXTURE_TIERS = {"keras": "tf", "tensorflow": "tf", "jax": "tf", "torch": "tf", "ci_hub": "slow"}

#: Top-level packages the fast tier may not import (the frameworks and the packages that need one).
BLOCKED = ("keras", "tensorflow", "tf_keras", "tensorboard", "jax", "jaxlib", "flax", "torch", "torchvision",
           "lightning", "pytorch_lightning", "ptychi")

#: The folder to put first on ``PYTHONPATH`` so that a child process is blocked too (its sitecustomize).
FOLDER = os.path.dirname(os.path.abspath(__file__))

#: Set in processes that run the fast tier (and inherited by their children).
ENV = "PTYANALYSIS_FAST_TIER"

#: Refused imports, as ``(package, test)``; cleared by tests/conftest.py before each test.
attempts: list[tuple[str, str]] = []

#: The test running now (node id), named in the error message; set by tests/conftest.py.
current_test: str | None = None


class TierError(Exception):
    """A test's tier marks contradict each other or what its fixtures need."""


def check_module_marks(marks: list[str]) -> None:
    """Refuse tier marks set for a whole module (``pytestmark``).

    Raises
    ------
    TierError
        When ``marks`` holds a tier.
    """
    found = sorted({m for m in marks if m in TIERS})
    if found:
        raise TierError(f"module-level tier mark {found} (pytestmark): mark the tests or fixtures that need "
                        "it instead, so that the module's numpy-only tests stay in the fast tier")


def tier_of(explicit: list[str], fixtures) -> str:
    """The one tier of a test.

    Parameters
    ----------
    explicit : list of str
        Tier marks on the test itself, its class or its ``pytest.param``.
    fixtures : iterable of str
        The test's fixture closure (``item.fixturenames``).

    Raises
    ------
    TierError
        Two tiers, or an explicit tier below what the fixtures need.
    """
    if len(set(explicit)) > 1:
        raise TierError(f"two tiers {sorted(set(explicit))}: a test is in exactly one")
    needed = {FIXTURE_TIERS[f] for f in fixtures if f in FIXTURE_TIERS}
    need = max(needed, key=TIERS.index, default="fast")
    why = ", ".join(sorted(f for f in fixtures if FIXTURE_TIERS.get(f) == need))
    if explicit:
        if TIERS.index(explicit[0]) < TIERS.index(need):
            raise TierError(f"marked {explicit[0]} but uses {why} (tier {need})")
        return explicit[0]
    return need


def selects_only_fast(markexpr: str, markers=()) -> bool:
    """Whether a ``-m`` expression can select fast tests only (then the frameworks are blocked).

    Parameters
    ----------
    markexpr : str
        The ``-m`` expression (``"fast"``, ``"fast and not neutral"``, ``"not tf and not slow"``, ...).
    markers : iterable of str
        The other registered markers: a test in the tf or slow tier may carry any of them.

    Returns
    -------
    bool
        False when a tf or slow test, with or without the other markers, would be selected, or when no
        expression is given.
    """
    text = markexpr.strip()
    if not text:
        return False
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pytest moved its private expression parser: recognise the plain form only
        return text == "fast"
    try:
        expr = Expression.compile(text)
    except SyntaxError:  # what pytest 9 raises (ParseError before): pytest reports the expression itself
        return False
    others = set(markers) - set(TIERS)
    for tier in ("tf", "slow"):
        for extra in (set(), others):
            if expr.evaluate(_carrying({tier} | extra)):
                return False
    return True


def _carrying(names):
    """A ``-m`` matcher for a test that carries exactly these marks."""
    return lambda name, /, **kwargs: name in names


def message(name: str, test: str | None = None) -> str:
    """What a refused import says."""
    who = f"test {test}" if test else "this code"
    return (f"{name!r} cannot be imported in the fast test tier (pytest -m fast): {who} uses a framework. "
            "Mark the test @pytest.mark.tf (or slow), or take the framework from a fixture (keras, tensorflow, "
            "jax, torch: tests/conftest.py), which puts it in the tf tier; tier rules: tests/support/tiers/tiers.py.")


class FrameworkBlocked(ImportError):
    """A framework imported in the fast tier."""


class _RefusingLoader(importlib.abc.Loader):
    def __init__(self, name: str):
        self.name = name

    def create_module(self, spec):
        attempts.append((self.name, current_test or ""))
        raise FrameworkBlocked(message(self.name, current_test), name=self.name)

    def exec_module(self, module):  # never reached: create_module raises
        raise FrameworkBlocked(message(self.name, current_test), name=self.name)


class FrameworkBlocker(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: the installed frameworks are found, and refused when imported."""

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top not in BLOCKED or top in sys.modules:  # already imported before the blocker: not ours to refuse
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None:
            return None  # not installed: the usual ModuleNotFoundError (importorskip skips)
        spec.loader = _RefusingLoader(top)
        return spec


def installed() -> bool:
    """Whether the blocker is on ``sys.meta_path`` in this process."""
    return any(isinstance(f, FrameworkBlocker) for f in sys.meta_path)


def install(children: bool = True) -> list[str]:
    """Block the frameworks in this process (and, with ``children``, in processes it starts).

    Returns the blocked packages that were already imported (the blocker cannot take those back).
    """
    if not installed():
        sys.meta_path.insert(0, FrameworkBlocker())
    if children:
        os.environ[ENV] = "1"
        path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != FOLDER]
        os.environ["PYTHONPATH"] = os.pathsep.join([FOLDER, *path])
    return sorted(m for m in sys.modules if m in BLOCKED)


def uninstall() -> None:
    """Undo :func:`install` (this process and the environment for children)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, FrameworkBlocker)]
    os.environ.pop(ENV, None)
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != FOLDER]
    if path:
        os.environ["PYTHONPATH"] = os.pathsep.join(path)
    else:
        os.environ.pop("PYTHONPATH", None)

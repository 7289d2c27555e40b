"""Zeller's delta debugging (``ddmin``): a 1-minimal failing subset."""

from __future__ import annotations

import numpy as np


class BudgetSpent(Exception):
    """The evaluation budget is spent (raised inside a test, caught by :func:`ddmin` or the runner's caller)."""


def ddmin(items, test, max_tests: int | None = None):
    """Zeller's ddmin: a 1-minimal subset of ``items`` for which ``test`` still fails.

    Parameters
    ----------
    items : sequence
        The failing configuration (``test(items)`` is assumed to fail).
    test : callable
        ``test(subset) -> True`` (fails), ``False`` (passes) or ``None`` (unresolved).
    max_tests : int, optional
        Stop after this many calls of ``test`` (the result is then not minimal).

    Returns
    -------
    subset : list
    minimal : bool
        False when the budget ran out first.
    """
    c = list(items)
    n = 2
    calls = 0

    def t(sub):
        nonlocal calls
        if max_tests is not None and calls >= max_tests:
            raise BudgetSpent
        calls += 1
        return test(sub)

    try:
        while len(c) >= 2:
            n = min(n, len(c))
            chunks = [list(ch) for ch in np.array_split(np.arange(len(c)), n)]
            subsets = [[c[i] for i in ch] for ch in chunks]
            reduced = False
            for sub in subsets:
                if t(sub) is True:
                    c, n, reduced = sub, 2, True
                    break
            if not reduced and n > 2:
                for i in range(n):
                    comp = [x for j, sub in enumerate(subsets) if j != i for x in sub]
                    if t(comp) is True:
                        c, n, reduced = comp, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= len(c):
                    break
                n = min(len(c), 2 * n)
    except BudgetSpent:
        return c, False
    return c, True



"""The package's process-wide state, gathered and named in one place, with a way to turn it off.

Two stores outlive a call; both live here and nowhere else:

``"models"``
    Loaded models that later comparison jobs in the same process reuse (a grid worker runs its cells one
    after the other in one kernel): one :class:`ptyanalysis.pipeline.modelcache.ModelCache`, bounded and
    keyed by each model's files (:func:`ptyanalysis.pipeline.modelcache.shared_model_cache`).
``"compiled_functions"``
    The compiled prediction functions and the batch-size limits learned (by halving after an
    out-of-memory error) of in-memory model objects that are not wrapped in a ``LoadedModel``, keyed weakly
    by the model so that an entry goes with its model (:mod:`ptyanalysis.inference.model`). The
    bisection's layer probe starts at the limit learned here
    (:func:`ptyanalysis.inference.streaming.known_batch_size_limit`). A ``LoadedModel`` keeps its own.

Compiled numba kernels (``functools.cache`` in :mod:`ptyanalysis.imaging.stitching`) are code, not state,
and the quiet-import hook of :mod:`ptyanalysis.quiet` removes itself after its one import.

Turn the stores off with the environment variable ``PTYANALYSIS_CACHES=off`` (read at each use), or for a
block with :func:`caching_disabled`; :func:`clear_caches` empties them; :func:`describe` says what they
hold.
"""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager

#: The environment variable that turns every store off (``off``, ``0``, ``false`` or ``no``).
CACHES_ENV = "PTYANALYSIS_CACHES"

#: Store name -> what it holds.
STORES = {
    "models": "loaded models reused by later comparison jobs in this process",
    "compiled_functions": "compiled prediction functions and learned batch-size limits of in-memory models",
}

_compiled_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_shared_models: list = []  # at most one ModelCache, made on first use
_disabled: set = set()


def _check(names) -> tuple:
    bad = [n for n in names if n not in STORES]
    if bad:
        from .errors import PtyAnalysisError, did_you_mean

        raise PtyAnalysisError(f"unknown store {bad[0]!r}: the stores are {', '.join(STORES)}"
                               + did_you_mean(bad[0], list(STORES)))
    return tuple(names) or tuple(STORES)


def enabled(name: str) -> bool:
    """Whether store ``name`` keeps anything now (the environment switch, then :func:`caching_disabled`)."""
    _check([name])
    if os.environ.get(CACHES_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return False
    return name not in _disabled


@contextmanager
def caching_disabled(*names: str):
    """Within the block, the named stores (default all) keep nothing; what they held is kept for after.

    Parameters
    ----------
    *names : str
        Keys of :data:`STORES`.
    """
    names = _check(names)
    added = [n for n in names if n not in _disabled]
    _disabled.update(added)
    try:
        yield
    finally:
        _disabled.difference_update(added)


def function_store(model) -> dict | None:
    """The ``"compiled_functions"`` entry of an in-memory model (made on first use), or None when the store
    is off or the model cannot be weakly referenced (then nothing is kept across calls)."""
    if not enabled("compiled_functions"):
        return None
    try:
        return _compiled_functions.setdefault(model, {})
    except TypeError:
        return None


def model_cache(factory):
    """The ``"models"`` store: the one shared cache (made by ``factory()`` on first use); when the store is
    off, a new ``factory(max_models=0)`` that keeps nothing."""
    if not enabled("models"):
        return factory(max_models=0)
    if not _shared_models:
        _shared_models.append(factory())
    return _shared_models[0]


def clear_caches(*names: str) -> None:
    """Empty the named stores (default all).

    Parameters
    ----------
    *names : str
        Keys of :data:`STORES`.
    """
    for name in _check(names):
        if name == "models":
            for cache in _shared_models:
                cache.clear()
        else:
            _compiled_functions.clear()


def describe() -> dict:
    """What each store holds now: ``{name: {"holds": what, "entries": n, "enabled": bool}}``."""
    return {"models": {"holds": STORES["models"], "entries": sum(len(c) for c in _shared_models),
                       "enabled": enabled("models")},
            "compiled_functions": {"holds": STORES["compiled_functions"], "entries": len(_compiled_functions),
                                   "enabled": enabled("compiled_functions")}}

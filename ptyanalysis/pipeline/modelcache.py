"""Loaded models kept for reuse by later comparison jobs in the same process.

A grid worker runs its cells one after the other in one kernel
(:mod:`ptyanalysis.pipeline.kernels`); the comparison job of each cell asks
:func:`shared_model_cache` for its models, so a model that an earlier cell
on that worker loaded is not loaded again (the Baseline of a dose serves its
four cells, a PtychoPINN model its two splits).

A cached model is identified by its resolved directory and the name, size
and modification time of every file in it: retraining a model (new files)
loads it afresh. The cache is bounded (least recently used models are
dropped) and read-only in use: inference does not modify a loaded model.
The shared cache is one of the package's process-wide stores, kept in
:mod:`ptyanalysis.state` (``"models"``; ``PTYANALYSIS_CACHES=off`` turns it
off); pass ``ModelCache(max_models=0)`` to
:func:`ptyanalysis.pipeline.compare.compare_job` to load every model afresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..state import model_cache

#: Models kept by the shared cache (a dose's Baseline and both views' PtychoPINN models, plus one).
DEFAULT_MAX_MODELS = 4


def fingerprint(path) -> tuple:
    """Identity of a model on disk: resolved path and ``(name, size, mtime_ns)`` of each file.

    Parameters
    ----------
    path : str or Path
        A model directory or file.

    Returns
    -------
    tuple
    """
    p = Path(path).resolve()
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
    return (str(p), tuple((str(q.relative_to(p)) if q != p else q.name, q.stat().st_size, q.stat().st_mtime_ns)
                          for q in files))


@dataclass
class CacheStats:
    """What a :class:`ModelCache` did: loads, hits, seconds spent loading and saved by hits."""

    loads: int = 0
    hits: int = 0
    load_s: float = 0.0
    saved_s: float = 0.0
    evictions: int = 0

    def to_dict(self) -> dict:
        """JSON form."""
        return {"loads": self.loads, "hits": self.hits, "load_s": round(self.load_s, 3),
                "saved_s": round(self.saved_s, 3), "evictions": self.evictions}


@dataclass
class ModelCache:
    """A bounded least-recently-used cache of loaded models.

    Parameters
    ----------
    max_models : int
        Models kept; 0 keeps none (every :meth:`load` loads).
    loader : callable, optional
        ``loader(path) -> model`` (default :func:`ptyanalysis.inference.loading.load_model`).
    """

    max_models: int = DEFAULT_MAX_MODELS
    loader: object = None
    stats: CacheStats = field(default_factory=CacheStats)
    _items: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def load(self, path, loader=None):
        """The model at ``path``, loaded now or reused: ``(model, info)``.

        Parameters
        ----------
        path : str or Path
        loader : callable, optional
            Overrides the cache's loader for this call.

        Returns
        -------
        model : object
        info : dict
            ``cached`` (bool), ``load_s`` (the seconds loading took, when it
            was loaded), ``uses`` (times this model was handed out) and the
            cache's statistics.
        """
        key = fingerprint(path)
        if key in self._items:
            model, load_s, uses = self._items.pop(key)
            self._items[key] = (model, load_s, uses + 1)
            self.stats.hits += 1
            self.stats.saved_s += load_s
            return model, {"cached": True, "load_s": round(load_s, 3), "uses": uses + 1, "cache": self.stats.to_dict()}
        fn = loader or self.loader
        if fn is None:
            from ..inference.loading import load_model as fn
        t0 = time.perf_counter()
        model = fn(path)
        load_s = time.perf_counter() - t0
        self.stats.loads += 1
        self.stats.load_s += load_s
        if self.max_models > 0:
            self._items[key] = (model, load_s, 1)
            while len(self._items) > self.max_models:
                self._items.popitem(last=False)
                self.stats.evictions += 1
        return model, {"cached": False, "load_s": round(load_s, 3), "uses": 1, "cache": self.stats.to_dict()}

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every model."""
        self._items.clear()


def shared_model_cache() -> ModelCache:
    """The process's model cache (created on first use, :data:`DEFAULT_MAX_MODELS` models), the ``"models"``
    store of :mod:`ptyanalysis.state`; a cache that keeps nothing when that store is off.

    Returns
    -------
    ModelCache
    """
    return model_cache(ModelCache)

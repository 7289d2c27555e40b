"""Running statistics of model outputs (one class, used by inference and diagnosis alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputStats:
    """Statistics of one model output over a whole run, plus per-chunk rows.

    For real outputs ``mean`` is the mean of the finite values and
    ``max_abs`` the largest finite ``|x|``; for complex outputs both refer to
    ``|z|`` and ``real_*`` / ``imag_*`` count nonzero and non-finite parts.
    One rule for every output statistic of the package (:func:`count_values`,
    also used by :mod:`ptyanalysis.diagnosis.health`): each element is *zero*,
    *nonzero* (finite and different from 0) or *non-finite* (NaN or +-Inf;
    never "nonzero"). ``nonzero`` counts the finite nonzero elements, ``nan`` /
    ``inf`` the non-finite ones (of ``|z|`` when complex; complex parts follow
    the same rule).
    """

    name: str
    dtype: str
    shape: tuple
    size: int
    mean: float
    max_abs: float
    nonzero: int
    nan: int
    inf: int
    real_nonzero: int | None = None
    imag_nonzero: int | None = None
    real_nonfinite: int | None = None
    imag_nonfinite: int | None = None
    chunks: tuple = ()
    #: max over samples of max |m_i - m_0| / max_abs, with m the value (the modulus when complex): 0 when every
    #: sample's output is the same, i.e. the output does not depend on the input; NaN for fewer than 2 samples
    #: (:class:`ptyanalysis.diagnosis.health.OutputHealth` has the same statistic, phase included).
    sample_spread: float = float("nan")

    @property
    def zero_fraction(self) -> float:
        """Fraction of elements exactly zero (non-finite elements are neither zero nor nonzero)."""
        return (self.size - self.nonzero - self.nan - self.inf) / self.size if self.size else float("nan")

    def to_dict(self, chunks: bool = False) -> dict:
        """Return the totals (and the per-chunk rows when ``chunks``) as a JSON-safe dict."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "chunks"}
        d["shape"] = list(self.shape)
        d["zero_fraction"] = self.zero_fraction
        if self.real_nonzero is None:
            for k in ("real_nonzero", "imag_nonzero", "real_nonfinite", "imag_nonfinite"):
                d.pop(k)
        if chunks:
            d["chunks"] = [dict(r) for r in self.chunks]
        return d

    def chunk_table(self):
        """Per-chunk statistics as a ``pandas.DataFrame`` (one row per chunk)."""
        import pandas as pd

        return pd.DataFrame(list(self.chunks))


def count_values(a) -> tuple:
    """Count the nonzero and non-finite elements of an array, by the package's one rule.

    Parameters
    ----------
    a : array_like
        Values; complex values are counted on ``|z|``, booleans and integers as numbers.

    Returns
    -------
    nonzero : int
        Finite elements different from 0 (NaN and +-Inf are never "nonzero").
    nonfinite : int
        NaN and +-Inf elements (0 for integer and boolean arrays).
    """
    a = np.asarray(a)
    if a.dtype.kind not in "fc":
        return int(np.count_nonzero(a)), 0
    fin = np.isfinite(a)
    nfin = int(np.count_nonzero(fin))
    if nfin == a.size:
        return int(np.count_nonzero(a)), 0
    return int(np.count_nonzero(a[fin])), int(a.size - nfin)


def _chunk_stats(a: np.ndarray, mag_out: list | None = None) -> dict:
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    iscomplex = np.iscomplexobj(a)
    mag = np.abs(a) if (iscomplex or a.dtype.kind == "f") else a
    size = int(a.size)
    if a.dtype.kind in "fc":
        n_nan = int(np.count_nonzero(np.isnan(mag)))
        n_inf = int(np.count_nonzero(np.isinf(mag)))
    else:
        n_nan = n_inf = 0
    if mag_out is not None:
        mag_out.append(mag)
    vals = mag if iscomplex else a
    if n_nan or n_inf:
        finite = np.isfinite(mag)
        total = float(np.sum(vals, where=finite, dtype=np.float64))
        mx = float(np.max(mag, where=finite, initial=0)) if size - n_nan - n_inf else float("nan")
    else:
        total = float(np.sum(vals, dtype=np.float64))
        mx = float(np.max(mag)) if size else float("nan")
        if not iscomplex and a.dtype.kind != "f" and size:
            mx = float(np.max(np.abs(a.astype(np.float64))))
    row = {"size": size, "sum": total, "max_abs": mx, "nonzero": count_values(a)[0],
           "nan": n_nan, "inf": n_inf}
    if iscomplex:
        re, im = a.real, a.imag
        row.update(
            real_nonzero=count_values(re)[0], imag_nonzero=count_values(im)[0],
            real_nonfinite=int(size - np.count_nonzero(np.isfinite(re))),
            imag_nonfinite=int(size - np.count_nonzero(np.isfinite(im))),
        )
    return row


class _StatsAccumulator:
    """Running statistics of one output (a consumer of chunks)."""

    _SUMMED = ("size", "sum", "nonzero", "nan", "inf", "real_nonzero", "imag_nonzero",
               "real_nonfinite", "imag_nonfinite")

    def __init__(self, name):
        self.name = name
        self.rows = []
        self.dtype = None
        self.sample_shape = None
        self.first = None  # the first sample's value (modulus), for the sample spread
        self.spread = 0.0

    def update(self, chunk: np.ndarray, start: int) -> None:
        if self.dtype is None:
            self.dtype, self.sample_shape = chunk.dtype, chunk.shape[1:]
        mags: list = []
        row = _chunk_stats(chunk, mags)
        if chunk.ndim and len(chunk):
            m = np.asarray(mags[0], dtype=np.float32) if mags[0].dtype.kind in "fiub" else mags[0]
            if self.first is None:
                self.first = np.array(m[0], copy=True)
            d = np.abs(m - self.first)
            if row["nan"] or row["inf"] or not np.isfinite(self.first).all():
                d = np.where(np.isfinite(d), d, 0)
            self.spread = max(self.spread, float(np.max(d)) if d.size else 0.0)
        finite = row["size"] - row["nan"] - row["inf"]
        row["mean"] = row["sum"] / finite if finite else float("nan")
        self.rows.append({"start": int(start), "stop": int(start + len(chunk)), **row})

    def result(self, n: int) -> OutputStats:
        tot = {k: sum(r[k] for r in self.rows) for k in self._SUMMED if self.rows and k in self.rows[0]}
        finite = tot.get("size", 0) - tot.get("nan", 0) - tot.get("inf", 0)
        maxes = [r["max_abs"] for r in self.rows if r["max_abs"] == r["max_abs"]]
        chunks = tuple(
            {k: r[k] for k in ("start", "stop", "size", "mean", "max_abs", "nonzero", "nan", "inf",
                                "real_nonzero", "imag_nonzero", "real_nonfinite", "imag_nonfinite")
             if k in r}
            for r in self.rows
        )
        return OutputStats(
            name=self.name, dtype=str(self.dtype), shape=(n,) + tuple(self.sample_shape or ()),
            size=int(tot.get("size", 0)),
            mean=tot["sum"] / finite if finite else float("nan"),
            max_abs=max(maxes) if maxes else float("nan"),
            nonzero=int(tot.get("nonzero", 0)), nan=int(tot.get("nan", 0)), inf=int(tot.get("inf", 0)),
            real_nonzero=tot.get("real_nonzero"), imag_nonzero=tot.get("imag_nonzero"),
            real_nonfinite=tot.get("real_nonfinite"), imag_nonfinite=tot.get("imag_nonfinite"),
            chunks=chunks, sample_spread=self._sample_spread(n, max(maxes) if maxes else float("nan")),
        )

    def _sample_spread(self, n: int, top: float) -> float:
        if n < 2 or self.first is None:
            return float("nan")
        return self.spread / top if top > 0 else 0.0



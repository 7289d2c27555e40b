"""Placement audit without ground truth: which placement convention do the patches' overlaps support?

A network that outputs one patch per scan position is only as good as the
reassembly that puts those patches back. A wrong offset sign, a swapped
position order or a transposed patch gives an image that is inconsistent with
itself (the checkerboard of a sign fork), and nothing but the ground truth
used to tell. This module asks the patches themselves: where two neighbouring
patches overlap they show the same piece of object, so under the right
placement they agree there and under a wrong one they do not.

Conventions
-----------
Positions and patches follow :mod:`ptyanalysis.conventions` (the one source of
truth): positions are ``(n, 2)`` **(row, col) = (y, x) patch centres in object
pixels**; the patch at position ``p`` is ``obj[patch_slices(p, N)]``, so its
pixel ``u`` shows object pixel ``p - N//2 + u``. Two patches ``i`` and ``j``
overlap where pixel ``u`` of ``i`` and pixel ``u - d`` of ``j`` show the same
object pixel, ``d = p_j - p_i``.

Candidates
----------
:data:`PLACEMENTS` holds the eight placements a reassembly can get wrong in
the ways seen in practice, each a :class:`Placement`: the offsets about the
scan centre as given or negated (positions mirrored through their mean, the
sign fork), the position order as given or with x and y exchanged, each patch
as given or transposed. "as used" (the identity) is the data as given.

Two candidates that differ by *both* the x/y exchange and the patch transpose
are the same placement of a transposed object: they compare exactly the same
pixel pairs, so no overlap can tell them apart (only a ground truth can). The
eight candidates therefore form four classes (:func:`equivalent`); the audit
names a class and picks the member closest to the convention used.

Method
------
1. Pairs (:func:`overlap_pairs`): each scan point's nearest neighbours
   (:data:`NEIGHBOURS`) whose (cropped) patches overlap by at least
   ``min_overlap`` of their area, excluding pairs at the same rounded
   position (they compare the same pixels under every candidate); at most
   ``max_pairs``, subsampled with ``seed``. Distances, overlaps and
   neighbourhoods do not change under negation or an x/y exchange, so the
   same pairs serve every candidate.
2. Shifts: the relative shift of a pair is rounded to whole pixels; the
   sub-pixel remainder (at most half a pixel per axis) is ignored. It has the
   same size under every candidate, so it lowers every candidate's agreement
   alike and does not favour one.
3. Agreement of a pair (:func:`pair_agreement`): the normalised correlation of
   the two patches over their overlap, after removing each one's mean there.
   For complex patches it is the modulus of the complex correlation
   ``|sum a' conj(b')| / sqrt(sum |a'|^2 sum |b'|^2)``: amplitude and phase
   together, with the global complex factor between the two patches removed
   (a per-patch phase offset or amplitude scale is not a disagreement). For
   real patches it is the signed Pearson correlation. A region without
   contrast in either patch scores 0 (no evidence). A candidate's agreement
   is the mean over the pairs, in [0, 1] for complex and [-1, 1] for real
   patches.
4. Null: each pair's first patch is also compared, at the same shift, with a
   seeded random partner far from both (an unrelated patch). Patches that
   agree with their neighbours no better than with unrelated patches carry no
   information about placement (all zero, all alike, a collapsed model): the
   audit is then *undetermined* and picks nothing.
5. Decision: differences between candidates are judged pair by pair (paired
   differences over the same pairs): one candidate is better than another
   when its mean agreement is higher by more than ``tolerance`` and by more
   than :data:`Z_SCORE` standard errors of the paired difference.

Cost: the patch stack is only indexed (never copied whole), so it may be
large; the work is ``(2 x 8 x max_pairs)`` masked patch comparisons (about
1.2-1.5 s for 512 pairs of 64 x 64 complex patches on one core, 0.3 s for
their 32 x 32 centres).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..conventions import check_positions, patch_centre
from ..errors import PtyAnalysisError, did_you_mean

__all__ = [
    "MAX_PAIRS",
    "MIN_OVERLAP",
    "MIN_PAIRS",
    "NEIGHBOURS",
    "PLACEMENTS",
    "TOLERANCE",
    "Z_SCORE",
    "Placement",
    "PlacementAudit",
    "equivalent",
    "overlap_pairs",
    "pair_agreement",
    "placement",
    "placement_audit",
    "placement_text",
]

#: Most neighbour pairs compared (per candidate); larger scans are subsampled with the seed.
MAX_PAIRS = 512
#: Least overlap (fraction of the patch area) for two patches to be compared.
MIN_OVERLAP = 0.5
#: Nearest neighbours of each scan point considered for a pair.
NEIGHBOURS = 6
#: Fewest usable pairs for a verdict.
MIN_PAIRS = 8
#: Smallest difference of mean agreement that counts (on top of :data:`Z_SCORE` standard errors).
TOLERANCE = 0.05
#: Standard errors (of the paired per-pair differences) a difference must exceed to count.
Z_SCORE = 3.0
#: Relative variance below which a patch region has no contrast (scores 0).
_FLAT = 1e-10


@dataclass(frozen=True)
class Placement:
    """One candidate placement convention.

    Attributes
    ----------
    name : str
        Plain-words name, e.g. ``"offsets negated, patch transposed"``.
    sign : int
        ``+1``: offsets about the scan centre as given; ``-1``: negated
        (positions mirrored through their mean).
    swap_xy : bool
        The two position coordinates exchanged (x read as y and y as x).
    transpose : bool
        Each patch transposed (rows and columns exchanged).
    """

    name: str
    sign: int = 1
    swap_xy: bool = False
    transpose: bool = False

    def apply_positions(self, positions) -> np.ndarray:
        """Positions under this placement: ``mean + sign * (p - mean)``, columns exchanged if ``swap_xy``.

        Parameters
        ----------
        positions : array_like, shape (n, 2)
            (row, col) patch centres in object pixels.

        Returns
        -------
        ndarray, shape (n, 2), float64
            Same mean as ``positions`` (the scan stays where it is).
        """
        p = check_positions(positions)
        m = p.mean(axis=0)
        q = self.sign * (p - m)
        if self.swap_xy:
            q = q[:, ::-1]
        return m + q

    def apply_patches(self, patches) -> np.ndarray:
        """Patches under this placement: transposed (a view) when ``transpose``, else as given."""
        p = np.asarray(patches)
        return np.swapaxes(p, -1, -2) if self.transpose else p

    def flags(self) -> tuple:
        """``(sign, swap_xy, transpose)``."""
        return (self.sign, self.swap_xy, self.transpose)


def _name(sign: int, swap: bool, transpose: bool) -> str:
    parts = (["offsets negated"] if sign < 0 else []) + (["x/y swapped"] if swap else []) + (
        ["patch transposed"] if transpose else [])
    return ", ".join(parts) if parts else "as used"


#: The eight candidates; the first is the identity ("as used"). Order: fewest changes first, then sign,
#: position order, patch.
PLACEMENTS = tuple(Placement(_name(s, w, t), s, w, t) for s, w, t in (
    (1, False, False), (-1, False, False), (1, True, False), (1, False, True),
    (-1, True, False), (-1, False, True), (1, True, True), (-1, True, True)))
_BY_NAME = {p.name: p for p in PLACEMENTS}


def placement(name) -> Placement:
    """The :class:`Placement` named ``name`` (a :class:`Placement` is returned as it is).

    Raises
    ------
    PtyAnalysisError
        If ``name`` is not one of :data:`PLACEMENTS`' names.
    """
    if isinstance(name, Placement):
        return name
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise PtyAnalysisError(f"unknown placement {name!r}: expected one of {', '.join(map(repr, _BY_NAME))}"
                           + did_you_mean(name, _BY_NAME))


def equivalent(name) -> str:
    """The other candidate that compares exactly the same pixel pairs (x/y exchange and transpose both toggled).

    ``P`` with positions swapped and patches transposed is ``P`` applied to the
    transposed object: every overlap is the same, so the two cannot be told
    apart without a ground truth.
    """
    p = placement(name)
    return _name(p.sign, not p.swap_xy, not p.transpose)


# --------------------------------------------------------------------------- pairs


def _check_size(patch_size) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise PtyAnalysisError(f"patch_size must be a positive whole number of pixels, got {patch_size!r}")
    return int(patch_size)


def _check_fraction(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = float("nan")
    if not (0 < f <= 1):
        raise PtyAnalysisError(f"{name} must be a fraction of the patch area in (0, 1], got {v!r}")
    return f


def _check_count(v, name: str, least: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
        raise PtyAnalysisError(f"{name} must be a whole number >= {least}, got {v!r}")
    return int(v)


def _overlap_fraction(d: np.ndarray, M: int) -> np.ndarray:
    """Overlap area / patch area of M x M patches at integer relative shifts ``d`` (k, 2)."""
    a = np.clip(M - np.abs(d), 0, None)
    return a[:, 0] * a[:, 1] / float(M * M)


def _filter_pairs(pairs: np.ndarray, p: np.ndarray, M: int, min_overlap: float) -> np.ndarray:
    """Keep pairs of distinct rounded positions overlapping by at least ``min_overlap``."""
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    d = np.rint(p[pairs[:, 1]] - p[pairs[:, 0]])
    ok = (np.abs(d).max(axis=1) >= 1) & (_overlap_fraction(d, M) >= min_overlap - 1e-12)
    return pairs[ok]


def overlap_pairs(positions, patch_size: int, *, min_overlap: float = MIN_OVERLAP, max_pairs: int = MAX_PAIRS,
                  neighbours: int = NEIGHBOURS, seed: int = 0) -> np.ndarray:
    """Pairs of neighbouring scan points whose patches overlap.

    Parameters
    ----------
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels.
    patch_size : int
        Side of the (square, possibly cropped) patch compared.
    min_overlap : float
        Least overlap, as a fraction of the patch area (shifts rounded to whole pixels).
    max_pairs : int
        Most pairs returned; more are subsampled (seeded).
    neighbours : int
        Nearest neighbours of each point considered.
    seed : int
        Subsampling seed.

    Returns
    -------
    ndarray of int64, shape (k, 2)
        Index pairs ``(i, j)``, ``i < j``, sorted; pairs at the same rounded
        position are left out (they carry no placement information).
    """
    from scipy.spatial import cKDTree

    p = check_positions(positions)
    M = _check_size(patch_size)
    min_overlap = _check_fraction(min_overlap, "min_overlap")
    max_pairs = _check_count(max_pairs, "max_pairs")
    neighbours = _check_count(neighbours, "neighbours")
    n = len(p)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    tree = cKDTree(p)
    # duplicates (e.g. coinciding group centres) are skipped below, so look a little further
    k = min(n, 2 * neighbours + 1)
    reach = M * (1 - min_overlap) + 1.0  # Chebyshev bound of a shift with enough overlap (+ rounding)
    _, idx = tree.query(p, k=k, p=np.inf, distance_upper_bound=reach)
    idx = np.asarray(idx).reshape(n, k)
    rows = np.repeat(np.arange(n), k)
    cols = idx.reshape(-1)
    ok = (cols < n) & (cols != rows)
    cand = np.stack([rows[ok], cols[ok]], axis=1)
    cand = _filter_pairs(cand, p, M, min_overlap)
    # the first `neighbours` usable neighbours of each point (query order = distance order)
    if len(cand):
        first = np.r_[True, cand[1:, 0] != cand[:-1, 0]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(cand)), 0))
        cand = cand[np.arange(len(cand)) - start < neighbours]
    pairs = np.unique(np.sort(cand, axis=1), axis=0) if len(cand) else np.zeros((0, 2), np.int64)
    if len(pairs) > max_pairs:
        keep = np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False)
        pairs = pairs[np.sort(keep)]
    return pairs.astype(np.int64)


# --------------------------------------------------------------------------- agreement


def pair_agreement(a, b, mask=None) -> np.ndarray:
    """Normalised correlation of two stacks of patch regions, the global complex factor removed.

    Parameters
    ----------
    a, b : array_like, shape (k, H, W)
        Real or complex values (the two sides of k pairs, aligned pixel for pixel).
    mask : array_like of bool, shape (k, H, W), optional
        Pixels compared (default all).

    Returns
    -------
    ndarray, shape (k,), float64
        Complex: ``|sum a' conj(b')| / sqrt(sum |a'|^2 sum |b'|^2)`` with ``a'``,
        ``b'`` the values minus their mean over the mask (in [0, 1], invariant
        to a complex factor between the two); real: the signed Pearson
        correlation (in [-1, 1]). 0 where either side has no contrast or no pixel.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    cplx = np.iscomplexobj(a) or np.iscomplexobj(b)
    dt = np.complex128 if cplx else np.float64
    a = a.astype(dt, copy=False)
    b = b.astype(dt, copy=False)
    if a.shape != b.shape or a.ndim != 3:
        raise PtyAnalysisError(f"a and b must be (k, H, W) stacks of the same shape, got {a.shape} and {b.shape}")
    k = a.shape[0]
    if mask is None:
        n = np.full(k, float(a.shape[1] * a.shape[2]))
    else:
        m = np.asarray(mask, bool)
        if m.shape != a.shape:
            raise PtyAnalysisError(f"mask must have the shape of a and b {a.shape}, got {m.shape}")
        n = m.sum(axis=(1, 2)).astype(np.float64)
        a = np.where(m, a, 0)
        b = np.where(m, b, 0)
    a = a.reshape(k, -1)
    b = b.reshape(k, -1)
    sa, sb = a.sum(axis=1), b.sum(axis=1)
    bc = np.conj(b) if cplx else b
    sab = np.einsum("ki,ki->k", a, bc)
    saa = np.einsum("ki,ki->k", a, np.conj(a) if cplx else a).real
    sbb = np.einsum("ki,ki->k", b, bc).real
    return _agreement(n, sa, sb, sab, saa, sbb, cplx)


def _agreement(n, sa, sb, sab, saa, sbb, cplx: bool) -> np.ndarray:
    """:func:`pair_agreement` from each pair's pixel count and sums (of a, b, a conj(b), |a|^2, |b|^2)."""
    nn = np.maximum(n, 1.0)
    cov = sab - sa * np.conj(sb) / nn
    va = saa - np.abs(sa) ** 2 / nn
    vb = sbb - np.abs(sb) ** 2 / nn
    ok = (n > 1) & (va > _FLAT * np.maximum(saa, 1e-300)) & (vb > _FLAT * np.maximum(sbb, 1e-300))
    den = np.sqrt(np.where(ok, va * vb, 1.0))
    r = np.abs(cov) / den if cplx else cov.real / den
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


@functools.cache
def _moments_kernel():
    """The compiled sums of :func:`_aligned_scores` (built, or read from numba's cache, on first use)."""
    import numba

    @numba.njit(nogil=True, cache=True)
    def moments(P, i, j, d, n, sa, sb, sab, saa, sbb):  # pragma: no cover - compiled
        # pair p: pixel (u, v) of P[i[p]] against pixel (u - d0, v - d1) of P[j[p]], over the rectangle
        # where both exist; one pass, nothing gathered
        H, W = P.shape[1], P.shape[2]
        for p in range(i.shape[0]):
            d0, d1 = d[p, 0], d[p, 1]
            r0, r1 = max(0, d0), min(H, H + d0)
            c0, c1 = max(0, d1), min(W, W + d1)
            A, B = P[i[p]], P[j[p]]
            za, zb, zab = sa[p], sb[p], sab[p]
            qa, qb = 0.0, 0.0
            for u in range(r0, r1):
                for v in range(c0, c1):
                    x = A[u, v]
                    y = B[u - d0, v - d1]
                    yc = np.conj(y)
                    za += x
                    zb += y
                    zab += x * yc
                    qa += (x * np.conj(x)).real
                    qb += (y * yc).real
            n[p] = max(r1 - r0, 0) * max(c1 - c0, 0)
            sa[p], sb[p], sab[p], saa[p], sbb[p] = za, zb, zab, qa, qb

    return moments


def _aligned_scores(P: np.ndarray, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Agreement of patches ``P[i]`` and ``P[j]`` at integer shifts ``d`` (pixel u of i = pixel u - d of j).

    :func:`pair_agreement` of the two patches over the pixels both cover, with the sums taken in one
    compiled pass over the patch stack (``P`` float64 or complex128), nothing gathered.
    """
    k = len(i)
    P = np.ascontiguousarray(P)
    n = np.zeros(k, np.float64)
    sa, sb, sab = (np.zeros(k, P.dtype) for _ in range(3))
    saa, sbb = np.zeros(k, np.float64), np.zeros(k, np.float64)
    _moments_kernel()(P, np.asarray(i, np.int64), np.asarray(j, np.int64), np.ascontiguousarray(d, np.int64),
                      n, sa, sb, sab, saa, sbb)
    return _agreement(n, sa, sb, sab, saa, sbb, np.iscomplexobj(P))


# --------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class PlacementAudit:
    """What :func:`placement_audit` found.

    Attributes
    ----------
    status : str
        ``"supported"`` (the convention used fits the overlaps as well as the
        best, within the tolerance), ``"contradicted"`` (another convention
        fits clearly better) or ``"undetermined"`` (the overlaps say nothing:
        see ``reason``).
    used : str
        Name of the convention the caller's reassembly used.
    best : str or None
        The best-fitting candidate (of its class, the one closest to ``used``);
        None when undetermined.
    best_class : tuple of str
        The candidates that fit exactly as well as ``best`` (it and
        :func:`equivalent`); empty when undetermined.
    scores : dict
        ``{name: mean agreement}`` of every candidate (:data:`PLACEMENTS` order).
    null_scores : dict
        ``{name: mean agreement with unrelated partners}`` (what no information looks like).
    n_pairs : int
        Pairs compared.
    margin : float or None
        Best class's agreement minus the second-best class's.
    margin_used : float or None
        Best agreement minus the convention used's (0 when it is the best).
    supported : bool or None
        True when supported, False when contradicted, None when undetermined.
    reason : str
        Why undetermined ("" otherwise).
    tolerance : float
        Smallest difference of agreement that counts.
    kind : str
        ``"complex"`` or ``"real"`` (how agreement was measured, module docstring).
    patch_size : int
        Side of the patch region compared (after ``crop``).
    min_overlap : float
        Least overlap of a compared pair (fraction of the area).
    """

    status: str
    used: str
    best: str | None
    best_class: tuple
    scores: dict = field(default_factory=dict)
    null_scores: dict = field(default_factory=dict)
    n_pairs: int = 0
    margin: float | None = None
    margin_used: float | None = None
    supported: bool | None = None
    reason: str = ""
    tolerance: float = TOLERANCE
    kind: str = "complex"
    patch_size: int = 0
    min_overlap: float = MIN_OVERLAP

    @property
    def determined(self) -> bool:
        """Whether the overlaps decided anything (status is not ``"undetermined"``)."""
        return self.status != "undetermined"

    def to_dict(self) -> dict:
        """JSON-ready record: every field (floats rounded to 6 digits) plus ``text`` (:func:`placement_text`)."""
        def r(v):
            return None if v is None or not math.isfinite(v) else round(float(v), 6)

        return {"status": self.status, "used": self.used, "best": self.best, "best_class": list(self.best_class),
                "supported": self.supported, "margin": r(self.margin), "margin_used": r(self.margin_used),
                "scores": {k: r(v) for k, v in self.scores.items()},
                "null_scores": {k: r(v) for k, v in self.null_scores.items()},
                "n_pairs": int(self.n_pairs), "reason": self.reason, "tolerance": float(self.tolerance),
                "kind": self.kind, "patch_size": int(self.patch_size), "min_overlap": float(self.min_overlap),
                "text": placement_text(self)}

    def text(self) -> str:
        """One sentence in physics words (:func:`placement_text`)."""
        return placement_text(self)


def _as_stack(patches) -> np.ndarray:
    p = np.asarray(patches)
    if p.ndim == 4 and p.shape[-1] == 1:
        p = p[..., 0]
    if p.ndim != 3 or p.shape[1] != p.shape[2] or p.shape[1] == 0:
        raise PtyAnalysisError(f"patches must have shape (n, N, N) or (n, N, N, 1) with square N x N patches, "
                               f"got {np.shape(patches)}")
    if not (np.issubdtype(p.dtype, np.number) and not np.issubdtype(p.dtype, np.bool_)):
        raise PtyAnalysisError(f"patches must be real or complex numbers, got dtype {p.dtype}")
    return p


def _null_partners(p: np.ndarray, i: np.ndarray, j: np.ndarray, M: int, rng) -> np.ndarray:
    """A random partner for each pair, not overlapping either patch when the scan allows it."""
    n = len(p)
    r = rng.integers(0, n, len(i))
    for _ in range(16):
        bad = (r == i) | (r == j) | (np.abs(p[r] - p[j]).max(axis=1) < M) | (np.abs(p[r] - p[i]).max(axis=1) < M)
        if not bad.any():
            break
        r[bad] = rng.integers(0, n, int(bad.sum()))
    same = (r == i) | (r == j)  # a tiny scan: any other patch will do
    while same.any() and n > 2:
        r[same] = rng.integers(0, n, int(same.sum()))
        same = (r == i) | (r == j)
    return r


def _undetermined(used, reason, **kw) -> PlacementAudit:
    return PlacementAudit(status="undetermined", used=used, best=None, best_class=(), reason=reason, **kw)


def placement_audit(patches, positions, *, convention_used="as used", crop: int | None = None, pairs=None,
                    max_pairs: int = MAX_PAIRS, min_overlap: float = MIN_OVERLAP, neighbours: int = NEIGHBOURS,
                    tolerance: float = TOLERANCE, seed: int = 0) -> PlacementAudit:
    """Which placement convention the overlaps of neighbouring patches support (module docstring).

    Parameters
    ----------
    patches : array_like, shape (n, N, N) or (n, N, N, 1)
        A model's output patches, real or complex (only the compared ones are read).
    positions : array_like, shape (n, 2)
        Their scan positions, (row, col) patch centres in object pixels, as the
        reassembly used them.
    convention_used : str or Placement
        The convention of the caller's reassembly (default the identity, "as used").
    crop : int, optional
        Compare only the central ``crop x crop`` of each patch (as stitched with
        that crop; its pixel ``crop // 2`` is the patch's ``N // 2``). Default the whole patch.
    pairs : array_like of int, shape (k, 2), optional
        Index pairs to compare (default :func:`overlap_pairs`); pairs that do
        not overlap by ``min_overlap`` at ``positions`` are dropped.
    max_pairs : int
        Most pairs compared.
    min_overlap : float
        Least overlap of a pair, fraction of the (cropped) patch area.
    neighbours : int
        Nearest neighbours per scan point considered for pairs.
    tolerance : float
        Smallest difference of mean agreement that counts (it must also exceed
        :data:`Z_SCORE` standard errors).
    seed : int
        Seed of the pair subsample and of the null partners.

    Returns
    -------
    PlacementAudit

    Raises
    ------
    PtyAnalysisError
        Patches not (n, N, N), positions not (n, 2) finite, counts that differ,
        fewer than 2 positions, a bad crop, pair index or parameter.
    """
    P = _as_stack(patches)
    n, N = P.shape[0], P.shape[1]
    used = placement(convention_used).name
    if n < 2:
        raise PtyAnalysisError(f"a placement audit needs at least 2 patches and positions, got {n}")
    pos = check_positions(positions, n)
    if crop is None:
        M = N
    else:
        M = _check_count(crop, "crop")
        if M > N:
            raise PtyAnalysisError(f"crop must be between 1 and the patch size {N}, got {crop}")
    min_overlap = _check_fraction(min_overlap, "min_overlap")
    max_pairs = _check_count(max_pairs, "max_pairs")
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        tolerance = float("nan")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise PtyAnalysisError(f"tolerance must be a non-negative number (agreement units), got {tolerance!r}")
    rng = np.random.default_rng(seed)
    if pairs is None:
        pr = overlap_pairs(pos, M, min_overlap=min_overlap, max_pairs=max_pairs, neighbours=neighbours, seed=seed)
    else:
        pr = np.asarray(pairs)
        if pr.ndim != 2 or pr.shape[1] != 2 or (pr.size and pr.dtype.kind not in "iu"):
            raise PtyAnalysisError(f"pairs must be a (k, 2) array of patch indices, got shape {pr.shape} "
                                   f"dtype {pr.dtype}")
        pr = pr.astype(np.int64).reshape(-1, 2)
        if pr.size and (pr.min() < 0 or pr.max() >= n):
            raise PtyAnalysisError(f"pairs index patches 0..{n - 1}, got indices {int(pr.min())}..{int(pr.max())}")
        pr = _filter_pairs(pr, pos, M, min_overlap)
        if len(pr) > max_pairs:
            pr = pr[np.sort(rng.choice(len(pr), size=max_pairs, replace=False))]
    kind = "complex" if np.iscomplexobj(P) else "real"
    common = {"tolerance": tolerance, "kind": kind, "patch_size": M, "min_overlap": min_overlap}
    if len(pr) == 0:
        return _undetermined(used, f"no two patches overlap by at least {min_overlap:.0%} of their {M} x {M} "
                                   "area (a scan too sparse, or a crop too small)", **common)
    i, j = pr[:, 0], pr[:, 1]
    r = _null_partners(pos, i, j, M, rng)
    # only the compared patches are read (and cropped): the stack itself may be large
    need, inv = np.unique(np.concatenate([i, j, r]), return_inverse=True)
    s0 = patch_centre(N) - patch_centre(M)
    Q = np.asarray(P[need][:, s0:s0 + M, s0:s0 + M])
    li, lj, lr = np.split(inv, 3)
    finite = np.isfinite(Q).all(axis=(1, 2))
    keep = finite[li] & finite[lj] & finite[lr]
    if not keep.any():
        return _undetermined(used, "every patch compared holds NaN or Inf", n_pairs=0, **common)
    li, lj, lr = li[keep], lj[keep], lr[keep]
    i, j = i[keep], j[keep]
    mag = np.abs(Q[finite])
    top = float(mag.max()) if mag.size else 0.0
    if top == 0:
        return _undetermined(used, f"every patch compared is 0 (of {len(need):,} sampled): an all-zero output "
                                   "shows nothing to place", n_pairs=int(len(i)), **common)
    ref = Q[li[0]]
    if np.all(np.abs(Q[finite] - ref) <= 1e-6 * top):
        return _undetermined(used, f"every patch compared is the same (of {len(need):,} sampled): the output does "
                                   "not depend on where it was taken (a collapsed model)", n_pairs=int(len(i)),
                             **common)
    dtype = np.complex128 if kind == "complex" else np.float64
    Q = Q.astype(dtype, copy=False)
    scores, nulls = {}, {}
    for c in PLACEMENTS:
        pc = c.apply_positions(pos[np.concatenate([i, j])])
        d = np.rint(pc[len(i):] - pc[:len(i)]).astype(np.int64)
        Qc = np.ascontiguousarray(c.apply_patches(Q))
        scores[c.name] = _aligned_scores(Qc, li, lj, d)
        nulls[c.name] = _aligned_scores(Qc, li, lr, d)
    return _decide(used, scores, nulls, **common)


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("inf")


def _closest(names, used: str) -> str:
    u = placement(used).flags()
    return min(names, key=lambda nm: (sum(a != b for a, b in zip(placement(nm).flags(), u)),
                                      [p.name for p in PLACEMENTS].index(nm)))


def _decide(used, scores: dict, nulls: dict, *, tolerance, kind, patch_size, min_overlap) -> PlacementAudit:
    k = len(next(iter(scores.values())))
    mean = {nm: float(v.mean()) for nm, v in scores.items()}
    null = {nm: float(v.mean()) for nm, v in nulls.items()}
    common = {"scores": mean, "null_scores": null, "n_pairs": k, "tolerance": tolerance, "kind": kind,
              "patch_size": patch_size, "min_overlap": min_overlap}
    if k < MIN_PAIRS:
        return _undetermined(used, f"only {k} overlapping pair(s) could be compared (at least {MIN_PAIRS} needed)",
                             **common)
    classes = []
    for p in PLACEMENTS:
        if not any(p.name in c for c in classes):
            classes.append((p.name, equivalent(p.name)))
    cls_score = {c: max(mean[c[0]], mean[c[1]]) for c in classes}
    ranked = sorted(classes, key=lambda c: -cls_score[c])
    best_cls, second = ranked[0], ranked[1]
    rep = max(best_cls, key=lambda nm: mean[nm])
    # information: neighbours must agree better than unrelated patches at the same shifts
    gain = scores[rep] - nulls[rep]
    if not float(gain.mean()) > max(tolerance, Z_SCORE * _se(gain)):
        return _undetermined(used, f"neighbouring patches agree no better than unrelated ones (best "
                                   f"{mean[rep]:.2f}, unrelated partners {null[rep]:.2f}): the patches do not "
                                   "show where they were taken (a flat, noisy or collapsed output)", **common)
    used_cls = next(c for c in classes if used in c)
    used_rep = max(used_cls, key=lambda nm: mean[nm])
    diff = scores[rep] - scores[used_rep]
    worse = used_cls != best_cls and float(diff.mean()) > max(tolerance, Z_SCORE * _se(diff))
    best = used if used in best_cls else _closest(best_cls, used)
    return PlacementAudit(status="contradicted" if worse else "supported", used=used, best=best,
                          best_class=tuple(nm for nm in (p.name for p in PLACEMENTS) if nm in best_cls),
                          margin=cls_score[best_cls] - cls_score[second],
                          margin_used=cls_score[best_cls] - cls_score[used_cls], supported=not worse, **common)


# --------------------------------------------------------------------------- words


def _fault_words(best: str, used: str) -> str:
    b, u = placement(best), placement(used)
    words = []
    if b.sign != u.sign:
        words.append("has its offset sign flipped (positions mirrored through the scan centre)")
    if b.swap_xy != u.swap_xy:
        words.append("reads x as y and y as x (position order swapped)")
    if b.transpose != u.transpose:
        words.append("transposes each patch (rows and columns exchanged)")
    return " and ".join(words) if words else "places the patches as they should be"


def placement_text(audit: PlacementAudit) -> str:
    """One sentence in physics words on a :class:`PlacementAudit`.

    Examples: ``"the overlaps agree best with offsets negated (agreement 0.93 vs
    0.41 as used): the reassembly has its offset sign flipped (...)"``;
    ``"placement undetermined: every patch compared is 0 ..."``.
    """
    if audit.status == "undetermined":
        return f"placement undetermined: {audit.reason}"
    s = audit.scores
    best, used = audit.best, audit.used
    twin = [nm for nm in audit.best_class if nm != best]
    also = (f" (or, exactly as well, {twin[0]}: the overlaps cannot tell the two apart, they differ by a "
            "transpose of the whole image)") if twin else ""
    if audit.status == "contradicted":
        return (f"the overlaps agree best with {best} (agreement {s[best]:.2f} vs {s[used]:.2f} {used}, "
                f"{audit.n_pairs} pairs){also}: the reassembly {_fault_words(best, used)}")
    others = [nm for nm in s if nm not in audit.best_class]
    nxt = max(others, key=lambda nm: s[nm]) if others else None
    nxt_txt = f"; next best {nxt} {s[nxt]:.2f}" if nxt else ""
    if best == used:
        return (f"the overlaps agree best with the convention used ({used}: agreement {s[used]:.2f}{nxt_txt}, "
                f"{audit.n_pairs} pairs): the placement is consistent")
    return (f"the overlaps agree about as well with the convention used ({used}, agreement {s[used]:.2f}) as with "
            f"the best, {best} ({s[best]:.2f}, {audit.n_pairs} pairs): no sign of a placement fault")

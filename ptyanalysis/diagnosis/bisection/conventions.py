"""Conventions people get wrong, as interventions that are tried only where they apply.

A generic intervention ("match the passing set's mean and std") can make a failing input pass without
saying what went wrong. The conventions here name the mistake in physics words and undo exactly it:

* ``mask_pixels`` (specificity 0): a few detector pixels hot (or dead) in nearly every failing frame and not
  in the passing set; each is replaced by the median of its 8 neighbours;
* ``unwrap_integers`` (0): signed integers with wrapped (large negative) values where the passing set is
  non-negative; 2**bits is added to the negative values and the result is float32;
* ``fftshift`` / ``ifftshift`` (1): the mean pattern matches the passing set's only after the shift of the
  detector axes (for odd N the two differ: the one that matches);
* ``dequantise`` (1): an 8-bit export (at most 256 regular levels filling most of 0..255) where the passing
  set has many distinct values; the levels are rescaled to the passing set's range as float32;
* ``conjugate`` (1): a complex input (a probe) that matches the passing set only conjugated;
* ``transpose``, ``flip_rows``, ``flip_cols`` (2): the mean pattern matches the passing set's much better
  after the operation on the detector axes (1, 2);
* ``sqrt`` / ``square`` (2): the failing values' distribution is that of the passing set's values squared
  (intensities for amplitudes) / square-rooted;
* ``negate``, ``swap_xy`` (2): a position-like input matches only negated / with its axis of length 2
  reversed ([y, x] for [x, y]);
* ``rescale_units`` (3): a position-like input matches only rescaled by a large factor (a power of ten, or a
  pixel size: x300 and more).

:func:`applicable` runs the detectors on one input; :func:`apply` undoes the convention from the
:class:`ConventionFix`'s evidence alone (so the engine can re-apply it to any subsample of the failing set);
:func:`fix_text` and :func:`reason_text` put it in words. Detectors are conservative: on a healthy input
(failing drawn like passing), on inputs they do not fit (a scalar per sample, a complex probe for a real-valued
convention, an integer index) and on sets of fewer than 2 samples they return nothing; the engine then
confirms every proposed fix by running the model.

Inputs are arrays with samples first. Patterns are ``(B, H, W)`` or ``(B, H, W, C)`` (channels last, at most
8 channels, H and W at least 8): detector rows are axis 1, columns axis 2. Position-like inputs hold at most
16 values per sample (``(B, 2)``, ``(B, 1, 2, C)`` ...).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...errors import PtyAnalysisError, did_you_mean

#: Every convention fix, with its specificity (lower = more specific, wins ties between fixes that restore
#: as much).
SPECIFICITY = {"mask_pixels": 0, "unwrap_integers": 0, "fftshift": 1, "ifftshift": 1, "dequantise": 1,
               "conjugate": 1, "transpose": 2, "flip_rows": 2, "flip_cols": 2, "sqrt": 2, "square": 2,
               "negate": 2, "swap_xy": 2, "rescale_units": 3}
NAMES = tuple(SPECIFICITY)

#: Samples the set-level statistics use (evenly spaced, no random draw).
MAX_SAMPLES = 2000
#: Values a distribution statistic uses (quantiles, distinct values).
MAX_VALUES = 1_000_000
#: Values the per-pixel detectors hold in memory at once (frames x pixels).
MAX_PIXEL_VALUES = 4_000_000
#: Frames the per-pixel detectors use at most.
MAX_FRAMES = 256
#: At most this many masked pixels make "a few pixels" (more is a different fault).
MAX_PIXELS = 16
#: Quantile levels of the distribution comparisons.
LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ConventionFix:
    """One convention fix on one input.

    Attributes
    ----------
    name : str
        One of :data:`NAMES`.
    input : str
        The input name.
    evidence : dict
        JSON-friendly numbers that justify the fix and everything :func:`apply` needs (axes, pixels, factor,
        quantisation step ...): ``apply`` reads nothing else.
    specificity : int
        Lower = more specific (:data:`SPECIFICITY`); breaks ties between fixes that restore as much.

    Notes
    -----
    Hashable (the engine keys experiments by change): the hash leaves out ``evidence`` (a dict); equality
    compares every field.
    """

    name: str
    input: str
    evidence: dict = field(hash=False)
    specificity: int


# ----------------------------------------------------------------------------- helpers
def _check_name(name: str) -> None:
    if name not in SPECIFICITY:
        raise PtyAnalysisError(f"unknown convention fix {name!r}: expected one of {', '.join(NAMES)}"
                               + did_you_mean(name, NAMES))


def _fix(name, k, evidence, quality=0.0):
    """A fix and its sort key (specificity, then how much better the corrected values match)."""
    return ConventionFix(name, k, evidence, SPECIFICITY[name]), (SPECIFICITY[name], float(quality))


def _row_index(n: int, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced row numbers of ``n`` (deterministic, no random draw)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def _rows(x: np.ndarray, k: int, values: int | None = None) -> np.ndarray:
    """At most ``k`` evenly spaced samples of ``x`` (and at most about ``values`` values, at least 2 samples)."""
    if values is not None:
        per = max(1, int(np.prod(x.shape[1:])))
        k = max(2, min(k, values // per))
    if x.shape[0] <= k:
        return x
    return x[_row_index(x.shape[0], k)]


def _flat(x: np.ndarray) -> np.ndarray:
    """The finite values of at most :data:`MAX_SAMPLES` evenly spaced samples holding about
    :data:`MAX_VALUES` values, float64."""
    v = _rows(x, MAX_SAMPLES, MAX_VALUES).ravel().astype(np.float64)
    return v[np.isfinite(v)]


def _real(x: np.ndarray) -> bool:
    return x.dtype.kind in "fiu"


def _is_pattern(x: np.ndarray) -> bool:
    """``(B, H, W)`` or ``(B, H, W, C)`` with H, W >= 8 and C <= 8."""
    return (x.ndim in (3, 4) and x.shape[1] >= 8 and x.shape[2] >= 8
            and (x.ndim == 3 or x.shape[3] <= 8))


def _is_vector(x: np.ndarray) -> bool:
    """At most 16 values per sample (positions, offsets, scalars)."""
    return x.ndim >= 1 and 1 <= int(np.prod(x.shape[1:])) <= 16


def _targets(f, passing, reference):
    """``(label, values)`` the failing values are compared with: the passing set, then the reference."""
    out = []
    for label, t in (("passing", passing), ("reference", reference)):
        if t is not None and isinstance(t, np.ndarray) and t.ndim == f.ndim and t.shape[1:] == f.shape[1:] \
                and t.shape[0] >= 2:
            out.append((label, t))
    return out


def _num(v, digits=4):
    """A JSON-friendly float to ``digits`` significant digits."""
    v = float(v)
    return float(f"{v:.{digits}g}") if np.isfinite(v) else None


# ----------------------------------------------------------------------------- patterns: geometry
def _mean_pattern(x: np.ndarray) -> np.ndarray:
    """Mean |pattern| over the samples and channels, (H, W) float64, clipped at its 99th percentile (so that a
    hot pixel does not dominate the comparisons; the central beam becomes a plateau that still shows where
    it is)."""
    idx = _row_index(x.shape[0], MAX_SAMPLES)
    block = max(1, MAX_PIXEL_VALUES // max(1, int(np.prod(x.shape[1:]))))
    m = np.zeros(x.shape[1:])
    for i in range(0, len(idx), block):  # in blocks: no float64 copy of thousands of frames
        v = np.nan_to_num(x[idx[i:i + block]].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        m += np.abs(v).sum(axis=0)
    m = m / max(1, len(idx))
    m = m.mean(axis=-1) if m.ndim == 3 else m
    return np.minimum(m, np.quantile(m, 0.99))


def _pattern_error(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance between two mean patterns, each normalised to unit sum (scale-free)."""
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        return np.inf
    na, nb = a / sa, b / sb
    return float(np.linalg.norm(na - nb) / max(np.linalg.norm(nb), 1e-300))


_GEOMETRY = {
    "fftshift": lambda m: np.fft.fftshift(m, axes=(0, 1)),
    "ifftshift": lambda m: np.fft.ifftshift(m, axes=(0, 1)),
    "transpose": lambda m: m.T,
    "flip_rows": lambda m: m[::-1, :],
    "flip_cols": lambda m: m[:, ::-1],
}


def _geometry(k, f, p, label):
    """fftshift / ifftshift / transpose / flips of the detector axes, from the mean patterns."""
    mf, mp = _mean_pattern(f), _mean_pattern(p)
    ps = p[_row_index(p.shape[0], MAX_SAMPLES)] if p.shape[0] > MAX_SAMPLES else p
    floor = _pattern_error(_mean_pattern(ps[0::2]), _mean_pattern(ps[1::2]))  # the passing set's own noise
    d0 = _pattern_error(mf, mp)
    if not np.isfinite(d0) or not np.isfinite(floor) or d0 < max(0.15, 4.0 * floor):
        return []
    H, W = mf.shape
    errs = {}
    for name, op in _GEOMETRY.items():
        if name == "transpose" and H != W:
            continue
        errs[name] = _pattern_error(op(mf), mp)
    if H % 2 == 0 and W % 2 == 0:  # the two shifts are one and the same: name it by where the beam sits
        shift = "fftshift" if _near_corner(mf) else "ifftshift"
        errs = {n: e for n, e in errs.items() if n not in ("fftshift", "ifftshift") or n == shift}
    else:  # odd N: only the shift that matches better
        worse = max(("fftshift", "ifftshift"), key=lambda n: errs[n])
        errs.pop(worse)
    good = {n: e for n, e in errs.items() if e <= 0.5 * d0 and e < d0 - 2.0 * floor}
    if not good:
        return []
    best = min(good.values())
    pf, pp = _peak(mf), _peak(mp)
    out = []
    for name, e in good.items():
        if e > 1.5 * best + floor:
            continue
        ev = {"axes": [1, 2], "shape": list(f.shape[1:]), "against": label, "match_error_before": _num(d0),
              "match_error_after": _num(e), "noise_floor": _num(floor), "failing_peak": pf, "passing_peak": pp,
              "peak_after": _peak(_GEOMETRY[name](mf))}
        out.append(_fix(name, k, ev, e / d0))
    return out


def _peak(m: np.ndarray) -> list:
    """Where the (clipped) mean pattern is brightest, over 3 x 3 pixels (periodic: a beam split over the four
    corners counts as one)."""
    box = sum(np.roll(m, (dr, dc), axis=(0, 1)) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
    r, c = np.unravel_index(int(np.argmax(box)), m.shape)
    return [int(r), int(c)]


def _near_corner(m: np.ndarray) -> bool:
    """The pattern's peak lies nearer a corner than the centre."""
    H, W = m.shape
    r, c = _peak(m)
    dr, dc = min(r, H - r), min(c, W - c)  # distance to the nearest corner (periodic)
    return dr * dr + dc * dc < (r - H / 2) ** 2 + (c - W / 2) ** 2


# ----------------------------------------------------------------------------- amplitude vs intensity
def _trimmed_mean(v: np.ndarray) -> float:
    """Mean of the values up to their 99.5th percentile (a few hot pixels do not move it)."""
    if not v.size:
        return 0.0
    return float(v[v <= np.quantile(v, 0.995)].mean())


def _shape_quantiles(v: np.ndarray):
    """Quantiles of non-negative values divided by their (trimmed) mean: scale-free; or None."""
    m = _trimmed_mean(v)
    if not m > 0:
        return None
    return np.quantile(v, LEVELS) / m


def _shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |log ratio| of two sets of scale-free quantiles (a quantile near 0 counts as 1e-3 of the mean)."""
    return float(np.mean(np.abs(np.log((a + 1e-3) / (b + 1e-3)))))


def _power(k, f, targets):
    """``sqrt`` (intensities fed for amplitudes) or ``square`` (amplitudes for intensities)."""
    vf = _flat(f)
    if vf.size < 64 or vf.min() < 0 or np.unique(vf[:4096]).size < 8:
        return []
    for label, t in targets:
        vt = _flat(t)
        if vt.size < 64 or vt.min() < 0:
            continue
        qt, qf = _shape_quantiles(vt), _shape_quantiles(vf)
        if qt is None or qf is None:
            continue
        d0 = _shape_distance(qf, qt)
        if d0 < 0.3:
            continue
        for name, g in (("sqrt", np.sqrt), ("square", np.square)):
            gv = g(vf)
            qg = _shape_quantiles(gv)
            if qg is None:
                continue
            d1 = _shape_distance(qg, qt)
            if d1 <= 0.3 * d0 and d1 <= 0.1:
                ratio = _trimmed_mean(vt) / _trimmed_mean(gv)
                ev = {"against": label, "shape": list(f.shape[1:]), "distance_before": _num(d0),
                      "distance_after": _num(d1), "failing_mean": _num(_trimmed_mean(vf)),
                      "passing_mean": _num(_trimmed_mean(vt)), "mean_after": _num(_trimmed_mean(gv)),
                      "failing_p99": _num(np.quantile(vf, 0.99)), "passing_p99": _num(np.quantile(vt, 0.99)),
                      "scale": 1.0 if abs(np.log(ratio)) <= np.log(1.25) else _num(ratio, 3),
                      "dtype": str(t.dtype) if t.dtype.kind == "f" else "float32"}
                return [_fix(name, k, ev, d1 / d0)]
    return []


# ----------------------------------------------------------------------------- complex: conjugation
def _phase_gradients(x: np.ndarray) -> np.ndarray:
    """Amplitude-weighted mean phase step (rad per pixel) along each non-sample axis longer than 1."""
    out = []
    for a in range(1, x.ndim):
        if x.shape[a] < 2:
            continue
        lo = np.take(x, np.arange(x.shape[a] - 1), axis=a)
        hi = np.take(x, np.arange(1, x.shape[a]), axis=a)
        s = np.sum(hi * np.conj(lo))
        out.append(float(np.angle(s)) if abs(s) > 0 else 0.0)
    return np.asarray(out)


def _phase_curvatures(x: np.ndarray) -> np.ndarray:
    """Amplitude-weighted mean second phase difference (rad per pixel^2, e.g. a defocus) per axis longer than 2."""
    out = []
    for a in range(1, x.ndim):
        if x.shape[a] < 3:
            continue
        n = x.shape[a]
        lo, mid, hi = (np.take(x, np.arange(i, n - 2 + i), axis=a) for i in range(3))
        s = np.sum(hi * lo * np.conj(mid) ** 2)
        out.append(float(np.angle(s)) if abs(s) > 0 else 0.0)
    return np.asarray(out)


def _odd(x: np.ndarray) -> np.ndarray:
    """Global-phase-free features that a complex conjugation negates: mean phase gradients and curvatures."""
    return np.concatenate([_phase_gradients(x), _phase_curvatures(x)])


def _conjugate(k, f, targets):
    """A complex input (a probe) that matches the passing set only conjugated."""
    f = np.nan_to_num(_rows(f, MAX_SAMPLES, MAX_PIXEL_VALUES).astype(np.complex128))
    af = float(np.mean(np.abs(f)))
    if not af > 0:
        return []
    for label, t in targets:
        if t.dtype.kind != "c":
            continue
        t = np.nan_to_num(_rows(t, MAX_SAMPLES, MAX_PIXEL_VALUES).astype(np.complex128))
        at = float(np.mean(np.abs(t)))
        if not at > 0 or abs(np.log(af / at)) > np.log(1.25):  # conjugation keeps the amplitudes
            continue
        base = {"against": label, "shape": list(f.shape[1:]),
                "imag_mean_failing": _num(np.mean(f.imag) / af), "imag_mean_passing": _num(np.mean(t.imag) / at),
                "phase_gradient_failing": [_num(g) for g in _phase_gradients(f)],
                "phase_gradient_passing": [_num(g) for g in _phase_gradients(t)]}
        # 1. the mean array (one probe shared by the samples): conj(f) much closer to p than f
        mf, mt = f.mean(axis=0), t.mean(axis=0)
        nt = float(np.linalg.norm(mt))
        if nt > 0.2 * at * np.sqrt(mt.size):
            e0 = float(np.linalg.norm(mf - mt)) / nt
            e1 = float(np.linalg.norm(np.conj(mf) - mt)) / nt
            if e0 > 0.3 and e1 <= 0.3 * e0:
                return [_fix("conjugate", k, {**base, "test": "mean", "error_before": _num(e0),
                                              "error_after": _num(e1)}, e1 / e0)]
        # 2. per-sample probes (any global phase): the phase gradients and curvatures flip sign
        of, ot = _odd(f), _odd(t)
        size = float(np.linalg.norm(ot))
        noise = float(np.linalg.norm(_odd(t[0::2]) - _odd(t[1::2]))) if len(t) >= 4 else size
        if not of.size or size < max(0.02, 4.0 * noise):
            continue
        d0, d1 = float(np.linalg.norm(of - ot)), float(np.linalg.norm(-of - ot))
        if d0 > 0.5 * size and d1 <= 0.3 * d0 and d1 <= 0.3 * size:
            return [_fix("conjugate", k, {**base, "test": "phase_gradients", "error_before": _num(d0 / size),
                                          "error_after": _num(d1 / size), "noise": _num(noise / size)}, d1 / d0)]
    return []


# ----------------------------------------------------------------------------- hot and dead pixels
_OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def _as_bhwc(x: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return v[..., None] if v.ndim == 3 else v


#: A 19-comparator sorting network for 8 values.
_SORT8 = ((0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3), (4, 5), (6, 7),
          (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6))


def _neighbour_median(v: np.ndarray) -> np.ndarray:
    """Median of the 8 neighbours of every pixel of ``v`` (B, H, W, C), borders reflected."""
    pad = np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    H, W = v.shape[1:3]
    s = [pad[:, 1 + dr:1 + dr + H, 1 + dc:1 + dc + W] for dr, dc in _OFFSETS]
    for i, j in _SORT8:  # a sorting network: elementwise min / max, far faster than a partition per pixel
        s[i], s[j] = np.minimum(s[i], s[j]), np.maximum(s[i], s[j])
    return 0.5 * (s[3] + s[4])  # the median of 8: the mean of the 4th and 5th


def _neighbour_count(m: np.ndarray) -> np.ndarray:
    """How many of the 8 neighbours of every pixel of ``m`` (B, H, W, C, bool) are set, borders reflected."""
    pad = np.pad(m, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect").astype(np.uint8)
    H, W = m.shape[1:3]
    return sum(pad[:, 1 + dr:1 + dr + H, 1 + dc:1 + dc + W] for dr, dc in _OFFSETS)


def _pixel_stats(x: np.ndarray):
    """Per pixel and channel: share of frames where it is hot, share where it is 0, its median and 90th
    percentile, the share of frames with lit neighbours and the neighbours' median (frames in blocks)."""
    per = max(1, int(np.prod(x.shape[1:])))
    v = _as_bhwc(_rows(x, max(16, min(MAX_FRAMES, MAX_PIXEL_VALUES // per))))
    hot, zero, lit_nb, nb_zero = (np.zeros(v.shape[1:]) for _ in range(4))
    nb_all = np.empty(v.shape, np.float32)
    block = max(1, MAX_PIXEL_VALUES // (8 * per))
    for i in range(0, len(v), block):
        b = v[i:i + block]
        nb = _neighbour_median(b)
        frame = np.abs(b).mean(axis=(1, 2), keepdims=True)
        hot += (b > 5.0 * np.maximum(nb, frame)).sum(axis=0)
        zero += (b == 0).sum(axis=0)
        nb_zero += (_neighbour_count(b == 0) >= 4).sum(axis=0)  # at least half the neighbours 0
        lit_nb += (nb > 0).sum(axis=0)
        nb_all[i:i + block] = nb
    n = len(v)
    pos = v[v > 0]
    by_pixel = np.ascontiguousarray(v.reshape(n, -1).T)  # frames last: the quantiles partition contiguous rows
    median, q90 = np.quantile(by_pixel, (0.5, 0.9), axis=-1).reshape((2,) + v.shape[1:])
    nb_median = np.median(np.ascontiguousarray(nb_all.reshape(n, -1).T), axis=-1).reshape(v.shape[1:])
    return {"resolution": float(np.quantile(pos, 0.01)) if pos.size else 0.0, "n": n, "hot": hot / n,
            "zero": zero / n, "lit_nb": lit_nb / n, "nb_zero": nb_zero / n, "median": median, "q90": q90,
            "nb_median": nb_median, "frame_median": float(np.median(np.abs(v))),
            "frame_mean": float(np.mean(np.abs(v))), "lit": (v > 0).mean(axis=0)}


def _small_components(mask: np.ndarray, limit: int) -> np.ndarray:
    """The pixels of ``mask`` (H, W, C) in 8-connected groups (per channel) of at most ``limit`` pixels."""
    keep = np.zeros_like(mask)
    seen = np.zeros_like(mask)
    H, W = mask.shape[:2]
    for r, c, ch in np.argwhere(mask):
        if seen[r, c, ch]:
            continue
        group, todo = [], [(r, c)]
        seen[r, c, ch] = True
        while todo:
            i, j = todo.pop()
            group.append((i, j))
            for dr, dc in _OFFSETS:
                a, b = i + dr, j + dc
                if 0 <= a < H and 0 <= b < W and mask[a, b, ch] and not seen[a, b, ch]:
                    seen[a, b, ch] = True
                    todo.append((a, b))
        if len(group) <= limit:
            for i, j in group:
                keep[i, j, ch] = True
    return keep


def _pixels(k, f, targets):
    """Detector pixels hot (or dead) in nearly every failing frame and not in the passing set."""
    if f.shape[0] < 3:
        return []
    sf = _pixel_stats(f)
    for label, t in targets:
        if not _real(t) or not _is_pattern(t):
            continue
        st = _pixel_stats(t)
        tiny = 1e-12 * max(st["frame_mean"], 1e-300)
        hot = ((sf["hot"] >= 0.8) & (st["hot"] <= 0.2)
               & (sf["median"] >= 5.0 * np.maximum(st["q90"], tiny)))
        dead = ((sf["zero"] >= 0.95) & (sf["nb_zero"] <= 0.2) & (st["lit"] >= 0.8)
                & (st["median"] >= 0.5 * st["nb_median"]) & (st["median"] > tiny)
                & (sf["nb_median"] >= 4.0 * sf["resolution"])
                & (sf["lit_nb"] >= 0.8) & (sf["nb_median"] >= 0.25 * st["nb_median"]))
        bright = (sf["median"] > 0) & (sf["median"] >= 5.0 * np.maximum(st["q90"], tiny))
        hot &= _small_components(bright, 4)  # a hot pixel, or a cluster of at most 4, not a bright region
        found = np.argwhere(hot | dead)
        if not len(found) or len(found) > MAX_PIXELS:
            continue
        pixels = []
        for r, c, ch in found:
            is_hot = bool(hot[r, c, ch])
            val = float(sf["median"][r, c, ch])
            ref = sf["frame_median"] if sf["frame_median"] > 0 else sf["frame_mean"]
            pixels.append({"row": int(r), "col": int(c), "channel": int(ch) if f.ndim == 4 else None,
                           "kind": "hot" if is_hot else "dead", "value": _num(val),
                           "frames": _num(sf["hot"][r, c, ch] if is_hot else sf["zero"][r, c, ch], 3),
                           "times_median_pixel": _num(val / ref, 3) if is_hot and ref > 0 else None,
                           "passing_median": _num(st["median"][r, c, ch]),
                           "passing_neighbours": _num(st["nb_median"][r, c, ch])})
        ev = {"pixels": pixels, "shape": list(f.shape[1:]), "against": label, "n_frames": int(sf["n"]),
              "replacement": "median of the 8 neighbours"}
        return [_fix("mask_pixels", k, ev)]
    return []


# ----------------------------------------------------------------------------- integers and 8-bit
def _unwrap(k, f, targets):
    """Signed integers whose values above the dtype's maximum wrapped to negative values."""
    if f.dtype.kind != "i" or f.dtype.itemsize > 4:
        return []
    bits = 8 * f.dtype.itemsize
    v = _rows(f, MAX_SAMPLES)
    neg = v < 0
    count = int(neg.sum())
    if not count or count > 0.5 * v.size:
        return []
    negs = v[neg].astype(np.float64)
    if np.median(negs) > -(2.0 ** (bits - 2)):  # small negatives: a subtracted background, not a wrap
        return []
    for label, t in targets:
        vt = _flat(t) if t.dtype.kind in "fiu" else np.empty(0)
        if not vt.size or vt.min() < 0:
            continue
        rows = int(neg.reshape(len(v), -1).any(axis=1).sum())
        ev = {"bits": bits, "dtype": str(f.dtype), "against": label, "shape": list(f.shape[1:]),
              "negative_values": count, "negative_frames": rows, "n_frames": int(len(v)),
              "min": int(negs.min()), "max_positive": int(v.max()),
              "max_unwrapped": int(negs.max() + 2 ** bits),
              "out_dtype": str(t.dtype) if t.dtype.kind == "f" else "float32"}
        return [_fix("unwrap_integers", k, ev)]
    return []


def _grid(levels: np.ndarray):
    """``(origin, step)`` of values on a regular grid, or None."""
    if levels.size < 2:
        return None
    d = np.diff(levels)
    step = float(d.min())
    if not step > 0:
        return None
    m = d / step
    if np.max(np.abs(m - np.round(m))) > 1e-3:
        return None
    z = levels[0] / step
    origin = 0.0 if abs(z - round(z)) <= 1e-3 and levels[0] >= 0 else float(levels[0])
    return origin, step


def _dequantise(k, f, targets):
    """An 8-bit export: at most 256 regular levels spanning most of 0..255 where the passing set has many."""
    if not _real(f):
        return []
    vf = _flat(f)
    levels = np.unique(vf)
    nd = int(levels.size)
    if nd < 2 or nd > 256 or vf.size < 8 * nd:
        return []
    if f.dtype.kind in "iu":
        if f.dtype.itemsize != 1:  # int16 counts below 256 are low counts, not an 8-bit export
            return []
        origin, step, need = (0.0 if levels[0] >= 0 else -128.0), 1.0, 128
    else:
        g = _grid(levels)
        if g is None:
            return []
        origin, step = g
        need = 128 if abs(step * 255 - 1) < 1e-3 else 240  # k / 255, or levels filling the 8-bit range
    top = int(round((levels[-1] - origin) / step))
    if not need <= top <= 255:
        return []
    for label, t in targets:
        if not _real(t):
            continue
        vt = _flat(t)
        nt = int(np.unique(vt).size)
        if nt < max(1024, 8 * nd) or (f.dtype.kind == "f" and np.all(vt == np.round(vt))):
            continue  # few values, or integer counts against integer counts (another dose, not an export)
        lo, hi = float(vt.min()), float(vt.max())
        if not hi > lo:
            continue
        ev = {"levels": nd, "origin": origin, "step": step, "level_max": top, "full_scale": 255,
              "dtype": str(f.dtype), "against": label, "shape": list(f.shape[1:]), "passing_min": lo,
              "passing_max": hi, "passing_distinct": nt,
              "out_dtype": str(t.dtype) if t.dtype.kind == "f" else "float32"}
        return [_fix("dequantise", k, ev)]
    return []


# ----------------------------------------------------------------------------- positions
def _features(x: np.ndarray) -> np.ndarray:
    """At most :data:`MAX_SAMPLES` samples as (samples, features) float64, non-finite values as NaN."""
    v = _rows(x, MAX_SAMPLES)
    v = v.reshape(len(v), -1).astype(np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _qdist(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between the per-feature quantiles of ``a`` and ``b`` (samples x features), in units of
    ``b``'s per-feature spread."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: NaN, then inf
        qa = np.nanquantile(a, LEVELS[:-1], axis=0)
        qb = np.nanquantile(b, LEVELS[:-1], axis=0)
        rms = float(np.sqrt(np.nanmean(b * b)))
        scale = np.maximum(np.nanstd(b, axis=0), max(0.05 * rms, 1e-300))
    d = np.nanmean(np.abs(qa - qb) / scale)
    return float(d) if np.isfinite(d) else np.inf


def _positions(k, f, targets):
    """``negate``, ``swap_xy`` and ``rescale_units`` of a position-like input."""
    a = _features(f)
    out = []
    for label, t in targets:
        if not _real(t):
            continue
        b = _features(t)
        d0 = _qdist(a, b)
        if not np.isfinite(d0) or d0 < 1.0:
            continue
        # offset sign: failing ~ -passing
        if f.dtype.kind in "fi":
            d1 = _qdist(-a, b)
            if d1 <= 0.25 * d0 and d1 <= 0.5:
                out.append(_fix("negate", k, {"against": label, "shape": list(f.shape[1:]),
                                              "distance_before": _num(d0), "distance_after": _num(d1),
                                              "failing_mean": [_num(m) for m in np.nanmean(a, axis=0)],
                                              "passing_mean": [_num(m) for m in np.nanmean(b, axis=0)]},
                                d1 / d0))
        # x/y order: an axis of length 2 reversed
        best = None
        for ax in range(1, f.ndim):
            if f.shape[ax] != 2:
                continue
            fl = _features(np.flip(f, axis=ax))
            d1 = _qdist(fl, b)
            if d1 <= 0.4 * d0 and d1 <= 0.5 and (best is None or d1 < best[1]):
                best = (ax, d1, fl)
        if best is not None:
            ax, d1, fl = best
            out.append(_fix("swap_xy", k, {"axis": ax, "against": label, "shape": list(f.shape[1:]),
                                           "distance_before": _num(d0), "distance_after": _num(d1),
                                           "failing_mean": [_num(m) for m in np.nanmean(a, axis=0)],
                                           "passing_mean": [_num(m) for m in np.nanmean(b, axis=0)]}, d1 / d0))
        # units: a large factor (a power of ten, or a pixel size)
        if f.dtype.kind == "f":
            with np.errstate(all="ignore"):
                rf, rt = float(np.sqrt(np.nanmean(a * a))), float(np.sqrt(np.nanmean(b * b)))
            if rf > 0 and rt > 0 and np.isfinite(rf) and np.isfinite(rt):
                r = rt / rf
                p10 = int(round(np.log10(r))) if np.isfinite(np.log10(r)) else 0
                snapped = abs(r / 10.0 ** p10 - 1) <= 0.05
                # a power of ten (x10 and more), or a pixel size (x300 and more): not x57.3 for degrees
                if (snapped and 1 <= abs(p10) <= 10) or 2.5 <= abs(np.log10(r)) <= 10:
                    factor = 10.0 ** p10 if snapped else _num(r, 3)
                    d1 = _qdist(a * factor, b)
                    if d1 <= 0.25 * d0 and d1 <= 0.35:
                        out.append(_fix("rescale_units", k, {
                            "factor": factor, "power_of_ten": p10 if snapped else None, "measured_factor": _num(r),
                            "against": label, "shape": list(f.shape[1:]), "distance_before": _num(d0),
                            "distance_after": _num(d1), "failing_rms": _num(rf), "passing_rms": _num(rt)}, d1 / d0))
        if out:
            return out
    return []


# ----------------------------------------------------------------------------- the API
def applicable(name: str, failing: np.ndarray, passing: np.ndarray,
               reference: np.ndarray | None = None) -> list[ConventionFix]:
    """Every convention fix that applies to this input, most specific first.

    Cheap: no model call; each detector is statistics on at most :data:`MAX_SAMPLES` samples
    (:data:`MAX_FRAMES` frames for the per-pixel detectors).

    Parameters
    ----------
    name : str
        The input name.
    failing, passing : ndarray
        The failing and passing values of the input (samples first).
    reference : ndarray or None
        Values drawn like the training inputs, a second yardstick where the passing set does not match.

    Returns
    -------
    list of ConventionFix
        Sorted by specificity, then by how much better the corrected values match. Empty for a healthy input,
        for inputs no convention fits, and when either set has fewer than 2 samples.
    """
    try:
        failing, passing = np.asarray(failing), np.asarray(passing)
        reference = None if reference is None else np.asarray(reference)
    except (TypeError, ValueError):  # an object numpy cannot read as an array: no convention applies
        return []
    if failing.ndim < 1 or passing.ndim < 1 or failing.shape[0] < 2 or passing.shape[0] < 2:
        return []
    if failing.ndim != passing.ndim or failing.shape[1:] != passing.shape[1:] or failing.size == 0:
        return []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features, empty slices: the detectors say no
        found = _detect(name, failing, passing, _targets(failing, passing, reference))
    found.sort(key=lambda fk: fk[1])
    return [f for f, _ in found]


def _detect(name, failing, passing, targets) -> list:
    found = []
    if failing.dtype.kind == "c":
        found += _conjugate(name, failing, targets)
    elif _real(failing):
        found += _unwrap(name, failing, targets)
        found += _dequantise(name, failing, targets)
        if _is_pattern(failing):
            found += _pixels(name, failing, targets)
            if _real(passing):
                found += _geometry(name, failing, passing, "passing")
        found += _power(name, failing, [(lab, t) for lab, t in targets if _real(t)])
        if _is_vector(failing):
            found += _positions(name, failing, targets)
    return found


def _check_shape(fix: ConventionFix, values: np.ndarray) -> None:
    shape = fix.evidence.get("shape")
    if shape is not None and list(values.shape[1:]) != list(shape):
        raise PtyAnalysisError(f"convention fix {fix.name!r} of {fix.input!r} was found on values of shape "
                               f"(n, {', '.join(map(str, shape))}); these have shape {values.shape}")


def _out_dtype(values: np.ndarray, name) -> np.dtype:
    return np.dtype(name) if values.dtype.kind not in "f" else values.dtype


def _mask(values: np.ndarray, pixels: list) -> np.ndarray:
    """Each listed pixel set to the median of its (unmasked) 8 neighbours, frame by frame."""
    out = values.copy() if values.dtype.kind == "f" else values.astype(np.float32)
    v = out if out.ndim == 4 else out[..., None]
    H, W = v.shape[1:3]
    masked = {(p["row"], p["col"], p["channel"] or 0) for p in pixels}
    for p in pixels:
        r, c, ch = p["row"], p["col"], p["channel"] or 0
        nb = [(r + dr, c + dc) for dr, dc in _OFFSETS
              if 0 <= r + dr < H and 0 <= c + dc < W and (r + dr, c + dc, ch) not in masked]
        if not nb:
            v[:, r, c, ch] = 0
            continue
        vals = np.stack([_values_at(values, rr, cc, ch) for rr, cc in nb], axis=1).astype(np.float64)
        v[:, r, c, ch] = np.median(vals, axis=1)
    return out


def _values_at(values: np.ndarray, r: int, c: int, ch: int) -> np.ndarray:
    """The values of one detector pixel (all frames)."""
    return values[:, r, c, ch] if values.ndim == 4 else values[:, r, c]


def apply(fix: ConventionFix, values: np.ndarray) -> np.ndarray:
    """The corrected values (from ``fix.evidence`` alone: works on any subsample of the failing input).

    Parameters
    ----------
    fix : ConventionFix
    values : ndarray
        Failing values of ``fix.input`` (any number of samples; the shape the fix was found on).

    Returns
    -------
    ndarray
        Same sample count. Dtype float32 (or the passing set's float dtype) where the fix changes the dtype
        (``unwrap_integers``, ``dequantise``; ``sqrt``/``square``/``mask_pixels``/``rescale_units``/``negate``
        of integers), else the input's dtype.

    Raises
    ------
    PtyAnalysisError
        For an unknown fix name or values of another shape than the fix was found on.
    """
    _check_name(fix.name)
    values = np.asarray(values)
    _check_shape(fix, values)
    ev, n = fix.evidence, fix.name
    if n in ("fftshift", "ifftshift"):
        op = np.fft.fftshift if n == "fftshift" else np.fft.ifftshift
        return np.ascontiguousarray(op(values, axes=tuple(ev.get("axes", (1, 2)))))
    if n == "transpose":
        return np.ascontiguousarray(np.swapaxes(values, 1, 2))
    if n == "flip_rows":
        return np.ascontiguousarray(np.flip(values, axis=1))
    if n == "flip_cols":
        return np.ascontiguousarray(np.flip(values, axis=2))
    if n in ("sqrt", "square"):
        v = np.clip(values.astype(np.float64), 0, None)
        v = (np.sqrt(v) if n == "sqrt" else v * v) * float(ev.get("scale", 1.0) or 1.0)
        return v.astype(_out_dtype(values, ev.get("dtype", "float32")))
    if n == "conjugate":
        return np.conj(values)
    if n == "mask_pixels":
        return _mask(values, ev["pixels"])
    if n == "unwrap_integers":
        v = values.astype(np.float64)
        v[v < 0] += 2.0 ** int(ev["bits"])
        return v.astype(ev.get("out_dtype", "float32"))
    if n == "dequantise":
        level = (values.astype(np.float64) - float(ev["origin"])) / float(ev["step"])
        lo, hi = float(ev["passing_min"]), float(ev["passing_max"])
        return (lo + level / float(ev.get("full_scale", 255)) * (hi - lo)).astype(ev.get("out_dtype", "float32"))
    if n == "rescale_units":
        return (values.astype(np.float64) * float(ev["factor"])).astype(_out_dtype(values, "float32"))
    if n == "negate":
        return (-values) if values.dtype.kind in "fi" else (-values.astype(np.float32))
    # swap_xy
    return np.ascontiguousarray(np.flip(values, axis=int(ev["axis"])))


# ----------------------------------------------------------------------------- words
def _against(ev) -> str:
    return "the reference/training inputs'" if ev.get("against") == "reference" else "the passing set's"


def _against_plain(ev) -> str:
    return "the reference/training inputs" if ev.get("against") == "reference" else "the passing set"


def _g(v, digits=4) -> str:
    return "?" if v is None else f"{float(v):.{digits}g}"


def _list(values, digits=4) -> str:
    """Numbers as ``[a, b]`` (at most 4)."""
    return "[" + ", ".join(_g(v, digits) for v in list(values)[:4]) + "]"


def _pixel_words(p) -> str:
    if p["kind"] == "hot":
        extra = (f", {_g(p['times_median_pixel'], 3)} x the median pixel"
                 if p.get("times_median_pixel") is not None else "")
        return f"hot: {_g(p['value'], 3)} in {100 * float(p['frames']):.0f} % of frames{extra}"
    return (f"dead: 0 in {100 * float(p['frames']):.0f} % of frames, {_g(p['passing_median'], 3)} in "
            "the passing set")


def _where(p) -> str:
    ch = f", channel {p['channel']}" if p.get("channel") not in (None, 0) else ""
    return f"(row {p['row']}, col {p['col']}{ch})"


def _units_words(factor: float, power) -> str:
    """What a unit factor usually means (failing values x factor = what the model expects)."""
    if power is None:
        if factor > 1:
            return f"e.g. metres fed where the model expects pixels of {1e9 / factor:.3g} nm"
        return f"e.g. pixels of {factor * 1e9:.3g} nm fed where the model expects metres"
    words = {1: "cm fed where the model expects mm, or nm where it expects angstrom",
             2: "metres fed where the model expects cm",
             3: "mm fed where the model expects um, or um where it expects nm",
             6: "metres fed where the model expects um, or mm where it expects nm",
             9: "metres fed where the model expects nm",
             -1: "mm fed where the model expects cm, or angstrom where it expects nm",
             -2: "cm fed where the model expects metres",
             -3: "um fed where the model expects mm, or nm where it expects um",
             -6: "um fed where the model expects metres, or nm where it expects mm",
             -9: "nm fed where the model expects metres"}
    return "e.g. " + words[int(power)] if int(power) in words else f"a factor 1e{int(power)}"


def fix_text(fix: ConventionFix) -> str:
    """What the user must do, in physics words, with the numbers.

    Raises
    ------
    PtyAnalysisError
        For an unknown fix name.
    """
    _check_name(fix.name)
    n, k, ev = fix.name, fix.input, fix.evidence
    who = _against(ev)
    if n in ("fftshift", "ifftshift"):
        pf, pp = ev.get("failing_peak"), ev.get("passing_peak")
        peaks = f"mean-pattern peak at {tuple(pf)} where {who} is at {tuple(pp)}" if pf and pp else ""
        if n == "fftshift":
            why = (f"the central beam sits in the corners ({peaks}), so the patterns were saved unshifted "
                   "(zero frequency first, as numpy.fft returns them)")
        else:
            why = (f"the patterns are shifted off the convention the model was trained on ({peaks}): they were "
                   "fft-shifted once too often, or the model expects the zero frequency in the corners")
        return (f"apply numpy.fft.{n} to {k!r} over the detector axes {tuple(ev.get('axes', (1, 2)))}: {why}; "
                f"the mean pattern then matches {_against_plain(ev)}'s (mismatch {_g(ev['match_error_before'], 3)} "
                f"-> {_g(ev['match_error_after'], 3)})")
    if n in ("transpose", "flip_rows", "flip_cols"):
        what = {"transpose": "transpose the detector axes (rows <-> columns, axes 1 and 2) of",
                "flip_rows": "flip the detector rows (up/down, numpy.flip axis 1) of",
                "flip_cols": "flip the detector columns (left/right, numpy.flip axis 2) of"}[n]
        why = {"transpose": "the detector image is transposed against the training geometry",
               "flip_rows": "the detector image is flipped up/down against the training geometry",
               "flip_cols": "the detector image is flipped left/right against the training geometry"}[n]
        return (f"{what} {k!r}: {why} (mean-pattern mismatch with {_against_plain(ev)} "
                f"{_g(ev['match_error_before'], 3)} -> {_g(ev['match_error_after'], 3)}; mean-pattern peak at "
                f"{tuple(ev['failing_peak'])}, at {tuple(ev['peak_after'])} after the fix, where {who} is at "
                f"{tuple(ev['passing_peak'])}): check the detector orientation of the export")
    if n in ("sqrt", "square"):
        scale = float(ev.get("scale", 1.0) or 1.0)
        then = "" if scale == 1.0 else f", then multiply by {scale:.3g} to the trained normalisation"
        if n == "sqrt":
            head = (f"{k!r} holds intensities where the model was trained on amplitudes: feed sqrt({k}){then}")
        else:
            head = (f"{k!r} holds amplitudes where the model was trained on intensities: feed {k} ** 2{then}")
        op = "sqrt" if n == "sqrt" else "squaring"
        return (f"{head} (its mean is {_g(ev['failing_mean'])} (99th percentile {_g(ev['failing_p99'])}) and "
                f"{_g(ev['mean_after'])} after {op}, where {who} mean is {_g(ev['passing_mean'])} (99th percentile "
                f"{_g(ev['passing_p99'])}); distribution mismatch {_g(ev['distance_before'], 3)} -> "
                f"{_g(ev['distance_after'], 3)})")
    if n == "conjugate":
        grads = ev.get("phase_gradient_failing") or []
        gp = ev.get("phase_gradient_passing") or []
        return (f"feed numpy.conj({k}): the complex values are the complex conjugate of what the model was "
                f"trained on (imaginary-part mean {_g(ev['imag_mean_failing'], 3)} where {who} is "
                f"{_g(ev['imag_mean_passing'], 3)}; phase gradients {_list(grads, 3)} vs {_list(gp, 3)} "
                f"rad/pixel), e.g. exp(-i phi) for exp(+i phi) or a different FFT sign "
                "convention")
    if n == "mask_pixels":
        px = ev["pixels"]
        hot = any(p["kind"] == "hot" for p in px)
        dead = any(p["kind"] == "dead" for p in px)
        kind = " and ".join(w for w, on in (("hot", hot), ("dead", dead)) if on)
        if len(px) == 1:
            head = f"mask detector pixel {_where(px[0])} of {k!r} ({_pixel_words(px[0])})"
        else:
            more = f"; and {len(px) - 4} more" if len(px) > 4 else ""
            head = (f"mask {len(px)} detector pixels of {k!r}: "
                    + "; ".join(f"{_where(p)} ({_pixel_words(p)})" for p in px[:4]) + more)
        return (f"{head}: {kind} pixels present in (nearly) every failing frame and not in "
                f"{_against_plain(ev)}; replace each by the median of its 8 neighbours (or add it to the detector "
                "mask) before feeding the model")
    if n == "unwrap_integers":
        return (f"export {k!r} as {ev.get('out_dtype', 'float32')}: {ev['dtype']} counts above "
                f"{2 ** (int(ev['bits']) - 1) - 1} wrapped to negative values ({ev['negative_values']:,} values in "
                f"{ev['negative_frames']} of {ev['n_frames']} frames, down to {ev['min']}); to rescue these files, "
                f"add 2**{ev['bits']} to the negative values (the counts reached {ev['max_unwrapped']})")
    if n == "dequantise":
        return (f"export {k!r} as float: an 8-bit image export loses the dynamic range (it holds "
                f"{ev['levels']} levels of step {_g(ev['step'])} up to level {ev['level_max']}, where {who} "
                f"values take {ev['passing_distinct']:,}+ distinct values from {_g(ev['passing_min'])} to "
                f"{_g(ev['passing_max'])}); rescaling the levels to that range only approximates the lost values")
    if n == "rescale_units":
        f = float(ev["factor"])
        words = _units_words(f, ev.get("power_of_ten"))
        return (f"{k!r} is in other units than the model expects: multiply it by {f:.3g} ({words}; its rms "
                f"{_g(ev['failing_rms'])} vs {who} {_g(ev['passing_rms'])}, a measured factor of "
                f"{_g(ev['measured_factor'])})")
    if n == "negate":
        mf, mp = _list(ev["failing_mean"]), _list(ev["passing_mean"])
        return (f"negate {k!r}: its sign is flipped against the model's convention (means {mf} where {who} are "
                f"{mp}): check the offset sign convention (object vs probe displacement)")
    # swap_xy
    return (f"swap the two axes of {k!r}, x and y (reverse its axis {ev['axis']} of length 2, e.g. [y, x] fed as "
            f"[x, y]): its means {_list(ev['failing_mean'])} are {who} {_list(ev['passing_mean'])} in reverse order")


def reason_text(fix: ConventionFix) -> str:
    """The short fault description for a summary.

    Raises
    ------
    PtyAnalysisError
        For an unknown fix name.
    """
    _check_name(fix.name)
    n, ev = fix.name, fix.evidence
    if n == "fftshift":
        return "its patterns are not fft-shifted (central beam in the corners)"
    if n == "ifftshift":
        return "its patterns are shifted off the trained convention (fft-shifted once too often)"
    if n == "transpose":
        return "its detector axes are transposed"
    if n == "flip_rows":
        return "its patterns are flipped up/down"
    if n == "flip_cols":
        return "its patterns are flipped left/right"
    if n == "sqrt":
        return "it holds intensities where the model was trained on amplitudes"
    if n == "square":
        return "it holds amplitudes where the model was trained on intensities"
    if n == "conjugate":
        return "its complex values are conjugated"
    if n == "mask_pixels":
        px = ev["pixels"]
        kinds = sorted({p["kind"] for p in px})
        return (f"{len(px)} {'/'.join(kinds)} detector pixel{'s' if len(px) > 1 else ''} in (nearly) every frame "
                f"(first at row {px[0]['row']}, col {px[0]['col']})")
    if n == "unwrap_integers":
        return f"its {ev['dtype']} counts wrapped to negative values ({ev['negative_values']:,} values)"
    if n == "dequantise":
        return f"it is an 8-bit export ({ev['levels']} levels)"
    if n == "rescale_units":
        return f"it is in other units ({float(ev['factor']):.3g} x too small)" if float(ev["factor"]) > 1 else \
            f"it is in other units ({1 / float(ev['factor']):.3g} x too large)"
    if n == "negate":
        return "its sign is flipped"
    return "its x and y are swapped"

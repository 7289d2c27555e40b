"""Placement audit: the overlaps of neighbouring patches name the placement convention, without ground truth."""

import json

import numpy as np
import pytest

from ptyanalysis.conventions import patch_slices
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.imaging.placement import (
    PLACEMENTS,
    PlacementAudit,
    _aligned_scores,
    equivalent,
    overlap_pairs,
    pair_agreement,
    placement,
    placement_audit,
    placement_text,
)

N = 32


def _smooth(shape, sigma, rng):
    """Gaussian-filtered white noise (FFT, numpy only), scaled to max |.| = 1."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (ky ** 2 + kx ** 2))
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * g).real
    return f / np.abs(f).max()


def _object(shape=(240, 240), seed=0, sigma=3.0):
    rng = np.random.default_rng(seed)
    amp = 0.7 + 0.3 * _smooth(shape, sigma, rng)
    phase = 1.5 * _smooth(shape, sigma, rng)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _raster(step=12, side=10, start=60.0, jitter=0.3, seed=0):
    """A raster of side x side points, step px apart (62 % linear overlap at N = 32), jittered sub-pixel."""
    g = start + step * np.arange(side)
    pos = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(float)
    return pos + np.random.default_rng(seed).uniform(-jitter, jitter, pos.shape)


def _spiral(n=150, step=11.0, centre=(120.0, 120.0)):
    """A Fermat spiral, neighbours about `step` px apart."""
    k = np.arange(n)
    r = step * 0.55 * np.sqrt(k)
    t = k * np.deg2rad(137.508)
    return np.stack([centre[0] + r * np.sin(t), centre[1] + r * np.cos(t)], 1)


def _patches(obj, pos, fault="as used", n=N):
    """The patches a model would output if its reassembly used convention `fault` (the package's extraction)."""
    pl = placement(fault)
    where = pl.apply_positions(pos)
    P = np.stack([obj[patch_slices(p, n)] for p in where])
    return np.ascontiguousarray(pl.apply_patches(P))


OBJ = _object()
POS = _raster()


def test_eight_candidates_in_four_overlap_classes():
    names = [p.name for p in PLACEMENTS]
    assert len(set(names)) == 8 and names[0] == "as used"
    assert {p.flags() for p in PLACEMENTS} == {(s, w, t) for s in (1, -1) for w in (0, 1) for t in (0, 1)}
    assert placement("offsets negated").sign == -1 and placement("patch transposed").transpose
    # a swap plus a transpose is the identity applied to the transposed object
    assert equivalent("as used") == "x/y swapped, patch transposed"
    assert equivalent("x/y swapped") == "patch transposed"
    assert all(equivalent(equivalent(nm)) == nm for nm in names)
    p = placement("offsets negated, x/y swapped")
    q = p.apply_positions(POS)
    np.testing.assert_allclose(q.mean(0), POS.mean(0))
    np.testing.assert_allclose(q - q.mean(0), -(POS - POS.mean(0))[:, ::-1])


@pytest.mark.parametrize("pos", [POS, _spiral()], ids=["raster", "spiral"])
def test_correct_patches_support_the_identity_with_a_clear_margin(pos):
    a = placement_audit(_patches(OBJ, pos), pos)
    assert a.status == "supported" and a.supported is True and a.determined
    assert a.best == a.used == "as used" and set(a.best_class) == {"as used", "x/y swapped, patch transposed"}
    assert a.scores["as used"] > 0.9 and a.margin > 0.3 and a.margin_used == 0
    assert a.n_pairs >= 100
    # twins compare the same pixel pairs: equal to round-off
    for nm in a.scores:
        assert a.scores[nm] == pytest.approx(a.scores[equivalent(nm)], abs=1e-9)
    assert max(a.null_scores.values()) < 0.5


@pytest.mark.parametrize("fault", [p.name for p in PLACEMENTS[1:]])
def test_each_fault_is_named(fault):
    rng = np.random.default_rng(3)
    P = _patches(OBJ, POS, fault)
    P = P + 0.05 * (rng.standard_normal(P.shape) + 1j * rng.standard_normal(P.shape))  # noisy outputs
    a = placement_audit(P, POS)
    assert fault in a.best_class and a.best in a.best_class
    if "as used" in a.best_class:  # x/y swapped + patch transposed: the transposed object, self-consistent
        assert a.status == "supported" and a.best == "as used"
    else:
        assert a.status == "contradicted" and a.supported is False
        assert a.margin_used > 0.3 and a.margin > 0.2
        assert a.scores[a.best] > 0.8 > 0.5 > a.scores["as used"]
    # audited under the convention that restores agreement, the same patches are supported
    b = placement_audit(P, POS, convention_used=fault)
    assert b.status == "supported" and b.best == fault


def test_a_random_global_phase_and_scale_per_patch_do_not_hurt():
    rng = np.random.default_rng(1)
    P = _patches(OBJ, POS)
    factor = rng.uniform(0.5, 2.0, (len(P), 1, 1)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (len(P), 1, 1)))
    plain, scaled = placement_audit(P, POS), placement_audit(P * factor, POS)
    assert scaled.status == "supported" and scaled.best == "as used"
    for nm in plain.scores:
        assert scaled.scores[nm] == pytest.approx(plain.scores[nm], abs=1e-4)
    # and a phase-factored fault is still found
    neg = placement_audit(_patches(OBJ, POS, "offsets negated") * factor, POS)
    assert neg.status == "contradicted" and neg.best == "offsets negated"


def test_real_patches_and_a_trailing_channel_axis():
    P = np.abs(_patches(OBJ, POS, "x/y swapped"))[..., None]
    a = placement_audit(P, POS)
    assert a.kind == "real" and a.status == "contradicted" and set(a.best_class) == {"x/y swapped", "patch transposed"}


def test_a_crop_compares_the_stitched_centre():
    pos = _raster(step=6, side=16, start=70)  # the 16 x 16 centre overlaps its neighbours by 62 %
    a = placement_audit(_patches(OBJ, pos, "offsets negated"), pos, crop=16)
    assert a.patch_size == 16 and a.status == "contradicted" and a.best == "offsets negated"
    assert placement_audit(_patches(OBJ, pos), pos, crop=16).status == "supported"


@pytest.mark.parametrize("case", ["zero", "identical", "identical_phased", "same_plus_noise", "constant", "noise"])
def test_uninformative_patches_are_undetermined(case):
    rng = np.random.default_rng(2)
    n = len(POS)
    one = _patches(OBJ, POS)[:1]
    P = {"zero": np.zeros((n, N, N), np.complex64),
         "identical": np.repeat(one, n, 0),
         "identical_phased": np.repeat(one, n, 0) * np.exp(1j * rng.uniform(0, 6, (n, 1, 1))),
         "same_plus_noise": one + 0.02 * rng.standard_normal((n, N, N)),
         "constant": np.full((n, N, N), 0.5 + 0.2j) * rng.uniform(0.5, 1, (n, 1, 1)),
         "noise": rng.standard_normal((n, N, N)) + 1j * rng.standard_normal((n, N, N))}[case]
    a = placement_audit(P, POS)
    assert a.status == "undetermined" and not a.determined
    assert a.best is None and a.best_class == () and a.supported is None and a.margin is None
    assert a.reason
    assert placement_text(a).startswith("placement undetermined: ")


def test_a_scan_without_overlaps_is_undetermined():
    pos = _raster(step=40, side=4, start=30, jitter=0)
    a = placement_audit(_patches(OBJ, pos), pos)
    assert a.status == "undetermined" and a.n_pairs == 0 and "overlap" in a.reason


def test_non_finite_patches_are_left_out():
    P = _patches(OBJ, POS).astype(np.complex64)
    P[::7] = np.nan
    a = placement_audit(P, POS)
    assert a.status == "supported" and a.best == "as used"
    P[:] = np.nan
    assert placement_audit(P, POS).status == "undetermined"


def test_overlap_pairs_are_neighbours_capped_and_seeded():
    pairs = overlap_pairs(POS, N, min_overlap=0.5)
    d = np.abs(np.rint(POS[pairs[:, 1]] - POS[pairs[:, 0]]))
    assert len(pairs) > 0 and np.all(pairs[:, 0] < pairs[:, 1])
    assert np.all((N - d[:, 0]) * (N - d[:, 1]) >= 0.5 * N * N) and np.all(d.max(1) >= 1)
    capped = overlap_pairs(POS, N, max_pairs=20, seed=5)
    assert len(capped) == 20 and np.array_equal(capped, overlap_pairs(POS, N, max_pairs=20, seed=5))
    assert {tuple(p) for p in capped} <= {tuple(p) for p in pairs}
    dup = np.repeat(POS, 2, axis=0)  # coinciding points (e.g. group centres) are not pairs
    dp = overlap_pairs(dup, N)
    assert len(dp) and np.all(np.abs(np.rint(dup[dp[:, 1]] - dup[dp[:, 0]])).max(1) >= 1)


def test_explicit_pairs():
    P = _patches(OBJ, POS, "offsets negated")
    pairs = overlap_pairs(POS, N, max_pairs=40)
    a = placement_audit(P, POS, pairs=pairs)
    assert a.n_pairs == 40 and a.best == "offsets negated"
    # a pair that does not overlap is dropped, not compared
    far = np.array([[0, len(POS) - 1]])
    assert placement_audit(P, POS, pairs=far).n_pairs == 0


def test_pair_agreement_removes_the_complex_factor():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 8, 8)) + 1j * rng.standard_normal((3, 8, 8))
    r = pair_agreement(a, (0.3 - 2j) * a + 5)
    np.testing.assert_allclose(r, 1.0)
    assert np.all(pair_agreement(a, rng.standard_normal((3, 8, 8))) < 0.5)
    assert pair_agreement(a.real, -a.real)[0] == pytest.approx(-1.0)  # real: signed
    mask = np.zeros((3, 8, 8), bool)
    mask[:, :4] = True
    b = a.copy()
    b[:, 4:] = 0
    np.testing.assert_allclose(pair_agreement(a, b, mask), 1.0)
    assert pair_agreement(np.ones((1, 4, 4)), a[:1, :4, :4])[0] == 0.0  # no contrast: no evidence


@pytest.mark.parametrize("kwargs,match", [
    ({"patches": np.zeros((5, 8, 9))}, r"shape \(n, N, N\)"),
    ({"patches": np.zeros((5, 8))}, r"shape \(n, N, N\)"),
    ({"positions": np.zeros((4, 2))}, "4 rows but there are 5 patches"),
    ({"positions": np.zeros((5, 3))}, r"\(n, 2\) as \(row, col\)"),
    ({"positions": np.full((5, 2), np.nan)}, "NaN or Inf"),
    ({"patches": np.zeros((1, 8, 8)), "positions": np.zeros((1, 2))}, "at least 2 patches"),
    ({"patches": np.zeros((5, 8, 8), bool)}, "real or complex numbers"),
    ({"convention_used": "offset negated"}, "did you mean 'offsets negated'"),
    ({"crop": 9}, "crop must be between 1 and the patch size 8"),
    ({"crop": 0}, "crop must be a whole number"),
    ({"min_overlap": 1.5}, r"min_overlap must be a fraction"),
    ({"max_pairs": 0}, "max_pairs must be a whole number"),
    ({"tolerance": -1}, "tolerance must be a non-negative"),
    ({"pairs": np.array([[0, 7]])}, r"pairs index patches 0..4"),
    ({"pairs": np.array([0.0, 1.0])}, r"pairs must be a \(k, 2\) array"),
])
def test_bad_input_says_what_was_expected(kwargs, match):
    args = {"patches": np.ones((5, 8, 8)), "positions": np.arange(10.0).reshape(5, 2)}
    args.update(kwargs)
    with pytest.raises(PtyAnalysisError, match=match):
        placement_audit(args.pop("patches"), args.pop("positions"), **args)


def test_record_is_json_ready():
    a = placement_audit(_patches(OBJ, POS, "x/y swapped"), POS)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["status"] == "contradicted" and d["supported"] is False and d["used"] == "as used"
    assert set(d["best_class"]) == {"x/y swapped", "patch transposed"} and d["best"] in d["best_class"]
    assert list(d["scores"]) == [p.name for p in PLACEMENTS] and d["n_pairs"] == a.n_pairs
    assert d["text"] == a.text() == placement_text(a)


def _audit(status, best, used="as used", best_class=None, scores=None, reason=""):
    scores = scores or {p.name: 0.3 for p in PLACEMENTS}
    return PlacementAudit(status=status, used=used, best=best,
                          best_class=tuple(best_class or ((best, equivalent(best)) if best else ())),
                          scores=scores, n_pairs=200, margin=0.5, margin_used=0.5,
                          supported={"supported": True, "contradicted": False}.get(status), reason=reason)


def test_text_in_physics_words():
    s = {p.name: 0.41 for p in PLACEMENTS}
    s.update({"offsets negated": 0.93, "offsets negated, x/y swapped, patch transposed": 0.93})
    t = placement_text(_audit("contradicted", "offsets negated", scores=s))
    assert t.startswith("the overlaps agree best with offsets negated (agreement 0.93 vs 0.41 as used")
    assert "offset sign flipped" in t and "cannot tell the two apart" in t
    s = {p.name: 0.2 for p in PLACEMENTS}
    s.update({"x/y swapped": 0.9, "patch transposed": 0.9})
    t = placement_text(_audit("contradicted", "x/y swapped", scores=s))
    assert "x as y" in t and "patch transposed" in t
    t = placement_text(_audit("contradicted", "patch transposed", used="x/y swapped", scores=s,
                              best_class=("patch transposed",)))
    assert "transposes each patch" in t and "x as y" in t
    s = {p.name: 0.2 for p in PLACEMENTS}
    s.update({"as used": 0.95, "x/y swapped, patch transposed": 0.95})
    t = placement_text(_audit("supported", "as used", scores=s))
    assert "the placement is consistent" in t and "agreement 0.95" in t
    assert placement_text(_audit("undetermined", None, reason="every patch compared is 0")) == \
        "placement undetermined: every patch compared is 0"


@pytest.mark.parametrize("cplx", [True, False])
def test_aligned_scores_are_pair_agreement_over_the_shared_pixels(cplx):
    # the compiled one-pass sums against pair_agreement of gathered, masked patches (shifts past the edge too)
    rng = np.random.default_rng(0)
    M = 24
    P = rng.standard_normal((60, M, M)) + (1j * rng.standard_normal((60, M, M)) if cplx else 0)
    i, j = rng.integers(0, 60, 200), rng.integers(0, 60, 200)
    d = rng.integers(-M - 3, M + 3, (200, 2))
    d[:5] = 0
    u = np.arange(M)
    rr, cc = u[None, :] - d[:, 0, None], u[None, :] - d[:, 1, None]
    mask = ((rr >= 0) & (rr < M))[:, :, None] & ((cc >= 0) & (cc < M))[:, None, :]
    B = P[j[:, None, None], np.clip(rr, 0, M - 1)[:, :, None], np.clip(cc, 0, M - 1)[:, None, :]]
    want = pair_agreement(P[i], B, mask)
    got = _aligned_scores(P, i, j, d)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (got == 0).sum() == (want == 0).sum() > 0  # no shared pixels (or one): no agreement

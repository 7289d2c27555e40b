"""The pty-chi iterative arm: conventions and quality on a tiny synthetic dataset.

The reconstruction tests need the optional ``ptychi`` package (extra
``ptychi``) and skip cleanly without it; the engine-selection tests run
everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptyanalysis.conventions import patch_centre, xy_from_positions
from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.io import PtychoData, make_metadata
from ptyanalysis.synthetic import ptychi as ptychi_arm
from ptyanalysis.synthetic import rpie as iterative
from ptyanalysis.synthetic import simulate
from ptyanalysis.synthetic import training as arms

N = 32
SIZE = 96
#: LSQML epochs in the test (the study uses 100; 60 already converges here, in ~10-20 s on 2 CPU cores).
EPOCHS = 60


def _dataset(n=150, dose=1e5, seed=0):
    rng = np.random.default_rng(seed)
    probe = simulate.make_probe(N)
    obj = simulate.make_object(SIZE)
    pos = simulate.make_positions(n, SIZE, N, rng)
    diff, _ = simulate.simulate_counts(simulate.extract_patches(obj, pos, N), probe, dose, rng)
    x, y = xy_from_positions(pos)
    data = PtychoData(diffraction=diff, xcoords=x, ycoords=y, probe=probe, obj=obj,
                      metadata=make_metadata(dose, N))
    return data, obj


def _gt_on_frame(obj, origin, shape):
    """Ground truth on a reconstruction frame (zeros outside the object)."""
    r0, c0 = origin
    H, W = shape
    out = np.zeros((H, W), np.complex64)
    a0, b0 = max(r0, 0), max(c0, 0)
    a1, b1 = min(r0 + H, obj.shape[0]), min(c0 + W, obj.shape[1])
    out[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = obj[a0:a1, b0:b1]
    return out


def _quality(rec, obj, thr=0.1):
    gt = _gt_on_frame(obj, rec.origin, rec.obj.shape)
    mask = rec.coverage > thr * rec.coverage.max()
    offset = np.angle(np.sum(rec.obj[mask] * np.conj(gt[mask])))
    r = rec.obj * np.exp(-1j * offset)
    corr_amp = np.corrcoef(np.abs(r[mask]), np.abs(gt[mask]))[0, 1]
    corr_phase = np.corrcoef(np.angle(r[mask]), np.angle(gt[mask]))[0, 1]
    return r, gt, mask, corr_amp, corr_phase


def test_engine_validation():
    data, _ = _dataset(n=20)
    with pytest.raises(PtyAnalysisError, match="engine"):
        arms.run_iterative(data, 1, engine="lsqml")


def test_ptychi_engine_without_package_names_package_and_extra(monkeypatch):
    monkeypatch.setattr(ptychi_arm, "ptychi_available", lambda: False)
    data, _ = _dataset(n=20)
    with pytest.raises(PtyAnalysisError) as info:
        arms.run_iterative(data, 1, engine="ptychi")
    msg = str(info.value)
    assert "'ptychi'" in msg and "ptyanalysis[ptychi]" in msg
    # "auto" falls back to the reference rPIE, labelled as such.
    rec = arms.run_iterative(data, 1, engine="auto")
    assert rec.algorithm == iterative.ALGORITHM


def test_ptychi_frame_maps_our_centres_to_ptychi_geometric_centres():
    pos = np.array([[20.0, 30.0], [40.0, 25.0], [33.0, 61.0]])
    for n in (32, 33):
        origin, shape, pos_yx, oc = ptychi_arm.ptychi_frame(pos, n, margin=2)
        q = pos_yx + np.asarray(oc)  # pty-chi buffer coordinates
        # pty-chi's patch starts at q - (n - 1) / 2; ours at position - n // 2 (object pixels).
        start_ptychi = q - (n - 1) / 2 + np.asarray(origin)
        np.testing.assert_allclose(start_ptychi, pos - patch_centre(n))
        assert (start_ptychi - np.asarray(origin) >= 2).all()
        assert (start_ptychi - np.asarray(origin) + n <= np.asarray(shape) - 2).all()


@pytest.fixture(scope="module")
def ptychi_rec():
    pytest.importorskip("ptychi")
    data, obj = _dataset()
    rec = arms.run_iterative(data, EPOCHS, engine="ptychi", device="cpu")
    return data, obj, rec


def test_ptychi_reconstruction_quality(ptychi_rec):
    data, obj, rec = ptychi_rec
    assert rec.algorithm.startswith(f"pty-chi 2.2.0 LSQML, {EPOCHS} epochs")
    assert rec.obj.dtype == np.complex64 and rec.coverage.shape == rec.obj.shape
    np.testing.assert_array_equal(rec.probe, data.probe)  # fixed probe
    r, gt, mask, corr_amp, corr_phase = _quality(rec, obj)
    assert mask.sum() > 2000
    assert corr_amp > 0.9, corr_amp
    assert corr_phase > 0.9, corr_phase
    # Data scaled consistently with the probe: the object keeps the ground truth's units.
    ratio = np.median(np.abs(r[mask]) / np.abs(gt[mask]))
    assert 0.9 < ratio < 1.1, ratio
    # The loss went down.
    assert rec.error[-1] < rec.error[0]


def test_ptychi_origin_convention(ptychi_rec):
    from skimage.registration import phase_cross_correlation

    _, obj, rec = ptychi_rec
    r, gt, mask, _, _ = _quality(rec, obj)
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    w = mask[sl]
    shift, _, _ = phase_cross_correlation(gt[sl] * w, r[sl] * w, upsample_factor=20)
    assert np.all(np.abs(shift) < 0.5), shift  # measured: 0.1 px
    # An origin off by one pixel would be caught: the stated origin correlates best with the
    # ground truth among all origins within one pixel of it.
    corr = {}
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            g = _gt_on_frame(obj, (rec.origin[0] + dr, rec.origin[1] + dc), rec.obj.shape)
            corr[dr, dc] = np.corrcoef(np.abs(r[mask]), np.abs(g[mask]))[0, 1]
    assert max(corr, key=corr.get) == (0, 0), corr


def test_ptychi_coverage_matches_rpie_frame(ptychi_rec):
    data, _, rec = ptychi_rec
    ref = iterative.rpie(data.diffraction, data.positions, data.probe, iterative.RPIEConfig(iterations=1))
    # pty-chi's frame is rPIE's plus a margin; the coverage agrees where they overlap.
    dr, dc = ref.origin[0] - rec.origin[0], ref.origin[1] - rec.origin[1]
    assert dr == dc == ptychi_arm.FRAME_MARGIN
    H, W = ref.coverage.shape
    np.testing.assert_allclose(rec.coverage[dr:dr + H, dc:dc + W], ref.coverage, rtol=1e-4, atol=1e-5)
    assert rec.coverage[:dr].max() == 0 and rec.coverage[:, :dc].max() == 0


def test_ptychi_saves_like_rpie(ptychi_rec, tmp_path):
    _, _, rec = ptychi_rec
    out = arms.save_reconstruction(rec, tmp_path / "ptychi_reconstruction.npz")
    z = np.load(out)
    assert str(z["algorithm"]).startswith("pty-chi")
    np.testing.assert_array_equal(z["origin"], rec.origin)

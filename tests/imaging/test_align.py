"""Alignment: registration accuracy, shifts, phase/amplitude normalisation, cropping to a canvas."""

import numpy as np
import pytest
from skimage import data

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.imaging.align import (
    apply_shift,
    crop_border,
    crop_to_scan,
    fit_phase_plane,
    normalize_amplitude_mean,
    register,
    remove_phase_offset,
    remove_phase_plane,
)
from ptyanalysis.imaging.stitching import extract, stitch


@pytest.mark.parametrize("true", [(3.37, -1.71), (-0.42, 0.26)])
def test_register_recovers_subpixel_shift_on_camera(true):
    img = data.camera().astype(np.float64)
    moved = apply_shift(img, true)  # content moves by +true
    ref = img[128:384, 128:384]
    mov = moved[128:384, 128:384]
    reg = register(ref, mov, upsample_factor=50)
    # the shift that aligns moving back onto the reference is -true
    assert abs(reg.dy + true[0]) < 0.05 and abs(reg.dx + true[1]) < 0.05, reg.shift
    aligned = apply_shift(mov, reg)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(aligned - ref)[inner].mean() < 0.15 * np.abs(mov - ref)[inner].mean()


def test_register_complex_and_phase_views():
    img = data.camera()[100:228, 100:228].astype(np.float64) / 255
    obj = (0.5 + img) * np.exp(1j * img)
    moved = apply_shift(obj, (2.0, -3.0))
    assert np.iscomplexobj(moved)
    for on in ("amplitude", "phase", "complex"):
        reg = register(obj, moved, on=on)
        assert np.allclose(reg.shift, (-2.0, 3.0), atol=0.05), (on, reg.shift)


def test_apply_shift_sign_and_dtype():
    img = np.zeros((16, 16), np.float32)
    img[4, 5] = 1.0
    out = apply_shift(img, (2, 3))
    assert out.dtype == np.float32
    assert np.unravel_index(np.argmax(out), out.shape) == (6, 8)  # scipy.ndimage.shift sign
    c = apply_shift(img.astype(np.complex64), (1, 0))
    assert c.dtype == np.complex64


def test_crop_border():
    a = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(crop_border(a, 2), a[2:4, 2:4])
    assert crop_border(a, 0).shape == (6, 6)
    with pytest.raises(PtyAnalysisError):
        crop_border(a, 3)
    with pytest.raises(PtyAnalysisError):
        crop_border(a, -1)


def test_remove_phase_plane_recovers_plane():
    yy, xx = np.indices((40, 50))
    rng = np.random.default_rng(0)
    detail = 0.1 * rng.standard_normal((40, 50))
    detail -= detail.mean()
    phase = 0.03 * xx - 0.02 * yy + 0.7 + detail
    a, b, c = fit_phase_plane(0.03 * xx - 0.02 * yy + 0.7)
    assert (a, b, c) == pytest.approx((0.03, -0.02, 0.7))
    out = remove_phase_plane(phase)
    assert np.abs(out - detail).max() < 0.02
    mask = np.zeros((40, 50), bool)
    mask[:20] = True
    phase2 = 0.03 * xx + 0.5
    phase2[20:] += 5.0  # ignored by the fit
    np.testing.assert_allclose(remove_phase_plane(phase2, mask)[:20], 0, atol=1e-10)


def test_remove_phase_offset():
    rng = np.random.default_rng(1)
    gt = (1 + rng.random((20, 20))) * np.exp(1j * rng.random((20, 20)))
    pred = gt * np.exp(1j * 1.2)
    np.testing.assert_allclose(remove_phase_offset(pred, gt), gt, atol=1e-12)
    ph = np.angle(gt)
    np.testing.assert_allclose(remove_phase_offset(ph + 0.4, ph), ph, atol=1e-12)
    assert abs(remove_phase_offset(ph).mean()) < 1e-12


def test_normalize_amplitude_mean_and_zero_prediction():
    ref = np.full((8, 8), 2.0)
    out = normalize_amplitude_mean(np.full((8, 8), 0.5), ref)
    np.testing.assert_allclose(out, 2.0)
    assert np.all(np.isnan(normalize_amplitude_mean(np.zeros((8, 8)), ref)))
    with pytest.raises(PtyAnalysisError):
        normalize_amplitude_mean(np.zeros((8, 8)), np.zeros((8, 9)))


def test_crop_to_scan_matches_stitch_frame():
    rng = np.random.default_rng(2)
    obj = rng.standard_normal((100, 120)) + 1j * rng.standard_normal((100, 120))
    pos = rng.integers(20, 80, size=(40, 2)).astype(float)
    res = stitch(extract(obj, pos, 16, method="nearest"), pos, method="nearest", backend="numpy")
    gt = crop_to_scan(obj, frame=res)
    assert gt.shape == res.shape
    m = res.coverage > 0
    np.testing.assert_allclose(res.image[m], gt[m], atol=1e-6)
    np.testing.assert_array_equal(crop_to_scan(obj, pos, 16, method="nearest"), gt)
    # a frame beyond the object: error, or padded on request
    with pytest.raises(PtyAnalysisError, match="beyond"):
        crop_to_scan(obj, frame=((-2, 0), (10, 10)))
    out = crop_to_scan(obj.real, frame=((-2, 0), (10, 10)), fill=np.nan)
    assert np.isnan(out[:2]).all() and np.isfinite(out[2:]).all()
    with pytest.raises(PtyAnalysisError):
        crop_to_scan(obj)


def test_bad_input_raises():
    a = np.zeros((10, 10))
    with pytest.raises(PtyAnalysisError):
        register(a, np.zeros((10, 11)))
    with pytest.raises(PtyAnalysisError):
        register(a, a, on="intensity")
    with pytest.raises(PtyAnalysisError):
        register(a, a, upsample_factor=0)
    b = a.copy()
    b[0, 0] = np.nan
    with pytest.raises(PtyAnalysisError):
        register(a, b)
    with pytest.raises(PtyAnalysisError):
        apply_shift(a, (1.0,))
    with pytest.raises(PtyAnalysisError):
        apply_shift(a, (np.nan, 0))
    with pytest.raises(PtyAnalysisError):
        remove_phase_plane(np.zeros((5,)))
    with pytest.raises(PtyAnalysisError):
        remove_phase_plane(a, mask=np.zeros((3, 3), bool))
    with pytest.raises(PtyAnalysisError):
        remove_phase_offset(a, np.zeros((4, 4)))


@pytest.mark.parametrize("frame", [((0, 0, 1), (4, 4)), "x", ((0, 0), (4,)), (("a", 0), (4, 4))])
def test_crop_to_scan_refuses_a_malformed_frame_with_an_error_not_an_assert(frame):
    with pytest.raises(PtyAnalysisError, match="frame must be a StitchResult"):
        crop_to_scan(np.zeros((8, 8)), frame=frame)

"""Metrics: SSIM parity with scikit-image, MS-SSIM and FRC on known cases, both conventions."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.metrics import structural_similarity

from ptyanalysis.errors import PtyAnalysisError
from ptyanalysis.imaging import metrics as mx


@pytest.fixture(scope="module")
def camera():
    return data.camera()[96:352, 96:352].astype(np.float64) / 255.0


@pytest.mark.parametrize(
    "kw",
    [{}, {"win_size": 11}, {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}],
)
def test_ssim_equals_skimage(camera, kw):
    rng = np.random.default_rng(0)
    noisy = camera + 0.05 * rng.standard_normal(camera.shape)
    ours = mx.ssim(noisy, camera, data_range=1.0, **kw)
    ref = structural_similarity(camera, noisy, data_range=1.0, **kw)
    assert ours == pytest.approx(ref, abs=1e-12)
    # default data_range = GT max - min
    assert mx.ssim(noisy, camera) == pytest.approx(
        structural_similarity(camera, noisy, data_range=camera.max() - camera.min()), abs=1e-12
    )


def test_psnr_mae_mse():
    gt = np.array([[0.0, 1.0], [2.0, 4.0]])
    pred = gt + np.array([[1.0, -1.0], [0.0, 2.0]])
    assert mx.mae(pred, gt) == pytest.approx(1.0)
    assert mx.mse(pred, gt) == pytest.approx(1.5)
    val, dr = mx.psnr(pred, gt)
    assert dr == 4.0 and val == pytest.approx(10 * math.log10(16 / 1.5))
    assert mx.psnr(pred, gt, data_range=1.0)[0] == pytest.approx(10 * math.log10(1 / 1.5))
    assert mx.psnr(gt, gt)[0] == math.inf


def test_ms_ssim_known_cases(camera):
    assert mx.ms_ssim(camera, camera) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, camera.shape)
    assert mx.ms_ssim(noise, camera) < 0.2
    blurred = gaussian_filter(camera, 2.0)
    v = mx.ms_ssim(blurred, camera)
    assert 0.5 < v < 1.0
    # one scale is the Gaussian (Wang 2004) SSIM of scikit-image
    one = mx.ms_ssim(blurred, camera, data_range=1.0, weights=(1.0,))
    ref = structural_similarity(camera, blurred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert one == pytest.approx(ref, abs=1e-10)
    # scales reduced to fit and reported, weights renormalised
    _, det = mx.ms_ssim(blurred[:64, :64], camera[:64, :64], return_details=True)
    assert det["scales"] == 3 and sum(det["weights"]) == pytest.approx(1.0)
    _, det = mx.ms_ssim(blurred, camera, return_details=True)
    assert det["scales"] == 5
    with pytest.raises(PtyAnalysisError):
        mx.ms_ssim(camera[:8, :8], camera[:8, :8])


def test_frc_identical_and_noise(camera):
    r = mx.frc(camera, camera)
    np.testing.assert_allclose(r.frc, 1.0, atol=1e-12)
    assert not r.crossed_half_bit and r.resolution_half_bit == pytest.approx(0.5)
    assert r.frequency[0] == 0 and r.frequency[-1] == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(camera.shape)
    r = mx.frc(noise, rng.standard_normal(camera.shape))
    assert np.nanmean(np.abs(r.frc[1:])) < 0.1
    assert r.crossed_half_bit and r.resolution_half_bit < 0.05
    # half-bit threshold: 1 for a one-pixel ring, -> 0.2071/1.2071 for large rings
    np.testing.assert_allclose(mx.half_bit_threshold([1, 1e16]), [1.0, 0.2071 / 1.2071], rtol=1e-6)


def test_frc_gaussian_blur_matches_theory():
    # a = white noise (flat spectrum, unit power per Fourier pixel); b = G * a + n, n white with
    # variance s2 independent of a. Then FRC(k) = G / sqrt(G^2 + s2) with G = exp(-2 pi^2 sigma^2 k^2),
    # so FRC = 1/7 where G = s / sqrt(48): k* = sqrt(ln(sqrt(48) / s) / (2 pi^2 sigma^2)).
    rng = np.random.default_rng(3)
    a = rng.standard_normal((256, 256))
    s = 0.05
    found = []
    for sigma in (1.5, 2.0, 3.0):
        b = gaussian_filter(a, sigma, mode="wrap") + s * rng.standard_normal(a.shape)
        r = mx.frc(b, a)
        k = math.sqrt(math.log(math.sqrt(48) / s) / (2 * math.pi**2 * sigma**2))
        assert r.crossed_one_seventh
        assert r.resolution_one_seventh == pytest.approx(k, abs=0.015), (sigma, r.resolution_one_seventh, k)
        assert r.period_one_seventh == pytest.approx(1 / r.resolution_one_seventh)
        found.append(r.resolution_one_seventh)
    assert found[0] > found[1] > found[2]  # more blur -> lower resolution frequency


def test_frc_bad_input():
    with pytest.raises(PtyAnalysisError):
        mx.frc(np.zeros((8, 8)), np.zeros((8, 9)))
    r = mx.frc(np.zeros((16, 16)), np.ones((16, 16)))
    assert math.isnan(r.resolution_half_bit)


# --------------------------------------------------------------------------- #
# score
# --------------------------------------------------------------------------- #
def _obj(camera):
    return (0.5 + camera) * np.exp(1j * (camera - 0.5))


def test_score_ours_identical_and_offset(camera):
    gt = _obj(camera)
    out = mx.score(gt * np.exp(0.7j), gt)
    assert out["convention"] == "ptyanalysis"
    for part in ("amplitude", "phase"):
        b = out[part]
        assert set(b) >= {"mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7", "frc_half_bit"}
        assert b["mae"] < 1e-12 and b["ssim"] == pytest.approx(1.0) and b["ms_ssim"] == pytest.approx(1.0)
        assert b["frc1over7"] == pytest.approx(0.5)
    p = out["params"]
    assert p["data_range_amplitude"] == pytest.approx(np.ptp(np.abs(gt)[2:-2, 2:-2]))
    assert p["ms_ssim"]["scales"] == 5 and p["border"] == 2


def test_score_worse_prediction_scores_worse(camera):
    gt = _obj(camera)
    rng = np.random.default_rng(4)
    mild = gt + 0.02 * (rng.standard_normal(gt.shape) + 1j * rng.standard_normal(gt.shape))
    bad = gaussian_filter(gt.real, 3) + 1j * gaussian_filter(gt.imag, 3)
    a, b = mx.score(mild, gt), mx.score(bad, gt)
    for part in ("amplitude", "phase"):
        assert a[part]["ssim"] > b[part]["ssim"]
        assert a[part]["mse"] < b[part]["mse"]


@pytest.mark.parametrize("convention", mx.CONVENTIONS)
def test_all_zero_prediction_gives_nan(camera, convention):
    gt = _obj(camera)
    out = mx.score(np.zeros_like(gt), gt, convention)
    for part in ("amplitude", "phase"):
        assert all(math.isnan(v) for v in out[part].values())


def test_ptychopinn_hand_example():
    # GT amplitude: checkerboard 1/3 (mean 2); prediction: the opposite checkerboard (mean 2, so the
    # mean rescale is 1): every pixel is off by 2. Phases: two different planes -> both removed -> 0.
    H = W = 24
    yy, xx = np.indices((H, W))
    chk = (yy + xx) % 2
    gt = (1.0 + 2.0 * chk) * np.exp(1j * (0.02 * xx + 0.01 * yy))
    pred = (3.0 - 2.0 * chk) * np.exp(1j * (-0.03 * xx + 0.05 * yy + 0.4))
    out = mx.score(pred, gt, "ptychopinn")
    amp, ph = out["amplitude"], out["phase"]
    assert amp["mae"] == pytest.approx(2.0) and amp["mse"] == pytest.approx(4.0)
    assert amp["psnr"] == pytest.approx(10 * math.log10(255.0**2 / 4.0))
    assert ph["mae"] < 1e-12
    # SSIM: scikit-image defaults, data_range = GT max - min = 2 (after the 2 px trim)
    g = np.abs(gt)[2:-2, 2:-2]
    p = np.abs(pred)[2:-2, 2:-2]
    assert amp["ssim"] == pytest.approx(structural_similarity(g, p, data_range=2.0))
    assert ph["ssim"] == pytest.approx(1.0)
    assert amp["frc50"] <= amp["frc1over7"]


def test_ptychopinn_frc_cutoffs_like_the_study():
    assert mx.ptychopinn_frc_cutoff([0.95, 0.72, 0.55, 0.45, 0.20], 0.5) == pytest.approx(2.5)
    assert mx.ptychopinn_frc_cutoff([0.95, 0.72, 0.66, 0.51], 0.5) == 4.0
    assert mx.ptychopinn_frc_cutoff([0.80, 0.40, 0.20, 0.10], 0.5) == pytest.approx(0.75)
    assert mx.ptychopinn_frc_cutoff([0.80, 0.40, 0.20, 0.10], 1 / 7) == pytest.approx(2.5714285714285716)
    # PtychoPINN's rule for non-finite values: the first *finite* value below counts; a
    # non-finite ring before it gives the ring index itself; no finite value at all gives NaN
    assert mx.ptychopinn_frc_cutoff([np.nan, 0.1], 0.5) == 1.0
    assert mx.ptychopinn_frc_cutoff([0.9, np.nan, 0.3], 0.5) == 2.0
    assert mx.ptychopinn_frc_cutoff([0.9, np.nan, 0.8], 0.5) == 3.0  # never crosses: len(curve)
    assert math.isnan(mx.ptychopinn_frc_cutoff([np.nan, np.nan], 0.5))
    assert math.isnan(mx.ptychopinn_frc_cutoff([], 0.5))
    assert mx.ptychopinn_frc_cutoff([0.3, 0.2], 0.5) == 0.0
    assert mx.ptychopinn_frc_cutoff([0.7, 0.7, 0.4], 0.7) == pytest.approx(1.0)  # the ring before sits on it
    assert mx.ptychopinn_frc_cutoff([0.9, 0.5, 0.5 - 1e-10], 0.5) == 2.0  # (nearly) equal neighbours: no 0/0


def test_ptychopinn_frc_hand_checked_4x4():
    # a = delta at pixel (0, 0): F1 = 1 everywhere; b = delta at (0, 1): F2 = exp(-i pi kx / 2).
    # Rings of the fftshifted 4 x 4 spectrum about (2, 2), frequencies d = -2..1:
    #   ring 0: (0,0); ring 1: the 8 neighbours (|d| = 1, sqrt 2);
    #   ring 2: (0,-2) (-2,0) (-2,+-1) (+-1,-2) (2, sqrt 5); ring 3: (-2,-2) (sqrt 8 = 2.83).
    # F1 F2* = i^kx: ring 1 sums to 2 over 8 px -> 0.25; ring 2 sums to -2 over 6 px -> |.| = 1/3
    # (the real part would be -1/3); rings 0 and 3 are single pixels -> 1.
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[0, 0] = 1.0
    b[0, 1] = 1.0
    np.testing.assert_array_equal(mx.ptychopinn_frc_rings(4)[2], [2, 1, 0, 1])
    np.testing.assert_array_equal(mx.ptychopinn_frc_rings(4)[0], [3, 2, 2, 2])
    c = mx.ptychopinn_frc(a, b)
    np.testing.assert_allclose(c, [1.0, 0.25, 1 / 3, 1.0], atol=1e-12)
    # 0.5 is crossed between ring 0 (1.0) and ring 1 (0.25): 0 + (0.5 - 1) / (0.25 - 1) = 2/3
    assert mx.ptychopinn_frc_cutoff(c, 0.5) == pytest.approx(2 / 3)
    # 1/7 is never crossed (|.| keeps ring 2 at 1/3): len(curve)
    assert mx.ptychopinn_frc_cutoff(c, 1 / 7) == 4.0


@pytest.mark.parametrize("side, rings", [(92, 66), (124, 89), (64, 46), (4, 4), (7, 5)])
def test_ptychopinn_frc_runs_to_the_corners(side, rings):
    assert rings == round(math.sqrt(2) * (side // 2)) + 1
    rng = np.random.default_rng(side)
    img = rng.uniform(size=(side, side))
    c = mx.ptychopinn_frc(img, img)
    assert c.shape == (rings,)
    np.testing.assert_allclose(c, 1.0)
    # the identical image never crosses: frc50 = frc1over7 = len(curve)
    assert mx.ptychopinn_frc_cutoff(c, 0.5) == rings and mx.ptychopinn_frc_cutoff(c, 1 / 7) == rings


def test_ptychopinn_score_frc_never_crossing_is_len_curve(camera):
    # 96 px after the 2 px trim of a 100 px image: 69 rings; a mildly noisy copy stays above 1/7
    gt = _obj(camera[:100, :100])
    rng = np.random.default_rng(3)
    pred = gt * (1 + 0.001 * rng.standard_normal(gt.shape))
    out = mx.score(pred, gt, "ptychopinn")
    assert out["convention"] == "ptychopinn"
    assert len(out["frc_curves"]["amplitude"]) == round(math.sqrt(2) * 48) + 1 == 69
    assert out["amplitude"]["frc1over7"] == 69.0
    assert out["amplitude"]["frc50"] <= 69.0
    # the ptyanalysis convention is unchanged: frequencies in cycles/pixel up to Nyquist
    ours = mx.score(pred, gt, "ptyanalysis")
    assert ours["convention"] == "ptyanalysis"
    assert ours["frc_curves"]["amplitude"].frequency.max() == pytest.approx(0.5)
    assert ours["amplitude"]["frc1over7"] <= 0.5


def test_one_declaration_of_the_metric_conventions():
    from ptyanalysis import conventions
    from ptyanalysis.pipeline import compare

    assert mx.CONVENTIONS is conventions.METRIC_CONVENTIONS
    assert compare.CONVENTIONS is conventions.METRIC_CONVENTIONS
    assert conventions.METRIC_CONVENTIONS == ("ptychopinn", "ptyanalysis")


def test_ptychopinn_frc_and_ms_ssim(camera):
    c = mx.ptychopinn_frc(camera, camera)
    assert c.shape == (round(math.sqrt(2) * 128) + 1,)  # 182: the rings run to the corners
    np.testing.assert_allclose(c, 1.0)
    # non-square images are centre-cropped to a square (the middle 200 columns of 256)
    crop = mx.ptychopinn_frc(camera[:200, :], camera[:200, :] + camera[:200, ::-1])
    assert crop.shape == (round(math.sqrt(2) * 100) + 1,)
    np.testing.assert_allclose(crop, mx.ptychopinn_frc(camera[:, 28:228][:200], (camera[:200, :] + camera[:200, ::-1])[:, 28:228]))
    assert mx.ptychopinn_ms_ssim(camera, camera, sigma_smooth=1.0) == pytest.approx(1.0)
    # anti-correlated: every level's SSIM is negative -> clamped to 1e-4 (with a warning)
    with pytest.warns(RuntimeWarning, match="clamped"):
        v = mx.ptychopinn_ms_ssim(1 - camera, camera)
    assert v == pytest.approx(1e-4 ** sum(mx.MS_SSIM_WEIGHTS), rel=1e-6)
    # the study stops below 7 px: a 20 px image has 2 levels (20, 10)
    small = camera[:20, :20]
    assert mx.ptychopinn_ms_ssim(small * 0.9, small) == pytest.approx(
        structural_similarity(small, small * 0.9, data_range=np.ptp(small)) ** 0.0448
        * structural_similarity(small[::2, ::2], 0.9 * small[::2, ::2], data_range=np.ptp(small)) ** 0.2856
    )


def test_score_bad_input():
    a = np.ones((20, 20), complex)
    with pytest.raises(PtyAnalysisError):
        mx.score(a, np.ones((20, 21), complex))
    with pytest.raises(PtyAnalysisError):
        mx.score(a, a, "study")
    g = a.copy()
    g[10, 10] = np.nan
    with pytest.raises(PtyAnalysisError):
        mx.score(a, g)
    with pytest.raises(PtyAnalysisError):
        mx.score(a, a, border=10)
    with pytest.raises(PtyAnalysisError):
        mx.ssim(np.ones((5, 5)), np.ones((5, 5)), data_range=1.0)
    with pytest.raises(PtyAnalysisError):
        mx.psnr(np.ones((5, 5)), np.ones((5, 5)))  # constant reference, no data_range


def test_metric_units_come_from_one_table():
    from ptyanalysis.imaging.metrics import metric_unit

    assert metric_unit("frc50", "phase", "ptychopinn") == "ring index"
    assert metric_unit("frc50", "phase", "ptyanalysis") == "cycles/pixel"
    assert metric_unit("mae", "phase") == "rad" and metric_unit("mae", "amplitude").startswith("amplitude units")
    assert metric_unit("ms_ssim", "amplitude") == "1" and metric_unit("psnr", "phase") == "dB"
    assert metric_unit("no_such_metric") == ""
    with pytest.raises(PtyAnalysisError, match="convention must be one of"):
        metric_unit("mae", "phase", "ptychopin")

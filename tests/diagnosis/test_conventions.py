"""Convention interventions (issue 18, point 5): detection, the corrected values, and the words.

Numpy only. Detection is asserted on ``fix.name`` / ``fix.evidence``; the renderer (``fix_text``,
``reason_text``) is tested separately on hand-made fixes.

The passing data are simulated diffraction amplitudes, |FFT(probe x object)| of random smooth objects with an
off-axis elliptical probe (N = 32, 64 frames), so that the mean pattern is off-centre and elongated:
transposes and flips are visible in it. Each failing set is drawn with another seed and has one fault
injected; a healthy failing set (another seed, no fault) must get no fix.
"""

import json

import numpy as np
import pytest

from ptyanalysis.diagnosis.bisection import conventions as C
from ptyanalysis.diagnosis.bisection.conventions import ConventionFix, applicable, apply, fix_text, reason_text
from ptyanalysis.errors import PtyAnalysisError

N = 32


# ----------------------------------------------------------------------------- simulated data
def probe(N=N, ramp=(3.0, 2.0), ellipse=(1.0, 1.6), width=None):
    yy, xx = np.mgrid[:N, :N] - N / 2
    w = N / 6 if width is None else width
    amp = np.exp(-((xx / ellipse[1]) ** 2 + (yy / ellipse[0]) ** 2) / (2 * w ** 2)) * ((xx ** 2 + yy ** 2)
                                                                                        <= (0.4 * N) ** 2)
    return amp * np.exp(1j * (2 * np.pi * (ramp[0] * yy + ramp[1] * xx) / N + 0.02 * (xx ** 2 + yy ** 2)))


def patterns(n=64, N=N, seed=0, **kw):
    """Diffraction amplitudes (n, N, N, 1) float32, centred."""
    rng = np.random.default_rng(seed)
    k = np.exp(-(np.fft.fftfreq(N)[:, None] ** 2 + np.fft.fftfreq(N)[None, :] ** 2) / 0.01)

    def smooth(a):
        return np.real(np.fft.ifft2(np.fft.fft2(a) * k))

    obj = (1 + 0.3 * smooth(rng.normal(size=(n, N, N)))) * np.exp(3j * smooth(rng.normal(size=(n, N, N))))
    a = np.abs(np.fft.fftshift(np.fft.fft2(probe(N, **kw) * obj), axes=(1, 2))) / N
    return a[..., None].astype("float32")


def positions(n=300, seed=0, x=(5.0, 60.0), y=(5.0, 60.0)):
    """Scan positions in pixels (n, 1, 2, 1) = [x, y]."""
    r = np.random.default_rng(seed)
    return np.stack([r.uniform(*x, n), r.uniform(*y, n)], axis=1)[:, None, :, None].astype("float32")


@pytest.fixture(scope="module")
def passing():
    return patterns(64, N, 1)


@pytest.fixture(scope="module")
def healthy():
    return patterns(64, N, 2)


def names(f, p, r=None, k="diffraction"):
    return [x.name for x in applicable(k, f, p, r)]


def only(f, p, r=None, k="diffraction"):
    found = applicable(k, f, p, r)
    assert len(found) >= 1, "no fix proposed"
    json.dumps(found[0].evidence)  # JSON-friendly
    assert set(C.SPECIFICITY) >= {x.name for x in found}
    return found


# ----------------------------------------------------------------------------- healthy: nothing
@pytest.mark.parametrize("n", [2, 5, 64])
@pytest.mark.parametrize("size", [16, 31, 32])
def test_healthy_patterns_get_no_fix(n, size):
    for s in range(3):
        assert names(patterns(n, size, 200 + s), patterns(64, size, 100 + s)) == []
        assert names(patterns(n, size, 200 + s, ramp=(0, 0), ellipse=(1, 1)),
                     patterns(64, size, 100 + s, ramp=(0, 0), ellipse=(1, 1))) == []


def test_healthy_inputs_of_every_kind_get_no_fix(passing, healthy):
    rng = np.random.default_rng(0)
    assert names(healthy, passing, patterns(64, N, 3)) == []
    assert names(positions(300, 2), positions(300, 1), positions(300, 3), "positions") == []
    offsets = rng.uniform(-3, 3, (300, 1, 2, 1)).astype("float32")
    assert names(rng.uniform(-3, 3, (300, 1, 2, 1)).astype("float32"), offsets, None, "offsets") == []
    pr = np.repeat(probe()[None], 8, 0).astype("complex64")
    assert names(pr.copy(), pr, None, "probe") == []
    assert names(probe().astype("complex64"), probe().astype("complex64"), None, "probe") == []  # (N, N)
    energy = rng.uniform(0.5, 2, 300).astype("float32")
    assert names(rng.uniform(0.5, 2, 300).astype("float32"), energy, None, "pulse_energy") == []  # (B,)
    assert names(rng.uniform(0.5, 2, (300, 1)).astype("float32"), energy[:, None], None, "pulse_energy") == []
    assert names(np.arange(100), np.arange(1000, 1300), None, "index") == []  # an int index
    assert names(np.arange(200, dtype=np.int32), np.arange(300, dtype=np.int32), None, "index") == []
    labels = rng.integers(0, 10, 300).astype(np.uint8)
    assert names(rng.integers(0, 10, 300).astype(np.uint8), labels, None, "label") == []
    assert names(rng.random((300, 4)) > 0.5, rng.random((300, 4)) > 0.5, None, "mask") == []
    objs = [np.exp(1j * np.random.default_rng(s).normal(size=(20, N, N))).astype("complex64") for s in (1, 2)]
    assert names(objs[0], objs[1], None, "object") == []


def test_degenerate_inputs_get_no_fix_and_do_not_crash(passing, healthy):
    assert names(np.fft.ifftshift(healthy[:1], axes=(1, 2)), passing) == []  # a set of 1 sample
    assert names(np.fft.ifftshift(healthy, axes=(1, 2)), passing[:1]) == []
    assert names(healthy[:8], patterns(8, 16, 3)) == []  # another shape
    assert names(np.full((10, N, N, 1), np.nan, "float32"), passing) == []
    assert names(np.zeros((10, N, N, 1), "float32"), passing) == []
    assert names(np.zeros((10, N, N, 1), "float32"), np.zeros((10, N, N, 1), "float32")) == []
    assert names(np.float32(3), np.float32(3)) == []
    assert names(np.zeros((0, N, N, 1), "float32"), passing) == []
    pr = np.repeat(probe()[None], 8, 0).astype("complex64")
    assert names(np.conj(pr), np.abs(pr)) == []  # complex failing, real passing
    assert names(np.abs(pr), pr) == []


# ----------------------------------------------------------------------------- patterns: geometry
def test_fftshift_central_beam_in_the_corners(passing, healthy):
    fail = np.fft.ifftshift(healthy, axes=(1, 2))
    fix = only(fail, passing)[0]
    assert fix.name == "fftshift" and fix.specificity == 1
    ev = fix.evidence
    assert ev["axes"] == [1, 2] and ev["match_error_after"] < 0.25 * ev["match_error_before"]
    peak = np.unravel_index(passing.mean(0)[..., 0].argmax(), (N, N))
    assert max(abs(a - b) for a, b in zip(ev["passing_peak"], peak)) <= 1
    assert min(ev["failing_peak"][0], N - ev["failing_peak"][0]) <= 4  # near a corner
    np.testing.assert_array_equal(apply(fix, fail), healthy)


@pytest.mark.parametrize("size", [31, 33])
def test_odd_sizes_choose_fftshift_or_ifftshift(size):
    p, h = patterns(64, size, 1), patterns(64, size, 2)
    corners = np.fft.ifftshift(h, axes=(1, 2))  # the beam at the corner: fftshift brings it back
    assert names(corners, p)[:1] == ["fftshift"]
    np.testing.assert_array_equal(apply(applicable("d", corners, p)[0], corners), h)
    twice = np.fft.fftshift(h, axes=(1, 2))  # shifted once too often: only ifftshift undoes it for odd N
    assert names(twice, p)[:1] == ["ifftshift"]
    np.testing.assert_array_equal(apply(applicable("d", twice, p)[0], twice), h)


@pytest.mark.parametrize("op,name", [(lambda x: np.swapaxes(x, 1, 2), "transpose"),
                                     (lambda x: x[:, ::-1], "flip_rows"), (lambda x: x[:, :, ::-1], "flip_cols")])
def test_detector_orientation(passing, healthy, op, name):
    fail = np.ascontiguousarray(op(healthy))
    found = only(fail, passing)
    assert found[0].name == name and found[0].specificity == 2
    assert [f.name for f in found] == [name]  # an off-axis elliptical beam: not ambiguous
    np.testing.assert_array_equal(apply(found[0], fail), healthy)


def test_transpose_needs_square_patterns():
    p = np.concatenate([patterns(32, N, 1), patterns(32, N, 1)], axis=1)[:, :48]  # (B, 48, 32, 1)
    h = np.concatenate([patterns(32, N, 2), patterns(32, N, 2)], axis=1)[:, :48]
    assert names(h[:, ::-1], p) == ["flip_rows"]


def test_centrosymmetric_patterns_make_the_two_flips_ambiguous():
    """A real probe on weak phase objects gives (nearly) centrosymmetric patterns: flipping the rows and
    flipping the columns match equally well; both are proposed (the model decides)."""
    kw = dict(ramp=(0.0, 0.0), ellipse=(1.0, 1.0))
    yy, xx = np.mgrid[:N, :N] - N / 2
    p, h = patterns(64, N, 1, **kw), patterns(64, N, 2, **kw)
    p, h = p * (1 + 0.5 * (yy > 2))[None, :, :, None], h * (1 + 0.5 * (yy > 2))[None, :, :, None]
    p, h = p * (1 + 0.5 * (xx > 3))[None, :, :, None], h * (1 + 0.5 * (xx > 3))[None, :, :, None]
    got = names(h[:, ::-1], p)
    assert got[:1] == ["flip_rows"] and "transpose" not in got


# ----------------------------------------------------------------------------- amplitude vs intensity
def test_intensities_for_amplitudes(passing, healthy):
    fix = only(healthy ** 2, passing)[0]
    assert fix.name == "sqrt" and fix.evidence["scale"] == 1.0
    assert fix.evidence["distance_after"] < 0.1 < fix.evidence["distance_before"]
    np.testing.assert_allclose(apply(fix, healthy ** 2), healthy, rtol=1e-5, atol=1e-6)
    assert apply(fix, healthy ** 2).dtype == np.float32


def test_amplitudes_for_intensities(passing, healthy):
    fix = only(np.sqrt(healthy), passing)[0]
    assert fix.name == "square"
    np.testing.assert_allclose(apply(fix, np.sqrt(healthy)), healthy, rtol=1e-5, atol=1e-6)


def test_intensities_normalised_otherwise_carry_the_scale(passing, healthy):
    fix = only(7.0 * healthy ** 2, passing)[0]
    assert fix.name == "sqrt" and fix.evidence["scale"] == pytest.approx(1 / np.sqrt(7), rel=0.05)
    np.testing.assert_allclose(apply(fix, 7.0 * healthy ** 2).mean(), healthy.mean(), rtol=0.05)


def test_power_needs_non_negative_values_and_not_a_rescale(passing, healthy):
    assert names(healthy * 1000, passing) == []  # a scale is not a power
    assert names(healthy ** 2 - 0.01, passing) == []  # negative values: not intensities
    r = np.random.default_rng(1)  # |N| against |N| + 1 (a subtracted background): no power restores it
    assert names(np.abs(r.normal(size=(200, 16, 16, 1))), np.abs(r.normal(size=(200, 16, 16, 1))) + 1) == []


def test_photon_counts_for_amplitudes():
    rng = np.random.default_rng(0)
    i1, i2 = patterns(300, N, 3).astype(float) ** 2, patterns(300, N, 4).astype(float) ** 2
    counts = rng.poisson(i1 / i1.mean() * 10).astype("float32")
    amps = np.sqrt(rng.poisson(i2 / i2.mean() * 10)).astype("float32")
    assert names(counts, amps)[:1] == ["sqrt"]
    assert names(np.sqrt(counts), amps) == []  # the same dose: healthy


# ----------------------------------------------------------------------------- complex probe
def test_conjugated_probe_shared_by_the_set():
    pr = np.repeat(probe()[None], 8, 0).astype("complex64")
    fix = only(np.conj(pr), pr, None, "probe")[0]
    assert fix.name == "conjugate" and fix.evidence["test"] == "mean" and fix.evidence["error_after"] < 1e-3
    np.testing.assert_array_equal(apply(fix, np.conj(pr)), pr)
    g = fix.evidence["phase_gradient_failing"]
    assert np.sign(g[0]) == -np.sign(fix.evidence["phase_gradient_passing"][0]) != 0


def test_conjugated_probes_per_sample_with_any_global_phase():
    def probes(n, s):
        r = np.random.default_rng(s)
        return np.array([probe(ramp=(0.5 + 0.2 * r.normal(), 0.3 + 0.2 * r.normal()))
                         * np.exp(1j * r.uniform(0, 2 * np.pi)) for _ in range(n)]).astype("complex64")

    a, b = probes(64, 1), probes(64, 2)
    assert names(b, a, None, "probe") == []
    fix = only(np.conj(b), a, None, "probe")[0]
    assert fix.name == "conjugate" and fix.evidence["test"] == "phase_gradients"
    assert names(np.conj(np.abs(b).astype("complex64")), np.abs(a).astype("complex64"), None, "probe") == []


# ----------------------------------------------------------------------------- pixels
def test_hot_pixel_in_every_frame(passing, healthy):
    fail = healthy.copy()
    fail[:, 5, 27, 0] = 200.0
    fix = only(fail, passing)[0]
    assert fix.name == "mask_pixels" and fix.specificity == 0
    (px,) = fix.evidence["pixels"]
    assert (px["row"], px["col"], px["kind"]) == (5, 27, "hot") and px["frames"] == 1.0
    assert px["value"] == 200.0 and px["times_median_pixel"] > 100
    out = apply(fix, fail)
    keep = np.ones((N, N), bool)
    keep[5, 27] = False
    np.testing.assert_array_equal(out[:, keep], healthy[:, keep])
    assert np.max(np.abs(out[:, 5, 27] - healthy[:, 5, 27])) < 0.05 * float(healthy.max())
    assert out.dtype == fail.dtype


def test_a_few_hot_pixels_and_a_dead_one(passing, healthy):
    fail = healthy.copy()
    fail[:60, 5, 27, 0] = 300.0  # 60 of 64 frames
    fail[:, 28, 3, 0] = 150.0
    fail[:, 18, 17, 0] = 0.0  # dead in the bright part of the pattern
    fix = only(fail, passing)[0]
    got = {(p["row"], p["col"], p["kind"]) for p in fix.evidence["pixels"]}
    assert got == {(5, 27, "hot"), (28, 3, "hot"), (18, 17, "dead")}
    out = apply(fix, fail)
    assert np.max(np.abs(out - healthy)) < 0.5 * float(healthy.max())
    # speckle varies pixel to pixel: the neighbours' median is within about 30 % of the lost value
    assert np.mean(np.abs(out[:, 18, 17] - healthy[:, 18, 17])) < 0.4 * float(np.mean(healthy[:, 18, 17]))


def test_pixels_lit_in_the_passing_set_or_too_many_are_not_masked(passing, healthy):
    p = passing.copy()
    p[:, 5, 27, 0] = 200.0  # hot in training too: how the detector is
    fail = healthy.copy()
    fail[:, 5, 27, 0] = 200.0
    assert names(fail, p) == []
    fail = healthy.copy()
    fail[:, 2:4, 2:20, 0] = 500.0  # 36 pixels: not "a few"
    assert "mask_pixels" not in names(fail, passing)
    fail = healthy.copy()
    fail[:20, 5, 27, 0] = 200.0  # in a third of the frames only
    assert names(fail, passing) == []


# ----------------------------------------------------------------------------- integers
def _counts(a, seed):
    i = a.astype(np.float64) ** 2
    top = np.random.default_rng(seed).uniform(36000, 50000, len(a))[:, None, None, None]
    return np.round(i / i.max(axis=(1, 2, 3), keepdims=True) * top)


def test_int16_counts_wrapped(passing, healthy):
    truth = _counts(healthy, 1)
    fail = truth.astype(np.int64).astype(np.int16)
    fix = only(fail, _counts(passing, 2).astype("float32"))[0]
    assert fix.name == "unwrap_integers" and fix.evidence["bits"] == 16
    assert fix.evidence["negative_values"] == int((truth > 32767).sum()) and fix.evidence["negative_frames"] == 64
    out = apply(fix, fail)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, truth.astype("float32"))
    assert names(fail, _counts(passing, 2).astype("float32") - 5000) == []  # the passing set has negatives too
    small = np.random.default_rng(0).integers(-5, 100, (64, N, N, 1)).astype(np.int16)  # background-subtracted
    assert "unwrap_integers" not in names(small, _counts(passing, 2).astype("float32"))


def test_eight_bit_export(passing, healthy):
    fail = np.round(healthy / healthy.max() * 255).astype(np.uint8)
    fix = only(fail, passing)[0]
    assert fix.name == "dequantise" and fix.evidence["levels"] <= 256 and fix.evidence["level_max"] == 255
    out = apply(fix, fail)
    assert out.dtype == np.float32
    assert abs(out.mean() / healthy.mean() - 1) < 0.1
    assert np.corrcoef(out.ravel(), healthy.ravel())[0, 1] > 0.99
    as_float = (np.round(healthy / healthy.max() * 255) / 255).astype("float32")  # float holding 255 steps
    assert names(as_float, passing) == ["dequantise"]
    assert np.corrcoef(apply(applicable("d", as_float, passing)[0], as_float).ravel(), healthy.ravel())[0, 1] > 0.99
    assert names(fail, np.round(passing / passing.max() * 255).astype(np.uint8)) == []  # trained 8-bit: fine


# ----------------------------------------------------------------------------- positions
def test_positions_in_metres_rescaled_by_a_power_of_ten():
    p, h = positions(300, 1), positions(300, 2)
    fix = only(h * 1e-6, p, None, "positions")[0]
    assert fix.name == "rescale_units" and fix.evidence["factor"] == 1e6 and fix.evidence["power_of_ten"] == 6
    np.testing.assert_allclose(apply(fix, h * 1e-6), h, rtol=1e-5)
    fix = only(h * 1e3, p, None, "positions")[0]  # nm for um
    assert fix.evidence["factor"] == pytest.approx(1e-3)


def test_positions_in_metres_with_a_pixel_size():
    p, h = positions(300, 1), positions(300, 2)
    fix = only(h * 50e-9, p, None, "positions")[0]
    assert fix.name == "rescale_units" and fix.evidence["power_of_ten"] is None
    assert fix.evidence["factor"] == pytest.approx(2e7, rel=0.05)
    np.testing.assert_allclose(apply(fix, h * 50e-9), h, rtol=0.05)


def test_degrees_are_not_units_and_scalars_are_not_positions():
    rng = np.random.default_rng(0)
    rad = rng.uniform(0.5, 1.5, (300, 3)).astype("float32")
    assert names(np.degrees(rng.uniform(0.5, 1.5, (300, 3))).astype("float32"), rad, None, "angles") == []
    r = np.random.default_rng(1)  # a ReLU-killing shift (+5 sigma) is not a unit
    assert names((r.normal(size=(300, 4)) * 0.3 + 5).astype("float32"),
                 (r.normal(size=(300, 4)) * 0.3).astype("float32"), None, "b") == []


def test_negated_positions():
    p, h = positions(300, 1), positions(300, 2)
    fix = only(-h, p, None, "positions")[0]
    assert fix.name == "negate"
    np.testing.assert_array_equal(apply(fix, -h), h)
    off = np.random.default_rng(3).uniform(-3, 3, (300, 1, 2, 1)).astype("float32")
    assert names(-off, np.random.default_rng(4).uniform(-3, 3, (300, 1, 2, 1)).astype("float32")) == []


def test_swapped_xy():
    p = positions(300, 1, x=(0, 10), y=(40, 60))
    h = positions(300, 2, x=(0, 10), y=(40, 60))
    fail = np.ascontiguousarray(h[:, :, ::-1])
    fix = only(fail, p, None, "positions")[0]
    assert fix.name == "swap_xy" and fix.evidence["axis"] == 2
    np.testing.assert_array_equal(apply(fix, fail), h)
    vec = h[:, 0, :, 0]  # (B, 2)
    assert names(np.ascontiguousarray(vec[:, ::-1]), p[:, 0, :, 0], None, "pos") == ["swap_xy"]


def test_mirrored_positions_make_negate_and_swap_ambiguous():
    """x in [0, 10] and y in [-10, 0]: negating and swapping x/y give the same values; both are proposed
    (same specificity), and both restore."""
    p = positions(300, 1, x=(0, 10), y=(-10, 0))
    h = positions(300, 2, x=(0, 10), y=(-10, 0))
    found = applicable("pos", -h, p)
    assert {f.name for f in found} == {"negate", "swap_xy"}
    for f in found:
        means = apply(f, -h)[:, 0, :, 0].mean(axis=0)
        np.testing.assert_allclose(means, p[:, 0, :, 0].mean(axis=0), atol=0.5)


# ----------------------------------------------------------------------------- apply: subsamples, dtypes
def test_apply_uses_only_the_evidence_and_works_on_another_subsample(passing, healthy):
    fail = healthy.copy()
    fail[:, 5, 27, 0] = 200.0
    fail = np.fft.ifftshift(fail, axes=(1, 2))
    found = applicable("d", fail[:32], passing)
    assert [f.name for f in found][:2] == ["mask_pixels", "fftshift"]
    shift = found[1]
    np.testing.assert_array_equal(apply(shift, fail[32:]), np.fft.fftshift(fail[32:], axes=(1, 2)))
    fix = ConventionFix(**json.loads(json.dumps(shift.__dict__)))  # a round trip through JSON
    np.testing.assert_array_equal(apply(fix, fail), apply(shift, fail))


def test_apply_refuses_other_shapes_and_unknown_names(passing, healthy):
    fix = applicable("d", np.fft.ifftshift(healthy, axes=(1, 2)), passing)[0]
    with pytest.raises(PtyAnalysisError, match="shape"):
        apply(fix, healthy[:, :16, :16])
    bad = ConventionFix("fftshfit", "d", {}, 1)
    for fn in (lambda: apply(bad, healthy), lambda: fix_text(bad), lambda: reason_text(bad)):
        with pytest.raises(PtyAnalysisError, match="did you mean 'fftshift'"):
            fn()


def test_fixes_are_sorted_most_specific_first(passing, healthy):
    fail = np.fft.ifftshift(healthy ** 2, axes=(1, 2))
    fail[:, 10, 20, 0] = 1e4
    got = applicable("d", fail, passing)
    assert [f.name for f in got] == ["mask_pixels", "fftshift", "sqrt"]  # three faults at once
    assert [f.specificity for f in got] == [0, 1, 2]
    fixed = fail
    for f in got:
        fixed = apply(f, fixed)
    assert np.corrcoef(fixed.ravel(), healthy.ravel())[0, 1] > 0.99


# ----------------------------------------------------------------------------- the words (renderer only)
def F(name, k="diffraction", **ev):
    return ConventionFix(name, k, ev, C.SPECIFICITY[name])


GEO = dict(axes=[1, 2], shape=[64, 64, 1], against="passing", match_error_before=1.41, match_error_after=0.03,
           noise_floor=0.04, failing_peak=[0, 0], passing_peak=[32, 32], peak_after=[32, 32])


@pytest.mark.parametrize("fix,words", [
    (F("fftshift", **GEO), ["apply numpy.fft.fftshift to 'diffraction'", "axes (1, 2)", "central beam",
                            "corners", "(0, 0)", "(32, 32)"]),
    (F("ifftshift", **GEO), ["apply numpy.fft.ifftshift to 'diffraction'"]),
    (F("transpose", **GEO), ["transpose the detector axes", "'diffraction'"]),
    (F("flip_rows", **GEO), ["flip the detector rows (up/down"]),
    (F("flip_cols", **GEO), ["flip the detector columns (left/right"]),
    (F("sqrt", against="passing", distance_before=2.7, distance_after=0.01, failing_mean=0.5, passing_mean=0.1,
       mean_after=0.1, failing_p99=30.0, passing_p99=5.0, scale=1.0),
     ["'diffraction' holds intensities where the model was trained on amplitudes: feed sqrt(diffraction)"]),
    (F("square", against="passing", distance_before=1.0, distance_after=0.01, failing_mean=0.3, passing_mean=0.1,
       mean_after=0.1, failing_p99=2.0, passing_p99=5.0, scale=2.0),
     ["holds amplitudes where the model was trained on intensities", "** 2", "multiply by 2"]),
    (F("conjugate", "probe", against="passing", test="mean", error_before=1.1, error_after=0.0,
       imag_mean_failing=-0.2, imag_mean_passing=0.2, phase_gradient_failing=[-0.6, -0.4],
       phase_gradient_passing=[0.6, 0.4]), ["numpy.conj(probe)", "complex conjugate", "-0.6"]),
    (F("mask_pixels", pixels=[{"row": 12, "col": 40, "channel": 0, "kind": "hot", "value": 2.3e4, "frames": 1.0,
                              "times_median_pixel": 310.0, "passing_median": 1.0, "passing_neighbours": 1.0}],
       shape=[64, 64, 1], against="passing", n_frames=64, replacement="median of the 8 neighbours"),
     ["mask detector pixel (row 12, col 40) of 'diffraction' (hot: 2.3e+04 in 100 % of frames, 310 x the median "
      "pixel)", "median of its 8 neighbours"]),
    (F("mask_pixels", pixels=[{"row": 3, "col": 4, "channel": None, "kind": "dead", "value": 0.0, "frames": 0.97,
                              "times_median_pixel": None, "passing_median": 2.5, "passing_neighbours": 2.0}],
       shape=[64, 64], against="passing", n_frames=64), ["(row 3, col 4)", "dead: 0 in 97 % of frames"]),
    (F("unwrap_integers", bits=16, dtype="int16", against="passing", shape=[64, 64, 1], negative_values=1234,
       negative_frames=56, n_frames=64, min=-32768, max_positive=32767, max_unwrapped=40000, out_dtype="float32"),
     ["export 'diffraction' as float32: int16 counts above 32767 wrapped to negative values (1,234 values in 56 "
      "of 64 frames"]),
    (F("dequantise", levels=200, origin=0.0, step=1.0, level_max=255, full_scale=255, dtype="uint8",
       against="passing", shape=[64, 64, 1], passing_min=0.0, passing_max=4.2, passing_distinct=60000,
       out_dtype="float32"), ["export 'diffraction' as float", "8-bit image export loses the dynamic range"]),
    (F("rescale_units", "positions", factor=1e6, power_of_ten=6, measured_factor=1.002e6, against="passing",
       distance_before=2.0, distance_after=0.1, failing_rms=3e-5, passing_rms=30.0),
     ["'positions' is in other units", "multiply it by 1e+06", "metres fed where the model expects um"]),
    (F("rescale_units", "positions", factor=2e7, power_of_ten=None, measured_factor=1.98e7, against="passing",
       distance_before=2.0, distance_after=0.1, failing_rms=1.5e-6, passing_rms=30.0),
     ["multiply it by 2e+07", "metres fed where the model expects pixels of 50 nm"]),
    (F("negate", "positions", against="passing", distance_before=4.0, distance_after=0.1, failing_mean=[-30, -30],
       passing_mean=[30, 30]), ["negate 'positions'", "sign"]),
    (F("swap_xy", "positions", axis=2, against="passing", distance_before=4.0, distance_after=0.1,
       failing_mean=[50, 5], passing_mean=[5, 50]), ["swap the two axes of 'positions', x and y", "axis 2"]),
])
def test_fix_text_names_the_action(fix, words):
    text = fix_text(fix)
    for w in words:
        assert w in text, (w, text)
    assert reason_text(fix)


def test_fix_text_lists_several_pixels():
    px = [{"row": r, "col": c, "channel": None, "kind": k, "value": v, "frames": 1.0, "times_median_pixel": t,
           "passing_median": 2.0, "passing_neighbours": 2.0}
          for r, c, k, v, t in [(1, 2, "hot", 300.0, 50.0), (3, 4, "hot", 200.0, 40.0), (5, 6, "dead", 0.0, None),
                                (7, 8, "hot", 100.0, 20.0), (9, 9, "hot", 90.0, 18.0), (10, 1, "hot", 80.0, 16.0)]]
    text = fix_text(F("mask_pixels", pixels=px, shape=[32, 32], against="reference", n_frames=64))
    assert text.startswith("mask 6 detector pixels of 'diffraction': (row 1, col 2) (hot: 300 in 100 % of frames")
    assert "(row 5, col 6) (dead: 0 in 100 % of frames" in text and "and 2 more" in text
    assert "hot and dead pixels" in text and "not in the reference/training inputs" in text
    assert reason_text(F("mask_pixels", pixels=px)).startswith("6 dead/hot detector pixels")


def test_reason_text_is_short_and_physical():
    assert reason_text(F("fftshift", **GEO)) == "its patterns are not fft-shifted (central beam in the corners)"
    assert "transposed" in reason_text(F("transpose", **GEO))
    assert "intensities" in reason_text(F("sqrt", scale=1.0))
    assert "8-bit" in reason_text(F("dequantise", levels=200))
    assert "conjugated" in reason_text(F("conjugate"))
    assert "wrapped" in reason_text(F("unwrap_integers", dtype="int16", negative_values=3))
    assert "swapped" in reason_text(F("swap_xy", axis=2))
    assert "hot" in reason_text(F("mask_pixels", pixels=[{"row": 1, "col": 2, "kind": "hot"}]))
    assert all(len(reason_text(F(n, **GEO, levels=1, dtype="int16", negative_values=1, factor=10.0,
                                 pixels=[{"row": 1, "col": 2, "kind": "hot"}]))) < 90 for n in C.NAMES)


def test_real_fixes_render(passing, healthy):
    """Every detected fix renders without a missing number."""
    fail = np.fft.ifftshift(healthy, axes=(1, 2))
    for f in (applicable("d", fail, passing) + applicable("d", healthy ** 2, passing)
              + applicable("p", -positions(300, 2), positions(300, 1))
              + applicable("p", positions(300, 2) * 1e-6, positions(300, 1))):
        text = fix_text(f)
        assert "None" not in text and "?" not in text, text

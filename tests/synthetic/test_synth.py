"""The synthetic study: physics, geometry, split and view rules, hub layout."""

import json

import numpy as np
import pytest

from ptyanalysis import hub, io
from ptyanalysis.conventions import SPLITS
from ptyanalysis.synthetic import simulate

TINY = simulate.StudySize("tiny", N=32, object_size=96, n_positions=240)


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_hub")
    desc = simulate.simulate_study(root, simulate.SimulationConfig(size=TINY, doses=(1e3, 1e5), seed=7))
    return root, desc


def test_probe_is_a_centred_defocused_spot():
    p = simulate.make_probe(64)
    assert p.shape == (64, 64) and p.dtype == np.complex64
    a = np.abs(p)
    cy, cx = np.unravel_index(np.argmax(a * (a > 0)), a.shape)
    # intensity centroid at the patch centre (N//2, N//2)
    yy, xx = np.indices(a.shape)
    w = a**2 / (a**2).sum()
    assert abs((w * yy).sum() - 32) < 1 and abs((w * xx).sum() - 32) < 1
    # defocused: the phase varies across the illuminated disc (curvature), unlike an in-focus spot
    r = simulate.probe_radius(p)
    assert 6 < r < 20
    lit = a > 0.2 * a.max()
    assert np.ptp(np.angle(p[lit])) > 1.0
    assert simulate.probe_radius(simulate.make_probe(128)) > r


def test_object_comes_from_skimage_images():
    o = simulate.make_object(128)
    assert o.shape == (128, 128) and o.dtype == np.complex64
    assert 0.39 <= np.abs(o).min() and np.abs(o).max() <= 1.0 + 1e-6
    assert np.ptp(np.angle(o)) > 1.0
    assert np.corrcoef(np.abs(o).ravel(), np.angle(o).ravel())[0, 1] < 0.9  # two different images


def test_disc_overlap_analytic_values():
    R = 10.0
    assert simulate.disc_overlap(0.0, R) == pytest.approx(1.0)
    assert simulate.disc_overlap(2 * R, R) == pytest.approx(0.0, abs=1e-12)
    assert simulate.disc_overlap(3 * R, R) == 0.0
    # d = R: 2/3 - sqrt(3)/(2 pi)
    assert simulate.disc_overlap(R, R) == pytest.approx(2 / 3 - np.sqrt(3) / (2 * np.pi), rel=1e-9)


def test_counts_are_near_integers_with_the_dose_as_mean(tiny_hub):
    root, _ = tiny_hub
    for dose in (1e3, 1e5):
        for split in SPLITS:
            data = io.load_dataset(hub.dataset_path(root, dose, split))
            assert data.nphotons == dose
            counts = io.recover_counts(data)
            low = counts[counts < 10]  # s is re-estimated from the data: only low counts are exact to 0.05
            assert np.abs(low - np.round(low)).max() < 0.05
            # the mean total counts per pattern is the dose (each split holds about half the patterns)
            assert counts.sum(axis=(1, 2)).mean() == pytest.approx(dose, rel=0.15)
            assert data.Y is not None and data.obj is not None
            # stored amplitude is sqrt(counts)/s: its intensity follows the far field of Y * probe
            far = simulate.exit_waves_to_far_field(data.Y, data.probe) ** 2
            corr = np.corrcoef(far.sum(0).ravel(), (data.diffraction**2).sum(0).ravel())[0, 1]
            assert corr > 0.99


def test_split_rule_and_positions(tiny_hub):
    root, desc = tiny_hub
    tr = io.load_dataset(hub.dataset_path(root, 1e3, "train"))
    te = io.load_dataset(hub.dataset_path(root, 1e3, "test"))
    assert tr.n + te.n == TINY.n_positions
    assert tr.ycoords.max() < te.ycoords.min()  # train = smaller y
    assert abs(tr.ycoords.mean() - te.ycoords.mean()) > 20  # absolute positions differ
    for d in (tr, te):
        lo, hi = TINY.N // 2, TINY.object_size - TINY.N + TINY.N // 2
        assert d.positions.min() >= lo and d.positions.max() <= hi
        # the ground-truth patches are the object cut at the positions (conventions.patch_slices)
        np.testing.assert_array_equal(d.Y[3], simulate.extract_patches(d.obj, d.positions[3:4], TINY.N)[0])
    # same positions at every dose
    np.testing.assert_array_equal(tr.xcoords, io.load_dataset(hub.dataset_path(root, 1e5, "train")).xcoords)


def test_views_are_seeded_subsamples_with_reported_overlap(tiny_hub):
    root, desc = tiny_hub
    views = hub.load_views(root, 1e3)
    for split in SPLITS:
        n = desc["splits"][split]
        dense, sparse = views["dense"][split], views["sparse"][split]
        assert len(dense) == round(0.8 * n) and len(sparse) == round(0.2 * n)
        assert len(np.unique(dense)) == len(dense)
        assert desc["overlap"]["dense"][split]["mean_disc_overlap"] > desc["overlap"]["sparse"][split]["mean_disc_overlap"]
    v = hub.load_view(root, 1e3, "sparse", "test")
    assert v.n == len(views["sparse"]["test"])
    # reproducible: the same seed gives the same study
    again = simulate.simulate_study(root / "again", simulate.SimulationConfig(size=TINY, doses=(1e3,), seed=7))
    assert again["overlap"] == json.loads((root / "study.json").read_text())["overlap"]
    a = io.load_dataset(hub.dataset_path(root / "again", 1e3, "test"))
    b = io.load_dataset(hub.dataset_path(root, 1e3, "test"))
    np.testing.assert_array_equal(a.diffraction, b.diffraction)


def test_hub_layout_is_the_studys(tiny_hub):
    root, _ = tiny_hub
    for dose in ("dose_1000", "dose_100000"):
        for split in SPLITS:
            assert (root / "data" / "phase_c" / dose / f"patched_{split}.npz").exists()
    meta = io.load_dataset(hub.dataset_path(root, 1e3, "test")).metadata
    assert meta["physics_parameters"]["nphotons"] == 1000.0
    assert meta["data_transformations"][0]["operation"] == "simulate"


def test_cli_simulate_bad_size_is_a_clear_error(tmp_path, capsys):
    from ptyanalysis.cli import main

    with pytest.raises(SystemExit):
        main(["simulate", str(tmp_path), "--size", "huge"])
    assert main(["simulate", str(tmp_path / "h"), "--size", "ci", "--object-size", "40", "--doses", "1000"]) == 2
    assert "object_size" in capsys.readouterr().err

"""Phase G figures read as the issue asks: phase as scored (no flat clipped panel), FRC in cycles/pixel."""

import importlib.util
from pathlib import Path

import numpy as np

from ptyanalysis.phase_g import figures

_spec = importlib.util.spec_from_file_location("phase_g_fixture", Path(__file__).parent / "data" / "phase_g_fixture.py")
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def test_constant_phase_offset_cannot_clip_a_panel_flat(tmp_path):
    """An arm = ground truth * exp(1.6 i) (a raw phase far above the GT's range) is drawn with structure."""
    hub = F.make_hub(tmp_path / "hub", doses=(1000,), views=("dense",), splits=("test",))
    job = hub / "analysis" / "dose_1000" / "dense" / "test"
    with np.load(job / "reconstructions.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["PtychoPINN"] = (arrays["ground_truth"] * np.exp(1.6j)).astype(np.complex64)
    np.savez(job / "reconstructions.npz", **arrays)
    sc = figures.scored_images(job)
    pinn, gt = sc["images"]["PtychoPINN"]["phase"], sc["images"]["GroundTruth"]["phase"]
    np.testing.assert_allclose(pinn, gt, atol=1e-5)  # the offset is removed, as the scoring removes it
    assert np.abs(sc["images"]["PtychoPINN"]["d_phase"]).max() < 1e-5
    fig = figures.plot_reconstructions(job)
    phase_row = [ax for ax in fig.axes if ax.get_images()][len(figures.ARMS) + 1:2 * (len(figures.ARMS) + 1)]
    for ax in phase_row:
        im = ax.get_images()[0]
        lo, hi = im.get_clim()
        data = np.ma.masked_invalid(im.get_array()).compressed()
        clipped = np.mean((data <= lo) | (data >= hi))
        assert clipped < 0.05 and data.std() > 0.1  # structure shown, not a flat clipped colour


def test_frc_rings_match_the_study_geometry():
    f, n = figures.frc_rings(49)
    assert f[0] == 0 and abs(f[1] - 1 / 49) < 1e-12 and len(f) == round(np.sqrt(2) * 24) + 1
    assert n.sum() == 49 * 49 and n[0] == 1

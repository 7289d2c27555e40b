"""Synthetic dose/overlap study, faithful to the real study's geometry and files.

The generator writes a hub in the study's layout (see :mod:`ptyanalysis.hub`):

* a complex **probe**: a circular aperture (zone-plate-like pupil) focused and
  propagated out of focus by a quadratic (Fresnel) defocus phase, so it has
  the ring structure and phase curvature of a real defocused X-ray probe;
* a complex **object** whose amplitude and phase come from images that
  scikit-image ships (``camera`` amplitude, ``coins`` phase by default);
* **uniform random scan positions** (seeded, integer object pixels) in
  ``[N/2, H - N/2]^2``, split at the mid-range of y into ``train`` (smaller y)
  and ``test``, so the two splits cover different parts of the object and
  their absolute positions differ, as in the real study;
* for each dose (expected photons per pattern, averaged over the dataset)
  **Poisson counts** of the far-field intensity, stored as normalized
  amplitude ``sqrt(counts) / s`` with ground truth ``objectGuess`` and ``Y``
  (docs/formats.md#dataset-npz);
* "dense" and "sparse" **views** as seeded subsamples of each split, with the
  mean disc-overlap fraction to the K nearest neighbours reported for each.

Sizes: :data:`SIZES` holds ``ci`` (seconds), ``demo`` (what ``make demo``
uses) and ``study`` (the real geometry: N = 128, object 464 x 464, 10,304
positions; meant for a GPU).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import hub as _hub
from ..conventions import DOSES, SPLITS, VIEW_FRACTIONS, xy_from_positions
from ..errors import PtyAnalysisError, did_you_mean
from ..fileutil import write_json
from ..hub import load_views


@dataclass(frozen=True)
class StudySize:
    """Geometry of a synthetic study.

    Attributes
    ----------
    name : str
        Size label.
    N : int
        Patch (diffraction pattern) size in pixels.
    object_size : int
        Side of the square object in pixels.
    n_positions : int
        Number of scan positions (both splits together).
    probe_radius : float
        Radius of the probe's pupil in units of the Fourier grid (fraction of N/2).
    defocus : float
        Quadratic phase at the pupil edge in radians (out-of-focus amount).
    """

    name: str
    N: int
    object_size: int
    n_positions: int
    probe_radius: float = 0.4
    defocus: float | None = None


#: Predefined sizes.
SIZES = {
    "ci": StudySize("ci", N=32, object_size=128, n_positions=1000),
    "demo": StudySize("demo", N=64, object_size=256, n_positions=1600),
    "study": StudySize("study", N=128, object_size=464, n_positions=10304),
}


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a synthetic study (saved with it).

    Attributes
    ----------
    size : StudySize
        Geometry.
    doses : tuple of float
        Expected photons per pattern.
    views : dict
        View name -> fraction of each split's positions kept (seeded subsample).
    seed : int
        Master seed (positions, Poisson noise, view subsamples).
    amplitude_image, phase_image : str
        Names of ``skimage.data`` images used for the object.
    amplitude_range : tuple of float
        Object amplitude is mapped linearly onto this range.
    phase_range : float
        Object phase spans ``[-phase_range/2, phase_range/2]`` radians.
    overlap_k : int
        Number of nearest neighbours in the disc-overlap metric.
    """

    size: StudySize = SIZES["demo"]
    doses: tuple = DOSES
    views: dict = field(default_factory=lambda: dict(VIEW_FRACTIONS))
    seed: int = 42
    amplitude_image: str = "camera"
    phase_image: str = "coins"
    amplitude_range: tuple = (0.4, 1.0)
    phase_range: float = 1.6 * np.pi / 2
    overlap_k: int = 4


def make_probe(N: int, radius: float = 0.4, defocus: float | None = None) -> np.ndarray:
    """A defocused focused-X-ray probe on an ``N x N`` grid.

    The pupil is a circular aperture of radius ``radius * N/2`` Fourier pixels
    with a central stop (as a zone plate has) and a quadratic defocus phase of
    ``defocus`` radians at its edge; the probe is its inverse Fourier transform,
    centred on pixel ``(N//2, N//2)`` and normalised to unit peak amplitude.

    Parameters
    ----------
    N : int
        Grid size.
    radius : float
        Pupil radius as a fraction of ``N/2``.
    defocus : float, optional
        Defocus phase at the pupil edge (radians); 0 gives an in-focus Airy
        spot; ``None`` uses ``6 * N / 64``.

    Returns
    -------
    ndarray, (N, N) complex64
    """
    if defocus is None:
        defocus = 6.0 * N / 64
    k = np.fft.fftshift(np.fft.fftfreq(N)) * N  # Fourier pixel index, centred
    ky, kx = np.meshgrid(k, k, indexing="ij")
    rho = np.hypot(ky, kx) / (radius * N / 2)
    pupil = ((rho <= 1.0) & (rho >= 0.3)).astype(np.complex128)  # zone plate with central stop
    pupil *= np.exp(1j * defocus * rho**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    probe /= np.abs(probe).max()
    return probe.astype(np.complex64)


def probe_radius(probe, fraction: float = 0.9) -> float:
    """Radius (pixels) of the disc about the probe centre that holds ``fraction`` of its intensity."""
    p = np.abs(np.asarray(probe)) ** 2
    n = p.shape[0]
    yy, xx = np.indices(p.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).ravel()
    order = np.argsort(r)
    cum = np.cumsum(p.ravel()[order])
    return float(r[order][np.searchsorted(cum, fraction * cum[-1])])


def make_object(size: int, amplitude_image: str = "camera", phase_image: str = "coins",
                amplitude_range=(0.4, 1.0), phase_range: float = 1.6 * np.pi / 2) -> np.ndarray:
    """Complex object from two images shipped with scikit-image.

    Parameters
    ----------
    size : int
        Side of the square object.
    amplitude_image, phase_image : str
        ``skimage.data`` function names (grey or colour; colour is converted).
    amplitude_range : (float, float)
        Range the amplitude image is mapped to.
    phase_range : float
        Peak-to-peak phase in radians, centred on 0.

    Returns
    -------
    ndarray, (size, size) complex64
    """
    import skimage.color
    import skimage.data
    import skimage.transform

    def grey(name):
        try:
            img = getattr(skimage.data, name)()
        except AttributeError as exc:
            raise PtyAnalysisError(f"skimage.data has no image {name!r}") from exc
        img = np.asarray(img, dtype=np.float64)
        if img.ndim == 3:
            img = skimage.color.rgb2gray(img[..., :3] / 255.0)
        else:
            img = img / max(img.max(), 1e-12)
        s = min(img.shape)
        img = img[:s, :s]
        img = skimage.transform.resize(img, (size, size), anti_aliasing=True)
        lo, hi = np.percentile(img, [1, 99])
        return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)

    a0, a1 = amplitude_range
    amp = a0 + (a1 - a0) * grey(amplitude_image)
    phase = (grey(phase_image) - 0.5) * phase_range
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def make_positions(n: int, object_size: int, N: int, rng) -> np.ndarray:
    """``n`` uniform random integer scan centres (row, col) in ``[N/2, H - N/2]^2``."""
    lo, hi = N // 2, object_size - N + N // 2
    return rng.integers(lo, hi + 1, size=(n, 2)).astype(np.float64)


def split_positions(positions) -> dict:
    """Indices of each split: train = y below the mid-range of y, test = the rest."""
    y = np.asarray(positions)[:, 0]
    mid = 0.5 * (y.min() + y.max())
    return {"train": np.flatnonzero(y < mid), "test": np.flatnonzero(y >= mid)}


def view_indices(n: int, fraction: float, rng) -> np.ndarray:
    """Sorted seeded subsample of ``round(fraction * n)`` of ``range(n)``."""
    k = max(1, int(round(fraction * n)))
    return np.sort(rng.choice(n, size=k, replace=False))


def disc_overlap(d, R):
    """Overlap fraction of two discs of radius ``R`` whose centres are ``d`` apart.

    ``f(d) = [2R^2 acos(d/2R) - (d/2) sqrt(4R^2 - d^2)] / (pi R^2)`` for
    ``d < 2R``, else 0 (docs/formats.md#the-study).
    """
    d = np.asarray(d, dtype=np.float64)
    x = np.clip(d / (2 * R), 0, 1)
    f = (2 * R**2 * np.arccos(x) - (d / 2) * np.sqrt(np.clip(4 * R**2 - d**2, 0, None))) / (np.pi * R**2)
    return np.where(d < 2 * R, f, 0.0)


def overlap_metrics(positions, R: float, k: int = 4) -> dict:
    """Mean disc-overlap fraction to the ``k`` nearest neighbours, and NN distances.

    Parameters
    ----------
    positions : (n, 2) array
        Scan centres (row, col).
    R : float
        Probe radius in pixels (see :func:`probe_radius`).
    k : int
        Number of nearest neighbours.

    Returns
    -------
    dict
        ``mean_disc_overlap``, ``median_nn_distance_px``, ``mean_knn_distance_px``,
        ``probe_radius_px``, ``k``, ``n_positions``.
    """
    from scipy.spatial import cKDTree

    p = np.asarray(positions, dtype=np.float64)
    kk = min(k, len(p) - 1)
    if kk < 1:
        return {"mean_disc_overlap": float("nan"), "k": k, "n_positions": len(p)}
    dist, _ = cKDTree(p).query(p, k=kk + 1)
    dist = dist[:, 1:]
    return {
        "mean_disc_overlap": float(disc_overlap(dist, R).mean()),
        "median_nn_distance_px": float(np.median(dist[:, 0])),
        "mean_knn_distance_px": float(dist.mean()),
        "probe_radius_px": float(R),
        "k": int(kk),
        "n_positions": int(len(p)),
    }


def exit_waves_to_far_field(obj_patches, probe) -> np.ndarray:
    """Far-field amplitude ``|FFT2(O P)| `` (orthonormal, fftshifted) of object patches."""
    return np.abs(np.fft.fftshift(np.fft.fft2(obj_patches * probe, norm="ortho"), axes=(-2, -1)))


def extract_patches(obj, positions, N: int) -> np.ndarray:
    """Object patches at integer positions (the canonical convention, :func:`~ptyanalysis.conventions.patch_slices`).

    Parameters
    ----------
    obj : ndarray, shape (H, W)
        The object.
    positions : array_like, shape (n, 2)
        (row, col) patch centres in object pixels (rounded to integers).
    N : int
        Patch size.

    Returns
    -------
    ndarray, shape (n, N, N)
        ``obj[patch_slices(position, N)]`` for each position, same dtype as ``obj``.

    Raises
    ------
    PtyAnalysisError
        If a patch is not entirely inside the object (no silent wrap-around).
    """
    from ..imaging.stitching import extract

    return extract(obj, positions, int(N), method="nearest")


def simulate_counts(obj_patches, probe, nphotons: float, rng):
    """Poisson counts for ``nphotons`` expected photons per pattern.

    Parameters
    ----------
    obj_patches : ndarray, shape (n, N, N)
        Object patches at the scan positions.
    probe : ndarray, shape (N, N)
    nphotons : float
        Expected photons per pattern (averaged over the patterns).
    rng : numpy.random.Generator

    Returns
    -------
    diffraction : ndarray, shape (n, N, N), float32
        ``sqrt(counts) / s``.
    s : float
        ``sqrt(nphotons / mean over patterns of sum |O P|^2)``.
    """
    amp = exit_waves_to_far_field(obj_patches, probe)
    s = np.sqrt(nphotons / np.mean(np.sum(amp**2, axis=(-2, -1))))
    counts = rng.poisson((s * amp) ** 2)
    return (np.sqrt(counts) / s).astype(np.float32), float(s)


def simulate_study(hub, config: SimulationConfig = SimulationConfig(), progress=None) -> dict:
    """Generate a synthetic study hub.

    Parameters
    ----------
    hub : path
        Output directory (created). Existing datasets are overwritten atomically.
    config : SimulationConfig
        Geometry, doses, views, seed.
    progress : callable, optional
        Called with a line of text for each step.

    Returns
    -------
    dict
        The study description also written to ``HUB/study.json``: config,
        split sizes, overlap metrics per view and split, dataset paths.
    """
    from .. import io

    say = progress or (lambda msg: None)
    size = config.size
    N, H = size.N, size.object_size
    if H < 2 * N:
        raise PtyAnalysisError(f"object_size {H} must be at least 2 N = {2 * N}")
    rng = np.random.default_rng(config.seed)
    probe = make_probe(N, size.probe_radius, size.defocus)
    obj = make_object(H, config.amplitude_image, config.phase_image, config.amplitude_range, config.phase_range)
    positions = make_positions(size.n_positions, H, N, rng)
    splits = split_positions(positions)
    R = probe_radius(probe)
    views = {v: {s: view_indices(len(splits[s]), f, np.random.default_rng([config.seed, i, j]))
                 for j, s in enumerate(SPLITS)}
             for i, (v, f) in enumerate(config.views.items())}
    overlap = {v: {s: overlap_metrics(positions[splits[s]][views[v][s]], R, config.overlap_k) for s in SPLITS}
               for v in views}
    description = {
        "config": _jsonable(asdict(config)),
        "splits": {s: int(len(splits[s])) for s in SPLITS},
        "split_rule": "train: y < (min y + max y) / 2; test: the rest",
        "overlap": overlap,
        "datasets": {},
    }
    for dose in config.doses:
        drng = np.random.default_rng([config.seed, int(dose)])
        for split in SPLITS:
            idx = splits[split]
            pos = positions[idx]
            Y = extract_patches(obj, pos, N)
            diffraction, s = simulate_counts(Y, probe, dose, drng)
            x, y = xy_from_positions(pos)
            meta = io.make_metadata(
                nphotons=float(dose), N=N, gridsize=1,
                object_shape=[H, H], intensity_normalization_s=s, probe_radius_px=R,
                split=split, seed=config.seed, size=size.name,
            )
            meta = io.add_transformation(meta, "simulate", {
                "tool": "ptyanalysis.synthetic.simulate", "split_rule": description["split_rule"],
                "amplitude_image": config.amplitude_image, "phase_image": config.phase_image,
                "physics": "counts ~ Poisson(|FFT2_ortho(s O P)|^2); diffraction = sqrt(counts)/s",
            })
            data = io.PtychoData(
                diffraction=diffraction, xcoords=x, ycoords=y, probe=probe, obj=obj, Y=Y,
                scan_index=idx.astype(np.int64), metadata=meta,
            )
            path = _hub.dataset_path(hub, dose, split)
            io.save_dataset(path, data)
            description["datasets"][f"{_hub.dose_label(dose)}/{split}"] = str(path.relative_to(hub))
            say(f"simulated dose {dose:g} {split}: {len(idx)} patterns -> {path}")
        write_json(_hub.views_path(hub, dose), {
            "views": {v: {s: views[v][s].tolist() for s in SPLITS} for v in views},
            "fractions": dict(config.views), "seed": config.seed, "overlap": overlap,
        })
    write_json(Path(hub) / "study.json", description)
    return description


def plot_study(hub, dose=None):
    """Figure of a synthetic study: object amplitude and phase, probe, and the scan of each split and view.

    Parameters
    ----------
    hub : path
        Hub written by :func:`simulate_study`.
    dose : float, optional
        Which dose's files to read (default: the lowest).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .. import io
    from ..plotting import subplots

    desc = json.loads((Path(hub) / "study.json").read_text())
    dose = dose or min(desc["config"]["doses"])
    data = {s: io.load_dataset(_hub.dataset_path(hub, dose, s)) for s in SPLITS}
    views = load_views(hub, dose)
    obj, probe = data["test"].obj, data["test"].probe
    fig, ax = subplots(1, 5, figsize=(19, 3.9))
    im = ax[0].imshow(np.abs(obj), cmap="gray")
    ax[0].set_title("object amplitude (skimage camera)")
    fig.colorbar(im, ax=ax[0], fraction=0.046)
    im = ax[1].imshow(np.angle(obj), cmap="viridis")
    ax[1].set_title("object phase (skimage coins), rad")
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    im = ax[2].imshow(np.abs(probe), cmap="magma")
    ax[2].set_title(f"probe amplitude (N = {probe.shape[0]})")
    fig.colorbar(im, ax=ax[2], fraction=0.046)
    lit = np.abs(probe) > 0.15 * np.abs(probe).max()
    im = ax[3].imshow(np.where(lit, np.angle(probe), np.nan), cmap="twilight")
    ax[3].set_title("probe phase (defocus), rad")
    fig.colorbar(im, ax=ax[3], fraction=0.046)
    ax[4].imshow(np.abs(obj), cmap="gray", alpha=0.35)
    colours = {"train": "tab:blue", "test": "tab:orange"}
    for s in SPLITS:
        p = data[s].positions
        ax[4].scatter(p[:, 1], p[:, 0], s=3, c=colours[s], alpha=0.35, label=f"{s}: all {len(p)}")
        if "sparse" in views:
            q = p[views["sparse"][s]]
            ax[4].scatter(q[:, 1], q[:, 0], s=10, c=colours[s], marker="x",
                          label=f"{s}: sparse view {len(q)}")
    ax[4].set_title(f"scan positions (train = smaller y), dose {dose:g}")
    ax[4].legend(fontsize=7, loc="lower right")
    ax[4].set_xlim(0, obj.shape[1])
    ax[4].set_ylim(obj.shape[0], 0)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return fig


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def simulation_config(size: str = "demo", *, N: int | None = None, n_positions: int | None = None,
                      object_size: int | None = None, doses=DOSES, seed: int = 42) -> SimulationConfig:
    """The :class:`SimulationConfig` of a size preset, with any of its geometry overridden.

    Parameters
    ----------
    size : str
        A key of :data:`SIZES` (``ci``, ``demo`` or ``study``).
    N : int, optional
        Patch size instead of the preset's.
    n_positions : int, optional
        Number of scan positions (both splits) instead of the preset's.
    object_size : int, optional
        Object side in pixels instead of the preset's.
    doses : sequence of float
        Expected photons per pattern.
    seed : int
        Master seed.

    Returns
    -------
    SimulationConfig
        Its size is named ``<size>-custom`` when anything was overridden.

    Raises
    ------
    PtyAnalysisError
        An unknown size.
    """
    if size not in SIZES:
        raise PtyAnalysisError(f"unknown study size {size!r}; choose one of {', '.join(sorted(SIZES))}"
                               + did_you_mean(size, SIZES))
    geometry = SIZES[size]
    changes = {k: v for k, v in (("N", N), ("n_positions", n_positions), ("object_size", object_size))
               if v is not None}
    if changes:
        geometry = replace(geometry, name=f"{geometry.name}-custom", **changes)
    return SimulationConfig(size=geometry, doses=tuple(doses), seed=seed)


__all__ = [
    "SIZES", "StudySize", "SimulationConfig", "make_probe", "make_object", "make_positions",
    "split_positions", "view_indices", "disc_overlap", "overlap_metrics", "probe_radius",
    "simulate_counts", "simulate_study", "extract_patches", "plot_study", "simulation_config",
]


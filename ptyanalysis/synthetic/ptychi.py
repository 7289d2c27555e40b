"""The iterative arm with pty-chi (LSQML), when the optional ``ptychi`` package is installed.

The study's third arm is pty-chi's LSQML (100 epochs). This module runs it on a
:class:`~ptyanalysis.io.PtychoData` split and returns the same
:class:`~ptyanalysis.synthetic.rpie.Reconstruction` as the reference rPIE, on a frame
whose origin follows ptyanalysis's conventions exactly.

Install with the ``ptychi`` extra (``pip install 'ptyanalysis[ptychi]'``).

How the study's data are mapped onto pty-chi 2.2.0 (read from its source)
-------------------------------------------------------------------------
* **Measured data.** pty-chi wants *intensities* (not amplitudes) with the DC
  term at pixel (0, 0) (``PtychographyDataOptions.fft_shift=True`` would apply
  ``torch.fft.fftshift`` for us; we apply ``numpy.fft.ifftshift`` ourselves and
  pass ``fft_shift=False``, which is also right for odd ``N``). Its far-field
  propagator is ``torch.fft.fft2`` with the default ("backward", unnormalised)
  norm, whereas the study's stored amplitudes are ``|FFT2_ortho(O P)|``; so the
  intensity given to pty-chi is ``(N * diffraction)**2``. Then the probe keeps
  the dataset's units and the object comes back in the ground truth's units
  (LSQML's epoch-0 probe-intensity rescaling, if enabled, finds a factor of 1).
* **Positions.** pty-chi takes ``probe_position_y_px`` / ``_x_px`` and maps a
  position ``p`` to the object-buffer coordinate ``p + position_origin_coords``;
  a patch at buffer coordinate ``q`` starts at buffer pixel ``q - (N - 1) / 2``
  (``image_proc.extract_patches_fourier_shift``), i.e. ``q`` is the *geometric*
  centre of the patch. Ours is the patch's pixel ``N // 2``, so a patch centred
  (our way) at object pixel ``r`` starts at ``r - N // 2``, and
  ``q = r - origin + (N - 1) / 2 - N // 2`` on a buffer whose pixel (0, 0) is
  object pixel ``origin``. For even ``N`` and integer positions ``q`` is a
  half-integer, the patch start an integer, and no interpolation happens.
  We pass zero-centred positions and ``position_origin_coords`` explicitly
  (``ObjectPosOriginCoordsMethods.SPECIFIED``), so nothing is inferred.
* **Probe** ``(1, 1, N, N)`` (one OPR mode, one incoherent mode); **object**
  ``(1, H, W)`` (one slice), initialised to ones.
* By default the probe is kept fixed (as in the reference rPIE, and because
  the study's probe is known exactly); pty-chi's object-probe ambiguity
  removal is then switched off so the object keeps its absolute scale.

pty-chi sets torch's global default device and dtype while it runs; they are
restored afterwards.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from ..conventions import check_positions, patch_centre
from ..errors import PtyAnalysisError
from ..synthetic.rpie import Reconstruction, frame_for

#: pip requirement that provides pty-chi (the ``ptychi`` extra of ptyanalysis).
PTYCHI_REQUIREMENT = "ptychi==2.2.0"
#: Extra to install for this arm.
PTYCHI_EXTRA = "ptychi"
#: Pixels of empty margin around the scanned frame (room for pty-chi's 1-px pad for sub-pixel shifts).
FRAME_MARGIN = 2


def ptychi_available() -> bool:
    """Whether the optional ``ptychi`` package (pty-chi) and torch are importable.

    Returns
    -------
    bool
    """
    return importlib.util.find_spec("ptychi") is not None and importlib.util.find_spec("torch") is not None


def ptychi_version() -> str | None:
    """Installed pty-chi version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptychi")
    except PackageNotFoundError:
        return None


def require_ptychi() -> None:
    """Raise a helpful :class:`PtyAnalysisError` if pty-chi is not installed.

    Raises
    ------
    PtyAnalysisError
        Naming the missing package and the extra that installs it.
    """
    if not ptychi_available():
        raise PtyAnalysisError(
            "the pty-chi iterative arm needs the 'ptychi' package (and torch), which is not installed: "
            f"install the optional extra with  pip install 'ptyanalysis[{PTYCHI_EXTRA}]'  "
            f"(or  pip install '{PTYCHI_REQUIREMENT}'), or use engine='rpie'"
        )


def _resolve_device(device) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    d = str(device).lower()
    if d in ("gpu", "cuda") or d.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PtyAnalysisError(f"device={device!r} was requested but torch sees no CUDA device")
        return "cuda"
    if d == "cpu":
        return "cpu"
    raise PtyAnalysisError(f"device must be 'cpu', 'cuda' or None (automatic), got {device!r}")


def ptychi_frame(positions, N: int, margin: int = FRAME_MARGIN):
    """Frame of the reconstruction and pty-chi's position arguments for ``positions``.

    Parameters
    ----------
    positions : (n, 2) array
        Patch centres (row, col) in object pixels (ptyanalysis convention).
    N : int
        Patch size.
    margin : int
        Empty pixels added on every side of the smallest frame holding all patches.

    Returns
    -------
    origin : (int, int)
        Object pixel (row, col) of the frame's pixel (0, 0).
    shape : (int, int)
        Frame (object buffer) shape.
    pos_yx : (n, 2) float64 ndarray
        Positions to give pty-chi as (y, x) pixels (zero-centred).
    origin_coords : (float, float)
        pty-chi's ``position_origin_coords`` (buffer coordinates of position (0, 0)).
    """
    p = check_positions(positions)
    if margin < 0:
        raise PtyAnalysisError(f"margin must be >= 0, got {margin}")
    (r0, c0), (H, W) = frame_for(p, N)
    origin = (r0 - margin, c0 - margin)
    shape = (H + 2 * margin, W + 2 * margin)
    # Buffer coordinate (pty-chi's geometric patch centre) of each patch.
    q = p - np.asarray(origin, np.float64) + ((N - 1) / 2.0 - patch_centre(N))
    mid = np.round(0.5 * (q.min(axis=0) + q.max(axis=0)))
    return origin, shape, q - mid, (float(mid[0]), float(mid[1]))


def run_ptychi(data, epochs: int = 100, batch_size: int = 100, device=None, seed: int = 0, *,
               optimize_probe: bool = False, noise_model: str = "gaussian", progress=None) -> Reconstruction:
    """Reconstruct a split with pty-chi's LSQML.

    Parameters
    ----------
    data : PtychoData
        The split: ``diffraction`` (normalised amplitudes, fftshifted), positions
        and ``probe`` (used as the probe, or its initial guess).
    epochs : int
        LSQML epochs (the study used 100).
    batch_size : int
        Positions per minibatch (pty-chi's default is 100).
    device : {"cpu", "cuda", None}
        Where pty-chi runs; None picks CUDA when torch sees a GPU.
    seed : int
        pty-chi's random seed (minibatch order).
    optimize_probe : bool
        Also refine the probe (default: keep the known probe fixed, like the
        reference rPIE). When refined, pty-chi's object-probe ambiguity removal
        stays on, so the object's absolute scale is not preserved.
    noise_model : {"gaussian", "poisson"}
        LSQML noise model (pty-chi's default is Gaussian).
    progress : callable, optional
        Called once at the end with ``(epochs, final_loss)``.

    Returns
    -------
    Reconstruction
        ``obj`` on a frame whose pixel (0, 0) is object pixel ``origin``
        (row, col), the probe, ``coverage`` (sum of ``|probe|^2`` over the
        positions on the same frame), ``algorithm`` (e.g.
        ``"pty-chi 2.2.0 LSQML, 100 epochs"``) and pty-chi's per-epoch loss
        as ``error``.

    Raises
    ------
    PtyAnalysisError
        If pty-chi is not installed, or the inputs are inconsistent.
    """
    require_ptychi()
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise PtyAnalysisError(f"{name} must be a positive integer, got {v!r}")
    if noise_model not in ("gaussian", "poisson"):
        raise PtyAnalysisError(f"noise_model must be 'gaussian' or 'poisson', got {noise_model!r}")
    d = np.asarray(data.diffraction, dtype=np.float32)
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise PtyAnalysisError(f"diffraction must be (n, N, N), got {d.shape}")
    n, N, _ = d.shape
    if n < 1:
        raise PtyAnalysisError("diffraction holds no patterns")
    if not np.all(np.isfinite(d)) or (d < 0).any():
        raise PtyAnalysisError("diffraction amplitudes must be finite and non-negative")
    P = np.asarray(data.probe, dtype=np.complex64)
    if P.shape != (N, N):
        raise PtyAnalysisError(f"probe must be ({N}, {N}) to match the patterns, got {P.shape}")
    pos = check_positions(data.positions, n=n)
    origin, shape, pos_yx, origin_coords = ptychi_frame(pos, N)

    import ptychi.api as api
    import torch
    from ptychi.api.task import PtychographyTask

    dev = _resolve_device(device)
    # pty-chi: intensities, DC at pixel 0, unnormalised FFT (module docstring).
    intensity = np.fft.ifftshift((np.float32(N) * d) ** 2, axes=(-2, -1)).astype(np.float32)

    opts = api.LSQMLOptions()
    opts.data_options.fft_shift = False
    opts.data_options.save_data_on_device = dev != "cpu"
    opts.object_options.pixel_size_m = 1.0
    opts.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    opts.object_options.position_origin_coords = [float(origin_coords[0]), float(origin_coords[1])]
    opts.object_options.optimizable = True
    opts.probe_options.optimizable = bool(optimize_probe)
    if not optimize_probe:
        opts.object_options.remove_object_probe_ambiguity.enabled = False
    opts.probe_position_options.optimizable = False
    r = opts.reconstructor_options
    r.num_epochs = int(epochs)
    r.batch_size = int(min(batch_size, n))
    r.random_seed = int(seed)
    r.default_device = api.Devices.GPU if dev == "cuda" else api.Devices.CPU
    r.noise_model = api.NoiseModels.POISSON if noise_model == "poisson" else api.NoiseModels.GAUSSIAN
    # The data and probe share units, so epoch 0 would only rescale the probe by ~1: spend it on updates.
    r.rescale_probe_intensity_in_first_epoch = False
    r.displayed_loss_function = api.LossFunctions.MSE_SQRT

    old_device = torch.get_default_device()
    old_dtype = torch.get_default_dtype()
    t0 = time.perf_counter()
    try:
        with PtychographyTask(
            opts,
            diffraction_data=intensity,
            object_data=np.ones((1, *shape), np.complex64),
            probe_data=P[None, None],
            probe_position_y_px=pos_yx[:, 0].astype(np.float32),
            probe_position_x_px=pos_yx[:, 1].astype(np.float32),
        ) as task:
            task.run()
            obj = task.get_data_to_cpu("object", as_numpy=True)[0].astype(np.complex64)
            probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0].astype(np.complex64)
            table = task.reconstructor.loss_tracker.table
            loss = np.asarray(table["loss"], np.float64) if len(table) else np.zeros(0)
    except PtyAnalysisError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise PtyAnalysisError(f"pty-chi failed: {exc}") from exc
    finally:
        torch.set_default_device(old_device)
        torch.set_default_dtype(old_dtype)
    elapsed = time.perf_counter() - t0
    if progress is not None:
        progress(int(epochs), float(loss[-1]) if loss.size else float("nan"))

    from ..imaging.stitching import Stitcher

    st = Stitcher(shape, origin, N, dtype=np.float32, method="bilinear")
    st.add(np.broadcast_to((np.abs(probe) ** 2).astype(np.float32), (n, N, N)), pos)
    coverage = st.result(normalise=False).image.astype(np.float32)
    label = (f"pty-chi {ptychi_version()} LSQML, {int(epochs)} epochs"
             + (", probe refined" if optimize_probe else ", fixed probe")
             + f", batch {r.batch_size}, {noise_model} noise, {dev}, {elapsed:.1f} s")
    return Reconstruction(obj=obj, probe=probe, origin=origin, coverage=coverage, algorithm=label,
                          iterations=int(epochs), error=loss)

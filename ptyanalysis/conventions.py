"""The one place where ptyanalysis's conventions are defined.

Every other module imports from here; nothing else defines a coordinate
order, an offset sign, a unit or an arm name.

Coordinates and units
---------------------
* All positions are in **object pixels** (the pixel grid of ``objectGuess``
  and of ``probeGuess``; one pixel of the probe equals one pixel of the
  object).
* Arrays are indexed ``[row, col]`` = ``[y, x]``. Inside ptyanalysis a set of
  scan positions is an ``(n, 2)`` float array of **(row, col) = (y, x)**
  *patch centres* (:data:`POSITION_ORDER`).
* The centre of an ``N x N`` patch is its pixel ``(N // 2, N // 2)``
  (:func:`patch_centre`). So the patch extracted at integer position
  ``(r, c)`` is ``obj[r - N//2 : r - N//2 + N, c - N//2 : c - N//2 + N]``
  (:func:`patch_slices`), and stitching puts a patch back at the same place.
* Shifts (registration offsets, translations) follow
  ``scipy.ndimage.shift`` / ``skimage.registration``: a shift of ``(+dy, +dx)``
  moves image content towards larger row and column indices.

The study's (PtychoPINN) conventions, converted only here
----------------------------------------------------------
* Dataset NPZ coordinates are ``xcoords`` (column) and ``ycoords`` (row)
  arrays of patch centres in object pixels (:func:`positions_from_xy`,
  :func:`xy_from_positions`).
* Model offsets are **[x, y]**, shaped ``(B, 1, 2, C)``. The group's global
  offset is the mean of its members' positions; the *local* offsets are stored
  negated: ``local = -(member - global)`` (:func:`ptychopinn_offsets`).
* For gridsize 1 the local offsets are identically zero; that is what the
  Baseline model was trained with.

Arms
----
Canonical names are :data:`ARMS` = ``("PtychoPINN", "Baseline", "PtyChi")``.
:func:`canonical_arm` maps the aliases older runs wrote (e.g.
``"Pty-chi (pty-chi)"``) and fails loudly on anything unknown, so a report can
never silently drop an arm because of its label.

Metric conventions
------------------
:data:`METRIC_CONVENTIONS` = ``("ptychopinn", "ptyanalysis")``: the two
definitions of the image metrics (:mod:`ptyanalysis.imaging.metrics`). The
order is the order of the ``convention`` dimension of every ``comparison.nc``.

Study grid
----------
:data:`DOSES` (expected photons per pattern), :data:`VIEWS`, :data:`SPLITS`.
"""

from __future__ import annotations

import numpy as np

from .errors import PtyAnalysisError, did_you_mean

#: Order of the two columns of a ``positions`` array.
POSITION_ORDER = ("row", "col")
#: Unit of every position, offset and shift.
POSITION_UNIT = "object pixel"

#: Canonical arm names, in report order.
ARMS = ("PtychoPINN", "Baseline", "PtyChi")

#: Aliases seen in PtychoPINN runs and their tools, lower-cased, mapped to canonical names.
ARM_ALIASES = {
    "ptychopinn": "PtychoPINN",
    "pinn": "PtychoPINN",
    "ptycho_pinn": "PtychoPINN",
    "ptycho-pinn": "PtychoPINN",
    "gs2": "PtychoPINN",
    "baseline": "Baseline",
    "gs1": "Baseline",
    "ptychonn": "Baseline",
    "baseline (gs1)": "Baseline",
    "ptychi": "PtyChi",
    "pty-chi": "PtyChi",
    "pty_chi": "PtyChi",
    "pty-chi (pty-chi)": "PtyChi",
    "ptychi (pty-chi)": "PtyChi",
    "iterative": "PtyChi",
    "lsqml": "PtyChi",
    "ground truth": "GroundTruth",
    "groundtruth": "GroundTruth",
    "ground_truth": "GroundTruth",
    "gt": "GroundTruth",
}

#: Array-name prefix of each image in a job's ``reconstructions.npz`` / ``reconstructions_aligned.npz``:
#: ``<prefix>_{amplitude,phase,complex}``, the study's ``compare_models`` naming (it writes no
#: iterative arm; ``ptychi`` is ptyanalysis's choice, after ``ptychi_reconstruction.npz``).
RECONSTRUCTION_PREFIXES = {"PtychoPINN": "ptychopinn", "Baseline": "baseline", "PtyChi": "ptychi",
                           "GroundTruth": "ground_truth"}
#: Components stored per image, in that order (``amplitude`` = ``abs``, ``phase`` = ``angle``).
RECONSTRUCTION_COMPONENTS = ("amplitude", "phase", "complex")
#: Prefix of each arm's registration offsets ``<prefix>_offset_dy`` / ``_dx`` in
#: ``reconstructions_aligned.npz`` (the study writes ``pinn`` and ``baseline``; 0-d arrays, None
#: stored as a 0-d object array).
RECONSTRUCTION_OFFSET_PREFIXES = {"PtychoPINN": "pinn", "Baseline": "baseline", "PtyChi": "ptychi"}
#: Prefix of every array ptyanalysis adds to those files (coverage, counts, frame), so that no
#: name can collide with the study's.
PTYANALYSIS_KEY_PREFIX = "ptyanalysis__"


def reconstruction_key(arm: str, component: str) -> str:
    """Name of an image array in a job's reconstruction NPZ, e.g. ``("Baseline", "complex") -> "baseline_complex"``."""
    if component not in RECONSTRUCTION_COMPONENTS:
        raise PtyAnalysisError(f"component must be one of {', '.join(RECONSTRUCTION_COMPONENTS)}, got {component!r}")
    return f"{RECONSTRUCTION_PREFIXES[canonical_arm(arm)]}_{component}"


def arm_from_reconstruction_prefix(prefix: str) -> str:
    """Canonical arm (or ``"GroundTruth"``) of a reconstruction-array prefix (:data:`RECONSTRUCTION_PREFIXES`,
    else any alias of :func:`canonical_arm`, e.g. ``pty_chi``); unknown prefixes raise :class:`PtyAnalysisError`."""
    for arm, p in RECONSTRUCTION_PREFIXES.items():
        if prefix == p:
            return arm
    return canonical_arm(prefix)

#: Metric conventions (:mod:`ptyanalysis.imaging.metrics`), in the order of ``comparison.nc``'s
#: ``convention`` dimension: the study's (``compare_models``) first, ours second.
METRIC_CONVENTIONS = ("ptychopinn", "ptyanalysis")

#: Expected photons per diffraction pattern, averaged over a dataset.
DOSES = (1e3, 1e4, 1e5)
#: Scan-overlap views.
VIEWS = ("dense", "sparse")
#: Data splits (train = smaller y).
SPLITS = ("train", "test")
#: Fraction of positions the seeded subsample of each view keeps.
VIEW_FRACTIONS = {"dense": 0.8, "sparse": 0.2}
#: Gridsize of each model in the study (PtychoPINN arm: 2, Baseline: 1).
GRIDSIZE = {"PtychoPINN": 2, "Baseline": 1}
#: Group size (members per group) for gridsize g is g * g.


def canonical_arm(name: str) -> str:
    """Return the canonical arm name for ``name``.

    Parameters
    ----------
    name : str
        An arm label as written by any tool, e.g. ``"Pty-chi (pty-chi)"``.

    Returns
    -------
    str
        One of :data:`ARMS` (or ``"GroundTruth"``).

    Raises
    ------
    PtyAnalysisError
        If the label is not a known arm or alias.
    """
    if name in ARMS or name == "GroundTruth":
        return name
    key = str(name).strip().lower()
    if key in ARM_ALIASES:
        return ARM_ALIASES[key]
    raise PtyAnalysisError(
        f"unknown arm name {name!r}: expected one of {', '.join(ARMS)} "
        f"or an alias ({', '.join(sorted(ARM_ALIASES))})" + did_you_mean(name, (*ARMS, *ARM_ALIASES))
    )


def dose_label(dose: float) -> str:
    """Directory label of a dose, as the study writes it: ``1e3 -> 'dose_1000'``."""
    d = float(dose)
    if not np.isfinite(d) or d <= 0 or d != round(d):
        raise PtyAnalysisError(f"dose must be a positive whole number of photons, got {dose!r}")
    return f"dose_{int(round(d))}"


def patch_centre(n: int) -> int:
    """Index of the centre pixel of an ``n x n`` patch along each axis (``n // 2``)."""
    return int(n) // 2


def patch_slices(position, n: int) -> tuple[slice, slice]:
    """Slices of the ``n x n`` patch centred at integer ``position = (row, col)``.

    ``obj[patch_slices((r, c), N)] == obj[r-N//2 : r-N//2+N, c-N//2 : c-N//2+N]``.
    """
    r, c = (int(round(float(v))) for v in position)
    h = patch_centre(n)
    return slice(r - h, r - h + n), slice(c - h, c - h + n)


def positions_from_xy(xcoords, ycoords) -> np.ndarray:
    """Convert the study's ``xcoords`` (column) / ``ycoords`` (row) to an (n, 2) (row, col) array."""
    x = np.asarray(xcoords, dtype=np.float64).reshape(-1)
    y = np.asarray(ycoords, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise PtyAnalysisError(
            f"xcoords has {x.size} entries but ycoords has {y.size}: they must match"
        )
    return np.stack([y, x], axis=1)


def xy_from_positions(positions) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`positions_from_xy`: return ``(xcoords, ycoords)``."""
    p = check_positions(positions)
    return p[:, 1].copy(), p[:, 0].copy()


def check_positions(positions, n: int | None = None, name: str = "positions") -> np.ndarray:
    """Validate an (n, 2) (row, col) position array and return it as float64.

    Parameters
    ----------
    positions : array_like
        Positions, shape (n, 2).
    n : int, optional
        Expected number of positions (e.g. the number of patches). A mismatch
        is an error, never a broadcast.
    name : str
        Name used in error messages.
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise PtyAnalysisError(
            f"{name} must have shape (n, 2) as (row, col) = (y, x) in object pixels, got {p.shape}"
        )
    if n is not None and p.shape[0] != n:
        raise PtyAnalysisError(
            f"{name} has {p.shape[0]} rows but there are {n} patches: counts must match "
            "(they are never broadcast)"
        )
    if not np.all(np.isfinite(p)):
        raise PtyAnalysisError(f"{name} contains NaN or Inf")
    return p


def ptychopinn_offsets(member_positions) -> tuple[np.ndarray, np.ndarray]:
    """PtychoPINN global and local offsets of groups of scan positions.

    Parameters
    ----------
    member_positions : array_like, shape (B, C, 2)
        (row, col) positions of the C members of each of B groups.

    Returns
    -------
    global_offsets : ndarray, shape (B, 1, 2, 1), float32
        Mean member position of each group, as [x, y].
    local_offsets : ndarray, shape (B, 1, 2, C), float32
        ``-(member - global)`` as [x, y] (the study stores them negated).
    """
    m = np.asarray(member_positions, dtype=np.float64)
    if m.ndim != 3 or m.shape[2] != 2:
        raise PtyAnalysisError(f"member_positions must be (B, C, 2), got {m.shape}")
    g = m.mean(axis=1, keepdims=True)  # (B, 1, 2) row, col
    xy_g = g[..., ::-1]  # [x, y]
    xy_m = m[..., ::-1]
    glob = np.transpose(xy_g, (0, 1, 2))[..., None]  # (B, 1, 2, 1)
    local = -np.transpose(xy_m - xy_g, (0, 2, 1))[:, None, :, :]  # (B, 1, 2, C)
    return glob.astype(np.float32), local.astype(np.float32)


def global_positions_from_offsets(global_offsets) -> np.ndarray:
    """Convert PtychoPINN global offsets ``(B, 1, 2, 1)`` [x, y] to (B, 2) (row, col)."""
    g = np.asarray(global_offsets, dtype=np.float64)
    if g.ndim != 4 or g.shape[1:3] != (1, 2):
        raise PtyAnalysisError(f"global offsets must be (B, 1, 2, 1) as [x, y], got {g.shape}")
    return np.stack([g[:, 0, 1, 0], g[:, 0, 0, 0]], axis=1)


#: How a PtychoPINN-style in-model merge treats the group offsets: ``"study"`` translates by the
#: offsets as given (the code the study ran), ``"batch_centred"`` first subtracts the batch mean of
#: the offsets (PtychoPINN since commit 898b42e, 2026-07-08), so each output depends on its batch.
REASSEMBLY = ("study", "batch_centred")


def zero_text(n=None) -> str:
    """How an all-zero arm is named in every table and plot: ``"zero (all N outputs are 0)"`` (never "missing")."""
    return "zero (all outputs are 0)" if n is None else f"zero (all {int(n):,} outputs are 0)"


def arm_status_text(status: str, detail: dict | None = None) -> str:
    """Human text of an arm's status in a comparison job.

    Parameters
    ----------
    status : str
        ``ok``, ``zero``, ``nonfinite``, ``missing`` or ``failed`` (the comparison job's arm status).
    detail : dict, optional
        The arm's details: ``output_stats`` (``size``: number of outputs;
        ``nan``, ``inf``: non-finite ones) for ``zero`` / ``nonfinite``,
        ``error`` (why) for ``missing`` / ``failed``.

    Returns
    -------
    str
        ``ok``, ``zero (all N outputs are 0)``,
        ``nonfinite (K of N outputs are NaN or Inf: a NaN, b Inf)``, ``missing (why)``.
    """
    detail = detail or {}
    if status == "zero":
        return zero_text((detail.get("output_stats") or {}).get("size"))
    if status == "nonfinite":
        st = detail.get("output_stats") or {}
        nan, inf, n = st.get("nan"), st.get("inf"), st.get("size")
        if nan is None or inf is None:
            return "nonfinite (outputs hold NaN or Inf)"
        of = f" of {int(n):,}" if n is not None else ""
        return (f"nonfinite ({int(nan) + int(inf):,}{of} outputs are NaN or Inf: {int(nan):,} NaN, "
                f"{int(inf):,} Inf)")
    if status in ("missing", "failed"):
        why = detail.get("error")
        return f"{status} ({why})" if why else status
    return status

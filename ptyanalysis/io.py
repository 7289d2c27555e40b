"""Read, write and validate the study's dataset NPZ files; ``xarray`` views.

One dataset NPZ holds one split (docs/formats.md#dataset-npz):

==================  ======================  ==========================================
key                 shape, dtype            meaning
==================  ======================  ==========================================
``diffraction``     (n, N, N) float32       normalized amplitude ``sqrt(counts) / s``
``xcoords``         (n,) float64            patch centre column, object pixels
``ycoords``         (n,) float64            patch centre row, object pixels
``xcoords_start``   (n,) float              nominal column (optional on load)
``ycoords_start``   (n,) float              nominal row (optional on load)
``probeGuess``      (N, N) complex64        probe on the object pixel grid
``objectGuess``     (H, W) complex64        full ground-truth object (optional)
``Y``               (n, N, N) complex64     ground-truth object patches (optional)
``ground_truth_``   (n, N, N, 1) complex64  ground-truth patches as PtychoPINN's
``patches``                                 ``simulate_and_save`` writes them (optional)
``scan_index``      (n,) int                (optional)
``_metadata``       0-d object array        JSON string: ``physics_parameters``,
                                            ``data_transformations``
==================  ======================  ==========================================

In memory a dataset is a :class:`PtychoData` (always in the canonical
``(n, N, N)`` layout and canonical dtypes) or, for notebooks, an
:class:`xarray.Dataset` (:func:`to_xarray` / :func:`from_xarray`).

Loading (:func:`load_dataset`)
------------------------------
* The legacy key ``diff3d`` is accepted in place of ``diffraction``.
* The legacy layout ``(N, N, n)`` is detected and transposed to
  ``(n, N, N)``: a diffraction stack whose first two axes are equal and whose
  last axis equals the number of coordinates (and differs from the first two)
  is legacy. A stack ``(k, k, k)`` is ambiguous and read as canonical.
* ``_metadata`` may be missing (-> ``{}``), a 0-d object array holding a JSON
  string (the study's form; only this key is ever unpickled), a 0-d unicode or
  bytes array, or a pickled ``dict``.
* dtypes: float diffraction of any precision -> float32; complex diffraction,
  integer diffraction (counts?) and non-numeric arrays are refused; complex
  (any precision) or real float probe / object / ``Y`` -> complex64; integer
  or float coordinates -> float64; integer ``scan_index`` -> int64.
* Every problem raises :class:`~ptyanalysis.errors.PtyAnalysisError` naming
  the file, the key, what was expected and what to do.

Ground truth (:func:`ground_truth_patches`, the one rule every reader uses)
--------------------------------------------------------------------------
* ``Y`` (or ``ground_truth_patches``) of shape (n, N, N) or (n, N, N, 1) is
  the per-pattern ground truth (``PtychoData.Y``; ``PtychoData.Y_key`` says
  which key it came from).
* A ``Y`` whose first axis is not n (PtychoPINN's ``generate_patches(nsamples=1)``
  writes ``Y`` (1, N, N, 1): the patch of one random position) is ignored, as
  PtychoPINN's loader ignores it, with a :class:`DatasetNotice` naming the file
  and the shape. Ground truth then comes from ``ground_truth_patches`` when
  present, else is cut from ``objectGuess`` at the scan positions (bilinear,
  as PtychoPINN does). Every other shape disagreement is an error.

NaN / Inf
---------
:func:`validate_dataset` refuses them with an error naming the file, the key,
the count and the first pattern. With ``allow_nonfinite=True`` (the diagnosis
tools, which go on with poisoned data) :func:`load_dataset` warns instead
(:class:`DatasetNotice`: the same facts plus statistics over the finite
values), and the statistics computed from the data use the finite values.

Dose (:func:`estimate_dose`, :func:`recover_counts`)
----------------------------------------------------
The scale ``s`` of ``diffraction = sqrt(counts) / s`` and the dose are
estimated from the amplitudes alone: the smallest nonzero amplitude is
``sqrt(1) / s`` where low counts exist (exact, no ``_metadata`` needed), else
the mean rule with ``nphotons``; the method is recorded and the dose checked
against ``_metadata`` where both exist.

Memory mapping
--------------
``load_dataset(..., mmap=True)`` memory-maps ``diffraction`` (and ``Y``) when
the NPZ member is *stored* (``np.savez``, not ``np.savez_compressed``), not
pickled, and already has the canonical dtype (float32 / complex64): the array
is an ``np.memmap`` (read-only) onto the bytes inside the zip file, located
through the member's local zip header. In every other case (compressed
member, other dtype, empty array) the member is read into memory normally, so
``mmap=True`` is always safe to pass. ``np.load(..., mmap_mode=...)`` cannot do
this itself: it ignores ``mmap_mode`` for ``.npz`` files. Validation of a
memory-mapped array scans it block by block and gives each block's pages back
(:mod:`ptyanalysis.memmap`), so it neither needs the whole array in RAM nor
leaves the file's pages counted in the process's resident size;
:meth:`PtychoData.subset` of scattered rows reads ``diffraction``'s rows the
same way and leaves ``Y``'s unread until used.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conventions import POSITION_UNIT, positions_from_xy
from .errors import PtyAnalysisError
from .fileutil import atomic_path
from .memmap import MappedRows, row_blocks, take_rows

__all__ = [
    "PtychoData",
    "DatasetNotice",
    "GROUND_TRUTH_KEYS",
    "load_dataset",
    "ground_truth_patches",
    "ground_truth_source",
    "nonfinite_warnings",
    "save_dataset",
    "validate_dataset",
    "to_xarray",
    "from_xarray",
    "make_metadata",
    "add_transformation",
    "recover_counts",
    "estimate_dose",
    "DoseEstimate",
    "DOSE_TOLERANCE",
    "NpyMember",
    "locate_npy_member",
    "locate_npy_file",
    "DATASET_KEYS",
]

#: Keys of a dataset NPZ that ptyanalysis reads (``diff3d`` is the legacy name of ``diffraction``).
DATASET_KEYS = (
    "diffraction", "diff3d", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
    "probeGuess", "objectGuess", "Y", "ground_truth_patches", "scan_index", "_metadata",
)

#: NPZ keys ground-truth object patches are read from, in order of preference (PtychoPINN's
#: ``simulate_and_save`` writes ``ground_truth_patches`` (n, N, N, 1); its ``generate_patches``
#: writes a ``Y`` that is not per pattern, which is ignored).
GROUND_TRUTH_KEYS = ("Y", "ground_truth_patches")

#: PtychoData field -> NPZ key (used in messages, so a message always names the key).
_FIELD_KEY = {
    "diffraction": "diffraction",
    "xcoords": "xcoords",
    "ycoords": "ycoords",
    "probe": "probeGuess",
    "obj": "objectGuess",
    "Y": "Y",
    "scan_index": "scan_index",
    "xcoords_start": "xcoords_start",
    "ycoords_start": "ycoords_start",
}

#: Dtype rule of each field: "amplitude", "coord", "complex" or "index".
_FIELD_KIND = {
    "diffraction": "amplitude",
    "xcoords": "coord",
    "ycoords": "coord",
    "xcoords_start": "coord",
    "ycoords_start": "coord",
    "probe": "complex",
    "obj": "complex",
    "Y": "complex",
    "scan_index": "index",
}

_REGEN = "regenerate the dataset (ptyanalysis simulate, or the study's simulation) or fix it with ptyanalysis.io.save_dataset"

# --------------------------------------------------------------------------- dtype rules


def _coerce(value, fld: str, source: str):
    """Return ``value`` as an ndarray of the canonical dtype of field ``fld``.

    Raises PtyAnalysisError (naming ``source`` and the NPZ key) for dtypes the
    rule refuses. Arrays that already have the canonical dtype are returned
    as they are (no copy; ``np.memmap`` stays an ``np.memmap``).
    """
    key = _FIELD_KEY[fld]
    kind = _FIELD_KIND[fld]
    if isinstance(value, MappedRows):  # unread rows of a field's memory map (PtychoData.subset): canonical already
        return value
    try:
        arr = np.asanyarray(value)
    except Exception as exc:  # noqa: BLE001 - anything that is not array-like
        raise PtyAnalysisError(
            f"{source}: key {key!r} is not an array ({type(value).__name__}: {exc})"
        ) from None
    k = arr.dtype.kind
    desc = f"{source}: key {key!r} has dtype {arr.dtype}"
    if kind == "amplitude":
        if k == "f":
            return arr if arr.dtype == np.float32 else arr.astype(np.float32)
        if k == "c":
            raise PtyAnalysisError(
                f"{desc} but expected real float32 amplitudes sqrt(counts)/s; if these are "
                f"complex far-field waves store np.abs(...) of them, otherwise {_REGEN}"
            )
        if k in "iub":
            raise PtyAnalysisError(
                f"{desc} but expected float32 amplitudes sqrt(counts)/s (not counts); if these "
                "are photon counts store np.sqrt(counts) / s with s = sqrt(nphotons / mean total "
                f"counts per pattern), otherwise {_REGEN}"
            )
        raise PtyAnalysisError(f"{desc} but expected float32 amplitudes; {_REGEN}")
    if kind == "coord":
        if k in "fiu":
            return arr if arr.dtype == np.float64 else arr.astype(np.float64)
        raise PtyAnalysisError(
            f"{desc} but expected float64 positions in object pixels; {_REGEN}"
        )
    if kind == "complex":
        if k in "cf":
            return arr if arr.dtype == np.complex64 else arr.astype(np.complex64)
        raise PtyAnalysisError(
            f"{desc} but expected complex64 (complex128 and real float are converted); {_REGEN}"
        )
    # index
    if k in "iu":
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    if k == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise PtyAnalysisError(f"{desc} but expected integer scan indices; {_REGEN}")


# --------------------------------------------------------------------------- the container


class DatasetNotice(UserWarning):
    """A dataset was read loosely (an ignored key, NaN / Inf accepted, a dose estimated): said, never silent."""


@dataclass(frozen=True, eq=False)
class PtychoData:
    """One split of a ptychography dataset, in the canonical layout.

    Construction converts each array to its canonical dtype (float diffraction
    -> float32, complex or real probe/object/``Y`` -> complex64, coordinates ->
    float64, ``scan_index`` -> int64) and refuses dtypes that cannot be right
    (complex or integer diffraction, integer probe, strings, ...). Shapes are
    checked by :func:`validate_dataset`, not here.

    Attributes
    ----------
    diffraction : ndarray, shape (n, N, N), float32
        Normalized diffraction amplitude ``sqrt(counts) / s``.
    xcoords, ycoords : ndarray, shape (n,), float64
        Patch-centre column / row in object pixels.
    probe : ndarray, shape (N, N), complex64
        Probe (NPZ key ``probeGuess``).
    obj : ndarray, shape (H, W), complex64, optional
        Ground-truth object (NPZ key ``objectGuess``).
    Y : ndarray, shape (n, N, N), complex64, optional
        Ground-truth object patches (a :class:`ptyanalysis.memmap.MappedRows`,
        read when indexed, in a memory-mapped dataset's subset of scattered
        rows: index it or ``numpy.asarray`` it).
    scan_index : ndarray, shape (n,), int64, optional
    xcoords_start, ycoords_start : ndarray, shape (n,), float64, optional
        Nominal positions (saved as the coordinates when absent).
    metadata : dict
        Parsed ``_metadata`` JSON (``physics_parameters``, ``data_transformations``).
    path : Path, optional
        File the data was loaded from.
    Y_key : str
        NPZ key ``Y`` was read from: ``"Y"``, or ``"ground_truth_patches"``
        (what PtychoPINN's ``simulate_and_save`` writes) when the file's ``Y``
        was absent or not per pattern (:func:`load_dataset`). Used in messages.

    Notes
    -----
    Equality is identity (``eq=False``): compare arrays explicitly.
    """

    diffraction: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    obj: np.ndarray | None = None
    Y: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    xcoords_start: np.ndarray | None = None
    ycoords_start: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    Y_key: str = "Y"

    def __post_init__(self):
        source = str(self.path) if self.path is not None else "<memory>"
        for fld in _FIELD_KEY:
            value = getattr(self, fld)
            if value is None:
                if fld in ("diffraction", "xcoords", "ycoords", "probe"):
                    raise PtyAnalysisError(
                        f"{source}: key {_FIELD_KEY[fld]!r} (PtychoData.{fld}) is required but is None"
                    )
                continue
            object.__setattr__(self, fld, _coerce(value, fld, source))
        meta = self.metadata
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise PtyAnalysisError(
                f"{source}: key '_metadata' must be a dict (parsed JSON object), got {type(meta).__name__}"
            )
        object.__setattr__(self, "metadata", meta)
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if self.Y_key not in GROUND_TRUTH_KEYS:
            raise PtyAnalysisError(
                f"{source}: PtychoData.Y_key must be one of {GROUND_TRUTH_KEYS}, got {self.Y_key!r}")

    # -- properties ---------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of diffraction patterns."""
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:  # noqa: N802 - the study's name
        """Pattern (and probe) side length in pixels."""
        return int(self.diffraction.shape[-1])

    @property
    def positions(self) -> np.ndarray:
        """Scan positions, (n, 2) float64 as (row, col) = (y, x) in object pixels."""
        return positions_from_xy(self.xcoords, self.ycoords)

    @property
    def nphotons(self) -> float | None:
        """``metadata['physics_parameters']['nphotons']`` as a float, or None when absent."""
        phys = self.metadata.get("physics_parameters") if isinstance(self.metadata, dict) else None
        if not isinstance(phys, dict) or phys.get("nphotons") is None:
            return None
        try:
            return float(phys["nphotons"])
        except (TypeError, ValueError):
            return None

    # -- derived datasets ---------------------------------------------------

    def subset(self, indices) -> PtychoData:
        """Return the patterns selected by ``indices``.

        Parameters
        ----------
        indices : array_like of int, boolean mask of length n, or slice
            Patterns to keep, in the given order.

        Returns
        -------
        PtychoData
            Rows of ``diffraction``, coordinates, ``Y``, ``scan_index`` and the
            ``*_start`` coordinates (copies, except that a memory-mapped array
            stays a read-only memory map for consecutive rows, and a memory-mapped
            ``Y`` becomes a :class:`ptyanalysis.memmap.MappedRows` for others); ``probe``,
            ``obj``, ``metadata`` and ``path`` are shared. Nothing is recorded in the metadata (use
            :func:`add_transformation` for that).

        Raises
        ------
        PtyAnalysisError
            If an index is out of range, not an integer, or a mask has the wrong length.
        """
        n = self.n
        if isinstance(indices, slice):
            idx = np.arange(n)[indices]
        else:
            idx = np.asarray(indices)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise PtyAnalysisError(
                        f"subset: boolean mask has shape {idx.shape} but there are {n} patterns"
                    )
                idx = np.flatnonzero(idx)
            elif idx.size == 0:
                idx = idx.astype(np.int64).reshape(-1)
            elif idx.dtype.kind not in "iu":
                raise PtyAnalysisError(
                    f"subset: indices must be integers, a boolean mask or a slice, got dtype {idx.dtype}"
                )
            idx = idx.reshape(-1)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise PtyAnalysisError(
                    f"subset: indices range over [{idx.min()}, {idx.max()}] but there are only {n} patterns"
                )

        # a memory-mapped array (load_dataset(mmap=True)) stays mapped for a run of consecutive rows (a view
        # of all patterns, say): a read-only view of the file, no copy. Other rows of a mapped diffraction
        # stack are read block by block (ptyanalysis.memmap: the file's pages do not pile up in this
        # process); a mapped Y, needed for a few patches at most by most jobs, becomes MappedRows (read
        # when indexed). Anything else is copied.
        run = idx.size > 0 and idx[0] >= 0 and bool(np.all(np.diff(idx) == 1))
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if run else idx

        def take(a, lazy=False):
            if a is None:
                return None
            if isinstance(a, MappedRows):
                return a.subset(idx) if lazy else take_rows(a.base, a.index[idx])
            if isinstance(a, np.memmap):
                return a[rows] if run else MappedRows(a, idx) if lazy else take_rows(a, idx)
            return np.asarray(a[idx])

        return dataclasses.replace(
            self,
            diffraction=take(self.diffraction),
            xcoords=take(self.xcoords),
            ycoords=take(self.ycoords),
            Y=take(self.Y, lazy=True),
            scan_index=take(self.scan_index),
            xcoords_start=take(self.xcoords_start),
            ycoords_start=take(self.ycoords_start),
        )

    def replace(self, **changes) -> PtychoData:
        """Return a copy with fields replaced (:func:`dataclasses.replace`; dtypes are re-coerced)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- validation


def _nonfinite_report(arr) -> tuple[int, int]:
    """Return (count of NaN/Inf values, index along axis 0 of the first one or -1); block by block."""
    if np.size(arr) == 0:
        return 0, -1
    if np.ndim(arr) == 0:
        bad = int(not np.isfinite(arr))
        return bad, (0 if bad else -1)
    count, first = 0, -1
    for start, block in row_blocks(arr):
        bad = ~np.isfinite(block)
        c = int(bad.sum())
        if c:
            if first < 0:
                rows = bad.reshape(bad.shape[0], -1).any(axis=1)
                first = start + int(np.argmax(rows))
            count += c
    return count, first


def _negative_report(arr) -> tuple[int, int, float]:
    """Return (count of values < 0, first pattern index or -1, minimum value); NaN ignored; block by block."""
    if np.size(arr) == 0:
        return 0, -1, 0.0
    count, first, lo = 0, -1, math.inf
    for start, block in row_blocks(arr):
        neg = block < 0
        c = int(neg.sum())
        if c:
            if first < 0:
                rows = neg.reshape(neg.shape[0], -1).any(axis=1)
                first = start + int(np.argmax(rows))
            count += c
            lo = min(lo, float(block[neg].min()))
    return count, first, lo


def _key_of(data: PtychoData, fld: str) -> str:
    """NPZ key of a PtychoData field (``Y`` may have come from ``ground_truth_patches``)."""
    return data.Y_key if fld == "Y" else _FIELD_KEY[fld]


def _nonfinite_phrase(a, fld: str, count: int, first: int) -> str:
    """``"10 NaN/Inf value(s) among 3276800 (first in pattern 7)"``: the count, the size and the first index."""
    unit = {"diffraction": "pattern", "Y": "patch", "obj": "row", "probe": "row"}.get(fld, "index")
    where = f" (first in {unit} {first})" if np.ndim(a) else ""
    return f"{count} NaN/Inf value(s) among {int(np.size(a))}{where}"


def _finite_stats(a) -> str:
    """``min / mean / max`` of the finite values of an array (block by block), for a warning."""
    lo, hi, tot, cnt = math.inf, -math.inf, 0.0, 0
    blocks = [np.asarray(a)] if np.ndim(a) == 0 else (b for _, b in row_blocks(a))
    complex_ = np.dtype(a.dtype).kind == "c"
    for b in blocks:
        b = np.abs(b) if complex_ else b
        b = b[np.isfinite(b)]
        if b.size:
            lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
            tot += float(np.sum(b, dtype=np.float64))
            cnt += int(b.size)
    if not cnt:
        return "no finite values"
    mod = "|.| " if complex_ else ""
    return f"finite values {mod}min {lo:.6g}, mean {tot / cnt:.6g}, max {hi:.6g} over {cnt}"


def nonfinite_warnings(data: PtychoData, *, source: str | None = None) -> list[str]:
    """Warn (:class:`DatasetNotice`) about every array of ``data`` that holds NaN / Inf.

    For commands that go on with such data (``allow_nonfinite=True``): each
    warning names the file, the key, the count, the first index and gives
    statistics over the finite values, saying that they are used.

    Returns
    -------
    list of str
        The messages warned (empty when every value is finite).
    """
    src = source or ("<memory>" if data.path is None else str(data.path))
    out = []
    for fld in ("diffraction", "xcoords", "ycoords", "xcoords_start", "ycoords_start", "probe", "obj", "Y"):
        a = getattr(data, fld)
        if a is None:
            continue
        count, first = _nonfinite_report(a)
        if count:
            msg = (f"{src}: key {_key_of(data, fld)!r} contains {_nonfinite_phrase(a, fld, count, first)}; "
                   f"loaded anyway (allow_nonfinite): {_finite_stats(a)} (statistics computed from the "
                   "data use its finite values only)")
            warnings.warn(msg, DatasetNotice, stacklevel=3)
            out.append(msg)
    return out


def validate_dataset(data: PtychoData, *, source: str = "<memory>", allow_nonfinite: bool = False) -> None:
    """Check a dataset against docs/formats.md#dataset-npz; raise on the first problem.

    Parameters
    ----------
    data : PtychoData
        Dataset to check.
    source : str
        Name of where the data came from (a file path), used in messages.
    allow_nonfinite : bool
        Accept NaN / Inf in diffraction, coordinates, probe, object and ``Y``
        (the diagnosis tools load deliberately poisoned data this way).
        Negative amplitudes are refused regardless.

    Raises
    ------
    PtyAnalysisError
        Naming ``source``, the NPZ key, what was expected and what to do, for:
        wrong ndim / shape (diffraction (n, N, N); probe (N, N) matching the
        patterns; ``Y`` (n, N, N); object 2-D), coordinate arrays of different
        lengths or a length other than the number of patterns, wrong dtypes,
        NaN / Inf (unless ``allow_nonfinite``), negative diffraction
        amplitudes, non-dict metadata.
    """
    if not isinstance(data, PtychoData):
        raise PtyAnalysisError(f"{source}: expected a PtychoData, got {type(data).__name__}")
    src = source
    # dtypes (PtychoData coerces on construction; this catches objects mutated afterwards)
    for fld in _FIELD_KEY:
        a = getattr(data, fld)
        if a is not None:
            _coerce(a, fld, src)

    d = data.diffraction
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise PtyAnalysisError(
            f"{src}: key 'diffraction' has shape {d.shape} but expected (n, N, N) "
            f"(or legacy (N, N, n)) with n = {np.size(data.xcoords)} coordinates; {_REGEN}"
        )
    n, N = d.shape[0], d.shape[1]
    if n == 0 or N == 0:
        raise PtyAnalysisError(
            f"{src}: key 'diffraction' has shape {d.shape}: a dataset needs at least one "
            f"non-empty pattern; {_REGEN}"
        )

    for fld in ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "scan_index"):
        a = getattr(data, fld)
        if a is None:
            continue
        if a.ndim != 1:
            raise PtyAnalysisError(
                f"{src}: key {fld!r} has shape {a.shape} but expected a 1-D array (n,) with "
                f"n = {n} patterns; {_REGEN}"
            )
    if data.xcoords.shape != data.ycoords.shape:
        raise PtyAnalysisError(
            f"{src}: key 'xcoords' has {data.xcoords.size} entries but key 'ycoords' has "
            f"{data.ycoords.size}: expected one (x, y) pair per pattern; {_REGEN}"
        )
    for fld in ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "scan_index"):
        a = getattr(data, fld)
        if a is not None and a.shape[0] != n:
            raise PtyAnalysisError(
                f"{src}: key {fld!r} has {a.shape[0]} entries but key 'diffraction' has {n} "
                f"patterns: expected one per pattern (counts are never broadcast); {_REGEN}"
            )
    if (data.xcoords_start is None) != (data.ycoords_start is None):
        missing = "xcoords_start" if data.xcoords_start is None else "ycoords_start"
        raise PtyAnalysisError(
            f"{src}: key {missing!r} is missing while its partner is present: expected both "
            f"nominal coordinate arrays or neither; {_REGEN}"
        )

    p = data.probe
    if p.shape != (N, N):
        raise PtyAnalysisError(
            f"{src}: key 'probeGuess' has shape {p.shape} but expected ({N}, {N}) to match "
            f"the diffraction patterns (N = {N}); {_REGEN}"
        )
    if data.obj is not None and (data.obj.ndim != 2 or data.obj.size == 0):
        raise PtyAnalysisError(
            f"{src}: key 'objectGuess' has shape {data.obj.shape} but expected a 2-D (H, W) "
            f"complex object; {_REGEN}"
        )
    if data.Y is not None and data.Y.shape != (n, N, N):
        raise PtyAnalysisError(
            f"{src}: key {data.Y_key!r} has shape {data.Y.shape} but expected (n, N, N) = ({n}, {N}, {N}) "
            f"(or (n, N, N, 1)) like the diffraction patterns; {_REGEN}"
        )

    if not allow_nonfinite:
        for fld in ("diffraction", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
                    "probe", "obj", "Y"):
            a = getattr(data, fld)
            if a is None:
                continue
            count, first = _nonfinite_report(a)
            if count:
                raise PtyAnalysisError(
                    f"{src}: key {_key_of(data, fld)!r} contains {_nonfinite_phrase(a, fld, count, first)} "
                    "but expected finite values; pass allow_nonfinite=True to load deliberately "
                    f"poisoned data, otherwise {_REGEN}"
                )
    count, first, lo = _negative_report(d)
    if count:
        raise PtyAnalysisError(
            f"{src}: key 'diffraction' contains {count} negative amplitude(s) (minimum {lo:g}, "
            f"first in pattern {first}) but expected amplitudes sqrt(counts)/s >= 0; the "
            f"patterns may have been background-subtracted or are not amplitudes; {_REGEN}"
        )
    if not isinstance(data.metadata, dict):
        raise PtyAnalysisError(
            f"{src}: key '_metadata' must be a JSON object (dict), got {type(data.metadata).__name__}"
        )


# --------------------------------------------------------------------------- reading


def _npy_name(key: str) -> str:
    return key + ".npy"


@dataclass(frozen=True)
class NpyMember:
    """Where the array of one ``.npy`` member of an NPZ lies in the file.

    Found by :func:`locate_npy_member` from the member's zip local header and
    its ``.npy`` header, without reading the data.

    Attributes
    ----------
    key : str
        Member name without ``.npy``.
    stored : bool
        The member is stored uncompressed (``np.savez``) and not encrypted, so
        its bytes can be read in place; when False the remaining fields are
        None / False (a compressed member has to be decompressed to be read).
    shape : tuple of int or None
    dtype : numpy.dtype or None
    fortran : bool
        Fortran-ordered array.
    offset : int or None
        Absolute file offset of the first data byte.
    nbytes : int or None
        Size of the array data in bytes.
    """

    key: str
    stored: bool
    shape: tuple | None = None
    dtype: np.dtype | None = None
    fortran: bool = False
    offset: int | None = None
    nbytes: int | None = None


def _npy_header(fh):
    """Read a ``.npy`` header at the handle's position: (shape, fortran, dtype), or None for a
    format version other than 1.0 / 2.0 (left to numpy's own reader). Raises ValueError/EOFError."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    return None


def _npy_extent(where: str, key: str, header, offset: int, room: int, file_size: int, what: str) -> NpyMember:
    """Build the NpyMember of an array whose data starts at ``offset``; raise when it is truncated."""
    shape, fortran, dtype = header
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    nbytes = 0 if dtype.hasobject else count * dtype.itemsize
    if not dtype.hasobject and (nbytes > room or offset + nbytes > file_size):
        raise PtyAnalysisError(
            f"{where} is truncated: its header declares a {dtype} array of shape {tuple(shape)} "
            f"({nbytes} bytes) but {what} holds {max(0, min(room, file_size - offset))} bytes of data; "
            f"copy the file again or {_REGEN}")
    return NpyMember(key=key, stored=True, shape=tuple(int(v) for v in shape), dtype=dtype,
                     fortran=bool(fortran), offset=int(offset), nbytes=int(nbytes))


def locate_npy_member(path, info: zipfile.ZipInfo, fh=None) -> NpyMember:
    """Locate the array data of one ``.npy`` member of an NPZ (the one NPZ-member reader).

    Used by :func:`load_dataset` (memory mapping) and by
    :func:`ptyanalysis.inference.sources.open_npz` (streaming).

    Parameters
    ----------
    path : str or Path
        The NPZ file (used in messages, and opened when ``fh`` is None).
    info : zipfile.ZipInfo
        The member (``zipfile.ZipFile(path).getinfo(...)``).
    fh : binary file, optional
        An open handle on ``path`` (its position is changed).

    Returns
    -------
    NpyMember
        ``stored=False`` for a compressed or encrypted member (or a ``.npy``
        format version other than 1.0 / 2.0): read it with numpy instead.

    Raises
    ------
    PtyAnalysisError
        Naming the file and the key, when a stored member's zip local header or
        ``.npy`` header is unreadable, or its data would run past the member's
        recorded size or the end of the file (a truncated or corrupt file).
    """
    p = Path(path)
    key = info.filename.removesuffix(".npy")
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return NpyMember(key=key, stored=False)
    where = f"{p}: key {key!r} (member {info.filename})"
    if fh is None:
        try:
            with open(p, "rb") as own:
                return locate_npy_member(p, info, own)
        except OSError as exc:
            raise PtyAnalysisError(f"{where} could not be read ({exc}); check the file's permissions") from None
    try:
        file_size = fh.seek(0, 2)
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise PtyAnalysisError(
                f"{where} has no valid zip local header: the file is corrupt or truncated (an "
                f"interrupted copy?): copy it again or {_REGEN}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        try:
            header = _npy_header(fh)
        except (ValueError, EOFError, struct.error) as exc:
            raise PtyAnalysisError(
                f"{where} is not a readable .npy array ({exc}): the file is corrupt or truncated: "
                f"copy it again or {_REGEN}") from None
        offset = fh.tell()
    except OSError as exc:
        raise PtyAnalysisError(f"{where} could not be read ({exc}); copy the file again or {_REGEN}") from None
    if header is None:
        return NpyMember(key=key, stored=False)
    return _npy_extent(where, key, header, offset, info.file_size - (offset - start), file_size,
                       "the zip member")


def locate_npy_file(path, key: str | None = None) -> NpyMember:
    """Locate the array data of a plain ``.npy`` file (the same reader as :func:`locate_npy_member`).

    Parameters
    ----------
    path : str or Path
    key : str, optional
        Name used in messages and in the result (default: the file's stem).

    Returns
    -------
    NpyMember
        ``stored=False`` only for a ``.npy`` format version other than 1.0 / 2.0.

    Raises
    ------
    PtyAnalysisError
        If the file cannot be opened, is not a ``.npy`` file, or is shorter than its header declares.
    """
    p = Path(path)
    key = p.stem if key is None else key
    try:
        with open(p, "rb") as fh:
            file_size = fh.seek(0, 2)
            fh.seek(0)
            try:
                header = _npy_header(fh)
            except (ValueError, EOFError, struct.error) as exc:
                raise PtyAnalysisError(f"{p}: is not a readable .npy file ({exc}); save it with np.save") from None
            offset = fh.tell()
    except OSError as exc:
        raise PtyAnalysisError(f"{p}: cannot be read ({exc}); check the path and its permissions") from None
    if header is None:
        return NpyMember(key=key, stored=False)
    return _npy_extent(str(p), key, header, offset, file_size - offset, file_size, "the file")


def _try_memmap(path: Path, info: zipfile.ZipInfo, want: np.dtype):
    """Memory-map a stored (uncompressed) .npy zip member, or return None if not feasible.

    A truncated stored member raises (:func:`locate_npy_member`).
    """
    m = locate_npy_member(path, info)
    if not m.stored or m.dtype.hasobject or m.dtype != want or m.nbytes == 0:
        return None
    return np.memmap(path, dtype=m.dtype, mode="r", offset=m.offset, shape=m.shape,
                     order="F" if m.fortran else "C")


def _read_member(path: Path, zf: zipfile.ZipFile, key: str, *, allow_pickle=False,
                 mmap_dtype=None):
    """Read one array from the NPZ, re-raising every failure as PtyAnalysisError."""
    info = zf.getinfo(_npy_name(key))
    if mmap_dtype is not None:
        arr = _try_memmap(path, info, np.dtype(mmap_dtype))
        if arr is not None:
            return arr
    problem = None
    try:
        with zf.open(info) as fh:
            return np.lib.format.read_array(fh, allow_pickle=allow_pickle)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            problem = (f"holds a pickled object array but expected a numeric array; "
                       f"re-save it with a numeric dtype or {_REGEN}")
        else:
            problem = f"could not be read ({exc}); the file is corrupt or truncated: {_REGEN}"
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, struct.error,
            NotImplementedError, RuntimeError) as exc:
        problem = (f"could not be read ({type(exc).__name__}: {exc}); the file is corrupt or "
                   f"truncated (an interrupted copy?): copy it again or {_REGEN}")
    except Exception as exc:  # noqa: BLE001 - e.g. unpickling errors in _metadata
        problem = f"could not be read ({type(exc).__name__}: {exc}); {_REGEN}"
    raise PtyAnalysisError(f"{path}: key {key!r} {problem}")


def _parse_metadata(raw, source: str) -> dict:
    """Parse a ``_metadata`` value (0-d object/str/bytes array, str, bytes, dict) into a dict."""
    value = raw
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise PtyAnalysisError(
                f"{source}: key '_metadata' has shape {value.shape} but expected a 0-d array "
                "holding a JSON string; re-save the dataset with ptyanalysis.io.save_dataset"
            )
        value = value.reshape(()).item()
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PtyAnalysisError(
                f"{source}: key '_metadata' holds bytes that are not UTF-8 ({exc}); expected a "
                "JSON string; re-save the dataset with ptyanalysis.io.save_dataset"
            ) from None
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PtyAnalysisError(
                f"{source}: key '_metadata' is not valid JSON ({exc}; starts {value[:60]!r}); "
                "expected a JSON object with 'physics_parameters' and 'data_transformations'; "
                "fix or drop the key and re-save the dataset with ptyanalysis.io.save_dataset"
            ) from None
        if not isinstance(parsed, dict):
            raise PtyAnalysisError(
                f"{source}: key '_metadata' is JSON {type(parsed).__name__}, expected a JSON object "
                "with 'physics_parameters' and 'data_transformations'; re-save the dataset with "
                "ptyanalysis.io.save_dataset"
            )
        return parsed
    raise PtyAnalysisError(
        f"{source}: key '_metadata' holds a {type(value).__name__} but expected a JSON string; "
        "re-save the dataset with ptyanalysis.io.save_dataset"
    )


def _squeeze_vector(arr: np.ndarray) -> np.ndarray:
    """Accept (n,) or (n, 1) / (1, n) vectors as (n,); anything else is left for validation."""
    if arr.ndim == 2 and 1 in arr.shape:
        return arr.reshape(-1)
    return arr


def _canonical_layout(d: np.ndarray, ncoords: int, source: str, key: str) -> np.ndarray:
    """Return the diffraction stack as (n, N, N), transposing the legacy (N, N, n) layout."""
    if d.ndim != 3:
        raise PtyAnalysisError(
            f"{source}: key {key!r} has shape {d.shape} but expected (n, N, N) (or legacy "
            f"(N, N, n)); {_REGEN}"
        )
    a, b, c = d.shape
    canonical = b == c  # (n, N, N); a (k, k, k) stack is canonical
    legacy = a == b and c != a  # (N, N, n)
    if legacy and c == ncoords:
        return np.transpose(d, (2, 0, 1))
    if canonical or legacy:
        return d  # a count mismatch with the coordinates is reported by validation
    raise PtyAnalysisError(
        f"{source}: key {key!r} has shape {d.shape} but expected (n, N, N) (or legacy (N, N, n)) "
        f"with n = {ncoords} coordinates; {_REGEN}"
    )


def load_dataset(path, *, validate: bool = True, allow_nonfinite: bool = False,
                 mmap: bool = False) -> PtychoData:
    """Load a dataset NPZ (docs/formats.md#dataset-npz) as a :class:`PtychoData`.

    Parameters
    ----------
    path : str or Path
        An ``.npz`` file (not a directory).
    validate : bool
        Run :func:`validate_dataset` (shapes, counts, finiteness, signs). Key
        presence, dtype rules and the layout conversion apply regardless.
    allow_nonfinite : bool
        Accept NaN / Inf values (for loading deliberately poisoned data).
    mmap : bool
        Memory-map ``diffraction`` (and ``Y``) when the member is stored
        uncompressed with the canonical dtype; otherwise load normally. See
        the module docstring.

    Returns
    -------
    PtychoData
        In the canonical ``(n, N, N)`` layout with canonical dtypes; legacy
        ``diff3d`` / ``(N, N, n)`` inputs are converted. ``metadata`` is ``{}``
        when the file has no ``_metadata``. ``Y`` is the per-pattern ground
        truth: the file's ``Y``, or its ``ground_truth_patches`` when ``Y`` is
        absent or not per pattern (then ignored with a :class:`DatasetNotice`,
        as PtychoPINN's loader ignores it); :func:`ground_truth_patches` cuts
        it from ``objectGuess`` when neither is there.

    Warns
    -----
    DatasetNotice
        A ``Y`` whose first axis is not n was ignored; NaN / Inf were accepted
        (``allow_nonfinite=True``).

    Raises
    ------
    PtyAnalysisError
        If the file is missing, is a directory, is not an NPZ, is truncated or
        corrupt, lacks a required key (``diffraction``/``diff3d``,
        ``xcoords``, ``ycoords``, ``probeGuess``), or fails validation. The
        message names the file and the key.
    """
    p = Path(path)
    if not p.exists():
        raise PtyAnalysisError(
            f"{p}: dataset file not found; check the path (expected e.g. "
            "data/phase_c/dose_<D>/patched_{train,test}.npz) or generate it first"
        )
    if p.is_dir():
        raise PtyAnalysisError(f"{p}: is a directory; load_dataset takes one dataset .npz file")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise PtyAnalysisError(f"{p}: cannot be read ({exc}); check its permissions") from None
    if magic == b"\x93NUMPY":
        raise PtyAnalysisError(
            f"{p}: is a single-array .npy file, not a dataset NPZ with keys 'diffraction', "
            "'xcoords', 'ycoords', 'probeGuess'; build the dataset with ptyanalysis.io.save_dataset"
        )
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise PtyAnalysisError(
            f"{p}: is not a readable NPZ (zip) file ({type(exc).__name__}: {exc}); it may be "
            f"truncated (an interrupted copy or write) or not a dataset at all: copy it again or {_REGEN}"
        ) from None
    with zf:
        members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
        present = sorted(members)

        def missing(key, what):
            return PtyAnalysisError(
                f"{p}: key {key!r} is missing ({what}); keys present: "
                f"{', '.join(present) or 'none'}; {_REGEN}"
            )

        if "diffraction" in members:
            dkey = "diffraction"
        elif "diff3d" in members:
            dkey = "diff3d"
        else:
            raise missing("diffraction", "expected (n, N, N) float32 amplitudes, or legacy 'diff3d'")
        for key, what in (("xcoords", "expected (n,) float64 patch-centre columns"),
                          ("ycoords", "expected (n,) float64 patch-centre rows"),
                          ("probeGuess", "expected the (N, N) complex64 probe")):
            if key not in members:
                raise missing(key, what)

        def read(key, **kw):
            if key not in members:
                return None
            arr = _read_member(p, zf, key, **kw)
            if key != "_metadata" and arr.dtype.hasobject:
                raise PtyAnalysisError(
                    f"{p}: key {key!r} holds an object array but expected a numeric array; {_REGEN}"
                )
            return arr

        src = str(p)
        raw_d = read(dkey, mmap_dtype=np.float32 if mmap else None)
        x = _squeeze_vector(_coerce(read("xcoords"), "xcoords", src))
        y = _squeeze_vector(_coerce(read("ycoords"), "ycoords", src))
        if x.ndim != 1:
            raise PtyAnalysisError(f"{p}: key 'xcoords' has shape {x.shape} but expected (n,); {_REGEN}")
        if y.ndim != 1:
            raise PtyAnalysisError(f"{p}: key 'ycoords' has shape {y.shape} but expected (n,); {_REGEN}")
        if x.shape != y.shape:
            raise PtyAnalysisError(
                f"{p}: key 'xcoords' has {x.size} entries but key 'ycoords' has {y.size}: "
                f"expected one (x, y) pair per pattern; {_REGEN}"
            )
        diff = _coerce(raw_d, "diffraction", src) if dkey == "diffraction" else _coerce_legacy(raw_d, src)
        diff = _canonical_layout(diff, x.size, src, dkey)

        Y, y_key = None, "Y"
        for gkey in GROUND_TRUTH_KEYS:
            G = read(gkey, mmap_dtype=np.complex64 if mmap else None)
            if G is None:
                continue
            G = _coerce_named(G, "Y", gkey, src)
            file_shape = tuple(G.shape)
            if G.ndim == 4 and G.shape[-1] == 1:
                G = G[..., 0]
            if gkey == "Y" and G.ndim >= 1 and G.shape[0] != x.size:
                # PtychoPINN's generate_patches(nsamples=1) writes Y (1, N, N, 1); its loader ignores it
                nxt = ("'ground_truth_patches'" if "ground_truth_patches" in members else
                       "'objectGuess' (cut at the scan positions)" if "objectGuess" in members else
                       "nowhere (the file has neither 'ground_truth_patches' nor 'objectGuess')")
                warnings.warn(
                    f"{p}: key 'Y' has shape {file_shape} whose first axis is not the {x.size} patterns "
                    f"(PtychoPINN's generate_patches writes such a Y); ignored, as PtychoPINN's loader "
                    f"ignores it: ground truth comes from {nxt}", DatasetNotice, stacklevel=2)
                continue
            Y, y_key = G, gkey
            break
        opt = {}
        for key in ("xcoords_start", "ycoords_start", "scan_index"):
            a = read(key)
            opt[key] = None if a is None else _squeeze_vector(_coerce(a, key, src))
        probe = read("probeGuess")
        obj = read("objectGuess")
        meta = {}
        if "_metadata" in members:
            meta = _parse_metadata(read("_metadata", allow_pickle=True), src)

    data = PtychoData(
        diffraction=diff, xcoords=x, ycoords=y, probe=probe, obj=obj, Y=Y,
        scan_index=opt["scan_index"], xcoords_start=opt["xcoords_start"],
        ycoords_start=opt["ycoords_start"], metadata=meta, path=p, Y_key=y_key,
    )
    if validate:
        validate_dataset(data, source=src, allow_nonfinite=allow_nonfinite)
        if allow_nonfinite:
            nonfinite_warnings(data, source=src)
    return data


def _coerce_named(arr, fld: str, key: str, source: str):
    """Apply the dtype rule of field ``fld`` to an array read from NPZ key ``key``, naming that key."""
    try:
        return _coerce(arr, fld, source)
    except PtyAnalysisError as exc:
        if key == _FIELD_KEY[fld]:
            raise
        raise PtyAnalysisError(str(exc).replace(f"key {_FIELD_KEY[fld]!r}", f"key {key!r}", 1)) from None


def _coerce_legacy(arr, source: str):
    """Apply the diffraction dtype rule to a legacy ``diff3d`` array, naming that key."""
    return _coerce_named(arr, "diffraction", "diff3d", source)


# --------------------------------------------------------------------------- ground truth


def ground_truth_source(data: PtychoData) -> str | None:
    """Where :func:`ground_truth_patches` takes a dataset's ground truth from.

    Returns
    -------
    str or None
        ``"Y"`` or ``"ground_truth_patches"`` (the NPZ key ``data.Y`` was read
        from), ``"objectGuess"`` (patches cut from the object at the scan
        positions), or None when the dataset has neither.
    """
    if data.Y is not None:
        return data.Y_key
    if data.obj is not None:
        return "objectGuess"
    return None


def ground_truth_patches(data: PtychoData, indices=None) -> np.ndarray:
    """The ground-truth object patches of a dataset, by the one rule every reader uses.

    ``data.Y`` when present (a per-pattern ``Y``, else PtychoPINN's
    ``ground_truth_patches``: :func:`load_dataset`), otherwise the (N, N)
    patches cut from ``objectGuess`` at the scan positions with bilinear
    interpolation (:func:`ptyanalysis.imaging.stitching.extract`; what
    PtychoPINN's loader does when a file has no per-pattern ``Y``; it matches
    PtychoPINN's ``ground_truth_patches`` to 5e-6 on its own files).

    Parameters
    ----------
    data : PtychoData
    indices : array_like of int, optional
        Patterns wanted (default all), in that order.

    Returns
    -------
    ndarray, shape (k, N, N), complex64

    Raises
    ------
    PtyAnalysisError
        Naming the file, when the dataset has no ground truth (no ``Y``,
        ``ground_truth_patches`` or ``objectGuess``) or a patch falls outside
        ``objectGuess``.
    """
    src = "<memory>" if data.path is None else str(data.path)
    idx = np.arange(data.n) if indices is None else np.asarray(indices).reshape(-1)
    if data.Y is not None:
        return np.asarray(data.Y[idx], dtype=np.complex64)
    if data.obj is None:
        raise PtyAnalysisError(
            f"{src}: no ground truth: the dataset has no per-pattern 'Y', no 'ground_truth_patches' and "
            "no 'objectGuess'; use a split file that carries the object (objectGuess)")
    from .imaging.stitching import extract

    try:
        return np.asarray(extract(data.obj, data.positions[idx], data.N, method="bilinear"), dtype=np.complex64)
    except PtyAnalysisError as exc:
        raise PtyAnalysisError(f"{src}: cannot cut the ground truth from key 'objectGuess': {exc}") from None


# --------------------------------------------------------------------------- writing


def _json_default(obj):
    """JSON encoder fallback for numpy scalars/arrays and paths in metadata."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _metadata_json(metadata, source: str) -> str:
    try:
        return json.dumps(metadata or {}, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PtyAnalysisError(
            f"{source}: key '_metadata' cannot be written as JSON ({exc}); keep metadata to "
            "dicts, lists, strings, numbers, booleans and None"
        ) from None


def save_dataset(path, data: PtychoData, *, compress: bool = False, validate: bool = True,
                 allow_nonfinite: bool = False) -> Path:
    """Write ``data`` as a dataset NPZ (docs/formats.md#dataset-npz), atomically.

    Parameters
    ----------
    path : str or Path
        Destination file. Written under a temporary name and renamed into
        place, so a failure never leaves a partial file and keeps any previous
        file. The name is used as given (no ``.npz`` is appended).
    data : PtychoData
        Dataset to write.
    compress : bool
        Use ``np.savez_compressed`` (smaller; cannot be memory-mapped on load).
    validate : bool
        Run :func:`validate_dataset` first (default True), so that a file this
        writes always loads.
    allow_nonfinite : bool
        Allow NaN / Inf (to write deliberately poisoned data on purpose).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Keys written: ``diffraction`` (n, N, N) float32, ``xcoords``, ``ycoords``,
    ``xcoords_start``, ``ycoords_start`` (the coordinates when absent),
    ``probeGuess``, ``objectGuess`` (if any), ``Y`` (if any), ``scan_index``
    (if any) and ``_metadata`` (0-d object array holding the JSON string, as
    the study writes it).
    """
    p = Path(path)
    if not isinstance(data, PtychoData):
        raise PtyAnalysisError(f"{p}: save_dataset needs a PtychoData, got {type(data).__name__}")
    if validate:
        validate_dataset(data, source=str(p), allow_nonfinite=allow_nonfinite)
    meta_json = _metadata_json(data.metadata, str(p))
    arrays = {
        "diffraction": np.ascontiguousarray(data.diffraction, dtype=np.float32),
        "xcoords": np.asarray(data.xcoords, dtype=np.float64),
        "ycoords": np.asarray(data.ycoords, dtype=np.float64),
        "xcoords_start": np.asarray(
            data.xcoords if data.xcoords_start is None else data.xcoords_start, dtype=np.float64),
        "ycoords_start": np.asarray(
            data.ycoords if data.ycoords_start is None else data.ycoords_start, dtype=np.float64),
        "probeGuess": np.asarray(data.probe, dtype=np.complex64),
    }
    if data.obj is not None:
        arrays["objectGuess"] = np.asarray(data.obj, dtype=np.complex64)
    if data.Y is not None:
        arrays["Y"] = np.ascontiguousarray(data.Y, dtype=np.complex64)
    if data.scan_index is not None:
        arrays["scan_index"] = np.asarray(data.scan_index, dtype=np.int64)
    arrays["_metadata"] = np.array(meta_json, dtype=object)
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as fh:
            if compress:
                np.savez_compressed(fh, **arrays)
            else:
                np.savez(fh, **arrays)
    return p


# --------------------------------------------------------------------------- xarray


def to_xarray(data: PtychoData):
    """Return the dataset as an :class:`xarray.Dataset`.

    Parameters
    ----------
    data : PtychoData

    Returns
    -------
    xarray.Dataset
        Dimensions ``scan``, ``y``, ``x`` (patch pixels), ``probe_y``,
        ``probe_x``, ``obj_y``, ``obj_x``. Data variables ``diffraction``
        (scan, y, x), ``probe`` (probe_y, probe_x), ``object`` (obj_y, obj_x;
        if present), ``Y`` (scan, y, x; if present). Coordinates on ``scan``:
        ``row``, ``col`` (patch centres, object pixels), ``row_start``,
        ``col_start`` (nominal; the positions when absent), ``scan_index`` (if
        present). Attributes: ``metadata`` (JSON string), ``source`` (file
        path or ``""``), ``N``, ``nphotons`` (NaN when unknown), ``position_unit``.
        Arrays are not copied.
    """
    import xarray as xr

    if not isinstance(data, PtychoData):
        raise PtyAnalysisError(f"to_xarray needs a PtychoData, got {type(data).__name__}")
    source = "" if data.path is None else str(data.path)
    coords = {
        "row": ("scan", data.ycoords),
        "col": ("scan", data.xcoords),
        "row_start": ("scan", data.ycoords if data.ycoords_start is None else data.ycoords_start),
        "col_start": ("scan", data.xcoords if data.xcoords_start is None else data.xcoords_start),
    }
    if data.scan_index is not None:
        coords["scan_index"] = ("scan", data.scan_index)
    data_vars = {
        "diffraction": (("scan", "y", "x"), data.diffraction),
        "probe": (("probe_y", "probe_x"), data.probe),
    }
    if data.obj is not None:
        data_vars["object"] = (("obj_y", "obj_x"), data.obj)
    if data.Y is not None:
        data_vars["Y"] = (("scan", "y", "x"), data.Y)
    nph = data.nphotons
    attrs = {
        "metadata": _metadata_json(data.metadata, source or "<memory>"),
        "source": source,
        "N": data.N,
        "nphotons": float("nan") if nph is None else float(nph),
        "position_unit": POSITION_UNIT,
        "has_start_coords": int(data.xcoords_start is not None),
        "Y_key": data.Y_key,
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)


def from_xarray(ds) -> PtychoData:
    """Inverse of :func:`to_xarray`.

    Parameters
    ----------
    ds : xarray.Dataset
        With at least ``diffraction`` (scan, y, x), ``probe`` (probe_y,
        probe_x) and coordinates ``row``, ``col`` on ``scan``.

    Returns
    -------
    PtychoData
        Metadata parsed from the ``metadata`` attribute (``{}`` when absent),
        ``path`` from ``source``.

    Raises
    ------
    PtyAnalysisError
        If a required variable or coordinate is missing or has other dimensions.
    """
    src = str(ds.attrs.get("source") or "<xarray>")

    def var(name, dims, required=True):
        if name not in ds.variables:
            if required:
                raise PtyAnalysisError(
                    f"{src}: xarray dataset has no {name!r} (expected dims {dims}); build it with "
                    "ptyanalysis.io.to_xarray"
                )
            return None
        v = ds[name]
        if set(v.dims) != set(dims):
            raise PtyAnalysisError(
                f"{src}: xarray variable {name!r} has dims {v.dims} but expected {dims}"
            )
        return np.asarray(v.transpose(*dims).values)

    diff = var("diffraction", ("scan", "y", "x"))
    probe = var("probe", ("probe_y", "probe_x"))
    obj = var("object", ("obj_y", "obj_x"), required=False)
    Y = var("Y", ("scan", "y", "x"), required=False)
    row = var("row", ("scan",))
    col = var("col", ("scan",))
    has_start = bool(ds.attrs.get("has_start_coords", 1))
    row0 = var("row_start", ("scan",), required=False) if has_start else None
    col0 = var("col_start", ("scan",), required=False) if has_start else None
    sidx = var("scan_index", ("scan",), required=False)
    meta = ds.attrs.get("metadata")
    meta = {} if meta is None else _parse_metadata(meta, src)
    source = ds.attrs.get("source") or None
    return PtychoData(
        diffraction=diff, xcoords=col, ycoords=row, probe=probe, obj=obj, Y=Y,
        scan_index=sidx, xcoords_start=col0, ycoords_start=row0, metadata=meta,
        path=None if source is None else Path(source), Y_key=str(ds.attrs.get("Y_key", "Y")),
    )


# --------------------------------------------------------------------------- metadata


def make_metadata(nphotons, N, gridsize: int = 1, **physics) -> dict:
    """Build a study ``_metadata`` dict.

    Parameters
    ----------
    nphotons : float
        Expected photons per pattern (the dose), > 0.
    N : int
        Pattern side length in pixels, > 0.
    gridsize : int
        Gridsize the data was prepared for.
    **physics
        Further physics parameters (e.g. ``probe_scale``), JSON-serializable.

    Returns
    -------
    dict
        ``{"physics_parameters": {"nphotons", "N", "gridsize", **physics},
        "data_transformations": []}``.

    Raises
    ------
    PtyAnalysisError
        If nphotons is not a positive finite number or N / gridsize are not positive integers.
    """
    try:
        nph = float(nphotons)
    except (TypeError, ValueError):
        nph = float("nan")
    if not math.isfinite(nph) or nph <= 0:
        raise PtyAnalysisError(f"nphotons must be a positive finite number, got {nphotons!r}")
    for name, v in (("N", N), ("gridsize", gridsize)):
        if isinstance(v, bool) or not float(v).is_integer() or int(v) <= 0:
            raise PtyAnalysisError(f"{name} must be a positive integer, got {v!r}")
    phys = {"nphotons": nph, "N": int(N), "gridsize": int(gridsize)}
    phys.update(physics)
    return {"physics_parameters": phys, "data_transformations": []}


def add_transformation(metadata, operation: str, parameters, tool: str = "ptyanalysis") -> dict:
    """Return a copy of ``metadata`` with one ``data_transformations`` entry appended.

    Parameters
    ----------
    metadata : dict or None
        Existing metadata; not modified.
    operation : str
        What was done, e.g. ``"subsample"``.
    parameters : dict
        Its parameters (JSON-serializable).
    tool : str
        Who did it.

    Returns
    -------
    dict
        A deep copy with ``{"tool", "timestamp" (UTC, ISO 8601 ending in Z),
        "operation", "parameters"}`` appended to ``data_transformations``
        (created when missing).
    """
    from .provenance import utc_now

    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise PtyAnalysisError(f"metadata must be a dict, got {type(metadata).__name__}")
    out = copy.deepcopy(metadata)
    entries = out.get("data_transformations")
    if entries is None:
        entries = []
    elif not isinstance(entries, list):
        raise PtyAnalysisError(
            f"metadata['data_transformations'] must be a list, got {type(entries).__name__}"
        )
    entries = list(entries)
    entries.append({
        "tool": str(tool),
        "timestamp": utc_now(),
        "operation": str(operation),
        "parameters": copy.deepcopy(parameters if parameters is not None else {}),
    })
    out["data_transformations"] = entries
    return out


# --------------------------------------------------------------------------- physics


#: Counts up to this value are checked to be integers by :func:`estimate_dose` (float32 amplitudes
#: resolve them to about 1e-4).
_INTEGER_CHECK_MAX_COUNT = 1000.0
#: Largest deviation from an integer accepted for those counts.
_INTEGER_TOLERANCE = 0.01
#: Smallest count tried for the smallest nonzero amplitude (1 first; 2..4 when no pixel holds 1 count).
_SMALLEST_COUNTS = (1, 2, 3, 4)
#: Default tolerance of the dose check against ``_metadata``: a split's realised dose differs from the
#: simulation's nphotons by the region it covers (4.9 % on a PtychoPINN y-split at 1e4).
DOSE_TOLERANCE = 0.25


@dataclass(frozen=True)
class DoseEstimate:
    """The scale ``s`` and the dose of a dataset estimated from its amplitudes (:func:`estimate_dose`).

    Attributes
    ----------
    scale : float or None
        ``s`` with ``counts = (diffraction * s)**2``; None when unavailable.
    dose : float or None
        Mean over patterns of the total counts: this file's realised dose.
    method : str
        ``"smallest_nonzero"`` (``s = sqrt(k) / smallest nonzero amplitude``, checked: every count up
        to 1000 comes out an integer; exact, needs no metadata), ``"mean"`` (``s = sqrt(nphotons /
        mean total diffraction**2)``: assumes the realised dose equals ``nphotons``, so ``dose`` is
        ``nphotons`` by construction and the counts are off by the dose's own fluctuation), or
        ``"unavailable"``.
    smallest_count : int or None
        ``k``: the count of the smallest nonzero amplitude (1 where 1-count pixels exist).
    integer_deviation : float or None
        Largest ``|counts - round(counts)|`` over the counts <= 1000 (smallest-nonzero rule).
    nphotons : float or None
        ``_metadata`` ``physics_parameters.nphotons`` (or the value passed).
    scale_mean_rule : float or None
        ``s`` by the mean rule, when ``nphotons`` is known.
    relative_difference : float or None
        ``dose / nphotons - 1`` when both the smallest-nonzero estimate and ``nphotons`` exist.
    agrees : bool or None
        ``|relative_difference| <= tolerance``; None when it cannot be checked.
    nonfinite : int
        NaN / Inf amplitudes left out.
    note : str
        What was done, in words (printed by callers).
    """

    scale: float | None
    dose: float | None
    method: str
    smallest_count: int | None
    integer_deviation: float | None
    nphotons: float | None
    scale_mean_rule: float | None
    relative_difference: float | None
    agrees: bool | None
    nonfinite: int
    note: str

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return dataclasses.asdict(self)


def _amplitude_blocks(d):
    """Float64 row blocks of a (possibly memory-mapped) diffraction stack."""
    for _, block in row_blocks(d):
        yield block.astype(np.float64)


def estimate_dose(data: PtychoData, *, nphotons: float | None = None,
                  tolerance: float = DOSE_TOLERANCE) -> DoseEstimate:
    """Estimate the scale ``s`` and the dose of a dataset from its amplitudes alone.

    The stored amplitude is ``sqrt(counts) / s`` (docs/formats.md#normalisation-and-dose), so the
    smallest nonzero amplitude is ``sqrt(1) / s`` wherever 1-count pixels exist
    (any low-dose pattern has many): ``s = 1 / min(diffraction > 0)``, accepted
    only when every count up to 1000 then comes out an integer (within 0.01);
    ``k = 2, 3, 4`` counts are tried for the smallest amplitude when 1 fails.
    This needs no ``_metadata`` (PtychoPINN's legacy ``RawData.to_file`` writes
    none) and is exact: the simulation scales to the *expected* photon count
    before the Poisson draw, so the mean rule below is off by the dose's own
    fluctuation (0.06 % in ``s`` on the study's files) and, for a split, by the
    region it covers. The dose is then the mean total count per pattern.

    Where the check fails (no low counts, e.g. a high dose, or amplitudes that
    are not ``sqrt(counts) / s``), the mean rule ``s = sqrt(nphotons / mean
    total diffraction**2)`` is used when ``nphotons`` is known (method
    ``"mean"``: less reliable, said in ``note``), else the estimate is
    ``"unavailable"``. Where both the smallest-nonzero estimate and
    ``_metadata``'s ``nphotons`` exist they are compared: ``agrees`` is False
    (with a :class:`DatasetNotice`) when the realised dose differs from
    ``nphotons`` by more than ``tolerance``.

    Parameters
    ----------
    data : PtychoData
    nphotons : float, optional
        Dose to use instead of ``metadata['physics_parameters']['nphotons']``.
    tolerance : float
        Relative tolerance of the check against ``nphotons`` (default 0.25).

    Returns
    -------
    DoseEstimate
        NaN / Inf amplitudes are left out (counted in ``nonfinite``).
    """
    src = "<memory>" if data.path is None else str(data.path)
    nph = data.nphotons if nphotons is None else float(nphotons)
    if nph is not None and (not math.isfinite(nph) or nph <= 0):
        raise PtyAnalysisError(f"{src}: nphotons must be positive and finite, got {nph!r}")
    d = data.diffraction
    amin, total, bad = math.inf, 0.0, 0
    for block in _amplitude_blocks(d):
        fin = np.isfinite(block)
        if not fin.all():
            bad += int((~fin).sum())
            block = np.where(fin, block, 0.0)
        pos = block[block > 0]
        if pos.size:
            amin = min(amin, float(pos.min()))
        total += float(np.sum(block * block))
    mean_total = total / d.shape[0] if d.shape[0] else float("nan")
    s_mean = math.sqrt(nph / mean_total) if nph is not None and mean_total > 0 else None
    scale = k_used = dev_used = None
    if math.isfinite(amin):
        for k in _SMALLEST_COUNTS:
            s_try = math.sqrt(k) / amin
            dev = 0.0
            for block in _amplitude_blocks(d):
                c = np.square(block * s_try)
                c = c[np.isfinite(c) & (c <= _INTEGER_CHECK_MAX_COUNT)]
                if c.size:
                    dev = max(dev, float(np.max(np.abs(c - np.rint(c)))))
                if dev > _INTEGER_TOLERANCE:
                    break
            if dev <= _INTEGER_TOLERANCE:
                scale, k_used, dev_used = s_try, k, dev
                break
    nonfinite = f"; {bad} NaN/Inf amplitude(s) left out" if bad else ""
    if scale is not None:
        dose = scale * scale * mean_total
        rel = agrees = None
        check = "no nphotons in _metadata to check it against"
        if nph is not None:
            rel = dose / nph - 1.0
            agrees = abs(rel) <= tolerance
            check = (f"nphotons {nph:g} in _metadata: realised dose {100 * rel:+.2f} % from it "
                     f"({'agrees' if agrees else 'DISAGREES'} within {100 * tolerance:g} %)")
        note = (f"smallest-nonzero rule: smallest nonzero amplitude {amin:.7g} = sqrt({k_used})/s, "
                f"s = {scale:.7g}, counts <= {_INTEGER_CHECK_MAX_COUNT:g} integer to {dev_used:.1e}; "
                f"dose (mean total counts per pattern) {dose:.6g}; {check}{nonfinite}")
        if agrees is False:
            warnings.warn(f"{src}: key 'diffraction': {note}", DatasetNotice, stacklevel=2)
        return DoseEstimate(scale, dose, "smallest_nonzero", k_used, dev_used, nph, s_mean, rel, agrees, bad, note)
    why = ("the smallest nonzero amplitude does not give integer counts (no low counts: a high dose, or "
           "amplitudes that are not sqrt(counts)/s)" if math.isfinite(amin) else "no positive finite amplitude")
    if s_mean is not None:
        note = (f"mean rule (less reliable): {why}; s = sqrt(nphotons / mean total diffraction^2) = "
                f"{s_mean:.7g} with nphotons {nph:g} assumes the realised dose equals nphotons{nonfinite}")
        return DoseEstimate(s_mean, nph, "mean", None, None, nph, s_mean, None, None, bad, note)
    note = (f"unavailable: {why}, and no nphotons (no _metadata physics_parameters.nphotons) for the mean "
            f"rule; pass nphotons=<dose>{nonfinite}")
    return DoseEstimate(None, None, "unavailable", None, None, None, None, None, None, bad, note)


def recover_counts(data: PtychoData, *, nphotons: float | None = None,
                   dtype=np.float64, method: str = "auto") -> np.ndarray:
    """Recover photon counts from normalized amplitudes (docs/formats.md#normalisation-and-dose).

    ``counts = (diffraction * s)**2`` with ``s`` from :func:`estimate_dose`:
    the smallest-nonzero-amplitude rule where low counts exist (exact: the
    counts come out integers, and their mean total per pattern is the file's
    realised dose), else the mean rule ``s = sqrt(nphotons / mean over
    patterns of sum(diffraction**2))`` (mean total = ``nphotons`` by
    construction, off by the dose's own fluctuation; said with a
    :class:`DatasetNotice`).

    Parameters
    ----------
    data : PtychoData
    nphotons : float, optional
        Dose to use instead of ``metadata['physics_parameters']['nphotons']``
        (only the mean rule needs it).
    dtype : numpy dtype
        Output dtype (float64 by default; pass float32 to halve memory on big splits).
    method : {"auto", "smallest_nonzero", "mean"}
        ``"auto"``: the smallest-nonzero rule when it holds, else the mean rule.

    Returns
    -------
    ndarray, shape (n, N, N)
        Estimated counts (NaN where the amplitude is NaN).

    Raises
    ------
    PtyAnalysisError
        If the requested rule cannot be applied (no low counts for
        ``"smallest_nonzero"``; no dose known or empty patterns for ``"mean"``).
    """
    src = "<memory>" if data.path is None else str(data.path)
    if method not in ("auto", "smallest_nonzero", "mean"):
        raise PtyAnalysisError(f"method must be 'auto', 'smallest_nonzero' or 'mean', got {method!r}")
    nph = data.nphotons if nphotons is None else float(nphotons)
    if nph is not None and (not math.isfinite(nph) or nph <= 0):
        raise PtyAnalysisError(f"{src}: nphotons must be positive and finite, got {nph!r}")
    est = estimate_dose(data, nphotons=nphotons) if method != "mean" else None
    if est is not None and est.method == "smallest_nonzero":
        s2 = est.scale ** 2
    elif method == "smallest_nonzero":
        raise PtyAnalysisError(f"{src}: key 'diffraction': the smallest-nonzero rule does not hold ({est.note})")
    else:
        if nph is None:
            raise PtyAnalysisError(
                f"{src}: key '_metadata' has no physics_parameters.nphotons and the amplitudes hold no low "
                "counts to calibrate on, so counts cannot be recovered; pass nphotons=<dose> or add it "
                "with ptyanalysis.io.make_metadata"
            )
        total = 0.0
        for block in _amplitude_blocks(data.diffraction):
            total += float(np.nansum(block * block))
        mean_total = total / data.diffraction.shape[0]
        if not math.isfinite(mean_total) or mean_total <= 0:
            raise PtyAnalysisError(
                f"{src}: key 'diffraction' has mean total intensity {mean_total!r} per pattern; "
                "counts cannot be recovered from empty patterns"
            )
        s2 = nph / mean_total
        if method == "auto":
            warnings.warn(f"{src}: key 'diffraction': counts recovered by the {est.note}", DatasetNotice,
                          stacklevel=2)
    out = np.array(data.diffraction, dtype=dtype, copy=True)
    np.square(out, out=out)
    out *= s2
    return out

"""Read, write and validate the study's dataset NPZ files; ``xarray`` views.

One dataset NPZ holds one split (study contract, section 2):

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
memory-mapped array scans it in chunks, so it does not need the whole array in
RAM at once.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conventions import POSITION_UNIT, positions_from_xy
from .errors import PtyAnalysisError
from .fileutil import atomic_path

__all__ = [
    "PtychoData",
    "load_dataset",
    "save_dataset",
    "validate_dataset",
    "to_xarray",
    "from_xarray",
    "make_metadata",
    "add_transformation",
    "recover_counts",
    "DATASET_KEYS",
]

#: Keys of a dataset NPZ that ptyanalysis reads (``diff3d`` is the legacy name of ``diffraction``).
DATASET_KEYS = (
    "diffraction", "diff3d", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
    "probeGuess", "objectGuess", "Y", "scan_index", "_metadata",
)

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

_REGEN = "regenerate the dataset (ptyanalysis synth or the study's simulation) or fix it with ptyanalysis.io.save_dataset"

# Elements per chunk when scanning large (possibly memory-mapped) arrays.
_CHUNK = 1 << 22


# --------------------------------------------------------------------------- dtype rules


def _coerce(value, fld: str, source: str):
    """Return ``value`` as an ndarray of the canonical dtype of field ``fld``.

    Raises PtyAnalysisError (naming ``source`` and the NPZ key) for dtypes the
    rule refuses. Arrays that already have the canonical dtype are returned
    as they are (no copy; ``np.memmap`` stays an ``np.memmap``).
    """
    key = _FIELD_KEY[fld]
    kind = _FIELD_KIND[fld]
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
        Ground-truth object patches.
    scan_index : ndarray, shape (n,), int64, optional
    xcoords_start, ycoords_start : ndarray, shape (n,), float64, optional
        Nominal positions (saved as the coordinates when absent).
    metadata : dict
        Parsed ``_metadata`` JSON (``physics_parameters``, ``data_transformations``).
    path : Path, optional
        File the data was loaded from.

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
            ``*_start`` coordinates; ``probe``, ``obj``, ``metadata`` and
            ``path`` are shared. Nothing is recorded in the metadata (use
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

        def take(a):
            return None if a is None else np.asarray(a[idx])

        return dataclasses.replace(
            self,
            diffraction=take(self.diffraction),
            xcoords=take(self.xcoords),
            ycoords=take(self.ycoords),
            Y=take(self.Y),
            scan_index=take(self.scan_index),
            xcoords_start=take(self.xcoords_start),
            ycoords_start=take(self.ycoords_start),
        )

    def replace(self, **changes) -> PtychoData:
        """Return a copy with fields replaced (:func:`dataclasses.replace`; dtypes are re-coerced)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- validation


def _nonfinite_report(arr) -> tuple[int, int]:
    """Return (count of NaN/Inf values, index along axis 0 of the first one or -1); chunked."""
    a = np.asarray(arr)
    if a.size == 0:
        return 0, -1
    if a.ndim == 0:
        bad = int(not np.isfinite(a))
        return bad, (0 if bad else -1)
    per_row = max(1, int(np.prod(a.shape[1:])))
    step = max(1, _CHUNK // per_row)
    count, first = 0, -1
    for start in range(0, a.shape[0], step):
        block = np.asarray(a[start:start + step])
        bad = ~np.isfinite(block)
        c = int(bad.sum())
        if c:
            if first < 0:
                rows = bad.reshape(bad.shape[0], -1).any(axis=1)
                first = start + int(np.argmax(rows))
            count += c
    return count, first


def _negative_report(arr) -> tuple[int, int, float]:
    """Return (count of values < 0, first pattern index or -1, minimum value); NaN ignored; chunked."""
    a = np.asarray(arr)
    if a.size == 0:
        return 0, -1, 0.0
    per_row = max(1, int(np.prod(a.shape[1:])))
    step = max(1, _CHUNK // per_row)
    count, first, lo = 0, -1, math.inf
    for start in range(0, a.shape[0], step):
        block = np.asarray(a[start:start + step])
        neg = block < 0
        c = int(neg.sum())
        if c:
            if first < 0:
                rows = neg.reshape(neg.shape[0], -1).any(axis=1)
                first = start + int(np.argmax(rows))
            count += c
            lo = min(lo, float(block[neg].min()))
    return count, first, lo


def validate_dataset(data: PtychoData, *, source: str = "<memory>", allow_nonfinite: bool = False) -> None:
    """Check a dataset against the study contract; raise on the first problem.

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
            f"{src}: key 'Y' has shape {data.Y.shape} but expected (n, N, N) = ({n}, {N}, {N}) "
            f"like the diffraction patterns; {_REGEN}"
        )

    if not allow_nonfinite:
        for fld in ("diffraction", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
                    "probe", "obj", "Y"):
            a = getattr(data, fld)
            if a is None:
                continue
            count, first = _nonfinite_report(a)
            if count:
                where = f" (first at index {first} along axis 0)" if a.ndim else ""
                raise PtyAnalysisError(
                    f"{src}: key {_FIELD_KEY[fld]!r} contains {count} NaN/Inf value(s){where} but "
                    "expected finite values; pass allow_nonfinite=True to load deliberately "
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


def _try_memmap(path: Path, info: zipfile.ZipInfo, want: np.dtype):
    """Memory-map a stored (uncompressed) .npy zip member, or return None if not feasible."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            offset = fh.tell()
    except (OSError, ValueError, struct.error):
        return None
    if dtype.hasobject or dtype != want:
        return None
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count == 0:
        return None
    if offset - start + count * dtype.itemsize > info.file_size:
        return None  # truncated member: let the normal reader report it
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


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
    """Load a dataset NPZ (study contract, section 2) as a :class:`PtychoData`.

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
        when the file has no ``_metadata``.

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

        Y = read("Y", mmap_dtype=np.complex64 if mmap else None)
        if Y is not None:
            Y = _coerce(Y, "Y", src)
            if Y.ndim == 4 and Y.shape[-1] == 1:
                Y = Y[..., 0]
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
        ycoords_start=opt["ycoords_start"], metadata=meta, path=p,
    )
    if validate:
        validate_dataset(data, source=src, allow_nonfinite=allow_nonfinite)
    return data


def _coerce_legacy(arr, source: str):
    """Apply the diffraction dtype rule to a legacy ``diff3d`` array, naming that key."""
    try:
        return _coerce(arr, "diffraction", source)
    except PtyAnalysisError as exc:
        raise PtyAnalysisError(str(exc).replace("key 'diffraction'", "key 'diff3d'", 1)) from None


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
    """Write ``data`` as a dataset NPZ (study contract, section 2), atomically.

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
        path=None if source is None else Path(source),
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


def recover_counts(data: PtychoData, *, nphotons: float | None = None,
                   dtype=np.float64) -> np.ndarray:
    """Recover photon counts from normalized amplitudes (study contract, section 2).

    ``counts = (diffraction * s)**2`` with
    ``s = sqrt(nphotons / mean over patterns of sum(diffraction**2))``. For
    simulated Poisson data the result is close to integers (exact up to the
    relative Poisson fluctuation of the dataset's total dose), and the mean
    total per pattern equals ``nphotons`` by construction: a dose sanity check.

    Parameters
    ----------
    data : PtychoData
    nphotons : float, optional
        Dose to use instead of ``metadata['physics_parameters']['nphotons']``.
    dtype : numpy dtype
        Output dtype (float64 by default; pass float32 to halve memory on big splits).

    Returns
    -------
    ndarray, shape (n, N, N)
        Estimated counts.

    Raises
    ------
    PtyAnalysisError
        If no dose is known, or the patterns carry no intensity.
    """
    src = "<memory>" if data.path is None else str(data.path)
    nph = data.nphotons if nphotons is None else float(nphotons)
    if nph is None:
        raise PtyAnalysisError(
            f"{src}: key '_metadata' has no physics_parameters.nphotons, so counts cannot be "
            "recovered; pass nphotons=<dose> or add it with ptyanalysis.io.make_metadata"
        )
    if not math.isfinite(nph) or nph <= 0:
        raise PtyAnalysisError(f"{src}: nphotons must be positive and finite, got {nph!r}")
    d = data.diffraction
    total = 0.0
    step = max(1, _CHUNK // max(1, d.shape[1] * d.shape[2]))
    for start in range(0, d.shape[0], step):
        block = np.asarray(d[start:start + step], dtype=np.float64)
        total += float(np.sum(block * block))
    mean_total = total / d.shape[0]
    if not math.isfinite(mean_total) or mean_total <= 0:
        raise PtyAnalysisError(
            f"{src}: key 'diffraction' has mean total intensity {mean_total!r} per pattern; "
            "counts cannot be recovered from empty or non-finite patterns"
        )
    s2 = nph / mean_total
    out = np.array(d, dtype=dtype, copy=True)
    np.square(out, out=out)
    out *= s2
    return out

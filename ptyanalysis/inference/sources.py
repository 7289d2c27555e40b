"""Input sources: in-memory arrays, ``.npy`` files and ``.npz`` members read chunk by chunk."""

from __future__ import annotations

import logging
import mmap
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PtyAnalysisError
from ..inference.model import LoadedModel
from ..io import locate_npy_file, locate_npy_member

#: The one logger of the inference subpackage.
log = logging.getLogger("ptyanalysis.inference")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


class _ArraySource:
    """Chunks of an in-memory array (or a view)."""

    def __init__(self, name, array):
        self.name, self.array = name, array
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def read(self, a, b):
        return np.asarray(self.array[a:b])

    def close(self):
        pass


class _FileSource:
    """Chunks of a C-ordered array stored at ``offset`` in a file, read by positioned reads."""

    def __init__(self, name, path, offset, dtype, shape):
        self.name, self.path, self.offset = name, str(path), int(offset)
        self.dtype, self.shape = np.dtype(dtype), tuple(int(s) for s in shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fh = None
        self._lock = threading.Lock()

    def read(self, a, b):
        out = np.empty((b - a,) + self.shape[1:], dtype=self.dtype)
        buf = memoryview(out).cast("B")
        with self._lock:
            if self._fh is None:
                self._fh = open(self.path, "rb", buffering=0)
            self._fh.seek(self.offset + a * self.row_bytes)
            got = 0
            while got < len(buf):
                k = self._fh.readinto(buf[got:])
                if not k:
                    raise PtyAnalysisError(
                        f"{self.path}: file ends early while reading {self.name!r} samples "
                        f"{a}:{b} (truncated file?)"
                    )
                got += k
        return out

    def close(self):
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _npy_source(name, path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PtyAnalysisError(f"input {name!r}: file {path} does not exist")
    try:
        member = locate_npy_file(path, key=name)  # raises on a truncated file
    except PtyAnalysisError as exc:
        raise PtyAnalysisError(f"input {name!r}: {exc}") from None
    if member.stored and member.dtype.hasobject:
        raise PtyAnalysisError(f"input {name!r}: {path} holds a pickled object array; save a numeric array with np.save")
    if not member.stored or member.fortran:
        return _ArraySource(name, np.load(path, mmap_mode="r" if member.stored else None, allow_pickle=False))
    return _FileSource(name, path, member.offset, member.dtype, member.shape)


def _memmap_source(name, arr: np.memmap):
    """Read an original (not sliced) file-backed memmap by offset; else slice it."""
    if (
        isinstance(arr.base, mmap.mmap) and arr.filename and arr.flags.c_contiguous
        and getattr(arr, "mode", "c") in ("r", "r+", "w+") and arr.ndim >= 1
    ):
        return _FileSource(name, arr.filename, arr.offset, arr.dtype, arr.shape)
    return _ArraySource(name, arr)


def open_npz(path) -> dict:
    """Open the arrays of an ``.npz`` for streaming without loading them.

    Uncompressed (stored) members are located inside the zip and read by
    offset; compressed members are read into memory (with a warning saying to
    store the file uncompressed with ``np.savez``).

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file (read lazily: nothing is loaded here).

    Returns
    -------
    dict
        ``{name: source}``; each source has ``shape``, ``dtype`` and
        ``read(start, stop)``.
    """
    path = Path(path)
    if not path.is_file():
        raise PtyAnalysisError(f"inputs file {path} does not exist")
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PtyAnalysisError(f"{path} is not a readable .npz file ({exc})") from exc
    with zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            member = locate_npy_member(path, info, fh)  # raises on a truncated or corrupt member
            name = member.key
            if member.stored and member.dtype.hasobject:
                log.warning("%s: member %r holds a pickled object array (e.g. a dataset's _metadata), "
                            "not model input: skipped", path, name)
                continue
            if member.stored and not member.fortran:
                out[name] = _FileSource(name, path, member.offset, member.dtype, member.shape)
                continue
            log.warning(
                "%s: member %r is compressed (or Fortran-ordered) and is read into memory; "
                "store the split with np.savez (uncompressed) to stream it", path, name,
            )
            try:
                with np.load(path, allow_pickle=False) as data:
                    out[name] = _ArraySource(name, data[name])
            except ValueError as exc:
                if "Object arrays" not in str(exc):
                    raise PtyAnalysisError(f"{path}: key {name!r} could not be read ({exc}); the file is "
                                           "corrupt or truncated: copy it again") from None
                log.warning("%s: member %r holds a pickled object array (e.g. a dataset's _metadata), "
                            "not model input: skipped", path, name)
            except Exception as exc:  # noqa: BLE001 - zlib, EOF...
                raise PtyAnalysisError(
                    f"{path}: key {name!r} could not be read ({type(exc).__name__}: {exc}); the file "
                    "is corrupt or truncated, or the member is not a numeric array: copy it again or "
                    "re-save it with np.savez") from None
    return out


def _as_source(name, value):
    if isinstance(value, (str, Path)):
        if str(value).lower().endswith(".npy"):
            return _npy_source(name, value)
        raise PtyAnalysisError(
            f"input {name!r}: {value} is not a .npy file; give arrays, .npy paths or one .npz path"
        )
    if isinstance(value, np.memmap):
        return _memmap_source(name, value)
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.ndim == 0:
        raise PtyAnalysisError(f"input {name!r} is a scalar; expected an array with a sample axis first")
    return _ArraySource(name, value)


def _resolve_inputs(loaded: LoadedModel, inputs) -> list:
    names = list(loaded.input_names)
    expected = ", ".join(names) if names else "(the model does not declare them)"
    if isinstance(inputs, (str, Path)):
        p = Path(inputs)
        if p.suffix.lower() == ".npy":
            inputs = [str(p)]
        elif p.suffix.lower() == ".npz":
            inputs = open_npz(p)
            if len(names) == 1 and len(inputs) == 1 and names[0] not in inputs:
                log.info("%s: using its only array %r as input %r", p, next(iter(inputs)), names[0])
                inputs = {names[0]: next(iter(inputs.values()))}
        else:
            raise PtyAnalysisError(f"inputs path {p} must be a .npz (arrays named like the inputs: {expected}) or a .npy")
    if isinstance(inputs, dict):
        if not names:
            raise PtyAnalysisError(
                "inputs given by name but the model does not declare input names; pass a list in call order"
            )
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            raise PtyAnalysisError(
                f"model inputs are [{expected}]; "
                + (f"unknown: {', '.join(map(str, unknown))}; " if unknown else "")
                + (f"missing: {', '.join(missing)}; " if missing else "")
                + "name the inputs exactly like the model's"
            )
        values = [inputs[n] for n in names]
    elif isinstance(inputs, (list, tuple)):
        values = list(inputs)
        if names and len(values) != len(names):
            raise PtyAnalysisError(
                f"model takes {len(names)} input(s) [{expected}] but {len(values)} were given"
            )
        if not names:
            names = [f"input_{i}" for i in range(len(values))]
    else:
        if names and len(names) != 1:
            raise PtyAnalysisError(
                f"model takes {len(names)} inputs [{expected}]; pass a dict or a list, not one array"
            )
        values = [inputs]
        names = names or ["input_0"]
    sources = [v if hasattr(v, "read") and hasattr(v, "shape") else _as_source(n, v)
               for n, v in zip(names, values)]
    counts = {s.name: s.shape[0] for s in sources}
    if len(set(counts.values())) > 1:
        raise PtyAnalysisError(
            "inputs have different sample counts (first axis): "
            + ", ".join(f"{k}={v}" for k, v in counts.items())
            + "; every input needs one row per sample (they are never broadcast)"
        )
    shapes = loaded.input_shapes or [None] * len(sources)
    for src, want in zip(sources, shapes):
        if want is None:
            continue
        got = src.shape[1:]
        exp = tuple(want[1:])
        if len(got) != len(exp) or any(e is not None and e != g for e, g in zip(exp, got)):
            raise PtyAnalysisError(
                f"input {src.name!r} has per-sample shape {got}, the model expects "
                f"{tuple('?' if e is None else e for e in exp)}"
            )
    return sources



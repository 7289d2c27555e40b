"""Atomic file output: write to a temporary name, then rename into place.

Nothing ptyanalysis writes is ever left half-written: if the writer fails,
the temporary file is removed and any previous file at the target is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

from .errors import PtyAnalysisError


def _new_temp(parent: Path, prefix: str, suffix: str, directory: bool = False) -> Path:
    """Create a new, uniquely named file or directory in ``parent`` and return its path.

    Created with mode 0666 (file) or 0777 (directory) so that the process
    umask applies, exactly as for a plain ``open()`` or ``mkdir``: the final
    file gets the permissions a direct write would have given it (``mkstemp``
    would give 0600). The umask is never read or changed.
    """
    for _ in range(100):
        p = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                os.mkdir(p, 0o777)
            else:
                os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return p
    raise FileExistsError(f"no free temporary name in {parent}")


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final destination. Parent directories are created.
    suffix : str, optional
        Suffix of the temporary name (default: the suffix of ``path``, so that
        libraries which dispatch on the extension, like ``np.savez``, keep it).

    Examples
    --------
    >>> with atomic_path("out/table.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = path.suffix if suffix is None else suffix
    tmp = _new_temp(path.parent, f".{path.name}.", ".tmp" + sfx)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory next to ``path``; swap it into place on success.

    Parameters
    ----------
    path : str or Path
        Final directory. An existing one is replaced only once the new one is
        complete; on failure the temporary directory is removed and ``path`` is
        left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path.parent, f".{path.name}.", ".tmp", directory=True)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous directory back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(path, option: str = "--out") -> Path | None:
    """Check, before any work, that results can be written into the folder ``path``.

    Parameters
    ----------
    path : str, Path or None
        The output folder (None: nothing to check).
    option : str
        The option that named it, for the message.

    Returns
    -------
    Path or None

    Raises
    ------
    PtyAnalysisError
        ``path`` is a file, or a file stands where one of its parent folders would be.
    """
    if path is None:
        return None
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise PtyAnalysisError(
                    f"{option} {path}: {p} is a file, not a folder; give a folder for the results (it is made "
                    "when missing), or move the file away")
            break
    return path


def write_text(path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path`` and return the path.

    Parameters
    ----------
    path : str or Path
        Destination (parents are created).
    text : str

    Returns
    -------
    Path
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON (NaN written as null) and return the path.

    Parameters
    ----------
    path : str or Path
        Destination (parents are created).
    obj : object
        JSON-serialisable after numpy scalars/arrays and paths are converted.
    indent : int

    Returns
    -------
    Path
    """
    return write_text(path, json.dumps(_json_safe(obj), indent=indent, allow_nan=False) + "\n")


def write_npz(path, arrays: dict) -> Path:
    """Atomically write ``arrays`` as an uncompressed NPZ at exactly ``path`` and return the path."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file handle: np.savez appends no extension
            np.savez(fh, **arrays)
    return Path(path)


def write_netcdf(path, ds) -> Path:
    """Atomically write an ``xarray.Dataset`` as netCDF-4 (h5netcdf) at ``path`` and return the path.

    The one netCDF writer of the package. A failure is an error naming the
    file (nothing half-written is left), never swallowed.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
    except (OSError, ValueError, TypeError) as exc:
        raise PtyAnalysisError(f"{path}: cannot write the netCDF results ({type(exc).__name__}: {exc}); "
                               "check the folder is writable and has space, then rerun") from exc
    return path


def _json_safe(obj):
    """Convert numpy scalars/arrays and non-finite floats into JSON-safe values."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj

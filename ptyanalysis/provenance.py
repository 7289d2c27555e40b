"""Software versions and runtime facts recorded with every result."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata as _md
import os
import platform
import sys

_PACKAGES = (
    "ptyanalysis", "numpy", "scipy", "scikit-image", "xarray", "keras", "tensorflow", "jax", "torch",
    "matplotlib", "papermill", "dask", "distributed",
)


def software_versions(packages=_PACKAGES) -> dict:
    """Return ``{package: version}`` for the installed packages (``None`` when absent).

    Also ``keras_backend``: the backend Keras runs on in this process (Keras's
    own when it is imported, else ``KERAS_BACKEND``; None when neither says).
    """
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "keras_backend": keras_backend_in_use()}
    for name in packages:
        if name == "ptyanalysis":  # the running code's version (installed metadata goes stale in an editable install)
            from . import __version__

            out[name] = __version__
            continue
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    return out


def keras_backend_in_use() -> str | None:
    """The Keras backend of this process without importing anything: Keras's, else ``KERAS_BACKEND``."""
    keras = sys.modules.get("keras")
    with contextlib.suppress(AttributeError):
        if keras is not None:
            return str(keras.backend.backend())
    return os.environ.get("KERAS_BACKEND") or None


def utc_now() -> str:
    """Current UTC time as ISO 8601 ending in ``Z`` (second resolution)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

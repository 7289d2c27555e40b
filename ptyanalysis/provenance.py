"""Software versions and runtime facts recorded with every result."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
import sys

_PACKAGES = (
    "ptyanalysis", "numpy", "scipy", "scikit-image", "xarray", "tensorflow", "keras",
    "matplotlib", "papermill", "dask", "distributed",
)


def software_versions(packages=_PACKAGES) -> dict:
    """Return ``{package: version}`` for the installed packages (``None`` when absent)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
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


def utc_now() -> str:
    """Current UTC time as ISO 8601 ending in ``Z`` (second resolution)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

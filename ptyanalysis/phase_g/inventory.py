"""The hub's artifact inventory."""

from __future__ import annotations

import os
from pathlib import Path

from .. import hub as _hub
from ..fileutil import write_text
from ..phase_g.schema import FILES, POST_INVENTORY_FILES

# --------------------------------------------------------------------------- inventory


def list_hub_files(hub, exclude=()) -> list[str]:
    """Every file of the hub as a sorted list of POSIX paths relative to the hub.

    In-flight temporary files of atomic writes (``.name.*.tmp*``) are left out,
    as is anything in ``exclude`` (relative POSIX paths).

    Parameters
    ----------
    hub : str or Path
    exclude : iterable of str
        Relative POSIX paths to leave out.

    Returns
    -------
    list of str
    """
    hub = Path(hub)
    out = []
    skip = set(exclude)
    for root, dirs, files in os.walk(hub):
        dirs[:] = [d for d in dirs if not (d.startswith(".") and ".tmp" in d)]
        for f in files:
            if f.startswith(".") and ".tmp" in f:
                continue
            rel = (Path(root) / f).relative_to(hub).as_posix()
            if rel not in skip:
                out.append(rel)
    return sorted(out)


def write_artifact_inventory(hub) -> Path:
    """Write ``analysis/artifact_inventory.txt``: every hub file, itself included, sorted.

    Call it last: a file written afterwards is missing from the inventory
    (``ptyanalysis verify`` reports it). ``analysis/verification_report.json``
    is never listed (the verifier writes it after checking).

    Parameters
    ----------
    hub : str or Path

    Returns
    -------
    Path
        The inventory (written atomically).
    """
    hub = Path(hub)
    inv = _hub.analysis_root(hub) / FILES["inventory"]
    rel_inv = inv.relative_to(hub).as_posix()
    files = set(list_hub_files(hub, exclude=POST_INVENTORY_FILES))
    files.add(rel_inv)
    return write_text(inv, "".join(f"{p}\n" for p in sorted(files)))



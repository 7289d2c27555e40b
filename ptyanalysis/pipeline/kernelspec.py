"""The package's Jupyter kernel spec: the kernel JupyterLab and plain papermill start, as quiet as the runner's.

The runner (:func:`ptyanalysis.pipeline.notebook.execute`, the grid's kernels) starts every kernel with
:data:`~ptyanalysis.pipeline.notebook.KERNEL_ENV` and
:data:`~ptyanalysis.pipeline.notebook.KERNEL_ARGUMENTS`. A kernel started by JupyterLab or by ``papermill``
on its own reads only its kernel spec (``kernel.json``); :func:`install_kernel_spec` writes those same
settings there, so no kernel shows TensorFlow's C++ start-up lines (``failed call to cuInit``, the oneDNN
notice) as red standard error in a cell. ``make venv`` runs ``python -m ptyanalysis.pipeline.kernelspec``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .notebook import KERNEL_ARGUMENTS, KERNEL_ENV

#: Name of the kernel spec the notebooks declare (their ``kernelspec.name``).
KERNEL_NAME = "python3"


def install_kernel_spec(*, prefix: str | None = None, name: str = KERNEL_NAME) -> Path:
    """Install (or replace) the kernel spec ``name`` under ``prefix`` with the runner's environment and arguments.

    Parameters
    ----------
    prefix : str, optional
        Installation prefix (default ``sys.prefix``: the virtual environment's
        ``share/jupyter/kernels``).
    name : str
        Kernel spec name.

    Returns
    -------
    Path
        The written ``kernel.json``.
    """
    from ipykernel.kernelspec import install

    folder = Path(install(kernel_name=name, prefix=prefix or sys.prefix, env=dict(KERNEL_ENV)))
    spec_file = folder / "kernel.json"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    spec["argv"] = [a for a in spec["argv"] if a not in KERNEL_ARGUMENTS] + list(KERNEL_ARGUMENTS)
    spec_file.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return spec_file


def main(argv=None) -> int:
    """``python -m ptyanalysis.pipeline.kernelspec [--prefix P]``: install the kernel spec, print its path."""
    parser = argparse.ArgumentParser(prog="python -m ptyanalysis.pipeline.kernelspec", description=main.__doc__)
    parser.add_argument("--prefix", default=None, help="installation prefix (default: this Python's sys.prefix)")
    args = parser.parse_args(argv)
    print(install_kernel_spec(prefix=args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())

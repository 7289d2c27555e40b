"""ptyanalysis: reproducible analysis of ML ptychography studies.

Layers (imports go one way, left to right and down; below the commands nothing imports ``synthetic`` but
:func:`~ptyanalysis.pipeline.notebook.ensure_synthetic_study`, and only when a notebook asks for a synthetic study)::

    conventions, errors, hub, io      one source of truth for conventions, hub paths, dataset files
    imaging    <- inference <- diagnosis <- pipeline / phase_g
    synthetic                          the synthetic study (simulation, networks, training, demo)
    commands                           one module per subcommand: its options and the call into the layers above
    cli                                every subcommand wired in one place

- :mod:`~ptyanalysis.imaging`: stitching, alignment, metrics (numpy / scikit-image, no TensorFlow)
- :mod:`~ptyanalysis.inference`: model loading, runtime controls, input sources, feeds, streaming, output statistics
- :mod:`~ptyanalysis.diagnosis`: output health, input sets, split comparison, bisection
- :mod:`~ptyanalysis.pipeline`: the comparison job, the grid, the one papermill runner
- :mod:`~ptyanalysis.phase_g`: collecting results, the study's artifacts, figures, the HTML report, verification
- :mod:`~ptyanalysis.synthetic`: simulation, networks, training, rPIE / pty-chi, the demo
- :mod:`~ptyanalysis.commands`: the command line, one module per subcommand (:mod:`~ptyanalysis.cli` wires them)

Subpackages are loaded lazily (``lazy_loader``, as in scikit-image), so
``import ptyanalysis`` does not import TensorFlow.
"""

import lazy_loader as _lazy

#: The package version (the only place it is written; ``pyproject.toml`` reads it).
__version__ = "0.2.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["conventions", "errors", "hub", "io", "fileutil", "provenance", "quiet", "training_history", "cli",
                "imaging", "inference", "diagnosis", "pipeline", "phase_g", "synthetic", "commands"],
)
__all__ = [*__all__, "__version__"]

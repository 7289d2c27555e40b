"""ptyanalysis: reproducible analysis of ML ptychography studies.

Modules (each one concept):

- :mod:`~ptyanalysis.conventions`: coordinates, units, offset signs, arm names (the one source of truth)
- :mod:`~ptyanalysis.hub`: the study hub's directory layout
- :mod:`~ptyanalysis.io`: dataset NPZ read/write/validation, ``xarray`` views
- :mod:`~ptyanalysis.synth`: synthetic study generator
- :mod:`~ptyanalysis.models`, :mod:`~ptyanalysis.arms`: the three arms (networks, training, iterative reconstruction)
- :mod:`~ptyanalysis.iterative`, :mod:`~ptyanalysis.ptychi_arm`: reference rPIE, and pty-chi when installed
- :mod:`~ptyanalysis.inference`, :mod:`~ptyanalysis.stitching`, :mod:`~ptyanalysis.align`, :mod:`~ptyanalysis.metrics`: the core
- :mod:`~ptyanalysis.compare`: a comparison job (one dose/view/split)
- :mod:`~ptyanalysis.health`, :mod:`~ptyanalysis.splits`, :mod:`~ptyanalysis.bisect`: diagnosis engines
- :mod:`~ptyanalysis.grid`, :mod:`~ptyanalysis.report`, :mod:`~ptyanalysis.verify`: study grid, Phase G, verification
- :mod:`~ptyanalysis.notebook`, :mod:`~ptyanalysis.demo`, :mod:`~ptyanalysis.bench`: strict papermill
  parameters, the end-to-end demo, benchmarks

Submodules are imported on demand (``import ptyanalysis.io``) so that importing
the package does not import TensorFlow.
"""

__version__ = "0.1.0"

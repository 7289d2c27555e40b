"""Quiet processes: TensorFlow's C++ start-up lines filtered out of standard error.

TensorFlow writes a few lines from C++ before its logging is initialised, so
``TF_CPP_MIN_LOG_LEVEL`` does not reach them. The command line
(:mod:`ptyanalysis.cli`) and the notebook kernels the runner starts
(:mod:`ptyanalysis.pipeline.notebook`) both filter them with this module.
Nothing here imports TensorFlow until a caller does: a machine without it
never pays for it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile

#: Text of TensorFlow's C++ start-up lines, printed to file descriptor 2 before its logging is initialised
#: (``TF_CPP_MIN_LOG_LEVEL`` does not reach them): absl's pre-init warning, the oneDNN notice, the CUDA stub.
TF_STARTUP_LINES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
)



@contextlib.contextmanager
def filtered_stderr(drop=TF_STARTUP_LINES, fd: int | None = None):
    """Run a block with file descriptor 2 captured; re-emit every line except those containing ``drop`` texts.

    Works at the file-descriptor level, so it also catches what C++ libraries
    write. Lines not in ``drop`` are written back unchanged, in order, when the
    block ends (also when it raises).

    Parameters
    ----------
    drop : sequence of str
    fd : int, optional
        The descriptor to filter (default ``sys.stderr``'s). In a Jupyter
        kernel pass 2: ipykernel's ``sys.stderr.fileno()`` is a copy of the
        original descriptor while C++ code writes to 2, which ipykernel
        forwards into the notebook.
    """
    try:
        sys.stderr.flush()
        if fd is None:
            fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner): nothing to filter
        yield
        return
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True)
                    if not any(d.encode() in ln for d in drop)]
            if kept:
                os.write(fd, b"".join(kept))


def import_tensorflow_quietly():
    """Import TensorFlow without its C++ start-up lines; return the module.

    ``TF_CPP_MIN_LOG_LEVEL`` (set here when unset) silences TensorFlow's own
    logging, but a few lines are written by C++ before that logging starts
    (:data:`TF_STARTUP_LINES`): they are filtered out of file descriptor 2
    during the import; anything else written then is kept. Call it in any
    process (a command, a notebook kernel) before the first TensorFlow import.

    Returns
    -------
    module
        ``tensorflow``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with filtered_stderr():
        import tensorflow

    return tensorflow


def find_spec(name: str):
    """``importlib.util.find_spec`` for a top-level module that never imports it, also while the quiet hook waits.

    :class:`_QuietImport` imports its module when asked for its spec, so a plain ``find_spec("tensorflow")``
    (asking whether TensorFlow is installed) would import it; this asks every other finder.

    Parameters
    ----------
    name : str
        Top-level module name.

    Returns
    -------
    importlib.machinery.ModuleSpec or None
    """
    for finder in sys.meta_path:
        if isinstance(finder, _QuietImport) or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(name, None)
        if spec is not None:
            return spec
    return None


class _QuietImport:
    """A ``sys.meta_path`` finder that imports one module with its start-up lines filtered (then leaves)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        """Import ``self.name`` under :func:`ptyanalysis.quiet.filtered_stderr` on its first import."""
        if fullname != self.name:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        with filtered_stderr(fd=2):  # the descriptor C++ writes to (ipykernel forwards it to the notebook)
            module = importlib.import_module(fullname)
        return importlib.util.spec_from_loader(fullname, _Loaded(module))


class _Loaded:
    """Loader handing back a module that is already imported."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        """The module, as imported."""
        return self.module

    def exec_module(self, module):
        """Nothing left to run."""


def quiet_tensorflow_import() -> None:
    """Make this process's first ``import tensorflow`` drop TensorFlow's C++ start-up lines.

    ``TF_CPP_MIN_LOG_LEVEL`` does not reach the lines TensorFlow's C++ code
    writes before its logging starts (:data:`ptyanalysis.quiet.TF_STARTUP_LINES`);
    in a kernel ipykernel would copy them into the notebook's outputs. Every
    kernel the notebook runner starts calls this
    (:data:`ptyanalysis.pipeline.notebook.KERNEL_ARGUMENTS`), and so does
    :func:`ptyanalysis.inference.backends.select_keras_backend` when it picks
    TensorFlow; it costs nothing until TensorFlow is imported, does nothing
    when it already is, and removes itself after that first import. It is
    this package's one import hook (``sys.meta_path``).
    """
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.meta_path.insert(0, _QuietImport("tensorflow"))

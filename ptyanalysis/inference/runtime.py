"""Runtime controls of an inference run: device, batch size, jit, eager/graph, dtype, determinism.

The controls are backend-neutral; how each is carried out on TensorFlow, JAX
or PyTorch is :mod:`ptyanalysis.inference.backends`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import PtyAnalysisError

#: The one logger of the inference subpackage.
log = logging.getLogger("ptyanalysis.inference")


# --------------------------------------------------------------------------------------
# Runtime configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeConfig:
    """How the model is executed.

    Attributes
    ----------
    batch_size : int
        Samples per model call (halved automatically on out-of-memory, and
        when the model's outputs do not have one row per sample; see
        ``adapt_batch``).
    jit_compile : bool
        Compile with XLA: ``tf.function(jit_compile=True)`` under TensorFlow;
        under JAX every graph-mode call is XLA-compiled (``jax.jit``) anyway;
        under PyTorch models run eagerly and this is recorded as not applied.
    run_eagerly : bool
        Call ``model(x, training=False)`` eagerly instead of through a
        compiled function (``tf.function`` / ``jax.jit``). Cannot be combined
        with ``jit_compile``.
    dtype : str or None
        Cast floating inputs to this dtype before the call (None keeps them).
    device : str or None
        ``"cpu"``, ``"gpu"`` or ``"gpu:<index>"`` (also ``"cuda:0"``,
        TensorFlow's ``"/GPU:0"``); None lets the backend choose (a GPU when
        it sees one). An unavailable device is an error, not a silent
        fallback. A Keras model under PyTorch runs where its weights are.
    deterministic : bool
        Deterministic kernels for the run, restored afterwards (TensorFlow's
        op determinism, ``torch.use_deterministic_algorithms``; JAX is
        deterministic on the CPU, and the record says how to ask on a GPU).
    adapt_batch : bool
        When a batch's outputs do not have one row per sample (a model that
        merges a batch into fewer outputs, such as a PtychoPINN bundle's
        ``diffraction_to_obj`` given >= 64 patches per call), halve the batch
        until they do and keep that batch size (default). False raises a
        :class:`PtyAnalysisError` instead (an experiment that must run at
        exactly the batch size it asks for).
    """

    batch_size: int = 256
    jit_compile: bool = False
    run_eagerly: bool = False
    dtype: str | None = None
    device: str | None = None
    deterministic: bool = False
    adapt_batch: bool = True

    def __post_init__(self):
        if self.device is not None:
            from .backends import parse_device

            parse_device(self.device)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise PtyAnalysisError(f"RuntimeConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.jit_compile and self.run_eagerly:
            raise PtyAnalysisError(
                "RuntimeConfig: jit_compile=True needs graph mode; set run_eagerly=False "
                "(eager execution is never XLA-compiled)"
            )
        if self.dtype is not None:
            try:
                dt = np.dtype(self.dtype)
            except TypeError as exc:
                raise PtyAnalysisError(f"RuntimeConfig.dtype {self.dtype!r} is not a dtype") from exc
            if dt.kind != "f":
                raise PtyAnalysisError(
                    f"RuntimeConfig.dtype must be a floating dtype (float16/float32/float64), got {self.dtype!r}"
                )

    def to_dict(self) -> dict:
        """Return the configuration as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


#: Default samples per model call (:attr:`RuntimeConfig.batch_size`).
DEFAULT_BATCH_SIZE = RuntimeConfig.__dataclass_fields__["batch_size"].default

#: Input values per model call an automatic batch size allows on a GPU (:func:`auto_batch_size`): the
#: default batch of gridsize-2 groups of 64 x 64 patterns, 256 x 4 x 64 x 64. A network's activations grow
#: with the pixels it is fed, so at the study's 128 x 128 patterns the same budget is 64 groups per call.
BATCH_VALUES = DEFAULT_BATCH_SIZE * 4 * 64 * 64
#: The same on a CPU: 8 gridsize-2 groups of 128 x 128 patterns (32 at 64 x 64). A CPU gains nothing from
#: larger calls, which only hold more activations: the study-size comparison job (python -m ptyanalysis.bench
#: --only models; 2 cores) ran as fast at 8 groups per call as at 64, at 1.7 instead of 2.7 GiB peak.
CPU_BATCH_VALUES = 8 * 4 * 128 * 128


def batch_values(on_gpu: bool) -> int:
    """The input values per call :func:`auto_batch_size` allows on a GPU or a CPU."""
    return BATCH_VALUES if on_gpu else CPU_BATCH_VALUES


def auto_batch_size(values_per_sample: int, *, budget: int = BATCH_VALUES, cap: int = DEFAULT_BATCH_SIZE) -> int:
    """The batch size that keeps a model call's inputs (and so its activations) within a budget.

    Parameters
    ----------
    values_per_sample : int
        Input values of one sample (e.g. gridsize**2 x N x N for a PtychoPINN group).
    budget : int
        Input values per call (default :data:`BATCH_VALUES`).
    cap : int
        Largest batch returned (default :data:`DEFAULT_BATCH_SIZE`).

    Returns
    -------
    int
        The largest power of two <= ``cap`` whose batch holds at most ``budget`` values; at least 1.

    Examples
    --------
    >>> auto_batch_size(4 * 64 * 64), auto_batch_size(4 * 128 * 128), auto_batch_size(128 * 128)
    (256, 64, 256)
    >>> auto_batch_size(4 * 128 * 128, budget=CPU_BATCH_VALUES)
    8
    """
    values_per_sample = max(int(values_per_sample), 1)
    bs = 1
    while bs * 2 <= cap and bs * 2 * values_per_sample <= budget:
        bs *= 2
    return bs

"""Options shared by several commands: ``--backend``, ``--batch-size``, ``--feed``, and the batch size they give."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import PtyAnalysisError
from ..inference.backends import ENV as BACKEND_ENV
from ..inference.feeds import FEEDS
from ..inference.runtime import BATCH_VALUES, CPU_BATCH_VALUES, DEFAULT_BATCH_SIZE, RuntimeConfig

_BATCH_SIZE_HELP = (
    "samples per model call (default {default}). Halved automatically when a batch runs out of "
    "memory, or when the model's outputs do not have one row per sample (a PtychoPINN bundle "
    "merges a call of >= 64 patches, batch x gridsize^2, into one output); the batch size used "
    "is recorded"
)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` to a command that runs Keras models.

    The choice is checked and applied by
    :func:`~ptyanalysis.inference.backends.select_keras_backend` after the arguments parse.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument(
        "--backend", default=None, metavar="{auto,tensorflow,jax,torch}",
        help=f"Keras backend that runs the models (default: ${BACKEND_ENV} when set, else automatic: JAX, then "
             "PyTorch, then TensorFlow where a GPU may be present; TensorFlow first otherwise). Recorded in every "
             "result")


def add_batch_size_argument(parser: argparse.ArgumentParser, default: int | None = DEFAULT_BATCH_SIZE) -> None:
    """Add the ``--batch-size`` option of every command that runs a model.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    default : int or None
        None: the command sizes the batch by memory
        (:func:`~ptyanalysis.inference.runtime.auto_batch_size`) unless one is given.
    """
    shown = default if default is not None else (
        f"automatic: at most {DEFAULT_BATCH_SIZE} samples and {BATCH_VALUES / 2**20:.0f} Mi input values "
        f"per call on a GPU ({CPU_BATCH_VALUES / 2**20:g} Mi on a CPU), e.g. 64 (8) gridsize-2 groups of "
        "128 x 128 patterns")
    parser.add_argument("--batch-size", type=int, default=default, help=_BATCH_SIZE_HELP.format(default=shown))


def runtime_from_args(args: argparse.Namespace, **overrides) -> RuntimeConfig:
    """The :class:`~ptyanalysis.inference.runtime.RuntimeConfig` of a command's parsed ``--batch-size``.

    Parameters
    ----------
    args : argparse.Namespace
    **overrides
        Other :class:`~ptyanalysis.inference.runtime.RuntimeConfig` fields.

    Returns
    -------
    RuntimeConfig

    Raises
    ------
    PtyAnalysisError
        A batch size that is not a positive integer.
    """
    bs = getattr(args, "batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise PtyAnalysisError(f"--batch-size must be a positive integer, got {bs!r}")
    return RuntimeConfig(batch_size=int(bs), **overrides)


def add_feed_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--feed``: how ``--study-inputs`` datasets are fed (one definition for ``bisect`` and ``compare-splits``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--feed", choices=FEEDS, default="study",
                        help="with --study-inputs: 'study' (default) as the study's comparison script fed them, "
                             "'trained' as the model was trained, 'torch_cli' as PtychoPINN's PyTorch inference CLI "
                             "feeds a PyTorch bundle (each pattern alone, copied into every channel); see "
                             "ptyanalysis.inference.feeds")


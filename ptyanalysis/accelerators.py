"""Whether a GPU may exist here, decided without importing any array or deep-learning library.

One rule for every place that asks (the Keras backend choice, the stitcher's
``backend="auto"``, the GPU check): a GPU may exist when an NVIDIA or AMD
device node, or ``nvidia-smi``, is present and ``CUDA_VISIBLE_DEVICES`` does
not hide every device. Whether a library can really use it is asked of the
library afterwards, only where this says it may.
"""

from __future__ import annotations

import os
import shutil


def gpu_hidden() -> bool:
    """True when ``CUDA_VISIBLE_DEVICES`` hides every GPU (set to ``""`` or ``"-1"``)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")


def gpu_may_exist() -> bool:
    """True when a GPU device node or ``nvidia-smi`` is present and not hidden.

    Returns
    -------
    bool
        False is certain (no library could use a GPU); True means "ask the library".
    """
    if gpu_hidden():
        return False
    return (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd")
            or shutil.which("nvidia-smi") is not None)

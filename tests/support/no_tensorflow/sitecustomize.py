"""Make TensorFlow unimportable in this process (put this folder first on PYTHONPATH).

The test pass that runs ptyanalysis as on a GPU machine without TensorFlow uses it. Python's
path finder is replaced by one that does not see TensorFlow's packages, so everything behaves
as where TensorFlow is not installed: ``import tensorflow`` (or ``tf_keras``, which needs it)
raises ``ModuleNotFoundError``, ``importlib.util.find_spec`` returns None and nothing named
``tensorflow`` enters ``sys.modules`` (libraries that probe for it, such as Keras and PyTorch's
dynamo, see it absent). Processes started from this one (kernels, workers) inherit it.
"""

import sys
from importlib.machinery import PathFinder

BLOCKED = ("tensorflow", "tf_keras", "tensorboard")


class _PathFinderWithoutTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            return None
        return PathFinder.find_spec(fullname, path, target)


sys.meta_path[:] = [_PathFinderWithoutTensorFlow if f is PathFinder else f for f in sys.meta_path]

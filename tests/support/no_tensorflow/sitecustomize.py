"""Make TensorFlow unimportable in this process (put this folder first on PYTHONPATH).

The test tier that runs ptyanalysis as on a GPU machine without TensorFlow uses it: every
``import tensorflow`` (or ``tf_keras``, which needs it) raises ``ModuleNotFoundError``, as where
TensorFlow is not installed, and ``importlib.util.find_spec`` finds nothing.
"""

import sys

BLOCKED = ("tensorflow", "tf_keras", "tensorboard")


class _Blocker:
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked for this test)", name=fullname)
        return None


sys.meta_path.insert(0, _Blocker())

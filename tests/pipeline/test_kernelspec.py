"""The installed kernel spec carries the runner's quiet settings (issue 19: no TensorFlow lines in JupyterLab)."""

import json
import subprocess
import sys

from ptyanalysis.pipeline.kernelspec import KERNEL_NAME, install_kernel_spec
from ptyanalysis.pipeline.notebook import KERNEL_ARGUMENTS, KERNEL_ENV


def test_kernel_spec_has_the_runner_environment_and_arguments(tmp_path):
    path = install_kernel_spec(prefix=str(tmp_path))
    assert path == tmp_path / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    spec = json.loads(path.read_text())
    assert spec["env"] == KERNEL_ENV
    assert spec["argv"][-len(KERNEL_ARGUMENTS):] == list(KERNEL_ARGUMENTS)
    # installing twice does not repeat the arguments
    spec2 = json.loads(install_kernel_spec(prefix=str(tmp_path)).read_text())
    assert spec2["argv"] == spec["argv"]


def test_the_spec_arguments_start_a_python_that_imports_quietly(tmp_path):
    # the exec line the spec gives ipykernel, run as plain Python: it installs the quiet import hook
    line = next(a for a in KERNEL_ARGUMENTS if "exec_lines" in a).split("=", 1)[1]
    code = f"import sys; {line}; print(any(type(f).__name__ == '_QuietImport' for f in sys.meta_path))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"

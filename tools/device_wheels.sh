#!/usr/bin/env bash
# Fill .whl/ with what the GPU check and the one-GPU study need on the lent H200 machine (Python 3.12,
# PyTorch, JAX, CuPy, numpy, scipy, scikit-image, xarray, h5py, numba, ... already there; no TensorFlow,
# no Keras, no Jupyter stack): this package's wheel, and every wheel of its runtime closure (with the
# jax extra, never tensorflow) whose project the machine does not already have. Run from the repository root.
# The device README: carry .whl and install with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-python3}
ALL=$(mktemp -d)
rm -rf .whl && mkdir -p .whl
$PY -m pip wheel --quiet --no-deps -w .whl .
# The projects the H200 image already holds (device KINDS.md, read 2026-11-17), normalised names.
HAVE="absl-py accelerate aiofiles anyio attrs certifi charset-normalizer cloudpickle contourpy cycler
filelock fonttools fsspec h5py idna imageio jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jinja2 joblib
kiwisolver lazy-loader llvmlite markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes networkx
numba numpy packaging pandas pillow pip platformdirs protobuf psutil pygments pyparsing python-dateutil
pyyaml requests rich scikit-image scipy setuptools six sortedcontainers sympy tifffile toolz torch
tqdm triton typing-extensions tzdata urllib3 wheel xarray zipp cupy-cuda13x opt-einsum msgpack
click tabulate pytest pluggy iniconfig"
REQS=$($PY - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(p["dependencies"]))
PY
)
$PY -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$ALL" $REQS
# pty-chi for the iterative arm on the GPU (its own needs there: pydantic; torch, torchvision, numpy, scipy,
# scikit-image, h5py, pandas, tqdm, matplotlib and scikit-learn are on the machine).
$PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$ALL" ptychi==2.2.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5
for w in "$ALL"/*.whl; do
    name=$(basename "$w" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
    if ! grep -qw -- "$name" <<<"$HAVE"; then cp "$w" .whl/; fi
done
rm -rf "$ALL"
du -sh .whl; ls .whl | wc -l

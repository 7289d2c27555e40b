#!/usr/bin/env bash
# The one prepared GPU run (issue: run where the users are). On the lent H200 (Python 3.12, PyTorch, JAX,
# CuPy, no TensorFlow), from the repository root, with .whl/ filled here by tools/device_wheels.sh and carried:
#   run(command="bash tools/device_check.sh", carry=[".whl"], timeout_s=600)
# Each step has its own time limit so one that hangs cannot take the others' time; every result lands in $OUT.
#   1. the backend tests on the GPU (Keras-torch with CUDA graphs, Keras-JAX), TensorFlow absent;
#   2. python -m ptyanalysis.gpu_check --keras-backend both: stitching against the copy and host-to-device
#      rates, the product's runner on the GPU and on the CPU under JAX and under PyTorch (their ratio),
#      inference + stitching;
#   3. python -m ptyanalysis.gpu_study: simulate --size study, train at the study budget, grid, phase-g, one dose.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site
nvidia-smi -L | tee "$OUT/machine.txt"
python3 -c "import sys, torch, jax, keras, ptyanalysis; print(sys.version.split()[0], 'torch', torch.__version__,
  'jax', jax.__version__, 'keras', keras.__version__, 'ptyanalysis', ptyanalysis.__version__,
  'tensorflow importable:', __import__('importlib').util.find_spec('tensorflow') is not None)" | tee -a "$OUT/machine.txt"

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc, $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
    tail -25 "$OUT/$name.log"
}

step tests_torch 90 env KERAS_BACKEND=torch python3 -m pytest -q -p no:cacheprovider tests/test_backends.py
step gpu_check 220 python3 -m ptyanalysis.gpu_check --keras-backend both --json "$OUT/gpu_check.json"
step study_jax 250 env KERAS_BACKEND=jax python3 -m ptyanalysis.gpu_study /tmp/study --doses 1000 \
    --timeout 240 --json "$OUT/study_jax.json"
cat "$OUT/steps.txt"

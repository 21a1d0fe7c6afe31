#!/usr/bin/env bash
# Everything a session with a GPU has to run, as one command for the device tool (its
# device time is short: 15 minutes, the machine's start included):
#
#     run(command="bash benchmarks/gpu_check.sh", timeout_s=480)
#
# 1. the cuda test suite on the real GPU (tests/cuda with GRAPHCNN_CUDA_REAL=1),
# 2. benchmarks/resnet18_gpu.py: ResNet-18's numbers against PyTorch fp32, then inference at batch
#    1 and 64 and a training step at batch 64 against PyTorch CUDA (TF32 on and off).
# It uses the device image's own python3 (numba, numba-cuda, numpy, networkx, torch,
# pytest, hypothesis are there) with this checkout on PYTHONPATH, and one carried wheel:
# that image's NumPy 2.5 breaks its numba-cuda, so fetch NumPy 2.4 first, here,
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 -d .whl numpy==2.4.6
# (.whl ignored in .git/info/exclude) and name it in the call: carry=[".whl"].
# The logs land in $OUT (the device tool brings them back); the figures go to
# benchmarks/RESULTS.md by hand, with the GPU named.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/graphcnn-gpu-check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD" NUMBA_CACHE_DIR=/tmp/graphcnn-numba PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
# The device image's numba-cuda (numba 0.68.0) fails on its numpy 2.5 (np.row_stack is
# gone): wheels carried in .whl (a NumPy that numba supports) go first on the path.
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    2>&1 | tee "$OUT/gpu.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/gpu.txt"
import numba, numpy, sys
from numba import cuda
print("python", sys.version.split()[0], "numba", numba.__version__, "numpy", numpy.__version__,
      "numba.cuda:", getattr(cuda, "implementation", "Built-in"), "available:",
      cuda.is_available())
import numpy as np
@cuda.jit
def double(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] *= 2
x = cuda.to_device(np.arange(4, dtype=np.float32))
double[1, 32](x)
print("a kernel ran:", x.copy_to_host())
EOF
[ "${PIPESTATUS[0]}" = 0 ] || { echo "numba.cuda cannot run a kernel here: stopping"; exit 1; }

# The device has 16 cores: the kernels compile in parallel workers where pytest-xdist is
# installed. SIGINT at the limit, so pytest still prints which tests failed.
workers=""
python3 -c "import xdist" 2>/dev/null && workers="-n 12"
start=$(date +%s)
[ "${SKIP_TESTS:-0}" = 1 ] || GRAPHCNN_CUDA_REAL=1 timeout -s INT "${TESTS_LIMIT_S:-220}" python3 -m pytest -q $workers \
    -p no:cacheprovider -rfE tests/cuda --durations=10 2>&1 | tee "$OUT/tests.log"
echo "tests: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/tests.log"

start=$(date +%s)
timeout -s INT "${BENCH_LIMIT_S:-200}" python3 benchmarks/resnet18_gpu.py --repeats 20 --warmup 3 --profile 2>&1 | tee "$OUT/bench.log"
echo "bench: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/bench.log"

#!/usr/bin/env bash
# Everything a session with a GPU has to run, as one command for the device tool (its
# device time is short: 15 minutes, the machine's start included):
#
#     run(command="bash benchmarks/gpu_check.sh", timeout_s=590)
#
# 1. the cuda test suite on the real GPU (tests/cuda with GRAPHCNN_CUDA_REAL=1),
# 2. benchmarks/cuda.py: ResNet-18's numbers against PyTorch fp32, then inference at batch
#    1 and 64 and a training step at batch 64 against PyTorch CUDA (TF32 on and off).
# It uses the device image's own python3 (numba, numba-cuda, numpy, networkx, torch,
# pytest, hypothesis are there) with this checkout on PYTHONPATH: nothing is installed.
# The logs land in $OUT (the device tool brings them back); the figures go to
# benchmarks/RESULTS.md by hand, with the GPU named.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/graphcnn-gpu-check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD" NUMBA_CACHE_DIR=/tmp/graphcnn-numba PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    2>&1 | tee "$OUT/gpu.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/gpu.txt"
import numba, numpy, sys
from numba import cuda
print("python", sys.version.split()[0], "numba", numba.__version__, "numpy", numpy.__version__,
      "numba.cuda:", getattr(cuda, "implementation", "Built-in"), "available:",
      cuda.is_available())
EOF

start=$(date +%s)
GRAPHCNN_CUDA_REAL=1 timeout 330 python3 -m pytest -q -x -p no:cacheprovider tests/cuda \
    --durations=10 2>&1 | tee "$OUT/tests.log"
echo "tests: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/tests.log"

start=$(date +%s)
timeout 200 python3 benchmarks/cuda.py --repeats 20 --warmup 3 2>&1 | tee "$OUT/bench.log"
echo "bench: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/bench.log"

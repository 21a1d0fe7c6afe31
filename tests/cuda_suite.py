"""How the main suite runs tests/cuda on Numba's simulator (tests/conftest.py starts it in
the background, tests/test_cuda_sim.py waits for it)."""
from __future__ import annotations

import sys

CUDA_SUITE_TEST = "test_cuda_suite_passes_on_the_simulator"
CUDA_SUITE_TIMEOUT_S = 1500


def cuda_suite_command() -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda"]

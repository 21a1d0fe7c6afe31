"""The cuda backend in the main suite (no GPU here): tests/cuda runs in its own pytest
process with NUMBA_ENABLE_CUDASIM=1 (the variable must be set before numba.cuda is first
imported); plus the checks that need no simulator: every op has a cuda kernel, importing
graphcnn does not import numba.cuda, and backend='cuda' without a GPU says so."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cuda_suite import CUDA_SUITE_TIMEOUT_S, cuda_suite_command

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"input", "param", "constant"}


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)


def test_importing_graphcnn_does_not_import_numba_cuda():
    result = _python("""
        import sys, graphcnn, graphcnn.backends.cuda
        import graphcnn.runtime.executable
        assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'
        print('ok')
    """)
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr


def test_backend_cuda_without_a_gpu_is_a_clear_error():
    result = _python("""
        import numpy as np, graphcnn as gc
        from graphcnn.backends.cuda.device import CudaUnavailableError
        from numba import cuda
        if cuda.is_available():
            print('gpu present'); raise SystemExit(0)
        try:
            gc.compile(gc.models.lenet5(), batch_size=1, backend='cuda')
        except CudaUnavailableError as err:
            print('error:', err)
    """)
    if "gpu present" in result.stdout:
        pytest.skip("a GPU is present: there is no error to see")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error:" in result.stdout, result.stdout + result.stderr
    message = result.stdout
    assert "GPU" in message and "NUMBA_ENABLE_CUDASIM=1" in message and "backend='cpu'" in message


def test_every_runnable_op_has_a_cuda_kernel():
    result = _python("""
        from graphcnn.backends.cuda.registry import all_kernels
        from graphcnn.ops.registry import all_ops
        kernels = all_kernels()
        print('missing', sorted(set(all_ops()) - {'input', 'param', 'constant'} - set(kernels)))
        print('extra', sorted(set(kernels) - set(all_ops())))
    """, NUMBA_ENABLE_CUDASIM="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "missing []" in result.stdout and "extra []" in result.stdout, result.stdout


def test_cuda_suite_passes_on_the_simulator(request):
    """tests/cuda on the simulator: started in the background when the run was collected
    (tests/conftest.py), waited for here; run in place when this test runs alone."""
    run = getattr(request.config, "cuda_suite_run", None)
    if run is None:
        start = time.perf_counter()
        result = subprocess.run(cuda_suite_command(), cwd=ROOT,
                                env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
                                capture_output=True, text=True, timeout=CUDA_SUITE_TIMEOUT_S)
        returncode, output = result.returncode, result.stdout + result.stderr
    else:
        process, log, start = run
        returncode = process.wait(timeout=CUDA_SUITE_TIMEOUT_S)
        log.seek(0)
        output = log.read()
    seconds = time.perf_counter() - start
    if returncode != 0:
        print(output)
    assert returncode == 0, output[-6000:]
    assert " passed" in output and "skipped" not in output.splitlines()[-1], output[-2000:]
    print(f"tests/cuda on the simulator: {seconds:.0f} s; {output.splitlines()[-1]}")
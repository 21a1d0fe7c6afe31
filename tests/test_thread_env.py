"""Importing graphcnn sets how long idle OpenMP threads spin: a while (GOMP_SPINCOUNT=100000)
when they are the only thread pool (GEMMs on Numba's threads, backends/cpu/blas.py), not at
all when OpenBLAS's own threads run the GEMMs beside them; a user's own setting wins."""
import os
import subprocess
import sys

SHOW = "import graphcnn, os; print(os.environ['GOMP_SPINCOUNT'])"


def _run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def _unset() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("GOMP_SPINCOUNT", "GRAPHCNN_NUMPY_MATMUL")}


def test_default_when_unset():
    from graphcnn.backends.cpu.blas import AVAILABLE
    assert _run(_unset()) == ("100000" if AVAILABLE else "0")


def test_no_spinning_when_openblas_runs_its_own_threads():
    assert _run(dict(_unset(), GRAPHCNN_NUMPY_MATMUL="1")) == "0"


def test_the_users_setting_wins():
    assert _run(dict(os.environ, GOMP_SPINCOUNT="1000")) == "1000"

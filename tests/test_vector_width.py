"""The kernels are built for the full width of the CPU's vector registers
(backends/cpu/vector_width.py)."""
import os
import subprocess
import sys

import llvmlite.binding as llvm
import numba
import numpy as np

from graphcnn.backends.cpu.autotune import machine_key
from graphcnn.backends.cpu.vector_width import vector_bits, wide_features

HOST = llvm.get_host_cpu_features().flatten()
HAS_AVX512 = "+avx512f" in HOST.split(",")


def test_wide_features_lift_the_preference_only_with_avx512():
    assert wide_features("+avx2,+fma,-avx512f") is None
    assert wide_features("+avx2,+avx512f,+fma") == "+avx2,+avx512f,+fma,-prefer-256-bit"


def test_machine_key_names_the_vector_width():
    assert machine_key().endswith(f"vectors={vector_bits()}")


def _zmm_and_bits_in_fresh_process(env: dict[str, str]) -> tuple[int, int]:
    code = ("import graphcnn, numba, numpy as np\n"
            "@numba.njit(fastmath=True)\n"
            "def axpy(a, x, y):\n"
            "    for i in range(x.size):\n"
            "        y[i] += a * x[i]\n"
            "x = np.ones(64, np.float32)\n"
            "axpy(np.float32(2), x, x.copy())\n"
            "from graphcnn.backends.cpu.vector_width import vector_bits\n"
            "print(list(axpy.inspect_asm().values())[0].count('zmm'), vector_bits())\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    zmm, bits = done.stdout.strip().splitlines()[-1].split()
    return int(zmm), int(bits)


def test_kernels_use_zmm_registers_exactly_on_avx512_hosts():
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "GRAPHCNN_VECTOR_WIDTH")}
    zmm, bits = _zmm_and_bits_in_fresh_process(env)
    assert (zmm > 0) == HAS_AVX512
    assert bits == (512 if HAS_AVX512 else 256)
    # the user's choice wins: GRAPHCNN_VECTOR_WIDTH=256 keeps LLVM's own preference
    _, bits = _zmm_and_bits_in_fresh_process(dict(env, GRAPHCNN_VECTOR_WIDTH="256"))
    assert bits == 256


def test_numba_compiles_and_runs_with_the_wide_features():
    @numba.njit
    def total(x):
        s = np.float32(0)
        for v in x:
            s += v
        return s
    assert total(np.arange(100, dtype=np.float32)) == 4950


def test_the_width_is_set_whether_numba_loads_before_graphcnn_or_after():
    """import graphcnn loads no llvmlite: the features are set as Numba loads (after
    graphcnn), or at once (Numba loaded first); either way before anything compiles."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "GRAPHCNN_VECTOR_WIDTH")}
    want = 512 if HAS_AVX512 else 256
    for first, then in (("graphcnn", "numba"), ("numba", "graphcnn")):
        code = (f"import sys, {first}\n"
                f"light = 'llvmlite' not in sys.modules\n"
                f"import {then}\n"
                "from graphcnn.backends.cpu.vector_width import vector_bits\n"
                "print(light, vector_bits())\n")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
        light, bits = done.stdout.split()
        assert int(bits) == want, (first, done.stdout)
        assert light == ("True" if first == "graphcnn" else "False")

"""Every cuda kernel compiles to PTX for sm_90 (H100) with numba.cuda.compile_ptx, without a
GPU: the kernels' recorded example argument types (graphcnn.backends.cuda.registry's
PTX_EXAMPLES) are compiled with cc=(9, 0), and assembled with ptxas where it is installed.
Needs libNVVM (e.g. /usr/local/cuda/nvvm); skipped, saying why, where it is missing or
where the simulator is on."""
from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator is on: it has no compile_ptx", allow_module_level=True)
try:
    from numba import cuda  # noqa: E402
except ImportError as err:  # pragma: no cover - a Numba without the built-in target
    pytest.skip(f"numba.cuda cannot be imported: {err}", allow_module_level=True)


def _ptx_or_reason() -> str | None:
    from numba import float32

    def probe(a):
        a[0] = 1

    try:
        cuda.compile_ptx(probe, (float32[::1],), cc=(9, 0))
    except Exception as err:  # NvvmSupportError, missing libNVVM / NVRTC, ...
        return f"compile_ptx does not work here ({type(err).__name__}: {str(err)[:200]})"
    return None


REASON = _ptx_or_reason()
if REASON:
    pytest.skip(REASON, allow_module_level=True)

import graphcnn.backends.cuda.kernels  # noqa: E402,F401  (registers every example)
import graphcnn.backends.cuda.optim  # noqa: E402,F401
from graphcnn.backends.cuda import ptx_report  # noqa: E402
from graphcnn.backends.cuda.registry import PTX_EXAMPLES  # noqa: E402


@pytest.fixture(autouse=True)
def _no_driver_device(monkeypatch):
    """Device functions are compiled for the current device's compute capability; without
    a driver there is none, so stand in an sm_90 device (the kernels target sm_90)."""
    import numba.cuda.dispatcher as dispatcher
    monkeypatch.setattr(dispatcher, "get_current_device", ptx_report.sm90_device)


def _compile(name, f):
    ptx = ptx_report.compile_example(name, f)
    assert ".target sm_90" in ptx
    assert ".entry" in ptx or ".visible .entry" in ptx
    return ptx


MAX_THREADS_PER_BLOCK = 256          # the GEMM's 16 x 16 and registry.THREADS on a GPU
REGISTERS_PER_SM = 65_536
STATIC_SHARED_LIMIT = 48 * 1024


@pytest.mark.parametrize("name", sorted(PTX_EXAMPLES))
def test_kernel_compiles_to_ptx_for_sm90(name):
    """And, where ptxas is installed, assembles to sm_90 code that a 256-thread block can
    launch with (registers and static shared memory within an SM's), with no register
    spills to local memory. The simulator checks none of these."""
    from numba import float32
    ptx = _compile(name, float32)
    if ptx_report.PTXAS is None:
        return
    used = ptx_report.ptxas_resources(ptx)
    assert used["registers"] * MAX_THREADS_PER_BLOCK <= REGISTERS_PER_SM, (name, used)
    assert used["shared"] <= STATIC_SHARED_LIMIT, (name, used)
    assert used["spills"] == 0, (name, used)


def test_float64_gemm_and_fused_conv_epilogue_compile():
    """A float64 instance, and a conv2d GEMM with a generated epilogue (a broadcast add of
    a per-channel side input, then relu) as the fusion pass makes for conv + bias + relu."""
    from numba import float64, types

    from graphcnn.backends.cuda.codegen import epilogue
    from graphcnn.backends.cuda.kernels import conv, gemm

    _compile("conv2d fwd gemm", float64)
    _, epi = epilogue((("add", {}, (-1, 2)), ("relu", {}, (-1,))), (False,), (2,))
    kernel = gemm.make_gemm(conv.FWD, gemm.NO_BIAS, epi, types.float32)
    sig = gemm.gemm_signature(types.float32, 17, egeo=7)
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
    assert "max.f32" in ptx or "setp" in ptx  # the relu made it in


def test_every_kernel_family_has_examples():
    families = {name.split()[0].split(".")[-2] if "." in name.split()[0] else name.split()[0]
                for name in PTX_EXAMPLES}
    for family in ("conv2d", "matmul", "pool", "reduce", "norm", "softmax", "loss", "shape",
                   "fused", "gemm"):
        assert family in families, f"no PTX example for {family}: {sorted(families)}"


@pytest.mark.parametrize("name", ["optim sgd", "optim adam"])
def test_optimizer_kernels_round_every_operation(name):
    """graphcnn.optim rounds after every NumPy operation: the device updates must not be
    contracted into fused multiply-adds, or they would differ in the last bit."""
    from numba import float32
    ptx = _compile(name, float32)
    assert "fma.rn.f32" not in ptx
    assert "mul.rn.f32" in ptx and "add.rn.f32" in ptx


@pytest.mark.parametrize("name", ["conv2d fwd gemm", "conv2d wgrad gemm",
                                  "matmul gemm trans_a=True trans_b=False"])
def test_gemm_k_loop_divides_nothing(name):
    """The implicit GEMM's K loop reads offsets (its rows and column are located before
    it, its K axis from the offset table) and never divides: a 64-bit division is dozens
    of instructions on a GPU, and the loop once held 12 of them per K step."""
    from numba import float32
    _, step = ptx_report.k_loop(_compile(name, float32))
    assert sum(line.startswith("fma.rn.f32") for line in step) == 128   # 8 k x 4 x 4
    assert ptx_report.divisions(step) == 0


_MATH_OPS = [("abs", {}, 1), ("abs_grad", {}, 2), ("neg", {}, 1), ("exp", {}, 1),
             ("log", {}, 1), ("sqrt", {}, 1), ("reciprocal", {}, 1), ("erf", {}, 1),
             ("elu", {"alpha": 1.0, "scale": 1.05}, 1),
             ("elu_grad", {"alpha": 1.0, "scale": 1.05}, 2),
             ("softplus", {"beta": 1.0, "threshold": float("inf")}, 1),
             ("softplus_grad", {"beta": 2.0, "threshold": 20.0}, 2),
             ("softsign", {}, 1), ("softsign_grad", {}, 2), ("gelu", {}, 1),
             ("gelu_grad", {}, 2), ("gelu_tanh", {}, 1), ("gelu_tanh_grad", {}, 2),
             ("mish", {}, 1), ("mish_grad", {}, 2), ("pow", {}, 2),
             ("pow_exponent_grad", {}, 3), ("maximum", {}, 2), ("minimum", {}, 2),
             ("maximum_grad", {}, 3), ("minimum_grad", {}, 3)]


@pytest.mark.parametrize("op,attrs,arity", _MATH_OPS, ids=[m[0] for m in _MATH_OPS])
def test_math_formulas_compile_for_the_device(op, attrs, arity):
    """The unary math and activation formulas (erf, expm1, log1p, pow, abs...) as the
    elementwise map kernel the cuda backend runs them in; the simulator would run them
    as Python and miss a call the device has no form of."""
    from numba import float32, types

    from graphcnn.backends.cuda.codegen import epilogue
    from graphcnn.backends.cuda.kernels.fused import make_map
    refs = tuple(range(arity))
    _, epi = epilogue(((op, attrs, refs),), (True,) * arity, refs)
    arr = types.Array(float32, 1, "C")
    sig = (arr, types.UniTuple(arr, arity), types.UniTuple(types.int64, 3))
    ptx, _ = cuda.compile_ptx(make_map(epi).py_func, sig, cc=(9, 0))
    assert ".entry" in ptx

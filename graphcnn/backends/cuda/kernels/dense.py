"""linear and matmul on the shared tiled GEMM (gemm.py): A and B are read in place,
transposed or not, by four small loaders; linear adds its bias per column."""
from __future__ import annotations

from typing import Any

from graphcnn.backends.cuda.codegen import identity_epilogue
from graphcnn.backends.cuda.kernels import gemm
from graphcnn.backends.cuda.registry import Launch, cuda_kernel, device_function


@device_function
def a_n(A, g, m, k, geo, As, kk, mm):
    As[kk, mm] = A[m, k]


@device_function
def a_t(A, g, m, k, geo, As, kk, mm):
    As[kk, mm] = A[k, m]


@device_function
def b_n(B, g, k, col, geo, Bs, kk, nn):
    Bs[kk, nn] = B[k, col]


@device_function
def b_t(B, g, k, col, geo, Bs, kk, nn):
    Bs[kk, nn] = B[col, k]


@device_function
def row_major(g, m, col, geo):
    return m * geo[0] + col


LOADERS = {(False, False): (a_n, b_n, row_major), (False, True): (a_n, b_t, row_major),
           (True, False): (a_t, b_n, row_major), (True, True): (a_t, b_t, row_major)}
for (_ta, _tb), _loaders in LOADERS.items():
    gemm.register_ptx_example(f"matmul gemm trans_a={_ta} trans_b={_tb}", _loaders,
                              gemm.COL_BIAS if (_ta, _tb) == (False, True) else gemm.NO_BIAS,
                              2, 2, 1)


def plan_matmul(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                ) -> list[Launch]:
    a, b = ins
    ta, tb = attrs["trans_a"], attrs["trans_b"]
    M, NC = out.shape
    K = a.shape[0] if ta else a.shape[1]
    return gemm.plan_gemm(LOADERS[(ta, tb)], a, b, out, None, gemm.NO_BIAS, M, NC, K, 1,
                          (NC,), epilogue)


def plan_linear(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                ) -> list[Launch]:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) == 3 else None
    M, NC = out.shape
    return gemm.plan_gemm(LOADERS[(False, True)], x, w, out, bias,
                          gemm.COL_BIAS if bias is not None else gemm.NO_BIAS, M, NC,
                          x.shape[1], 1, (NC,), epilogue)


@cuda_kernel("matmul")
def matmul_kernel(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    return plan_matmul(ins, outs[0], attrs, identity_epilogue(outs[0].dtype))


@cuda_kernel("linear")
def linear_kernel(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    return plan_linear(ins, outs[0], attrs, identity_epilogue(outs[0].dtype))

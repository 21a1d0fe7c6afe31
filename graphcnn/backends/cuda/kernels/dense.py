"""linear and matmul on the shared tiled GEMM (gemm.py): A and B are read in place,
transposed or not, by small device functions (gemm.Operands); linear adds its bias per
column."""
from __future__ import annotations

from typing import Any

from graphcnn.backends.cuda.codegen import unfused
from graphcnn.backends.cuda.kernels import gemm
from graphcnn.backends.cuda.registry import Launch, cuda_kernel, device_function


# geo = (NC, K, M): A is M x K (or K x M, transposed), B is K x NC (or NC x K), C is M x NC.
@device_function
def a_row_n(g, m, geo):
    return m * geo[1]


@device_function
def a_row_t(g, m, geo):
    return m


@device_function
def a_load_n(A, base, k, ktab, geo, As, kk, mm):
    As[kk, mm] = A[base + k]


@device_function
def a_load_t(A, base, k, ktab, geo, As, kk, mm):
    As[kk, mm] = A[base + k * geo[2]]


@device_function
def b_col_n(g, col, geo):
    return col, 0, 0


@device_function
def b_col_t(g, col, geo):
    return col * geo[1], 0, 0


@device_function
def b_load_n(B, base, y0, x0, ktab, k, geo, Bs, kk, nn):
    Bs[kk, nn] = B[base + k * geo[0]]


@device_function
def b_load_t(B, base, y0, x0, ktab, k, geo, Bs, kk, nn):
    Bs[kk, nn] = B[base + k]


@device_function
def row_major(g, m, col, geo):
    return m * geo[0] + col


OPERANDS = {(ta, tb): gemm.Operands(a_row_t if ta else a_row_n, a_load_t if ta else a_load_n,
                                    b_col_t if tb else b_col_n, b_load_t if tb else b_load_n,
                                    row_major)
            for ta in (False, True) for tb in (False, True)}
for (_ta, _tb), _ops in OPERANDS.items():
    gemm.register_ptx_example(f"matmul gemm trans_a={_ta} trans_b={_tb}", _ops,
                              gemm.COL_BIAS if (_ta, _tb) == (False, True) else gemm.NO_BIAS, 3)


def plan_matmul(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                ) -> list[Launch]:
    a, b = ins
    ta, tb = attrs["trans_a"], attrs["trans_b"]
    M, NC = out.shape
    K = a.shape[0] if ta else a.shape[1]
    return gemm.plan_gemm(OPERANDS[(ta, tb)], a, b, out, None, gemm.NO_BIAS, M, NC, K, 1,
                          (NC, K, M), epilogue)


def plan_linear(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                ) -> list[Launch]:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) == 3 else None
    M, NC = out.shape
    K = x.shape[1]
    return gemm.plan_gemm(OPERANDS[(False, True)], x, w, out, bias,
                          gemm.COL_BIAS if bias is not None else gemm.NO_BIAS, M, NC, K, 1,
                          (NC, K, M), epilogue)


cuda_kernel("matmul")(unfused(plan_matmul))
cuda_kernel("linear")(unfused(plan_linear))

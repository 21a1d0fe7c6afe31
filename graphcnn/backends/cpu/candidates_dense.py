"""The candidates of linear and matmul on the cpu: OpenBLAS (over Numba's threads, see
blas.py) when the cost model says there is enough work, Numba's loops otherwise."""
from __future__ import annotations

import numpy as np

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.candidates import Candidate, Core, OpStrategy, Site, _always
from graphcnn.backends.cpu.kernels import dense
from graphcnn.backends.cpu.registry import launch

# ---- linear and matmul ---------------------------------------------------------------------

def _blas(site: Site) -> Core:
    gemm = blas.matmul
    if site.op == "linear":
        return Core(lambda ins, out: gemm(ins[0], ins[1].T, out), adds_bias=False)
    ta, tb = site.attrs["trans_a"], site.attrs["trans_b"]
    return Core(lambda ins, out: gemm(ins[0].T if ta else ins[0], ins[1].T if tb else ins[1],
                                      out), adds_bias=False)


def _loops(site: Site) -> Core:
    if site.op == "linear":
        f = dense._matmul_nt
        if len(site.in_shapes) == 3:
            return Core(lambda ins, out: launch(f, ins[0], ins[1], out, ins[2], True))
        no_bias = dense.NO_BIAS[site.out_dtype]
        return Core(lambda ins, out: launch(f, ins[0], ins[1], out, no_bias, False))
    flags = (site.attrs["trans_a"], site.attrs["trans_b"])
    f = dense.MATMUL_LOOPS[flags]
    if flags == (False, True):  # the same loop as linear's, without a bias
        no_bias = dense.NO_BIAS[site.out_dtype]
        return Core(lambda ins, out: launch(f, ins[0], ins[1], out, no_bias, False))
    return Core(lambda ins, out: launch(f, ins[0], ins[1], out))


def _columns(site: Site) -> Core:
    f = dense._matmul_nt_columns
    if len(site.in_shapes) == 3:
        return Core(lambda ins, out: launch(f, ins[0], ins[1], out, ins[2], True))
    no_bias = dense.NO_BIAS[site.out_dtype]
    return Core(lambda ins, out: launch(f, ins[0], ins[1], out, no_bias, False))


def _columns_computes(site: Site) -> bool:
    return dense.columns_computes(site.op, site.attrs)


def _columns_offered(site: Site) -> bool:
    return dense.use_columns(site.op, site.in_shapes[0], site.out_shape, site.attrs)


def _dense(op: str) -> OpStrategy:
    # "columns" comes first: the cost model's pick where it is offered (GRAPHCNN_AUTOTUNE=0).
    return OpStrategy((
        Candidate("columns", 1, _columns_computes, _columns, offered=_columns_offered,
                  rule="a few rows: split the columns"),
        Candidate("blas", 1, _always, _blas, offered=lambda s: dense.use_blas(
            s.op, s.in_shapes[0], s.out_shape, s.attrs), rule="cost model: enough work for "
                                                                "BLAS"),
        Candidate("loops", 0, _always, _loops, rule="too little work for BLAS"),
    ), tune_key=_dense_key,
        add_bias=(lambda out, bias: np.add(out, bias, out=out)) if op == "linear" else None)


def _dense_key(site: Site) -> tuple:
    """What the columns-or-BLAS race depends on: the shapes, the dtype, the transposes."""
    flags = (site.attrs.get("trans_a", False), site.attrs.get("trans_b", True))
    return (tuple(map(tuple, site.in_shapes)), tuple(site.out_shape), site.out_dtype.str, flags)


# strategy.py adds these to candidates.STRATEGIES
DENSE_STRATEGIES = {"linear": _dense("linear"), "matmul": _dense("matmul")}

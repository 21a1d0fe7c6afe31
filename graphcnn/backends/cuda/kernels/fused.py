"""`fused` nodes (made by the same fusion pass as for the cpu backend): the anchor's plan
with the group's generated epilogue inlined before its stores, or, for a group without an
anchor, an elementwise map kernel over the epilogue. Single elementwise ops with a scalar
formula (relu, add, ...) run as one-step groups, so their formulas are the registry's."""
from __future__ import annotations

from typing import Any

from numba import types

from graphcnn.backends.cuda.codegen import epilogue, group_epilogue, specialized
from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels import conv, dense, pool
from graphcnn.backends.cuda.registry import PTX_EXAMPLES, Launch, cuda_kernel, flat, launch_1d
from graphcnn.ops.registry import all_ops

cu = numba_cuda()

ANCHORS = {
    "conv2d": conv.plan_conv2d,
    "conv2d_input_grad": conv.plan_conv2d_input_grad,
    "conv2d_weight_grad": conv.plan_conv2d_weight_grad,
    "linear": dense.plan_linear,
    "matmul": dense.plan_matmul,
    "max_pool2d": pool.plan_max_pool2d,
    "avg_pool2d": pool.plan_avg_pool2d,
    "max_pool2d_grad": pool.plan_max_pool2d_grad,
    "avg_pool2d_grad": pool.plan_avg_pool2d_grad,
}


def make_map(epi: Any) -> Any:
    def map_kernel(out, sides, geo):
        i = cu.grid(1)
        while i < out.size:
            out[i] = epi(0.0, i, sides, geo)
            i += cu.gridsize(1)
    return cu.jit(map_kernel)


def _ptx_map(f: Any) -> tuple:
    _, epi = epilogue((("relu", {}, (0,)),), (True,), (0,))
    arr = types.Array(f, 1, "C")
    return make_map(epi).py_func, (arr, types.UniTuple(arr, 1), types.UniTuple(types.int64, 3))


PTX_EXAMPLES["fused elementwise map (relu)"] = _ptx_map


@cuda_kernel("fused")
def fused_kernel(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    out = outs[0]
    chain = group_epilogue(attrs, ins, out.shape)
    if attrs["anchor"]:
        plan = ANCHORS.get(attrs["anchor"])
        if plan is None:
            raise NotImplementedError(f"the cuda backend cannot anchor a fused group on "
                                      f"{attrs['anchor']!r}")
        return plan(ins[:attrs["anchor_inputs"]], out, attrs["anchor_attrs"], chain)
    _, epi, sides, geo = chain
    return [launch_1d(specialized(make_map, epi), out.size, flat(out), sides, geo)]


def _elementwise(op: str) -> Any:
    def kernel(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
        group = {"anchor": "", "anchor_attrs": {}, "anchor_inputs": 0,
                 "steps": ((op, dict(attrs), tuple(range(len(ins)))),)}
        return fused_kernel(ins, outs, group)
    return kernel


for _name, _op in all_ops().items():
    if _op.scalar is not None:
        cuda_kernel(_name)(_elementwise(_name))

"""The cpu kernel of `fused` nodes: the generated kernel of the group (codegen.py),
called with the anchor's arguments and views of the epilogue's side inputs. Every op
with a scalar formula (relu, sigmoid, add, ...) runs here too, as a group of one step
without an anchor, so its formula is the registry's, lowered as in any other group."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.codegen import (FLAT, ROW_ANCHORS, GeneratedKernel,
                                           default_nest)
from graphcnn.backends.cpu.kernels import blocked
from graphcnn.backends.cpu.kernels.broadcast import as_4d
from graphcnn.backends.cpu.kernels.conv import run_as_gemm
from graphcnn.backends.cpu.kernels.dense import run_as_blas
from graphcnn.backends.cpu.registry import KernelFn, cpu_kernel, get_kernel, launch
from graphcnn.backends.lowering import side_refs
from graphcnn.ops.registry import all_ops

# Rows from this length keep their own loop when a side broadcasts (see _plane_view).
LONG_ROW = 32

_NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
            np.dtype(np.float64): np.zeros(1, np.float64)}


class _Prepared:
    """A group's side refs and its generated kernels by loop nest, made on first use."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs  # kept alive, so that its id stays its own
        self.refs = side_refs(attrs["steps"])
        self.kernels: dict[str, GeneratedKernel] = {}

    def kernel(self, nest: str) -> GeneratedKernel:
        kernel = self.kernels.get(nest)
        if kernel is None:
            kernel = self.kernels[nest] = GeneratedKernel(self.attrs, nest)
        return kernel


# attrs dict id -> its _Prepared
_PREPARED: dict[int, _Prepared] = {}


def _prepared(attrs: dict[str, Any]) -> _Prepared:
    entry = _PREPARED.get(id(attrs))
    if entry is None or entry.attrs is not attrs:
        entry = _PREPARED[id(attrs)] = _Prepared(attrs)
    return entry


def broadcast_view(a: np.ndarray, shape: tuple[int, ...], view: tuple[int, ...]) -> np.ndarray:
    """`a` broadcast to `shape` (zero strides, no copy), seen with the kernel's rank."""
    if a.shape == shape:
        return a.reshape(view)
    padded = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    return np.broadcast_to(padded, shape).reshape(view)


@cpu_kernel("fused")
def fused_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    out = outs[0]
    anchor = attrs["anchor"]
    head = ins[:attrs["anchor_inputs"]]
    if anchor in blocked.BLOCKED_RUNNERS:
        # The blocked kernels apply an add, clip or relu as they store: no second pass.
        epilogue = blocked.epilogue_of(attrs["steps"], ins, out)
        if epilogue is not None and blocked.BLOCKED_RUNNERS[anchor](
                head, out, attrs["anchor_attrs"], epilogue):
            return
    group = _prepared(attrs)
    side_ins = [ins[r] for r in group.refs]
    if not anchor and all(s.shape == out.shape for s in side_ins):
        # Nothing broadcasts: one loop over the flat buffers, as a NumPy ufunc's.
        launch(group.kernel(FLAT), out.reshape(-1), *[s.reshape(-1) for s in side_ins])
        return
    nest = default_nest(anchor)
    view = out.shape if anchor in ROW_ANCHORS else _plane_view(out.shape, side_ins)
    kernel = group.kernel(nest)
    sides = [broadcast_view(s, out.shape, view) for s in side_ins]
    if not anchor:
        launch(kernel, out.reshape(view), *sides)
        return
    blas = run_as_blas if anchor in ROW_ANCHORS else run_as_gemm
    if blas(anchor, head, out, attrs["anchor_attrs"]):
        # The GEMM left the bias out: the epilogue adds it in the same pass.
        has_bias = anchor in ("conv2d", "linear") and len(head) == 3
        launch(kernel, out.reshape(view), *sides, head[2] if has_bias else _NO_BIAS[out.dtype],
               has_bias)
    else:
        get_kernel(anchor)(head, [out], attrs["anchor_attrs"])
        launch(kernel, out.reshape(view), *sides, _NO_BIAS[out.dtype], False)


def _plane_view(shape: tuple[int, ...], sides: list[np.ndarray]) -> tuple[int, int, int, int]:
    """The generated 4-d loop sees (N, C, 1, H*W): one long inner loop per plane, which LLVM
    vectorizes, instead of H loops of W (ResNet's 7x7 planes: add+relu 2.6x faster). The
    planes stay (N, C, H, W) where a side broadcasts along H or W alone (a view of it
    merging the two would be a copy), and where a side broadcasts and the rows are long:
    with a zero-stride side the merged loop does not vectorize either, and measured
    slower from W = 56 (a (64, 1, 1) bias on 56x56 planes: 1.55 against 1.40 ms on one
    thread; on 14x14 planes merging still wins, 0.36 against 0.39 ms)."""
    n, c, h, w = as_4d(shape)
    if h == 1 or w == 1:
        return (n, c, 1, h * w)
    for side in sides:
        plane = as_4d((1,) * (len(shape) - side.ndim) + side.shape)[2:]
        if plane != (h, w) and (plane != (1, 1) or w >= LONG_ROW):
            return (n, c, h, w)
    return (n, c, 1, h * w)


def _one_step(op: str) -> KernelFn:
    """The kernel of a single `op` node: the group of that one step, without an anchor."""
    # (attribute values, arity) -> (the group, whose kernels _PREPARED keeps; its flat
    # kernel): by value, so that a caller passing a fresh attrs dict per call finds it too.
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], GeneratedKernel]] = {}

    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        key = (*attrs.items(), len(ins))
        entry = groups.get(key)
        if entry is None:
            group = {"anchor": "", "anchor_attrs": {}, "anchor_inputs": 0,
                     "steps": ((op, dict(attrs), tuple(range(len(ins)))),)}
            entry = groups[key] = (group, _prepared(group).kernel(FLAT))
        out = outs[0]
        shape = out.shape
        # fused_kernel's flat case, inlined: this is every activation's per-call overhead
        flat = entry[1].loaded or entry[1]
        if len(ins) == 1 and ins[0].shape == shape:
            launch(flat, out.reshape(-1), ins[0].reshape(-1))
        elif len(ins) == 2 and ins[0].shape == shape and ins[1].shape == shape:
            launch(flat, out.reshape(-1), ins[0].reshape(-1), ins[1].reshape(-1))
        else:
            fused_kernel(ins, outs, entry[0])
    kernel.__qualname__ = f"{op}_kernel"
    return kernel


for _name, _op in all_ops().items():
    if _op.scalar is not None:
        cpu_kernel(_name)(_one_step(_name))

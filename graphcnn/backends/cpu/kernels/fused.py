"""The cpu kernel of `fused` nodes: the generated kernel of the group (codegen.py),
called with the anchor's arguments and broadcast views of the epilogue's side inputs."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.backends.cpu.codegen import ROW_ANCHORS, GeneratedKernel, side_refs
from graphcnn.backends.cpu.kernels import nchw16c
from graphcnn.backends.cpu.kernels.conv import run_as_gemm
from graphcnn.backends.cpu.kernels.dense import run_as_blas
from graphcnn.backends.cpu.kernels.elementwise import as_4d
from graphcnn.backends.cpu.registry import cpu_kernel, get_kernel, launch

_NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
            np.dtype(np.float64): np.zeros(1, np.float64)}

# attrs dict id -> (the attrs, kept alive so the id stays theirs; kernel; side refs)
_PREPARED: dict[int, tuple[dict[str, Any], Callable[..., None], list[int]]] = {}


def _prepared(attrs: dict[str, Any]) -> tuple[Callable[..., None], list[int]]:
    entry = _PREPARED.get(id(attrs))
    if entry is None or entry[0] is not attrs:
        entry = (attrs, GeneratedKernel(attrs), side_refs(attrs))
        _PREPARED[id(attrs)] = entry
    return entry[1], entry[2]


def broadcast_view(a: np.ndarray, shape: tuple[int, ...], view: tuple[int, ...]) -> np.ndarray:
    """`a` broadcast to `shape` (zero strides, no copy), seen with the kernel's rank."""
    padded = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    return np.broadcast_to(padded, shape).reshape(view)


@cpu_kernel("fused")
def fused_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    out = outs[0]
    anchor = attrs["anchor"]
    head = ins[:attrs["anchor_inputs"]]
    if anchor in nchw16c.BLOCKED_RUNNERS:
        # The blocked kernels apply an add, clip or relu as they store: no second pass.
        epilogue = nchw16c.epilogue_of(attrs["steps"], ins, out)
        if epilogue is not None and nchw16c.BLOCKED_RUNNERS[anchor](
                head, out, attrs["anchor_attrs"], epilogue):
            return
    kernel, refs = _prepared(attrs)
    view = out.shape if anchor in ROW_ANCHORS else _plane_view(out.shape)
    sides = [broadcast_view(ins[r], out.shape, view) for r in refs]
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


def _plane_view(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The generated 4-d loop sees (N, C, 1, H*W): one long inner loop per plane, which LLVM
    vectorizes, instead of H loops of W (ResNet's 7x7 planes: add+relu 2.6x faster)."""
    n, c, h, w = as_4d(shape)
    return (n, c, 1, h * w)

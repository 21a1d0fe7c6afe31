"""The cpu steps of `fused` nodes: the anchor's chosen implementation into the output, then
the group's generated kernel (codegen.py) over it, called with broadcast views of the
epilogue's side inputs; or, where the anchor's kernel applies the epilogue as it stores
(the NCHW16c convolutions), that kernel alone. backends/cpu/strategy.py chooses the
anchor's implementation and builds the step with these functions, once per node."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.backends.cpu.codegen import ROW_ANCHORS, GeneratedKernel, side_refs
from graphcnn.backends.cpu.kernels.elementwise import as_4d
from graphcnn.backends.cpu.registry import KernelFn, launch

NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
           np.dtype(np.float64): np.zeros(1, np.float64)}

# An anchor's implementation as a fused step runs it: (the anchor's inputs, the output).
AnchorRun = Callable[[list[np.ndarray], np.ndarray], None]


def broadcast_view(a: np.ndarray, shape: tuple[int, ...], view: tuple[int, ...]) -> np.ndarray:
    """`a` broadcast to `shape` (zero strides, no copy), seen with the kernel's rank."""
    padded = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    return np.broadcast_to(padded, shape).reshape(view)


def epilogue_step(attrs: dict[str, Any], out_shape: tuple[int, ...], out_dtype: Any,
                  anchor: AnchorRun | None, bias_in_epilogue: bool) -> KernelFn:
    """The fused node's step: `anchor` (None: the group has no anchor) into the output,
    then the generated kernel over it, adding the anchor's bias (input 2) if
    `bias_in_epilogue` (a GEMM left it out)."""
    kernel, refs = GeneratedKernel(attrs), side_refs(attrs)
    view = out_shape if attrs["anchor"] in ROW_ANCHORS else _plane_view(out_shape)
    if anchor is None:
        def elementwise(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            out = outs[0]
            launch(kernel, out.reshape(view),
                   *[broadcast_view(ins[r], out.shape, view) for r in refs])
        return elementwise

    head = attrs["anchor_inputs"]
    no_bias = NO_BIAS[np.dtype(out_dtype)]

    def anchored(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
        out = outs[0]
        anchor(ins[:head], out)
        sides = [broadcast_view(ins[r], out.shape, view) for r in refs]
        if bias_in_epilogue:
            launch(kernel, out.reshape(view), *sides, ins[2], True)
        else:
            launch(kernel, out.reshape(view), *sides, no_bias, False)
    return anchored


def stored_epilogue_step(attrs: dict[str, Any], store: Callable[..., None], form: Any
                         ) -> KernelFn:
    """The fused node's step where the anchor's kernel applies the group's epilogue as it
    stores: store(anchor inputs, output, the Epilogue `form` binds to this call's inputs)."""
    head = attrs["anchor_inputs"]

    def stored(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
        store(ins[:head], outs[0], form.bind(ins))
    return stored


def _plane_view(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The generated 4-d loop sees (N, C, 1, H*W): one long inner loop per plane, which LLVM
    vectorizes, instead of H loops of W (too short for whole vectors on small planes)."""
    n, c, h, w = as_4d(shape)
    return (n, c, 1, h * w)

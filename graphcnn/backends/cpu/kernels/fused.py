"""The cpu steps of `fused` nodes: the anchor's chosen implementation into the output, then
the group's generated kernel (codegen.py) over it, called with views of the epilogue's side
inputs; or, where the anchor's kernel applies the epilogue as it stores (the NCHW16c
convolutions), that kernel alone. backends/cpu/strategy.py chooses the anchor's
implementation and builds the step with these functions, once per node.

Every op with a scalar formula (relu, sigmoid, add, ...) runs here too, as a group of one
step without an anchor, so its formula is the registry's, lowered as in any other group."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from graphcnn.backends.cpu.codegen import (
    FLAT,
    PLANE,
    ROW_ANCHORS,
    GeneratedKernel,
    default_nest,
    runs_serially,
)
from graphcnn.backends.cpu.kernels.broadcast import as_4d
from graphcnn.backends.cpu.registry import KernelFn, cpu_kernel, launch
from graphcnn.backends.lowering import side_refs
from graphcnn.ops.registry import all_ops

NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
           np.dtype(np.float64): np.zeros(1, np.float64)}

# An anchor's implementation as a fused step runs it: (the anchor's inputs, the output).
AnchorRun = Callable[[list[np.ndarray], np.ndarray], None]


def broadcast_view(a: np.ndarray, shape: tuple[int, ...], view: tuple[int, ...]) -> np.ndarray:
    """`a` broadcast to `shape` (zero strides, no copy), seen with the kernel's rank."""
    if a.shape == shape:
        return a.reshape(view)
    padded = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    return np.broadcast_to(padded, shape).reshape(view)


def epilogue_step(attrs: dict[str, Any], out_shape: tuple[int, ...], out_dtype: Any,
                  in_shapes: Sequence[tuple[int, ...]], anchor: AnchorRun | None,
                  bias_in_epilogue: bool) -> KernelFn:
    """The fused node's step: `anchor` (None: the group has no anchor) into the output,
    then the generated kernel over it, adding the anchor's bias (input 2) if
    `bias_in_epilogue` (a GEMM left it out). `in_shapes`: the node's input shapes, which
    decide the loop nest the kernel is generated with."""
    refs = side_refs(attrs["steps"])
    out_shape = tuple(out_shape)
    side_shapes = [tuple(in_shapes[r]) for r in refs]
    if anchor is None and all(s == out_shape for s in side_shapes):
        # Nothing broadcasts: one loop over the flat buffers, as a NumPy ufunc's.
        flat = GeneratedKernel(attrs, FLAT, parallel=not runs_serially(out_shape))

        def elementwise_flat(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            launch(flat.loaded or flat, outs[0].reshape(-1),
                   *[ins[r].reshape(-1) for r in refs])
        return elementwise_flat

    view = out_shape if attrs["anchor"] in ROW_ANCHORS else _plane_view(out_shape, side_shapes)
    kernel = GeneratedKernel(attrs, default_nest(attrs["anchor"]), [
        k for k, side in enumerate(side_shapes) if _constant_along_rows(side, out_shape, view)],
        parallel=not runs_serially(out_shape))
    if anchor is None:
        def elementwise(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            out = outs[0]
            launch(kernel, out.reshape(view),
                   *[broadcast_view(ins[r], out_shape, view) for r in refs])
        return elementwise

    head = attrs["anchor_inputs"]
    no_bias = NO_BIAS[np.dtype(out_dtype)]

    def anchored(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
        out = outs[0]
        ins = sides_apart(ins, refs, out)
        anchor(ins[:head], out)
        sides = [broadcast_view(ins[r], out_shape, view) for r in refs]
        if bias_in_epilogue:
            launch(kernel, out.reshape(view), *sides, ins[2], True)
        else:
            launch(kernel, out.reshape(view), *sides, no_bias, False)
    return anchored


def concat_epilogue_step(attrs: dict[str, Any], out_shape: tuple[int, ...], out_dtype: Any,
                         in_shapes: Sequence[tuple[int, ...]]) -> KernelFn:
    """The step of a group anchored on a concatenation along axis 1
    (passes/concat_epilogue.py): each part goes through the epilogue straight into its
    channels of the output, so the concatenation is never written, nor read back. One
    generated kernel (codegen's gather variant) serves every part: it reads the part and
    writes channels c0.. of the output, the sides read at those channels."""
    refs = side_refs(attrs["steps"])
    out_shape = tuple(out_shape)
    side_shapes = [tuple(in_shapes[r]) for r in refs]
    view = _plane_view(out_shape, side_shapes)
    kernel = GeneratedKernel(attrs, PLANE, [
        k for k, side in enumerate(side_shapes) if _constant_along_rows(side, out_shape, view)],
        gather=True, parallel=not runs_serially(out_shape))
    parts = attrs["anchor_inputs"]
    starts = [0]
    for shape in in_shapes[:parts]:
        starts.append(starts[-1] + shape[1])
    part_views = [(view[0], starts[k + 1] - starts[k]) + tuple(view[2:]) for k in range(parts)]
    no_bias = NO_BIAS[np.dtype(out_dtype)]

    def gathered(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
        out = outs[0].reshape(view)
        sides = [broadcast_view(ins[r], out_shape, view) for r in refs]
        run = kernel.loaded or kernel
        for k in range(parts):
            launch(run, out, ins[k].reshape(part_views[k]), starts[k], *sides, no_bias, False)
    return gathered


def stored_epilogue_step(attrs: dict[str, Any], store: Callable[..., None], form: Any,
                         over_side: bool = False) -> KernelFn:
    """The fused node's step where the anchor's kernel applies the group's epilogue as it
    stores: store(anchor inputs, output, the Epilogue `form` binds to this call's inputs).
    `over_side`: the store reads each element's side just before storing it, so its
    output may be the side's own bytes (else a side found there is copied first)."""
    head = attrs["anchor_inputs"]
    refs = [] if over_side or form.side is None else [form.side]

    def stored(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
        ins = sides_apart(ins, refs, outs[0])
        store(ins[:head], outs[0], form.bind(ins))
    return stored


def sides_apart(ins: list[np.ndarray], refs: Sequence[int], out: np.ndarray
                ) -> list[np.ndarray]:
    """`ins`, each side in `refs` that shares bytes with `out` replaced by a copy: a kernel
    that writes its output before it reads a side (the anchor, then the generated
    epilogue) must not find the side there. The memory plan puts a side in its group's
    output only where the chosen kernel allows it (Implementation.side_in_place), but an
    any-batch executable runs the plan of its largest batch with the kernels chosen at
    another, and an artifact's plan is read from a file."""
    moved = None
    for r in refs:
        if np.may_share_memory(ins[r], out):
            moved = list(ins) if moved is None else moved
            moved[r] = ins[r].copy()
    return ins if moved is None else moved


def _plane_view(shape: tuple[int, ...], side_shapes: list[tuple[int, ...]]
                ) -> tuple[int, int, int, int]:
    """The generated 4-d loop sees (N, C, 1, H*W): one long inner loop per plane, which LLVM
    vectorizes, instead of H loops of W (ResNet's 7x7 planes: add+relu 2.6x faster). A
    per-channel side is read once per plane (_constant_along_rows). The planes stay
    (N, C, H, W) where a side broadcasts along H or W alone: a view of it merging the two
    would be a copy."""
    n, c, h, w = as_4d(shape)
    if h == 1 or w == 1:
        return (n, c, 1, h * w)
    for side in side_shapes:
        if _side_plane(side, shape) not in ((h, w), (1, 1)):
            return (n, c, h, w)
    return (n, c, 1, h * w)


def _side_plane(side: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The last two axes of a side broadcast to an output of `shape`, as as_4d sees it."""
    return as_4d((1,) * (len(shape) - len(side)) + tuple(side))[2:]


def _constant_along_rows(side: tuple[int, ...], shape: tuple[int, ...],
                         view: tuple[int, ...]) -> bool:
    """Whether the side, in the kernel's `view` of the output, keeps one value along the
    inner loop (a zero stride there), so the generated kernel reads it once per row
    (codegen.generate_source's row_constant)."""
    if view[-1] <= 1:
        return False
    if len(view) == 2:   # the row nest of a linear/matmul output: (N, F)
        return ((1,) * (len(shape) - len(side)) + tuple(side))[-1] == 1
    plane = _side_plane(side, shape)
    merged = view[2] == 1 and view[2:] != as_4d(shape)[2:]
    return plane == (1, 1) if merged else plane[1] == 1


def single_op_step(op: str, attrs: dict[str, Any], in_shapes: Sequence[tuple[int, ...]],
                   out_shape: tuple[int, ...], out_dtype: Any) -> KernelFn:
    """The step of a single `op` node with a scalar formula: the group of that one step,
    without an anchor."""
    group = {"anchor": "", "anchor_attrs": {}, "anchor_inputs": 0,
             "steps": ((op, dict(attrs), tuple(range(len(in_shapes)))),)}
    return epilogue_step(group, out_shape, out_dtype, in_shapes, None, False)


def _one_step(op: str) -> KernelFn:
    """The registered kernel of `op` called outside a runner (a runner builds the step once,
    in strategy.py): its step, by attribute values and shapes."""
    steps: dict[tuple[Any, ...], KernelFn] = {}

    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        key = (*attrs.items(), *(a.shape for a in ins), outs[0].shape)
        step = steps.get(key)
        if step is None:
            step = steps[key] = single_op_step(op, attrs, [a.shape for a in ins],
                                               outs[0].shape, outs[0].dtype)
        step(ins, outs, attrs)
    kernel.__qualname__ = f"{op}_kernel"
    return kernel


for _name, _op in all_ops().items():
    if _op.scalar is not None:
        cpu_kernel(_name)(_one_step(_name))

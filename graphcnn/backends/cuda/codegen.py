"""The cuda renderer of elementwise chains: a fused group's epilogue as a CUDA device
function. The chain is lowered once for every backend (graphcnn/backends/lowering.py: SSA
lines `t0 = ...` from the op registry's scalar formulas, attributes inlined); the cpu
code generator renders the same lines in its loops. A group's chain becomes one device
function, the lines as they are (math calls stay the device's own)

    def epi(v, i, sides, geo):        # v: the anchor's value at flat output index i
        a0 = sides[0][i]               # a side input of the output's shape
        a1 = sides[1][i0 * geo[3] + i1 * geo[4] + i2 * geo[5] + i3 * geo[6]]  # broadcast
        t0 = (v + a1)                  # add
        t1 = (0.0 if t0 <= 0 else t0)  # relu
        return t1

and the anchor kernel (a tiled GEMM for conv2d/linear, a pooling kernel, ...) calls it on
each value before its store: the epilogue runs inline, in registers, with no second pass
over memory. A group without an anchor runs the function in an elementwise map kernel.
`geo` holds the output's shape seen as 4-D (d1, d2, d3) and, per broadcast side, its
element strides over those four axes (0 along broadcast axes).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.lowering import lower, side_name, side_refs

CODEGEN_VERSION = "3"
IDENTITY = ()  # the steps of "no epilogue"


def _dims4(shape: Sequence[int], operand_shapes: Sequence[Sequence[int]]
           ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The output shape merged/padded to 4 axes and each operand's broadcast strides over
    them (0 along broadcast axes). Raises NotImplementedError when more than 4 axes are
    left after merging the axes that every operand walks as one."""
    ndim = len(shape)
    all_st = [[int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(ndim)]]
    for s in operand_shapes:
        s = (1,) * (ndim - len(s)) + tuple(s)
        st, acc = [0] * ndim, 1
        for d in range(ndim - 1, -1, -1):
            st[d] = 0 if (s[d] == 1 and shape[d] != 1) else acc
            acc *= s[d]
        all_st.append(st)
    keep = [d for d in range(ndim) if shape[d] != 1]
    dims = [int(shape[d]) for d in keep]
    all_st = [[st[d] for d in keep] for st in all_st]
    d = len(dims) - 2
    while d >= 0:
        if all(st[d] == st[d + 1] * dims[d + 1] for st in all_st):
            dims[d] *= dims[d + 1]
            del dims[d + 1]
            for st in all_st:
                st[d] = st[d + 1]
                del st[d + 1]
        d -= 1
    if len(dims) > 4:
        raise NotImplementedError(f"broadcasting over the shape {tuple(shape)} needs "
                                  f"{len(dims)} axes; the cuda backend handles 4")
    pad = 4 - len(dims)
    return tuple([1] * pad + dims), [tuple([0] * pad + st) for st in all_st[1:]]


def side_layout(out_shape: Sequence[int], side_shapes: Sequence[Sequence[int]]
                ) -> tuple[tuple[bool, ...], tuple[int, ...]]:
    """(is each side full-shaped (indexed by i), geo) for a chain's sides."""
    full = tuple(tuple(s) == tuple(out_shape) for s in side_shapes)
    if all(full):
        return full, (1, 1, 1)
    dims, strides = _dims4(tuple(out_shape), [s for s in side_shapes])
    geo = list(dims[1:])
    for is_full, st in zip(full, strides):
        if not is_full:
            geo += list(st)
    return full, tuple(int(g) for g in geo)


def epilogue_source(steps: Any, full: Sequence[bool], refs: Sequence[int]) -> str:
    """The device function of a chain. `refs`: the fused node's input indexes the chain
    reads, in `sides` order (lowering.side_refs); `full[k]`: whether sides[k] has the
    output's shape. Without steps it returns v (an anchor's plain store)."""
    lines = ["import math", "from numba import cuda", "", "",
             "def epi(v, i, sides, geo):"]
    if not all(full):
        lines += ["    i3 = i % geo[2]", "    r = i // geo[2]", "    i2 = r % geo[1]",
                  "    r = r // geo[1]", "    i1 = r % geo[0]", "    i0 = r // geo[0]"]
    g = 3
    for k, is_full in enumerate(full):
        if is_full:
            lines.append(f"    {side_name(k)} = sides[{k}][i]")
        else:
            lines.append(f"    {side_name(k)} = sides[{k}][i0 * geo[{g}] + i1 * geo[{g + 1}] + "
                         f"i2 * geo[{g + 2}] + i3 * geo[{g + 3}]]")
            g += 4
    if not steps:
        return "\n".join(lines + ["    return v"]) + "\n"
    chain = lower(steps, anchored=True)  # a group without an anchor passes v = 0.0, unread
    if list(chain.sides) != list(refs):
        raise ValueError(f"sides {list(refs)} are not the chain's {list(chain.sides)}")
    lines += ["    " + line for line in chain.render()]
    lines.append(f"    return {chain.result}")
    return "\n".join(lines) + "\n"


_EPILOGUES: dict[str, Any] = {}


def epilogue(steps: Any = IDENTITY, full: Sequence[bool] = (),
             refs: Sequence[int] = ()) -> tuple[str, Any]:
    """(source, device function) of a chain; compiled once per distinct source."""
    source = epilogue_source(steps, full, refs)
    fn = _EPILOGUES.get(source)
    if fn is None:
        from graphcnn.backends.cuda.registry import dmax, dmin
        namespace: dict[str, Any] = {"min": dmin, "max": dmax}  # see registry.dmax
        exec(compile(source, f"<graphcnn cuda epilogue {len(_EPILOGUES)}>", "exec"), namespace)
        py_func = namespace["epi"]
        py_func.__graphcnn_source__ = source
        fn = _EPILOGUES[source] = numba_cuda().jit(device=True)(py_func)
        try:
            fn.__graphcnn_source__ = source
        except AttributeError:
            pass
    return source, fn


def group_epilogue(attrs: dict[str, Any], ins: Sequence[Any], out_shape: Sequence[int]
                   ) -> tuple[str, Any, tuple, tuple]:
    """For a fused node's attrs and input arrays: (source, device function, sides, geo).
    sides is never empty (a 1-element stand-in when the chain reads no input)."""
    from graphcnn.backends.cuda.registry import dummy, flat
    refs = side_refs(attrs["steps"])
    full, geo = side_layout(out_shape, [ins[r].shape for r in refs])
    source, fn = epilogue(attrs["steps"], full, refs)
    sides = tuple(flat(ins[r]) for r in refs) or (dummy(ins[0].dtype if ins else np.float32),)
    return source, fn, sides, geo


def identity_epilogue(dtype: Any) -> tuple[str, Any, tuple, tuple]:
    from graphcnn.backends.cuda.registry import dummy
    source, fn = epilogue()
    return source, fn, (dummy(dtype),), (1, 1, 1)


def unfused(plan: Callable[[list[Any], Any, dict[str, Any], tuple], Any]
            ) -> Callable[[list[Any], list[Any], dict[str, Any]], Any]:
    """The kernel of an op whose plan also anchors fused groups, where it runs alone:
    plan(inputs, output, attrs, epilogue) with the identity epilogue."""
    def kernel(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> Any:
        return plan(ins, outs[0], attrs, identity_epilogue(outs[0].dtype))
    return kernel


def record_epilogue_examples(prefix: str,
                             examples: dict[str, Callable[[Any, Any], tuple[Any, tuple]]]
                             ) -> None:
    """PTX examples (registry.PTX_EXAMPLES) of kernels made per epilogue, named
    f"{prefix} {which}": examples[which](epi, f) gives the kernel made with the identity
    epilogue epi for float type f and the types of its arguments up to its last two, the
    epilogue's (sides, geo), which every such kernel takes last and are added here."""
    from numba import types

    from graphcnn.backends.cuda.registry import PTX_EXAMPLES, c_arrays

    def build(example: Callable[[Any, Any], tuple[Any, tuple]]) -> Callable[[Any], tuple]:
        def make(f: Any) -> tuple:
            _, epi = epilogue()
            kernel, args = example(epi, f)
            sides = types.UniTuple(c_arrays(f, 1)[0], 1)
            return kernel.py_func, args + (sides, types.UniTuple(types.int64, 3))
        return make
    for which, example in examples.items():
        PTX_EXAMPLES[f"{prefix} {which}"] = build(example)


_FACTORIES: dict[tuple, Any] = {}


def _key(a: Any) -> Any:
    source = getattr(a, "__graphcnn_source__", None)
    return source if source is not None else a


def specialized(factory: Callable[..., Any], *args: Any) -> Any:
    """factory(*args), made once per distinct args (kernels closed over an epilogue device
    function, a dtype, flags): each is compiled at its first launch."""
    key = (factory.__module__, factory.__qualname__) + tuple(_key(a) for a in args)
    kernel = _FACTORIES.get(key)
    if kernel is None:
        kernel = _FACTORIES[key] = factory(*args)
    return kernel

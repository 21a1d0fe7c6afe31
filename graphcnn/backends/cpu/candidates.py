"""What can run each op on the cpu backend: per op, candidate implementations with the
predicate saying which nodes each computes, the cost model's gate saying whether it is
worth offering, a priority and a declared error growth (strategy.py chooses among them).
The shape rules are ops/conv_shapes.py's; the cost models the kernels' own."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numba
import numpy as np

from graphcnn.backends.cpu.accuracy import ERROR_GROWTH
from graphcnn.backends.cpu.kernels import (
    conv,
    conv_gemm,
    conv_gemm_grad,
    depthwise,
    implicit_gemm,
    nchw16c_conv,
    nchw16c_nchw,
    packed_gemm,
    packed_images,
    winograd,
    winograd4,
    winograd4_weight_grad,
    winograd_weight_grad,
)
from graphcnn.backends.cpu.registry import launch
from graphcnn.backends.cpu.shared_prepack import shared_prepack
from graphcnn.ops.conv_shapes import (
    conv_operands,
    is_depthwise_3x3,
    is_full_window,
    is_pointwise,
    is_unpadded_unit_stride,
)

Shape = tuple[int, ...]


@dataclass
class Site:
    """What a choice depends on: the op (a fused group's anchor), its attributes, the
    shapes and dtypes of its operands and output, and the operand arrays that exist
    already (constants; all of them when a kernel is called directly)."""
    op: str
    attrs: dict[str, Any]
    in_shapes: tuple[Shape, ...]
    in_dtypes: tuple[np.dtype, ...]
    out_shape: Shape
    out_dtype: np.dtype
    known: tuple[np.ndarray | None, ...]
    out: np.ndarray | None = None
    _scratch: tuple[list[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def frozen(self) -> bool:
        """The weight (operand 1) is a read-only constant, which a candidate transforms
        for its kernel once, when built (the weight gradient's operand 1 is the input x,
        never frozen)."""
        w = self.known[1] if len(self.known) > 1 else None
        return self.op != "conv2d_weight_grad" and w is not None and not w.flags.writeable

    def scratch(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Operands and output to measure candidates on: the known arrays, random ones of
        the node's shapes for the rest (made once)."""
        if self._scratch is None:
            rng = np.random.default_rng(0)
            ins = [a if a is not None else rng.standard_normal(s).astype(d)
                   for a, s, d in zip(self.known, self.in_shapes, self.in_dtypes)]
            out = self.out if self.out is not None else np.empty(self.out_shape, self.out_dtype)
            self._scratch = (ins, out)
        return self._scratch


def node_site(node: Any, buffers: dict[int, np.ndarray]) -> Site:
    """The Site of a graph node; `buffers` holds the constants' arrays by value id."""
    out = node.outputs[0]
    return Site(node.op, node.attrs, tuple(tuple(int(d) for d in v.shape) for v in node.inputs),
                tuple(np.dtype(v.dtype) for v in node.inputs),
                tuple(int(d) for d in out.shape), np.dtype(out.dtype),
                tuple(buffers.get(v.id) if v.node.op == "constant" else None
                      for v in node.inputs))


def array_site(op: str, ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> Site:
    return Site(op, attrs, tuple(a.shape for a in ins), tuple(a.dtype for a in ins), out.shape,
                out.dtype, tuple(ins), out)


def anchor_site(site: Site) -> Site:
    """A fused group's anchor as a Site of its own (the group's output is the anchor's)."""
    k = site.attrs["anchor_inputs"]
    return Site(site.attrs["anchor"], site.attrs["anchor_attrs"], site.in_shapes[:k],
                site.in_dtypes[:k], site.out_shape, site.out_dtype, site.known[:k], site.out)


@dataclass(frozen=True)
class Core:
    """A candidate with the node's arguments bound: run(ins, out) computes the op into out,
    its bias too if adds_bias (else the caller adds it: after a GEMM, or in a fused
    group's epilogue); store(ins, out, epilogue), where not None, computes it applying an
    nchw16c Epilogue as it stores; store_mask likewise a clip_grad. `prepacked`: the
    frozen weights in the kernel's form (arrays, or tuples of them), made when the Core
    was built and held by run and store;
    `prepack()` makes them again (an artifact's recording run calls it, so that the
    transforms' kernels are in the artifact)."""
    run: Callable[[list[np.ndarray], np.ndarray], None]
    adds_bias: bool = True
    store: Callable[[list[np.ndarray], np.ndarray, Any], None] | None = None
    # store_mask(ins, out, (y, low, high)): computes it, then keeps each output only where
    # low < y < high (a fused clip_grad), plane by plane while it is in cache.
    store_mask: Callable[[list[np.ndarray], np.ndarray, Any], None] | None = None
    prepacked: Any = ()
    prepack: Callable[[], Any] | None = None

    @property
    def packed_bytes(self) -> int:
        return array_bytes(self.prepacked)


def array_bytes(held: Any) -> int:
    """The bytes of the arrays in `held`: an array, or (nested) tuples of them."""
    if isinstance(held, np.ndarray):
        return int(held.nbytes)
    return sum(array_bytes(a) for a in held) if isinstance(held, tuple) else 0


def frozen_operands(site: Site, *indices: int) -> bool:
    """Whether the operands at `indices` that the node has are read-only constants (frozen
    weights, which a kernel may take transformed once, at build)."""
    for i in indices:
        array = site.known[i] if i < len(site.known) else None
        if i < len(site.in_shapes) and (array is None or array.flags.writeable):
            return False
    return True


def _always(site: Site) -> bool:
    return True


def _no_scratch(site: Site) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class Candidate:
    """One way to run an op: the offered candidates of the highest priority compete (the
    autotuner or the cost model breaks a tie); `rule` says why one wins alone. `scratch`:
    the workspaces (conv_gemm.workspace) one call takes for the site, role -> bytes in
    the order the kernel asks for them, by its own *_scratch formula."""
    name: str
    priority: int
    applies: Callable[[Site], bool]   # it computes this site (checked for saved names too)
    build: Callable[[Site], Core]
    offered: Callable[[Site], bool] = _always  # the cost model's gate
    rule: str = ""                              # why it wins alone at its priority
    scratch: Callable[[Site], dict[str, int]] = _no_scratch
    error_growth: float = 1.0  # its error, declared, over the float32 GEMM's (accuracy.py)


@dataclass(frozen=True)
class OpStrategy:
    """An op's candidates; for a tie, autotune's key and the cost model's default; and how
    to add the bias after a candidate that leaves it out (run alone, not fused)."""
    candidates: tuple[Candidate, ...]
    tune_key: Callable[[Site], tuple] = lambda site: ()    # autotune's key, for ties
    default: Callable[[list[str]], str] = lambda names: names[0]  # the cost model's pick
    add_bias: Callable[[np.ndarray, np.ndarray], None] | None = None


# ---- conv2d, conv2d_input_grad, conv2d_weight_grad (NCHW) ---------------------------------

# op -> (its im2col + GEMM function in conv_gemm.py or, the gradients', conv_gemm_grad.py;
# its Winograd one in winograd.py or, the weight gradient's, winograd_weight_grad.py), each
# called as f(ins[0], ins[1], out, attrs), without the bias.
GEMM_CONVS = {
    "conv2d": ("conv2d_gemm", "conv2d_winograd"),
    "conv2d_input_grad": ("conv2d_input_grad_gemm", "conv2d_input_grad_winograd"),
    "conv2d_weight_grad": ("conv2d_weight_grad_gemm", "conv2d_weight_grad_winograd"),
}

# algorithm -> op -> its function, looked up when an implementation is built (so tests
# may patch the modules' functions before they build a runner).
_GEMM_FUNCTIONS: dict[str, Callable[[str], Callable[..., None]]] = {
    "gemm": lambda op: getattr(conv_gemm if op == "conv2d" else conv_gemm_grad,
                               GEMM_CONVS[op][0]),
    "winograd": lambda op: getattr(winograd_weight_grad if op == "conv2d_weight_grad"
                                   else winograd, GEMM_CONVS[op][1]),
    "winograd-packed": lambda op: winograd.conv2d_winograd_packed,
    "winograd-f4": lambda op: (winograd4_weight_grad.conv2d_weight_grad_winograd4
                               if op == "conv2d_weight_grad" else winograd4.conv2d_winograd4),
    "packed": lambda op: packed_images.conv2d_packed,
    "packed-channels": lambda op: packed_images.conv2d_packed_channels,
    "implicit": lambda op: implicit_gemm.conv2d_implicit_gemm,
    "nchw16c": lambda op: nchw16c_nchw.conv2d_through_blocks,
}


def _operands(site: Site) -> tuple[Shape, Shape, tuple[int, int]]:
    return conv_operands(site.op, site.in_shapes, site.out_shape)


def _gemm_sized(site: Site) -> bool:
    """The cost model: enough work per group for a GEMM (conv_gemm.use_gemm)."""
    return conv_gemm.use_gemm(*_operands(site), site.attrs)


def winograd_fits(op: str, x_shape: Shape, w_shape: Shape, out_hw: tuple[int, int],
                  attrs: dict[str, Any], itemsize: int, frozen: bool) -> bool:
    """Whether Winograd is worth offering for this conv op. Each runs as a forward-shaped
    Winograd conv; the input gradient's maps the O channels of dy to the input's H, W."""
    threads = numba.get_num_threads()
    if op == "conv2d_input_grad":
        return winograd.input_grad_applies(w_shape, attrs) and winograd.worth_trying(
            x_shape[0], (x_shape[2], x_shape[3]), w_shape[0], itemsize, threads, frozen)
    return winograd.applies(x_shape, w_shape, attrs) and winograd.worth_trying(
        x_shape[0], out_hw, x_shape[1], itemsize, threads, frozen)


def _winograd_applies(site: Site) -> bool:
    x, w, _ = _operands(site)
    if site.op == "conv2d_input_grad":
        return winograd.input_grad_applies(w, site.attrs)
    return winograd.applies(x, w, site.attrs)


def _winograd_offered(site: Site) -> bool:
    return _gemm_sized(site) and winograd_fits(site.op, *_operands(site), site.attrs,
                                               site.out_dtype.itemsize, site.frozen)


def packed_fits(x_shape: Shape, w_shape: Shape, dtype: Any, attrs: dict[str, Any]) -> bool:
    """Whether the packed-weights microkernel GEMM (packed_gemm.py) computes this conv:
    float32, one group, not a window as large as the input (one dense GEMM already)."""
    return (np.dtype(dtype) == np.float32 and attrs["groups"] == 1
            and not is_full_window(x_shape, w_shape, attrs))


def _packed_applies(site: Site) -> bool:
    x, w, _ = _operands(site)
    return packed_fits(x, w, site.out_dtype, site.attrs)


def _implicit_applies(site: Site) -> bool:
    # A 1x1 stride-1 unpadded conv reads the image itself already: no table to gain by.
    return _packed_applies(site) and not is_pointwise(site.in_shapes[1], site.attrs)


def _winograd_packed_applies(site: Site) -> bool:
    return winograd.packed_applies(site.in_shapes[0], site.in_shapes[1], site.attrs,
                                   site.out_dtype)


def _winograd4_applies(site: Site) -> bool:
    x, w, _ = _operands(site)
    return winograd4.applies(x, w, site.attrs, site.out_dtype)


# The largest F(4x4) transform of a live weight (training) it is offered for: 128x128
# channels' (2.4 MB). A live weight is transformed at every call: 512x512's transform is
# 37.7 MB and takes 11 ms, and at 256@14 a pair of layers measured no faster on F(4x4).
LIVE_F4_MAX_BYTES = 36 * 128 * 128 * 4


def f4_weights(site: Site) -> bool:
    """Offered where the weight is transformed once, at build (frozen), or is small enough
    to transform at every call (LIVE_F4_MAX_BYTES)."""
    w = site.in_shapes[1]
    return site.frozen or 36 * w[0] * w[1] * 4 <= LIVE_F4_MAX_BYTES


def default_algorithm(names: list[str]) -> str:
    """The cost model's choice among the GEMM algorithms (GRAPHCNN_AUTOTUNE=0): Winograd
    wherever it is offered (its blocks wide enough), else im2col; the packed GEMMs only
    when measured."""
    return "winograd" if "winograd" in names else "gemm"


def algorithm_key(x_shape: Shape, w_shape: Shape, attrs: dict[str, Any], dtype: str,
                  frozen: bool) -> tuple:
    """Everything a conv op's speed depends on: autotune's key."""
    geometry = tuple((k, tuple(attrs[k]) if isinstance(attrs[k], (list, tuple)) else attrs[k])
                     for k in ("stride", "padding", "dilation", "groups"))
    return (tuple(x_shape), tuple(w_shape), geometry, dtype, "frozen" if frozen else "live")


def _conv_key(site: Site) -> tuple:
    x, w, _ = _operands(site)
    return algorithm_key(x, w, site.attrs, site.out_dtype.str, site.frozen)


# algorithm -> (op, frozen weight) -> the weight in the form its function takes as a fifth
# argument; a frozen weight is transformed so once, when the implementation is built.
_PREPACKS: dict[str, Callable[[str, np.ndarray], np.ndarray]] = {
    "winograd": lambda op, w: winograd.weight_transform(w, flip=op == "conv2d_input_grad"),
    "winograd-packed": lambda op, w: winograd.weight_transform(w, packed=True),
    "winograd-f4": lambda op, w: winograd4.weight_transform(w),
    "packed": lambda op, w: packed_gemm.packed_conv_weights(w),
    "packed-channels": lambda op, w: packed_gemm.packed_conv_weights(w, packed_gemm.LANES),
    "implicit": lambda op, w: packed_gemm.packed_conv_weights(w),
    "nchw16c": lambda op, w: nchw16c_conv.packed_weights(w),
}


def _winograd_scratch(site: Site, packed: bool = False) -> conv_gemm.Scratch:
    if site.op == "conv2d_weight_grad":
        return winograd_weight_grad.weight_grad_scratch(site.in_shapes[0], site.in_shapes[1],
                                                        site.in_dtypes[0])
    # the forward conv and the input gradient: a forward-shaped run, operand 0 to the output
    return winograd.run_scratch(site.in_shapes[0], site.out_shape, site.in_dtypes[0], packed)


# algorithm -> site -> the workspaces its function takes (the kernels' formulas).
_GEMM_SCRATCH: dict[str, Callable[[Site], conv_gemm.Scratch]] = {
    "gemm": lambda site: conv_gemm.gemm_scratch(site.op, *_operands(site), site.attrs,
                                                site.in_dtypes[0]),
    "winograd": _winograd_scratch,
    "winograd-packed": lambda site: _winograd_scratch(site, packed=True),
    "winograd-f4": lambda site: (
        winograd4_weight_grad.weight_grad_scratch(site.in_shapes[0], site.in_shapes[1])
        if site.op == "conv2d_weight_grad"
        else winograd4.run_scratch(site.in_shapes[0], site.out_shape)),
    "packed": lambda site: packed_images.conv_scratch(*_operands(site), site.attrs,
                                                      packed_gemm.MR),
    "packed-channels": lambda site: packed_images.conv_scratch(*_operands(site), site.attrs,
                                                               packed_gemm.LANES),
    "implicit": lambda site: implicit_gemm.implicit_scratch(*_operands(site)[1:], site.attrs,
                                                            _operands(site)[0][0]),
    "nchw16c": lambda site: nchw16c_nchw.through_blocks_scratch(*_operands(site), site.attrs),
}


def _gemm(name: str, applies: Callable[[Site], bool] = _always,
          offered: Callable[[Site], bool] = _always, priority: int = 3) -> Candidate:
    def build(site: Site) -> Core:
        f, attrs = _GEMM_FUNCTIONS[name](site.op), site.attrs
        transform, w = _PREPACKS.get(name), site.known[1]
        guard = (lambda run: conv.exact_on_nonfinite(site.op, attrs, site.out_dtype, run)) \
            if name.startswith("winograd") else (lambda run: run)  # NaN, Inf where they were
        if transform is None or w is None or not site.frozen:
            return Core(guard(lambda ins, out: f(ins[0], ins[1], out, attrs)),
                        adds_bias=False, store=_stored(name, site, None),
                        store_mask=_masked(name, site))
        op = site.op

        def prepack() -> np.ndarray:
            assert transform is not None and w is not None
            return transform(op, w)
        u = shared_prepack(name, (w,), (op,), prepack)
        return Core(guard(lambda ins, out: f(ins[0], ins[1], out, attrs, u)),
                    adds_bias=False, store=_stored(name, site, u), prepacked=u,
                    prepack=prepack)
    return Candidate(name, priority, applies, build,
                     offered=lambda site: _gemm_sized(site) and offered(site),
                     rule="cost model: enough work for a GEMM, the one GEMM algorithm "
                          "that fits",
                     scratch=lambda site: conv_gemm.scratch_bytes(_GEMM_SCRATCH[name](site)),
                     error_growth=ERROR_GROWTH[name])


# The GEMMs that apply a fused group's epilogue as they store (_stored).
STORES_EPILOGUE = frozenset({"packed", "packed-channels", "implicit", "nchw16c"})
# By op, the kernels that read an element's side just before they store that element, and
# write nothing to the output before: their output may be the side's own bytes (the
# memory plan's over_side), so a residual is read and written in one place. Not
# packed-channels: it stores its tiles, then runs the epilogue over its part of the
# output from the cache, when its own values lie where the side was. The blocked convs'
# entry is candidates_blocked's.
STORES_OVER_SIDE: dict[str, frozenset[str]] = {
    "conv2d": frozenset({"packed", "implicit", "nchw16c"})}


def _stored(name: str, site: Site, panels: np.ndarray | None
            ) -> Callable[[list[np.ndarray], np.ndarray, Any], None] | None:
    """The packed and implicit GEMMs' store for a forward conv: bias and a fused group's
    epilogue (relu, clip, a residual add) applied as each tile is stored (packed-channels:
    over each thread's part of the output once its tiles are stored, from the core's
    cache; nchw16c: as its blocks are copied to NCHW), so the group needs no second pass
    over its output from memory (the other algorithms: None, the generated epilogue)."""
    if name not in STORES_EPILOGUE or site.op != "conv2d":
        return None
    attrs = site.attrs
    conv = _GEMM_FUNCTIONS[name](site.op)

    def store(ins: list[np.ndarray], out: np.ndarray, epilogue: Any) -> None:
        conv(ins[0], ins[1], out, attrs, panels, ins[2] if len(ins) > 2 else None, epilogue)
    return store


def _masked(name: str, site: Site
            ) -> Callable[[list[np.ndarray], np.ndarray, Any], None] | None:
    """The GEMM input gradient's store with a fused clip_grad mask (Core.store_mask), where
    it applies the mask image by image: a 1x1 stride-1 conv of one group."""
    if (name != "gemm" or site.op != "conv2d_input_grad"
            or not conv_gemm_grad.masks_as_it_stores(site.in_shapes[1], site.attrs)):
        return None
    attrs = site.attrs

    def store_mask(ins: list[np.ndarray], out: np.ndarray, mask: Any) -> None:
        conv_gemm_grad.conv2d_input_grad_gemm(ins[0], ins[1], out, attrs, mask)
    return store_mask


def _with_bias(site: Site, launch_with: Callable[..., None]) -> Core:
    """Core of a direct conv2d kernel f(x, w, bias, has_bias, out, ...)."""
    if len(site.in_shapes) == 3:
        return Core(lambda ins, out: launch_with(ins[0], ins[1], ins[2], True, out))
    no_bias = conv.NO_BIAS[site.out_dtype]
    return Core(lambda ins, out: launch_with(ins[0], ins[1], no_bias, False, out))


def _direct(site: Site) -> Core:
    f, g = conv._conv2d, conv.geometry(site.attrs)
    return _with_bias(site, lambda x, w, b, has_b, out: launch(f, x, w, b, has_b, out, *g))


def _wide(site: Site) -> Core:
    f, groups = conv._conv2d_wide, site.attrs["groups"]
    return _with_bias(site, lambda x, w, b, has_b, out: launch(f, x, w, b, has_b, out, groups))


def _depthwise(site: Site) -> Core:
    f, attrs = depthwise.conv2d_depthwise3x3, site.attrs
    return _with_bias(site, lambda x, w, b, has_b, out: f(x, w, b, has_b, out, attrs))


def _direct_grad(site: Site) -> Core:
    f = conv._conv2d_input_grad if site.op == "conv2d_input_grad" else conv._conv2d_weight_grad
    g = conv.geometry(site.attrs)
    return Core(lambda ins, out: launch(f, ins[0], ins[1], out, *g))


def _add_channel_bias(out: np.ndarray, bias: np.ndarray) -> None:
    # Seen as (N, C, 1, H*W): one long vectorized loop per plane.
    launch(conv_gemm.add_channel_bias, out.reshape(out.shape[0], out.shape[1], 1, -1), bias)


def _depthwise_3x3(site: Site) -> bool:
    return is_depthwise_3x3(site.in_shapes[0][1], site.in_shapes[1], site.attrs)


_DIRECT = Candidate("direct", 0, _always, _direct_grad, rule="too little work for a GEMM",
                    error_growth=ERROR_GROWTH["direct"])
_GRAD_GEMMS = (_gemm("gemm", priority=1),
               _gemm("winograd", _winograd_applies, _winograd_offered, priority=1))

STRATEGIES: dict[str, OpStrategy] = {
    "conv2d": OpStrategy((
        _gemm("gemm"),
        _gemm("winograd", _winograd_applies, _winograd_offered),
        _gemm("winograd-packed", _winograd_packed_applies),
        _gemm("winograd-f4", _winograd4_applies, f4_weights),
        _gemm("packed", _packed_applies),
        _gemm("packed-channels", _packed_applies),
        _gemm("implicit", _implicit_applies),
        _gemm("nchw16c", _packed_applies),
        Candidate("depthwise-3x3", 2, _depthwise_3x3, _depthwise,
                  rule="depthwise 3x3 (too little work per group for a GEMM)"),
        Candidate("direct-wide", 1, lambda s: is_unpadded_unit_stride(s.attrs), _wide,
                  rule="too little work for a GEMM; stride 1 unpadded: one loop per tap",
                  error_growth=ERROR_GROWTH["direct"]),
        Candidate("direct", 0, _always, _direct, rule="too little work for a GEMM",
                  error_growth=ERROR_GROWTH["direct"]),
    ), _conv_key, default_algorithm, _add_channel_bias),
    # conv2d_input_grad and conv2d_weight_grad: candidates_grad.py (strategy.py adds them)
}

"""The cpu renderer of elementwise chains: one Numba kernel per group *structure*.

A fused group's chain is lowered once for every backend (graphcnn/backends/lowering.py:
SSA lines `t0 = ...` from the op registry's scalar formulas, attributes inlined); this
module renders those lines in a parallel loop nest, with libm calls written as their
vectorizable cpu versions (`CPU_SCALAR_CALLS`: `math.tanh` -> `fast_tanh`). For a group
with an anchor (conv2d, linear, a pooling op...; see graphcnn/ops/fused.py) the anchor
runs as its own parallel kernel (direct, or a GEMM) and the generated kernel is the
epilogue that follows, over the anchor's output while it is still in cache, e.g. for
conv + add + relu:

    @numba.njit(parallel=True, cache=True, nogil=True, error_model='numpy')
    def fused_kernel(out, s0, pre_bias, add_bias):
        for task in prange(out.shape[0] * out.shape[1]):
            p, q = task // out.shape[1], task % out.shape[1]
            for y in range(out.shape[2]):
                for x in range(out.shape[3]):
                    v = out[p, q, y, x]
                    if add_bias:                    # a GEMM's bias, added here
                        v = v + pre_bias[q]
                    a0 = s0[p, q, y, x]             # the residual (a broadcast view)
                    t0 = (v + a0)                   # add
                    t1 = (0.0 if t0 <= 0 else t0)   # relu
                    out[p, q, y, x] = t1

so the chain needs no intermediate buffers and one pass over the output. (Calling the
anchor's per-task function from inside this loop, which an earlier version did, measured
3x slower than the anchor's own kernel on LeNet-5's first convolution.) The loop nest is
one of three (`NESTS`): "plane" over a 4-D (N, C, H, W) view as above (the caller passes
(N, C, 1, H*W) views where it can: see kernels/fused.py), "row" over the 2-D output of a
linear/matmul anchor, and "flat" over 1-D views, for a group without an anchor whose
side inputs all have the output's shape: a single elementwise op (relu, add...) runs as
such a group, so its formula too is the registry's. Every conv2d + add + relu in every
model shares one kernel. The source is written to a file named by a hash of the
structure, under the Numba cache directory, so Numba's own on-disk cache (`cache=True`)
keeps the machine code across processes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
from typing import Any, Callable, Sequence

from graphcnn.backends.cpu.scalar_math import CPU_SCALAR_CALLS
from graphcnn.backends.lowering import lower, side_name

CODEGEN_VERSION = "7"

# Anchors with a 2-D output run the epilogue a row at a time; the rest have 4-D (N, C, H,
# W) outputs and run it a plane at a time, with a per-channel bias.
ROW_ANCHORS = ("linear", "matmul")

PLANE, ROW, FLAT = "plane", "row", "flat"
# nest -> (loop lines, the element index, the bias channel, the body's indent, the index of
# a row's first element: where a side constant along the inner loop is read, once per row)
NESTS: dict[str, tuple[list[str], str, str, str, str]] = {
    PLANE: (["    for task in prange(out.shape[0] * out.shape[1]):",
             "        p, q = task // out.shape[1], task % out.shape[1]",
             "        for y in range(out.shape[2]):",
             "            for x in range(out.shape[3]):"], "p, q, y, x", "q", " " * 16,
            "p, q, y, 0"),
    ROW: (["    for task in prange(out.shape[0]):",
           "        for x in range(out.shape[1]):"], "task, x", "x", " " * 12, "task, 0"),
    FLAT: (["    for i in prange(out.shape[0]):"], "i", "", " " * 8, ""),
}


# A concat anchor's nest (kernels/fused.py concat_epilogue_step): one part `src` of the
# concatenation at a time, its channels landing at c0 + q of the output and of the sides,
# so the concatenation itself is never written.
GATHER_NEST = (["    for task in prange(src.shape[0] * src.shape[1]):",
                "        p, q = task // src.shape[1], task % src.shape[1]",
                "        for y in range(src.shape[2]):",
                "            for x in range(src.shape[3]):"], "p, q + c0, y, x", "q + c0",
               " " * 16, "p, q + c0, y, 0")


def default_nest(anchor: str) -> str:
    """The nest of a group with this anchor ("" for none) when its sides broadcast."""
    return ROW if anchor in ROW_ANCHORS else PLANE


def generate_source(attrs: dict[str, Any], nest: str | None = None,
                    row_constant: Sequence[int] = (), gather: bool = False,
                    parallel: bool = True) -> str:
    """The module source of a group's kernel `fused_kernel(out, s0, s1, ...[, pre_bias,
    add_bias])`: s<k> are the side inputs (`lowering.side_refs` order) as views of the
    nest's rank; pre_bias/add_bias, for a group with an anchor, are a bias the anchor
    left out (a GEMM computes without it). The sides in `row_constant` (by k) do not change
    along the inner loop (a per-channel scale over a plane: a zero-stride view): each is
    read once per row, before the loop. Read per element, their zero stride, unknown when
    Numba compiles, keeps LLVM from vectorizing the loop (DenseNet's batch norm + relu
    over 256x56x56 took 0.40 ms on 2 cores, against 0.13 with the loads hoisted).
    With `gather` (a concat anchor, plane nest) the kernel is `fused_kernel(out, src, c0,
    s0, ...)`: the running value is read from `src`, one part of the concatenation, and
    written at channel c0 + q of `out` (GATHER_NEST). Without `parallel` the kernel runs on
    the calling thread (prange is range): for outputs of a few thousand elements
    (`runs_serially`), waking the threads costs more than the loop."""
    anchor = attrs["anchor"]
    nest = nest or default_nest(anchor)
    if anchor and nest == FLAT:
        raise ValueError("a group with an anchor needs its output's axes (a per-channel bias)")
    if gather and (not anchor or nest != PLANE):
        raise ValueError("gather is for an anchored group in the plane nest")
    chain = lower(attrs["steps"], anchored=bool(anchor))
    loops, index, channel, indent, row_start = GATHER_NEST if gather else NESTS[nest]
    hoisted = sorted(set(row_constant))
    if hoisted and nest == FLAT:
        raise ValueError("the flat nest has no rows: its sides all have the output's shape")
    sides = [f"s{k}" for k in range(len(chain.sides))]
    head = ["# Generated by graphcnn.backends.cpu.codegen; do not edit.",
            f"# group: {' -> '.join(_members(attrs))}",
            "import math", "import numba", "from numba import prange",
            "from graphcnn.backends.cpu.scalar_math import fast_tanh"]
    params = ", ".join(["out"] + (["src", "c0"] if gather else []) + sides
                       + (["pre_bias", "add_bias"] if anchor else []))
    inner = loops[-1]
    row_indent = inner[:len(inner) - len(inner.lstrip())]
    body = ["", "", f"@numba.njit(parallel={parallel}, cache=True, nogil=True, "
            "error_model='numpy')",
            f"def fused_kernel({params}):"] + loops[:-1]
    body += [f"{row_indent}{side_name(k)} = {sides[k]}[{row_start}]" for k in hoisted]
    body.append(inner)
    lines = []
    if anchor:
        lines += ["v = src[p, q, y, x]" if gather else f"v = out[{index}]", "if add_bias:",
                  f"    v = v + pre_bias[{channel}]"]
    lines += [f"{side_name(k)} = {s}[{index}]" for k, s in enumerate(sides) if k not in hoisted]
    lines += chain.render(CPU_SCALAR_CALLS)
    lines.append(f"out[{index}] = {chain.result}")
    body += [indent + line for line in lines]
    return "\n".join(head + body) + "\n"


# Below this many output elements a group's kernel runs serially. Right after a large
# kernel, a parallel 64-element loop took 11 us against 4 serially, an 8192-element one 12
# against 8; from 32768 elements the threads win. (In a network's flow such a step still
# takes tens of microseconds either way: its Python call runs cold after a kernel that
# streamed the caches.)
SERIAL_BELOW = 16384


def runs_serially(out_shape: Sequence[int]) -> bool:
    """Whether a group with this output shape gets the serial kernel."""
    return math.prod(out_shape) < SERIAL_BELOW


def _members(attrs: dict[str, Any]) -> list[str]:
    return ([attrs["anchor"]] if attrs["anchor"] else []) + [s[0] for s in attrs["steps"]]


def cache_dir() -> str:
    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "graphcnn", "numba")
    return os.path.join(root, "graphcnn_fused")


_LOADED: dict[str, Callable[..., None]] = {}


class GeneratedKernel:
    """A group's kernel by the digest of its source. The source is written and imported
    (giving a Numba dispatcher: compiled, or loaded from Numba's cache) on the first call
    through Numba, not before: a run on precompiled code (an artifact, see aot.py) never
    writes or imports it. `aot_name` is the name the dispatcher's function has."""

    def __init__(self, attrs: dict[str, Any], nest: str | None = None,
                 row_constant: Sequence[int] = (), gather: bool = False,
                 parallel: bool = True) -> None:
        self.source = generate_source(attrs, nest, row_constant, gather, parallel)
        self.digest = hashlib.sha256((CODEGEN_VERSION + self.source).encode()).hexdigest()[:20]
        self.aot_name = f"graphcnn_fused_{self.digest}.fused_kernel"
        # The dispatcher once a call has loaded it; a launch may pass it instead of this
        # object (its function has the same name), saving a call per launch.
        self.loaded: Callable[..., None] | None = None

    @property
    def dispatcher(self) -> Callable[..., None]:
        kernel = _LOADED.get(self.digest)
        return kernel if kernel is not None else _import_kernel(self.source, self.digest)

    def __call__(self, *args: Any) -> None:
        kernel = self.loaded
        if kernel is None:
            kernel = self.loaded = self.dispatcher
        return kernel(*args)


def _import_kernel(source: str, digest: str) -> Callable[..., None]:
    if digest in _LOADED:
        return _LOADED[digest]
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"fused_{digest}.py")
    if not os.path.exists(path):
        # Written once and never rewritten: Numba's cache index keys on the file's time.
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            handle.write(source)
        os.replace(tmp, path)
    name = f"graphcnn_fused_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the generated kernel {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[digest] = module.fused_kernel
    return module.fused_kernel

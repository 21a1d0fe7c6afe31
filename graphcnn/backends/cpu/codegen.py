"""Code generation for fused groups: one Numba kernel per group *structure*.

A group (see graphcnn/ops/fused.py) becomes Python source like

    @numba.njit(parallel=True, cache=True, nogil=True)
    def fused_kernel(out, s3, a0, a1, ...):
        for task in prange(out.shape[0] * out.shape[1]):
            anchor_task(task, a0, a1, ...)          # e.g. one conv2d output plane
            p, q = task // out.shape[1], task % out.shape[1]
            for y in range(out.shape[2]):
                for x in range(out.shape[3]):
                    v = out[p, q, y, x]
                    t0 = (v + s3[p, q, y, x])       # the residual add
                    t1 = (t0 if t0 > 0 else 0.0)    # relu
                    out[p, q, y, x] = t1

so the epilogue runs on each output plane (or row) right after the anchor computed it,
while it is still in cache: no extra pass over memory, no intermediate buffer. The
elementwise formulas come from the op registry (`OpDef.scalar`); anchor geometry is passed
as arguments, so every conv2d + add + relu in every model shares one kernel. The source is
written to a file named by a hash of the structure, under the Numba cache directory, so
Numba's own on-disk cache (`cache=True`) keeps the machine code across processes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from graphcnn.ops.registry import get_op

CODEGEN_VERSION = "2"


@dataclass(frozen=True)
class Anchor:
    """How a fused group calls its anchor: a per-task Numba function in `module`, the
    function that builds its arguments after `task`, and how a task maps to the output:
    'plane' (out[p, q, :, :] of a 4-D output) or 'row' (out[i, :] of a 2-D output)."""

    module: str
    task: Callable[[dict[str, Any]], str]
    args: str
    region: str


_CONV = "graphcnn.backends.cpu.kernels.conv"
_POOL = "graphcnn.backends.cpu.kernels.pool"
_DENSE = "graphcnn.backends.cpu.kernels.dense"

ANCHORS: dict[str, Anchor] = {
    "conv2d": Anchor(_CONV, lambda a: "conv2d_task", "conv2d_args", "plane"),
    "conv2d_input_grad": Anchor(_CONV, lambda a: "conv2d_input_grad_task",
                                "conv2d_input_grad_args", "plane"),
    "conv2d_weight_grad": Anchor(_CONV, lambda a: "conv2d_weight_grad_task",
                                 "conv2d_weight_grad_args", "plane"),
    "max_pool2d": Anchor(_POOL, lambda a: "max_pool2d_task", "max_pool2d_args", "plane"),
    "avg_pool2d": Anchor(_POOL, lambda a: "avg_pool2d_task", "avg_pool2d_args", "plane"),
    "max_pool2d_grad": Anchor(_POOL, lambda a: "max_pool2d_grad_task", "max_pool2d_grad_args",
                              "plane"),
    "avg_pool2d_grad": Anchor(_POOL, lambda a: "avg_pool2d_grad_task", "avg_pool2d_grad_args",
                              "plane"),
    "linear": Anchor(_DENSE, lambda a: "matmul_nt_task", "linear_args", "row"),
    "matmul": Anchor(_DENSE, lambda a: {(False, False): "matmul_nn_task",
                                        (False, True): "matmul_nt_task",
                                        (True, False): "matmul_tn_task",
                                        (True, True): "matmul_tt_task"}[
                                            (a["trans_a"], a["trans_b"])],
                     "matmul_args", "row"),
}


def side_refs(attrs: dict[str, Any]) -> list[int]:
    """The fused-node inputs the epilogue reads, in the order the kernel takes them."""
    return sorted({r for _, _, refs in attrs["steps"] for r in refs if r >= 0})


def _literal(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    raise TypeError(f"cannot inline attribute value {value!r} into generated code")


def epilogue_lines(attrs: dict[str, Any], index: str, first: str | None) -> list[str]:
    """Statements computing the chain at one element: `first` is the running value's
    initial expression (the anchor's output element), or None if the first step starts
    from inputs only. Ends with `out[index] = t<last>`."""
    lines = [] if first is None else [f"v = {first}"]
    running = None if first is None else "v"
    for k, (op, step_attrs, refs) in enumerate(attrs["steps"]):
        operands = [running if r < 0 else f"s{r}[{index}]" for r in refs]
        formula = get_op(op).scalar
        if formula is None:
            raise NotImplementedError(f"op {op!r} has no scalar formula; it cannot be fused")
        expr = formula.format(*operands, **{k2: _literal(v) for k2, v in step_attrs.items()})
        lines.append(f"t{k} = {expr}")
        running = f"t{k}"
    lines.append(f"out[{index}] = {running}")
    return lines


def generate_source(attrs: dict[str, Any]) -> str:
    anchor = ANCHORS[attrs["anchor"]] if attrs["anchor"] else None
    sides = [f"s{r}" for r in side_refs(attrs)]
    region = anchor.region if anchor else "plane"
    head = ["# Generated by graphcnn.backends.cpu.codegen; do not edit.",
            f"# group: {' -> '.join(_members(attrs))}",
            "import math", "import numba", "from numba import prange"]
    nargs = 0
    if anchor:
        head.append(f"from {anchor.module} import {anchor.task(attrs['anchor_attrs'])} "
                    f"as anchor_task")
        nargs = _anchor_arity(anchor, attrs)
    anchor_args = [f"a{i}" for i in range(nargs)]
    # run_anchor=False: the anchor's output was already computed another way (a GEMM,
    # kernels/conv.py run_as_gemm), and only its bias (pre_bias, if add_bias) and the
    # epilogue remain.
    control = ["run_anchor", "pre_bias", "add_bias"] if anchor else []
    params = ", ".join(["out"] + sides + control + anchor_args)
    body = ["", "", "@numba.njit(parallel=True, cache=True, nogil=True, fastmath=False)",
            f"def fused_kernel({params}):"]
    if region == "plane":
        body.append("    for task in prange(out.shape[0] * out.shape[1]):")
        if anchor:
            body += ["        if run_anchor:",
                     f"            anchor_task({', '.join(['task'] + anchor_args)})"]
        body += ["        p, q = task // out.shape[1], task % out.shape[1]",
                 "        for y in range(out.shape[2]):",
                 "            for x in range(out.shape[3]):"]
        index, indent = "p, q, y, x", " " * 16
    else:
        body.append("    for task in prange(out.shape[0]):")
        body += ["        if run_anchor:",
                 f"            anchor_task({', '.join(['task'] + anchor_args)})"]
        body.append("        for x in range(out.shape[1]):")
        index, indent = "task, x", " " * 12
    first = f"out[{index}]" if anchor else None
    lines = epilogue_lines(attrs, index, first)
    if anchor:
        channel = "q" if region == "plane" else "x"
        lines[1:1] = ["if add_bias:", f"    v = v + pre_bias[{channel}]"]
    body += [indent + line for line in lines]
    return "\n".join(head + body) + "\n"


def _members(attrs: dict[str, Any]) -> list[str]:
    return ([attrs["anchor"]] if attrs["anchor"] else []) + [s[0] for s in attrs["steps"]]


def _anchor_arity(anchor: Anchor, attrs: dict[str, Any]) -> int:
    """How many arguments the anchor's task function takes after `task`."""
    task_fn = getattr(importlib.import_module(anchor.module), anchor.task(attrs["anchor_attrs"]))
    return task_fn.py_func.__code__.co_argcount - 1


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

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.source = generate_source(attrs)
        self.digest = hashlib.sha256((CODEGEN_VERSION + self.source).encode()).hexdigest()[:20]
        self.aot_name = f"graphcnn_fused_{self.digest}.fused_kernel"

    @property
    def dispatcher(self) -> Callable[..., None]:
        kernel = _LOADED.get(self.digest)
        return kernel if kernel is not None else _import_kernel(self.source, self.digest)

    def __call__(self, *args: Any) -> None:
        return self.dispatcher(*args)


def load_kernel(attrs: dict[str, Any]) -> Callable[..., None]:
    """The compiled kernel of a group, generated and written once per structure."""
    return GeneratedKernel(attrs).dispatcher


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
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[digest] = module.fused_kernel
    return module.fused_kernel


def anchor_arguments(attrs: dict[str, Any], ins: list[np.ndarray], out: np.ndarray) -> tuple:
    if not attrs["anchor"]:
        return ()
    anchor = ANCHORS[attrs["anchor"]]
    build = getattr(importlib.import_module(anchor.module), anchor.args)
    return build(ins[:attrs["anchor_inputs"]], out, attrs["anchor_attrs"])

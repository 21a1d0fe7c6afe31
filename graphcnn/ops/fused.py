"""`fused`: a group of ops that runs as one kernel, made by the fusion pass.

A group is an optional *anchor* (conv2d, linear, a pooling op...: an op whose output loop
can take an elementwise epilogue) followed by a chain of elementwise *steps*. Each step
reads the running value (ref -1) and/or inputs of the fused node (ref k >= 0):

    attrs = {"anchor": "conv2d", "anchor_attrs": {...}, "anchor_inputs": 3,
             "steps": (("add", {}, (-1, 3)), ("relu", {}, (-1,)))}

The fused node's inputs are the anchor's inputs, then the steps' side inputs. Without an
anchor, the first step starts the chain from inputs only. The shape rule and the reference
replay the member ops' own rules, so a group means exactly what its ops mean.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.node import Node
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, get_op, register_op

Step = tuple[str, dict[str, Any], tuple[int, ...]]


def _steps(value: Any) -> tuple[Step, ...]:
    steps = tuple((str(op), dict(attrs), tuple(int(r) for r in refs))
                  for op, attrs, refs in value)
    if not steps:
        raise ShapeError("a fused group needs at least one step")
    return steps


def _operands(refs: tuple[int, ...], running: Any, inputs: list[Any]) -> list[Any]:
    return [running if r < 0 else inputs[r] for r in refs]


def _infer_step(op: str, in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    """One step's output type, its arity and attributes checked as a node's are (a group
    read back from an artifact holds its steps as the file says)."""
    opdef = get_op(op)
    opdef.check_arity(len(in_types))
    return opdef.infer(in_types, opdef.normalize_attrs(attrs, in_types))[0]


def fused_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    running = None
    if attrs["anchor"]:
        head = in_types[:attrs["anchor_inputs"]]
        running = _infer_step(attrs["anchor"], head, attrs["anchor_attrs"])
    for op, step_attrs, refs in attrs["steps"]:
        if running is None and -1 in refs:
            raise ShapeError(f"step {op} reads the running value before anything made it")
        if any(r >= len(in_types) for r in refs):
            raise ShapeError(f"step {op} reads input {max(refs)} of {len(in_types)}")
        running = _infer_step(op, _operands(refs, running, in_types), step_attrs)
    if running is None:
        raise ShapeError("a fused group needs an anchor or at least one step")
    return running


def fused_ref(*arrays: np.ndarray, anchor: str, anchor_attrs: dict[str, Any],
              anchor_inputs: int, steps: tuple[Step, ...]) -> np.ndarray:
    running = None
    if anchor:
        running = get_op(anchor).run_ref(arrays[:anchor_inputs], anchor_attrs)[0]
    for op, step_attrs, refs in steps:
        running = get_op(op).run_ref(_operands(refs, running, list(arrays)), step_attrs)[0]
    if running is None:
        raise ValueError("a fused group needs an anchor or at least one step")
    return running


def fused_vjp(graph: Any, node: Any, cotangents: list[Any]) -> list[Any]:
    raise NotImplementedError("fused groups are formed after differentiation; differentiate "
                              "the graph before running the fusion pass")


def member_ops(attrs: dict[str, Any]) -> list[str]:
    """The ops inside a group, in order (for printing and inspection)."""
    return ([attrs["anchor"]] if attrs["anchor"] else []) + [s[0] for s in attrs["steps"]]


def op_label(node: Node) -> str:
    """``conv2d``, or ``fused[conv2d + add + relu]`` for a fused group: how inspection and
    kernel profiles name a node."""
    if node.op == "fused":
        return "fused[" + " + ".join(member_ops(node.attrs)) + "]"
    return node.op


register_op("fused", inputs=("xs*",), shape=fused_shape, ref=fused_ref, vjp=fused_vjp,
            kind=FusionKind.OPAQUE,
            attrs={"anchor": Attr("", str), "anchor_attrs": Attr({}, dict),
                   "anchor_inputs": Attr(0, int), "steps": Attr(convert=_steps)},
            doc="A fused group: an optional anchor op and a chain of elementwise steps.")

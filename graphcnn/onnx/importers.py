"""The op importers, registered by ONNX op type.

    importer("Conv")(fn)   fn(ctx, node, inputs) -> output values; builds DSL ops
    folder("Gather")(fn)   fn(ctx, node, inputs) -> output values; runs when every input
                           is folded (known at import time), evaluating with NumPy

An op with a folder and no importer (Gather, Slice, ConstantOfShape, ...) is supported in
shape computations only. `inputs` holds a value per ONNX input, None where omitted.

This module holds the tables and the decorators only; the op modules (ops_*.py) fill the
tables when they are imported, and dispatch.py imports them all and runs a node.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from graphcnn.onnx.context import Folded, ImportContext, Runtime  # noqa: F401 (Values)
from graphcnn.onnx.reader import OnnxNode

Values = Sequence["Runtime | Folded | None"]
# a folder runs only when every input given is folded (dispatch.py)
FoldedValues = Sequence["Folded | None"]
OpFn = Callable[[ImportContext, OnnxNode, Values], list[Any]]
FoldFn = Callable[[ImportContext, OnnxNode, FoldedValues], list[Any]]
# the decorators return the function as it is (Identity's is both an importer and a folder)
ImportT = TypeVar("ImportT", bound=OpFn)
FoldT = TypeVar("FoldT", bound=FoldFn)

IMPORTERS: dict[str, OpFn] = {}
FOLDERS: dict[str, FoldFn] = {}
# op type -> what of it graphcnn does not import, in a few words (docs/onnx_ops.md, made
# by graphcnn/onnx/support_table.py, lists every op with its limits)
LIMITS: dict[str, str] = {}


def importer(*op_types: str, limits: str = "") -> Callable[[ImportT], ImportT]:
    """Register fn as the importer of `op_types`; `limits`: what of them it refuses."""
    def register(fn: ImportT) -> ImportT:
        for op in op_types:
            if op in IMPORTERS:
                raise ValueError(f"ONNX importer for {op!r} registered twice")
            IMPORTERS[op] = fn
            if limits:
                LIMITS[op] = limits
        return fn
    return register


def folder(*op_types: str) -> Callable[[FoldT], FoldT]:
    def register(fn: FoldT) -> FoldT:
        for op in op_types:
            if op in FOLDERS:
                raise ValueError(f"ONNX folder for {op!r} registered twice")
            FOLDERS[op] = fn
        return fn
    return register


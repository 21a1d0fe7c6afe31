"""1-D Conv, ConvTranspose, MaxPool and AveragePool (N, C, L inputs) as their 2-D
importers on N, C, 1, L: the input gets a unit height, the attributes a leading unit entry
(kernel 1, stride 1, dilation 1, no padding on H), the weight (M, C/group, k) is viewed as
(M, C/group, 1, k) (it stays one parameter under its ONNX name, in ONNX's 3-D layout), and
the output loses the height again."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from graphcnn.onnx.context import PROBES, ImportContext, Runtime
from graphcnn.onnx.importers import Values
from graphcnn.onnx.reader import OnnxNode

# attribute -> the value of its H entry
_UNIT_ENTRY = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_padding": 0,
               "output_shape": 1}


def _lifted_attrs(ctx: ImportContext, node: OnnxNode) -> dict[str, Any]:
    attrs = dict(node.attrs)
    for name, unit in _UNIT_ENTRY.items():
        if name in attrs:
            values = [int(v) for v in attrs[name]]
            if name == "output_shape":
                values = values[-1:]   # it may hold N and C too (a 3-D shape)
            if len(values) != 1:
                raise ctx.error(f"attribute {name} must have 1 value for a 1-D input, got "
                                f"{values}")
            attrs[name] = [unit] + values
    if "pads" in attrs:
        pads = [int(p) for p in attrs["pads"]]
        if len(pads) != 2:
            raise ctx.error(f"pads must have 2 values (begin, end) for a 1-D input, got {pads}")
        attrs["pads"] = [0, pads[0], 0, pads[1]]
    return attrs


def import_1d(ctx: ImportContext, node: OnnxNode, ins: Values,
              import_2d: Callable[[ImportContext, OnnxNode, Values], list[Any]]) -> list[Any]:
    """Run `import_2d` on the node lifted to 2-D (see the module docstring)."""
    x = ctx.runtime(ins[0], "X")
    x4 = ctx.reshape_to(x, [s[:2] + (1,) + s[2:] for s in (x.shape_at(p) for p in PROBES)])
    lifted: list[Any] = [x4] + list(ins[1:])
    if node.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1] is not None:
        w = ctx.runtime(ins[1], "weight W")
        if w.ndim != 3 or w.batch_axis is not None:
            raise ctx.error(f"the weight of a 1-D {node.op_type} must be 3-D, got "
                            f"{w.shape_at(PROBES[0])}")
        shape = w.tensor.type.shape
        lifted[1] = ctx.reshape_to(w, [shape[:2] + (1,) + shape[2:]] * 2)
    node2d = dataclasses.replace(node, attrs=_lifted_attrs(ctx, node))
    y = import_2d(ctx, node2d, lifted)[0]
    if not isinstance(y, Runtime) or y.ndim != 4:
        raise ctx.error("the 2-D import of this 1-D op did not give a 4-D tensor")
    return [ctx.reshape_to(y, [s[:2] + s[3:] for s in (y.shape_at(p) for p in PROBES)])]

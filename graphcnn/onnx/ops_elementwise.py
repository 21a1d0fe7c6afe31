"""Importers of the elementwise ops (activations, arithmetic), Softmax/LogSoftmax,
Identity, Dropout and Cast; and the NumPy folders of the arithmetic that shape
computations use."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.dsl import constant
from graphcnn.onnx.context import PROBES, Folded, ImportContext, Runtime, fold
from graphcnn.onnx.importers import FoldedValues, Values, folder, importer
from graphcnn.onnx.reader import OnnxNode


def _const(value: float) -> Any:
    return constant(np.float32(value))


# ---- activations -------------------------------------------------------------------------------

@importer("Relu")
def relu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary("relu", ins[0])]


@importer("Sigmoid")
def sigmoid(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary("sigmoid", ins[0])]


@importer("Tanh")
def tanh(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary("tanh", ins[0])]


@importer("LeakyRelu")
def leaky_relu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary("leaky_relu", ins[0], alpha=float(node.attrs.get("alpha", 0.01)))]


@importer("Clip", limits="constant min and max")
def clip(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    # opset >= 11: min and max are optional inputs that must be known at import time
    low = ctx.scalar(ins[1], "min") if len(ins) > 1 and ins[1] is not None else -np.inf
    high = ctx.scalar(ins[2], "max") if len(ins) > 2 and ins[2] is not None else np.inf
    # ONNX: where min > max every output is max (NumPy's clip); graphcnn's clip with
    # low > high would give low
    low = min(low, high)
    return [ctx.unary("clip", ins[0], low=low, high=high)]


def _hard_sigmoid(ctx: ImportContext, x: Runtime, alpha: float, beta: float) -> Runtime:
    scaled = ctx.apply("add", [ctx.apply("mul", [x.tensor, _const(alpha)]), _const(beta)])
    return Runtime(ctx.apply("clip", [scaled], low=0.0, high=1.0), x.batch_axis)


@importer("HardSigmoid")
def hard_sigmoid(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """max(0, min(1, alpha * x + beta))"""
    return [_hard_sigmoid(ctx, ctx.runtime(ins[0]), float(node.attrs.get("alpha", 0.2)),
                          float(node.attrs.get("beta", 0.5)))]


@importer("HardSwish")
def hard_swish(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """x * HardSigmoid(x; alpha=1/6, beta=0.5)"""
    x = ctx.runtime(ins[0])
    gate = _hard_sigmoid(ctx, x, 1.0 / 6.0, 0.5)
    return [Runtime(ctx.apply("mul", [x.tensor, gate.tensor]), x.batch_axis)]


@importer("PRelu")
def prelu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """max(x, 0) + slope * min(x, 0) = relu(x) - slope * relu(-x); slope broadcasts."""
    x = ctx.runtime(ins[0])
    slope = ctx.runtime(ins[1], "slope")
    negative = ctx.unary("relu", Runtime(ctx.apply("mul", [x.tensor, _const(-1.0)]),
                                         x.batch_axis))
    scaled = ctx.binary("mul", negative, slope)
    return [ctx.binary("sub", ctx.unary("relu", x), scaled)]


# ---- arithmetic ---------------------------------------------------------------------------------

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


@importer(*_BINARY)
def binary(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    for v, what in zip(ins, "AB"):
        if isinstance(v, Folded) and v.values[0].dtype.kind not in "f":
            raise ctx.error(f"input {what} is an integer tensor used with a float tensor")
    return [ctx.binary(_BINARY[node.op_type], ins[0], ins[1])]


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":   # ONNX integer Div truncates
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


_NUMPY: dict[str, Callable[..., np.ndarray]] = {"Add": np.add, "Sub": np.subtract,
                                                 "Mul": np.multiply, "Div": _divide}


@folder(*_BINARY)
def fold_binary(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    a, b = ctx.required(ins[0], "input A"), ctx.required(ins[1], "input B")
    for x, y in zip(a.values, b.values):
        try:
            shape = np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            raise ctx.error(f"shapes {x.shape} and {y.shape} do not broadcast") from None
        ctx.check_size(shape, np.result_type(x, y), "the folded output")
    return [fold(_NUMPY[node.op_type], ins[0], ins[1])]


# ---- softmax ------------------------------------------------------------------------------------

def _softmax(ctx: ImportContext, node: OnnxNode, ins: Values, op: str) -> list[Any]:
    x = ctx.runtime(ins[0])
    ndim = x.ndim
    if node.opset >= 13:
        axis = int(node.attrs.get("axis", -1))
    else:
        axis = int(node.attrs.get("axis", 1))
    if not -ndim <= axis < ndim:
        raise ctx.error(f"axis {axis} is out of range for a {ndim}-D input")
    axis %= ndim
    if node.opset >= 13 or axis == ndim - 1:
        return [ctx.unary(op, x, axis=axis)]
    # opset < 13: the input is seen as 2-D (prod(shape[:axis]), prod(shape[axis:]))
    shapes = [x.shape_at(p) for p in PROBES]
    flat = ctx.reshape_to(x, [(int(np.prod(s[:axis])), int(np.prod(s[axis:]))) for s in shapes])
    y = ctx.unary(op, flat, axis=1)
    return [ctx.reshape_to(y, shapes)]


@importer("Softmax")
def softmax(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return _softmax(ctx, node, ins, "softmax")


@importer("LogSoftmax")
def log_softmax(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return _softmax(ctx, node, ins, "log_softmax")


# ---- pass-through -----------------------------------------------------------------------------

@importer("Identity")
@folder("Identity")
def identity(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ins[0]]


@importer("Dropout", limits="inference (the identity); not training_mode")
@folder("Dropout")
def dropout(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """Inference: the identity (its mask output is not supported)."""
    if len(ins) > 2 and ins[2] is not None and bool(ctx.scalar(ins[2], "training_mode")):
        raise ctx.error("training_mode=True is not supported (inference graphs only)")
    return [ins[0]]


# ONNX TensorProto data types -> NumPy
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


@importer("Cast", limits="tensors to float32; other types in shape computations")
def cast(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0])
    if int(node.attrs.get("to", 0)) != 1 or x.tensor.dtype != "float32":
        raise ctx.error("graphcnn casts tensors computed at run time only to float32 "
                        "(a no-op); other casts are supported in shape computations")
    return [x]


@folder("Cast")
def fold_cast(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    to = int(node.attrs.get("to", 0))
    if to not in ONNX_DTYPES:
        raise ctx.error(f"cast to ONNX data type {to} is not supported")
    x = ctx.required(ins[0])
    ctx.check_folded([v.shape for v in x.values], ONNX_DTYPES[to])
    return [fold(lambda a: a.astype(ONNX_DTYPES[to]), ins[0])]

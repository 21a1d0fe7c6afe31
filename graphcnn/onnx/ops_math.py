"""Importers of the unary math ops (Abs, Neg, Exp, Log, Sqrt, Reciprocal, Erf), the smooth
activations (Elu, Selu, Softplus, Softsign, Gelu, Mish), Pow, and the variadic
Sum/Max/Min/Mean (chains of the broadcasting add/maximum/minimum, then a division by the
count for Mean)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.onnx.context import Folded, ImportContext, Runtime
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.reader import OnnxNode
from graphcnn.ops.activations import SELU_ALPHA, SELU_SCALE

_UNARY = {"Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Reciprocal": "reciprocal", "Erf": "erf", "Softsign": "softsign", "Mish": "mish"}


@importer(*_UNARY)
def unary(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary(_UNARY[node.op_type], ins[0])]


@importer("Elu")
def elu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [ctx.unary("elu", ins[0], alpha=float(node.attrs.get("alpha", 1.0)), scale=1.0)]


@importer("Selu")
def selu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    # ONNX's defaults are float32 roundings of SELU's constants; the attributes say which
    return [ctx.unary("elu", ins[0], alpha=float(node.attrs.get("alpha", SELU_ALPHA)),
                      scale=float(node.attrs.get("gamma", SELU_SCALE)))]


@importer("Softplus")
def softplus(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """log(exp(x) + 1), with no threshold (the formula never overflows)."""
    return [ctx.unary("softplus", ins[0], beta=1.0, threshold=float("inf"))]


@importer("Gelu")
def gelu(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"approximate={approximate!r} is not one of 'none', 'tanh'")
    return [ctx.unary("gelu" if approximate == "none" else "gelu_tanh", ins[0])]


@importer("Pow")
def pow_(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """Base and exponent broadcast; an integer exponent (initializer or constant) is read
    as float32, as the float base computes with it."""
    base = ctx.required(ins[0], "input X")
    if isinstance(base, Folded) and base.values[0].dtype.kind != "f":
        raise ctx.error("input X is an integer tensor; graphcnn computes Pow on float "
                        "tensors")
    exponent = ctx.required(ins[1], "input Y")
    if isinstance(exponent, Folded) and exponent.is_static and exponent.values[0].size == 1 \
            and float(exponent.values[0].reshape(-1)[0]) == 2.0 and exponent.ndim == 0:
        # x ** 2 (variance in decomposed normalizations) as x * x: the same value, pow's
        # correctly rounded square, without a libm call per element
        x = ctx.runtime(base)
        return [ctx.binary("mul", x, x)]
    return [ctx.binary("pow", base, exponent)]


_VARIADIC = {"Sum": "add", "Max": "maximum", "Min": "minimum", "Mean": "add"}


@importer(*_VARIADIC)
def variadic(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """Sum/Max/Min/Mean of one or more inputs, broadcasting as the binary ops do."""
    given = [ctx.required(v, f"input {k}") for k, v in enumerate(ins)]
    if not given:
        raise ctx.error("needs at least one input")
    for k, v in enumerate(given):
        if isinstance(v, Folded) and v.values[0].dtype.kind != "f":
            raise ctx.error(f"input {k} is an integer tensor; graphcnn computes "
                            f"{node.op_type} on float tensors")
    acc: Runtime = ctx.runtime(given[0], "input 0")
    for v in given[1:]:
        acc = ctx.binary(_VARIADIC[node.op_type], acc, v)
    if node.op_type == "Mean" and len(given) > 1:
        acc = ctx.binary("div", acc, Folded.static(np.asarray(len(given), np.float32)))
    return [acc]

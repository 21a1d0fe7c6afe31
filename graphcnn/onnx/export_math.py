"""ONNX forms of the unary math ops, the smooth activations, pow, maximum and minimum
(graphcnn/ops/activations.py, binary_math.py), added to the exporter's table.

Gelu (opset 20) and Mish (opset 18) are written as their own ONNX ops where the opset
has them, else as the few ops they are made of (Erf or Tanh, Softplus, Mul, Add)."""
from __future__ import annotations

from graphcnn.ir.graph import Node
from graphcnn.onnx.errors import OnnxExportError
from graphcnn.onnx.exporter import ExportContext, exporter
from graphcnn.ops.activations import _GELU_C, _GELU_K, _SQRT1_2

_SAME_NAME = {"abs": "Abs", "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt",
              "reciprocal": "Reciprocal", "erf": "Erf", "softsign": "Softsign", "pow": "Pow",
              "maximum": "Max", "minimum": "Min"}

# ONNX Softplus has no threshold; below this one the two differ by more than float32 sees
# (x vs log1p(exp(x)) differ by exp(-threshold) at the switch)
_MIN_SOFTPLUS_THRESHOLD = 14.0


@exporter(*_SAME_NAME)
def _same_name(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit(_SAME_NAME[node.op], ins, [out])


@exporter("elu")
def _elu(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    alpha, scale = float(node.attrs["alpha"]), float(node.attrs["scale"])
    if scale == 1.0:
        ctx.emit("Elu", ins, [out], alpha=alpha)
    else:
        ctx.emit("Selu", ins, [out], alpha=alpha, gamma=scale)


def _binary(ctx: ExportContext, op: str, a: str, b: str, out: str | None = None) -> str:
    out = out or ctx.fresh(op.lower())
    ctx.emit(op, [a, b], [out])
    return out


def _unary(ctx: ExportContext, op: str, x: str, out: str | None = None) -> str:
    out = out or ctx.fresh(op.lower())
    ctx.emit(op, [x], [out])
    return out


@exporter("softplus")
def _softplus(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    beta, threshold = float(node.attrs["beta"]), float(node.attrs["threshold"])
    if threshold < _MIN_SOFTPLUS_THRESHOLD:
        raise OnnxExportError(f"softplus with threshold={threshold} has no ONNX form (ONNX "
                              f"Softplus has no threshold; {_MIN_SOFTPLUS_THRESHOLD:g} or "
                              f"more exports)")
    if beta == 1.0:
        ctx.emit("Softplus", ins, [out])
        return
    scaled = _binary(ctx, "Mul", ins[0], ctx.scalar(beta, "softplus_beta"))
    _binary(ctx, "Div", _unary(ctx, "Softplus", scaled), ctx.scalar(beta, "softplus_beta"),
            out)


@exporter("gelu", "gelu_tanh")
def _gelu(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    exact = node.op == "gelu"
    if ctx.opset >= 20:
        ctx.emit("Gelu", ins, [out], approximate="none" if exact else "tanh")
        return
    x = ins[0]
    if exact:   # 0.5 x (1 + erf(x / sqrt 2))
        core = _unary(ctx, "Erf", _binary(ctx, "Mul", x, ctx.scalar(_SQRT1_2, "gelu_c")))
    else:       # 0.5 x (1 + tanh(k (x + c x^3)))
        cube = _binary(ctx, "Mul", _binary(ctx, "Mul", x, x), x)
        inner = _binary(ctx, "Add", x, _binary(ctx, "Mul", cube, ctx.scalar(_GELU_C, "gelu_c")))
        core = _unary(ctx, "Tanh", _binary(ctx, "Mul", inner, ctx.scalar(_GELU_K, "gelu_k")))
    half_x = _binary(ctx, "Mul", x, ctx.scalar(0.5, "half"))
    _binary(ctx, "Mul", half_x, _binary(ctx, "Add", core, ctx.scalar(1.0, "one")), out)


@exporter("mish")
def _mish(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    if ctx.opset >= 18:
        ctx.emit("Mish", ins, [out])
        return
    _binary(ctx, "Mul", ins[0], _unary(ctx, "Tanh", _unary(ctx, "Softplus", ins[0])), out)


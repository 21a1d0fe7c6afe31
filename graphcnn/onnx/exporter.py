"""`gc.onnx.save`: a graphcnn Model out as an ONNX file that ONNX Runtime runs.

The exporter walks the model's inference graph with its parameters kept as fed values
(`model.graph(training=False, frozen=False)`): each parameter becomes an initializer under
its graphcnn name, each constant an initializer, and each graphcnn op one or a few ONNX
nodes (the table EXPORTERS). The batch dimension is dynamic ('N') unless a batch size is
given.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.model import Model
from graphcnn.onnx.errors import OnnxExportError

MIN_EXPORT_OPSET, MAX_EXPORT_OPSET = 13, 21
BATCH_DIM = "N"


class ExportContext:
    def __init__(self, graph: Graph, params: dict[str, np.ndarray], opset: int,
                 batch_size: int | None) -> None:
        from onnx import helper
        self.helper = helper
        self.graph = graph
        self.params = params
        self.opset = opset
        self.batch_size = batch_size      # None: the batch dimension is dynamic
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.names: dict[int, str] = {}   # value id -> ONNX name
        self.other: Graph | None = None   # the graph at another batch size (dynamic batch)
        self._count = 0

    def twin(self, node: Node) -> Node:
        """The node in the model's graph at another batch size (the same node when the
        batch is fixed): what differs between the two depends on the batch."""
        return self.other.nodes[node.id] if self.other is not None else node

    def name(self, value: Value) -> str:
        return self.names[value.id]

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def initializer(self, array: np.ndarray, hint: str, name: str | None = None) -> str:
        name = name or self.fresh(hint)
        self.initializers[name] = np.asarray(array)
        return name

    def ints(self, values: Any, hint: str) -> str:
        return self.initializer(np.asarray(list(values), np.int64), hint)

    def scalar(self, value: float, hint: str) -> str:
        return self.initializer(np.asarray(value, np.float32), hint)

    def emit(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op_type, inputs, outputs,
                                                name=self.fresh(op_type), **attrs))


Exporter = Callable[[ExportContext, Node, list[str], str], None]
EXPORTERS: dict[str, Exporter] = {}


def exporter(*ops: str) -> Callable[[Exporter], Exporter]:
    def register(fn: Exporter) -> Exporter:
        for op in ops:
            EXPORTERS[op] = fn
        return fn
    return register


# ---- the op table ---------------------------------------------------------------------------

_SAME_NAME = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "add": "Add",
              "sub": "Sub", "mul": "Mul", "div": "Div"}


@exporter(*_SAME_NAME)
def _simple(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit(_SAME_NAME[node.op], ins, [out])


@exporter("leaky_relu")
def _leaky_relu(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("LeakyRelu", ins, [out], alpha=float(node.attrs["alpha"]))


@exporter("clip")
def _clip(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    low, high = node.attrs["low"], node.attrs["high"]
    ctx.emit("Clip", [ins[0], ctx.scalar(low, "clip_min") if np.isfinite(low) else "",
                      ctx.scalar(high, "clip_max") if np.isfinite(high) else ""], [out])


@exporter("softmax", "log_softmax")
def _softmax(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    op = "Softmax" if node.op == "softmax" else "LogSoftmax"
    ctx.emit(op, ins, [out], axis=int(node.attrs["axis"]))


def _onnx_pads(pads4: tuple[int, int, int, int]) -> list[int]:
    top, bottom, left, right = pads4
    return [top, left, bottom, right]


@exporter("conv2d")
def _conv2d(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    ctx.emit("Conv", ins, [out], kernel_shape=list(node.inputs[1].shape[2:]),
             strides=list(a["stride"]), pads=_onnx_pads(a["padding"]),
             dilations=list(a["dilation"]), group=int(a["groups"]))


@exporter("conv2d_input_grad")
def _conv_transpose(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    in_hw, kernel = node.inputs[0].shape[2:], node.inputs[1].shape[2:]
    pads = a["padding"]
    begin_end = ((pads[0], pads[1]), (pads[2], pads[3]))
    output_padding = []
    for i, o, k, s, d, (pb, pe) in zip(in_hw, a["input_hw"], kernel, a["stride"],
                                       a["dilation"], begin_end):
        extra = o - (s * (i - 1) + (k - 1) * d + 1 - pb - pe)
        if not 0 <= extra < max(s, d):
            raise OnnxExportError(f"conv2d_input_grad with input_hw {a['input_hw']} has no "
                                  f"ConvTranspose form (output_padding {extra})")
        output_padding.append(extra)
    ctx.emit("ConvTranspose", ins, [out], kernel_shape=list(kernel), strides=list(a["stride"]),
             pads=_onnx_pads(pads), dilations=list(a["dilation"]), group=int(a["groups"]),
             output_padding=output_padding)


@exporter("max_pool2d", "avg_pool2d")
def _pool(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    ph, pw = a["padding"]
    attrs: dict[str, Any] = dict(kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
                                 pads=[ph, pw, ph, pw], ceil_mode=int(a["ceil_mode"]))
    if node.op == "max_pool2d":
        ctx.emit("MaxPool", ins, [out], dilations=list(a["dilation"]), **attrs)
    else:
        ctx.emit("AveragePool", ins, [out], count_include_pad=int(a["count_include_pad"]),
                 **attrs)


@exporter("global_avg_pool2d")
def _global_avg_pool(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("GlobalAveragePool", ins, [out])


@exporter("linear")
def _linear(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("Gemm", ins, [out], transB=1)


@exporter("matmul")
def _matmul(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("Gemm", ins, [out], transA=int(node.attrs["trans_a"]),
             transB=int(node.attrs["trans_b"]))


@exporter("batch_norm")
def _batch_norm(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("BatchNormalization", ins, [out], epsilon=float(node.attrs["eps"]),
             momentum=1.0 - float(node.attrs["momentum"]))


@exporter("group_norm")
def _group_norm(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    """InstanceNormalization when every channel is a group; else InstanceNormalization of
    x reshaped to (N, G, -1) with an identity affine, reshaped back and then scaled and
    shifted per channel (GroupNormalization needs opset 21 for a per-channel scale)."""
    x = node.inputs[0]
    groups, eps = node.attrs["num_groups"], float(node.attrs["eps"])
    channels = x.shape[1]
    if groups == channels and x.type.ndim >= 3:
        ctx.emit("InstanceNormalization", ins, [out], epsilon=eps)
        return
    rows = ctx.fresh("group_rows")
    ctx.emit("Reshape", [ins[0], ctx.ints([0, groups, -1], "shape")], [rows])
    normed = ctx.fresh("group_normed")
    ones = ctx.initializer(np.ones(groups, np.float32), "group_scale")
    zeros = ctx.initializer(np.zeros(groups, np.float32), "group_bias")
    ctx.emit("InstanceNormalization", [rows, ones, zeros], [normed], epsilon=eps)
    shape, back = ctx.fresh("x_shape"), ctx.fresh("group_back")
    ctx.emit("Shape", [ins[0]], [shape])
    ctx.emit("Reshape", [normed, shape], [back])
    per_channel = [channels] + [1] * (x.type.ndim - 2)
    weight, bias, scaled = ctx.fresh("weight_c"), ctx.fresh("bias_c"), ctx.fresh("scaled")
    ctx.emit("Reshape", [ins[1], ctx.ints(per_channel, "shape")], [weight])
    ctx.emit("Reshape", [ins[2], ctx.ints(per_channel, "shape")], [bias])
    ctx.emit("Mul", [back, weight], [scaled])
    ctx.emit("Add", [scaled, bias], [out])


@exporter("pow_scalar")
def _pow_scalar(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    a, base = node.attrs, ins[0]
    if a["scale"] != 1.0:
        scaled = ctx.fresh("pow_base")
        ctx.emit("Mul", [base, ctx.scalar(a["scale"], "scale")], [scaled])
        base = scaled
    if a["shift"] != 0.0:
        shifted = ctx.fresh("pow_base")
        ctx.emit("Add", [base, ctx.scalar(a["shift"], "shift")], [shifted])
        base = shifted
    ctx.emit("Pow", [base, ctx.scalar(a["exponent"], "exponent")], [out])


@exporter("reshape")
def _reshape(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("Reshape", [ins[0], ctx.ints(node.attrs["shape"], "shape")], [out])


@exporter("flatten")
def _flatten(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    start = node.attrs["start_dim"]
    if start == 1:
        ctx.emit("Flatten", ins, [out], axis=1)
    else:  # torch.flatten(x, start): keep the leading axes, merge the rest
        ctx.emit("Reshape", [ins[0], ctx.ints([0] * start + [-1], "shape")], [out])


@exporter("concat")
def _concat(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("Concat", ins, [out], axis=int(node.attrs["axis"]))


@exporter("pad")
def _pad(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    pads = node.attrs["pads"]
    flat = [b for b, _ in pads] + [e for _, e in pads]
    ctx.emit("Pad", [ins[0], ctx.ints(flat, "pads"), ctx.scalar(node.attrs["value"], "value")],
             [out], mode="constant")


@exporter("mode_pad")
def _mode_pad(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    mode = node.attrs["mode"]
    if mode == "wrap" and ctx.opset < 19:
        raise OnnxExportError(f"wrap padding needs opset 19 or later (Pad's mode 'wrap'); "
                              f"exporting at opset {ctx.opset}")
    pads = node.attrs["pads"]
    flat = [b for b, _ in pads] + [e for _, e in pads]
    ctx.emit("Pad", [ins[0], ctx.ints(flat, "pads")], [out], mode=mode)


@exporter("slice")
def _slice(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    twin = ctx.twin(node)   # the same node in the graph at another batch size
    axes, starts, ends = [], [], []
    for axis, (s, e, d) in enumerate(zip(node.attrs["starts"], node.attrs["ends"],
                                         node.inputs[0].shape)):
        s2, e2 = twin.attrs["starts"][axis], twin.attrs["ends"][axis]
        if (s, e) == (0, d) and (s2, e2) == (0, twin.inputs[0].shape[axis]):
            continue  # the whole axis
        if twin.inputs[0].shape[axis] != d:
            raise OnnxExportError(f"a slice along the batch axis ({axis}) cannot be "
                                  f"exported with a dynamic batch; give batch_size")
        axes.append(axis)
        starts.append(s)
        ends.append(e)
    if not axes:
        ctx.emit("Identity", [ins[0]], [out])
        return
    ctx.emit("Slice", [ins[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"),
                       ctx.ints(axes, "axes")], [out])


@exporter("transpose")
def _transpose(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    ctx.emit("Transpose", ins, [out], perm=list(node.attrs["perm"]))


@exporter("upsample_nearest2d")
def _upsample(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    sh, sw = node.attrs["scale"]
    scales = ctx.initializer(np.asarray([1, 1, sh, sw], np.float32), "scales")
    ctx.emit("Resize", [ins[0], "", scales], [out], mode="nearest",
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")


@exporter("resize2d")
def _resize(ctx: ExportContext, node: Node, ins: list[str], out: str) -> None:
    """Resize: bilinear as mode 'linear' with 'half_pixel' (PyTorch's align_corners=False:
    ONNX's pytorch_half_pixel differs only at an output size of 1, where PyTorch does not
    read pixel 0) or 'align_corners'; nearest as 'asymmetric' + 'floor' (floor(y / scale)).
    With a scale factor, the scales (ONNX then maps coordinates with 1 / scale, as
    PyTorch); else the sizes, N and C taken from the input's shape (the batch may vary)."""
    a = node.attrs
    if a["mode"] == "bilinear":
        kind = dict(mode="linear", coordinate_transformation_mode="align_corners"
                    if a["align_corners"] else "half_pixel")
    else:
        kind = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
    if a["scales"] is not None:
        scales = ctx.initializer(np.asarray((1.0, 1.0) + tuple(a["scales"]), np.float32),
                                 "scales")
        ctx.emit("Resize", [ins[0], "", scales], [out], **kind)
        return
    shape, lead = ctx.fresh("shape"), ctx.fresh("n_c")
    ctx.emit("Shape", [ins[0]], [shape])
    ctx.emit("Slice", [shape, ctx.ints([0], "starts"), ctx.ints([2], "ends")], [lead])
    sizes = ctx.fresh("sizes")
    ctx.emit("Concat", [lead, ctx.ints(a["size"], "hw")], [sizes], axis=0)
    ctx.emit("Resize", [ins[0], "", "", sizes], [out], **kind)


# ---- the walk -----------------------------------------------------------------------------

def _value_info(name: str, shape: tuple[int, ...], batch_axes: set[int], dynamic: bool,
                dtype: str = "float32") -> Any:
    from onnx import TensorProto, helper
    dims: list[Any] = [BATCH_DIM if dynamic and i in batch_axes else int(d)
                       for i, d in enumerate(shape)]
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
            "int64": TensorProto.INT64}[dtype]
    return helper.make_tensor_value_info(name, elem, dims)


def to_proto(model: Model, batch_size: int | None = None, opset: int = 17) -> Any:
    """The ONNX ModelProto of `model` (see `save`)."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError("ONNX export needs the 'onnx' package: pip install "
                          "'graphcnn[onnx]'") from None
    if not MIN_EXPORT_OPSET <= opset <= MAX_EXPORT_OPSET:
        raise OnnxExportError(f"opset {opset} is not supported for export; use "
                              f"{MIN_EXPORT_OPSET}-{MAX_EXPORT_OPSET}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size is None and model.fixed_batch is not None:
        batch_size = model.fixed_batch   # an imported file that holds at its batch only
    graph = model.graph(batch_size or 1, training=False, frozen=False)
    unsupported = sorted({n.op for n in graph.compute_nodes()} - set(EXPORTERS))
    if unsupported:
        raise OnnxExportError(f"model {model.name!r}: no ONNX form for the op(s) "
                              f"{', '.join(unsupported)}")
    dynamic = batch_size is None
    # which axes scale with the batch: compare with the graph at another batch size
    other = model.graph(2 if dynamic else batch_size, training=False, frozen=False) \
        if dynamic else graph
    params = model.parameters()
    ctx = ExportContext(graph, params, opset, batch_size)
    ctx.other = other if dynamic else None
    inputs = []
    for node in graph.nodes:
        out = node.outputs[0]   # every op has an output (each branch below names it)
        if node.op == "input":
            name = node.attrs["name"]
            ctx.names[out.id] = name
            inputs.append(_value_info(name, out.shape, {0}, dynamic, out.dtype))
        elif node.op == "param":
            name = node.attrs["name"]
            ctx.names[out.id] = ctx.initializer(params[name].astype(np.float32), "param", name)
        elif node.op == "constant":
            value = node.attrs["value"]
            hint = node.attrs.get("name") or "const"
            ctx.names[out.id] = ctx.initializer(np.asarray(value), hint)
        else:
            out_name = ctx.fresh(node.op)
            ctx.names[out.id] = out_name
            EXPORTERS[node.op](ctx, node, [ctx.name(v) for v in node.inputs], out_name)
    outputs = []
    for value, other_value, name in zip(graph.outputs, other.outputs, graph.output_names):
        if name.startswith("state:"):
            continue
        batch_axes = {i for i, (a, b) in enumerate(zip(value.shape, other_value.shape))
                      if a != b}
        if value.node.op in ("input", "param", "constant") or \
                any(o is value for o in graph.outputs[:graph.outputs.index(value)]):
            ctx.emit("Identity", [ctx.name(value)], [name])
        else:  # rename the producing node's output to the model's output name
            old = ctx.name(value)
            for n in ctx.nodes:
                n.output[:] = [name if o == old else o for o in n.output]
                n.input[:] = [name if i == old else i for i in n.input]
            ctx.names[value.id] = name
        outputs.append(_value_info(name, value.shape, batch_axes, dynamic, value.dtype))
    initializers = [numpy_helper.from_array(a, name) for name, a in ctx.initializers.items()]
    onnx_graph = helper.make_graph(ctx.nodes, model.name, inputs, outputs, initializers)
    proto = helper.make_model(onnx_graph, producer_name="graphcnn",
                              opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, _max_ir_version(opset))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # a bug in the exporter, not in the user's model
        raise OnnxExportError(f"the exported model fails onnx.checker: {exc}") from None
    return proto


def _max_ir_version(opset: int) -> int:
    """The IR version that goes with an opset (so older runtimes accept the file)."""
    table = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
    return table.get(opset, 10)


def save(model: Model, path: "str | os.PathLike[str]", batch_size: int | None = None,
         opset: int = 17) -> str:
    """Write `model` as an ONNX file (opset 13-21; the batch dimension is dynamic, named
    'N', unless `batch_size` is given). Parameters become initializers under their
    graphcnn names. Returns the path."""
    proto = to_proto(model, batch_size, opset)
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return path

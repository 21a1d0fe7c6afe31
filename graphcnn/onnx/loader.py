"""`gc.onnx.load`: an ONNX file in, a graphcnn Model out."""
from __future__ import annotations

import os
from typing import Any

from graphcnn.dsl import Input
from graphcnn.errors import GraphBuildError
from graphcnn.ir.types import TensorType
from graphcnn.model import Model
from graphcnn.onnx.context import Folded, ImportContext, Runtime
from graphcnn.onnx.dispatch import import_node, supported_ops
from graphcnn.onnx.errors import OnnxImportError
from graphcnn.onnx.reader import OnnxGraph, parse, read_proto, upgrade_opset


def load(source: "str | os.PathLike[str] | bytes", batch_size: int | None = None) -> Model:
    """Import an ONNX model (a path, or the bytes of a file) as a graphcnn Model.

    Opsets 11-28 (7-10 converted to 11 on import, with a warning); the model's inputs
    must be float32 with a static shape except for the batch dimension (dynamic or fixed:
    the Model records the per-sample shape and binds the batch at compile time).
    Initializers become the model's parameters under their ONNX names (batch-norm
    statistics as non-trainable state); shape computations (Shape -> Gather -> Unsqueeze
    -> Concat -> Reshape ...) are folded at import.
    A file with a fixed batch size whose graph does not read batch-generically (an
    operand sized by the batch, a Concat, Slice or Split of axis 0, Gemm with transA, a
    reduction over axis 0...) is imported as it is, at that batch size only
    (`model.fixed_batch`; compiling at another size is a ValueError).
    `batch_size`, if given, also builds the model's graph at that batch size now, so that
    a model that cannot run at it fails here.

    Errors (OnnxImportError, a ValueError) name the node: an unsupported op (one error
    lists all of them, before anything is built), a corrupt or truncated file, a
    non-float32 input, a missing initializer, a shape that does not infer, a Conv whose
    kernel_shape contradicts its weight. The file is parsed as protobuf only; nothing in it
    is unpickled or evaluated. What import may materialize is bounded, checked before
    allocating (OnnxLimitError, naming the node, the shape and the bytes): each declared
    tensor (inputs per sample, initializers, every value at batch 1) at most
    GRAPHCNN_MAX_TENSOR_BYTES (default 2 GiB), each constant folded at import at most
    GRAPHCNN_MAX_CONSTANT_BYTES (default 1 GiB); see graphcnn.limits.
    """
    proto, label = read_proto(source)
    proto = upgrade_opset(proto, label)
    graph = parse(proto, label, supported_ops())
    try:
        model = build_model(graph)
    except OnnxImportError:
        batch = _fixed_batch(graph)
        if batch is None:
            raise
        # The batch-generic reading failed (an operand sized by the batch, a Concat or
        # Slice of axis 0, Gemm with transA...): read the file as it is, every axis a plain
        # axis, at its one batch size.
        model = build_model(graph, fixed_batch=batch)
    if batch_size is not None:
        try:
            model.graph(batch_size)
        except (GraphBuildError, ValueError) as exc:
            raise OnnxImportError(f"{label}: the model does not build at batch size "
                                  f"{batch_size}: {exc}") from None
    return model


def _used_names(graph: OnnxGraph) -> set[str]:
    used = set(graph.outputs)
    for node in graph.nodes:
        used.update(n for n in node.inputs if n)
    return used


def _fixed_batch(graph: OnnxGraph) -> int | None:
    """The batch size every input of the file fixes, None when one is dynamic or they differ."""
    sizes = {spec.batch for spec in graph.inputs}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def build_model(graph: OnnxGraph, fixed_batch: int | None = None) -> Model:
    """The Model of a parsed file. By default the inputs' axis 0 is the batch, tracked
    through the graph so that the model runs at any batch size; with `fixed_batch` the
    graph is recorded at that batch size with no batch axis (the Model then compiles at
    that size only)."""
    ctx = ImportContext(graph)
    for name, array in graph.initializers.items():
        ctx.env[name] = Folded.static(array, initializer=name)
    inputs = []
    for spec in graph.inputs:
        t = Input(spec.shape, name=spec.name)
        t.loc = f"{graph.source}: input {spec.name!r}"
        if fixed_batch is not None:   # recorded at the file's batch size, not at 1
            t.type = TensorType((fixed_batch,) + spec.shape, t.type.dtype)
            t.attrs["shape"] = t.type.shape
        inputs.append(t)
        ctx.env[spec.name] = Runtime(t, 0 if fixed_batch is None else None)
    used = _used_names(graph)
    for node in graph.nodes:
        ctx.node = node
        values = [ctx.env[name] if name else None for name in node.inputs]
        try:
            outputs = import_node(ctx, node, values)
        except OnnxImportError:
            raise
        except Exception as exc:  # a NumPy error while folding, a bad attribute value...
            raise ctx.error(f"{type(exc).__name__}: {exc}") from None
        for k, name in enumerate(node.outputs):
            if not name:
                continue
            if k < len(outputs) and outputs[k] is not None:
                ctx.env[name] = outputs[k]
            elif name in used:
                raise ctx.error(f"output {k} ({name!r}) is not supported (graphcnn imports "
                                f"the inference outputs of an op)")
    ctx.node = None
    outputs = []
    for name in graph.outputs:
        value = ctx.env[name]
        tensor = ctx.tensor(value, f"graph output {name!r}")
        if tensor.op in ("input", "param", "constant") or tensor.name:
            # an input passed through (Identity), or a tensor that is two outputs: a copy
            tensor = ctx.apply("reshape", [tensor], shape=(0,) * tensor.type.ndim)
        tensor.name = name
        outputs.append(tensor)
    model = Model(inputs, outputs, name=graph.name)
    model.onnx_opset = graph.opset  # type: ignore[attr-defined]
    model.fixed_batch = fixed_batch
    return model


def describe(model: Model) -> dict[str, Any]:
    """A few facts about an imported model, for the CLI."""
    return {"name": model.name, "opset": getattr(model, "onnx_opset", None),
            "inputs": {t.name: t.shape for t in model.inputs},
            "parameters": model.num_parameters()}

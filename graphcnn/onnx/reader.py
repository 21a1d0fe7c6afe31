"""Read an ONNX file into plain Python data and validate it before anything is built.

The file is parsed as protobuf (`onnx.load_model_from_string`); tensors are decoded with
`onnx.numpy_helper` (raw bytes to arrays). Nothing in a file is ever unpickled, evaluated
or run. Validation, in order: it is a model with a graph; its opset is one graphcnn
imports; every op is supported (one error lists every unsupported op); the inputs are
float32 with a static shape but for the batch dimension; every value a node reads exists.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphcnn import limits
from graphcnn.errors import LimitError
from graphcnn.onnx.errors import OnnxImportError, OnnxLimitError

# Opsets 22-25 changed the CNN ops only by admitting more element types (bfloat16, float8,
# int4...); graphcnn imports their float32 graphs as it does opset 21's. Opsets 26-28 did
# the same for Cast and DepthToSpace, and gave SpaceToDepth a `mode` (its default, DCR, is
# the old behaviour; ops_norm.py reads it).
MIN_OPSET, MAX_OPSET = 11, 28
# Older files (opsets 7-10) are converted to MIN_OPSET on import by ONNX's version converter.
CONVERT_FROM_OPSET = 7
DEFAULT_DOMAINS = ("", "ai.onnx")
# ONNX TensorProto.DataType codes graphcnn can read as arrays (others are an error).
_ARRAY_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
                 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


@dataclass
class OnnxNode:
    index: int
    op_type: str
    name: str                 # the node's name, or "<op_type>_<index>" when it has none
    domain: str
    opset: int
    inputs: list[str]         # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"node {self.name!r} ({self.op_type}, opset {self.opset})"


@dataclass
class OnnxInput:
    name: str
    shape: tuple[int, ...]    # per-sample shape (the batch dimension left out)
    batch: int | None         # the file's fixed batch size, None when dynamic


@dataclass
class OnnxGraph:
    name: str
    opset: int
    inputs: list[OnnxInput]
    outputs: list[str]
    nodes: list[OnnxNode]
    initializers: dict[str, np.ndarray]
    source: str               # the file name, for messages


# ---- parsing ------------------------------------------------------------------------------

def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX import/export needs the 'onnx' package: "
                          "pip install 'graphcnn[onnx]' (or pip install onnx)") from None
    return onnx


def read_proto(source: "str | os.PathLike[str] | bytes") -> tuple[Any, str]:
    """The ModelProto of a path or of the bytes of a file, and a label for messages."""
    onnx = _require_onnx()
    base_dir = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), "<bytes>"
    else:
        path = os.fspath(source)
        label = path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file {path} does not exist")
        with open(path, "rb") as f:
            data = f.read()
        base_dir = os.path.dirname(os.path.abspath(path))
    if not data:
        raise OnnxImportError(f"{label}: the file is empty, not an ONNX model")
    try:
        proto = onnx.load_model_from_string(data, format="protobuf")
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise OnnxImportError(f"{label}: not a valid ONNX file (truncated or corrupt?): "
                              f"{type(exc).__name__}: {exc}") from None
    if base_dir is not None and any(t.data_location == 1 for t in proto.graph.initializer):
        try:  # raw bytes from files next to the model (onnx checks the paths stay inside)
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(proto, base_dir)
        except Exception as exc:
            raise OnnxImportError(f"{label}: cannot read the external tensor data: "
                                  f"{type(exc).__name__}: {exc}") from None
    return proto, label


def decode_tensor(tensor: Any, what: str) -> np.ndarray:
    from onnx import numpy_helper
    if tensor.data_type not in _ARRAY_DTYPES:
        raise OnnxImportError(f"{what}: tensor data type {tensor.data_type} is not supported "
                              f"(graphcnn reads {sorted(set(_ARRAY_DTYPES.values()))})")
    if tensor.data_location == 1 and not any(e.key == "location" for e in tensor.external_data):
        raise OnnxImportError(f"{what}: external data without a location")
    check_dims(list(tensor.dims), np.dtype(_ARRAY_DTYPES[tensor.data_type]), what)
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise OnnxImportError(f"{what}: cannot decode the tensor (corrupt or external data "
                              f"not found): {type(exc).__name__}: {exc}") from None
    expected = tuple(int(d) for d in tensor.dims)
    if array.shape != expected:
        raise OnnxImportError(f"{what}: the data holds {array.size} values, its dims say "
                              f"{expected}")
    return array


def check_dims(dims: list[int], dtype: np.dtype, what: str,
               env: str = limits.TENSOR_ENV) -> None:
    """Dims a file declares: non-negative, and within the tensor limit (checked before
    anything of that size is decoded or allocated)."""
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"{what}: negative dimension in {dims}")
    try:
        limits.check_bytes(limits.nbytes(dims, dtype.itemsize), f"{what}: {dtype}{dims}", env)
    except LimitError as exc:
        raise OnnxLimitError(str(exc)) from None


def decode_attribute(attr: Any, what: str) -> Any:
    from onnx import AttributeProto, helper
    if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return "<subgraph>"  # only control-flow ops have these; they are unsupported
    try:
        value = helper.get_attribute_value(attr)
    except Exception as exc:
        raise OnnxImportError(f"{what}: cannot read attribute {attr.name!r}: {exc}") from None
    if attr.type == AttributeProto.TENSOR:
        return decode_tensor(value, f"{what}, attribute {attr.name!r}")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
                for v in value]
    return value


def text(value: Any) -> str:
    """A string field of the file: protobuf gives bytes where it is not valid UTF-8."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _opsets(proto: Any, label: str) -> dict[str, int]:
    opsets = {text(op.domain): int(op.version) for op in proto.opset_import}
    default = [opsets[d] for d in DEFAULT_DOMAINS if d in opsets]
    if not default:
        raise OnnxImportError(f"{label}: the model imports no default ONNX opset")
    version = max(default)
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise OnnxImportError(f"{label}: opset {version} is not supported; graphcnn imports "
                              f"opsets {CONVERT_FROM_OPSET}-{MAX_OPSET} (those below "
                              f"{MIN_OPSET} converted to {MIN_OPSET}); re-export the model "
                              f"with opset_version in that range")
    for d in DEFAULT_DOMAINS:
        opsets[d] = version
    return opsets


def default_opset(proto: Any) -> int | None:
    """The model's default-domain opset, None when it imports none."""
    versions = [int(op.version) for op in proto.opset_import if text(op.domain) in DEFAULT_DOMAINS]
    return max(versions) if versions else None


def upgrade_opset(proto: Any, label: str) -> Any:
    """A model at opset 7-10 converted to MIN_OPSET with ONNX's version converter (one
    warning says so); other models are returned as they are."""
    version = default_opset(proto)
    if version is None or not CONVERT_FROM_OPSET <= version < MIN_OPSET:
        return proto
    from onnx import version_converter
    try:
        converted = version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:   # the converter raises RuntimeError/ConvertError per adapter
        raise OnnxImportError(f"{label}: opset {version} could not be converted to opset "
                              f"{MIN_OPSET} ({type(exc).__name__}: {exc}); re-export the "
                              f"model with opset_version {MIN_OPSET}-{MAX_OPSET}") from None
    warnings.warn(f"{label}: converted from opset {version} to opset {MIN_OPSET} "
                  f"(onnx.version_converter) on import", stacklevel=3)
    return converted


def _graph_inputs(graph: Any, initializers: dict[str, np.ndarray], label: str
                  ) -> list[OnnxInput]:
    from onnx import TensorProto
    inputs = []
    for value in graph.input:
        if text(value.name) in initializers:  # IR < 4 lists initializers as inputs too
            continue
        what = f"{label}: input {text(value.name)!r}"
        if not value.type.HasField("tensor_type"):
            raise OnnxImportError(f"{what} is not a tensor")
        elem = value.type.tensor_type.elem_type
        if elem != TensorProto.FLOAT:
            name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() \
                else str(elem)
            raise OnnxImportError(f"{what} has dtype {name}; graphcnn imports models with "
                                  f"float32 inputs only")
        if not value.type.tensor_type.HasField("shape"):
            raise OnnxImportError(f"{what} has no shape; graphcnn needs static per-sample "
                                  f"shapes (only the batch dimension may be dynamic)")
        dims = list(value.type.tensor_type.shape.dim)
        if not dims:
            raise OnnxImportError(f"{what} is a scalar; graphcnn needs a batch dimension")
        first = dims[0]
        batch = first.dim_value if first.HasField("dim_value") and first.dim_value > 0 \
            else None
        shape = []
        for axis, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                sym = f" ({d.dim_param!r})" if d.dim_param else ""
                raise OnnxImportError(
                    f"{what}: dimension {axis}{sym} is dynamic; only the batch dimension "
                    f"(0) may be dynamic, the others must be fixed")
            shape.append(int(d.dim_value))
        # one sample's worth, before the model is built at any batch size
        check_dims([1] + shape, np.dtype(np.float32), f"{what} (per sample)")
        inputs.append(OnnxInput(text(value.name), tuple(shape), batch))
    if not inputs:
        raise OnnxImportError(f"{label}: the graph has no inputs")
    return inputs


def _unsupported_error(bad: list[OnnxNode], label: str, supported: set[str]) -> OnnxImportError:
    by_type: dict[str, list[OnnxNode]] = {}
    for node in bad:
        key = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
        by_type.setdefault(key, []).append(node)
    parts = []
    for key in sorted(by_type):
        nodes = by_type[key]
        names = ", ".join(repr(n.name) for n in nodes[:5])
        more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        parts.append(f"{key} (opset {nodes[0].opset}; node{'s' if len(nodes) > 1 else ''} "
                     f"{names}{more})")
    return OnnxImportError(
        f"{label}: {len(by_type)} unsupported ONNX op type{'s' if len(by_type) > 1 else ''}: "
        f"{'; '.join(parts)}. graphcnn imports: {', '.join(sorted(supported))}")


def parse(proto: Any, label: str, supported: set[str]) -> OnnxGraph:
    """Validate a ModelProto and turn it into an OnnxGraph (see the module docstring)."""
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise OnnxImportError(f"{label}: not an ONNX model (no graph; a truncated or "
                              f"corrupt file?)")
    graph = proto.graph
    opsets = _opsets(proto, label)
    nodes = []
    for index, n in enumerate(graph.node):
        domain, op_type = text(n.domain), text(n.op_type)
        node = OnnxNode(index, op_type, text(n.name) or f"{op_type}_{index}", domain,
                        opsets.get(domain, 0), [text(i) for i in n.input],
                        [text(o) for o in n.output])
        nodes.append(node)
    bad = [n for n in nodes if n.domain not in DEFAULT_DOMAINS or n.op_type not in supported]
    if bad:
        raise _unsupported_error(bad, label, supported)
    for node, n in zip(nodes, graph.node):
        node.attrs = {text(a.name): decode_attribute(a, f"{label}: {node.label}")
                      for a in n.attribute}
    if len(graph.sparse_initializer):
        raise OnnxImportError(f"{label}: sparse initializers are not supported")
    initializers = {text(t.name): decode_tensor(t, f"{label}: initializer {text(t.name)!r}")
                    for t in graph.initializer}
    inputs = _graph_inputs(graph, initializers, label)
    defined = set(initializers) | {i.name for i in inputs}
    for node in nodes:
        for name in node.inputs:
            if name and name not in defined:
                raise OnnxImportError(
                    f"{label}: {node.label} reads {name!r}, which is not a graph input, an "
                    f"initializer or the output of an earlier node (a missing initializer, "
                    f"or a corrupt or unsorted file)")
        defined.update(o for o in node.outputs if o)
    outputs = [text(o.name) for o in graph.output]
    if not outputs:
        raise OnnxImportError(f"{label}: the graph has no outputs")
    for name in outputs:
        if name not in defined:
            raise OnnxImportError(f"{label}: graph output {name!r} is not produced by any "
                                  f"node (a truncated or corrupt file?)")
    return OnnxGraph(text(graph.name) or "onnx_model", opsets[""], inputs, outputs, nodes,
                     initializers, label)

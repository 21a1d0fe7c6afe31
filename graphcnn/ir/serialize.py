"""A graph as plain JSON data, and back: no pickle, no eval.

    {"name": "resnet18",
     "nodes": [{"op": "input", "inputs": [], "attrs": {...}, "loc": null,
                "outputs": [[[1, 3, 224, 224], "float32"]]}, ...],
     "outputs": [[node, output index], ...], "output_names": [...]}

A value is referred to by [producing node's index, output index]. Attribute values keep
their Python types through tagged objects: {"$tuple": [...]}, {"$dict": {...}} (string
keys), {"$float": "inf" | "-inf" | "nan"}, {"$scalar": "float32", "value": ...} (a NumPy
scalar) and {"$array": "<name>"} (an array stored elsewhere, e.g. a .npy member; the caller
supplies and fetches it). Lists, str, int, finite float, bool and null are themselves.

Reading rebuilds the graph through `Graph.add_node`, so every attribute is validated and
every shape inferred again, and checks the inferred output types against the recorded
ones. Anything malformed is a `ValueError` that says where.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from graphcnn.ir.graph import Graph, Value
from graphcnn.ir.types import TensorType

SCALAR_DTYPES = ("bool", "int32", "int64", "uint64", "float32", "float64")
MAX_DEPTH = 32


def encode_value(value: Any, add_array: Callable[[np.ndarray], str], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError("attribute nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.ndarray):
        return {"$array": add_array(value)}
    if isinstance(value, np.generic):
        if value.dtype.name not in SCALAR_DTYPES:
            raise TypeError(f"cannot serialize a NumPy {value.dtype} scalar")
        return {"$scalar": value.dtype.name, "value": encode_value(value.item(), add_array)}
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(v, add_array, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode_value(v, add_array, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("cannot serialize a dict with non-string keys")
        return {"$dict": {k: encode_value(v, add_array, depth + 1) for k, v in value.items()}}
    raise TypeError(f"cannot serialize attribute value of type {type(value).__name__}")


def decode_value(data: Any, get_array: Callable[[str], np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError("attribute nested too deeply")
    if data is None or isinstance(data, (bool, str, int)):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            raise ValueError("non-finite float literal (must be tagged)")
        return data
    if isinstance(data, list):
        return [decode_value(v, get_array, depth + 1) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ValueError(f"malformed attribute value {str(data)[:80]}")
    if len(data) == 2:
        if set(data) != {"$scalar", "value"} or data["$scalar"] not in SCALAR_DTYPES:
            raise ValueError(f"malformed attribute value {str(data)[:80]}")
        inner = decode_value(data["value"], get_array, depth + 1)
        if not isinstance(inner, (bool, int, float)):
            raise ValueError("a NumPy scalar must hold a number")
        return np.dtype(data["$scalar"]).type(inner)
    (tag, body), = data.items()
    if tag == "$tuple" and isinstance(body, list):
        return tuple(decode_value(v, get_array, depth + 1) for v in body)
    if tag == "$dict" and isinstance(body, dict):
        return {k: decode_value(v, get_array, depth + 1) for k, v in body.items()}
    if tag == "$float" and body in ("inf", "-inf", "nan"):
        return float(body)
    if tag == "$array" and isinstance(body, str):
        return get_array(body)
    raise ValueError(f"malformed attribute value {str(data)[:80]}")


def value_ref(value: Value) -> list[int]:
    return [value.node.id, value.index]


def graph_to_json(graph: Graph, add_array: Callable[[np.ndarray], str]) -> dict[str, Any]:
    """`add_array(array) -> name` stores an array attribute (constants) elsewhere."""
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    if any(index[n.id] != n.id for n in graph.nodes):
        raise ValueError("graph node ids are not their positions")
    nodes = []
    for node in graph.nodes:
        nodes.append({
            "op": node.op,
            "inputs": [value_ref(v) for v in node.inputs],
            "attrs": {k: encode_value(v, add_array) for k, v in node.attrs.items()},
            "loc": node.loc,
            "outputs": [[list(v.shape), v.dtype] for v in node.outputs],
        })
    return {"name": graph.name, "nodes": nodes,
            "outputs": [value_ref(v) for v in graph.outputs],
            "output_names": list(graph.output_names)}


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def resolve_ref(graph: Graph, ref: Any, before: int | None = None) -> Value:
    """The value [node, index] refers to; `before`: it must come from an earlier node."""
    _expect(isinstance(ref, list) and len(ref) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) for x in ref), f"bad value ref {ref!r}")
    node_index, out_index = ref
    limit = len(graph.nodes) if before is None else before
    _expect(0 <= node_index < limit, f"value ref {ref} points to no earlier node")
    node = graph.nodes[node_index]
    _expect(0 <= out_index < len(node.outputs), f"value ref {ref}: node has no such output")
    return node.outputs[out_index]


def graph_from_json(data: Any, get_array: Callable[[str], np.ndarray]) -> Graph:
    """Rebuild a graph; ValueError naming the node if anything is malformed or
    inconsistent (an unknown op, bad attributes, shapes that do not infer as recorded)."""
    _expect(isinstance(data, dict), "graph must be an object")
    _expect(isinstance(data.get("name"), str), "graph name must be a string")
    nodes = data.get("nodes")
    _expect(isinstance(nodes, list), "graph nodes must be a list")
    graph = Graph(data["name"])
    for i, entry in enumerate(nodes):
        try:
            _expect(isinstance(entry, dict) and set(entry) == {
                "op", "inputs", "attrs", "loc", "outputs"}, "malformed node")
            op, attrs, loc = entry["op"], entry["attrs"], entry["loc"]
            _expect(isinstance(op, str), "op must be a string")
            _expect(isinstance(attrs, dict), "attrs must be an object")
            _expect(loc is None or isinstance(loc, str), "loc must be a string or null")
            _expect(isinstance(entry["inputs"], list), "inputs must be a list")
            inputs = [resolve_ref(graph, r, before=i) for r in entry["inputs"]]
            decoded = {k: decode_value(v, get_array) for k, v in attrs.items()}
            try:
                node = graph.add_node(op, inputs, decoded, loc=loc)
            except KeyError as err:  # unknown op
                raise ValueError(str(err).strip("'\"")) from None
            recorded = entry["outputs"]
            _expect(isinstance(recorded, list) and len(recorded) == len(node.outputs),
                    "recorded outputs do not match the op")
            for value, rec in zip(node.outputs, recorded):
                _expect(isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], list),
                        "malformed recorded output type")
                want = TensorType(tuple(rec[0]), rec[1])
                _expect(value.type == want, f"output infers as {value.type}, recorded {want}")
        except (ValueError, TypeError) as err:
            op_text = entry.get("op") if isinstance(entry, dict) else None
            raise ValueError(f"node {i} ({op_text}): {err}") from None
    outputs = data.get("outputs")
    names = data.get("output_names")
    _expect(isinstance(outputs, list) and isinstance(names, list) and len(outputs) == len(names)
            and all(isinstance(n, str) for n in names), "malformed graph outputs")
    graph.set_outputs([resolve_ref(graph, r) for r in outputs], names)
    return graph

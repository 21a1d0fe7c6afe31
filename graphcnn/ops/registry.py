"""The op registry: the one source of truth for every op.

An op is registered once with its attribute schema, its shape/dtype rule, its NumPy
reference implementation (the oracle), its VJP rule written in graph ops, and its fusion
kind. Backends add kernels for op names; they never re-derive shapes or gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Sequence

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.rules import set_op_resolver
from graphcnn.ir.types import TensorType


class FusionKind(IntEnum):
    """TVM's op patterns. The fusion pass (graphcnn/passes/fusion.py) reads them: ELEMWISE
    and BROADCAST ops chain into the epilogue of an OUT_ELEMWISE_FUSABLE anchor (or into a
    group of their own); ops of the other kinds run as their own kernels."""

    ELEMWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCTION = 3
    OUT_ELEMWISE_FUSABLE = 4  # conv, dense: elementwise epilogues fuse into the output loop
    OPAQUE = 8


_REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """One attribute: its default (or required) and a converter that validates and
    normalizes a user value (e.g. padding=1 -> (1, 1, 1, 1)), raising ShapeError."""

    default: Any = _REQUIRED
    convert: Callable[[Any], Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


ShapeRule = Callable[[list[TensorType], dict[str, Any]], "TensorType | list[TensorType]"]
RefRule = Callable[..., "np.ndarray | list[np.ndarray]"]
# vjp(graph, node, cotangents per output) -> a cotangent per input (None: no gradient)
VjpRule = Callable[[Any, Any, list[Any]], list[Any]]
Canonicalize = Callable[[list[TensorType], dict[str, Any]], dict[str, Any]]


@dataclass
class OpDef:
    name: str
    inputs: tuple[str, ...]          # input names; optional end with '?', variadic with '*'
    shape: ShapeRule
    ref: RefRule                      # ref(*arrays, **attrs)
    vjp: VjpRule
    kind: FusionKind
    attrs: dict[str, Attr] = field(default_factory=dict)
    canonicalize: Canonicalize | None = None
    doc: str = ""
    # ELEMWISE and BROADCAST ops only: the per-element formula as a Python expression over
    # operands {0}, {1}, ... and attributes {alpha}, ...; graphcnn/backends/lowering.py
    # lowers it for the code generators of every backend, so the formula lives here, once.
    scalar: str | None = None

    @property
    def min_inputs(self) -> int:
        return sum(1 for n in self.inputs if not n.endswith("?"))

    @property
    def max_inputs(self) -> float:
        return float("inf") if any(n.endswith("*") for n in self.inputs) else len(self.inputs)

    def check_arity(self, count: int) -> None:
        if not self.min_inputs <= count <= self.max_inputs:
            if self.max_inputs == float("inf"):
                want = f"at least {self.min_inputs}"
            elif self.min_inputs == self.max_inputs:
                want = str(self.min_inputs)
            else:
                want = f"{self.min_inputs} to {self.max_inputs}"
            raise ShapeError(f"expected {want} inputs ({', '.join(self.inputs)}), got {count}")

    def normalize_attrs(self, attrs: dict[str, Any], in_types: list[TensorType]) -> dict[str, Any]:
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise ShapeError(f"unknown attribute(s) {unknown}; known: {sorted(self.attrs)}")
        out: dict[str, Any] = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                value = attrs[key]
                out[key] = spec.convert(value) if spec.convert is not None else value
            elif spec.required:
                raise ShapeError(f"missing required attribute {key!r}")
            else:
                out[key] = spec.default
        if self.canonicalize is not None:
            out = self.canonicalize(in_types, out)
        return out

    def infer(self, in_types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        result = self.shape(in_types, attrs)
        return [result] if isinstance(result, TensorType) else list(result)

    def run_ref(self, arrays: Sequence[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
        result = self.ref(*arrays, **attrs)
        return list(result) if isinstance(result, (list, tuple)) else [result]


_REGISTRY: dict[str, OpDef] = {}


def register_op(name: str, *, inputs: Sequence[str], shape: ShapeRule, ref: RefRule,
                vjp: VjpRule, kind: FusionKind, attrs: dict[str, Attr] | None = None,
                canonicalize: Canonicalize | None = None, doc: str = "",
                scalar: str | None = None) -> OpDef:
    if name in _REGISTRY:
        raise ValueError(f"op {name!r} registered twice")
    if scalar is not None and kind > FusionKind.BROADCAST:
        raise ValueError(f"op {name!r} has a scalar formula, so its fusion kind must be "
                         f"ELEMWISE or BROADCAST, not {kind.name}")
    opdef = OpDef(name, tuple(inputs), shape, ref, vjp, kind, dict(attrs or {}),
                  canonicalize, doc, scalar)
    _REGISTRY[name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered: {sorted(_REGISTRY)}") from None


def all_ops() -> dict[str, OpDef]:
    _load_all()
    return dict(_REGISTRY)


def _load_all() -> None:
    import graphcnn.ops  # noqa: F401  (importing the package registers every op family)


# The IR builds and verifies graphs with these rules; it cannot import this layer itself.
set_op_resolver(get_op)


# ---- small helpers shared by the op families ---------------------------------------

def no_gradient(graph: Any, node: Any, cotangents: list[Any]) -> list[Any]:
    """VJP of ops whose inputs carry no gradient (sources, integer labels, masks)."""
    return [None] * len(node.inputs)


def no_second_order(graph: Any, node: Any, cotangents: list[Any]) -> list[Any]:
    """VJP of backward-only helper ops: differentiating them means a second-order
    gradient, which graphcnn does not build yet; say so rather than return zeros."""
    raise NotImplementedError(
        f"second-order gradients through {node.op!r} are not supported")


def as_int_pair(name: str) -> Callable[[Any], tuple[int, int]]:
    def convert(value: Any) -> tuple[int, int]:
        if isinstance(value, (int, np.integer)):
            value = (int(value), int(value))
        value = tuple(int(v) for v in value)
        if len(value) != 2:
            raise ShapeError(f"{name} must be an int or a pair of ints, got {value}")
        return value
    return convert


def positive_pair(name: str) -> Callable[[Any], tuple[int, int]]:
    pair = as_int_pair(name)

    def convert(value: Any) -> tuple[int, int]:
        out = pair(value)
        if min(out) < 1:
            raise ShapeError(f"{name} must be >= 1, got {out}")
        return out
    return convert


def expect_float(t: TensorType, what: str) -> None:
    if not t.is_float:
        raise ShapeError(f"{what} must be a float tensor, got {t}")


def expect_ndim(t: TensorType, ndim: int, what: str, layout: str = "") -> None:
    if t.ndim != ndim:
        hint = f" ({layout})" if layout else ""
        raise ShapeError(f"{what} must be {ndim}-D{hint}, got shape {t.shape}")


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting, with an error that quotes both shapes."""
    ndim = max(len(a), len(b))
    pa = (1,) * (ndim - len(a)) + tuple(a)
    pb = (1,) * (ndim - len(b)) + tuple(b)
    out = []
    for da, db in zip(pa, pb):
        if da != db and 1 not in (da, db):
            raise ShapeError(f"shapes {a} and {b} do not broadcast")
        out.append(max(da, db) if 0 not in (da, db) else 0)
    return tuple(out)

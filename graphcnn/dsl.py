"""The Python DSL: symbolic tensors recorded as a model's recipe.

`gc.Input`, layer calls and functional ops (`gc.relu`, `x + y`) build `Tensor`s: each
remembers its op, inputs, attributes and the user's file:line. Shapes are inferred
eagerly, with the batch dimension bound to 1, so a bad model fails where it is written;
`Model.graph(batch_size=...)` replays the recipe into an IR graph with the real batch.
"""
from __future__ import annotations

import itertools
import os
import sys
from types import FrameType
from typing import Any, Sequence

import numpy as np

from graphcnn.ir.graph import infer_node
from graphcnn.ir.types import TensorType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Code in these folders is DSL *usage* (the zoo, examples), so it counts as the user's.
_USER_CODE_DIRS = (os.path.join(_PACKAGE_DIR, "models") + os.sep,)
_ids = itertools.count()
_layer_stack: list[Any] = []   # layers whose __call__ is running (for summary rows)


def user_location() -> str | None:
    """The file:line of the innermost caller outside graphcnn's internals."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        inside = filename.startswith(_PACKAGE_DIR + os.sep)
        if not inside or filename.startswith(_USER_CODE_DIRS):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class Parameter:
    """A model tensor owned by a layer: a weight (trainable) or running state."""

    _counter = itertools.count()

    def __init__(self, data: np.ndarray, trainable: bool = True, owner: Any = None,
                 attr: str = "") -> None:
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.trainable = trainable
        self.owner = owner
        self.attr = attr
        self.order = next(Parameter._counter)  # creation order, as torch's parameters()

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


class Tensor:
    """A symbolic tensor in a model under construction."""

    def __init__(self, op: str, inputs: Sequence["Tensor"], attrs: dict[str, Any],
                 type: TensorType, loc: str | None, *, name: str = "",
                 parameter: Parameter | None = None) -> None:
        self.id = next(_ids)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.type = type
        self.loc = loc
        self.name = name
        self.parameter = parameter
        self.layer_call: Any = None                # the layer whose call returned this
        self.inside_layer = bool(_layer_stack)     # made inside a layer's call
        # the complete models (a Sequential with input_shape) called as layers around
        # this tensor's making, outermost first: they scope a parameter's name
        self.scope: tuple[Any, ...] = tuple(
            layer for layer in _layer_stack if getattr(layer, "built_model", False))

    @property
    def shape(self) -> tuple[int | None, ...]:
        """Shape with the batch dimension shown as None (bound at compile time)."""
        if self.op in ("param", "constant"):
            return self.type.shape
        return (None,) + self.type.shape[1:]

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Tensor({self.op}, shape={self.shape}, dtype={self.dtype})"

    def __add__(self, other: Any) -> "Tensor":
        return apply("add", [self, as_tensor(other, self)])

    def __radd__(self, other: Any) -> "Tensor":
        return apply("add", [as_tensor(other, self), self])

    def __sub__(self, other: Any) -> "Tensor":
        return apply("sub", [self, as_tensor(other, self)])

    def __rsub__(self, other: Any) -> "Tensor":
        return apply("sub", [as_tensor(other, self), self])

    def __mul__(self, other: Any) -> "Tensor":
        return apply("mul", [self, as_tensor(other, self)])

    def __rmul__(self, other: Any) -> "Tensor":
        return apply("mul", [as_tensor(other, self), self])

    def __truediv__(self, other: Any) -> "Tensor":
        return apply("div", [self, as_tensor(other, self)])

    def __neg__(self) -> "Tensor":
        return apply("mul", [self, as_tensor(-1.0, self)])

    def __pow__(self, other: Any) -> "Tensor":
        return apply("pow", [self, as_tensor(other, self)])


def apply(op: str, inputs: Sequence[Tensor], **attrs: Any) -> Tensor:
    """Record one op; infer its type now so that errors point at the user's line."""
    loc = user_location()
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            from graphcnn.errors import GraphBuildError
            raise GraphBuildError(f"{op}: input {i} is a {type(t).__name__}, not a graphcnn "
                                  f"Tensor (at {loc})")
    full_attrs, out_types = infer_node(op, [t.type for t in inputs], attrs, loc)
    return Tensor(op, inputs, full_attrs, out_types[0], loc)


def Input(shape: Sequence[int], name: str = "input", dtype: str = "float32") -> Tensor:
    """A model input of per-sample `shape`; the batch size is bound at compile time.

    >>> x = Input((1, 28, 28), name="image")
    >>> x.shape
    (None, 1, 28, 28)
    """
    from graphcnn.arguments import check_shape
    if not isinstance(name, str):
        from graphcnn.errors import ArgumentTypeError
        raise ArgumentTypeError(f"Input: name must be a string, got {name!r}")
    type = TensorType((1,) + check_shape("shape", shape, owner="Input"), dtype)
    return Tensor("input", [], {"name": name, "shape": type.shape, "dtype": dtype}, type,
                  user_location(), name=name)


def parameter_tensor(parameter: Parameter) -> Tensor:
    type = TensorType(parameter.data.shape, "float32")
    return Tensor("param", [], {}, type, user_location(), parameter=parameter)


def constant(value: Any) -> Tensor:
    array = np.asarray(value, dtype=np.float32)
    return Tensor("constant", [], {"value": array}, TensorType(array.shape, "float32"),
                  user_location())


def as_tensor(value: Any, like: Tensor) -> Tensor:
    return value if isinstance(value, Tensor) else constant(value)


def topological_order(outputs: Sequence[Tensor]) -> list[Tensor]:
    """Every tensor the outputs depend on, inputs first; iterative (no recursion limit)."""
    order: list[Tensor] = []
    state: dict[int, int] = {}  # 1 = on the stack, 2 = emitted
    stack: list[tuple[Tensor, bool]] = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            if state.get(tensor.id) != 2:
                state[tensor.id] = 2
                order.append(tensor)
            continue
        if state.get(tensor.id):
            continue
        state[tensor.id] = 1
        stack.append((tensor, True))
        for t in reversed(tensor.inputs):
            if not state.get(t.id):
                stack.append((t, False))
    return order

"""The state of one import: ONNX value names bound to graphcnn values, and the helpers the
op importers share.

A value is one of two kinds:

* `Runtime`: a DSL tensor computed when the model runs. Tensors that depend on the model
  input carry a *batch axis*: the one axis whose size is proportional to the batch size
  (the DSL records the model at batch 1, where that axis has its per-sample size k).
  A fixed-batch file that cannot be read this way is imported again with the inputs
  recorded at the file's batch size and no batch axis at all (loader.py): every axis
  is then a plain axis and the ops below never see a batch.
* `Folded`: an array known at import time: an initializer, a Constant, or a shape
  computation (Shape -> Gather -> Unsqueeze -> Concat ...). A shape may depend on the
  batch size, so a folded value is evaluated at two probe batch sizes; where the two
  results agree the value is static, where they differ it depends on the batch.

Ops that give ONNX shapes meaning (Reshape, Flatten, Squeeze, ...) compute the target
shape at both probes and turn it into a batch-generic DSL reshape: the axis that scales
with the batch gets -1, so the model replays at any batch size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, overload

import numpy as np

from graphcnn import limits
from graphcnn.dsl import Parameter, Tensor, apply, constant, parameter_tensor
from graphcnn.errors import GraphBuildError, LimitError
from graphcnn.onnx.errors import OnnxImportError, OnnxLimitError
from graphcnn.onnx.reader import OnnxGraph, OnnxNode

PROBES = (5, 7)  # batch sizes at which shape computations are folded


@dataclass
class Runtime:
    tensor: Tensor
    batch_axis: int | None   # None: does not depend on the batch (weights and constants)

    @property
    def ndim(self) -> int:
        return self.tensor.type.ndim

    def shape_at(self, batch: int) -> tuple[int, ...]:
        shape = list(self.tensor.type.shape)
        if self.batch_axis is not None:
            shape[self.batch_axis] *= batch
        return tuple(shape)


@dataclass
class Folded:
    values: tuple[np.ndarray, np.ndarray]   # at PROBES[0] and PROBES[1]
    initializer: str | None = None          # the initializer this is, unchanged

    @staticmethod
    def static(array: np.ndarray, initializer: str | None = None) -> "Folded":
        array = np.asarray(array)
        return Folded((array, array), initializer)

    @staticmethod
    def from_probes(arrays: Iterable[np.ndarray]) -> "Folded":
        """From the two arrays at PROBES[0] and PROBES[1], in that order."""
        a, b = arrays
        return Folded((a, b))

    @property
    def is_static(self) -> bool:
        a, b = self.values
        return a.shape == b.shape and bool(np.array_equal(a, b))

    @property
    def ndim(self) -> int:
        return self.values[0].ndim

    def shape_at(self, batch: int) -> tuple[int, ...]:
        return self.values[PROBES.index(batch)].shape


def fold(fn: Callable[..., np.ndarray], *args: Any) -> Folded:
    """Apply a NumPy function at both probes; Folded arguments give their probe value,
    other arguments (attributes) are passed as they are."""
    out = []
    for k in range(2):
        out.append(np.asarray(fn(*[a.values[k] if isinstance(a, Folded) else a
                                   for a in args])))
    return Folded((out[0], out[1]))


class ImportContext:
    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self.env: dict[str, Runtime | Folded] = {}
        self.params: dict[str, Tensor] = {}
        self.node: OnnxNode | None = None
        self.fixed_batch = {i.batch for i in graph.inputs} - {None}
        # initializers read as batch-norm statistics are state, not trained weights
        self.state_names = {n.inputs[k] for n in graph.nodes
                            if n.op_type == "BatchNormalization" for k in (3, 4)
                            if len(n.inputs) > k}

    # ---- errors -----------------------------------------------------------------------
    def error(self, message: str) -> OnnxImportError:
        where = f"{self.node.label}: " if self.node is not None else ""
        return OnnxImportError(f"{self.graph.source}: {where}{message}")

    def check_size(self, shape: Sequence[int], dtype: Any, what: str,
                   env: str = limits.CONSTANT_ENV) -> None:
        """Refuse, before allocating it, an array of `shape` and `dtype` over the limit
        `env` sets (folded constants: GRAPHCNN_MAX_CONSTANT_BYTES)."""
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise self.error(f"{what} would have a negative dimension: {dims}")
        itemsize = np.dtype(dtype).itemsize
        try:
            limits.check_bytes(limits.nbytes(dims, itemsize),
                               f"{what}: {np.dtype(dtype)}{dims}", env)
        except LimitError as exc:
            where = f"{self.node.label}: " if self.node is not None else ""
            raise OnnxLimitError(f"{self.graph.source}: {where}{exc}") from None

    def check_folded(self, shapes: Iterable[Sequence[int]], dtype: Any,
                     what: str = "the folded output") -> None:
        """check_size at both probes (a folded value is computed once per probe)."""
        for shape in shapes:
            self.check_size(shape, dtype, what)

    # ---- reading values ---------------------------------------------------------------
    @overload
    def required(self, value: Folded | None, what: str = "input") -> Folded: ...
    @overload
    def required(self, value: Runtime | Folded | None, what: str = "input"
                 ) -> Runtime | Folded: ...

    def required(self, value: Runtime | Folded | None, what: str = "input"
                 ) -> Runtime | Folded:
        """`value`, which must be given (an op's inputs are None where omitted); a
        folder's inputs stay Folded."""
        if value is None:
            raise self.error(f"{what} is missing")
        return value

    def tensor(self, value: Runtime | Folded | None, what: str = "input") -> Tensor:
        """A DSL tensor for `value`: an initializer becomes a parameter under its ONNX
        name (once), other folded arrays become constants."""
        value = self.required(value, what)
        if isinstance(value, Runtime):
            return value.tensor
        if not value.is_static:
            raise self.error(f"{what} depends on the batch size in a way graphcnn cannot "
                             f"express (a shape computation used as data)")
        array = value.values[0]
        if array.dtype.kind not in "fiub":
            raise self.error(f"{what} has dtype {array.dtype}, not a number")
        # the float32 copy below may be larger than the array (bool, int8 -> float32)
        self.check_size(array.shape, np.float32, what, limits.TENSOR_ENV)
        if value.initializer is not None and array.dtype.kind == "f":
            name = value.initializer
            if name not in self.params:
                p = Parameter(array.astype(np.float32), trainable=name not in self.state_names,
                              attr=name)
                self.params[name] = parameter_tensor(p)
            return self.params[name]
        return constant(array.astype(np.float32))

    def runtime(self, value: Runtime | Folded | None, what: str = "input") -> Runtime:
        if isinstance(value, Runtime):
            return value
        return Runtime(self.tensor(value, what), None)

    def static(self, value: Runtime | Folded | None, what: str) -> np.ndarray:
        """The array of a value that must be known at import time (shapes, axes, pads)."""
        if value is None:
            raise self.error(f"{what} is missing")
        if isinstance(value, Runtime):
            raise self.error(f"{what} must be a constant or a shape computation that folds "
                             f"at import time, not a tensor computed at run time")
        if not value.is_static:
            raise self.error(f"{what} depends on the batch size ({value.values[0].tolist()} "
                             f"at batch {PROBES[0]}, {value.values[1].tolist()} at batch "
                             f"{PROBES[1]}); graphcnn needs it fixed here")
        return value.values[0]

    def ints(self, value: Runtime | Folded | None, what: str) -> list[int]:
        return [int(v) for v in np.asarray(self.static(value, what)).reshape(-1)]

    def scalar(self, value: Runtime | Folded | None, what: str) -> float:
        array = np.asarray(self.static(value, what))
        if array.size != 1:
            raise self.error(f"{what} must be a scalar, got shape {array.shape}")
        return float(array.reshape(-1)[0])

    # ---- building ---------------------------------------------------------------------
    def apply(self, op: str, inputs: Sequence[Tensor], **attrs: Any) -> Tensor:
        """Record a DSL op; its location names the ONNX node (for later error messages)."""
        try:
            t = apply(op, inputs, **attrs)
        except GraphBuildError as exc:
            raise self.error(str(exc)) from None
        # the model's tensors at batch 1: a declared shape too large for any batch size
        self.check_size(t.type.shape, t.type.dtype, "output", limits.TENSOR_ENV)
        if self.node is not None:
            t.loc = f"{self.graph.source}: {self.node.label}"
        return t

    def unary(self, op: str, x: Runtime | Folded | None, **attrs: Any) -> Runtime:
        r = self.runtime(x)
        return Runtime(self.apply(op, [r.tensor], **attrs), r.batch_axis)

    def binary(self, op: str, a: Runtime | Folded | None, b: Runtime | Folded | None
               ) -> Runtime:
        """A broadcasting op (add, sub, mul, div); the batch axis must line up."""
        ra, rb = self.runtime(a, "input A"), self.runtime(b, "input B")
        ndim = max(ra.ndim, rb.ndim)
        axes = set()
        for r in (ra, rb):
            if r.batch_axis is not None:
                axes.add(r.batch_axis + ndim - r.ndim)
        if len(axes) > 1:
            raise self.error(f"the two inputs carry the batch on different axes "
                             f"({ra.shape_at(PROBES[0])} and {rb.shape_at(PROBES[0])} at "
                             f"batch {PROBES[0]})")
        axis = axes.pop() if axes else None
        if axis is not None:
            for r in (ra, rb):
                k = axis - (ndim - r.ndim)
                if r.batch_axis is None and k >= 0 and r.tensor.type.shape[k] != 1:
                    raise self.error(
                        f"a {r.tensor.type.shape} operand would broadcast along the batch "
                        f"axis {axis}; graphcnn needs it to be 1 there")
        out = self.apply(op, [ra.tensor, rb.tensor])
        return Runtime(out, axis)

    def reshape_to(self, x: Runtime | Folded | None, targets: Sequence[Sequence[int]]
                   ) -> Runtime:
        """Reshape x to `targets[k]` at probe batch PROBES[k]: a static reshape for a
        weight, else a DSL reshape whose batch-scaled axis is -1."""
        r = self.runtime(x)
        t0, t1 = (tuple(int(d) for d in t) for t in targets)
        if len(t0) != len(t1):
            raise self.error(f"the target shape's rank depends on the batch size: {t0} vs {t1}")
        if r.batch_axis is None:
            if t0 != t1:
                raise self.error(f"a weight's reshape target depends on the batch size: "
                                 f"{t0} vs {t1}")
            if t0 == r.tensor.type.shape:
                return r
            return Runtime(self.apply("reshape", [r.tensor], shape=t0), None)
        if t0 == r.shape_at(PROBES[0]) and t1 == r.shape_at(PROBES[1]):
            return r
        varying = [i for i, (a, b) in enumerate(zip(t0, t1)) if a != b]
        p0, p1 = PROBES
        if len(varying) != 1 or t0[varying[0]] % p0 or t1[varying[0]] % p1 or \
                t0[varying[0]] // p0 != t1[varying[0]] // p1:
            raise self.error(
                f"cannot express the output shape as a function of the batch size: "
                f"{t0} at batch {p0}, {t1} at batch {p1} (exactly one axis may scale with "
                f"the batch)")
        axis = varying[0]
        per_sample = t0[axis] // p0
        recorded = t0[:axis] + (per_sample,) + t0[axis + 1:]
        if int(np.prod(recorded)) != r.tensor.type.size:
            raise self.error(f"cannot reshape {r.shape_at(p0)} to {t0} (sizes differ)")
        in_shape = r.tensor.type.shape
        if axis == 0 and r.batch_axis == 0 and in_shape[0] == 1 and per_sample == 1 \
                and len(t0) == 2 and len(in_shape) > 2:
            out = self.apply("flatten", [r.tensor], start_dim=1)   # (N, C, H, W) -> (N, CHW)
        else:
            spec = tuple(-1 if i == axis else d for i, d in enumerate(recorded))
            out = self.apply("reshape", [r.tensor], shape=spec)
        return Runtime(out, axis)

    def check_batch_first(self, x: Runtime, what: str) -> None:
        """Ops with an N, C, ... layout (conv, pooling, batch norm) need the batch on axis 0
        with size 1 per sample."""
        if x.batch_axis not in (0, None) or (x.batch_axis == 0 and x.tensor.type.shape[0] != 1):
            raise self.error(f"{what} needs the batch on axis 0, got a tensor of shape "
                             f"{x.shape_at(PROBES[0])} at batch {PROBES[0]}")

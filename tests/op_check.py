"""The one op-test helper: forward against the reference backend, gradients against
finite differences (float64, reference backend) and against the reference (cpu).

    check_op("relu", [x], {})          # all three checks
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphcnn.autodiff import grad
from graphcnn.ir.graph import Graph, Value
from graphcnn.runtime.executable import make_runner

_runner_cache: dict[tuple[str, str], Any] = {}


def op_graph(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any],
             dtype: str | None = None) -> tuple[Graph, list[Value], list[Value]]:
    """A graph with one input per array feeding a single `op` node. Float arrays become
    inputs of `dtype` (default: their own)."""
    g = Graph(op)
    inputs = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        kind = dtype if (dtype and a.dtype.kind == "f") else str(a.dtype)
        inputs.append(g.input(f"in{i}", a.shape, kind))
    node = g.add_node(op, inputs, attrs)
    g.set_outputs(node.outputs)
    return g, inputs, node.outputs


def _cast(arrays: Sequence[np.ndarray], dtype: str) -> list[np.ndarray]:
    return [np.asarray(a, dtype) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
            for a in arrays]


def run_graph(graph: Graph, backend: str, inputs: Sequence[Value],
              arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    runner = make_runner(graph, backend)
    return runner.run({v.id: np.asarray(a) for v, a in zip(inputs, arrays)})


def forward(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any], backend: str,
            dtype: str = "float32") -> list[np.ndarray]:
    arrays = _cast(arrays, dtype)
    g, inputs, _ = op_graph(op, arrays, attrs, dtype)
    return run_graph(g, backend, inputs, arrays)


def gradient_graph(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any], dtype: str,
                   seed: int = 0) -> tuple[Graph, list[Value], list[int]]:
    """loss = sum_k sum(output_k * c_k) for fixed random c_k; outputs: loss, then the
    gradient of each float input. Returns the graph, its inputs, the float input indexes."""
    g, inputs, outputs = op_graph(op, arrays, attrs, dtype)
    rng = np.random.default_rng(seed)
    loss = None
    for out in outputs:
        if not out.type.is_float:
            continue
        c = g.constant(rng.standard_normal(out.shape).astype(dtype))
        term = g.add("sum_to", [g.add("mul", [out, c])], shape=())
        loss = term if loss is None else g.add("add", [loss, term])
    wrt = [i for i, v in enumerate(inputs) if v.type.is_float]
    grads = grad(g, loss, [inputs[i] for i in wrt])
    g.set_outputs([loss] + grads)
    return g, inputs, wrt


def gradients(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any], backend: str,
              dtype: str = "float32") -> list[np.ndarray]:
    arrays = _cast(arrays, dtype)
    g, inputs, _ = gradient_graph(op, arrays, attrs, dtype)
    return run_graph(g, backend, inputs, arrays)


def check_forward(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any],
                  rtol: float = 1e-4, atol: float = 1e-5) -> None:
    want = forward(op, arrays, attrs, "reference")
    got = forward(op, arrays, attrs, "cpu")
    for k, (w, o) in enumerate(zip(want, got)):
        assert o.dtype == w.dtype, f"{op} output {k}: dtype {o.dtype} != {w.dtype}"
        np.testing.assert_allclose(o, w, rtol=rtol, atol=atol,
                                   err_msg=f"{op} output {k} (cpu vs reference), attrs={attrs}")


def check_gradients_backends(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any],
                             rtol: float = 1e-4, atol: float = 1e-5) -> None:
    want = gradients(op, arrays, attrs, "reference")
    got = gradients(op, arrays, attrs, "cpu")
    for k, (w, o) in enumerate(zip(want, got)):
        np.testing.assert_allclose(o, w, rtol=rtol, atol=atol,
                                   err_msg=f"{op} gradient output {k} (cpu vs reference), "
                                           f"attrs={attrs}")


def check_gradients_fd(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any],
                       eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
                       seed: int = 1) -> None:
    """Analytic gradients (float64, reference) against central differences along a random
    direction for each float input (JAX's check_grads, order 1)."""
    arrays = _cast(arrays, "float64")
    g, inputs, wrt = gradient_graph(op, arrays, attrs, "float64")
    runner = make_runner(g, "reference")

    def loss_at(values: list[np.ndarray]) -> float:
        return float(runner.run({v.id: a for v, a in zip(inputs, values)})[0])

    analytic = runner.run({v.id: a for v, a in zip(inputs, arrays)})[1:]
    rng = np.random.default_rng(seed)
    for slot, index in enumerate(wrt):
        direction = rng.standard_normal(arrays[index].shape)
        plus, minus = list(arrays), list(arrays)
        plus[index] = arrays[index] + eps * direction
        minus[index] = arrays[index] - eps * direction
        numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        predicted = float(np.sum(analytic[slot] * direction))
        assert abs(numeric - predicted) <= atol + rtol * max(abs(numeric), abs(predicted)), (
            f"{op}: gradient of input {index} disagrees with finite differences: "
            f"analytic {predicted!r} vs numeric {numeric!r} (attrs={attrs})")


def check_op(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any] | None = None,
             grad: bool = True, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Forward cpu vs reference; and, if `grad`, gradients vs finite differences and
    cpu gradients vs reference gradients."""
    attrs = attrs or {}
    check_forward(op, arrays, attrs, rtol, atol)
    if grad:
        check_gradients_fd(op, arrays, attrs)
        check_gradients_backends(op, arrays, attrs, rtol, atol)

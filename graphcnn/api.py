"""The entry points: compile a model for inference, or build a gradient step."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from graphcnn.backends import Backend, get_backend
from graphcnn.ir.graph import Graph, Value
from graphcnn.model import Model
from graphcnn.runtime.executable import Executable, intermediate_bytes
from graphcnn import random as gc_random

LossFn = Callable[[Graph, Value, Value], Value]
LOSSES: dict[str, tuple[str, str]] = {
    # name -> (graph op, target dtype)
    "cross_entropy": ("cross_entropy", "int64"),
    "mse": ("mse", "float"),
}


def compile(model: Model, batch_size: int = 1, backend: str | Backend = "cpu", opt_level: int = 2,
            dtype: str = "float32", frozen: bool = True) -> Executable:
    """Compile `model` for inference at a fixed batch size.

    With `frozen=True` (the default) the parameters are frozen into the executable as they
    are now, so the optimizer may fold them; compile again after training to pick up new
    weights. With `frozen=False` the executable reads the model's current parameters at
    every call (what a trainer evaluating between epochs wants).

    >>> import graphcnn as gc, numpy as np
    >>> exe = gc.compile(gc.models.lenet5(), batch_size=2, backend="reference")
    >>> exe(np.zeros((2, 1, 32, 32), np.float32)).shape
    (2, 10)
    """
    start = time.perf_counter()
    target = get_backend(backend)
    graph = model.graph(batch_size, training=False, dtype=dtype, frozen=frozen)
    ops_before, naive_bytes = len(graph.compute_nodes()), intermediate_bytes(graph)
    from graphcnn.passes import run_pipeline  # imported when needed: gc.load does not
    graph, _ = run_pipeline(graph, opt_level, target)
    exe = Executable(graph, target, ops_before=ops_before, naive_bytes_before=naive_bytes,
                     param_source=_parameter_source(model, dtype))
    if target.compiles_kernels:
        exe.warm_up()
    exe.compile_seconds = time.perf_counter() - start
    return exe


def training_graph(model: Model, loss: str | LossFn, batch_size: int,
                   dtype: str = "float32") -> Graph:
    """Forward + loss + backward in one graph. Outputs: "loss", "grad:<name>" for each
    trainable parameter, then the "state:<name>" running-statistic updates."""
    g = model.graph(batch_size, training=True, dtype=dtype)
    if len(model.outputs) != 1:
        raise ValueError(f"value_and_grad needs a single-output model; {model.name!r} has "
                         f"{len(model.outputs)}")
    prediction = g.outputs[0]
    state = list(zip(g.output_names[1:], g.outputs[1:]))
    if callable(loss):
        target = g.input("target", prediction.shape, prediction.dtype)
        loss_value = loss(g, prediction, target)
    else:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or a "
                             f"function (graph, prediction, target) -> scalar value")
        op, target_dtype = LOSSES[loss]
        if target_dtype == "int64":
            target = g.input("target", prediction.shape[:1], "int64")
        else:
            target = g.input("target", prediction.shape, prediction.dtype)
        loss_value = g.add(op, [prediction, target])
    params = [v for v in g.params if v.node.attrs["trainable"]]
    from graphcnn.autodiff import grad
    grads = grad(g, loss_value, params)
    names = ["loss"] + [f"grad:{p.node.attrs['name']}" for p in params] + [n for n, _ in state]
    g.set_outputs([loss_value, *grads, *(v for _, v in state)], names)
    return g


def _parameter_source(model: Model, dtype: str) -> Callable[[], dict[str, np.ndarray]]:
    """What feeds `param` nodes at each call: the model's live arrays (no copy)."""
    if dtype == "float32":
        return model.parameters
    return lambda: {k: v.astype(dtype) for k, v in model.parameters().items()}


class GradientStep:
    """`loss, grads = step(x, target)`: the loss and d(loss)/d(each trainable parameter).

    Batch-norm running statistics are updated in the model as a side effect of each call
    (training mode), as in PyTorch.
    """

    def __init__(self, model: Model, executable: Executable, loss: str | LossFn) -> None:
        self.model = model
        self.executable = executable
        self.loss = loss
        self._state_names = [n for n in executable.output_names if n.startswith("state:")]
        self.num_classes = model.outputs[0].type.shape[-1]

    def __call__(self, x: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        if self.loss == "cross_entropy":
            check_labels(target, int(self.num_classes))
        input_name = self.executable.input_names[0]
        outputs = self.executable.run({input_name: x, "target": target})
        params = self.model.parameters()
        for name in self._state_names:
            params[name[len("state:"):]][...] = outputs[name]
        grads = {name[len("grad:"):]: value for name, value in outputs.items()
                 if name.startswith("grad:")}
        return float(outputs["loss"]), grads

    def report(self) -> dict[str, Any]:
        return self.executable.report()

    def save(self, path: Any) -> None:
        """Write this step (code and the model's current parameters) as an artifact that
        `graphcnn.load` returns as a TrainingStep, without compiling (runtime/artifact.py)."""
        from graphcnn.runtime.artifact import save_artifact
        save_artifact(self, path)


def check_labels(labels: np.ndarray, num_classes: int) -> None:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"class labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(f"labels must be in [0, {num_classes}); got {sorted(set(bad.tolist()))[:5]}")


def value_and_grad(model: Model, loss: str | LossFn = "cross_entropy", batch_size: int = 32,
                   backend: str | Backend = "cpu", opt_level: int = 2,
                   dtype: str = "float32") -> GradientStep:
    """Build a training step: forward, loss and backward compiled as one graph.

    >>> import graphcnn as gc, numpy as np
    >>> step = gc.value_and_grad(gc.models.lenet5(), batch_size=2, backend="reference")
    >>> loss, grads = step(np.zeros((2, 1, 32, 32), np.float32), np.array([0, 1]))
    >>> sorted(grads)[:2]
    ['c1.bias', 'c1.weight']
    """
    start = time.perf_counter()
    target = get_backend(backend)
    graph = training_graph(model, loss, batch_size, dtype)
    ops_before, naive_bytes = len(graph.compute_nodes()), intermediate_bytes(graph)
    from graphcnn.passes import run_pipeline  # imported when needed: gc.load does not
    graph, _ = run_pipeline(graph, opt_level)   # no backend passes: see Backend.passes
    exe = Executable(graph, target, ops_before=ops_before, naive_bytes_before=naive_bytes,
                     param_source=_parameter_source(model, dtype), seed=gc_random.next_seed())
    step = GradientStep(model, exe, loss)
    if target.compiles_kernels:
        exe.warm_up()  # runs the executable alone: the model's state is not touched
    exe.compile_seconds = time.perf_counter() - start
    return step

"""The entry points: compile a model for inference, or build a gradient step. They build
the runtime's objects (Executable, GradientStep); the runtime never imports this module."""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from graphcnn import seeding as gc_random
from graphcnn.arguments import check_bool, check_int
from graphcnn.backends import Backend, get_backend
from graphcnn.ir.graph import Graph, Value
from graphcnn.losses import Loss
from graphcnn.model import Model
from graphcnn.objective import Objective
from graphcnn.runtime.dynamic_batch import DEFAULT_MAX_BATCH
from graphcnn.runtime.executable import Executable, intermediate_bytes
from graphcnn.runtime.gradient_step import GradientStep, check_labels
from graphcnn.runtime.runner import Runner

__all__ = ["GradientStep", "check_labels", "compile", "training_graph", "value_and_grad"]

LossFn = Callable[[Graph, Value, Value], Value]
def compile(model: Model, batch_size: int | None = 1, backend: str | Backend = "cpu",
            opt_level: int = 2, dtype: str = "float32", frozen: bool = True,
            max_batch: int | None = None) -> Executable:
    """Compile `model` for inference at a fixed batch size, or with `batch_size=None` for
    any batch from 1 to `max_batch` (default 64): one executable, its memory planned once
    for the largest batch, that runs each call at the batch its inputs have, without
    compiling again (the cpu and reference backends).

    With `frozen=True` (the default) the parameters are frozen into the executable as they
    are now, so the optimizer may fold them; compile again after training to pick up new
    weights. With `frozen=False` the executable reads the model's current parameters at
    every call (what a trainer evaluating between epochs wants).

    >>> import graphcnn as gc, numpy as np
    >>> exe = gc.compile(gc.models.lenet5(), batch_size=2, backend="reference")
    >>> exe(np.zeros((2, 1, 32, 32), np.float32)).shape
    (2, 10)
    >>> any_batch = gc.compile(gc.models.lenet5(), batch_size=None, max_batch=8,
    ...                        backend="reference")
    >>> any_batch(np.zeros((3, 1, 32, 32), np.float32)).shape
    (3, 10)
    """
    start = time.perf_counter()
    frozen = check_bool("frozen", frozen, owner="compile")
    target = get_backend(backend)
    if batch_size is None:
        if model.fixed_batch is not None:
            raise ValueError(f"compile: {model.name!r} runs at batch size {model.fixed_batch} "
                             f"only (its graph mixes the batch with other axes), not at any "
                             f"batch size; compile it with batch_size={model.fixed_batch}")
        built_at = check_int("max_batch", DEFAULT_MAX_BATCH if max_batch is None
                             else max_batch, owner="compile", minimum=1)
    else:
        built_at = check_int("batch_size", batch_size, owner="compile")
        if max_batch is not None:
            raise ValueError("compile: max_batch is for batch_size=None (any batch up to "
                             "max_batch); give one of batch_size and max_batch")
    graph = model.graph(built_at, training=False, dtype=dtype, frozen=frozen)
    ops_before, naive_bytes = len(graph.compute_nodes()), intermediate_bytes(graph)
    from graphcnn.passes import run_pipeline  # imported when needed: gc.load does not
    graph, _ = run_pipeline(graph, opt_level, target)
    runner = _dynamic_runner(graph, target) if batch_size is None else None
    exe = Executable(graph, target, ops_before=ops_before, naive_bytes_before=naive_bytes,
                     param_source=_parameter_source(model, dtype), runner=runner)
    if target.compiles_kernels:
        exe.warm_up()
    exe.compile_seconds = time.perf_counter() - start
    return exe


def _dynamic_runner(graph: Graph, target: Backend, owner: str = "compile") -> Runner:
    """The runner of an executable for any batch up to the one `graph` was built at."""
    if target.name == "cpu":
        from graphcnn.backends.cpu.dynamic import DynamicCpuRunner
        return DynamicCpuRunner(graph)
    if target.name == "reference":
        from graphcnn.backends.reference import DynamicReferenceRunner
        return DynamicReferenceRunner(graph)
    raise ValueError(f"{owner}: batch_size=None (any batch size) runs on the cpu and "
                     f"reference backends; on {target.name}, give a batch_size")


def training_graph(model: Model, loss: str | Loss | LossFn | Objective | Mapping[str, Any],
                   batch_size: int, dtype: str = "float32",
                   loss_weights: Mapping[str, float] | None = None,
                   wrt: Sequence[str] | None = None, sync_batchnorm: int = 0) -> Graph:
    """Forward + loss + backward in one graph. Outputs: "loss", "grad:<name>" for each
    trainable parameter, then the "state:<name>" running-statistic updates. Inputs: the
    model's, then the targets ("target" for a one-output model, "target:<output name>"
    for each output with a loss; see graphcnn/objective.py). With `wrt`, only the
    parameters named there are differentiated (the others' param nodes are marked not
    trainable). `sync_batchnorm`: see Model.graph."""
    g = model.graph(batch_size, training=True, dtype=dtype, sync_batchnorm=sync_batchnorm)
    if wrt is not None:
        _restrict_trainable(g, model, wrt)
    count = len(model.outputs)
    predictions = g.outputs[:count]
    state = list(zip(g.output_names[count:], g.outputs[count:]))
    objective = loss if isinstance(loss, Objective) else Objective(model, loss, loss_weights)
    loss_value = objective.build(g, predictions)
    params = [v for v in g.params if v.node.attrs["trainable"]]
    from graphcnn.autodiff import grad
    grads = grad(g, loss_value, params)
    names = ["loss"] + [f"grad:{p.node.attrs['name']}" for p in params] + [n for n, _ in state]
    g.set_outputs([loss_value, *grads, *(v for _, v in state)], names)
    return g


def _restrict_trainable(g: Graph, model: Model, wrt: Sequence[str]) -> None:
    """Mark the trainable param nodes of `g` not named in `wrt` as not trainable."""
    if isinstance(wrt, str):
        wrt = [wrt]
    names = set(wrt)
    unknown = sorted(names - set(model.trainable_parameters()))
    if unknown:
        raise ValueError(f"value_and_grad: wrt names {unknown[:5]} that are not trainable "
                         f"parameters of {model.name!r} (e.g. "
                         f"{list(model.trainable_parameters())[:3]})")
    for value in g.params:
        if value.node.attrs["name"] not in names:
            value.node.attrs["trainable"] = False


def _parameter_source(model: Model, dtype: str) -> Callable[[], dict[str, np.ndarray]]:
    """What feeds `param` nodes at each call: the model's live arrays (no copy)."""
    if dtype == "float32":
        return model.parameters
    return lambda: {k: v.astype(dtype) for k, v in model.parameters().items()}


def value_and_grad(model: Model, loss: Any = "cross_entropy", batch_size: int | None = 32,
                   backend: str | Backend = "cpu", opt_level: int = 2,
                   dtype: str = "float32",
                   loss_weights: Mapping[str, float] | None = None,
                   wrt: Sequence[str] | None = None,
                   sync_batchnorm: int = 0, max_batch: int | None = None) -> GradientStep:
    """Build a training step: forward, loss and backward compiled as one graph.

    `loss`: a loss name, a ``gc.losses.Loss``, a function (graph, prediction, target) ->
    scalar value, or for a model with several outputs a dict {output name: loss} with
    ``loss_weights`` {output name: weight} (default 1): the step minimizes the weighted
    sum. The step is called ``step(x, target)``, with target an array for a one-output
    model and a dict {output name: array} for several.

    `wrt`: the names of the trainable parameters to differentiate (default: all of them).
    The others get no gradient, and the backward pass computes only what the ones asked
    for need (a GAN's discriminator step through the generator skips the generator's
    backward pass).

    `sync_batchnorm=W`: synchronized batch norm over W data-parallel ranks, each calling
    the step on its share of the global batch: the batch statistics (and, in the
    backward pass, their gradients' per-channel sums) are averaged over the ranks by the
    function in ``step.allreduce`` (array -> its mean over the ranks; the Trainer with
    ``distributed=True, sync_batchnorm=True`` sets it). 0 (the default): each call's own
    batch statistics.

    `batch_size=None`: one step for any batch from 1 to `max_batch` (default 64), as
    ``gc.compile(batch_size=None)`` (docs/dynamic_batch.md; the cpu and reference
    backends): each call returns the loss and gradients of the batch it is given — what
    a step built at that batch size returns — without compiling again. A model whose
    training graph holds at one batch size only is refused in one line
    (DynamicBatchError, a ValueError), as is synchronized batch norm.

    >>> import graphcnn as gc, numpy as np
    >>> step = gc.value_and_grad(gc.models.lenet5(), batch_size=2, backend="reference")
    >>> loss, grads = step(np.zeros((2, 1, 32, 32), np.float32), np.array([0, 1]))
    >>> sorted(grads)[:2]
    ['c1.bias', 'c1.weight']
    """
    start = time.perf_counter()
    target = get_backend(backend)
    sync = check_int("sync_batchnorm", sync_batchnorm, minimum=0, owner="value_and_grad")
    built_at = _step_batch(model, batch_size, max_batch, sync, target)
    graph = training_graph(model, loss, built_at, dtype, loss_weights, wrt,
                           sync_batchnorm=sync)
    if batch_size is None:   # no batch-size constant in it: replaying it is building it
        from graphcnn.runtime.dynamic_batch import check_replays
        check_replays(graph, training_graph(model, loss, built_at + 1, dtype, loss_weights,
                                            wrt), owner="value_and_grad")
    ops_before, naive_bytes = len(graph.compute_nodes()), intermediate_bytes(graph)
    from graphcnn.passes import run_pipeline  # imported when needed: gc.load does not
    graph, _ = run_pipeline(graph, opt_level)   # no backend passes: see Backend.passes
    runner = None if batch_size is not None else _dynamic_runner(graph, target,
                                                                  owner="value_and_grad")
    exe = Executable(graph, target, ops_before=ops_before, naive_bytes_before=naive_bytes,
                     param_source=_parameter_source(model, dtype), seed=gc_random.next_seed(),
                     runner=runner)
    step = GradientStep(exe, loss, model, num_classes=int(model.outputs[0].type.shape[-1]))
    if target.compiles_kernels:
        exe.warm_up()  # runs the executable alone: the model's state is not touched
    exe.compile_seconds = time.perf_counter() - start
    return step


def _step_batch(model: Model, batch_size: int | None, max_batch: int | None,
                sync_batchnorm: int, target: Backend) -> int:
    """The batch a training step's graph is built at: `batch_size`, or `max_batch` (default
    64) for a step that runs any batch up to it."""
    if batch_size is not None:
        if max_batch is not None:
            raise ValueError("value_and_grad: max_batch is for batch_size=None (any batch up "
                             "to max_batch); give one of batch_size and max_batch")
        return check_int("batch_size", batch_size, owner="value_and_grad")
    from graphcnn.runtime.dynamic_batch import DynamicBatchError
    if target.name not in ("cpu", "reference"):
        raise DynamicBatchError(f"value_and_grad: batch_size=None (any batch size) runs on "
                                f"the cpu and reference backends; on {target.name}, give a "
                                f"batch_size")
    if model.fixed_batch is not None:
        raise DynamicBatchError(f"value_and_grad: {model.name!r} runs at batch size "
                                f"{model.fixed_batch} only, not at any batch size; give "
                                f"batch_size={model.fixed_batch}")
    if sync_batchnorm:
        raise DynamicBatchError("value_and_grad: synchronized batch norm averages equal "
                                "shares of the global batch over the ranks; give a "
                                "batch_size (every rank the same)")
    return check_int("max_batch", DEFAULT_MAX_BATCH if max_batch is None else max_batch,
                     owner="value_and_grad", minimum=1)

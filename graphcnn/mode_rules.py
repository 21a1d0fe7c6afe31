"""How DSL ops whose meaning depends on the mode become IR: dropout and batch norm.

Inference: dropout is the identity and batch norm uses running statistics. Training:
dropout draws its mask from a per-call seed input, and batch norm normalizes with batch
statistics and emits the running-statistic updates (PyTorch's momentum convention,
unbiased variance in the running estimate). With `sync_batchnorm` (the number of ranks of
data-parallel training, 0: off) the batch statistics are the global batch's, averaged
over the ranks inside the step (graphcnn/ops/norm.py: sync_batch_norm), and the unbiased
variance of the running estimate counts the global batch, as torch's SyncBatchNorm."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.dsl import Parameter, Tensor
from graphcnn.ir.conventions import DROPOUT_SEED_INPUT
from graphcnn.ir.graph import Graph, Value


class LoweringContext:
    def __init__(self, graph: Graph, training: bool, dtype: str,
                 sync_batchnorm: int = 0) -> None:
        self.graph = graph
        self.training = training
        self.dtype = dtype
        self.sync_batchnorm = sync_batchnorm
        self.state_updates: dict[Parameter, Value] = {}
        self._seed: Value | None = None
        self._salt = 0

    def dropout_seed(self) -> Value:
        """One int64 scalar input per graph, fed with a fresh value at every call."""
        if self._seed is None:
            self._seed = self.graph.input(DROPOUT_SEED_INPUT, (), "int64")
        return self._seed

    def next_salt(self) -> int:
        """Distinguishes the masks of the dropout layers that share one seed."""
        self._salt += 1
        return self._salt

    def scalar(self, value: float) -> Value:
        return self.graph.constant(np.asarray(value, dtype=self.dtype))


def lower_dropout(ctx: LoweringContext, t: Tensor, args: list[Value]) -> Value:
    if not ctx.training or t.attrs["p"] == 0.0:
        return args[0]
    # dropout or channel_dropout: the same seed input, a salt of its own
    return ctx.graph.add(t.op, [args[0], ctx.dropout_seed()], loc=t.loc,
                         p=t.attrs["p"], salt=ctx.next_salt())


def lower_batch_norm(ctx: LoweringContext, t: Tensor, args: list[Value]) -> Value:
    g = ctx.graph
    if not ctx.training:
        return g.add("batch_norm", args, loc=t.loc, **t.attrs)
    x, weight, bias, running_mean, running_var = args
    if ctx.sync_batchnorm:
        from graphcnn.ops.norm import sync_batch_norm

        y, mean, var = sync_batch_norm(g, x, weight, bias, t.attrs["eps"],
                                       ctx.sync_batchnorm, loc=t.loc)
    else:
        node = g.add_node("batch_norm_train", [x, weight, bias], {"eps": t.attrs["eps"]},
                          loc=t.loc)
        y, mean, var = node.outputs
    momentum = t.attrs["momentum"]
    kept = g.add("mul", [running_mean, ctx.scalar(1.0 - momentum)])
    mean_param, var_param = t.inputs[3].parameter, t.inputs[4].parameter
    assert mean_param is not None and var_param is not None, \
        "the running statistics of a batch norm in training are parameters"
    ctx.state_updates[mean_param] = g.add("add", [kept, g.add("mul", [
        mean, ctx.scalar(momentum)])])
    # the unbiased variance's M / (M - 1) counts the batch at run time (the global
    # batch's under sync_batchnorm): one graph trains at any batch size
    ctx.state_updates[var_param] = g.add("running_var_update", [running_var, var, x],
                                         momentum=momentum,
                                         world_size=max(ctx.sync_batchnorm, 1))
    return y


def lower_slice(ctx: LoweringContext, t: Tensor, args: list[Value]) -> Value:
    """A slice the DSL recorded (gc.split, at batch 1) takes the whole batch axis: when the
    input's axis 0 has another size now, it is the batch, and the slice keeps all of it."""
    starts, ends = t.attrs["starts"], t.attrs["ends"]
    batch = args[0].shape[0] if args[0].type.ndim else None
    if batch is not None and batch != t.inputs[0].type.shape[0]:
        starts, ends = (0,) + tuple(starts[1:]), (batch,) + tuple(ends[1:])
    return ctx.graph.add("slice", args, loc=t.loc, starts=starts, ends=ends)


MODE_RULES: dict[str, Callable[[LoweringContext, Tensor, list[Value]], Any]] = {
    "dropout": lower_dropout,
    "channel_dropout": lower_dropout,
    "batch_norm": lower_batch_norm,
    "slice": lower_slice,
}

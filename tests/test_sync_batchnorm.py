"""Synchronized batch norm without MPI: two "ranks" as two threads, each with its own
model and step, averaging through a barrier (the allreduce hook is per thread), against
one step on the whole batch; the world-size-1 sync path against the plain one; the
allreduce nodes kept apart by the optimizer; the errors. Under mpiexec:
tests/test_distributed.py::test_sync_batchnorm_two_ranks_equal_one_process."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.ops import collective


def bn_net() -> gc.Model:
    gc.manual_seed(0)
    x = gc.Input((2, 5, 5), name="x")
    h = gc.relu(nn.BatchNorm2d(3, name="bn")(nn.Conv2d(2, 3, 3, padding=1, name="conv")(x)))
    h = nn.BatchNorm1d(4, name="bn1")(nn.Linear(75, 4, name="fc1")(nn.Flatten()(h)))
    return gc.Model(inputs=x, outputs=nn.Linear(4, 3, name="fc")(gc.tanh(h)), name="bn_net")


def batch(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(1.0, 2.0, size=(n, 2, 5, 5)), rng.integers(0, 3, n)


class ThreadWorld:
    """An allreduce among `size` threads: each rank's function waits for every rank's
    array, and returns their mean."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list[np.ndarray | None] = [None] * size
        self.calls = [0] * size

    def allreduce(self, rank: int):  # type: ignore[no-untyped-def]
        def mean(array: np.ndarray) -> np.ndarray:
            self.calls[rank] += 1
            self.slots[rank] = np.array(array)
            self.barrier.wait()
            out = sum(self.slots[1:], start=np.array(self.slots[0])) / self.size  # type: ignore[arg-type]
            self.barrier.wait()   # every rank has read every slot
            return out
        return mean


def run_ranks(size: int, backend: str, dtype: str) -> tuple[list, list]:
    X, y = batch()
    share = len(X) // size
    models = [bn_net() for _ in range(size)]
    steps = [gc.value_and_grad(m, batch_size=share, backend=backend, dtype=dtype,
                               sync_batchnorm=size) for m in models]
    world = ThreadWorld(size)
    for rank, step in enumerate(steps):
        step.allreduce = world.allreduce(rank)
    results: list = [None] * size

    def rank_main(rank: int) -> None:
        part = slice(rank * share, (rank + 1) * share)
        results[rank] = steps[rank](X[part].astype(dtype), y[part])

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(world.calls)) == 1 and world.calls[0] == 8   # 2 BNs x (2 fwd + 2 bwd)
    return results, models


def single(backend: str, dtype: str, sync: int = 0) -> tuple[tuple, gc.Model]:
    X, y = batch()
    model = bn_net()
    step = gc.value_and_grad(model, batch_size=len(X), backend=backend, dtype=dtype,
                             sync_batchnorm=sync)
    return step(X.astype(dtype), y), model


def close(a: np.ndarray, b: np.ndarray, tol: float, scale: float = 0.0) -> None:
    """|a - b| <= tol * max(|b|, scale): `scale` for values that are rounding noise
    around 0 (the gradient of a bias that a batch norm follows)."""
    assert float(np.abs(a - b).max()) <= tol * max(float(np.abs(b).max()), scale)


@pytest.mark.parametrize("backend,dtype,tol", [("reference", "float64", 1e-12),
                                               ("cpu", "float32", 1e-5)])
def test_two_ranks_average_to_the_whole_batch(backend, dtype, tol):
    (loss, grads), model = single(backend, dtype)
    results, models = run_ranks(2, backend, dtype)
    assert abs(np.mean([r[0] for r in results]) - loss) <= tol * abs(loss)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name in grads:
        close((results[0][1][name] + results[1][1][name]) / 2, grads[name], tol, scale)
    for name, value in model.parameters().items():   # the running statistics included
        for other in models:
            close(other.parameters()[name], value, tol)


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (5, 2)])
def test_batch_norm_normalize_gradients_include_mean_and_var(shape):
    """Every input differentiated (finite differences, and cpu against the reference):
    the mean and the variance are the batch's here, not state."""
    from op_check import check_op

    rng = np.random.default_rng(2)
    channels = shape[1]
    check_op("batch_norm_normalize", [rng.normal(size=shape).astype(np.float32),
                                      rng.uniform(0.5, 1.5, channels).astype(np.float32),
                                      rng.normal(size=channels).astype(np.float32),
                                      rng.normal(size=channels).astype(np.float32),
                                      rng.uniform(0.5, 2.0, channels).astype(np.float32)],
             {"eps": 1e-3})


def test_world_size_one_sync_equals_plain():
    (loss, grads), model = single("reference", "float64")
    (sync_loss, sync_grads), sync_model = single("reference", "float64", sync=1)
    assert abs(sync_loss - loss) < 1e-12
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name in grads:
        close(sync_grads[name], grads[name], 1e-12, scale)
    for name, value in model.parameters().items():
        close(sync_model.parameters()[name], value, 1e-12)


def test_allreduce_nodes_survive_fusion_and_the_plain_graph_has_none():
    model = bn_net()
    step = gc.value_and_grad(model, batch_size=4, backend="cpu", sync_batchnorm=2)
    ops = [n.op for n in step.executable.graph.nodes]
    assert ops.count("allreduce") == 8
    fused_members = [n for n in step.executable.graph.nodes if n.op == "fused"
                     and "allreduce" in str(n.attrs)]
    assert fused_members == []
    plain = gc.value_and_grad(model, batch_size=4, backend="cpu")
    plain_ops = [n.op for n in plain.executable.graph.nodes]
    assert "allreduce" not in plain_ops and "batch_norm_normalize" not in plain_ops
    assert "batch_norm_train" in plain_ops


def test_a_step_for_two_ranks_without_a_communicator_refuses_to_run():
    X, y = batch(4)
    step = gc.value_and_grad(bn_net(), batch_size=4, backend="reference",
                             sync_batchnorm=2)
    with pytest.raises(RuntimeError, match="averages batch-norm statistics over 2 ranks"):
        step(X.astype(np.float32), y)
    with collective.local():   # explicitly alone: per-process statistics
        loss, _ = step(X.astype(np.float32), y)
    assert np.isfinite(loss)


def test_sync_batchnorm_needs_distributed_training(capsys):
    with pytest.raises(ValueError, match="distributed=True"):
        gc.Trainer(bn_net(), sync_batchnorm=True)
    from graphcnn.cli import main

    with pytest.raises(SystemExit) as exit_:   # a usage error, before any work
        main(["train", "lenet5", "--sync-batchnorm", "--epochs", "1"])
    assert exit_.value.code == 2
    assert "--sync-batchnorm synchronizes batch norm" in capsys.readouterr().err


def test_a_saved_sync_step_loads_and_runs_with_a_communicator(tmp_path):
    """Saving records the kernels in a run on zeros, alone (allreduce is the identity
    there); the loaded step, like the built one, needs its communicator."""
    X, y = batch(4)
    step = gc.value_and_grad(bn_net(), batch_size=4, backend="cpu", sync_batchnorm=2)
    gc.save(step, tmp_path / "step.gcnn")
    loaded = gc.load(tmp_path / "step.gcnn")
    with pytest.raises(RuntimeError, match="no communicator"):
        loaded(X.astype(np.float32), y)
    step.allreduce = loaded.allreduce = lambda a: a   # a twin rank with the same batch
    loss, grads = step(X.astype(np.float32), y)
    loaded_loss, loaded_grads = loaded(X.astype(np.float32), y)
    assert loaded_loss == loss
    for name in grads:
        np.testing.assert_array_equal(loaded_grads[name], grads[name])

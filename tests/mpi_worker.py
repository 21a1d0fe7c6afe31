"""Distributed-training cases that tests/test_distributed.py runs under ``mpiexec -n 2``
and under plain ``python`` (world size 1): ``python mpi_worker.py CASE OUT [ARG]``.

  parity OUT           in one launch (compiling once): 10 SGD-momentum steps of a small
                       conv net (no batch norm) with a global batch of 16 split among the
                       ranks, ranks other than 0 starting from other weights; LeNet-5 on
                       the digits for one epoch (global batch 64); the gradient buckets
                       (several, tiny) averaged. Rank 0 writes OUT.npz (parameters, test
                       accuracy).
  syncbn OUT           10 SGD-momentum steps of a conv net with batch norm (2-D and 1-D)
                       with a global batch of 16 split among the ranks: with synchronized
                       batch norm ("sync/"), and with each rank's own statistics
                       ("local/"); under plain python also the single-process Trainer
                       without distributed training ("plain/"). Rank 0 writes OUT.npz
                       (parameters and running statistics).
  raise OUT RANK       rank RANK raises in its third step; the others wait in allreduce.
  resume OUT KILL      an MLP trained to 3 epochs (global batch 16) with a checkpoint at
                       OUT; with KILL=1, rank 1 kills itself (SIGKILL) in epoch 2. Rank 0
                       writes OUT.npz with the final parameters.
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

import graphcnn as gc
from graphcnn import nn
from graphcnn.train.trainer import Callback, Trainer

W = gc.distributed.world_size()
RANK = gc.distributed.rank()


def conv_net(seed: int) -> gc.Model:
    gc.manual_seed(seed)
    x = gc.Input((1, 8, 8), name="x")
    h = nn.AvgPool2d(2)(gc.tanh(nn.Conv2d(1, 4, 3, padding=1, name="conv")(x)))
    return gc.Model(inputs=x, outputs=nn.Linear(64, 5, name="fc")(nn.Flatten()(h)),
                    name="tiny")


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def equal_steps() -> dict[str, np.ndarray]:
    X, y = data(80)   # global batch 16: 5 steps an epoch, 10 in 2 epochs
    model = conv_net(3 + RANK)   # the broadcast from rank 0 must undo the other weights
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                      train_accuracy="none", distributed=True, seed=5)
    trainer.fit(X, y, epochs=2, batch_size=16 // W, verbose=False)
    assert trainer.optimizer.steps["fc.weight"] == 10
    return {"equal/" + k: v for k, v in trainer.model.parameters().items()}


def lenet_accuracy() -> dict[str, np.ndarray]:
    (X, y), (Xt, yt) = gc.data.load_digits()
    gc.manual_seed(0)
    model = gc.models.lenet5(num_classes=10)
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9),
                      distributed=True)
    trainer.fit(X, y, epochs=2, batch_size=64 // W, verbose=False, validation_data=(Xt, yt))
    result = trainer.evaluate(Xt, yt)   # outside fit: this rank alone, every row
    # fit's validation (each rank a block of rows, gathered) saw the same predictions
    assert trainer.history.history["val_accuracy"][-1] == result["accuracy"]
    assert abs(trainer.history.history["val_loss"][-1] - result["loss"]) < 1e-6
    return {"lenet/accuracy": np.array(result["accuracy"]),
            "lenet/loss": np.array(result["loss"]),
            "lenet/train_accuracy": np.array(trainer.history.history["accuracy"][-1])}


def buckets() -> None:
    """Several buckets (tiny ones), mixed dtypes: every rank gets the mean, in the same
    reused buffers each call."""
    from graphcnn.distributed.buckets import GradientBuckets
    from graphcnn.distributed.mpi import load_mpi

    grads = {"a": np.full((3, 4), RANK + 1.0, np.float32),
             "b": np.arange(10, dtype=np.float32) * (RANK + 1),
             "c": np.full(5, 2.0 * RANK, np.float64), "d": np.ones(7, np.float32) * RANK}
    b = GradientBuckets(load_mpi().COMM_WORLD, grads, bucket_bytes=48)
    assert len(b.buffers) >= 3, len(b.buffers)
    mean = (W + 1) / 2
    for _ in range(2):
        loss, avg = b.average(float(RANK), grads)
        assert loss == (W - 1) / 2
        np.testing.assert_allclose(avg["a"], mean)
        np.testing.assert_allclose(avg["b"], np.arange(10) * mean)
        np.testing.assert_allclose(avg["c"], W - 1.0)
        np.testing.assert_allclose(avg["d"], (W - 1) / 2)
        assert all(avg[k].base is not None for k in avg)   # views into the buckets
        assert avg["c"].dtype == np.float64


def parity(out: str) -> None:
    buckets()
    results = {**equal_steps(), **lenet_accuracy()}
    if gc.distributed.is_main():
        np.savez(out + ".npz", **results)


def bn_net(seed: int) -> gc.Model:
    gc.manual_seed(seed)
    x = gc.Input((1, 8, 8), name="x")
    h = gc.relu(nn.BatchNorm2d(4, name="bn")(nn.Conv2d(1, 4, 3, padding=1, name="conv")(x)))
    h = nn.Flatten()(nn.AvgPool2d(2)(h))
    h = gc.tanh(nn.BatchNorm1d(6, name="bn1")(nn.Linear(64, 6, name="fc1")(h)))
    return gc.Model(inputs=x, outputs=nn.Linear(6, 5, name="fc")(h), name="bn_net")


def bn_steps(prefix: str, **options: bool) -> dict[str, np.ndarray]:
    X, y = data(80)   # global batch 16: 5 steps an epoch, 10 in 2 epochs
    model = bn_net(3 + RANK if options.get("distributed") else 3)
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                      train_accuracy="none", seed=5, **options)
    trainer.fit(X, y, epochs=2, batch_size=16 // W, verbose=False)
    assert trainer.optimizer.steps["fc.weight"] == 10
    return {prefix + k: v for k, v in trainer.model.parameters().items()}


def syncbn(out: str) -> None:
    results = {**bn_steps("sync/", distributed=True, sync_batchnorm=True),
               **bn_steps("local/", distributed=True)}
    if W == 1:
        results.update(bn_steps("plain/"))
    if gc.distributed.is_main():
        np.savez(out + ".npz", **results)


class RaiseAt(Callback):
    def __init__(self, rank: int, epoch: int, kill: bool = False) -> None:
        self.rank, self.epoch, self.kill = rank, epoch, kill

    def on_batch_end(self, trainer, epoch, batch, logs):  # type: ignore[no-untyped-def]
        if RANK == self.rank and epoch == self.epoch and batch == 2:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure")


def raising(out: str, rank: int) -> None:
    X, y = data(80)
    trainer = Trainer(conv_net(3), train_accuracy="none", distributed=True)
    trainer.fit(X, y, epochs=2, batch_size=8, verbose=False, callbacks=[RaiseAt(rank, 0)])


def resume(out: str, kill: int) -> None:
    X, y = data(96)
    gc.manual_seed(1)
    x = gc.Input((64,), name="x")
    h = gc.tanh(nn.Linear(64, 16, name="fc1")(x))
    model = gc.Model(inputs=x, outputs=nn.Linear(16, 5, name="fc2")(h), name="mlp")
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9), checkpoint=out,
                      train_accuracy="none", distributed=True, seed=2)
    trainer.fit(X.reshape(len(X), 64), y, epochs=3, batch_size=16 // W, verbose=False,
                callbacks=[RaiseAt(1, 1, kill=True)] if kill else [])
    if gc.distributed.is_main():
        np.savez(out + ".npz", **trainer.model.parameters())


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    if case == "parity":
        parity(out)
    elif case == "syncbn":
        syncbn(out)
    else:
        {"raise": raising, "resume": resume}[case](out, int(sys.argv[3]))

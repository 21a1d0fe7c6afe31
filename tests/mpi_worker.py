"""Runs one distributed-training case (tests/test_distributed.py starts it under
``mpiexec -n 2`` and under plain ``python``): ``python mpi_worker.py CASE OUT [ARGS]``.

Cases:
  equal OUT B          10 SGD-momentum steps of a small conv net (no batch norm) with
                       batch B per rank; rank 0 writes the parameters to OUT (.npz)
  raise OUT RANK       rank RANK raises in its third step; the others wait in allreduce
  resume OUT EPOCHS    trains an MLP to EPOCHS with a checkpoint at OUT (.ckpt), writes
                       OUT.npz with the parameters
"""
from __future__ import annotations

import sys

import numpy as np

import graphcnn as gc
from graphcnn import nn
from graphcnn.train.trainer import Callback, Trainer


def conv_net(seed: int = 3) -> gc.Model:
    gc.manual_seed(seed)
    x = gc.Input((1, 8, 8), name="x")
    h = gc.tanh(nn.Conv2d(1, 4, 3, padding=1, name="conv")(x))
    h = nn.AvgPool2d(2)(h)
    h = nn.Flatten()(h)
    return gc.Model(inputs=x, outputs=nn.Linear(64, 5, name="fc")(h), name="tiny")


def data(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def equal(out: str, batch: int) -> None:
    X, y = data()   # 80 samples, global batch 16: 5 steps an epoch, 10 in 2 epochs
    # ranks other than 0 start from other weights: the broadcast from rank 0 must fix them
    model = conv_net(3 + gc.distributed.rank())
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                      train_accuracy="none", distributed=True, seed=5)
    trainer.fit(X, y, epochs=2, batch_size=batch, verbose=False)
    if gc.distributed.is_main():
        np.savez(out, **trainer.model.parameters())


class RaiseAt(Callback):
    def __init__(self, rank: int) -> None:
        self.rank = rank

    def on_batch_end(self, trainer, epoch, batch, logs):  # type: ignore[no-untyped-def]
        if batch == 2 and gc.distributed.rank() == self.rank:
            raise RuntimeError("injected failure")


def raising(out: str, rank: int) -> None:
    X, y = data()
    trainer = Trainer(conv_net(), train_accuracy="none", distributed=True)
    trainer.fit(X, y, epochs=2, batch_size=8, verbose=False, callbacks=[RaiseAt(rank)])


def resume(out: str, epochs: int) -> None:
    X, y = data(96)
    X = X.reshape(len(X), 64)
    gc.manual_seed(1)
    x = gc.Input((64,), name="x")
    h = gc.tanh(nn.Linear(64, 16, name="fc1")(x))
    model = gc.Model(inputs=x, outputs=nn.Linear(16, 5, name="fc2")(h), name="mlp")
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9), checkpoint=out,
                      train_accuracy="none", distributed=True, seed=2)
    trainer.fit(X, y, epochs=epochs, batch_size=8, verbose=False)
    if gc.distributed.is_main():
        np.savez(out + ".npz", **trainer.model.parameters())


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    {"equal": equal, "raise": raising, "resume": resume}[case](out, int(sys.argv[3]))

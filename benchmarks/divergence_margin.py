"""How far healthy training stays from the Trainer's divergence alarm.

    python benchmarks/divergence_margin.py

The alarm (graphcnn/train/guards.py) fires when the mean of the last 5 batch losses
exceeds 10x the starting loss. This script trains LeNet-5 on the digits with the demo's
settings and with `graphcnn train`'s defaults and Adam, with ``on_divergence="stop"``
and DivergenceWarning turned into an error, and prints the largest ratio of the 5-batch
mean to the starting loss each run reached (1.0: never above its start).
"""
from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import numpy as np

import graphcnn as gc
from graphcnn.commands.common import load_dataset
from graphcnn.train.guards import DivergenceWarning
from graphcnn.train.trainer import Callback, Trainer


class WorstRatio(Callback):
    """The largest (mean of the last 5 batch losses) / (first batch loss)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=5)
        self.worst = 0.0

    def on_batch_end(self, trainer: Any, epoch: int, batch: int,
                     logs: dict[str, float]) -> None:
        self.first = self.first or logs["loss"]
        self.recent.append(logs["loss"])
        self.worst = max(self.worst, float(np.mean(self.recent)) / self.first)


def main() -> None:
    warnings.simplefilter("error", DivergenceWarning)
    (X, y), (Xt, yt) = load_dataset("digits")
    runs = [
        ("demo: SGD nesterov lr 0.05, cosine, shift, batch 32, 20 epochs",
         lambda: gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
         lambda: gc.optim.CosineAnnealingLR(T_max=20), 20, 32, "shift"),
        ("train defaults: SGD lr 0.05 momentum 0.9, batch 64, 10 epochs",
         lambda: gc.optim.SGD(lr=0.05, momentum=0.9), lambda: None, 10, 64, None),
        ("Adam lr 0.01, batch 64, 10 epochs", lambda: gc.optim.Adam(lr=0.01), lambda: None,
         10, 64, None),
        ("Adam lr 0.001, batch 64, 10 epochs", lambda: gc.optim.Adam(lr=0.001), lambda: None,
         10, 64, None),
    ]
    for name, optimizer, schedule, epochs, batch_size, augment in runs:
        gc.manual_seed(0)
        ratio = WorstRatio()
        trainer = Trainer(gc.models.lenet5(), optimizer=optimizer(), schedule=schedule(),
                          augment=augment, on_divergence="stop")
        history = trainer.fit(X, y, epochs=epochs, batch_size=batch_size,
                              validation_data=(Xt, yt), verbose=False, callbacks=[ratio])
        print(f"{name}: val accuracy {history.history['val_accuracy'][-1]:.3f}, largest "
              f"5-batch mean / start {ratio.worst:.2f} (alarm above 10)", flush=True)


if __name__ == "__main__":
    main()

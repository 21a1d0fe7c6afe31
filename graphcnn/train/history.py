"""History: what a Trainer's fit records per epoch, and a plot of it."""
from __future__ import annotations

import math
import os
from typing import Any

METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


class History:
    """Per-epoch records, as in Keras: ``history.history["loss"][i]`` is the mean training
    loss of epoch ``history.epoch[i]`` (0-based).

    Keys: ``loss``, ``accuracy``, ``lr`` always; ``val_loss``, ``val_accuracy`` when fit
    was given validation data. ``lr`` is the learning rate at the start of the epoch.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def last(self) -> dict[str, float]:
        """The most recent epoch's values."""
        return {k: v[-1] for k, v in self.history.items() if v}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able (NaN and infinities become None, since JSON has no such numbers)."""
        clean = {k: [x if math.isfinite(x) else None for x in v]
                 for k, v in self.history.items()}
        return {"epoch": list(self.epoch), "history": clean}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "History":
        h = cls()
        h.epoch = [int(e) for e in state["epoch"]]
        h.history = {k: [float("nan") if x is None else float(x) for x in v]
                     for k, v in state["history"].items()}
        return h

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last().items())
        return f"History({len(self)} epochs{': ' + last if last else ''})"


def plot_history(history: History, path: str | os.PathLike[str], title: str = "") -> str:
    """Save a PNG with two panels, loss and accuracy per epoch (training and, when
    recorded, validation). Uses matplotlib's Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e + 1 for e in history.epoch]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        if key in history.history:
            ax.plot(epochs, history.history[key], "o-", label=f"train {label}")
        if f"val_{key}" in history.history:
            ax.plot(epochs, history.history[f"val_{key}"], "s-", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
    return os.fspath(path)

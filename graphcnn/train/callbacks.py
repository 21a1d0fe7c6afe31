"""Callback: the hooks Trainer.fit calls (re-exported by graphcnn.train.trainer)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphcnn.train.trainer import Trainer


class Callback:
    """Hooks called by Trainer.fit; override the ones you need. Set
    ``trainer.stop_training = True`` to end training after the current epoch."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_resume(self, trainer: "Trainer", epochs_done: int,
                  changes: list[tuple[str, Any, Any]]) -> None:
        """After a checkpoint was restored: `changes` are the settings that
        resume_overrides changed, as (name, checkpoint's value, new value)."""
    def on_epoch_begin(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_batch_end(self, trainer: "Trainer", epoch: int, batch: int,
                     logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...

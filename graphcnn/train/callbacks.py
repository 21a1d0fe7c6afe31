"""Callback: the hooks Trainer.fit calls (re-exported by graphcnn.train.trainer)."""
from __future__ import annotations

from typing import Any

TrainerLike = Any   # graphcnn.train.trainer.Trainer (which imports this module)


class Callback:
    """Hooks called by Trainer.fit; override the ones you need. Set
    ``trainer.stop_training = True`` to end training after the current epoch."""

    def on_train_begin(self, trainer: TrainerLike) -> None: ...
    def on_resume(self, trainer: TrainerLike, epochs_done: int,
                  changes: list[tuple[str, Any, Any]]) -> None:
        """After a checkpoint was restored: `changes` are the settings that
        resume_overrides changed, as (name, checkpoint's value, new value)."""
    def on_epoch_begin(self, trainer: TrainerLike, epoch: int) -> None: ...
    def on_batch_end(self, trainer: TrainerLike, epoch: int, batch: int,
                     logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: TrainerLike) -> None: ...

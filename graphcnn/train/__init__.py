"""Training: the Trainer loop (``graphcnn.train.trainer``, also ``gc.Trainer``), its
History, checkpoints, augmentation (``graphcnn.train.augment``) and input normalization
(``graphcnn.train.normalize``). Optimizers and schedules live in ``gc.optim``, metrics in
``gc.metrics``.

This package only re-exports the light pieces; import the Trainer from
``graphcnn.train.trainer`` (or use ``gc.Trainer``).
"""
from graphcnn.train.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from graphcnn.train.history import History

__all__ = ["History", "checkpoint_exists", "load_checkpoint", "save_checkpoint"]

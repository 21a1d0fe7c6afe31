"""Optimizers and learning-rate schedules (``gc.optim``), with torch.optim semantics.

>>> import graphcnn as gc
>>> opt = gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
>>> sched = gc.optim.CosineAnnealingLR(T_max=20).bind(opt)
>>> opt.lr
0.05

Optimizers update dicts of NumPy parameter arrays in place: ``opt.step(params, grads)``.
See :mod:`graphcnn.optim.optimizers` and :mod:`graphcnn.optim.schedules`.
"""
from graphcnn.optim.optimizers import SGD, Adam, AdamW, Optimizer
from graphcnn.optim.schedules import (
    CosineAnnealingLR,
    CyclicLR,
    ExponentialLR,
    LRSchedule,
    ReduceLROnPlateau,
    StepLR,
)

__all__ = ["Adam", "AdamW", "CosineAnnealingLR", "CyclicLR", "ExponentialLR", "LRSchedule",
           "Optimizer", "ReduceLROnPlateau", "SGD", "StepLR"]

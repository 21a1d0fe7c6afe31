"""``graphcnn train``: train a model on a dataset, report on the test split.

    graphcnn train MODEL [--dataset digits] [--epochs N] [--optimizer sgd|adam|adamw]
                         [--schedule none|step|exponential|cosine|cyclic|plateau]
                         [--augment SPEC] [--checkpoint FILE] [--out DIR] ...

MODEL is a zoo name (built for the data's classes, channels and image size), an ``.onnx``
file or ``path/to/file.py:function``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from graphcnn.commands.common import (
    add_training_arguments,
    augment_spec,
    load_dataset,
    load_model,
    non_negative_float,
    print_report,
)

SCHEDULES = ("none", "step", "exponential", "cosine", "cyclic", "plateau")
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(name: str, lr: float, momentum: float, weight_decay: float) -> Any:
    from graphcnn import optim

    if name == "sgd":
        return optim.SGD(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(lr=lr, weight_decay=weight_decay)
    return optim.AdamW(lr=lr, weight_decay=weight_decay)


def make_schedule(name: str, lr: float, epochs: int, batches_per_epoch: int) -> Any:
    """The schedules with settings that suit a run of `epochs` epochs."""
    from graphcnn import optim

    if name == "none":
        return None
    if name == "step":  # divide by 10 twice: after 1/2 and 3/4 of the run
        return optim.StepLR(step_size=max(1, epochs // 2), gamma=0.1)
    if name == "exponential":  # ends near lr / 100
        return optim.ExponentialLR(gamma=0.01 ** (1 / max(1, epochs)))
    if name == "cosine":
        return optim.CosineAnnealingLR(T_max=max(1, epochs))
    if name == "cyclic":  # triangular, a cycle every 4 epochs
        return optim.CyclicLR(base_lr=lr / 10, max_lr=lr, step_size_up=2 * batches_per_epoch)
    return optim.ReduceLROnPlateau(factor=0.5, patience=2)


def run(args: argparse.Namespace) -> int:
    """Train MODEL on the dataset, then print the test report (and the curves' path)."""
    import graphcnn as gc
    from graphcnn.train.trainer import Trainer

    start = time.perf_counter()
    (X, y), (Xt, yt) = load_dataset(args.dataset)
    num_classes = int(max(y.max(), yt.max()) + 1)
    gc.manual_seed(args.seed)
    height, width = (int(d) for d in X.shape[2:])   # the zoo model is built for the data
    model = load_model(args.model, num_classes, in_channels=int(X.shape[1]),
                       input_size=height if height == width else (height, width))
    bs = min(args.batch_size, len(X))
    optimizer = make_optimizer(args.optimizer, args.lr, args.momentum, args.weight_decay)
    schedule = make_schedule(args.schedule, args.lr, args.epochs, len(X) // bs)
    trainer = Trainer(model, optimizer=optimizer, schedule=schedule, augment=args.augment,
                      backend=args.backend, checkpoint=args.checkpoint, seed=args.seed)
    history = trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(Xt, yt), verbose=not args.quiet)
    print_report(trainer.evaluate(Xt, yt))
    if args.out:
        from graphcnn.train.history import plot_history
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(f"training curves: {plot_history(history, Path(args.out) / 'curves.png')}")
    if args.checkpoint:
        print(f"checkpoint: {args.checkpoint}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model on a dataset",
                       description="Train MODEL (a zoo name or path/to/file.py:function).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--dataset", default="digits")
    add_training_arguments(p, epochs=10, batch_size=64, lr=0.05)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--momentum", type=non_negative_float, default=0.9)
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--schedule", choices=SCHEDULES, default="none")
    p.add_argument("--augment", type=augment_spec, default=None,
                   help="e.g. 'shift,rotate'")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint path: saved each epoch, resumed if present")
    p.add_argument("--out", default=None, help="folder for the curves PNG")
    p.set_defaults(func=run)
    return p

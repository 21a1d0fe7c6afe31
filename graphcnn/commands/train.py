"""``graphcnn train``: train a model on a dataset, report on the test split.

    graphcnn train MODEL [--dataset digits|shapes|data.npz] [--epochs N] [--optimizer sgd|adam|adamw]
                         [--schedule none|step|exponential|cosine|cyclic|plateau]
                         [--augment SPEC] [--checkpoint FILE] [--out DIR] [--distributed] ...
    mpiexec -n 4 graphcnn train MODEL --distributed [--sync-batchnorm] ...
                                                    (data-parallel over MPI ranks)

MODEL is a zoo name (built for the data's classes, channels and image size), an ``.onnx``
file or ``path/to/file.py:function``. ``--dataset data.npz`` trains on the user's arrays:
float images ``x_train`` (N, C, H, W) and integer labels ``y_train`` (N,), optionally
``x_test`` and ``y_test`` (graphcnn/data/npz.py tells the keys and the checks).

Regression: float targets ``y_train`` (N,) or (N, K) train a model with K outputs (a zoo
model is built with K classes, or ``num_outputs=K`` for ``cnn_regressor``) on ``--loss``
(default ``mse`` for float targets, ``cross_entropy`` for integer labels). Each target is
standardized with the training split's mean and std for training (val_loss is in those
units); the report (MAE, RMSE, R^2 per target on the test split) is in the targets' own
units. A class-index loss (cross_entropy) on float targets is an error naming the loss
and the targets; ``--loss mse`` on integer labels trains a classifier on one-hot rows.

The output paths (``--out``, ``--checkpoint``) are checked before anything is loaded or
trained. Resuming from ``--checkpoint``: the checkpoint's optimizer settings hold unless
``--lr``, ``--momentum`` or ``--weight-decay`` is given, which then overrides it; the run
prints each override ("resuming: lr 0.05 -> 0.001 (from --lr)").

``--distributed`` (docs/distributed.md): every rank runs this command; --batch-size is
per rank; rank 0 prints and writes the checkpoint; an error on any rank is printed naming
the rank and ends every rank (graphcnn/cli.py). ``--sync-batchnorm`` with it: batch norm
over the global batch (statistics averaged over the ranks in every step).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from graphcnn.commands.common import (
    CommandError,
    add_training_arguments,
    augment_spec,
    check_checkpoint_path,
    check_output_dir,
    fail_if_diverged,
    load_dataset,
    load_model,
    non_negative_float,
    print_report,
)
from graphcnn.train.checkpoint import checkpoint_file

SCHEDULES = ("none", "step", "exponential", "cosine", "cyclic", "plateau")
OPTIMIZERS = ("sgd", "adam", "adamw")
# The optimizer flags a resumed run may override, with their defaults. Their parser
# default is None, so that a flag the user gave is told from one left at its default.
OVERRIDABLE_FLAGS = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}


def explicit_settings(args: argparse.Namespace) -> dict[str, float]:
    """The overridable settings given on the command line; fills in the defaults of the
    others on `args`."""
    given = {}
    for name, default in OVERRIDABLE_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        else:
            given[name] = value
    return given


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _resume_report(checkpoint: str, given: dict[str, float]) -> Any:
    """A Trainer callback that prints what a resumed run restored and what the flags
    changed (built here so that graphcnn.train is imported only when training)."""
    from graphcnn.train.trainer import Callback

    class ResumeReport(Callback):
        def on_resume(self, trainer: Any, epochs_done: int,
                      changes: list[tuple[str, Any, Any]]) -> None:
            print(f"resuming from {checkpoint} after epoch {epochs_done}")
            for name, old, new in changes:
                print(f"resuming: {name.replace('_', ' ')} {old:g} -> {new:g} "
                      f"(from {_flag(name)})")
            kept = [n for n in OVERRIDABLE_FLAGS
                    if n not in given and hasattr(trainer.optimizer, n)]
            if kept:
                values = ", ".join(f"{n.replace('_', ' ')} {getattr(trainer.optimizer, n):g}"
                                   for n in kept)
                print(f"resuming: {values} from the checkpoint "
                      f"({', '.join(_flag(n) for n in kept)} would override)")

    return ResumeReport()


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


def choose_loss(given: str | None, y: Any, dataset: str) -> str:
    """The loss for the training targets `y`: `given` (checked against the targets' kind),
    or the default, cross_entropy for integer class labels and mse for float targets."""
    from graphcnn.data.npz import describe_targets
    from graphcnn.losses import Loss, available

    regression = y.dtype.kind == "f"
    if given is None:
        return "mse" if regression else "cross_entropy"
    try:
        kind = Loss(given).target_kind
    except ValueError:
        raise CommandError(f"--loss {given}: unknown loss; expected one of "
                           f"{', '.join(available())}") from None
    if regression and kind == "class_index":
        raise CommandError(f"--loss {given} takes integer class labels, but the training "
                           f"targets of --dataset {dataset} are {describe_targets(y)}; use a "
                           f"regression loss (e.g. --loss mse), or store integer labels")
    return given


def print_regression_report(y_true: Any, y_pred: Any, loss: float,
                            print_fn: Callable[[str], Any] = print) -> None:
    """MAE, RMSE and R^2 of each target (column) of the test split."""
    from graphcnn.metrics import regression_metrics

    t = y_true.reshape(len(y_true), -1)
    p = y_pred.reshape(len(y_pred), -1)
    print_fn(f"test loss (standardized targets)  {loss:.4f}")
    print_fn(f"{'target':<8}{'MAE':>12}{'RMSE':>12}{'R^2':>10}")
    for k in range(t.shape[1]):
        m = regression_metrics(t[:, k], p[:, k])
        print_fn(f"{k:<8}{m['mae']:>12.5g}{m['rmse']:>12.5g}{m['r2']:>10.4f}")


def quiet_other_ranks() -> None:
    """On ranks other than 0, nothing printed on stdout and no warnings (rank 0 reports
    for all); errors still reach stderr, naming the rank."""
    import os
    import sys
    import warnings

    from graphcnn import distributed

    if not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        warnings.simplefilter("ignore")


def run(args: argparse.Namespace) -> int:
    """Train MODEL on the dataset, then print the test report (and the curves' path)."""
    import graphcnn as gc
    from graphcnn.train.trainer import Trainer

    start = time.perf_counter()
    if args.sync_batchnorm and not args.distributed:
        raise CommandError("--sync-batchnorm synchronizes batch norm across the ranks of "
                           "--distributed training; add --distributed")
    if args.distributed:
        quiet_other_ranks()
    given = explicit_settings(args)
    if "momentum" in given and args.optimizer != "sgd":
        raise CommandError(f"--momentum is a setting of --optimizer sgd, not {args.optimizer}")
    if args.out:
        check_output_dir(args.out, "--out")
    if args.checkpoint:
        check_checkpoint_path(args.checkpoint)
    (X, y), (Xt, yt) = load_dataset(args.dataset)
    loss = choose_loss(args.loss, y, args.dataset)
    scaler = None
    if y.dtype.kind == "f":   # regression: standardized targets, one output per column
        from graphcnn.train.normalize import TargetScaler
        scaler = TargetScaler.fit(y)
        print(f"regression on {y.shape[1] if y.ndim == 2 else 1} target(s), loss {loss}; "
              f"targets standardized with the training split's {scaler}")
        num_classes = 1 if y.ndim == 1 else int(y.shape[1])
        y_fit, yt_fit = scaler.transform(y), scaler.transform(yt)
    else:
        num_classes = int(max(y.max(), yt.max()) + 1)
        y_fit, yt_fit = y, yt
        if loss != "cross_entropy" and args.loss is not None:
            print(f"--loss {loss} on integer class labels: trained on one-hot rows (to "
                  f"regress on the integers, store y as floats)")
    gc.manual_seed(args.seed)
    height, width = (int(d) for d in X.shape[2:])   # the zoo model is built for the data
    model = load_model(args.model, num_classes, in_channels=int(X.shape[1]),
                       input_size=height if height == width else (height, width))
    bs = min(args.batch_size, len(X))
    optimizer = make_optimizer(args.optimizer, args.lr, args.momentum, args.weight_decay)
    steps = len(X) // bs if args.drop_last or args.distributed else -(-len(X) // bs)
    schedule = make_schedule(args.schedule, args.lr, args.epochs, steps)
    trainer = Trainer(model, loss=loss, optimizer=optimizer, schedule=schedule,
                      augment=args.augment,
                      backend=args.backend, checkpoint=args.checkpoint, seed=args.seed,
                      on_nonfinite=args.on_nonfinite, on_divergence=args.on_divergence,
                      resume_overrides=given, distributed=args.distributed,
                      sync_batchnorm=args.sync_batchnorm, drop_last=args.drop_last)
    callbacks = [_resume_report(args.checkpoint, given)] if args.checkpoint else []
    history = trainer.fit(X, y_fit, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(Xt, yt_fit), verbose=not args.quiet,
                          callbacks=callbacks)
    if trainer.parallel.is_main:   # the other ranks hold the same parameters
        result = trainer.evaluate(Xt, yt_fit)
        if scaler is None:
            print_report(result)
        else:   # the report in the targets' own units
            predicted = scaler.inverse(np.asarray(trainer.predict(Xt)))
            print_regression_report(yt, predicted, float(result["loss"]))
    if args.out and trainer.parallel.is_main:   # one writer of the curves
        from graphcnn.train.history import plot_history
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(f"training curves: {plot_history(history, Path(args.out) / 'curves.png')}")
    if args.checkpoint and trainer.diverged is None:   # a diverged run saves none
        print(f"checkpoint: {checkpoint_file(args.checkpoint)}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    fail_if_diverged(trainer)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model on a dataset",
                       description="Train MODEL (a zoo name, an .onnx file or "
                                   "path/to/file.py:function) on a dataset, then report on "
                                   "its test split.")
    p.add_argument("model", metavar="MODEL",
                   help="a zoo name (lenet5, resnet18, ...), an .onnx file or "
                        "path/to/file.py:function")
    p.add_argument("--dataset", default="digits",
                   help="digits (default), shapes (the dominant shape of gc.data.shapes, 3 "
                        "classes), or a file data.npz with float images x_train (N, C, H, "
                        "W) and integer labels y_train (N,) or float regression targets "
                        "(N,) / (N, K), optionally x_test and y_test "
                        "(else a fifth of the training arrays is held out); x and y are "
                        "accepted for x_train and y_train")
    add_training_arguments(p, epochs=10, batch_size=64, lr=OVERRIDABLE_FLAGS["lr"])
    p.add_argument("--loss", default=None,
                   help="the training loss (a name of gc.losses, e.g. cross_entropy, mse); "
                        "default cross_entropy for integer labels, mse for float "
                        "(regression) targets")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--momentum", type=non_negative_float, default=None,
                   help=f"SGD momentum, default {OVERRIDABLE_FLAGS['momentum']}")
    p.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help=f"default {OVERRIDABLE_FLAGS['weight_decay']}")
    p.set_defaults(lr=None)   # explicit_settings tells a given --lr from the default
    p.add_argument("--schedule", choices=SCHEDULES, default="none")
    p.add_argument("--augment", type=augment_spec, default=None,
                   help="e.g. 'shift,rotate'")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint path: saved each epoch, resumed if present (then "
                        "--lr, --momentum and --weight-decay, when given, override the "
                        "checkpoint's)")
    p.add_argument("--out", default=None, help="folder for the curves PNG")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI ranks: run under 'mpiexec -n N "
                        "graphcnn train ...'; --batch-size is per rank; rank 0 prints and "
                        "writes the checkpoint (needs pip install -e \".[distributed]\")")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="with --distributed: batch norm normalizes with the statistics of "
                        "the global batch, averaged over the ranks in every step (as "
                        "torch's SyncBatchNorm), instead of each rank's own")
    p.add_argument("--drop-last", action="store_true",
                   help="drop each epoch's last, smaller batch instead of training on it "
                        "(always dropped with --distributed)")
    p.set_defaults(func=run)
    return p

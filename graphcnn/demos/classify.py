"""The classify demo: LeNet-5 on the scikit-learn digits, with a report and training
curves (the default task of `graphcnn demo`)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from graphcnn.commands.common import check_output_dir, fail_if_diverged, load_dataset, print_report

DEFAULTS = {"epochs": 20, "batch_size": 32, "lr": 0.05}


def lenet_trainer(model: Any, *, lr: float, epochs: int, augment: str | None = "shift",
                  backend: str = "cpu", seed: int = 0, on_nonfinite: str = "raise",
                  on_divergence: str = "warn") -> Any:
    """The classify demo's Trainer for LeNet-5 on the digits: SGD with Nesterov momentum
    and weight decay 1e-4, cosine-annealed over `epochs`, random shifts as augmentation
    (the generate demo trains its judge with it too)."""
    import graphcnn as gc
    from graphcnn.train.trainer import Trainer

    return Trainer(model, optimizer=gc.optim.SGD(lr=lr, momentum=0.9, nesterov=True,
                                                 weight_decay=1e-4),
                   schedule=gc.optim.CosineAnnealingLR(T_max=epochs),
                   augment=augment or None, backend=backend, seed=seed,
                   on_nonfinite=on_nonfinite, on_divergence=on_divergence)


def run(args: argparse.Namespace) -> int:
    """LeNet-5 on the digits, SGD with Nesterov momentum, cosine-annealed learning rate,
    small random shifts as augmentation."""
    import graphcnn as gc
    from graphcnn.train.history import plot_history

    start = time.perf_counter()
    check_output_dir(args.out, "--out")   # before training, not after
    (X, y), (Xt, yt) = load_dataset("digits")
    gc.manual_seed(args.seed)
    model = gc.models.lenet5()
    print(f"LeNet-5 ({model.num_parameters():,} parameters) on scikit-learn digits "
          f"upsampled to 32x32: {len(X)} training, {len(Xt)} test images")
    trainer = lenet_trainer(model, lr=args.lr, epochs=args.epochs, augment=args.augment,
                            backend=args.backend, seed=args.seed,
                            on_nonfinite=args.on_nonfinite, on_divergence=args.on_divergence)
    # The test split doubles as the validation data of the curves; nothing in training
    # (no schedule, no early stop) looks at it.
    history = trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(Xt, yt), verbose=not args.quiet)
    result = trainer.evaluate(Xt, yt)
    print_report(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_history(history, out / "lenet5_digits_curves.png",
                       title="LeNet-5 on digits (validation = test split)")
    print(f"training curves: {png}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    fail_if_diverged(trainer)
    return 0

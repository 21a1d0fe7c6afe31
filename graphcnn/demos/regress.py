"""The regress demo: a CNN regressor reads two numbers off each image of gc.data.shapes,
how many shapes it holds and the fraction of its pixels they cover; it prints MAE, RMSE
and R^2 per target on held-out images and draws predicted against true values.

Targets are standardized for training: each target's mean and standard deviation over
the training set (seed 0) are taken once, the network learns ``(t - mean) / std``
(targets of unit scale, so one mse loss weighs both equally although the count runs
1..3 and the area fraction 0..1), and its outputs are mapped back with
``z * std + mean`` before any metric is computed, in the targets' own units. The
held-out images (seed 1) are never used for those statistics or for any choice during
training.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from graphcnn.commands.common import check_output_dir, fail_if_diverged

DEFAULTS = {"epochs": 12, "batch_size": 32, "lr": 0.003}
LABELS = {"count": "number of shapes", "area_fraction": "fraction of the image covered"}


@dataclass(frozen=True)
class Config:
    """The data and model sizes (the optimizer's settings come from the command line)."""

    n_train: int = 30000
    n_test: int = 1000
    image_size: int = 32
    width: int = 16
    stages: int = 3
    test_seed: int = 1          # training data is seed 0
    # Mirror images have the same count and covered fraction: flips are the augmentations
    # that keep the targets exact (a shift or rotation could push a shape out of frame).
    augment: str | None = "flip,vflip"


FULL = Config()


def per_target_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                       names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{target name: {"mae", "rmse", "r2"}}`` (graphcnn.metrics.regression)."""
    from graphcnn.metrics import regression_metrics
    return {name: regression_metrics(y_true[:, k], y_pred[:, k])
            for k, name in enumerate(names)}


def print_table(metrics: dict[str, dict[str, float]], n: int) -> None:
    print(f"held-out images: {n}")
    print(f"{'target':<15}{'MAE':>10}{'RMSE':>10}{'R^2':>10}")
    for name, m in metrics.items():
        print(f"{name:<15}{m['mae']:>10.4f}{m['rmse']:>10.4f}{m['r2']:>10.4f}")


def scatter_png(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
                metrics: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """One panel per target: predicted against true values, the identity line (a perfect
    prediction lies on it), R^2 and MAE in the corner. Integer-valued targets (a count)
    get a little horizontal jitter so that their points do not hide each other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.6), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        t, p = y_true[:, k], y_pred[:, k]
        integer = bool(np.all(t == np.round(t)))
        x = t + rng.uniform(-0.12, 0.12, t.shape) if integer else t
        ax.scatter(x, p, s=6, alpha=0.4, color="tab:blue", edgecolors="none")
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="tab:red", lw=1,
                label="predicted = true")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {LABELS.get(name, name)}" + (" (jittered)" if integer else ""))
        ax.set_ylabel(f"predicted {LABELS.get(name, name)}")
        m = metrics[name]
        ax.set_title(name)
        ax.text(0.03, 0.97, f"R$^2$ = {m['r2']:.3f}\nMAE = {m['mae']:.3g}",
                transform=ax.transAxes, va="top",
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass
class Outcome:
    """What a run of the demo produced (the test set's targets and the predictions are in
    the targets' own units)."""

    trainer: Any
    history: Any
    names: list[str]
    y_true: np.ndarray     # (n_test, 2)
    y_pred: np.ndarray     # (n_test, 2)
    metrics: dict[str, dict[str, float]]


def train_and_predict(args: argparse.Namespace, config: Config) -> Outcome:
    """Generate the data, train cnn_regressor with gc.Trainer (mse on standardized
    targets, Adam, cosine-annealed learning rate) and predict the held-out set."""
    import graphcnn as gc
    from graphcnn.train.normalize import TargetScaler

    train = gc.data.shapes(config.n_train, config.image_size, seed=0)
    test = gc.data.shapes(config.n_test, config.image_size, seed=config.test_seed)
    names = list(train.target_names)
    scaler = TargetScaler.fit(train.targets)   # training statistics only
    gc.manual_seed(args.seed)
    model = gc.models.cnn_regressor(len(names), input_size=config.image_size,
                                    width=config.width, stages=config.stages)
    print(f"cnn_regressor ({model.num_parameters(trainable_only=True):,} parameters) on "
          f"gc.data.shapes {config.image_size}x{config.image_size}: {len(train)} training "
          f"images (seed 0), {len(test)} held-out (seed {config.test_seed}); targets "
          f"{', '.join(names)}, standardized with the training set's {scaler}")
    trainer = gc.Trainer(model, loss="mse", optimizer=gc.optim.Adam(lr=args.lr),
                         schedule=gc.optim.CosineAnnealingLR(T_max=args.epochs),
                         augment=config.augment, backend=args.backend, seed=args.seed,
                         on_nonfinite=args.on_nonfinite, on_divergence=args.on_divergence)
    history = trainer.fit(train.images, scaler.transform(train.targets), epochs=args.epochs,
                          batch_size=args.batch_size, verbose=not args.quiet)
    predicted = scaler.inverse(np.asarray(trainer.predict(test.images)))
    return Outcome(trainer, history, names, test.targets, predicted,
                   per_target_metrics(test.targets, predicted, names))


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    """cnn_regressor on gc.data.shapes' targets (count, area fraction): trains, prints
    MAE, RMSE and R^2 per target on held-out images, writes the scatter PNG."""
    config = config or FULL
    start = time.perf_counter()
    check_output_dir(args.out, "--out")   # before training, not after
    result = train_and_predict(args, config)
    print_table(result.metrics, len(result.y_true))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = scatter_png(result.y_true, result.y_pred, result.names, result.metrics,
                      out / "regress_shapes.png",
                      title=f"cnn_regressor on held-out shapes (seed {config.test_seed})")
    print(f"predicted vs true: {png}")
    print(f"training loss (standardized mse) per epoch: "
          f"{' '.join(f'{v:.4f}' for v in result.history.history['loss'])}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    fail_if_diverged(result.trainer)
    return 0

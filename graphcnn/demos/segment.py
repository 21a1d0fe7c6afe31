"""The segment demo: a reduced-width U-Net trained to label every pixel of the procedural
shapes (background, circle, rectangle, triangle), scored on a held-out set drawn with
another seed (pixel accuracy, per-class IoU, mIoU), with a picture of the predicted masks
over the images next to the truth.

    graphcnn demo --task segment [--epochs N] [--batch-size N] [--lr X] [--out DIR]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

DEFAULTS: dict[str, Any] = {"epochs": 12, "batch_size": 16, "lr": 0.005}

# A mask's colours (RGB in [0, 1]) by class: background left clear, then circle,
# rectangle, triangle.
COLOURS = np.array([[0.0, 0.0, 0.0], [0.95, 0.25, 0.2], [0.2, 0.55, 0.95], [0.3, 0.85, 0.3]])


@dataclass(frozen=True)
class SegmentConfig:
    """What the demo trains on and with: images of `size` pixels (n_train from seed 0 for
    training, n_test from `test_seed` held out), a U-Net of `base_width`, Adam."""
    size: int = 32
    n_train: int = 1536
    n_test: int = 256
    test_seed: int = 1
    base_width: int = 8
    epochs: int = 12
    batch_size: int = 16
    lr: float = 0.005
    seed: int = 0
    backend: str = "cpu"


# The demo's data and model (what --epochs, --batch-size, --lr, --seed and --backend leave).
CONFIG = SegmentConfig()


@dataclass
class SegmentResult:
    """The trained model and trainer, the training history, the held-out images, masks,
    predicted masks, and their metrics (graphcnn.metrics.segmentation_metrics)."""
    model: Any
    trainer: Any
    history: Any
    images: np.ndarray
    masks: np.ndarray
    predicted: np.ndarray
    metrics: dict[str, Any]
    class_names: tuple[str, ...]


def train_segmenter(config: SegmentConfig, verbose: bool = True) -> SegmentResult:
    """Train config's U-Net on gc.data.shapes and score it on the held-out set."""
    import graphcnn as gc

    train = gc.data.shapes(config.n_train, config.size, seed=0)
    test = gc.data.shapes(config.n_test, config.size, seed=config.test_seed)
    classes = len(train.class_names)
    gc.manual_seed(config.seed)
    model = gc.models.unet(n_channels=3, n_classes=classes, base_width=config.base_width,
                           input_size=config.size)
    trainer = gc.Trainer(model, loss="pixel_cross_entropy",
                         optimizer=gc.optim.Adam(lr=config.lr),
                         schedule=gc.optim.CosineAnnealingLR(T_max=config.epochs),
                         backend=config.backend, seed=config.seed)
    history = trainer.fit(train.images, train.masks, epochs=config.epochs,
                          batch_size=config.batch_size, verbose=verbose)
    logits = trainer.predict(test.images)
    predicted = np.asarray(logits).argmax(axis=1)
    metrics = gc.metrics.segmentation_metrics(test.masks, predicted, num_classes=classes)
    return SegmentResult(model, trainer, history, test.images, test.masks, predicted,
                         metrics, tuple(train.class_names))


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """An (H, W, 3) picture: the (C, H, W) image in grey, each non-background pixel tinted
    by its class's colour (grey first, so the tint reads the same on every shape colour)."""
    grey = np.clip(image.mean(axis=0), 0.0, 1.0)[..., None].repeat(3, axis=2)
    tint = COLOURS[np.clip(mask, 0, len(COLOURS) - 1)]
    out = grey.copy()
    fg = mask > 0
    out[fg] = (1 - alpha) * grey[fg] + alpha * tint[fg]
    return np.clip(out, 0.0, 1.0)


def plot_segmentation(images: np.ndarray, masks: np.ndarray, predicted: np.ndarray,
                      path: str | Path, class_names: tuple[str, ...], count: int = 6,
                      title: str = "") -> str:
    """A PNG of `count` images: each as it is, with the true mask over it, and with the
    predicted mask over it (the pixels where prediction and truth differ outlined in
    white); a legend names the colours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    count = min(count, len(images))
    fig, axes = plt.subplots(count, 3, figsize=(6.6, 2.2 * count), squeeze=False)
    for row in range(count):
        wrong = predicted[row] != masks[row]
        panels = (np.clip(np.transpose(images[row], (1, 2, 0)), 0, 1),
                  overlay(images[row], masks[row]), overlay(images[row], predicted[row]))
        for col, (picture, label) in enumerate(zip(panels, ("image", "truth", "predicted"))):
            ax = axes[row][col]
            ax.imshow(picture, interpolation="nearest")
            if col == 2 and wrong.any():
                ax.contour(wrong, levels=[0.5], colors="white", linewidths=0.6)
            if row == 0:
                ax.set_title(label)
            ax.set_xticks([])
            ax.set_yticks([])
        iou = (predicted[row] == masks[row]).mean()
        axes[row][2].set_xlabel(f"{100 * iou:.1f}% pixels right", fontsize=8)
    handles = [Patch(color=COLOURS[c], label=name) for c, name in enumerate(class_names) if c]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97 if title else 1))
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
    return str(path)


def report(metrics: dict[str, Any], class_names: tuple[str, ...]) -> str:
    """Pixel accuracy, each class's IoU and the mIoU, as printed lines."""
    lines = [f"pixel accuracy  {metrics['pixel_accuracy']:.4f}"]
    for name, iou in zip(class_names, metrics["iou"]):
        lines.append(f"IoU {name:<12}{iou:.4f}")
    lines.append(f"mIoU            {metrics['mean_iou']:.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """A reduced-width U-Net on the shapes, Adam with a cosine-annealed learning rate,
    pixel-wise cross-entropy; metrics on a held-out set from another seed; a PNG."""
    from graphcnn.commands.common import check_output_dir, fail_if_diverged

    start = time.perf_counter()
    check_output_dir(args.out, "--out")   # before training, not after
    config = replace(CONFIG, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed, backend=args.backend)
    print(f"U-Net (base width {config.base_width}) on shapes {config.size}x{config.size}: "
          f"{config.n_train} training images (seed 0), {config.n_test} held out (seed "
          f"{config.test_seed}); {config.epochs} epochs of batch {config.batch_size}, "
          f"Adam lr {config.lr}")
    result = train_segmenter(config, verbose=not args.quiet)
    print(f"{result.model.num_parameters():,} parameters")
    print(f"held-out set ({config.n_test} images):")
    print(report(result.metrics, result.class_names))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_segmentation(result.images, result.masks, result.predicted,
                            out / "unet_shapes_masks.png", result.class_names,
                            title=f"U-Net on shapes (held out): mIoU "
                                  f"{result.metrics['mean_iou']:.3f}")
    print(f"predicted masks: {png}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    fail_if_diverged(result.trainer)
    return 0

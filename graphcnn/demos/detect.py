"""The detect demo: the grid detector (gc.models.yolo_grid_detector) trained on the shapes
set (circles, rectangles, triangles) with gc.Trainer and a two-term loss (one per head),
then mAP@0.5 (PASCAL VOC), COCO mAP and per-class AP on images from another seed, and a
PNG of predicted boxes with labels and scores.

    graphcnn demo --task detect [--epochs N] [--batch-size N] [--lr X] [--out DIR]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

DEFAULTS = {"epochs": 8, "batch_size": 32, "lr": 0.002}
CLASS_NAMES = ("circle", "rectangle", "triangle")   # shapes' labels 1..3, counted from 0


@dataclass
class Config:
    """The demo's data and model sizes (the tests run a tiny one)."""
    n_train: int = 2000
    n_test: int = 500
    image_size: int = 64
    grid: int = 8
    width: int = 16
    train_seed: int = 0
    test_seed: int = 1
    score_weight: float = 40.0   # the scores head's mse is a mean over 1 + C channels
    box_beta: float = 0.1


def ground_truth(ds: Any) -> list[dict[str, np.ndarray]]:
    """The shapes set's boxes and labels in graphcnn.metrics' per-image format, the
    labels counted from 0 (shapes' class 0 is the background)."""
    return [{"boxes": b, "labels": lab - 1} for b, lab in zip(ds.boxes, ds.labels)]


def detection_metrics(num_classes: int, image_size: int
                      ) -> Callable[[dict[str, np.ndarray], dict[str, np.ndarray]],
                                    dict[str, float]]:
    """A Trainer `metrics` function: mAP@0.5 and COCO mAP of the decoded predictions
    against the decoded targets (the encoded ground truth: one box per cell)."""
    from graphcnn.detection import decode_predictions
    from graphcnn.metrics import coco_map, voc_map

    def metrics(predictions: dict[str, np.ndarray], targets: dict[str, np.ndarray]
                ) -> dict[str, float]:
        found = decode_predictions(predictions["scores"], predictions["boxes"], image_size)
        truth = decode_predictions(targets["scores"], np.nan_to_num(targets["boxes"]),
                                   image_size, score_threshold=0.5)
        truth = [{"boxes": t["boxes"], "labels": t["labels"]} for t in truth]
        return {"map_50": voc_map(found, truth, num_classes)["map"],
                "coco_map": coco_map(found, truth, num_classes)["map"]}
    return metrics


def train_detector(config: Config, epochs: int, batch_size: int, lr: float, seed: int = 0,
                   backend: str = "cpu", verbose: bool = True, **trainer_options: Any
                   ) -> tuple[Any, Any, Any, Any]:
    """Build and train the detector on shapes(config.n_train, seed=config.train_seed):
    returns (model, trainer, history, the training set)."""
    import graphcnn as gc
    from graphcnn.detection import encode_targets

    c = len(CLASS_NAMES)
    train = gc.data.shapes(config.n_train, config.image_size, seed=config.train_seed)
    targets = encode_targets(train.boxes, [lab - 1 for lab in train.labels], c,
                             config.image_size, config.grid)
    gc.manual_seed(seed)
    model = gc.models.yolo_grid_detector(c, image_size=config.image_size, width=config.width,
                                         grid=config.grid)
    trainer = gc.Trainer(
        model,
        loss={"scores": "mse",
              "boxes": gc.losses.Loss("smooth_l1", beta=config.box_beta, ignore_nan=True)},
        loss_weights={"scores": config.score_weight, "boxes": 1.0},
        optimizer=gc.optim.AdamW(lr=lr, weight_decay=1e-4),
        schedule=gc.optim.CosineAnnealingLR(T_max=epochs), backend=backend, seed=seed,
        **trainer_options)
    history = trainer.fit(train.images, targets, epochs=epochs, batch_size=batch_size,
                          verbose=verbose)
    return model, trainer, history, train


def evaluate_detector(trainer: Any, ds: Any, image_size: int
                      ) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Detections on `ds` and their metrics against its true boxes: ``{"map_50",
    "coco_map", "ap_50" (per class), "coco_ap" (per class)}``."""
    from graphcnn.detection import decode_predictions
    from graphcnn.metrics import coco_map, voc_map

    out = trainer.predict(ds.images)
    found = decode_predictions(out["scores"], out["boxes"], image_size)
    truth = ground_truth(ds)
    voc, coco = voc_map(found, truth, len(CLASS_NAMES)), coco_map(found, truth,
                                                                   len(CLASS_NAMES))
    return found, {"map_50": voc["map"], "coco_map": coco["map"], "ap_50": voc["ap"],
                   "coco_ap": coco["ap"]}


def plot_detections(images: np.ndarray, found: list[dict[str, np.ndarray]], path: Path,
                    min_score: float = 0.3, columns: int = 4) -> Path:
    """A PNG of `images` (N, 3, H, W) with their detections of score >= min_score drawn
    as labelled boxes ("rectangle 0.97")."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    colours = ("tab:orange", "tab:cyan", "tab:pink")
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, det in zip(axes.ravel(), images, found):
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
            if score < min_score:
                continue
            x1, y1, x2, y2 = box
            colour = colours[int(label) % len(colours)]
            # pixel (i, j) covers [j, j+1): imshow centres it at j, hence the -0.5
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                   edgecolor=colour, linewidth=1.5))
            ax.text(x1 - 0.5, y1 - 1.5, f"{CLASS_NAMES[int(label)]} {score:.2f}",
                    color="black", fontsize=7, bbox=dict(facecolor=colour, alpha=0.8,
                                                         pad=1, edgecolor="none"))
    fig.suptitle("grid detector on held-out shapes: predicted boxes, labels, scores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_metrics(result: dict[str, Any], print_fn: Callable[[str], Any] = print) -> None:
    print_fn(f"mAP@0.5 (VOC, all-point)  {result['map_50']:.4f}")
    print_fn(f"COCO mAP@[.5:.95]         {result['coco_map']:.4f}")
    for name, ap50, ap in zip(CLASS_NAMES, result["ap_50"], result["coco_ap"]):
        print_fn(f"  {name:<10} AP@0.5 {ap50:.4f}   AP@[.5:.95] {ap:.4f}")


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    """Train the detector on shapes and report mAP on held-out images."""
    demo(args, config or Config())
    return 0


def demo(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """What `run` does, returning what it made: {"model", "history", "metrics",
    "detections", "png"}."""
    import graphcnn as gc
    from graphcnn.commands.common import check_output_dir, fail_if_diverged

    start = time.perf_counter()
    check_output_dir(args.out, "--out")
    print(f"grid detector ({config.grid}x{config.grid} cells, width {config.width}) on "
          f"shapes {config.image_size}x{config.image_size}: {config.n_train} training images "
          f"(seed {config.train_seed}), {config.n_test} held out (seed {config.test_seed})")
    model, trainer, history, _ = train_detector(
        config, args.epochs, args.batch_size, args.lr, seed=args.seed, backend=args.backend,
        verbose=not args.quiet, on_nonfinite=args.on_nonfinite,
        on_divergence=args.on_divergence)
    print(f"{model.num_parameters():,} parameters; trained in "
          f"{time.perf_counter() - start:.1f} s")
    test = gc.data.shapes(config.n_test, config.image_size, seed=config.test_seed)
    found, result = evaluate_detector(trainer, test, config.image_size)
    print_metrics(result)
    png = plot_detections(test.images[:12], found[:12],
                          Path(args.out) / "detector_shapes.png")
    print(f"detections: {png}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    fail_if_diverged(trainer)
    return {"model": model, "history": history, "metrics": result, "detections": found,
            "png": png, "trainer": trainer, "test": test}

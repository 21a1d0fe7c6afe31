"""Train the grid detector on the shapes set and report mAP on held-out images, with the
public API only (what ``graphcnn demo --task detect`` does, written out).

    python examples/detect_shapes.py [--epochs 8] [--n-train 2000] [--out detections.png] [--quick]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import graphcnn as gc
from graphcnn.detection import decode_predictions, encode_targets

CLASSES = ("circle", "rectangle", "triangle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="image size (default 64)")
    parser.add_argument("--grid", type=int, default=8, help="cells per side (default 8)")
    parser.add_argument("--out", default="detections.png")
    parser.add_argument("--quick", action="store_true",
                        help="64 images of 32x32, one epoch (a check)")
    args = parser.parse_args()
    n_test = 500
    if args.quick:
        args.epochs, args.n_train, args.size, args.grid, n_test = 1, 64, 32, 4, 32

    # Data: images with boxes and labels (1..3; the detector counts classes from 0).
    train = gc.data.shapes(args.n_train, args.size, seed=0)
    test = gc.data.shapes(n_test, args.size, seed=1)
    targets = encode_targets(train.boxes, [lab - 1 for lab in train.labels],
                             num_classes=3, image_size=args.size, grid=args.grid)
    # targets["scores"]: (N, 4, S, S) one-hot (channel 0: no object);
    # targets["boxes"]:  (N, 4, S, S) tx, ty, tw, th, NaN at the cells without an object.

    gc.manual_seed(0)
    model = gc.models.yolo_grid_detector(3, image_size=args.size, grid=args.grid, width=16)
    trainer = gc.Trainer(
        model,
        loss={"scores": "mse",
              # counts only the cells that hold an object: their targets are not NaN
              "boxes": gc.losses.Loss("smooth_l1", beta=0.1, ignore_nan=True)},
        loss_weights={"scores": 40.0, "boxes": 1.0},
        optimizer=gc.optim.AdamW(lr=0.002, weight_decay=1e-4),
        schedule=gc.optim.CosineAnnealingLR(T_max=args.epochs))
    trainer.fit(train.images, targets, epochs=args.epochs, batch_size=32)

    out = trainer.predict(test.images)               # {"scores": ..., "boxes": ...}
    found = decode_predictions(out["scores"], out["boxes"], image_size=args.size)
    truth = [{"boxes": b, "labels": lab - 1} for b, lab in zip(test.boxes, test.labels)]
    voc = gc.metrics.voc_map(found, truth, num_classes=3)
    coco = gc.metrics.coco_map(found, truth, num_classes=3)
    print(f"mAP@0.5 {voc['map']:.4f}   COCO mAP@[.5:.95] {coco['map']:.4f}")
    for name, ap in zip(CLASSES, voc["ap"]):
        print(f"  {name:<10} AP@0.5 {ap:.4f}")

    from graphcnn.demos.detect import plot_detections
    print("detections:", plot_detections(test.images[:12], found[:12], Path(args.out)))
    print("boxes of the first test image:", np.round(found[0]["boxes"][:3], 1).tolist())


if __name__ == "__main__":
    main()

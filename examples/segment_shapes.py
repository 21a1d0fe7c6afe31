"""Semantic segmentation with a small U-Net on the procedural shapes: every pixel labelled
background, circle, rectangle or triangle; scored on images from another seed.

    python examples/segment_shapes.py [--epochs 12] [--out unet_shapes.png] [--quick]
"""
import argparse

import numpy as np

import graphcnn as gc
from graphcnn.demos.segment import plot_segmentation

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--out", default="unet_shapes.png")
parser.add_argument("--quick", action="store_true", help="64 images, one epoch (a check)")
args = parser.parse_args()
n_train, n_test = (64, 32) if args.quick else (1536, 256)
if args.quick:
    args.epochs = 1

train = gc.data.shapes(n_train, size=32, seed=0)    # images (N, 3, 32, 32), masks (N, 32, 32)
test = gc.data.shapes(n_test, size=32, seed=1)      # held out: another seed
classes = len(train.class_names)                   # 4, background included

gc.manual_seed(0)
model = gc.models.unet(n_channels=3, n_classes=classes, base_width=8, input_size=32)
trainer = gc.Trainer(model, loss="pixel_cross_entropy",   # or gc.losses.Loss(..., weight=...)
                     optimizer=gc.optim.Adam(lr=0.005),
                     schedule=gc.optim.CosineAnnealingLR(T_max=args.epochs))
trainer.fit(train.images, train.masks, epochs=args.epochs, batch_size=16)

predicted = np.asarray(trainer.predict(test.images)).argmax(axis=1)   # (N, 32, 32) labels
scores = gc.metrics.segmentation_metrics(test.masks, predicted, num_classes=classes)
print(f"pixel accuracy {scores['pixel_accuracy']:.4f}")
for name, iou in zip(train.class_names, scores["iou"]):
    print(f"IoU {name:<11} {iou:.4f}")
print(f"mIoU {scores['mean_iou']:.4f}")
print("wrote", plot_segmentation(test.images, test.masks, predicted, args.out,
                                 train.class_names))

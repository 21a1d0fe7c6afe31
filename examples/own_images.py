"""Train a classifier on your own images: one folder per class, any image files Pillow
reads (PNG, JPEG, ...). Saves the arrays as an .npz (for `graphcnn train --dataset`),
trains, predicts one image file, saves the weights.

    python examples/own_images.py [FOLDER] [--size 32] [--epochs 15] [--quick]

FOLDER holds one sub-folder per class (FOLDER/cat/*.jpg, FOLDER/dog/*.jpg, ...). Without
FOLDER the script first writes a small one from gc.data.shapes (my_images/circle/...,
my_images/rectangle/..., my_images/triangle/...) so that it runs as is. Needs Pillow
(`pip install -e ".[demo]"` brings it with matplotlib).
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import graphcnn as gc
from graphcnn import nn


def write_sample_folder(root: Path, n: int) -> None:
    """n images of gc.data.shapes as PNG files, in one folder per dominant shape."""
    data = gc.data.shapes(n, size=48, seed=0)
    for i, (image, cls) in enumerate(zip(data.images, data.dominant)):
        folder = root / data.class_names[cls + 1]          # class_names[0] is background
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image.transpose(1, 2, 0) * 255).astype(np.uint8)   # CHW -> HWC
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def load_image(path: Path, size: int) -> np.ndarray:
    """One image file as float32 (3, size, size) in [0, 1]: what the model takes."""
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size))
        return np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0


def load_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image under root/<class>/ as X (N, 3, size, size) and y (N,) int64."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    X, y = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            X.append(load_image(path, size))
            y.append(label)
    return np.stack(X), np.array(y, np.int64), classes


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder", nargs="?", default=None)
parser.add_argument("--size", type=int, default=32)
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--quick", action="store_true", help="60 sample images, one epoch")
args = parser.parse_args()

root = Path(args.folder or "my_images")
if args.folder is None and not root.exists():
    write_sample_folder(root, 60 if args.quick else 600)
X, y, classes = load_folder(root, args.size)
print(f"{len(X)} images of {len(classes)} classes: {', '.join(classes)}")
np.savez("my_images.npz", x_train=X, y_train=y)       # graphcnn train MODEL --dataset my_images.npz

# hold out every fifth image to score on
test = np.arange(len(X)) % 5 == 0
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * (args.size // 4) ** 2, len(classes)),
    input_shape=(3, args.size, args.size))
trainer = gc.Trainer(model, optimizer=gc.optim.Adam(lr=1e-3))
trainer.fit(X[~test], y[~test], epochs=1 if args.quick else args.epochs, batch_size=16,
            validation_data=(X[test], y[test]), verbose=False)
print(f"held-out accuracy: {trainer.evaluate(X[test], y[test])['accuracy']:.3f}")

# predict one image file: load it as in training, add the batch axis
path = next(p for p in sorted((root / classes[0]).iterdir()))
logits = trainer.predict(load_image(path, args.size)[None])
print(f"{path}: {classes[int(logits.argmax(1)[0])]}")

np.savez("my_model_weights.npz", **model.parameters())   # model.load_parameters(...) reloads

"""The handwritten digits of scikit-learn (1,797 images of 8x8, bundled with the library:
nothing is downloaded), upsampled to LeNet's input size."""
from __future__ import annotations

import numpy as np

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of 1-D bilinear interpolation, half-pixel centers
    (``align_corners=False``, as PIL and torch.nn.functional.interpolate): resizing an
    image is then ``A @ img @ A.T``, one matrix product for the whole batch."""
    scale = in_size / out_size
    # Source coordinate of each output pixel center, clamped at the borders.
    src = np.clip((np.arange(out_size) + 0.5) * scale - 0.5, 0.0, in_size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    a = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(a, (rows, lo), 1.0 - frac)
    np.add.at(a, (rows, hi), frac)
    return a


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W) images to (N, size, size) with bilinear interpolation."""
    _, h, w = images.shape
    ah, aw = bilinear_matrix(h, size), bilinear_matrix(w, size)
    return np.einsum("ih,nhw,jw->nij", ah, images, aw, optimize=True)


def load_digits(size: int = 32, test_size: float = 0.2, random_state: int = 0) -> Split:
    """scikit-learn's 8x8 digits as ``((X_train, y_train), (X_test, y_test))``.

    - pixels scaled from 0..16 to [0, 1], then upsampled to ``size x size`` (bilinear,
      half-pixel centers; ``size=8`` keeps the originals);
    - X: float32, NCHW ``(N, 1, size, size)``; y: int64 in 0..9;
    - a fixed stratified split (``test_size`` of each class goes to the test set,
      ``random_state=0`` by default): 1,437 training and 360 test images, the same at
      every call and on every machine.

    Needs scikit-learn (``pip install graphcnn[demo]``).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("gc.data.load_digits needs scikit-learn: "
                          "pip install 'graphcnn[demo]'") from exc
    bunch = sk_load_digits()
    images = bunch.images.astype(np.float64) / 16.0
    if size != images.shape[-1]:
        images = resize_bilinear(images, size)
    X = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state, stratify=y)
    return (np.ascontiguousarray(X_train), y_train), (np.ascontiguousarray(X_test), y_test)

"""Datasets, as NumPy arrays ready for a Trainer: ``((X_train, y_train), (X_test, y_test))``.

    >>> import graphcnn as gc
    >>> (X, y), (Xt, yt) = gc.data.load_digits()
    >>> X.shape, X.dtype, y.dtype
    ((1437, 1, 32, 32), dtype('float32'), dtype('int64'))

``gc.data.shapes`` draws images of circles, rectangles and triangles with masks, boxes and
regression targets; ``gc.data.load_npz`` reads a user's arrays (``graphcnn train MODEL
--dataset data.npz``).
"""
from graphcnn.data.digits import load_digits, resize_bilinear
from graphcnn.data.npz import DatasetError, load_npz
from graphcnn.data.shapes import Shapes, load_shapes, shapes

DATASETS = {"digits": load_digits, "shapes": load_shapes}

__all__ = ["DATASETS", "DatasetError", "Shapes", "load_digits", "load_npz", "load_shapes",
           "resize_bilinear", "shapes"]

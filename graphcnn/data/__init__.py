"""Datasets, as NumPy arrays ready for a Trainer: ``((X_train, y_train), (X_test, y_test))``.

    >>> import graphcnn as gc
    >>> (X, y), (Xt, yt) = gc.data.load_digits()
    >>> X.shape, X.dtype, y.dtype
    ((1437, 1, 32, 32), dtype('float32'), dtype('int64'))
"""
from graphcnn.data.digits import load_digits, resize_bilinear

DATASETS = {"digits": load_digits}

__all__ = ["DATASETS", "load_digits", "resize_bilinear"]

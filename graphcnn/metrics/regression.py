"""Regression metrics: MAE, RMSE and R^2, computed as scikit-learn computes them.

``y_true`` and ``y_pred`` are arrays of the same shape: (n,) for one target, (n, k) for
k targets. With k > 1 targets the scores are averaged uniformly over the targets
(scikit-learn's ``multioutput='uniform_average'``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mae", "rmse", "r2_score", "regression_metrics"]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (n, k) views of the two arrays, checked for shape and finiteness."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    if t.ndim == 0 or t.ndim > 2:
        raise ValueError(f"targets must be (n,) or (n, k) arrays, got shape {t.shape}")
    if t.shape[0] == 0:
        raise ValueError("regression metrics of an empty set of samples")
    for a, what in ((t, "y_true"), (p, "y_pred")):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what} contains NaN or infinite values")
    return t.reshape(len(t), -1), p.reshape(len(p), -1)


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error, as ``sklearn.metrics.mean_absolute_error``.

    >>> mae([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    0.5
    """
    t, p = _pair(y_true, y_pred)
    return float(np.abs(t - p).mean(axis=0).mean())


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, as ``sklearn.metrics.root_mean_squared_error``
    (per target, then averaged over targets).

    >>> rmse([0.0, 0.0], [3.0, 4.0]) == (12.5) ** 0.5
    True
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(((t - p) ** 2).mean(axis=0)).mean())


def r2_score(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``, as
    ``sklearn.metrics.r2_score``: a constant target scores 1.0 when predicted exactly
    and 0.0 otherwise (scikit-learn's ``force_finite=True``).

    >>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    """
    t, p = _pair(y_true, y_pred)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    # scikit-learn's force_finite: 0/0 is a perfect fit (1.0), x/0 a useless one (0.0).
    score = np.ones_like(ss_res)
    nonzero = ss_tot != 0
    score[nonzero] = 1.0 - ss_res[nonzero] / ss_tot[nonzero]
    score[~nonzero & (ss_res != 0)] = 0.0
    return float(score.mean())


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``{"mae", "rmse", "r2"}`` in one call.

    >>> sorted(regression_metrics([1.0, 2.0], [1.0, 2.0]))
    ['mae', 'r2', 'rmse']
    """
    return {"mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred),
            "r2": r2_score(y_true, y_pred)}

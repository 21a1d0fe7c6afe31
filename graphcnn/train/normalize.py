"""Input normalization: ``(X - mean) / std`` with statistics of the training set.

>>> norm = Normalize().fit(X_train)        # doctest: +SKIP
>>> trainer = gc.Trainer(model, normalize=Normalize())   # doctest: +SKIP

Given to a Trainer unfitted, a Normalize is fitted on the training data at the start of
``fit`` (never on validation or test data) and applied to every batch the model sees,
in training and in evaluation; its statistics are saved in the checkpoint.

Which statistics: with ``per_channel=True`` (the default) an image batch ``(N, C, ...)``
(3-D or more) gets one mean and std per channel, over the samples and the spatial axes
(as ``torchvision.transforms.Normalize`` with dataset statistics); a 2-D ``(N, F)``
batch gets one scalar mean and std over all its values (features of a flattened image
are pixels, whose per-pixel statistics would amplify the near-constant border). With
``per_channel=False`` every input gets scalars. A std of 0 (a constant input or
channel) is replaced by 1.

Regression targets are standardized per column by `TargetScaler` (the model learns
``(t - mean) / std``; its predictions go back with ``inverse``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["Normalize", "TargetScaler"]


class Normalize:
    """``(X - mean) / std`` in float32. Give `mean` and `std` (scalars or per-channel
    sequences) or call :meth:`fit`."""

    def __init__(self, mean: float | Sequence[float] | None = None,
                 std: float | Sequence[float] | None = None, per_channel: bool = True) -> None:
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither (then call fit)")
        self.per_channel = bool(per_channel)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        if mean is not None:
            self.mean = np.atleast_1d(np.asarray(mean, np.float32)).reshape(-1)
            self.std = np.atleast_1d(np.asarray(std, np.float32)).reshape(-1)
            if self.mean.shape != self.std.shape:
                raise ValueError(f"mean has {self.mean.size} values but std has {self.std.size}")
            if not (np.all(np.isfinite(self.mean)) and np.all(self.std > 0)
                    and np.all(np.isfinite(self.std))):
                raise ValueError("mean must be finite and std finite and > 0")

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, X: Any) -> "Normalize":
        """Compute the statistics of X (see the module docstring); returns self."""
        X = np.asarray(X)
        if X.ndim < 2 or len(X) == 0:
            raise ValueError(f"Normalize.fit needs a non-empty batch (N, ...), got shape {X.shape}")
        if self.per_channel and X.ndim >= 3:
            axes = (0,) + tuple(range(2, X.ndim))
        else:
            axes = None
        mean = np.mean(X, axis=axes, dtype=np.float64)
        std = np.std(X, axis=axes, dtype=np.float64)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("Normalize.fit: the data contain non-finite values")
        std = np.where(std > 0, std, 1.0)
        self.mean = np.atleast_1d(mean).astype(np.float32)
        self.std = np.atleast_1d(std).astype(np.float32)
        return self

    def _shaped(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.mean is not None and self.std is not None
        if self.mean.size == 1:
            return self.mean[0], self.std[0]
        if X.ndim < 3 or X.shape[1] != self.mean.size:
            raise ValueError(f"Normalize has {self.mean.size} per-channel values; it needs a "
                             f"batch (N, {self.mean.size}, ...), got shape {X.shape}")
        shape = (1, self.mean.size) + (1,) * (X.ndim - 2)
        return self.mean.reshape(shape), self.std.reshape(shape)

    def __call__(self, X: Any) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("Normalize is not fitted: call fit(X_train) or give mean and "
                               "std (a Trainer fits it on the training data)")
        X = np.asarray(X, np.float32)
        mean, std = self._shaped(X)
        out = np.subtract(X, mean, dtype=np.float32)
        np.divide(out, std, out=out)
        return out

    def inverse(self, X: Any) -> np.ndarray:
        """Undo the normalization: ``X * std + mean``."""
        if not self.fitted:
            raise RuntimeError("Normalize is not fitted")
        X = np.asarray(X, np.float32)
        mean, std = self._shaped(X)
        return (X * std + mean).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: float32 values as Python floats (exact round trip)."""
        return {"mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist(),
                "per_channel": self.per_channel}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Normalize":
        return cls(state.get("mean"), state.get("std"), per_channel=state.get("per_channel", True))

    def __repr__(self) -> str:
        if not self.fitted:
            return f"Normalize(per_channel={self.per_channel}, unfitted)"
        assert self.mean is not None and self.std is not None
        return (f"Normalize(mean={np.round(self.mean, 4).tolist()}, "
                f"std={np.round(self.std, 4).tolist()})")


class TargetScaler:
    """Regression targets standardized per target (column): ``(t - mean) / std`` with the
    training set's statistics, and back with `inverse`. A constant target gets std 1.

    Why: one mse loss over targets of very different scales (a count of 1..3 and a
    fraction of 0..0.5) would weigh the larger one almost alone, and unit-scale targets
    suit the default initialization and learning rates.

    >>> scaler = TargetScaler.fit(np.array([[1.0, 0.1], [3.0, 0.3]]))
    >>> scaler.transform(np.array([[3.0, 0.1]])).tolist()
    [[1.0, -1.0]]
    >>> scaler.inverse(np.array([[0.0, 1.0]])).round(4).tolist()
    [[2.0, 0.3]]
    """

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)

    @classmethod
    def fit(cls, targets: Any) -> "TargetScaler":
        """The statistics of `targets`, (N,) or (N, K), over the samples (axis 0)."""
        t = np.asarray(targets, np.float64)
        if t.ndim not in (1, 2) or len(t) == 0 or not np.all(np.isfinite(t)):
            raise ValueError(f"TargetScaler.fit needs finite targets (N,) or (N, K) with "
                             f"N >= 1, got shape {t.shape}")
        std = t.std(axis=0)
        return cls(t.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, targets: Any) -> np.ndarray:
        return ((np.asarray(targets, np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: Any) -> np.ndarray:
        """Standardized values (the model's predictions) back in the targets' units."""
        return (np.asarray(z, np.float64) * self.std + self.mean).astype(np.float32)

    def __repr__(self) -> str:
        return (f"TargetScaler(mean={np.round(self.mean, 4).tolist()}, "
                f"std={np.round(self.std, 4).tolist()})")

"""What the Trainer watches while it trains, besides the data: non-finite losses and
gradients, a loss that diverges while staying finite, and the settings a resumed run
overrides.

The errors and warnings here carry two hints, one for each way of training: ``str(err)``
names the Python argument that helps (``Trainer(on_nonfinite='skip')``), and
``err.cli_message()`` the command-line flag (``--on-nonfinite skip``), which is what
``graphcnn train`` prints.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping

import numpy as np

DIVERGENCE_POLICIES = ("warn", "stop", "ignore")
# Optimizer settings a resumed run may override (the attributes of graphcnn.optim's
# optimizers): anything else in resume_overrides is a mistake worth an error.
OVERRIDABLE = ("lr", "momentum", "weight_decay", "dampening", "nesterov", "betas", "eps")


class _TwoHints:
    """A message with a hint for Python users and one for command-line users."""

    def __init__(self, cause: str, api_hint: str, cli_hint: str) -> None:
        self.cause, self.api_hint, self.cli_hint = cause, api_hint, cli_hint

    def api_message(self) -> str:
        return f"{self.cause}; {self.api_hint}"

    def cli_message(self) -> str:
        return f"{self.cause}; {self.cli_hint}"


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient that is NaN or infinite, with ``Trainer(on_nonfinite='raise')``."""

    def __init__(self, cause: str) -> None:
        self.hints = _TwoHints(
            cause,
            "try a smaller learning rate or normalized inputs, or "
            "Trainer(on_nonfinite='skip') to skip such updates",
            "try a smaller --lr or normalized inputs, or --on-nonfinite skip to skip such "
            "updates")
        super().__init__(self.hints.api_message())

    def cli_message(self) -> str:
        return self.hints.cli_message()


class DivergenceWarning(RuntimeWarning):
    """The loss grew far above its start (see DivergenceMonitor)."""

    def __init__(self, cause: str, stopping: bool) -> None:
        then = "stopping the run (the last checkpoint is kept)" if stopping else \
            "training goes on"
        self.hints = _TwoHints(
            f"{cause}; {then}",
            "try a smaller learning rate; Trainer(on_divergence='stop') stops such runs, "
            "'ignore' does not check",
            "try a smaller --lr; --on-divergence stop stops such runs, ignore does not check")
        super().__init__(self.hints.api_message())

    def cli_message(self) -> str:
        return self.hints.cli_message()


def nonfinite_cause(loss: float, grads: Mapping[str, np.ndarray], epoch: int,
                    batch: int) -> str | None:
    """None when the loss and every gradient are finite; else what is not (the loss, or
    the first gradient with its count of non-finite values), with where it happened."""
    where = f"at epoch {epoch + 1}, batch {batch}"
    if not math.isfinite(loss):
        return f"non-finite loss ({loss}) {where}"
    for name, g in grads.items():
        finite = np.isfinite(g)
        if not finite.all():
            bad = int(g.size - np.count_nonzero(finite))
            return (f"non-finite gradient of {name} ({bad} of {g.size} values; the loss "
                    f"{loss:.6g} is finite) {where}")
    return None


class DivergenceMonitor:
    """Reports a loss that diverges while it stays finite.

    The reference is the loss at the start: the first epoch's mean loss of a resumed run's
    history, else the first batch's loss. The run diverges when the mean of the last
    `window` batch losses exceeds `factor` times the reference. A mean over a few batches
    ignores a single noisy batch; 10x the starting loss is far beyond what a healthy run
    reaches (cross-entropy starts near log(classes) and only falls). A reference that is
    not positive (a loss that can be negative) disables the check.
    """

    def __init__(self, factor: float = 10.0, window: int = 5,
                 reference: float | None = None) -> None:
        if not (factor > 1 and math.isfinite(factor)):
            raise ValueError(f"divergence_factor must be a finite number > 1, got {factor}")
        self.factor, self.window = float(factor), int(window)
        self.reference = reference if reference is not None and math.isfinite(reference) \
            else None
        self.recent: deque[float] = deque(maxlen=self.window)

    def update(self, loss: float, epoch: int, batch: int) -> str | None:
        """Record a finite batch loss; returns the reason when the run has diverged."""
        if self.reference is None:
            self.reference = float(loss)
        self.recent.append(float(loss))
        if self.reference <= 0:
            return None
        mean = sum(self.recent) / len(self.recent)
        if mean > self.factor * self.reference:
            return (f"training diverged at epoch {epoch + 1}, batch {batch}: the loss "
                    f"(mean of the last {len(self.recent)} batches) is {mean:.4g}, over "
                    f"{self.factor:g}x its start {self.reference:.4g}")
        return None


def _override_lr(optimizer: Any, schedule: Any, value: float) -> float:
    """Set the run's base learning rate; returns the one it replaces. An epoch schedule
    (StepLR, cosine, ...) continues from the new base at its step count; CyclicLR's wave
    is rescaled to peak at the new rate; otherwise the optimizer's rate is set."""
    from graphcnn.optim.schedules import CyclicLR, LRSchedule

    if isinstance(schedule, CyclicLR):
        old = float(schedule.max_lr)
        schedule.base_lr = schedule.base_lr * value / old if old > 0 else 0.0
        schedule.max_lr = value
        schedule._apply()
        return old
    if isinstance(schedule, LRSchedule) and schedule.base_lr is not None:
        old = float(schedule.base_lr)
        schedule.base_lr = value
        schedule._apply()
        return old
    old = float(optimizer.lr)
    optimizer.lr = value
    return old


def check_overrides(optimizer: Any, overrides: Mapping[str, Any]) -> None:
    """Every name in `overrides` is a setting of `optimizer` that may be overridden
    (checked when the Trainer is built, not when it resumes)."""
    for name in overrides:
        if name not in OVERRIDABLE:
            raise ValueError(f"resume_overrides: {name!r} is not an optimizer setting that "
                             f"can be overridden (expected some of {', '.join(OVERRIDABLE)})")
        if not hasattr(optimizer, name):
            raise ValueError(f"resume_overrides: {type(optimizer).__name__} has no "
                             f"setting {name!r}")


def apply_overrides(optimizer: Any, schedule: Any, overrides: Mapping[str, Any]
                    ) -> list[tuple[str, Any, Any]]:
    """Set the optimizer settings in `overrides` after a checkpoint restored its own;
    returns (name, checkpoint's value, new value) for each one that changed. ``lr`` is the
    run's base rate (see _override_lr), the others the optimizer's attributes."""
    check_overrides(optimizer, overrides)
    changes: list[tuple[str, Any, Any]] = []
    for name, value in overrides.items():
        if name == "lr":
            old: Any = _override_lr(optimizer, schedule, float(value))
        else:
            old = getattr(optimizer, name)
            current = old
            setattr(optimizer, name, tuple(value) if isinstance(current, tuple) else
                    type(current)(value))
        if old != value:
            changes.append((name, old, value))
    return changes

"""Learning-rate schedules with the semantics of ``torch.optim.lr_scheduler``.

A schedule is built without an optimizer and attached with ``bind(optimizer)`` (the
Trainer does this), which records the optimizer's current ``lr`` as the base rate and sets
the rate of step 0 (CyclicLR: ``base_lr``). Then

- epoch-based schedules (``per_batch = False``): ``step()`` once after each epoch;
  ReduceLROnPlateau: ``step(metric)`` with the monitored value (the Trainer passes the
  validation loss, or the training loss without validation data);
- CyclicLR (``per_batch = True``): ``step_batch()`` after each optimizer step.

``get_last_lr()`` is the rate last set; ``state_dict()`` is a JSON-able dict and
``load_state_dict(d)`` restores it (the optimizer's own state holds its ``lr``).

StepLR, ExponentialLR, CosineAnnealingLR and CyclicLR use torch's closed forms of the
step count ``t`` (``last_epoch``), so the rate never drifts and a resumed run matches:

- StepLR:            ``base * gamma ** (t // step_size)``
- ExponentialLR:     ``base * gamma ** t``
- CosineAnnealingLR: ``eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2``
- CyclicLR:          torch's triangular / triangular2 / exp_range waves between ``base_lr``
  and ``max_lr``. Unlike torch, momentum is not cycled unless ``cycle_momentum=True``.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["LRSchedule", "StepLR", "ExponentialLR", "CosineAnnealingLR", "CyclicLR",
           "ReduceLROnPlateau"]


class LRSchedule:
    """Base class of the epoch-based closed-form schedules."""

    per_batch = False
    _HYPER: tuple[str, ...] = ()

    def __init__(self, optimizer: Any = None) -> None:
        self.optimizer: Any = None
        self.base_lr: float | None = None
        self.last_epoch = 0
        self._last_lr: float | None = None
        if optimizer is not None:
            self.bind(optimizer)

    def bind(self, optimizer: Any) -> "LRSchedule":
        """Attach to an optimizer (anything with a settable ``lr``): its current rate is
        the base rate; the rate of step 0 is set now. Returns self."""
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}.bind needs an optimizer with an `lr` "
                            f"attribute, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        self._apply()
        return self

    def _require_bound(self) -> None:
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to an optimizer: "
                               f"call bind(optimizer) first (Trainer does it)")

    def _bound_base_lr(self) -> float:
        """The base rate; the schedule must be bound (bind() sets both)."""
        self._require_bound()
        assert self.base_lr is not None, "bind() sets base_lr with the optimizer"
        return self.base_lr

    def lr_at(self, t: int) -> float:
        """The learning rate after t steps (t = 0: the base rate)."""
        raise NotImplementedError

    def get_lr(self) -> float:
        """The learning rate of the current step count."""
        self._require_bound()
        return self.lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        self._require_bound()
        return self._last_lr if self._last_lr is not None else float(self.optimizer.lr)

    def _apply(self) -> None:
        lr = float(self.lr_at(self.last_epoch))
        self.optimizer.lr = lr
        self._last_lr = lr

    def step(self) -> None:
        """One epoch done: advance and set the optimizer's rate."""
        self._require_bound()
        self.last_epoch += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        state = {key: getattr(self, key) for key in self._HYPER}
        state.update(last_epoch=self.last_epoch, base_lr=self.base_lr, last_lr=self._last_lr)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self._HYPER:
            if key in state:
                setattr(self, key, state[key])
        self.last_epoch = int(state["last_epoch"])
        if state.get("base_lr") is not None:
            self.base_lr = float(state["base_lr"])
        self._last_lr = None if state.get("last_lr") is None else float(state["last_lr"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._HYPER)
        return f"{type(self).__name__}({args})"


class StepLR(LRSchedule):
    """Multiply the rate by `gamma` every `step_size` epochs."""

    _HYPER = ("step_size", "gamma")

    def __init__(self, step_size: int, gamma: float = 0.1, optimizer: Any = None) -> None:
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        _check_positive("gamma", gamma)
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self._bound_base_lr() * self.gamma ** (t // self.step_size)


class ExponentialLR(LRSchedule):
    """Multiply the rate by `gamma` every epoch."""

    _HYPER = ("gamma",)

    def __init__(self, gamma: float, optimizer: Any = None) -> None:
        _check_positive("gamma", gamma)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self._bound_base_lr() * self.gamma ** t


class CosineAnnealingLR(LRSchedule):
    """Half a cosine from the base rate down to `eta_min` over `T_max` epochs (and back up
    over the next T_max, as torch's formula continues)."""

    _HYPER = ("T_max", "eta_min")

    def __init__(self, T_max: int, eta_min: float = 0.0, optimizer: Any = None) -> None:
        if int(T_max) != T_max or T_max < 1:
            raise ValueError(f"T_max must be a positive integer, got {T_max!r}")
        if not (eta_min >= 0 and math.isfinite(eta_min)):
            raise ValueError(f"eta_min must be a finite number >= 0, got {eta_min!r}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.eta_min + (self._bound_base_lr() - self.eta_min) * (
            1 + math.cos(math.pi * t / self.T_max)) / 2


class CyclicLR(LRSchedule):
    """Cyclical learning rate (Smith 2017), stepped after every batch (``per_batch``).

    One cycle is `step_size_up` batches rising linearly from `base_lr` to `max_lr` and
    `step_size_down` (default: = up) falling back. Modes: ``'triangular'`` (constant
    amplitude), ``'triangular2'`` (amplitude halved each cycle), ``'exp_range'``
    (amplitude times ``gamma ** batches``). bind() sets the optimizer's rate to
    `base_lr`. With ``cycle_momentum=True`` the optimizer's ``momentum`` (SGD) or
    ``betas[0]`` (Adam) cycles inversely between `max_momentum` and `base_momentum`, as in
    torch (where it is the default).
    """

    per_batch = True
    base_lr: float   # the schedule's own, set by __init__ (bound or not)
    MODES = ("triangular", "triangular2", "exp_range")
    _HYPER = ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma",
              "cycle_momentum", "base_momentum", "max_momentum")

    def __init__(self, base_lr: float, max_lr: float, step_size_up: int = 2000,
                 step_size_down: int | None = None, mode: str = "triangular",
                 gamma: float = 1.0, cycle_momentum: bool = False, base_momentum: float = 0.8,
                 max_momentum: float = 0.9, optimizer: Any = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not (0 <= base_lr <= max_lr and math.isfinite(max_lr)):
            raise ValueError(f"need 0 <= base_lr <= max_lr, got base_lr={base_lr!r}, "
                             f"max_lr={max_lr!r}")
        for key, value in (("step_size_up", step_size_up), ("step_size_down", step_size_down)):
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        _check_positive("gamma", gamma)
        self.base_lr = float(base_lr)  # the schedule's own, not the optimizer's rate
        self.max_lr = float(max_lr)
        self.step_size_up = int(step_size_up)
        self.step_size_down = int(step_size_up if step_size_down is None else step_size_down)
        self.mode, self.gamma = mode, float(gamma)
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        self.optimizer: Any = None
        self.last_epoch = 0
        self._last_lr: float | None = None
        if optimizer is not None:
            self.bind(optimizer)

    def bind(self, optimizer: Any) -> "CyclicLR":
        """Attach to an optimizer and set its rate to `base_lr`."""
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"CyclicLR.bind needs an optimizer with an `lr` attribute, got "
                            f"{type(optimizer).__name__}")
        if self.cycle_momentum and not (hasattr(optimizer, "momentum") or
                                        hasattr(optimizer, "betas")):
            raise ValueError("cycle_momentum=True needs an optimizer with momentum or betas")
        self.optimizer = optimizer
        self.last_epoch = 0
        self._apply()
        return self

    def _scale(self, t: int) -> float:
        """0 at base_lr, 1 at max_lr, times the mode's amplitude factor."""
        total = self.step_size_up + self.step_size_down
        ratio = self.step_size_up / total
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            factor = 1.0
        elif self.mode == "triangular2":
            factor = 1 / (2.0 ** (cycle - 1))
        else:
            factor = self.gamma ** t
        return scale * factor

    def lr_at(self, t: int) -> float:
        return self.base_lr + (self.max_lr - self.base_lr) * self._scale(t)

    def momentum_at(self, t: int) -> float:
        return self.max_momentum - (self.max_momentum - self.base_momentum) * self._scale(t)

    def _apply(self) -> None:
        super()._apply()
        if self.cycle_momentum:
            m = self.momentum_at(self.last_epoch)
            if hasattr(self.optimizer, "betas"):
                self.optimizer.betas = (m, self.optimizer.betas[1])
            else:
                self.optimizer.momentum = m

    def step_batch(self) -> None:
        """One batch done: advance the cycle."""
        LRSchedule.step(self)


class ReduceLROnPlateau:
    """Divide the rate when a monitored metric stops improving (torch semantics).

    ``step(metric)`` once per epoch. The metric improves when it is below
    ``best * (1 - threshold)`` (mode 'min', threshold_mode 'rel'; 'abs': ``best -
    threshold``; mode 'max' mirrored). After more than `patience` epochs without
    improvement the rate becomes ``max(lr * factor, min_lr)`` and `cooldown` epochs follow
    in which bad epochs are not counted.
    """

    per_batch = False
    _HYPER = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
              "min_lr", "eps")

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8, optimizer: Any = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"factor must be in [0, 1), got {factor!r}")
        for key, value in (("patience", patience), ("cooldown", cooldown)):
            if int(value) != value or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = int(cooldown), float(min_lr), float(eps)
        self.optimizer: Any = None
        self._reset()
        if optimizer is not None:
            self.bind(optimizer)

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def bind(self, optimizer: Any) -> "ReduceLROnPlateau":
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"ReduceLROnPlateau.bind needs an optimizer with an `lr` "
                            f"attribute, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self._reset()
        return self

    def is_better(self, current: float, best: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return current < best * (1.0 - self.threshold)
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (1.0 + self.threshold)
        return current > best + self.threshold

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metric: float) -> None:
        """One epoch done with the monitored value `metric`."""
        if self.optimizer is None:
            raise RuntimeError("ReduceLROnPlateau is not attached to an optimizer: call "
                               "bind(optimizer) first (Trainer does it)")
        current = float(metric)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self) -> float:
        return float(self.optimizer.lr)

    def state_dict(self) -> dict[str, Any]:
        state = {key: getattr(self, key) for key in self._HYPER}
        state.update(best=self.best if math.isfinite(self.best) else None,
                     num_bad_epochs=self.num_bad_epochs, cooldown_counter=self.cooldown_counter,
                     last_epoch=self.last_epoch)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self._HYPER:
            if key in state:
                setattr(self, key, state[key])
        self._reset()
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.last_epoch = int(state.get("last_epoch", 0))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._HYPER)
        return f"ReduceLROnPlateau({args})"


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

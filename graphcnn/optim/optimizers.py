"""Optimizers over dicts of NumPy parameter arrays: SGD, Adam, AdamW.

The update rules are those of ``torch.optim`` (same defaults, same order of operations),
applied to the model's live parameter arrays in place:

>>> opt = SGD(lr=0.1, momentum=0.9)
>>> opt.step(model.trainable_parameters(), grads)        # doctest: +SKIP

- An optimizer is built without parameters; its per-parameter state (momentum buffers,
  Adam moments, step counts) is keyed by parameter name and created on the first step
  that parameter gets a gradient. A parameter without an entry in `grads` is left alone.
- ``lr`` (and every hyperparameter) is a plain attribute: a schedule sets ``opt.lr``.
- Updates stay in each parameter's dtype (float32) and use in-place NumPy operations on
  preallocated buffers: a step allocates nothing once the state exists.
- ``l1`` adds ``l1 * sign(p)`` to the gradient (L1 regularization), next to the L2 term
  ``weight_decay * p`` of SGD and Adam. AdamW's weight decay is decoupled, as in torch.
- ``state_dict()`` returns ``(arrays, scalars)``: arrays named ``"<kind>/<param name>"``
  (e.g. ``"momentum/conv1.weight"``) for an ``.npz``, and a JSON-able dict with the
  learning rate, the hyperparameters and the per-parameter step counts.
  ``load_state_dict(arrays, scalars)`` restores all of it exactly, so a resumed run
  continues bit for bit as the uninterrupted one would.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numba
import numpy as np

from graphcnn.optim import sgd_kernel
from graphcnn.optim.parallel import run_updates

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: per-parameter state by name, hyperparameters as attributes, and the
    (arrays, scalars) state dict. Subclasses define `_HYPER`, `_BUFFERS` and `_update`."""

    _HYPER: tuple[str, ...] = ()     # hyperparameter attribute names saved in the scalars
    _BUFFERS: tuple[str, ...] = ()   # per-parameter state arrays, created on first step
    l1: float                        # the L1 strength _gradient adds: each subclass sets it

    def __init__(self, lr: float) -> None:
        _check_non_negative("lr", lr)
        self.lr = float(lr)
        self.state: dict[str, dict[str, np.ndarray]] = {}   # name -> buffer kind -> array
        self.steps: dict[str, int] = {}                     # name -> updates applied
        self._work: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # two work arrays per name

    # ---- the step ------------------------------------------------------------------
    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update every parameter of `params` that has a gradient in `grads`, in place
        (large steps on several threads at once: parallel.py)."""
        checked: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray], Any]] = []
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                continue
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"parameter {name!r} must be a floating-point numpy array, got "
                                f"{type(p).__name__} {getattr(p, 'dtype', '')}")
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name!r} has shape {g.shape}, the parameter "
                                 f"has shape {p.shape}")
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = {}
                self.steps.setdefault(name, 0)
            for kind, buf in state.items():
                if buf.shape != p.shape:
                    raise ValueError(
                        f"the optimizer's {kind!r} state for {name!r} has shape {buf.shape}, "
                        f"the parameter has shape {p.shape} (state of another model? "
                        f"zero_state() forgets it)")
                if buf.dtype != p.dtype:
                    state[kind] = buf.astype(p.dtype)
            work: Any = (None, None)   # the one-pass kernels need none
            if self._uses_work(p, g):
                work = self._work.get(name)
                if work is None or work[0].shape != p.shape or work[0].dtype != p.dtype:
                    work = self._work[name] = (np.empty_like(p), np.empty_like(p))
            checked.append((name, p, g, state, work))
        updates, sizes = [], []
        for name, p, g, state, work in checked:   # every gradient checked: now update
            self.steps[name] += 1
            updates.append(functools.partial(self._update, p, g, state, work[0], work[1],
                                             self.steps[name]))
            sizes.append(p.nbytes)
        # one array under two names: its updates must run one after the other
        alone = len({p.ctypes.data for _, p, *_ in checked}) < len(checked)
        run_updates(updates, sizes, 1 if alone else numba.get_num_threads())

    def _gradient(self, p: np.ndarray, g: np.ndarray, out: np.ndarray, tmp: np.ndarray,
                  weight_decay: float) -> np.ndarray:
        """out = grad + weight_decay * p + l1 * sign(p), in p's dtype."""
        np.copyto(out, g, casting="same_kind")
        if weight_decay:
            _add_scaled(out, p, weight_decay, tmp)
        if self.l1:
            np.sign(p, out=tmp)
            _add_scaled(out, tmp, self.l1, tmp)
        return out

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray],
                d: np.ndarray, tmp: np.ndarray, step: int) -> None:
        """Update p in place; d and tmp are work arrays shaped like p (None where
        _uses_work says so); `step` counts this update (1 on the first)."""
        raise NotImplementedError

    def _uses_work(self, p: np.ndarray, g: np.ndarray) -> bool:
        """Whether _update needs the two work arrays for this parameter (kept from step to
        step: two more copies of the parameter's bytes)."""
        return True

    def _buffer(self, state: dict[str, np.ndarray], kind: str, p: np.ndarray,
                init: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        """The state array `kind` of a parameter: (array, created now)."""
        buf = state.get(kind)
        if buf is not None:
            return buf, False
        buf = state[kind] = np.zeros_like(p) if init is None else np.array(init, p.dtype)
        return buf, True

    # ---- state ---------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lr": self.lr}
        for key in self._HYPER:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays named "<kind>/<param>", JSON-able scalars); copies, not live views."""
        arrays = {f"{kind}/{name}": buf.copy()
                  for name, state in self.state.items() for kind, buf in state.items()}
        scalars = self.hyperparameters()
        scalars["class"] = type(self).__name__
        scalars["steps"] = dict(self.steps)
        return arrays, scalars

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        """Restore what state_dict returned (the learning rate and hyperparameters
        included, as torch's load_state_dict does)."""
        cls = scalars.get("class")
        if cls is not None and cls != type(self).__name__:
            raise ValueError(f"optimizer state of a {cls} cannot be loaded into a "
                             f"{type(self).__name__}")
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            kind, sep, name = key.partition("/")
            if not sep or kind not in self._BUFFERS:
                kinds = "|".join(self._BUFFERS)
                raise ValueError(f"unexpected optimizer state array {key!r} for "
                                 f"{type(self).__name__} (expected <{kinds}>/name)")
            state.setdefault(name, {})[kind] = np.array(value, copy=True)
        steps = {str(k): int(v) for k, v in dict(scalars.get("steps", {})).items()}
        self.lr = float(scalars.get("lr", self.lr))
        for key in self._HYPER:
            if key in scalars:
                value = scalars[key]
                current = getattr(self, key)
                setattr(self, key, tuple(value) if isinstance(current, tuple) else
                        type(current)(value))
        self.state = state
        self.steps = {name: steps.get(name, 0) for name in set(steps) | set(state)}
        self._work = {}

    def zero_state(self) -> None:
        """Forget all per-parameter state (momentum, moments, step counts)."""
        self.state, self.steps, self._work = {}, {}, {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _add_scaled(out: np.ndarray, x: np.ndarray, a: float, tmp: np.ndarray) -> None:
    """out += a * x (torch's ``out.add_(x, alpha=a)``) through the work array `tmp`, which
    may be `x` itself."""
    np.multiply(x, a, out=tmp)
    np.add(out, tmp, out=out)


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and value >= 0
            and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD semantics):

        g = grad + weight_decay * p + l1 * sign(p)
        b = g                                   (first step)
        b = momentum * b + (1 - dampening) * g  (later steps)
        g = g + momentum * b  if nesterov else  b
        p = p - lr * g
    """

    _HYPER = ("momentum", "nesterov", "weight_decay", "dampening", "l1")
    _BUFFERS = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, dampening: float = 0.0, l1: float = 0.0) -> None:
        super().__init__(lr)
        for key, value in (("momentum", momentum), ("weight_decay", weight_decay),
                           ("dampening", dampening), ("l1", l1)):
            _check_non_negative(key, value)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.weight_decay, self.dampening = float(weight_decay), float(dampening)
        self.l1 = float(l1)

    def _uses_work(self, p: np.ndarray, g: np.ndarray) -> bool:
        return bool(self.l1) or not sgd_kernel.fits(p, g)

    def _update(self, p, g, state, d, tmp, step):
        if not self._uses_work(p, g):   # one pass over the arrays, same bits
            buf, created = (self._buffer(state, "momentum", p) if self.momentum
                            else (None, False))
            sgd_kernel.sgd_update(p, g, buf, self.lr, self.momentum, self.dampening,
                                  self.weight_decay, self.nesterov, created)
            return
        self._gradient(p, g, d, tmp, self.weight_decay)
        if self.momentum:
            buf, created = self._buffer(state, "momentum", p, init=d)
            if not created:
                np.multiply(buf, self.momentum, out=buf)
                if self.dampening:
                    _add_scaled(buf, d, 1.0 - self.dampening, tmp)
                else:
                    np.add(buf, d, out=buf)
            if self.nesterov:
                _add_scaled(d, buf, self.momentum, tmp)
            else:
                d = buf
        _add_scaled(p, d, -self.lr, tmp)


class Adam(Optimizer):
    """Adam (torch.optim.Adam semantics; `weight_decay` is L2 added to the gradient):

        g = grad + weight_decay * p + l1 * sign(p)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                    (amsgrad; used in place of v below)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    _HYPER = ("betas", "eps", "weight_decay", "amsgrad", "l1")
    _BUFFERS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 l1: float = 0.0) -> None:
        super().__init__(lr)
        values = tuple(float(b) for b in betas)
        if len(values) != 2 or not all(0.0 <= b < 1.0 for b in values):
            raise ValueError(f"betas must be two numbers in [0, 1), got {values!r}")
        for key, value in (("eps", eps), ("weight_decay", weight_decay), ("l1", l1)):
            _check_non_negative(key, value)
        self.betas: tuple[float, float] = (values[0], values[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.amsgrad, self.l1 = bool(amsgrad), float(l1)

    def _update(self, p, g, state, d, tmp, step):
        beta1, beta2 = self.betas
        if self._decoupled:
            if self.weight_decay:  # p.mul_(1 - lr * weight_decay)
                np.multiply(p, 1.0 - self.lr * self.weight_decay, out=p)
            self._gradient(p, g, d, tmp, 0.0)
        else:
            self._gradient(p, g, d, tmp, self.weight_decay)
        m, _ = self._buffer(state, "exp_avg", p)
        v, _ = self._buffer(state, "exp_avg_sq", p)
        # m.lerp_(g, 1 - beta1): m + (1 - beta1) * (g - m)
        np.subtract(d, m, out=tmp)
        _add_scaled(m, tmp, 1.0 - beta1, tmp)
        # v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        np.multiply(v, beta2, out=v)
        np.multiply(d, d, out=tmp)
        _add_scaled(v, tmp, 1.0 - beta2, tmp)
        if self.amsgrad:
            vmax, _ = self._buffer(state, "max_exp_avg_sq", p)
            np.maximum(vmax, v, out=vmax)
            v = vmax
        bias_correction1 = 1.0 - beta1 ** step
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
        step_size = self.lr / bias_correction1
        # denom = (v.sqrt() / bc2_sqrt).add_(eps); p.addcdiv_(m, denom, value=-step_size)
        np.sqrt(v, out=tmp)
        np.divide(tmp, bias_correction2_sqrt, out=tmp)
        np.add(tmp, self.eps, out=tmp)
        np.divide(m, tmp, out=tmp)
        _add_scaled(p, tmp, -step_size, tmp)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW semantics): before the Adam
    step, ``p = p * (1 - lr * weight_decay)``; the gradient gets no L2 term."""

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 l1: float = 0.0) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad, l1)

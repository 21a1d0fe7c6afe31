"""SGD's whole update of one parameter in one pass over its arrays (Numba), in place of
the five to seven NumPy passes `SGD._update` makes (copy the gradient, weight decay's
multiply and add, the momentum buffer's multiply and add, the step's multiply and add),
each of which reads and writes the whole array: on ResNet-18's 11.7M parameters a step
was about 30 ms of memory traffic, a few % of a training step.

The arithmetic is NumPy's, operation for operation, in the parameter's dtype (the
scalars are cast to it as NumPy 2 casts a Python float against a float32 array; no
fast-math, so no fused multiply-add): the results are bitwise those of the NumPy path,
so a resumed run still continues bit for bit.

It runs on the calling thread: the update is a stream over memory that one core nearly
saturates, most parameters are small (biases, batch-norm weights, depthwise filters), and a
parallel launch per parameter cost more than it saved, twice the NumPy path's time on a
loaded machine (its threads wait for a descheduled one).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sgd(p, g, buf, lr, momentum, dampening, weight_decay, has_decay, has_momentum,
         has_dampening, nesterov, first):
    """p -= lr * step, with step = g + weight_decay * p, through the momentum buffer
    (torch.optim.SGD's rule; `first`: the buffer starts as the step itself). The scalars
    come in p's dtype; lr negated (p + (-lr) * step, as `_add_scaled`)."""
    for k in range(p.size):
        d = g[k]
        if has_decay:
            d = d + p[k] * weight_decay
        if has_momentum:
            if first:
                b = d
            elif has_dampening:
                b = buf[k] * momentum + d * dampening
            else:
                b = buf[k] * momentum + d
            buf[k] = b
            d = d + b * momentum if nesterov else b
        p[k] = p[k] + d * lr


def fits(p: np.ndarray, g: np.ndarray) -> bool:
    """Whether the one-pass kernel updates `p` with `g`: float32 or float64 arrays of one
    dtype, both contiguous (else the NumPy path, which casts and strides)."""
    return (p.dtype == g.dtype and p.dtype in (np.float32, np.float64)
            and p.flags.c_contiguous and g.flags.c_contiguous and p.flags.writeable)


def sgd_update(p: np.ndarray, g: np.ndarray, buf: np.ndarray | None, lr: float,
               momentum: float, dampening: float, weight_decay: float, nesterov: bool,
               first: bool) -> None:
    """One SGD update of `p` in place (`fits(p, g)`); `buf` the momentum buffer (None
    without momentum), `first` whether this is its first step."""
    t = p.dtype.type
    flat = p.reshape(-1)
    buffer = buf.reshape(-1) if buf is not None else flat[:0]
    _sgd(flat, g.reshape(-1), buffer, t(-lr), t(momentum), t(1.0 - dampening),
         t(weight_decay), bool(weight_decay), buf is not None, bool(dampening),
         bool(nesterov), bool(first))

"""The optimizers' updates on the device: SGD (momentum, dampening, Nesterov, weight
decay, L1) and Adam / AdamW (amsgrad, L1), matching graphcnn.optim bit for bit.

graphcnn.optim computes each update as a sequence of float32 NumPy operations (each
rounded; Python-float hyperparameters rounded to the parameter dtype first, NEP 50). The
kernels do the same operations in the same order, each rounded: on the GPU through
libdevice's `__fmul_rn`/`__fadd_rn`/`__fdiv_rn`/`__fsqrt_rn` (which the compiler never
contracts into fused multiply-adds), on the simulator with NumPy scalars.

    dev_opt = DeviceOptimizer(gc.optim.SGD(lr=0.1, momentum=0.9))
    dev_opt.step(device_params, device_grads)       # name -> device array, in place
    dev_opt.sync_to_host()                          # state into the host optimizer

The wrapped optimizer keeps the hyperparameters (a schedule may set `.lr`) and the step
counts; `sync_to_host` copies the device state buffers into its `.state`, so
`state_dict()` and checkpoints work as on the cpu. `DeviceTraining` runs a cuda
GradientStep with the parameters resident on the device (see its docstring).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import is_simulator, numba_cuda
from graphcnn.backends.cuda.registry import PTX_EXAMPLES, launch_1d

cu = numba_cuda()


def _rounded_ops(T: Any) -> tuple[Any, Any, Any, Any]:
    """(mul, add, div, sqrt), each correctly rounded to T and never contracted."""
    if is_simulator():
        def mul(a, b):
            return T(a * b)

        def add(a, b):
            return T(a + b)

        def div(a, b):
            return T(a / b)

        def sqrt(a):
            return T(math.sqrt(a))
        return tuple(cu.jit(device=True)(f) for f in (mul, add, div, sqrt))
    from numba.cuda import libdevice as ld
    if T == types.float64:
        return ld.dmul_rn, ld.dadd_rn, ld.ddiv_rn, ld.dsqrt_rn
    return ld.fmul_rn, ld.fadd_rn, ld.fdiv_rn, ld.fsqrt_rn


def _regularized_gradient(T: Any, mul: Any, add: Any) -> Any:
    """The device function g + wd * p + l1 * sign(p), rounded step by step as
    Optimizer._gradient computes it (sign(0) = 0, sign(nan) = nan)."""
    def gradient(pi, g, wd, l1):
        d = T(g)
        if wd != 0:
            d = add(d, mul(pi, wd))
        if l1 != 0:
            s = T(1) if pi > 0 else (T(-1) if pi < 0 else mul(pi, T(0)))
            d = add(d, mul(s, l1))
        return d
    return cu.jit(device=True)(gradient)


def make_sgd(T: Any) -> Any:
    mul, add, div, sqrt = _rounded_ops(T)
    gradient = _regularized_gradient(T, mul, add)

    def sgd(p, g, buf, wd, l1, momentum, damp1, neg_lr, first, nesterov):
        i = cu.grid(1)
        while i < p.size:
            pi = p[i]
            d = gradient(pi, g[i], wd, l1)
            if momentum != 0:
                if first:
                    b = d
                else:
                    b = mul(buf[i], momentum)
                    if damp1 != 1:
                        b = add(b, mul(d, damp1))
                    else:
                        b = add(b, d)
                buf[i] = b
                if nesterov:
                    d = add(d, mul(b, momentum))
                else:
                    d = b
            p[i] = add(pi, mul(d, neg_lr))
            i += cu.gridsize(1)
    return cu.jit(sgd)


def make_adam(T: Any) -> Any:
    mul, add, div, sqrt = _rounded_ops(T)
    gradient = _regularized_gradient(T, mul, add)

    def adam(p, g, m, v, vmax, decay, wd, l1, one_m_b1, b2, one_m_b2, bc2s, eps,
             neg_step, amsgrad):
        i = cu.grid(1)
        while i < p.size:
            pi = p[i]
            if decay != 1:
                pi = mul(pi, decay)
            d = gradient(pi, g[i], wd, l1)
            mi = m[i]
            mi = add(mi, mul(add(d, -mi), one_m_b1))
            m[i] = mi
            vi = add(mul(v[i], b2), mul(mul(d, d), one_m_b2))
            v[i] = vi
            if amsgrad:
                vm = vmax[i]
                if vi > vm or vi != vi:
                    vm = vi
                vmax[i] = vm
                vi = vm
            denom = add(div(sqrt(vi), bc2s), eps)
            p[i] = add(pi, mul(div(mi, denom), neg_step))
            i += cu.gridsize(1)
    return cu.jit(adam)


_KERNELS: dict[tuple[str, str], Any] = {}


def _kernel(kind: str, dtype: Any) -> Any:
    key = (kind, np.dtype(dtype).str)
    if key not in _KERNELS:
        T = types.float64 if np.dtype(dtype) == np.float64 else types.float32
        _KERNELS[key] = (make_sgd if kind == "sgd" else make_adam)(T)
    return _KERNELS[key]


class DeviceOptimizer:
    """Applies a graphcnn.optim optimizer's updates to device arrays (see the module
    docstring)."""

    def __init__(self, optimizer: Any) -> None:
        from graphcnn.optim import SGD, Adam
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError(f"DeviceOptimizer supports SGD, Adam and AdamW, got "
                            f"{type(optimizer).__name__}")
        self.optimizer: Any = optimizer   # SGD or Adam: `kind` says which
        self.kind = "sgd" if isinstance(optimizer, SGD) else "adam"
        self.state: dict[str, dict[str, Any]] = {}   # name -> kind -> device array
        self._shapes: dict[str, tuple[int, ...]] = {}
        for name, bufs in optimizer.state.items():   # e.g. loaded from a checkpoint
            self.state[name] = {k: cu.to_device(np.ascontiguousarray(b))
                                for k, b in bufs.items()}

    def _buffer(self, name: str, kind: str, p: Any) -> tuple[Any, bool]:
        """The flat view of state `kind` (made with the parameter's shape, zeroed)."""
        state = self.state.setdefault(name, {})
        created = kind not in state
        if created:
            state[kind] = cu.to_device(np.zeros(self._shapes[name], p.dtype))
        return state[kind].reshape(p.size), created

    def step(self, params: Mapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Update every device parameter that has a device gradient, in place."""
        opt = self.optimizer
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                continue
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient of {name!r} has shape {g.shape}, the parameter "
                                 f"has shape {p.shape}")
            opt.steps[name] = opt.steps.get(name, 0) + 1
            opt.state.setdefault(name, {})
            t = opt.steps[name]
            f = np.dtype(p.dtype).type
            self._shapes[name] = tuple(p.shape)
            flat_p, flat_g = p.reshape(p.size), g.reshape(g.size)
            if self.kind == "sgd":
                self._sgd(name, flat_p, flat_g, f)
            else:
                self._adam(name, flat_p, flat_g, f, t)

    def _sgd(self, name: str, p: Any, g: Any, f: Any) -> None:
        opt = self.optimizer
        buf, first = (self._buffer(name, "momentum", p) if opt.momentum
                      else (p, False))
        launch_1d(_kernel("sgd", p.dtype), p.size, p, g, buf, f(opt.weight_decay), f(opt.l1),
                  f(opt.momentum), f(1.0 - opt.dampening), f(-opt.lr), first,
                  bool(opt.nesterov))()

    def _adam(self, name: str, p: Any, g: Any, f: Any, t: int) -> None:
        opt = self.optimizer
        beta1, beta2 = opt.betas
        m, _ = self._buffer(name, "exp_avg", p)
        v, _ = self._buffer(name, "exp_avg_sq", p)
        vmax = self._buffer(name, "max_exp_avg_sq", p)[0] if opt.amsgrad else p
        decoupled = bool(getattr(opt, "_decoupled", False))
        decay = 1.0 - opt.lr * opt.weight_decay if decoupled and opt.weight_decay else 1.0
        wd = 0.0 if decoupled else opt.weight_decay
        bc1 = 1.0 - beta1 ** t
        bc2s = math.sqrt(1.0 - beta2 ** t)
        launch_1d(_kernel("adam", p.dtype), p.size, p, g, m, v, vmax, f(decay), f(wd),
                  f(opt.l1), f(1.0 - beta1), f(beta2), f(1.0 - beta2), f(bc2s), f(opt.eps),
                  f(-(opt.lr / bc1)), bool(opt.amsgrad))()

    def sync_to_host(self) -> None:
        """Copy the device state into the wrapped optimizer's NumPy state."""
        for name, bufs in self.state.items():
            self.optimizer.state[name] = {k: b.copy_to_host() for k, b in bufs.items()}


class DeviceTraining:
    """A cuda GradientStep whose parameters and optimizer state stay on the device:

        step = gc.value_and_grad(model, batch_size=64, backend="cuda")
        train = DeviceTraining(step, gc.optim.SGD(lr=0.1, momentum=0.9))
        for x, y in batches:
            loss = train(x, y)        # forward, backward, running statistics, update
        train.sync_to_host()          # model.parameters() and the optimizer state

    Per step only the batch goes up and the loss comes down. Between sync_to_host calls
    the model's host arrays are stale (and changes made to them are not seen)."""

    def __init__(self, step: Any, optimizer: Any) -> None:
        from graphcnn.backends.cuda.runner import CudaRunner
        runner = step.executable.runner
        if not isinstance(runner, CudaRunner):
            raise ValueError("DeviceTraining needs a step built with backend='cuda'")
        self.step, self.runner = step, runner
        self.optimizer = DeviceOptimizer(optimizer)
        runner.make_resident(step.parameters)
        self._input = step.executable.input_names[0]
        names = step.executable.output_names
        self._grads = [n[len("grad:"):] for n in names if n.startswith("grad:")]
        self._state = [n[len("state:"):] for n in names if n.startswith("state:")]

    def __call__(self, x: Any, target: Any) -> float:
        from graphcnn.backends.cuda.runner import run_device
        if self.step.loss == "cross_entropy" and not hasattr(target, "copy_to_host"):
            from graphcnn.runtime.gradient_step import check_labels
            check_labels(target, int(self.step.num_classes))
        out = run_device(self.step.executable, {self._input: x, "target": target},
                         copy=False)
        for name in self._state:  # running statistics: device to device
            self.runner.params[name].copy_to_device(out[f"state:{name}"])
        self.optimizer.step({n: self.runner.params[n] for n in self._grads},
                            {n: out[f"grad:{n}"] for n in self._grads})
        return float(out["loss"].copy_to_host().reshape(-1)[0])

    def sync_to_host(self) -> None:
        self.runner.download_parameters(self.step.parameters)
        self.optimizer.sync_to_host()


def _ptx(kind: str):
    def build(f: Any) -> tuple:
        arr = types.Array(f, 1, "C")
        sig: tuple
        if kind == "sgd":
            sig = (arr, arr, arr) + (f,) * 5 + (types.boolean, types.boolean)
        else:
            sig = (arr,) * 5 + (f,) * 9 + (types.boolean,)
        return (make_sgd(f) if kind == "sgd" else make_adam(f)).py_func, sig
    return build


PTX_EXAMPLES["optim sgd"] = _ptx("sgd")
PTX_EXAMPLES["optim adam"] = _ptx("adam")

"""A training step (value_and_grad + SGD, momentum 0.9) three ways, interleaved call by
call in one process, medians over the rounds: 'before', the step built with the conv
gradients' strategies as they were before the training-step kernels (the GEMMs and the
direct kernel only) and the NumPy SGD path; 'after', as built now; and PyTorch's
(forward, cross-entropy, backward, torch.optim.SGD). Interleaving keeps the three under
the same load on a shared machine, where one system's block of calls and another's can
see different neighbours.

    THREADS=2 python -m benchmarks.train_step_interleaved lenet5 64 80   # from the repo root
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

import numba

import graphcnn as gc
from graphcnn.backends.cpu import candidates, strategy
from graphcnn.bench.model_bench import SGD_OPTIONS, make_data, make_model, torch_system
from graphcnn.optim import sgd_kernel

GRAD_OPS = ("conv2d_weight_grad", "conv2d_input_grad")


def build_before(model: gc.Model, batch: int) -> gc.GradientStep:
    """The step with the conv gradients' GEMMs and direct kernel only."""
    saved = {op: strategy.STRATEGIES[op] for op in GRAD_OPS}
    old = candidates.OpStrategy(candidates._GRAD_GEMMS + (candidates._DIRECT,),
                                candidates._conv_key, candidates.default_algorithm)
    try:
        strategy.STRATEGIES.update({op: old for op in GRAD_OPS})
        return gc.value_and_grad(model, batch_size=batch, backend="cpu")
    finally:
        strategy.STRATEGIES.update(saved)


def main(name: str, batch: int, rounds: int) -> None:
    threads = int(os.environ.get("THREADS", "2"))
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    model = make_model(name, {})
    x, y = make_data(model, batch)
    torch_run = torch_system(name, {}, model, x, y, True, threads).run
    after = gc.value_and_grad(model, batch_size=batch, backend="cpu")
    before = build_before(model, batch)
    changed = sorted({(s.op, a.implementation, s.implementation) for s, a in
                      zip(before.executable.runner.steps, after.executable.runner.steps)
                      if s.implementation != a.implementation})
    print(f"steps that differ (op, after, before): {changed}")
    params = model.trainable_parameters()
    opt_after, opt_before = gc.optim.SGD(**SGD_OPTIONS), gc.optim.SGD(**SGD_OPTIONS)
    fits = sgd_kernel.fits

    def run_before() -> None:
        grads = before(x, y)[1]
        sgd_kernel.fits = lambda p, g: False   # the NumPy path
        try:
            opt_before.step(params, grads)
        finally:
            sgd_kernel.fits = fits

    def run_after() -> None:
        opt_after.step(params, after(x, y)[1])

    systems: dict[str, Callable[[], None]] = {"before": run_before, "after": run_after,
                                              "torch": torch_run}
    for run in systems.values():   # warm up
        run()
        run()
    times: dict[str, list[float]] = {k: [] for k in systems}
    for _ in range(rounds):
        for key, run in systems.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{name} b{batch} train, {threads} thread(s), {rounds} rounds interleaved: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items()))
    print(f"  before/torch {med['before'] / med['torch']:.2f}  after/torch "
          f"{med['after'] / med['torch']:.2f}  after/before {med['after'] / med['before']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

"""Synchronized batch norm on the cuda backend: the allreduce op is a host call between
launches (graphcnn/backends/cuda/kernels/collective.py). The simulator runs one kernel at
a time, so the ranks are not threads here (tests/test_sync_batchnorm.py has those, on
cpu and reference): a step built for 2 ranks runs with an allreduce function that
stands for a second rank holding the same batch, on cuda and on the reference."""
import sys
from pathlib import Path

import numpy as np

import graphcnn as gc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_sync_batchnorm import batch, bn_net, close  # noqa: E402


def test_a_step_for_two_ranks_on_cuda_equals_the_reference():
    X, y = batch(4)
    results = {}
    for backend in ("reference", "cuda"):
        model = bn_net()
        step = gc.value_and_grad(model, batch_size=4, backend=backend, sync_batchnorm=2)
        calls: list[tuple[int, ...]] = []

        def mean_with_a_twin(array: np.ndarray, calls: list = calls) -> np.ndarray:
            calls.append(array.shape)
            return (array + array) / 2   # the other rank's array is the same

        step.allreduce = mean_with_a_twin
        loss, grads = step(X.astype(np.float32), y)
        assert len(calls) == 8   # 2 batch norms x (2 forward + 2 backward)
        results[backend] = loss, grads, model.parameters()
    (loss, grads, params), (cuda_loss, cuda_grads, cuda_params) = \
        results["reference"], results["cuda"]
    assert abs(cuda_loss - loss) <= 1e-5 * abs(loss)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name in grads:
        close(cuda_grads[name], grads[name], 1e-5, scale)
    for name in params:   # the running variance's unbiased factor counts both ranks
        close(cuda_params[name], params[name], 1e-5)

"""The device optimizers against graphcnn.optim: the same parameters and state, bit for
bit, over several steps; and DeviceTraining against value_and_grad + the host optimizer."""
import numpy as np
import pytest
from numba import cuda

import graphcnn as gc
from graphcnn.backends.cuda.optim import DeviceOptimizer, DeviceTraining

OPTIMIZERS = [
    lambda: gc.optim.SGD(lr=0.1),
    lambda: gc.optim.SGD(lr=0.05, momentum=0.9, weight_decay=5e-4, l1=1e-3),
    lambda: gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda: gc.optim.SGD(lr=0.05, momentum=0.8, dampening=0.3),
    lambda: gc.optim.Adam(lr=1e-2, weight_decay=1e-3),
    lambda: gc.optim.Adam(lr=1e-2, amsgrad=True, l1=1e-3),
    lambda: gc.optim.AdamW(lr=1e-2, weight_decay=0.1),
    lambda: gc.optim.AdamW(lr=3e-3, betas=(0.8, 0.99), amsgrad=True),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_device_updates_equal_the_host_optimizer(make):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 7)).astype(np.float32),
              "b": rng.standard_normal(5).astype(np.float32)}
    params["b"][0] = 0.0
    host_opt, dev_opt = make(), DeviceOptimizer(make())
    host = {k: v.copy() for k, v in params.items()}
    dev = {k: cuda.to_device(v) for k, v in params.items()}
    for t in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        if t == 1:
            host_opt.lr = dev_opt.optimizer.lr = host_opt.lr * 0.5  # a schedule's change
        host_opt.step(host, grads)
        dev_opt.step(dev, {k: cuda.to_device(g) for k, g in grads.items()})
        for k in params:
            np.testing.assert_array_equal(dev[k].copy_to_host(), host[k], err_msg=f"{k} {t}")
    dev_opt.sync_to_host()
    arrays, scalars = dev_opt.optimizer.state_dict()
    want_arrays, want_scalars = host_opt.state_dict()
    assert scalars == want_scalars
    assert sorted(arrays) == sorted(want_arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], want_arrays[k], err_msg=k)


def test_device_training_equals_host_training():
    from test_graphs import _tiny_model
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    Y = np.array([0, 4])
    model = _tiny_model()
    start = {k: v.copy() for k, v in model.parameters().items()}

    step = gc.value_and_grad(model, batch_size=2, backend="cuda")
    host_opt = gc.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3)
    step.executable._seeds = iter(range(100))
    host_losses = []
    for _ in range(2):
        loss, grads = step(X, Y)
        host_opt.step(model.trainable_parameters(), grads)
        host_losses.append(loss)
    host_after = {k: v.copy() for k, v in model.parameters().items()}

    model.load_parameters(start)
    step.executable._seeds = iter(range(100))
    train = DeviceTraining(step, gc.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3))
    losses = [train(X, Y) for _ in range(2)]
    train.sync_to_host()
    assert losses == pytest.approx(host_losses, rel=1e-6)
    for k, v in model.parameters().items():
        np.testing.assert_allclose(v, host_after[k], rtol=1e-6, atol=1e-7, err_msg=k)

"""One training step for any batch size (gc.value_and_grad(batch_size=None, max_batch=N)):
at every batch b it returns what a step built at b returns (loss, every gradient, the
batch-norm running statistics), for each loss; the Trainer trains on the last, smaller
batch with it; a graph holding a batch-size constant is refused in one line."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.runtime.dynamic_batch import DynamicBatchError
from graphcnn.train.trainer import Callback, Trainer

SHAPE = (2, 6, 6)


def classifier(outputs: int = 4) -> gc.Model:
    """Conv, batch norm (batch statistics in training), dropout p=0 (off), linear."""
    x = gc.Input(SHAPE, name="x")
    h = nn.ReLU()(nn.BatchNorm2d(3)(nn.Conv2d(2, 3, 3, padding=1)(x)))
    h = nn.Flatten()(nn.Dropout(0.0)(nn.MaxPool2d(2)(h)))
    return gc.Model(x, nn.Linear(3 * 9, outputs)(h), name="classifier")


def segmenter(classes: int = 3) -> gc.Model:
    x = gc.Input(SHAPE, name="x")
    h = nn.ReLU()(nn.BatchNorm2d(4)(nn.Conv2d(2, 4, 3, padding=1)(x)))
    return gc.Model(x, nn.Conv2d(4, classes, 1)(h), name="segmenter")


def data(n: int, loss: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 10 * n)
    x = rng.standard_normal((n, *SHAPE)).astype(np.float32)
    if loss == "cross_entropy":
        return x, rng.integers(0, 4, n)
    if loss in ("pixel_cross_entropy", "soft_dice"):
        return x, rng.integers(0, 3, (n, *SHAPE[1:]))
    if loss == "bce_with_logits":
        return x, rng.integers(0, 2, (n, 4)).astype(np.float32)
    return x, rng.standard_normal((n, 4)).astype(np.float32)   # mse, l1, smooth_l1


LOSSES = ["cross_entropy", "mse", "l1", "smooth_l1", "bce_with_logits",
          "pixel_cross_entropy", "soft_dice"]


def close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("loss", LOSSES)
def test_any_batch_step_equals_the_step_built_at_each_batch(loss, backend):
    model = segmenter() if loss in ("pixel_cross_entropy", "soft_dice") else classifier()
    start = {k: v.copy() for k, v in model.parameters().items()}
    step = gc.value_and_grad(model, loss, batch_size=None, max_batch=8, backend=backend)
    assert step.executable.max_batch == 8
    for b in (1, 3, 8):
        x, y = data(b, loss)
        model.load_parameters(start)
        value, grads = step(x, y)
        running = {k: v.copy() for k, v in model.parameters().items()}
        model.load_parameters(start)
        fixed = gc.value_and_grad(model, loss, batch_size=b, backend=backend)
        want, want_grads = fixed(x, y)
        assert value == pytest.approx(want, rel=1e-5), (loss, b)
        assert sorted(grads) == sorted(want_grads)
        for name in want_grads:
            close(grads[name], want_grads[name], f"{loss} at batch {b}: {name}")
        for name, array in model.parameters().items():   # the running statistics too
            close(running[name], array, f"{loss} at batch {b}: {name} after the step")

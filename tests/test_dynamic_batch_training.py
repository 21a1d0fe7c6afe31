"""One training step for any batch size (gc.value_and_grad(batch_size=None, max_batch=N)):
at every batch b it returns what a step built at b returns (loss, every gradient, the
batch-norm running statistics), for each loss; the Trainer trains on the last, smaller
batch with it; a graph holding a batch-size constant is refused in one line."""
import numpy as np
import pytest
from op_check import check_op

import graphcnn as gc
from graphcnn import nn
from graphcnn.ops.norm_running import running_var_update_ref
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
    """A U-Net's skip connection: a concat, whose VJP slices the whole batch axis."""
    x = gc.Input(SHAPE, name="x")
    h = nn.ReLU()(nn.BatchNorm2d(4)(nn.Conv2d(2, 4, 3, padding=1)(x)))
    return gc.Model(x, nn.Conv2d(6, classes, 1)(gc.concat([h, x])), name="segmenter")


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


class Batches(Callback):
    """The size of every batch fit trains on."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_batch_end(self, trainer, epoch, batch, logs) -> None:
        self.sizes.append(int(logs["batch_size"]))


def fit(model: gc.Model, drop_last: bool, n: int = 10, backend: str = "reference",
        loss="cross_entropy") -> tuple[Trainer, list[int]]:
    x, y = data(n, loss if isinstance(loss, str) else "mse", seed=1)
    seen = Batches()
    trainer = Trainer(model, loss=loss, optimizer=gc.optim.SGD(lr=0.1), backend=backend,
                      drop_last=drop_last, train_accuracy="none")
    trainer.fit(x, y, epochs=1, batch_size=4, verbose=False, callbacks=[seen])
    return trainer, seen.sizes


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_trainer_trains_on_the_last_smaller_batch_as_a_manual_loop_does(backend):
    model = classifier()
    start = {k: v.copy() for k, v in model.parameters().items()}
    trainer, sizes = fit(model, drop_last=False, backend=backend)
    assert sizes == [4, 4, 2] and sum(sizes) == 10   # every sample, three steps
    assert len(trainer._steps) == 1                  # one step for the three
    trained = {k: v.copy() for k, v in model.parameters().items()}

    model.load_parameters(start)   # the same epoch by hand: steps built at 4, 4 and 2
    x, y = data(10, "cross_entropy", seed=1)
    order = np.random.default_rng(0).permutation(10)   # the trainer's seed 0
    optimizer = gc.optim.SGD(lr=0.1)
    for idx in (order[:4], order[4:8], order[8:]):
        step = gc.value_and_grad(model, batch_size=len(idx), backend=backend)
        _, grads = step(x[idx], y[idx])
        optimizer.step(model.trainable_parameters(), grads)
    for name, array in model.parameters().items():
        close(trained[name], array, name)


def test_drop_last_takes_only_the_full_batches():
    trainer, sizes = fit(classifier(), drop_last=True)
    assert sizes == [4, 4]
    assert [step.executable.max_batch for step in trainer._steps.values()] == [None]


def test_without_a_partial_batch_the_step_is_built_for_its_batch_size():
    trainer, sizes = fit(classifier(), drop_last=False, n=8)
    assert sizes == [4, 4]
    assert [step.executable.max_batch for step in trainer._steps.values()] == [None]


def test_a_batch_of_one_is_dropped_where_batch_norm_needs_two_values_per_channel():
    x = gc.Input((5,))
    h = nn.ReLU()(nn.BatchNorm1d(6)(nn.Linear(5, 6)(x)))
    model = gc.Model(x, nn.Linear(6, 4)(h))
    step = gc.value_and_grad(model, batch_size=None, max_batch=4, backend="reference")
    with pytest.raises(DynamicBatchError, match="more than 1 value per channel"):
        step(np.ones((1, 5), np.float32), np.zeros(1, np.int64))
    rng = np.random.default_rng(0)
    seen = Batches()
    trainer = Trainer(model, backend="cpu", train_accuracy="none")
    trainer.fit(rng.standard_normal((9, 5)).astype(np.float32), rng.integers(0, 4, 9),
                epochs=1, batch_size=4, verbose=False, callbacks=[seen])
    assert seen.sizes == [4, 4]   # 9 = 4 + 4 + 1: the one is dropped
    assert next(iter(trainer._steps.values())).executable.runner.smallest_batch == 2


def mean_over_the_batch_as_a_constant(graph, prediction, target):
    """A loss function that bakes 1/B into the graph: it holds at one batch size only."""
    total = graph.add("mse", [prediction, target], reduction="sum")
    scale = np.asarray(1.0 / prediction.shape[0], np.float32)
    return graph.add("mul", [total, graph.constant(scale)])


def test_a_batch_size_constant_is_refused_and_the_trainer_drops_the_last_batch():
    model = classifier()
    with pytest.raises(DynamicBatchError) as caught:
        gc.value_and_grad(model, mean_over_the_batch_as_a_constant, batch_size=None,
                          max_batch=4, backend="reference")
    message = str(caught.value)
    assert "\n" not in message and "node constant" in message
    assert "depends on the batch size" in message and "give a batch_size" in message
    with pytest.warns(RuntimeWarning, match="last partial batch of each epoch is dropped") \
            as warned:
        _, sizes = fit(model, drop_last=False, loss=mean_over_the_batch_as_a_constant)
    assert sizes == [4, 4]
    assert all("\n" not in str(w.message) for w in warned)


def test_refusals_name_the_backend_and_the_arguments():
    with pytest.raises(ValueError, match="on cuda, give a batch_size"):
        gc.value_and_grad(classifier(), batch_size=None, backend="cuda")
    with pytest.raises(ValueError, match="give one of batch_size and max_batch"):
        gc.value_and_grad(classifier(), batch_size=4, max_batch=8, backend="reference")
    with pytest.raises(DynamicBatchError, match="synchronized batch norm"):
        gc.value_and_grad(classifier(), batch_size=None, sync_batchnorm=2,
                          backend="reference")


def test_a_saved_any_batch_step_loads_as_one(tmp_path):
    model = classifier()
    step = gc.value_and_grad(model, batch_size=None, max_batch=8, backend="cpu")
    gc.save(step, tmp_path / "step.gcnn")
    loaded = gc.load(tmp_path / "step.gcnn")
    assert loaded.executable.max_batch == 8
    for b in (3, 8, 1):
        x, y = data(b, "cross_entropy")
        value, grads = step(x, y)              # both update their running statistics:
        loaded_value, loaded_grads = loaded(x, y)   # the model's and the artifact's
        assert loaded_value == pytest.approx(value, rel=1e-6)
        for name in grads:
            close(loaded_grads[name], grads[name], f"batch {b}: {name}")
    for name, array in model.parameters().items():
        close(loaded.parameters[name], array, name)


def test_running_var_update_counts_the_batch_it_runs_at():
    rng = np.random.default_rng(0)
    running = rng.uniform(0.5, 2, 3).astype(np.float32)
    var = rng.uniform(0.5, 2, 3).astype(np.float32)
    for n, count in ((2, 2 * 16), (5, 5 * 16)):   # M = batch x spatial, per channel
        x = rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
        out = running_var_update_ref(running, var, x, 0.1, 1)
        want = running * np.float32(0.9) + var * np.float32(0.1 * count / (count - 1))
        np.testing.assert_array_equal(out, want)
        check_op("running_var_update", [running, var, x], {"momentum": 0.1})


def test_graphcnn_train_drop_last(tmp_path, monkeypatch, capsys):
    from graphcnn.cli import main
    path = tmp_path / "user_model.py"
    path.write_text("import graphcnn as gc\nfrom graphcnn import nn\n\n"
                    "def small():\n"
                    "    x = gc.Input((1, 32, 32))\n"
                    "    return gc.Model(x, nn.Linear(1024, 10)(gc.flatten(x)))\n")
    runs = []
    fit = Trainer.fit

    def recorded(self, *args, **kwargs):
        runs.append(Batches())
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), runs[-1]]
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", recorded)
    for flag in ([], ["--drop-last"]):
        code = main(["train", f"{path}:small", "--epochs", "1", "--batch-size", "500",
                     "--backend", "reference", "--quiet", *flag])
        assert code == 0, capsys.readouterr().err
    every, dropped = runs[0].sizes, runs[1].sizes   # digits: 1,437 training samples
    assert every[:-1] == [500] * (len(every) - 1) and 0 < every[-1] < 500
    assert dropped == [500] * (len(every) - 1)

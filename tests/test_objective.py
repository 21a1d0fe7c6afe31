"""Losses over several outputs, targets by output name, and the metrics evaluate picks by
task (graphcnn/objective.py), through value_and_grad and the Trainer."""
from __future__ import annotations

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn


def two_headed(seed: int = 0) -> gc.Model:
    gc.manual_seed(seed)
    x = gc.Input((6,), name="x")
    h = gc.relu(nn.Linear(6, 16)(x))
    return gc.Model(x, {"kind": nn.Linear(16, 3)(h), "size": nn.Linear(16, 2)(h)})


def data(n: int, seed: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    kind = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    size = np.stack([X[:, 2] + X[:, 3], X[:, 4] * 2.0], axis=1).astype(np.float32)
    return X, {"kind": kind, "size": size}


def test_model_outputs_are_named_by_a_dict() -> None:
    model = two_headed()
    assert model.output_names == ["kind", "size"]
    assert model.graph(2).output_names[:2] == ["kind", "size"]


def test_the_step_minimizes_the_weighted_sum_of_the_terms() -> None:
    model = two_headed()
    X, y = data(4)
    both = gc.value_and_grad(model, {"kind": "cross_entropy", "size": "mse"}, batch_size=4,
                             backend="reference", loss_weights={"size": 0.25})
    loss, grads = both(X, y)
    # each term alone: a model with one of the heads
    parts = []
    for name, term in (("kind", "cross_entropy"), ("size", "mse")):
        alone = gc.Model(model.inputs, {name: model.outputs[model.output_names.index(name)]})
        parts.append(gc.value_and_grad(alone, term, batch_size=4, backend="reference")(X, y[name]))
    assert loss == pytest.approx(parts[0][0] + 0.25 * parts[1][0], rel=1e-6)
    shared = "linear_0.weight"
    np.testing.assert_allclose(grads[shared], parts[0][1][shared] + 0.25 * parts[1][1][shared],
                               rtol=1e-5, atol=1e-7)


def test_the_trainer_fits_several_outputs_and_reports_custom_metrics() -> None:
    model = two_headed()
    X, y = data(256)
    Xv, yv = data(64, seed=2)
    seen = {}

    def kind_accuracy(predictions: dict, targets: dict) -> dict:
        seen["keys"] = sorted(predictions), sorted(targets)
        return {"kind_accuracy": float((predictions["kind"].argmax(1) == targets["kind"]).mean())}

    trainer = gc.Trainer(model, loss={"kind": "cross_entropy", "size": gc.losses.Loss("mse")},
                         loss_weights={"size": 0.5}, metrics=kind_accuracy,
                         optimizer=gc.optim.Adam(lr=0.01), backend="cpu")
    history = trainer.fit(X, y, epochs=8, batch_size=32, validation_data=(Xv, yv),
                          verbose=False)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert "accuracy" not in history.history   # not a classifier: no training accuracy
    assert history.history["val_kind_accuracy"][-1] > 0.8
    assert seen["keys"] == (["kind", "size"], ["kind", "size"])
    result = trainer.evaluate(Xv, yv)
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    predicted = trainer.predict(Xv)
    assert predicted["kind"].shape == (64, 3) and predicted["size"].shape == (64, 2)


def test_regression_is_evaluated_with_regression_metrics() -> None:
    gc.manual_seed(0)
    x = gc.Input((3,))
    model = gc.Model(x, nn.Linear(3, 1)(x))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3   # (N,) targets, (N, 1) output
    trainer = gc.Trainer(model, loss="mse", optimizer=gc.optim.SGD(lr=0.1), backend="cpu")
    history = trainer.fit(X, y, epochs=30, batch_size=32, validation_data=(X, y),
                          verbose=False)
    result = trainer.evaluate(X, y)
    assert set(result) == {"loss", "mae", "rmse", "r2"}
    assert result["r2"] > 0.99 and result["rmse"] == pytest.approx(result["loss"] ** 0.5)
    assert history.history["val_r2"][-1] == pytest.approx(result["r2"])


def test_target_mistakes_are_one_line_errors_naming_the_output() -> None:
    model = two_headed()
    X, y = data(8)
    trainer = gc.Trainer(model, loss={"kind": "cross_entropy", "size": "mse"})
    with pytest.raises(ValueError, match="no targets for outputs \\['size'\\]"):
        trainer.fit(X, {"kind": y["kind"]}, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="output 'size' has shape \\(8, 3\\)"):
        trainer.fit(X, {"kind": y["kind"], "size": np.zeros((8, 3))}, epochs=1,
                    verbose=False)
    with pytest.raises(ValueError, match="labels of output 'kind' \\[7\\]"):
        trainer.fit(X, {"kind": np.full(8, 7), "size": y["size"]}, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="give y as a dict"):
        trainer.fit(X, y["size"], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="outputs \\['box'\\] the model does not have"):
        gc.Trainer(model, loss={"box": "mse"})
    with pytest.raises(ValueError, match="loss_weights names \\['size'\\]"):
        gc.Trainer(model, loss={"kind": "cross_entropy"}, loss_weights={"size": 2.0})
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        gc.Trainer(model, loss="hinge")


def test_class_labels_for_a_loss_on_scores_become_one_hot_rows() -> None:
    gc.manual_seed(0)
    x = gc.Input((4,))
    model = gc.Model(x, nn.Linear(4, 3)(x))
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    labels = X[:, :3].argmax(axis=1)
    trainer = gc.Trainer(model, loss="mse", optimizer=gc.optim.SGD(lr=0.2), backend="cpu")
    history = trainer.fit(X, labels, epochs=20, batch_size=16, verbose=False)
    assert history.history["accuracy"][-1] > 0.8
    assert trainer.evaluate(X, labels)["accuracy"] > 0.8

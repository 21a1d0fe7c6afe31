"""Trainer on small MLPs over the 8x8 digits: the loop, evaluation, errors, schedules."""

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.train.trainer import Callback, Trainer, cross_entropy_from_logits

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits64():
    (X, y), (Xt, yt) = gc.data.load_digits(size=8)
    return (X.reshape(len(X), 64)[:400], y[:400]), (Xt.reshape(len(Xt), 64)[:150], yt[:150])


def mlp(seed=0, hidden=16, classes=10):
    gc.manual_seed(seed)
    x = gc.Input((64,), name="x")
    h = gc.tanh(nn.Linear(64, hidden, name="fc1")(x))
    return gc.Model(inputs=x, outputs=nn.Linear(hidden, classes, name="fc2")(h), name="mlp")


def sgd(lr=0.1):
    return gc.optim.SGD(lr=lr, momentum=0.9)


class Counter(Callback):
    def __init__(self):
        self.batches, self.epochs, self.sizes = 0, [], set()

    def on_batch_end(self, trainer, epoch, batch, logs):
        self.batches += 1
        self.sizes.add(logs["batch_size"])

    def on_epoch_end(self, trainer, epoch, logs):
        self.epochs.append(epoch)


def test_fit_learns_and_records_history(digits64):
    (X, y), (Xt, yt) = digits64
    trainer = Trainer(mlp(), optimizer=sgd())
    history = trainer.fit(X, y, epochs=4, batch_size=32, validation_data=(Xt, yt), verbose=False)
    assert history.epoch == [0, 1, 2, 3]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 4 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.7
    assert history.history["lr"] == [0.1] * 4
    assert trainer.history is history


def test_without_validation_there_are_no_val_keys(digits64):
    (X, y), _ = digits64
    history = Trainer(mlp(), optimizer=sgd()).fit(X, y, epochs=1, batch_size=50, verbose=False)
    assert set(history.history) == {"loss", "accuracy", "lr"}


def test_last_partial_batch_drop_last_and_small_datasets(digits64):
    (X, y), _ = digits64
    counter = Counter()   # 100 = 3 x 32 + 4: the last, smaller batch trains too
    Trainer(mlp(), optimizer=sgd()).fit(X[:100], y[:100], epochs=2, batch_size=32,
                                        verbose=False, callbacks=[counter])
    assert counter.batches == 2 * 4 and counter.sizes == {32, 4}
    counter = Counter()
    Trainer(mlp(), optimizer=sgd(), drop_last=True).fit(
        X[:100], y[:100], epochs=2, batch_size=32, verbose=False, callbacks=[counter])
    assert counter.batches == 2 * (100 // 32) and counter.sizes == {32}
    counter = Counter()
    Trainer(mlp(), optimizer=sgd()).fit(X[:10], y[:10], epochs=1, batch_size=32,
                                        verbose=False, callbacks=[counter])
    assert counter.batches == 1 and counter.sizes == {10}


def test_same_seed_same_run_and_different_seed_differs(digits64):
    (X, y), _ = digits64
    runs = [Trainer(mlp(), optimizer=sgd(), seed=s).fit(X, y, epochs=2, batch_size=32,
                                                        verbose=False).history["loss"]
            for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_evaluate_covers_every_sample(digits64):
    (X, y), (Xt, yt) = digits64
    model = mlp()
    trainer = Trainer(model, optimizer=sgd())
    trainer.fit(X, y, epochs=1, batch_size=32, verbose=False)
    n = 101  # not a multiple of the batch size: the last batch is padded
    logits = trainer.predict_logits(Xt[:n])
    expected = gc.compile(model, batch_size=n, backend="reference")(Xt[:n])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    result = trainer.evaluate(Xt[:n], yt[:n])
    assert set(result) >= {"accuracy", "precision", "recall", "f1", "per_class",
                           "confusion_matrix", "loss"}
    cm = result["confusion_matrix"]
    assert cm.shape == (10, 10) and cm.sum() == n
    assert result["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert result["accuracy"] == pytest.approx((expected.argmax(1) == yt[:n]).mean())
    assert result["loss"] == pytest.approx(cross_entropy_from_logits(expected, yt[:n]), rel=1e-4)
    assert len(result["per_class"]["f1"]) == 10 and sum(result["per_class"]["support"]) == n


def test_cross_entropy_from_logits_is_stable():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0], [3.0, 1.0]])
    labels = np.array([0, 1, 1])
    loss = cross_entropy_from_logits(logits, labels)
    expected = (0.0 + 1000.0 + np.log1p(np.exp(2.0))) / 3
    assert loss == pytest.approx(expected)


def test_labels_out_of_range_name_the_batch(digits64):
    (X, y), _ = digits64
    y = y[:64].copy()
    y[40] = 12
    trainer = Trainer(mlp(), optimizer=sgd(), seed=0)
    with pytest.raises(ValueError, match=r"epoch 1, batch \d+: labels \[12\].*indices \[40\]"):
        trainer.fit(X[:64], y, epochs=1, batch_size=16, verbose=False)
    with pytest.raises(ValueError, match="outside"):
        trainer.evaluate(X[:64], y)


def test_bad_inputs(digits64):
    (X, y), _ = digits64
    trainer = Trainer(mlp(), optimizer=sgd())
    with pytest.raises(ValueError, match="shape"):
        trainer.fit(X.reshape(-1, 1, 8, 8), y, verbose=False)
    with pytest.raises(ValueError, match="samples"):
        trainer.fit(X, y[:-1], verbose=False)
    with pytest.raises(ValueError, match="integer class labels"):
        trainer.fit(X, y.astype(np.float32), verbose=False)
    with pytest.raises(ValueError, match="on_nonfinite"):
        Trainer(mlp(), on_nonfinite="ignore")


def test_nonfinite_loss_raises_naming_epoch_and_batch(digits64):
    (X, y), _ = digits64
    X = X.copy()
    X[5] = np.inf  # the sample lands in some batch of the first epoch
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch \d+"):
        Trainer(mlp(), optimizer=sgd()).fit(X, y, epochs=1, batch_size=32, verbose=False)


@pytest.mark.parametrize("policy", ["skip", "warn"])
def test_nonfinite_loss_can_be_skipped(digits64, policy):
    (X, y), _ = digits64
    X = X.copy()
    X[5] = np.inf
    trainer = Trainer(mlp(), optimizer=sgd(), on_nonfinite=policy)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        history = trainer.fit(X, y, epochs=1, batch_size=32, verbose=False)
    assert all(np.isfinite(v).all() for v in trainer.model.parameters().values())
    assert np.isfinite(history.history["loss"][0])


def test_step_schedule_changes_lr_per_epoch(digits64):
    (X, y), _ = digits64
    opt = sgd(0.1)
    trainer = Trainer(mlp(), optimizer=opt, schedule=gc.optim.StepLR(step_size=2, gamma=0.5))
    history = trainer.fit(X, y, epochs=5, batch_size=64, verbose=False)
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.1, 0.05, 0.05, 0.025])


def test_plateau_schedule_gets_the_validation_loss(digits64, monkeypatch):
    (X, y), (Xt, yt) = digits64
    sched = gc.optim.ReduceLROnPlateau()
    seen = []
    monkeypatch.setattr(sched, "step", lambda metric: seen.append(metric))
    trainer = Trainer(mlp(), optimizer=sgd(), schedule=sched)
    history = trainer.fit(X, y, epochs=2, batch_size=64, validation_data=(Xt, yt), verbose=False)
    assert seen == history.history["val_loss"]


def test_cyclic_schedule_steps_per_batch(digits64):
    (X, y), _ = digits64
    opt = sgd(0.1)
    sched = gc.optim.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=3)
    assert sched.per_batch
    lrs = []

    class Record(Callback):
        def on_batch_end(self, trainer, epoch, batch, logs):
            lrs.append(trainer.optimizer.lr)

    Trainer(mlp(), optimizer=opt, schedule=sched).fit(X[:256], y[:256], epochs=1, batch_size=32,
                                                      verbose=False, callbacks=[Record()])
    assert len(set(np.round(lrs, 8))) > 2  # the rate moved within the epoch


def test_augment_and_normalize_are_applied(digits64):
    (X, y), _ = digits64
    calls = []

    def augment(batch, rng):
        calls.append(batch.shape)
        return batch + rng.normal(0, 0.01, batch.shape).astype(np.float32)

    from graphcnn.train.normalize import Normalize
    trainer = Trainer(mlp(), optimizer=sgd(), augment=augment, normalize=Normalize())
    trainer.fit(X, y, epochs=1, batch_size=100, verbose=False)
    assert calls == [(100, 64)] * 4
    assert callable(trainer.normalize)


def test_stop_training_from_a_callback(digits64):
    (X, y), _ = digits64

    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                trainer.stop_training = True

    history = Trainer(mlp(), optimizer=sgd()).fit(X, y, epochs=10, batch_size=64,
                                                  verbose=False, callbacks=[Stop()])
    assert history.epoch == [0, 1]


def test_running_train_accuracy_mode(digits64):
    (X, y), _ = digits64
    history = Trainer(mlp(), optimizer=sgd(), train_accuracy="batch").fit(
        X, y, epochs=2, batch_size=32, verbose=False)
    assert 0.0 < history.history["accuracy"][0] <= 1.0
    history = Trainer(mlp(), optimizer=sgd(), train_accuracy="none").fit(
        X, y, epochs=1, batch_size=32, verbose=False)
    assert np.isnan(history.history["accuracy"][0])


def test_progress_bar_shows_loss_and_accuracy(digits64, capsys):
    (X, y), _ = digits64
    Trainer(mlp(), optimizer=sgd()).fit(X, y, epochs=1, batch_size=64, verbose=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "accuracy=" in err


class Interrupt(Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, trainer, epoch, batch, logs):
        if (epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_interrupt_and_resume_matches_an_uninterrupted_run(digits64, tmp_path):
    (X, y), (Xt, yt) = digits64

    def trainer(path):
        return Trainer(mlp(seed=3), optimizer=gc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
                       schedule=gc.optim.StepLR(step_size=1, gamma=0.7), checkpoint=path,
                       augment=lambda b, rng: b + rng.normal(0, 0.01, b.shape).astype(b.dtype),
                       seed=5)

    straight = trainer(tmp_path / "a")
    h1 = straight.fit(X, y, epochs=4, batch_size=32, validation_data=(Xt, yt), verbose=False)
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "b").fit(X, y, epochs=4, batch_size=32, validation_data=(Xt, yt),
                                    verbose=False, callbacks=[Interrupt(2, 5)])
    resumed = trainer(tmp_path / "b")  # a fresh process would start like this
    counter = Counter()
    h2 = resumed.fit(X, y, epochs=4, batch_size=32, validation_data=(Xt, yt), verbose=False,
                     callbacks=[counter])
    assert counter.epochs == [2, 3]  # continued after the last saved epoch
    assert h2.epoch == h1.epoch and h2.history == h1.history
    for name, value in straight.model.parameters().items():
        np.testing.assert_array_equal(resumed.model.parameters()[name], value)
    # a finished run resumed again trains nothing more
    again = trainer(tmp_path / "b")
    assert again.fit(X, y, epochs=4, batch_size=32, verbose=False).history == h1.history


def test_resume_false_starts_over(digits64, tmp_path):
    (X, y), _ = digits64
    Trainer(mlp(), optimizer=sgd(), checkpoint=tmp_path / "c").fit(X, y, epochs=2, batch_size=64,
                                                                   verbose=False)
    counter = Counter()
    Trainer(mlp(), optimizer=sgd(), checkpoint=tmp_path / "c").fit(
        X, y, epochs=2, batch_size=64, verbose=False, resume=False, callbacks=[counter])
    assert counter.epochs == [0, 1]


def test_checkpoint_for_another_model_is_a_clear_error(digits64, tmp_path):
    (X, y), _ = digits64
    Trainer(mlp(hidden=16), optimizer=sgd(), checkpoint=tmp_path / "m").fit(
        X, y, epochs=1, batch_size=64, verbose=False)
    with pytest.raises(ValueError, match="does not fit model"):
        Trainer(mlp(hidden=8), optimizer=sgd(), checkpoint=tmp_path / "m").fit(
            X, y, epochs=2, batch_size=64, verbose=False)


def test_truncated_checkpoint_is_a_clear_error(digits64, tmp_path):
    (X, y), _ = digits64
    Trainer(mlp(), optimizer=sgd(), checkpoint=tmp_path / "t").fit(
        X, y, epochs=1, batch_size=64, verbose=False)
    ckpt = tmp_path / "t.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ValueError, match="t.ckpt"):
        Trainer(mlp(), optimizer=sgd(), checkpoint=tmp_path / "t").fit(
            X, y, epochs=2, batch_size=64, verbose=False)

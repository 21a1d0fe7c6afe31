"""Training guards: settings given when resuming override the checkpoint's, a loss that
diverges while finite is reported (and can stop the run), and a non-finite loss or
gradient is named precisely. (Batch norm with one value per channel: test_norm_ops.py.)"""
import warnings

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.train.guards import (
    DivergenceMonitor,
    DivergenceWarning,
    NonFiniteLossError,
    nonfinite_cause,
)
from graphcnn.train.trainer import Callback, Trainer

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits64():
    (X, y), _ = gc.data.load_digits(size=8)
    return X.reshape(len(X), 64)[:256], y[:256]


def mlp(seed=0):
    gc.manual_seed(seed)
    x = gc.Input((64,), name="x")
    h = gc.tanh(nn.Linear(64, 16, name="fc1")(x))
    return gc.Model(inputs=x, outputs=nn.Linear(16, 10, name="fc2")(h), name="mlp")


class Resumed(Callback):
    def __init__(self):
        self.calls = []

    def on_resume(self, trainer, epochs_done, changes):
        self.calls.append((epochs_done, list(changes)))


# ---- resuming -----------------------------------------------------------------------------

def test_resume_keeps_the_checkpoints_settings_unless_overridden(digits64, tmp_path):
    X, y = digits64
    ckpt = str(tmp_path / "run")
    Trainer(mlp(), optimizer=gc.optim.SGD(lr=0.05, momentum=0.9), checkpoint=ckpt).fit(
        X, y, epochs=1, batch_size=64, verbose=False)

    # no overrides: the checkpoint's lr and momentum win over the new optimizer's (as torch)
    kept = Trainer(mlp(), optimizer=gc.optim.SGD(lr=0.001, momentum=0.0), checkpoint=ckpt)
    history = kept.fit(X, y, epochs=2, batch_size=64, verbose=False)
    assert history.history["lr"] == [0.05, 0.05] and kept.optimizer.momentum == 0.9
    assert kept.resume_changes == []

    # overrides: applied after the checkpoint is restored, and reported
    heard = Resumed()
    trainer = Trainer(mlp(), optimizer=gc.optim.SGD(lr=0.05, momentum=0.9),
                      checkpoint=str(tmp_path / "again"),
                      resume_overrides={"lr": 0.001, "momentum": 0.0})
    trainer.fit(X, y, epochs=1, batch_size=64, verbose=False)   # nothing to resume yet
    assert trainer.resume_changes == [] and trainer.optimizer.lr == 0.05
    history = trainer.fit(X, y, epochs=2, batch_size=64, verbose=False, callbacks=[heard])
    assert trainer.resume_changes == [("lr", 0.05, 0.001), ("momentum", 0.9, 0.0)]
    assert heard.calls == [(1, trainer.resume_changes)]
    assert history.history["lr"] == [0.05, 0.001] and trainer.optimizer.momentum == 0.0


def test_an_lr_override_restarts_an_epoch_schedule_from_the_new_base(digits64, tmp_path):
    X, y = digits64
    ckpt = str(tmp_path / "run")

    def trainer(overrides=None):
        return Trainer(mlp(), optimizer=gc.optim.SGD(lr=0.1), checkpoint=ckpt,
                       schedule=gc.optim.StepLR(step_size=1, gamma=0.5),
                       resume_overrides=overrides)

    trainer().fit(X, y, epochs=2, batch_size=64, verbose=False)
    history = trainer({"lr": 0.01}).fit(X, y, epochs=3, batch_size=64, verbose=False)
    # epochs 1, 2 at 0.1 * 0.5**t; epoch 3 (t = 2) from the new base: 0.01 * 0.25
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.0025])


def test_bad_overrides_are_errors(tmp_path):
    ckpt = str(tmp_path / "run")
    for overrides, message in (({"learning_rate": 0.1}, "'learning_rate' is not"),
                               ({"momentum": 0.5}, "Adam has no setting 'momentum'")):
        with pytest.raises(ValueError, match=message):   # found when built, not resuming
            Trainer(mlp(), optimizer=gc.optim.Adam(lr=0.01), checkpoint=ckpt,
                    resume_overrides=overrides)


# ---- divergence ---------------------------------------------------------------------------

def test_finite_divergence_is_reported_and_can_stop_the_run(digits64, tmp_path):
    X, y = digits64
    seen = []

    class Batches(Callback):
        def on_batch_end(self, trainer, epoch, batch, logs):
            seen.append(logs["loss"])

    def run(policy, **kw):
        seen.clear()
        trainer = Trainer(mlp(), optimizer=gc.optim.SGD(lr=1e4), on_divergence=policy, **kw)
        history = trainer.fit(X, y, epochs=2, batch_size=32, verbose=False,
                              callbacks=[Batches()])
        return trainer, history

    with pytest.warns(DivergenceWarning, match=r"training diverged at epoch 1, batch \d+: "
                      r"the loss .* over 10x its start .*Trainer\(on_divergence='stop'\)"):
        trainer, history = run("warn")
    assert len(history) == 2 and trainer.diverged is None and np.isfinite(seen).all()
    assert max(seen) > 10 * seen[0]     # the case: finite, and far above its start

    ckpt = tmp_path / "run"
    with pytest.warns(DivergenceWarning, match="stopping the run"):
        trainer, history = run("stop", checkpoint=str(ckpt))
    assert trainer.diverged and "training diverged at epoch 1" in trainer.diverged
    assert len(history) == 1 and len(seen) < len(X) // 32   # stopped within the epoch
    assert not list(tmp_path.glob("run*"))   # no checkpoint of the diverged parameters

    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        trainer, history = run("ignore")
    assert len(history) == 2


@pytest.mark.parametrize("optimizer", [lambda: gc.optim.SGD(lr=0.1, momentum=0.9),
                                       lambda: gc.optim.Adam(lr=0.01)])
def test_healthy_training_raises_no_divergence_alarm(digits64, optimizer):
    X, y = digits64
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        history = Trainer(mlp(), optimizer=optimizer(), on_divergence="stop").fit(
            X, y, epochs=3, batch_size=32, verbose=False)
    assert len(history) == 3 and history.history["loss"][-1] < history.history["loss"][0]


def test_divergence_monitor_rules():
    m = DivergenceMonitor(factor=10, window=3)
    assert m.update(2.0, 0, 0) is None and m.reference == 2.0
    assert m.update(50.0, 0, 1) is not None     # mean 26 > 20
    m = DivergenceMonitor(factor=10, window=3)
    assert [m.update(v, 0, i) for i, v in enumerate([2.0, 1.0, 1.0, 45.0])][-1] is None
    assert DivergenceMonitor(reference=-1.0).update(1e9, 0, 0) is None   # no positive start
    resumed = DivergenceMonitor(reference=0.5)
    assert resumed.update(6.0, 3, 0) is not None
    for bad in (1.0, 0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="divergence_factor"):
            Trainer(mlp(), divergence_factor=bad)
    with pytest.raises(ValueError, match="on_divergence"):
        Trainer(mlp(), on_divergence="halt")


# ---- non-finite values --------------------------------------------------------------------

def test_nonfinite_cause_names_the_loss_or_the_gradient():
    finite = {"w": np.ones(3, np.float32)}
    assert nonfinite_cause(1.5, finite, 0, 0) is None
    assert nonfinite_cause(float("nan"), finite, 1, 4) == "non-finite loss (nan) at epoch 2, batch 4"
    grads = {"w": np.ones(3, np.float32), "b": np.array([np.nan, 1.0, np.inf], np.float32)}
    assert nonfinite_cause(2.25, grads, 0, 7) == (
        "non-finite gradient of b (2 of 3 values; the loss 2.25 is finite) at epoch 1, batch 7")


def test_nonfinite_error_has_a_hint_for_python_and_one_for_the_command_line(digits64):
    X, y = digits64
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(mlp(), optimizer=gc.optim.SGD(lr=1e38), on_divergence="ignore").fit(
            X, y, epochs=1, batch_size=32, verbose=False)
    assert isinstance(info.value, FloatingPointError)
    assert "Trainer(on_nonfinite='skip')" in str(info.value)
    assert "--on-nonfinite skip" in info.value.cli_message()
    assert "on_nonfinite=" not in info.value.cli_message()

"""Learning-rate schedules against closed forms of torch.optim.lr_scheduler's formulas."""
import json
import math

import numpy as np
import pytest

from graphcnn.optim import (
    SGD,
    Adam,
    CosineAnnealingLR,
    CyclicLR,
    ExponentialLR,
    ReduceLROnPlateau,
    StepLR,
)


def epoch_lrs(schedule, epochs, lr=0.1):
    """The rate used in each epoch, stepping after each, as Trainer does."""
    opt = SGD(lr=lr)
    schedule.bind(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.lr)
        schedule.step()
    return out


def test_step_lr():
    np.testing.assert_allclose(epoch_lrs(StepLR(step_size=2, gamma=0.5), 5),
                               [0.1, 0.1, 0.05, 0.05, 0.025])
    np.testing.assert_allclose(epoch_lrs(StepLR(3), 7, lr=1.0),
                               [1.0 * 0.1 ** (t // 3) for t in range(7)])


def test_exponential_lr():
    np.testing.assert_allclose(epoch_lrs(ExponentialLR(0.9), 6), [0.1 * 0.9 ** t for t in range(6)])


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_lr(eta_min):
    T = 10
    expected = [eta_min + (0.1 - eta_min) * (1 + math.cos(math.pi * t / T)) / 2
                for t in range(2 * T + 1)]
    lrs = epoch_lrs(CosineAnnealingLR(T_max=T, eta_min=eta_min), 2 * T + 1)
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)
    assert lrs[0] == 0.1 and lrs[T] == pytest.approx(eta_min, abs=1e-15)


def triangular(t, base, peak, up, down=None):
    down = up if down is None else down
    cycle_pos = t % (up + down)
    frac = cycle_pos / up if cycle_pos <= up else 1 - (cycle_pos - up) / down
    return base + (peak - base) * frac


@pytest.mark.parametrize("down", [None, 2])
def test_cyclic_lr_triangular(down):
    opt = SGD(lr=0.5)
    sched = CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=down)
    assert sched.per_batch
    sched.bind(opt)
    assert opt.lr == 0.01  # bind sets base_lr
    lrs = []
    for _ in range(25):
        lrs.append(opt.lr)
        sched.step_batch()
    np.testing.assert_allclose(lrs, [triangular(t, 0.01, 0.1, 4, down) for t in range(25)],
                               rtol=1e-12)
    assert max(lrs) == pytest.approx(0.1)


def test_cyclic_lr_triangular2_and_exp_range():
    opt = SGD(lr=1.0)
    sched = CyclicLR(0.0, 1.0, step_size_up=2, mode="triangular2").bind(opt)
    peaks = []
    for t in range(13):
        if t % 4 == 2:
            peaks.append(opt.lr)
        sched.step_batch()
    np.testing.assert_allclose(peaks, [1.0, 0.5, 0.25])
    sched = CyclicLR(0.0, 1.0, step_size_up=2, mode="exp_range", gamma=0.9).bind(opt)
    for _ in range(6):
        sched.step_batch()
    # t = 6 is the peak of the second cycle: amplitude gamma ** 6
    assert opt.lr == pytest.approx(0.9 ** 6)


def test_cyclic_momentum_is_optional():
    opt = SGD(lr=0.1, momentum=0.9)
    sched = CyclicLR(0.01, 0.1, step_size_up=2, cycle_momentum=True).bind(opt)
    sched.step_batch()
    sched.step_batch()  # at the peak learning rate momentum is at its base
    assert opt.momentum == pytest.approx(0.8)
    adam = Adam()
    CyclicLR(0.01, 0.1, step_size_up=2, cycle_momentum=True).bind(adam)
    assert adam.betas == (0.9, 0.999)
    plain = SGD(lr=0.1, momentum=0.9)
    CyclicLR(0.01, 0.1, step_size_up=2).bind(plain).step_batch()
    assert plain.momentum == 0.9


def plateau_run(sched, metrics, lr=1.0):
    opt = SGD(lr=lr)
    sched.bind(opt)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.lr)
    return out


def test_reduce_on_plateau_patience():
    # improves for 3 epochs, then flat: with patience 2 the third bad epoch reduces
    metrics = [5, 4, 3, 3, 3, 3, 3, 3, 3, 3]
    lrs = plateau_run(ReduceLROnPlateau(factor=0.5, patience=2), metrics)
    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_reduce_on_plateau_cooldown_and_min_lr():
    metrics = [1.0] * 12
    lrs = plateau_run(ReduceLROnPlateau(factor=0.1, patience=1, cooldown=2, min_lr=0.005),
                      metrics)
    # epoch 1 is the best; bad epochs 2, 3 -> reduce at 3; cooldown 2 epochs (4, 5) during
    # which nothing counts; bad again 6, 7 -> reduce at 7 (clipped at min_lr), ...
    assert lrs == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005])


def test_reduce_on_plateau_threshold_and_max_mode():
    # relative threshold: an improvement smaller than 1% does not count
    lrs = plateau_run(ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.01),
                      [1.0, 0.995, 0.9])
    assert lrs == [1.0, 0.5, 0.5]
    lrs = plateau_run(ReduceLROnPlateau(mode="max", factor=0.5, patience=0, threshold=0.1,
                                        threshold_mode="abs"), [0.5, 0.55, 0.7, 0.7])
    assert lrs == [1.0, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("make", [
    lambda: StepLR(2, 0.5), lambda: ExponentialLR(0.8), lambda: CosineAnnealingLR(7, 0.001),
    lambda: CyclicLR(0.01, 0.1, step_size_up=3, mode="triangular2"),
])
def test_state_dict_round_trip(make):
    opt = SGD(lr=0.1)
    a = make().bind(opt)
    for _ in range(4):
        a.step()
    state = json.loads(json.dumps(a.state_dict()))
    opt2 = SGD(lr=0.1)
    b = make().bind(opt2)
    b.load_state_dict(state)
    opt2.lr = opt.lr  # the optimizer's own state carries its rate
    for _ in range(6):
        a.step()
        b.step()
        assert opt2.lr == opt.lr
    assert b.get_last_lr() == a.get_last_lr() == opt.lr


def test_plateau_state_dict_round_trip():
    metrics = [3, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    a = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1)
    opt = SGD(lr=1.0)
    a.bind(opt)
    fresh = a.state_dict()
    assert fresh["best"] is None  # infinity is not JSON
    json.dumps(fresh)
    for m in metrics[:4]:
        a.step(m)
    state = json.loads(json.dumps(a.state_dict()))
    b = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1)
    opt2 = SGD(lr=opt.lr)
    b.bind(opt2)
    b.load_state_dict(state)
    for m in metrics[4:]:
        a.step(m)
        b.step(m)
        assert opt2.lr == opt.lr


def test_unbound_and_bad_arguments():
    with pytest.raises(RuntimeError, match="bind"):
        StepLR(2).step()
    with pytest.raises(RuntimeError, match="bind"):
        ReduceLROnPlateau().step(1.0)
    with pytest.raises(TypeError):
        StepLR(2).bind(object())
    for bad in (lambda: StepLR(0), lambda: ExponentialLR(0), lambda: CosineAnnealingLR(0),
                lambda: CyclicLR(0.1, 0.01), lambda: CyclicLR(0.01, 0.1, mode="sine"),
                lambda: ReduceLROnPlateau(mode="up"), lambda: ReduceLROnPlateau(factor=1.0)):
        with pytest.raises(ValueError):
            bad()


def test_cli_schedules_build_and_step():
    from graphcnn.commands.train import make_schedule
    for name in ("step", "exponential", "cosine", "cyclic", "plateau"):
        opt = SGD(lr=0.1)
        sched = make_schedule(name, 0.1, 10, 20)
        sched.bind(opt)
        if name == "plateau":
            sched.step(1.0)
        elif sched.per_batch:
            sched.step_batch()
        else:
            sched.step()
        assert 0 < opt.lr <= 0.1

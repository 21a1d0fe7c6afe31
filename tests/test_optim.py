"""Optimizers against hand-written float64 references of torch.optim's algorithms (and
torch itself when it is installed), state round trips, dtype and in-place updates."""
import json
import math

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.optim import SGD, Adam, AdamW

SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (5, 7)}
STEPS = 6


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    return params, grads


# ---- references: torch.optim's algorithms, written out in float64 -----------------
def ref_sgd(p, gs, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0, l1=0.0):
    p = p.astype(np.float64)
    buf = None
    for g in gs:
        g = g.astype(np.float64) + weight_decay * p + l1 * np.sign(p)
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def ref_adam(p, gs, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             decoupled=False, l1=0.0):
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        g = g.astype(np.float64) + l1 * np.sign(p)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        if amsgrad:
            vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - betas[1] ** t)
        p = p - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(vhat) + eps)
    return p


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(lr=0.02, momentum=0.5, dampening=0.3, weight_decay=0.1),
    dict(lr=0.1, momentum=0.9, l1=0.01),
]
ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=1e-2, l1=0.05),
]


def run(opt, params, grads):
    live = {k: v.copy() for k, v in params.items()}
    ids = {k: id(v) for k, v in live.items()}
    for g in grads:
        opt.step(live, g)
    assert {k: id(v) for k, v in live.items()} == ids  # the same arrays, updated in place
    assert all(v.dtype == np.float32 for v in live.values())
    return live


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_matches_reference(kwargs):
    params, grads = make_problem()
    live = run(SGD(**kwargs), params, grads)
    for k in params:
        expected = ref_sgd(params[k], [g[k] for g in grads], **kwargs)
        np.testing.assert_allclose(live[k], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_adam_matches_reference(kwargs):
    params, grads = make_problem(1)
    live = run(Adam(**kwargs), params, grads)
    for k in params:
        expected = ref_adam(params[k], [g[k] for g in grads], **kwargs)
        np.testing.assert_allclose(live[k], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.5, amsgrad=True)])
def test_adamw_matches_reference(kwargs):
    params, grads = make_problem(2)
    live = run(AdamW(**kwargs), params, grads)
    kwargs.setdefault("weight_decay", 1e-2)
    for k in params:
        expected = ref_adam(params[k], [g[k] for g in grads], decoupled=True, **kwargs)
        np.testing.assert_allclose(live[k], expected, rtol=1e-5, atol=1e-6)


def test_adamw_decay_is_decoupled():
    """With a zero gradient Adam's L2 term moves p by about lr per step (normalized);
    AdamW shrinks it by exactly (1 - lr * wd) per step."""
    p = {"w": np.full(3, 2.0, np.float32)}
    g = {"w": np.zeros(3, np.float32)}
    opt = AdamW(lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step(p, g)
    np.testing.assert_allclose(p["w"], 2.0 * 0.95 ** 3, rtol=1e-6)


def test_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    params, grads = make_problem(3)
    cases = [(SGD, torch.optim.SGD, c) for c in SGD_CASES if "l1" not in c] + \
            [(Adam, torch.optim.Adam, c) for c in ADAM_CASES if "l1" not in c] + \
            [(AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.3))]
    for ours, theirs, kwargs in cases:
        live = run(ours(**kwargs), params, grads)
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        opt = theirs(list(tp.values()), **kwargs)
        for g in grads:
            for k, t in tp.items():
                t.grad = torch.tensor(g[k])
            opt.step()
        for k in params:
            np.testing.assert_allclose(live[k], tp[k].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_lr_is_a_plain_attribute_used_by_the_next_step():
    p = {"w": np.zeros(2, np.float32)}
    g = {"w": np.ones(2, np.float32)}
    opt = SGD(lr=0.1)
    opt.step(p, g)
    opt.lr = 1.0
    opt.step(p, g)
    np.testing.assert_allclose(p["w"], [-1.1, -1.1], rtol=1e-6)


def test_parameters_without_gradients_are_left_alone():
    p = {"a": np.ones(2, np.float32), "frozen": np.ones(2, np.float32)}
    opt = SGD(lr=0.5, momentum=0.9)
    opt.step(p, {"a": np.ones(2, np.float32), "unused": np.ones(5, np.float32)})
    np.testing.assert_array_equal(p["frozen"], 1.0)
    np.testing.assert_allclose(p["a"], 0.5)
    assert set(opt.state) <= {"a", "frozen"} and "momentum" in opt.state["a"]


@pytest.mark.parametrize("make", [
    lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: SGD(lr=0.05),
    lambda: Adam(lr=1e-2, amsgrad=True, weight_decay=1e-3),
    lambda: AdamW(lr=1e-2, l1=1e-3),
])
def test_state_dict_round_trip_continues_bit_identically(make):
    params, grads = make_problem(4)
    straight = make()
    p1 = run(straight, params, grads)

    first = make()
    p2 = run(first, params, grads[:3])
    arrays, scalars = first.state_dict()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert all("/" in k for k in arrays)
    scalars = json.loads(json.dumps(scalars))          # what a checkpoint stores
    arrays = {k: np.array(v) for k, v in arrays.items()}
    resumed = make()
    resumed.lr = 123.0                                  # overwritten by the saved state
    resumed.load_state_dict(arrays, scalars)
    assert resumed.lr == first.lr
    for g in grads[3:]:
        resumed.step(p2, g)
    for k in params:
        np.testing.assert_array_equal(p2[k], p1[k])


def test_state_dict_names_and_scalars():
    params, grads = make_problem()
    opt = SGD(lr=0.1, momentum=0.9)
    run(opt, params, grads[:2])
    arrays, scalars = opt.state_dict()
    assert set(arrays) == {f"momentum/{k}" for k in SHAPES}
    assert scalars["lr"] == 0.1 and scalars["momentum"] == 0.9
    assert scalars["steps"] == {k: 2 for k in SHAPES}
    arrays["momentum/conv.bias"][...] = 7  # a copy: the live state is untouched
    assert not np.any(opt.state["conv.bias"]["momentum"] == 7)
    opt2 = Adam()
    run(opt2, params, grads[:1])
    a2, s2 = opt2.state_dict()
    assert set(a2) == {f"{kind}/{k}" for kind in ("exp_avg", "exp_avg_sq") for k in SHAPES}
    assert s2["betas"] == [0.9, 0.999]
    json.dumps(s2)


def test_loading_foreign_state_is_an_error():
    arrays, scalars = Adam().state_dict()
    with pytest.raises(ValueError, match="Adam"):
        SGD().load_state_dict(arrays, scalars)
    with pytest.raises(ValueError, match="unexpected"):
        SGD(momentum=0.9).load_state_dict({"exp_avg/w": np.zeros(2, np.float32)}, {"lr": 0.1})


def test_shape_mismatch_and_bad_arguments():
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step({"w": np.ones(3, np.float32)}, {"w": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.ones(4, np.float32)}, {"w": np.ones(4, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"v": np.ones(4, np.float32)}, {"v": np.ones(3, np.float32)})
    for bad in (lambda: SGD(lr=-1), lambda: SGD(momentum=-0.1), lambda: SGD(nesterov=True),
                lambda: Adam(betas=(1.0, 0.9)), lambda: Adam(eps=float("nan"))):
        with pytest.raises(ValueError):
            bad()


def test_float64_gradients_update_float32_parameters():
    p = {"w": np.ones(3, np.float32)}
    Adam(lr=0.1).step(p, {"w": np.ones(3, np.float64)})
    assert p["w"].dtype == np.float32
    np.testing.assert_allclose(p["w"], 0.9, rtol=1e-6)


def test_exported_from_gc_optim():
    for name in ("SGD", "Adam", "AdamW", "StepLR", "ExponentialLR", "CosineAnnealingLR",
                 "CyclicLR", "ReduceLROnPlateau"):
        assert hasattr(gc.optim, name)
    assert "momentum=0.9" in repr(SGD(momentum=0.9))
    assert math.isclose(AdamW().weight_decay, 1e-2)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9, weight_decay=1e-3),
                                  lambda: SGD(lr=0.1, momentum=0.9, l1=1e-3),
                                  lambda: Adam(lr=0.01), lambda: AdamW(lr=0.01)])
def test_a_large_step_on_several_threads_gives_the_bits_of_one_thread(make, monkeypatch):
    """Steps at or above PARALLEL_BYTES update their parameters in groups on several
    threads at once: the same bits as one thread, over a few steps (the state too)."""
    from graphcnn.optim import parallel
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 1)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr("numba.get_num_threads", lambda t=threads: t)
        params, grads = make_problem(3)
        opt = make()
        for g in grads:
            opt.step(params, g)
        results.append((params, opt.state_dict()[0]))
    (one, state_one), (many, state_many) = results
    for k in one:
        np.testing.assert_array_equal(one[k], many[k])
    assert state_one.keys() == state_many.keys()
    for k in state_one:
        np.testing.assert_array_equal(state_one[k], state_many[k])


def test_a_bad_gradient_leaves_every_parameter_and_count_as_it_was():
    """The step checks every gradient before it updates any parameter."""
    opt = SGD(lr=0.1, momentum=0.9)
    params = {"a": np.ones(3, np.float32), "b": np.ones(2, np.float32)}
    opt.step(params, {"a": np.ones(3, np.float32), "b": np.ones(2, np.float32)})
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="'b'"):
        opt.step(params, {"a": np.ones(3, np.float32), "b": np.ones(4, np.float32)})
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.steps == {"a": 1, "b": 1}


def test_groups_of_parameters_balance_their_bytes():
    from graphcnn.optim.parallel import balanced_groups
    groups = balanced_groups([100, 1, 60, 40, 2], 2)
    assert sorted(map(sorted, groups)) == [[0, 4], [1, 2, 3]]   # 102 and 101 bytes
    assert balanced_groups([5], 4) == [[0]]


def test_the_one_pass_sgd_keeps_no_work_arrays():
    """The SGD kernel needs no work arrays, so a step keeps none (two more copies of the
    model's bytes otherwise); the NumPy path (l1, or float64 gradients) keeps its two."""
    params, grads = make_problem(4)
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads[0])
    assert opt._work == {} and set(opt.state) == set(SHAPES)
    l1 = SGD(lr=0.1, l1=1e-3)
    l1.step(params, grads[0])
    assert set(l1._work) == set(SHAPES)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_steps_on_threads_of_its_own(monkeypatch):
    """A child forked after a parallel step has none of its parent's worker threads: its
    own step makes new ones instead of waiting on the parent's forever."""
    import os

    from graphcnn.optim import parallel
    monkeypatch.setattr(parallel, "PARALLEL_BYTES", 1)
    monkeypatch.setattr("numba.get_num_threads", lambda: 2)
    params, grads = make_problem(5)
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads[0])          # the parent's pool exists now
    pid = os.fork()
    if pid == 0:                        # the child: one more step, then exit at once
        try:
            opt.step(params, grads[1])
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

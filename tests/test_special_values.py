"""One float semantics: every op on the cpu backend treats NaN, +-Inf, huge, denormal and
-0.0 inputs as the reference does (IEEE, as PyTorch): NaN where the reference has NaN, the
same infinities, finite values close. Each op with a strategy is checked in every candidate
implementation that applies, not only the one the cost model picks."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from op_check import forward
from special_values import CASES, NOT_APPLICABLE, Case, assert_same_floats, sprinkle, sum_atol

from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import all_ops, get_op


def test_every_registered_op_has_a_case_or_a_reason():
    ops = set(all_ops())
    assert ops == set(CASES) | set(NOT_APPLICABLE), (
        f"without a special-values case: {sorted(ops - set(CASES) - set(NOT_APPLICABLE))}; "
        f"unknown: {sorted((set(CASES) | set(NOT_APPLICABLE)) - ops)}")
    assert not set(CASES) & set(NOT_APPLICABLE)


def candidate_outputs(op: str, ins: list[np.ndarray], attrs: dict[str, Any]
                      ) -> dict[str, np.ndarray]:
    """The op's output from each candidate implementation that applies to these arrays
    (the ops with a cpu strategy); {} for the other ops."""
    from graphcnn.backends.cpu.candidates import array_site
    from graphcnn.backends.cpu.kernels import conv_gemm
    from graphcnn.backends.cpu.strategy import STRATEGIES
    if op not in STRATEGIES:
        return {}
    opdef = get_op(op)
    attrs = opdef.normalize_attrs(attrs, [TensorType(a.shape, str(a.dtype)) for a in ins])
    (out_type,) = opdef.infer([TensorType(a.shape, str(a.dtype)) for a in ins], attrs)
    strategy, results = STRATEGIES[op], {}
    for candidate in strategy.candidates:
        out = np.full(out_type.shape, 7.0, out_type.dtype)
        site = array_site(op, ins, out, attrs)
        if not candidate.applies(site):
            continue
        core = candidate.build(site)
        conv_gemm.begin_call()
        core.run(ins, out)
        if not core.adds_bias and len(ins) == 3 and strategy.add_bias is not None:
            strategy.add_bias(out, ins[2])
        results[candidate.name] = out
    return results


def logical(op: str, y: np.ndarray, ins: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    """A blocked output's real channels (its padding lanes hold whatever the formula makes
    of zeros, which no op reads)."""
    from graphcnn.ops.layout import from_blocked_ref
    if op in ("to_blocked",):
        return from_blocked_ref(y, ins[0].shape[1])
    if op in ("conv2d_blocked", "expand_depthwise_blocked"):
        weight = ins[1] if op == "conv2d_blocked" else ins[3]
        return from_blocked_ref(y, weight.shape[0])
    return y


def check_case(op: str, case: Case, seed: int, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    ins = sprinkle(rng, case.make(rng), case, fraction)
    atol = sum_atol(case, ins)
    want = forward(op, ins, case.attrs, "reference")
    got = forward(op, ins, case.attrs, "cpu")
    for k, (g, w) in enumerate(zip(got, want)):
        assert_same_floats(logical(op, g, ins, case.attrs), logical(op, w, ins, case.attrs),
                           f"{op} output {k} (cpu vs reference), seed {seed}", atol=atol)
    for name, g in candidate_outputs(op, ins, case.attrs).items():
        assert_same_floats(logical(op, g, ins, case.attrs), logical(op, want[0], ins, case.attrs),
                           f"{op} by {name!r} (cpu vs reference), seed {seed}", atol=atol)


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=6, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(seed=st.integers(0, 2**16), fraction=st.sampled_from([0.05, 0.2, 0.6]))
def test_special_values_as_the_reference(op, seed, fraction):
    for case in CASES[op]:
        check_case(op, case, seed, fraction)


# ---- the cases as a user meets them: compiled models and training ------------------------

def _compiled(model: Any, backend: str, batch: int = 1) -> Any:
    import graphcnn as gc
    return gc.compile(model, batch_size=batch, backend=backend)


def test_relu_and_fused_linear_relu_keep_nan():
    import graphcnn as gc
    from graphcnn import nn
    x = np.float32([[np.nan, 1.0, -2.0, 3.0]])
    inp = gc.Input((4,), name="x")
    (y,) = forward("relu", [x], {}, "cpu")
    assert np.isnan(y[0, 0]) and y[0, 2] == 0.0
    model = gc.Model(inp, gc.relu(nn.Linear(4, 3)(inp)))
    exe = _compiled(model, "cpu")
    assert exe.report()["kernels"] == 1  # linear + relu: one fused kernel
    assert np.isnan(exe(x)).all()
    assert np.isnan(_compiled(model, "reference")(x)).all()


@pytest.mark.parametrize("position", range(4))
def test_max_pool_window_with_nan_anywhere_is_nan(position):
    import graphcnn as gc
    from graphcnn import nn
    inp = gc.Input((1, 2, 2), name="x")
    model = gc.Model(inp, nn.MaxPool2d(2)(inp))
    x = np.float32([[[[1.0, 2.0], [3.0, 4.0]]]])
    x.reshape(-1)[position] = np.nan
    for backend in ("reference", "cpu"):
        assert np.isnan(_compiled(model, backend)(x)).all(), backend


def test_max_pool_gradient_goes_to_the_last_nan_as_in_pytorch():
    x = np.float32([[[[np.nan, 5.0, 1.0], [2.0, np.nan, 0.0], [1.0, 1.0, 1.0]]]])
    dy = np.float32([[[[7.0]]]])
    attrs = {"kernel_size": 3}
    want = np.zeros_like(x)
    want[0, 0, 1, 1] = 7.0  # torch.max_pool2d's argmax: the last NaN in scan order
    for backend in ("reference", "cpu"):
        (dx,) = forward("max_pool2d_grad", [dy, x], attrs, backend)
        np.testing.assert_array_equal(dx, want, err_msg=backend)


def test_log_softmax_and_cross_entropy_of_huge_logits():
    """Four equal logits of 1e17: -log 4 each (not 0); logits of 3e38 as PyTorch's float32:
    log_softmax finite (0 and -3e38), and a mean cross-entropy whose sum is past float32's
    range is inf."""
    equal = np.full((2, 4), 1e17, np.float32)
    for backend in ("reference", "cpu"):
        (y,) = forward("log_softmax", [equal], {"axis": 1}, backend)
        np.testing.assert_allclose(y, np.full((2, 4), -np.log(4.0)), rtol=1e-6)
        (loss,) = forward("cross_entropy", [equal, np.int64([0, 3])], {}, backend)
        np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)
    huge = np.float32([[3e38, 0, 0, 0]] * 4)
    labels = np.int64([1, 1, 1, 0])
    for backend in ("reference", "cpu"):
        (y,) = forward("log_softmax", [huge], {"axis": 1}, backend)
        np.testing.assert_array_equal(y, np.float32([[0, -3e38, -3e38, -3e38]] * 4))
        for reduction in ("mean", "sum"):
            (loss,) = forward("cross_entropy", [huge, labels], {"reduction": reduction},
                              backend)
            assert loss == np.inf, (backend, reduction, loss)  # torch: inf, both reductions
        (loss,) = forward("cross_entropy", [huge[:1], labels[:1]], {}, backend)
        np.testing.assert_allclose(loss, 3e38, rtol=1e-6)  # one row: finite


def test_dropout_of_nan_and_inf_as_pytorch():
    """PyTorch's dropout is x * mask * scale: a dropped NaN or Inf gives NaN (0 * inf),
    a kept Inf stays Inf."""
    x = np.full((1, 64), np.inf, np.float32)
    x[0, ::2] = np.nan
    for backend in ("reference", "cpu"):
        (y,) = forward("dropout", [x, np.asarray(3, np.int64)], {"p": 0.5}, backend)
        inf = x[0] == np.inf
        assert np.isnan(y[0, ~inf]).all(), backend
        kept = np.isinf(y[0, inf])
        assert 0 < kept.sum() < inf.sum(), backend  # some kept (inf), some dropped (NaN)
        assert np.isnan(y[0, inf][~kept]).all(), backend


def _small_cnn() -> Any:
    """Pooling first, so that a NaN input pixel first in its 2x2 window meets max-pool
    before anything else (where the cpu once dropped it: a finite loss)."""
    from graphcnn import nn
    return nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3), input_shape=(1, 8, 8))


def test_a_nan_input_gives_a_nan_loss_in_training():
    import graphcnn as gc
    model = _small_cnn()
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    x[2, 0, 2, 4] = np.nan  # first in its pooling window
    y = np.int64([0, 1, 2, 0])
    for backend in ("reference", "cpu"):
        step = gc.value_and_grad(model, loss="cross_entropy", batch_size=4, backend=backend)
        loss, grads = step(x, y)
        assert np.isnan(loss), (backend, loss)
        assert all(np.isnan(g).any() for g in grads.values()), backend


def test_the_trainer_quotes_a_non_finite_loss():
    import graphcnn as gc
    model = _small_cnn()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    x[5, 0, 4, 2] = np.nan  # first in its pooling window
    y = rng.integers(0, 3, 8).astype(np.int64)
    trainer = gc.Trainer(model, loss="cross_entropy", optimizer=gc.optim.SGD(lr=0.01))
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\)"):
        trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)


# ---- fused groups: the anchors' kernels with their generated or stored epilogues ---------

def _fused_graphs() -> dict[str, Any]:
    """name -> (graph, its input arrays, None or the channels of its blocked input and
    output, the arrays given in NCHW): one group each, an anchor and its epilogue."""
    from graphcnn.ir.graph import Graph
    rng = np.random.default_rng(0)

    def const(g: Graph, *shape: int) -> Any:
        return g.constant(rng.standard_normal(shape).astype(np.float32))

    graphs = {}
    g = Graph("conv_relu")
    x = g.input("x", (1, 3, 6, 6))
    g.set_outputs([g.add("relu", [g.add("conv2d", [x, const(g, 4, 3, 3, 3), const(g, 4)],
                                        padding=1)])])
    graphs["conv+relu"] = (g, [rng.standard_normal((1, 3, 6, 6)).astype(np.float32)], None)
    g = Graph("conv_clip_add")
    x = g.input("x", (1, 4, 5, 5))
    conv = g.add("conv2d", [x, const(g, 4, 1, 3, 3)], padding=1, groups=4)
    g.set_outputs([g.add("add", [g.add("clip", [conv], low=0.0, high=6.0), x])])
    graphs["depthwise+relu6+add"] = (g, [rng.standard_normal((1, 4, 5, 5)).astype(np.float32)],
                                     None)
    for stride, hw in ((1, (3, 50)), (2, (5, 100))):
        # Rows of 48 outputs or more: computed row by row (depthwise._rolling_task).
        g = Graph(f"depthwise_long_rows_s{stride}")
        x = g.input("x", (1, 2, *hw))
        conv = g.add("conv2d", [x, const(g, 2, 1, 3, 3), const(g, 2)], stride=stride,
                     padding=1, groups=2)
        g.set_outputs([g.add("clip", [conv], low=0.0, high=6.0)])
        graphs[f"depthwise s{stride} long rows+relu6"] = (
            g, [rng.standard_normal((1, 2, *hw)).astype(np.float32)], None)
    for stride, dy_hw, x_hw in ((1, (5, 5), (5, 5)), (2, (3, 3), (6, 5)), (1, (3, 50), (3, 50))):
        # A depthwise input gradient through ReLU6's mask (MobileNet's backward): the
        # kernel keeps each plane's gradients where low < y < high as it writes them.
        g = Graph(f"depthwise_grad_clip_grad_s{stride}_{x_hw[1]}")
        dy, y = g.input("dy", (1, 4, *dy_hw)), g.input("y", (1, 4, *x_hw))
        grad = g.add("conv2d_input_grad", [dy, const(g, 4, 1, 3, 3)], stride=stride,
                     padding=1, groups=4, input_hw=x_hw)
        g.set_outputs([g.add("clip_grad", [grad, y], low=0.0, high=6.0)])
        graphs[f"depthwise s{stride} input grad+clip_grad, rows of {x_hw[1]}"] = (
            g, [rng.standard_normal((1, 4, *dy_hw)).astype(np.float32),
                rng.uniform(-1.0, 7.0, (1, 4, *x_hw)).astype(np.float32)], None)
    g = Graph("linear_relu")
    x = g.input("x", (3, 5))
    g.set_outputs([g.add("relu", [g.add("linear", [x, const(g, 4, 5), const(g, 4)])])])
    graphs["linear+relu"] = (g, [rng.standard_normal((3, 5)).astype(np.float32)], None)
    g = Graph("pool_relu")
    x = g.input("x", (1, 2, 6, 6))
    g.set_outputs([g.add("relu", [g.add("max_pool2d", [x], kernel_size=3, stride=2,
                                        padding=1)])])
    graphs["max_pool+relu"] = (g, [rng.standard_normal((1, 2, 6, 6)).astype(np.float32)], None)
    g = Graph("blocked")
    x = g.input("x", (1, 2, 4, 4, 16))
    conv = g.add("conv2d_blocked", [x, const(g, 18, 1, 3, 3), const(g, 18)], padding=1,
                 groups=18)
    g.set_outputs([g.add("add", [g.add("clip", [conv], low=0.0, high=6.0), x])])
    # The special values go into the 18 real channels only (the padding lanes are zeros,
    # as to_blocked makes them), and only those are compared.
    graphs["nchw16c depthwise+relu6+add"] = (
        g, [rng.standard_normal((1, 18, 4, 4)).astype(np.float32)], 18)
    return graphs


@pytest.mark.parametrize("name", sorted(_fused_graphs()))
@pytest.mark.parametrize("seed", range(3))
def test_fused_groups_as_the_reference(name, seed):
    from special_values import NO_HUGE

    from graphcnn.ops.layout import from_blocked_ref, to_blocked_ref
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.runtime.executable import make_runner
    graph, arrays_, channels = _fused_graphs()[name]
    fused = fuse_operators(graph)
    assert [n.op for n in fused.nodes if n.op not in ("input", "constant")] == ["fused"]
    rng = np.random.default_rng(seed)
    case = Case(lambda _: arrays_, values=NO_HUGE)
    ins = sprinkle(rng, arrays_, case, 0.15)
    if channels:
        ins = [to_blocked_ref(a) for a in ins]
    feeds = {v.id: a for v, a in zip(graph.inputs, ins)}
    want = make_runner(graph, "reference").run(feeds)[0]
    got = make_runner(fused, "cpu").run({v.id: feeds[v.id] for v in fused.inputs})[0]
    if channels:
        got, want = from_blocked_ref(got, channels), from_blocked_ref(want, channels)
    assert_same_floats(got, want, f"{name} fused (cpu vs reference), seed {seed}",
                       atol=1e-4)

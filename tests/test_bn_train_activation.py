"""The training batch norm that takes the relu or clip after it
(passes/bn_train_activation.py): the pass alone (before/after graphs, where it must not
apply), the op's new attribute on the backends (NaN and Inf included), and whole training
steps at opt level 2 against opt level 0, with the activations' gradients read off their
outputs (ops/elementwise.py)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from op_check import check_op, forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.ir import Graph
from graphcnn.ir.verify import verify
from graphcnn.passes.bn_train_activation import fuse_batch_norm_activation
from graphcnn.runtime.executable import make_runner

RNG = np.random.default_rng(21)


def _bn_graph(activation: str, also_read_y: bool = False) -> Graph:
    """x -> batch_norm_train -> activation (-> outputs: the activation's, mean, var; and y
    itself where `also_read_y`)."""
    g = Graph("bn_act")
    x = g.input("x", (2, 3, 4, 4))
    y, mean, var = g.add_node("batch_norm_train", [x, g.param("w", (3,)), g.param("b", (3,))],
                              {"eps": 1e-5}).outputs
    act = g.add("relu", [y]) if activation == "relu" else g.add("clip", [y], low=0.0, high=6.0)
    outputs = [act, mean, var] + ([g.add("sigmoid", [y])] if also_read_y else [])
    g.set_outputs(outputs)
    return g


def _run(graph: Graph, backend: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    by_id = {n.output.id: feeds[n.attrs["name"]] for n in graph.nodes
             if n.op in ("input", "param")}
    return make_runner(graph, backend).run(by_id)


@pytest.mark.parametrize("activation", ["relu", "clip"])
def test_the_batch_norm_takes_the_activation_and_computes_the_same_bits(activation):
    before = _bn_graph(activation)
    after = fuse_batch_norm_activation(before)
    verify(after)
    assert [n.op for n in before.compute_nodes()] == ["batch_norm_train", activation]
    (bn,) = after.compute_nodes()
    assert bn.op == "batch_norm_train" and bn.attrs["activation"] == activation
    if activation == "clip":
        assert (bn.attrs["low"], bn.attrs["high"]) == (0.0, 6.0)
    feeds = {"x": (RNG.normal(size=(2, 3, 4, 4)) * 3).astype(np.float32),
             "w": RNG.normal(size=3).astype(np.float32),
             "b": RNG.normal(size=3).astype(np.float32)}
    feeds["x"][0, 1, 2, 3] = np.nan    # channel 1 takes the exact path: NaN statistics
    reference = _run(before, "reference", feeds)
    assert np.isnan(reference[0][:, 1]).all() and (reference[0][:, [0, 2]] >= 0).all()
    for backend in ("reference", "cpu"):
        # on each backend, the bits of the two kernels it ran before
        want = _run(before, backend, feeds)
        for w, got, r in zip(want, _run(after, backend, feeds), reference):
            np.testing.assert_array_equal(got, w, err_msg=backend)
            np.testing.assert_allclose(got, r, rtol=1e-5, atol=1e-6, err_msg=backend)


def test_the_pass_leaves_a_batch_norm_whose_output_has_another_reader():
    graph = _bn_graph("relu", also_read_y=True)
    after = fuse_batch_norm_activation(graph)
    assert [n.op for n in after.compute_nodes()] == ["batch_norm_train", "relu", "sigmoid"]
    assert after.compute_nodes()[0].attrs["activation"] == ""
    # nor one whose y is itself a graph output
    g = _bn_graph("relu")
    g.set_outputs(g.outputs + [g.compute_nodes()[0].outputs[0]])
    assert Counter(n.op for n in fuse_batch_norm_activation(g).compute_nodes())["relu"] == 1


@pytest.mark.parametrize("attrs", [{"activation": "relu"},
                                   {"activation": "clip", "low": 0.0, "high": 6.0},
                                   {"activation": "clip", "low": -0.5, "high": 0.5}],
                         ids=["relu", "relu6", "clip"])
def test_the_op_with_an_activation_against_the_reference_and_finite_differences(attrs):
    x = (RNG.normal(size=(3, 2, 3, 3)) * 2 + 0.5).astype(np.float32)
    weight, bias = RNG.uniform(0.5, 2, 2).astype(np.float32), RNG.normal(size=2).astype(np.float32)
    check_op("batch_norm_train", [x, weight, bias], dict(attrs, eps=1e-3), atol=1e-4)
    plain = forward("batch_norm_train", [x, weight, bias], {"eps": 1e-3}, "reference")[0]
    fused = forward("batch_norm_train", [x, weight, bias], dict(attrs, eps=1e-3), "cpu")[0]
    low, high = (0.0, np.inf) if attrs["activation"] == "relu" else (attrs["low"], attrs["high"])
    np.testing.assert_allclose(fused, np.clip(plain, low, high), rtol=1e-6, atol=1e-6)


def test_an_unknown_activation_is_an_error_naming_the_op():
    g = Graph("bad")
    x = g.input("x", (2, 3, 4))
    with pytest.raises(Exception, match=r"batch_norm_train: activation must be"):
        g.add_node("batch_norm_train", [x, g.param("w", (3,)), g.param("b", (3,))],
                   {"activation": "gelu"})


def _conv_bn_act(activation) -> gc.Model:
    """Two conv + batch norm + activation layers; the convs without bias (a batch norm
    removes any shift: its gradient would be rounding alone)."""
    x = gc.Input((2, 6, 6), name="image")
    h = activation(nn.BatchNorm2d(4, name="bn1")(nn.Conv2d(2, 4, 3, padding=1, bias=False, name="c1")(x)))
    h = activation(nn.BatchNorm2d(4, name="bn2")(nn.Conv2d(4, 4, 3, padding=1, bias=False, name="c2")(h)))
    return gc.Model(inputs=x, outputs=nn.Linear(4 * 6 * 6, 3, name="fc")(gc.flatten(h)),
                    name="conv_bn_act")


@pytest.mark.parametrize("activation", [gc.relu, gc.relu6], ids=["relu", "relu6"])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_training_steps_fuse_the_activations_and_match_opt_level_0(activation, backend):
    model = _conv_bn_act(activation)
    x = RNG.normal(size=(4, 2, 6, 6)).astype(np.float32)
    labels = RNG.integers(0, 3, 4)
    params = {k: v.copy() for k, v in model.parameters().items()}
    want_loss, want = gc.value_and_grad(model, batch_size=4, backend="reference",
                                        opt_level=0)(x, labels)
    want_stats = {k: v.copy() for k, v in model.parameters().items() if "running" in k}
    step = gc.value_and_grad(model, batch_size=4, backend=backend, opt_level=2)
    bns = [n for n in step.executable.graph.nodes if n.op == "batch_norm_train"]
    op = "relu" if activation is gc.relu else "clip"
    assert [n.attrs["activation"] for n in bns] == [op, op]
    assert not any(n.op == op for n in step.executable.graph.nodes)   # no kernel of its own
    model.load_parameters(params)   # the running statistics as the first step found them
    loss, grads = step(x, labels)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-4)
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-4, atol=1e-4 * np.abs(g).max(),
                                   err_msg=name)
    # the running statistics, which the batch norm's other outputs update, moved alike
    assert len(want_stats) == 4 and not np.allclose(want_stats["bn1.running_var"], 1)
    # (a channel's mean can be near 0 by cancellation: its rounding is relative to the
    # statistic's scale, not to itself)
    for name, v in want_stats.items():
        np.testing.assert_allclose(model.parameters()[name], v, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(v).max()), err_msg=name)


def test_the_pre_activation_values_have_no_reader_in_the_backward_pass():
    """relu_grad and clip_grad read the activation's output: nothing but the activation
    reads a conv's or batch norm's pre-activation value, which is why the pass applies in
    training graphs and why a conv + relu fuses there too."""
    model = _conv_bn_act(gc.relu)
    step = gc.value_and_grad(model, batch_size=2, backend="reference", opt_level=0)
    graph = step.executable.graph
    users = graph.users()
    for node in graph.nodes:
        if node.op == "relu":
            readers = users[node.inputs[0].id]
            assert [r.op for r in readers] == ["relu"]
            assert any(r.op == "relu_grad" for r in users[node.outputs[0].id])

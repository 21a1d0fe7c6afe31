"""The graph passes, each alone: the graph before and after (its ops, its printed text)
and its numbers against the unoptimized graph on the reference and cpu backends; then the
pipelines end to end (a conv-bn model, training graphs, zoo models at opt level 2 vs 0)."""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphcnn as gc
from graphcnn import nn
from graphcnn.ir import Graph
from graphcnn.ir.verify import verify
from graphcnn.passes import PIPELINES
from graphcnn.passes.bn_folding import fold_batch_norm
from graphcnn.passes.constant_folding import constant_folding
from graphcnn.passes.cse import common_subexpression_elimination as cse
from graphcnn.passes.dce import dead_code_elimination
from graphcnn.passes.rewrite import rewrite
from graphcnn.passes.simplify import algebraic_simplification
from graphcnn.runtime.executable import make_runner

BACKENDS = ("reference", "cpu")
RNG = np.random.default_rng(1234)


# ---- helpers -----------------------------------------------------------------------------

def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def counts(graph: Graph) -> Counter:
    return Counter(ops(graph))


def random_feeds(graph: Graph) -> dict[str, np.ndarray]:
    """An array per input and param of `graph`, by name."""
    feeds = {}
    for node in graph.nodes:
        if node.op in ("input", "param"):
            v = node.output
            if v.dtype == "int64":
                feeds[node.attrs["name"]] = np.asarray(RNG.integers(0, 3, v.shape), np.int64)
            else:
                feeds[node.attrs["name"]] = RNG.normal(size=v.shape).astype(v.dtype)
    return feeds


def run(graph: Graph, feeds: dict[str, np.ndarray], backend: str) -> list[np.ndarray]:
    by_id = {n.output.id: feeds[n.attrs["name"]] for n in graph.nodes
             if n.op in ("input", "param")}
    return make_runner(graph, backend).run(by_id)


def assert_same_results(before: Graph, after: Graph, tol: float = 1e-5) -> None:
    """The optimized graph has the same signature and computes the same outputs."""
    assert after.output_names == before.output_names
    assert [v.type for v in after.outputs] == [v.type for v in before.outputs]
    assert [v.type for v in after.inputs] == [v.type for v in before.inputs]
    feeds = random_feeds(before)
    for backend in BACKENDS:
        want = run(before, feeds, "reference")
        got = run(after, feeds, backend)
        for name, w, g in zip(before.output_names, want, got):
            assert g.dtype == w.dtype and g.shape == w.shape, name
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{backend} {name}")


def check_pass(pass_fn, graph: Graph, tol: float = 1e-5) -> Graph:
    """Run a pass; it must not touch its input and must keep the results."""
    text = str(graph)
    out = pass_fn(graph)
    assert str(graph) == text, "the pass changed its input graph"
    verify(out)
    assert_same_results(graph, out, tol)
    return out


# ---- rewrite -----------------------------------------------------------------------------

def test_rewrite_copy_keeps_text_locations_and_unused_inputs():
    g = Graph("g")
    x = g.input("x", (2, 3))
    g.input("unused", (1,))
    y = g.add("relu", [x], loc="model.py:7")
    g.add("tanh", [y])                          # dead
    g.set_outputs([y, y], ["a", "b"])
    out = rewrite(g, lambda new, node, inputs: None)
    assert ops(out) == ["input", "input", "relu"]
    assert out.nodes[2].loc == "model.py:7"
    assert out.output_names == ["a", "b"]
    assert rewrite(g, lambda new, node, inputs: None, prune=False).nodes[3].op == "tanh"


def test_rewrite_rejects_a_replacement_of_another_type():
    g = Graph()
    x = g.input("x", (2, 3))
    g.set_outputs([g.add("reshape", [x], shape=(6,))])
    with pytest.raises(ValueError, match="type"):
        rewrite(g, lambda new, node, inputs: inputs if node.op == "reshape" else None)


# ---- common-subexpression elimination ----------------------------------------------------

def test_cse_merges_equal_nodes_and_commutative_operands():
    g = Graph("cse")
    x = g.input("x", (2, 4))
    w = g.param("w", (4,))
    r1, r2 = g.add("relu", [x]), g.add("relu", [x])
    s1, s2 = g.add("add", [r1, w]), g.add("add", [w, r2])       # a + b == b + a
    d1 = g.add("sub", [s1, w])
    d2 = g.add("sub", [w, s2])                                  # not commutative: kept
    c1 = g.constant(np.full(4, 2.0, np.float32), name="two")
    c2 = g.constant(np.full(4, 2.0, np.float32), name="also_two")
    m1, m2 = g.add("mul", [d1, c1]), g.add("mul", [d1, c2])
    g.set_outputs([m1, m2, d2, s2], ["m1", "m2", "d2", "s2"])
    out = check_pass(cse, g)
    assert counts(out) == Counter(input=1, param=1, relu=1, add=1, sub=2, constant=1, mul=1)
    assert out.outputs[0] is out.outputs[1]


def test_cse_keeps_different_attrs_constants_sources_and_dropout():
    g = Graph("keep")
    x = g.input("x", (2, 4))
    y = g.input("y", (2, 4))                    # same type as x: still two inputs
    seed = g.input("seed", (), "int64")
    a = g.add("leaky_relu", [x], alpha=0.1)
    b = g.add("leaky_relu", [x], alpha=0.2)
    z = g.constant(np.zeros((2, 4), np.float32))
    nz = g.constant(-np.zeros((2, 4), np.float32))  # -0.0: other bytes, kept apart
    p1 = g.add("dropout", [x, seed], p=0.5, salt=1)
    p2 = g.add("dropout", [x, seed], p=0.5, salt=1)
    outs = [a, b, g.add("sub", [y, z]), g.add("sub", [y, nz]), p1, p2]
    g.set_outputs(outs)
    out = check_pass(cse, g)
    assert counts(out) == counts(g)
    assert str(out) == str(g)


def test_cse_merges_multi_output_nodes():
    g = Graph()
    x = g.input("x", (4, 3, 2, 2))
    w = g.constant(np.ones(3, np.float32))
    b = g.constant(np.zeros(3, np.float32))
    n1 = g.add_node("batch_norm_train", [x, w, b], {"eps": 1e-5})
    n2 = g.add_node("batch_norm_train", [x, w, b], {"eps": 1e-5})
    g.set_outputs([n1.outputs[0], n2.outputs[0], n2.outputs[2]], ["y1", "y2", "var"])
    out = check_pass(cse, g)
    assert counts(out)["batch_norm_train"] == 1 and counts(out)["constant"] == 2


# ---- constant folding --------------------------------------------------------------------

def test_constant_folding_evaluates_constant_subgraphs_once():
    g = Graph("fold")
    x = g.input("x", (2, 3, 4))
    c = g.constant(np.arange(12, dtype=np.float64).reshape(3, 4), name="c")
    scale = g.add("mul", [c, g.constant(0.5, dtype="float64")])
    shifted = g.add("tanh", [g.add("reshape", [scale], shape=(1, 3, 4))])
    xd = g.input("xd", (2, 3, 4), "float64")
    y = g.add("add", [xd, shifted])
    z = g.add("relu", [x])
    g.set_outputs([y, z, shifted], ["y", "z", "folded"])
    out = check_pass(constant_folding, g)
    assert ops(out) == ["input", "constant", "input", "add", "relu"]
    folded = out.nodes[1].attrs["value"]
    assert folded.dtype == np.float64
    np.testing.assert_allclose(folded, np.tanh(np.arange(12.0).reshape(1, 3, 4) * 0.5))
    assert out.outputs[2] is out.nodes[1].output        # an output may become a constant


def test_constant_folding_folds_every_output_of_a_node():
    g = Graph()
    c = g.constant(RNG.normal(size=(4, 3, 2, 2)).astype(np.float32))
    w = g.constant(np.ones(3, np.float32))
    node = g.add_node("batch_norm_train", [c, w, g.constant(np.zeros(3, np.float32))],
                      {"eps": 1e-5})
    x = g.input("x", (3,))
    g.set_outputs([g.add("add", [x, node.outputs[1]]), node.outputs[2]])
    out = check_pass(constant_folding, g)
    assert counts(out) == Counter(constant=2, input=1, add=1)


def test_constant_folding_skips_huge_results_and_says_why(caplog):
    g = Graph()
    one = g.constant(np.float32(1.0))
    big = g.add("broadcast_to", [one], shape=(8193, 2048))         # 64 MiB + 32 KiB
    small = g.add("broadcast_to", [one], shape=(2, 2))
    g.set_outputs([big, small])
    with caplog.at_level(logging.INFO, logger="graphcnn.passes"):
        out = constant_folding(g)
    assert ops(out) == ["constant", "broadcast_to", "constant"]
    assert "broadcast_to" in caplog.text and "bytes" in caplog.text
    out = constant_folding(g, limit_bytes=8)
    assert ops(out) == ["constant", "broadcast_to", "broadcast_to"]


def test_constant_folding_leaves_fed_values_alone():
    g = Graph()
    x = g.input("x", (2, 3))
    p = g.param("p", (3,))
    g.set_outputs([g.add("add", [x, p]), g.add("relu", [p])])
    out = check_pass(constant_folding, g)
    assert str(out) == str(g)


# ---- algebraic simplification ------------------------------------------------------------

def test_simplify_identities_of_data_movement():
    g = Graph("moves")
    x = g.input("x", (2, 3, 4))
    a = g.add("reshape", [x], shape=(0, 3, -1))              # the same shape
    b = g.add("flatten", [g.add("relu", [a])], start_dim=2)  # flattens one axis: same shape
    c = g.add("broadcast_to", [b], shape=(2, 3, 4))
    d = g.add("sum_to", [c], shape=(2, 3, 4))
    e = g.add("slice", [d], starts=(0, 0, 0), ends=(2, 3, 4))
    f = g.add("pad", [e], pads=((0, 0), (0, 0), (0, 0)), value=3.0)
    h = g.add("concat", [f], axis=1)
    part = g.add("slice", [h], starts=(0, 1, 0), ends=(2, 3, 4))   # a real slice: kept
    padded = g.add("pad", [h], pads=((0, 0), (1, 0), (0, 0)))      # a real pad: kept
    g.set_outputs([h, part, padded], ["h", "part", "padded"])
    out = check_pass(algebraic_simplification, g)
    assert ops(out) == ["input", "relu", "slice", "pad"]


def test_simplify_reshape_chains_become_one_reshape():
    g = Graph("chain")
    x = g.input("x", (2, 3, 4))
    r = g.add("reshape", [x], shape=(6, 4))
    f = g.add("flatten", [r], start_dim=0)
    back = g.add("reshape", [g.add("reshape", [f], shape=(4, 6))], shape=(2, 3, 4))
    other = g.add("reshape", [g.add("flatten", [f], start_dim=0)], shape=(3, -1))
    g.set_outputs([back, other, r], ["back", "other", "r"])
    out = check_pass(algebraic_simplification, g)
    # back: the identity of x; other: one reshape of x; r: still needed as an output
    assert ops(out) == ["input", "reshape", "reshape"]
    assert out.outputs[0] is out.inputs[0]
    assert out.outputs[1].node.inputs[0] is out.inputs[0]
    assert out.outputs[1].node.attrs["shape"] == (3, 8)


def test_simplify_arithmetic_identities_only_without_broadcasting():
    g = Graph("arith")
    x = g.input("x", (2, 3))
    v = g.input("v", (3,))
    ones = g.constant(np.ones(3, np.float32))
    zeros = g.constant(np.zeros((1, 3), np.float32))
    big_ones = g.constant(np.ones((2, 3), np.float32))
    halves = g.constant(np.full(3, 0.5, np.float32))
    removed = [g.add("mul", [x, ones]), g.add("mul", [ones, x]), g.add("div", [x, ones]),
               g.add("add", [x, zeros]), g.add("add", [zeros, x]), g.add("sub", [x, zeros])]
    kept = [g.add("mul", [v, big_ones]),        # broadcasts v up to (2, 3)
            g.add("sub", [zeros, x]),           # -x
            g.add("div", [ones, v]),            # 1 / v
            g.add("mul", [x, halves])]          # not all ones
    g.set_outputs(removed + kept)
    out = check_pass(algebraic_simplification, g)
    assert all(v is out.inputs[0] for v in out.outputs[:6])
    assert counts(out) == Counter(input=2, constant=4, mul=2, sub=1, div=1)


def test_simplify_drops_dropout_with_p_zero():
    g = Graph()
    x = g.input("x", (2, 3))
    seed = g.input("seed", (), "int64")
    g.set_outputs([g.add("dropout", [x, seed], p=0.0, salt=1),
                   g.add("dropout", [x, seed], p=0.25, salt=2)])
    out = check_pass(algebraic_simplification, g)
    assert counts(out)["dropout"] == 1 and out.outputs[0] is out.inputs[0]


# ---- batch-norm folding ------------------------------------------------------------------

def _bn_constants(g: Graph, channels: int, dtype=np.float32, var=None, prefix="bn"):
    gamma = RNG.uniform(0.5, 1.5, channels)
    beta = RNG.normal(size=channels)
    mean = RNG.normal(size=channels)
    var = RNG.uniform(0.2, 3.0, channels) if var is None else var
    return [g.constant(np.asarray(a, dtype), name=f"{prefix}.{n}") for a, n in
            zip((gamma, beta, mean, var), ("weight", "bias", "running_mean", "running_var"))]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batch_norm_into_conv2d(bias, groups):
    g = Graph("convbn")
    x = g.input("x", (2, 4, 7, 7))
    w = g.constant(RNG.normal(size=(6, 4 // groups, 3, 3)).astype(np.float32), name="w")
    args = [x, w] + ([g.constant(RNG.normal(size=6).astype(np.float32), name="b")]
                     if bias else [])
    y = g.add("conv2d", args, stride=2, padding=1, groups=groups, loc="net.py:3")
    z = g.add("batch_norm", [y] + _bn_constants(g, 6), eps=1e-3)
    g.set_outputs([g.add("relu", [z])], ["out"])
    out = check_pass(fold_batch_norm, g, tol=1e-4)
    assert ops(out) == ["input", "constant", "constant", "conv2d", "relu"]
    conv = out.nodes_of("conv2d")[0]
    assert conv.loc == "net.py:3" and conv.attrs == g.nodes_of("conv2d")[0].attrs
    assert conv.inputs[1].dtype == "float32" and conv.inputs[2].dtype == "float32"


def test_fold_batch_norm_into_linear_float64():
    g = Graph()
    x = g.input("x", (3, 5), "float64")
    y = g.add("linear", [x, g.constant(RNG.normal(size=(4, 5)), name="fc.weight"),
                         g.constant(RNG.normal(size=4), name="fc.bias")])
    z = g.add("batch_norm", [y] + _bn_constants(g, 4, np.float64), eps=1e-5)
    g.set_outputs([z])
    out = check_pass(fold_batch_norm, g, tol=1e-10)
    assert ops(out) == ["input", "constant", "constant", "linear"]


def test_fold_batch_norm_leaves_shared_fed_and_output_convs():
    g = Graph()
    x = g.input("x", (2, 3, 5, 5))
    w = g.constant(RNG.normal(size=(3, 3, 1, 1)).astype(np.float32))
    shared = g.add("conv2d", [x, w])
    bn1 = g.add("batch_norm", [shared] + _bn_constants(g, 3, prefix="a"))
    fed = g.add("conv2d", [x, g.param("pw", (3, 3, 1, 1))])
    bn2 = g.add("batch_norm", [fed] + _bn_constants(g, 3, prefix="b"))
    out_conv = g.add("conv2d", [x, w], padding=1)
    bn3 = g.add("batch_norm", [out_conv] + _bn_constants(g, 3, prefix="c"))
    gamma = g.param("d.weight", (3,))                           # a fed batch-norm weight
    bn4 = g.add("batch_norm", [g.add("conv2d", [x, w], stride=2), gamma]
                + [g.constant(a.astype(np.float32)) for a in
                   (RNG.normal(size=3), RNG.normal(size=3), RNG.uniform(0.5, 2, 3))])
    g.set_outputs([bn1, g.add("relu", [shared]), bn2, bn3, out_conv, bn4])
    out = check_pass(fold_batch_norm, g, tol=1e-4)
    assert str(out) == str(g)


def test_fold_batch_norm_declines_zero_variance_without_eps(caplog):
    g = Graph()
    x = g.input("x", (2, 3, 4, 4))
    y = g.add("conv2d", [x, g.constant(RNG.normal(size=(3, 3, 3, 3)).astype(np.float32))])
    var = np.array([1.0, 0.0, 2.0])
    z = g.add("batch_norm", [y] + _bn_constants(g, 3, var=var), eps=0.0, loc="m.py:9")
    g.set_outputs([z])
    with caplog.at_level(logging.INFO, logger="graphcnn.passes"):
        out = fold_batch_norm(g)
    assert str(out) == str(g)
    assert "m.py:9" in caplog.text and "running_var + eps <= 0" in caplog.text


# ---- the pipelines -----------------------------------------------------------------------

def test_pipelines_are_plain_lists():
    assert PIPELINES[0] == []
    assert PIPELINES[1][0] is dead_code_elimination
    assert sorted(PIPELINES) == [0, 1, 2]   # the levels --opt-level offers
    assert fold_batch_norm in PIPELINES[2] and cse in PIPELINES[2]
    assert isinstance(PIPELINES[2], list)


def conv_bn_model(eps: float = 1e-5, zero_var: bool = False, dropout: float = 0.0) -> gc.Model:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=eps), nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2, bias=False), nn.BatchNorm2d(8, eps=eps), nn.ReLU6(),
        nn.Dropout(dropout), nn.Flatten(), nn.Linear(8 * 6 * 6, 5),
        input_shape=(3, 8, 8))
    params = model.parameters()
    for name in ("1", "4"):
        params[f"{name}.weight"][...] = RNG.uniform(0.5, 1.5, 8)
        params[f"{name}.bias"][...] = RNG.normal(size=8)
        params[f"{name}.running_mean"][...] = RNG.normal(size=8)
        params[f"{name}.running_var"][...] = RNG.uniform(0.3, 2.0, 8)
    if zero_var:
        params["1.running_var"][2] = 0.0
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_bn_model_same_outputs_fewer_kernels(backend):
    model = conv_bn_model()
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
    exe0 = gc.compile(model, batch_size=2, backend=backend, opt_level=0)
    exe2 = gc.compile(model, batch_size=2, backend=backend, opt_level=2)
    np.testing.assert_allclose(exe2(x), exe0(x), rtol=1e-4, atol=1e-4)
    # conv bn relu conv bn clip flatten linear (the cpu runs flatten as a view: no kernel)
    assert exe0.report()["kernels"] == (8 if backend == "reference" else 7)
    # conv+relu and conv+clip fuse; on cpu the flatten is a view of its input's memory
    assert exe2.report()["kernels"] == (4 if backend == "reference" else 3)
    assert not exe2.graph.nodes_of("batch_norm")


def test_conv_bn_model_declines_zero_variance(caplog):
    model = conv_bn_model(eps=0.0, zero_var=True)
    graph = model.graph(2)
    with caplog.at_level(logging.INFO, logger="graphcnn.passes"):
        folded = fold_batch_norm(graph)
    assert len(folded.nodes_of("batch_norm")) == 1        # the second one still folds
    assert "running_var + eps <= 0 in channel(s) [2]" in caplog.text
    single = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, eps=0.0), input_shape=(3, 2, 2))
    single.parameters()["1.running_var"][...] = 0.0
    g = single.graph(1)
    assert str(fold_batch_norm(g)) == str(g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_graphs_same_loss_and_grads(backend):
    model = conv_bn_model(dropout=0.3)
    x = RNG.normal(size=(4, 3, 8, 8)).astype(np.float32)
    labels = np.array([0, 4, 2, 1])
    saved = {k: v.copy() for k, v in model.parameters().items()}
    results = []
    for level in (0, 2):
        model.load_parameters(saved)
        gc.manual_seed(7)                         # the same dropout seeds
        step = gc.value_and_grad(model, batch_size=4, backend=backend, opt_level=level)
        results.append(step(x, labels))
    (loss0, grads0), (loss2, grads2) = results
    np.testing.assert_allclose(loss2, loss0, rtol=1e-5)
    assert grads2.keys() == grads0.keys()
    for name in grads0:
        np.testing.assert_allclose(grads2[name], grads0[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def _zoo():
    models = [("lenet5", lambda: gc.models.lenet5(), (1, 32, 32))]
    if hasattr(gc.models, "resnet18"):
        models.append(("resnet18", lambda: gc.models.resnet18(
            10, width=8, input_size=32), (3, 32, 32)))
    if hasattr(gc.models, "mobilenet_v2"):
        models.append(("mobilenet_v2", lambda: gc.models.mobilenet_v2(
            10, width_mult=0.25, input_size=32), (3, 32, 32)))
    return models


@pytest.mark.parametrize("name,build,shape", _zoo(), ids=[m[0] for m in _zoo()])
def test_zoo_models_agree_at_opt_level_2(name, build, shape):
    model = build()
    for key, value in model.parameters().items():      # non-trivial statistics
        if key.endswith("running_var"):
            value[...] = RNG.uniform(0.5, 2.0, value.shape)
        elif key.endswith("running_mean"):
            value[...] = RNG.normal(0, 0.2, value.shape)
    x = RNG.normal(size=(2,) + shape).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    for backend in BACKENDS:
        exe = gc.compile(model, batch_size=2, backend=backend, opt_level=2)
        np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-4, err_msg=backend)
        report = exe.report()
        assert report["kernels"] <= report["ops_before"]
        if any(n.op == "batch_norm" for n in model.graph(2).nodes):
            assert report["kernels"] < report["ops_before"]


# ---- randomized graphs through every pipeline --------------------------------------------


@st.composite
def random_graphs(draw) -> Graph:
    """Small graphs of (2, 3, 4) values mixing inputs and constants (ones, zeros, random)
    through elementwise, broadcasting and data-movement ops, with duplicated work."""
    g = Graph("random")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = (2, 3, 4)
    values = [g.input("x", shape), g.input("y", shape)]
    const_kinds = st.sampled_from(["ones", "zeros", "random"])
    const_shapes = st.sampled_from([shape, (4,), (3, 1), ()])
    for _ in range(draw(st.integers(1, 4))):
        kind, cshape = draw(const_kinds), draw(const_shapes)
        make = {"ones": np.ones, "zeros": np.zeros}.get(kind, lambda s: rng.normal(size=s))
        array = make(cshape)
        c = g.constant(np.asarray(array, np.float32))
        if c.shape != shape:
            c = g.add("broadcast_to", [c], shape=shape) if draw(st.booleans()) else \
                g.add("add", [c, g.constant(np.zeros(shape, np.float32))])
        values.append(c)
    for _ in range(draw(st.integers(2, 10))):
        pick = lambda: values[draw(st.integers(0, len(values) - 1))]  # noqa: E731
        op = draw(st.sampled_from(["relu", "tanh", "add", "sub", "mul", "reshape_chain",
                                   "identity_moves", "slice_pad", "repeat"]))
        if op in ("relu", "tanh"):
            v = g.add(op, [pick()])
        elif op in ("add", "sub", "mul"):
            v = g.add(op, [pick(), pick()])
        elif op == "reshape_chain":
            v = g.add("reshape", [g.add("flatten", [pick()], start_dim=draw(st.integers(0, 2)))],
                      shape=(0, -1))
            v = g.add("reshape", [v], shape=shape)
        elif op == "identity_moves":
            v = g.add("sum_to", [g.add("slice", [pick()], starts=(0, 0, 0), ends=shape)],
                      shape=shape)
        elif op == "slice_pad":
            v = g.add("pad", [g.add("slice", [pick()], starts=(0, 1, 0), ends=shape)],
                      pads=((0, 0), (1, 0), (0, 0)))
        else:                                      # the same op on the same inputs again
            node = values[-1].node
            v = g.add_node(node.op, node.inputs, dict(node.attrs)).outputs[0] \
                if node.op not in ("input", "constant") else g.add("relu", [values[-1]])
        values.append(v)
    g.set_outputs(values[-draw(st.integers(1, 3)):])
    return g


@given(random_graphs(), st.sampled_from([1, 2, 3]))
def test_pipelines_keep_results_of_random_graphs(graph, level):
    from graphcnn.passes import run_pipeline

    text = str(graph)
    optimized, _ = run_pipeline(graph, level)
    assert str(graph) == text
    assert len(optimized.compute_nodes()) <= len(graph.compute_nodes())
    feeds = random_feeds(graph)
    want = run(graph, feeds, "reference")
    got = run(optimized, feeds, "reference")
    for w, o in zip(want, got):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)

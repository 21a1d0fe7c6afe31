"""batch_norm_to_affine (graphcnn/passes/bn_affine.py): an inference batch norm that
batch-norm folding leaves becomes sub/mul/add, alone on a graph (its ops before and after,
the batch norms it keeps) and through the whole pipeline (kernel counts, numbers against
opt level 0 on the cpu backend, a small zoo DenseNet)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.ir import Graph
from graphcnn.ir.verify import verify
from graphcnn.models.densenet import densenet
from graphcnn.ops.fused import member_ops
from graphcnn.passes import PIPELINES
from graphcnn.passes.bn_affine import batch_norm_to_affine
from graphcnn.passes.bn_folding import fold_batch_norm
from graphcnn.runtime.executable import make_runner

RNG = np.random.default_rng(77)


def _bn_constants(g: Graph, channels: int, dtype=np.float32, mean: np.ndarray | None = None,
                  var: np.ndarray | None = None, weight: np.ndarray | None = None
                  ) -> list:
    gamma = RNG.uniform(0.5, 1.5, channels) if weight is None else weight
    beta = RNG.normal(size=channels)
    mean = RNG.normal(size=channels) if mean is None else mean
    var = RNG.uniform(0.2, 3.0, channels) if var is None else var
    return [g.constant(np.asarray(a, dtype), name=f"bn.{n}") for a, n in
            zip((gamma, beta, mean, var), ("weight", "bias", "running_mean", "running_var"))]


def _bn_relu_graph(shape: tuple[int, ...], dtype: str = "float32", **bn) -> Graph:
    g = Graph("bn_relu")
    x = g.input("x", shape, dtype)
    eps = bn.pop("eps", 1e-5)
    z = g.add("batch_norm", [x] + _bn_constants(g, shape[1], dtype, **bn), eps=eps,
              loc="net.py:4")
    g.set_outputs([g.add("relu", [z])], ["out"])
    return g


def _run(graph: Graph, x: np.ndarray, backend: str) -> np.ndarray:
    return make_runner(graph, backend).run({graph.inputs[0].id: x})[0]


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_pass_alone_makes_sub_mul_add_that_compute_the_batch_norm(shape, dtype):
    g = _bn_relu_graph(shape, dtype)
    text = str(g)
    out = batch_norm_to_affine(g)
    assert str(g) == text, "the pass changed its input graph"
    verify(out)
    ops = [n.op for n in out.nodes if n.op != "constant"]
    assert ops == ["input", "sub", "mul", "add", "relu"]
    channel = (shape[1],) + (1,) * (len(shape) - 2)
    for node in out.nodes_of("sub") + out.nodes_of("mul") + out.nodes_of("add"):
        assert node.loc == "net.py:4"
        assert node.inputs[1].shape == channel and node.inputs[1].dtype == dtype
    x = RNG.normal(size=shape).astype(dtype)
    want = _run(g, x, "reference")
    tol = 1e-5 if dtype == "float32" else 1e-12
    for backend in ("reference", "cpu"):
        got = _run(out, x, backend)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=backend)


def test_a_large_mean_against_a_small_spread_keeps_the_reference_digits():
    # With x * scale + (bias - mean * scale), float32 would cancel 1e4 * 10 against
    # itself and keep about 3 digits of the result; x - mean first keeps them all.
    g = _bn_relu_graph((2, 3, 4, 4), mean=np.full(3, 1e4), var=np.full(3, 1e-2))
    x = (1e4 + RNG.normal(0, 0.1, (2, 3, 4, 4))).astype(np.float32)
    want = _run(g, x, "reference")
    got = _run(batch_norm_to_affine(g), x, "cpu")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["zero_variance", "infinite_weight", "scale_overflow"])
def test_declines_where_folding_does_and_keeps_the_batch_norm(case, caplog):
    if case == "zero_variance":
        g = _bn_relu_graph((2, 3, 4, 4), eps=0.0, var=np.array([1.0, 0.0, 2.0]))
        reason = "running_var + eps <= 0 in channel(s) [1]"
    elif case == "infinite_weight":
        g = _bn_relu_graph((2, 3), weight=np.array([1.0, np.inf, 1.0]))
        reason = "not finite"
    else:   # finite in float64, infinite in float32: 1 / sqrt(1e-90)
        g = _bn_relu_graph((2, 3), eps=1e-90, var=np.zeros(3))
        reason = "its scale overflows float32"
    with caplog.at_level(logging.INFO, logger="graphcnn.passes"):
        out = batch_norm_to_affine(g)
    assert str(out) == str(g)
    assert "net.py:4" in caplog.text and reason in caplog.text
    # and the whole pipeline keeps the reference's infinities and NaNs
    model_x = RNG.normal(size=g.inputs[0].shape).astype(np.float32)
    model_x[0, 0] = np.inf
    with np.errstate(all="ignore"):     # the reference's 1 / 0 and overflowing cast
        want = _run(g, model_x, "reference")
    got = _run(out, model_x, "cpu")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


def test_training_graphs_and_fed_statistics_are_left_alone():
    g = Graph()
    x = g.input("x", (4, 3, 2, 2))
    stats = [g.constant(a.astype(np.float32)) for a in
             (RNG.normal(size=3), RNG.normal(size=3), RNG.uniform(0.5, 2, 3))]
    fed = g.add("batch_norm", [x, g.param("bn.weight", (3,))] + stats)
    y, mean, var = g.add_node("batch_norm_train", [x, g.param("t.weight", (3,)),
                                                   g.param("t.bias", (3,))],
                              {"eps": 1e-5}).outputs
    g.set_outputs([fed, y, mean, var])
    assert str(batch_norm_to_affine(g)) == str(g)


def test_it_runs_after_folding_so_conv_batch_norms_still_fold():
    level2 = PIPELINES[2]
    assert level2.index(fold_batch_norm) < level2.index(batch_norm_to_affine)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          input_shape=(3, 6, 6))
    exe = gc.compile(model, batch_size=1, backend="reference")
    assert [member_ops(n.attrs) for n in exe.graph.nodes_of("fused")] == \
        [["conv2d", "relu"]]


def _dense_block_model() -> gc.Model:
    """concat -> batch_norm -> relu -> 1x1 conv, as in a DenseNet layer."""
    x = gc.Input((4, 5, 5), name="x")
    grown = nn.Conv2d(4, 2, 3, padding=1, bias=False)(x)
    h = gc.concat([x, grown], axis=1)
    h = gc.relu(nn.BatchNorm2d(6)(h))
    model = gc.Model(inputs=x, outputs=nn.Conv2d(6, 3, 1, bias=False)(h), name="dense")
    _randomize(model)
    return model


def _randomize(model: gc.Model) -> None:
    for key, value in model.parameters().items():
        if key.endswith("running_var"):
            value[...] = RNG.uniform(0.5, 2.0, value.shape)
        elif key.endswith(("running_mean", "bias")):
            value[...] = RNG.normal(0, 0.5, value.shape)
        elif key.endswith("weight") and value.ndim == 1:
            value[...] = RNG.uniform(0.5, 1.5, value.shape)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_dense_block_runs_batch_norm_and_relu_as_one_kernel(backend):
    model = _dense_block_model()
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    exe0 = gc.compile(model, batch_size=2, backend=backend, opt_level=0)
    exe2 = gc.compile(model, batch_size=2, backend=backend, opt_level=2)
    # conv, concat, batch_norm, relu, conv at opt level 0; the batch norm and relu are
    # one kernel at opt level 2, and on the cpu backend (batch 2) the concatenation too,
    # written part by part through them (passes/concat_epilogue.py)
    assert exe0.report()["kernels"] == 5
    assert exe2.report()["kernels"] == (4 if backend == "reference" else 3)
    assert not exe2.graph.nodes_of("batch_norm")
    assert [member_ops(n.attrs) for n in exe2.graph.nodes_of("fused")] == \
        [(["concat"] if backend == "cpu" else []) + ["sub", "mul", "add", "relu"]]
    np.testing.assert_allclose(exe2(x), exe0(x), rtol=1e-5, atol=1e-5)


def test_batch_norm_of_a_2d_input_on_cpu_equals_opt_level_0():
    x_in = gc.Input((6,), name="x")
    h = gc.relu(nn.BatchNorm1d(6)(x_in))
    model = gc.Model(inputs=x_in, outputs=nn.Linear(6, 3)(h), name="mlp")
    _randomize(model)
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    want = gc.compile(model, batch_size=4, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=4, backend="cpu", opt_level=2)
    assert not exe.graph.nodes_of("batch_norm")
    np.testing.assert_allclose(exe(x), want, rtol=1e-5, atol=1e-5)


def test_small_zoo_densenet_on_cpu_equals_the_reference():
    model = densenet(5, growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
                     input_size=32, name="densenet_small")
    _randomize(model)
    x = RNG.normal(size=(1, 3, 32, 32)).astype(np.float32)
    want = gc.compile(model, batch_size=1, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=1, backend="cpu", opt_level=2)
    assert not exe.graph.nodes_of("batch_norm")
    groups = [member_ops(n.attrs) for n in exe.graph.nodes_of("fused")]
    # norm1 of each layer, each transition's and norm5 run with their relu
    assert groups.count(["sub", "mul", "add", "relu"]) == 2 * 2 + 1 + 1, groups
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", ["avg_pool2d", "max_pool2d"])
def test_a_batch_norm_after_a_pooling_joins_its_epilogue(pool):
    x_in = gc.Input((4, 6, 6), name="x")
    layer = nn.AvgPool2d(2) if pool == "avg_pool2d" else nn.MaxPool2d(2)
    model = gc.Model(inputs=x_in, outputs=gc.relu(nn.BatchNorm2d(4)(layer(x_in))))
    _randomize(model)
    x = RNG.normal(size=(2, 4, 6, 6)).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=2, backend="cpu")
    assert exe.report()["kernels"] == 1
    assert [member_ops(n.attrs) for n in exe.graph.nodes_of("fused")] == \
        [[pool, "sub", "mul", "add", "relu"]]
    np.testing.assert_allclose(exe(x), want, rtol=1e-5, atol=1e-5)

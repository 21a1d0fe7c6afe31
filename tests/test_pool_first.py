"""An average pool after a 1x1 convolution goes before it (passes/pool_first.py): the pass
alone (before/after graphs, where it must not apply) and its numbers against the graph as
built, on the reference and cpu backends; DenseNet's transition layers."""
from __future__ import annotations

import numpy as np
import pytest
from test_fusion import randomize_bn_statistics

import graphcnn as gc
from graphcnn.ir import Graph
from graphcnn.ir.verify import verify
from graphcnn.models.densenet import densenet
from graphcnn.passes.pool_first import pool_before_pointwise_conv
from graphcnn.runtime.executable import make_runner

RNG = np.random.default_rng(12)


def _graph(kernel: int = 1, pool_padding: int = 0, pool: tuple[int, int] = (2, 2),
           also_read_conv: bool = False, bias: bool = True, ceil_mode: bool = False) -> Graph:
    g = Graph("transition")
    x = g.input("x", (2, 6, 7, 7))
    w = g.constant(RNG.normal(size=(4, 6, kernel, kernel)).astype(np.float32))
    operands = [x, w] + ([g.constant(RNG.normal(size=4).astype(np.float32))] if bias else [])
    y = g.add("conv2d", operands, padding=kernel // 2)
    outputs = [g.add("avg_pool2d", [y], kernel_size=pool[0], stride=pool[1],
                     padding=pool_padding, ceil_mode=ceil_mode)]
    if also_read_conv:
        outputs.append(g.add("relu", [y]))
    g.set_outputs(outputs)
    return g


def _results(graph: Graph, backend: str, x: np.ndarray) -> list[np.ndarray]:
    return make_runner(graph, backend).run({graph.inputs[0].id: x})


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_the_pool_goes_first_and_the_results_stay(bias, ceil_mode):
    before = _graph(bias=bias, ceil_mode=ceil_mode)
    after = pool_before_pointwise_conv(before)
    verify(after)
    assert [n.op for n in before.compute_nodes()] == ["conv2d", "avg_pool2d"]
    assert [n.op for n in after.compute_nodes()] == ["avg_pool2d", "conv2d"]
    assert after.outputs[0].type == before.outputs[0].type
    x = RNG.normal(size=(2, 6, 7, 7)).astype(np.float32)
    want = _results(before, "reference", x)[0]
    for backend in ("reference", "cpu"):
        np.testing.assert_allclose(_results(after, backend, x)[0], want, rtol=1e-5,
                                   atol=1e-5, err_msg=backend)


@pytest.mark.parametrize("case", [dict(kernel=3), dict(pool_padding=1),
                                  dict(pool=(1, 1)), dict(also_read_conv=True)],
                         ids=["3x3 conv", "padded pool", "pool keeps the size",
                              "conv read twice"])
def test_the_pass_leaves_the_order_where_it_would_change_or_save_nothing(case):
    graph = _graph(**case)
    assert pool_before_pointwise_conv(graph) is graph


def test_densenet_transitions_convolve_the_pooled_pixels():
    model = densenet(10, growth_rate=8, block_config=(2, 2, 2), num_init_features=16,
                     input_size=32)
    randomize_bn_statistics(model)
    x = RNG.standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=2)
    order = [n.op for n in exe.graph.nodes if n.op in ("avg_pool2d", "conv2d")]
    # each of the two transitions: its pool, then its 1x1 conv on the pooled pixels
    pooled = [i for i, op in enumerate(order) if op == "avg_pool2d"]
    assert len(pooled) == 2 and all(order[i + 1] == "conv2d" for i in pooled)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, ceil_mode", [((2, 3, 8, 6), False), ((1, 2, 7, 5), False),
                                              ((1, 2, 7, 5), True)])
def test_the_2x2_average_pool_path_gives_the_generic_kernels_bits(shape, ceil_mode):
    """The unpadded 2x2 stride-2 average pool (DenseNet's transitions) has a path of its
    own in the cpu kernel: the same float64 sums, in the same order, as the window loop;
    odd sizes floor (or, in ceil mode, take the window loop for their partial windows)."""
    from op_check import forward

    from graphcnn.backends.cpu.kernels.pool import avg_pool2d_task
    from graphcnn.ops.pool import pool_out_hw
    attrs = {"kernel_size": 2, "stride": 2, "ceil_mode": ceil_mode}
    x = RNG.normal(size=shape).astype(np.float32)
    (got,) = forward("avg_pool2d", [x], attrs, "cpu")
    (want,) = forward("avg_pool2d", [x], attrs, "reference")
    norm = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0), "ceil_mode": ceil_mode}
    generic = np.empty((shape[0], shape[1]) + pool_out_hw(shape[2:], norm), np.float32)
    for task in range(shape[0] * shape[1]):
        avg_pool2d_task(task, x.reshape(-1), generic.reshape(-1), *shape[2:],
                        *generic.shape[2:], 2, 2, 2, 2, 0, 0, True)
    np.testing.assert_array_equal(got, generic)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

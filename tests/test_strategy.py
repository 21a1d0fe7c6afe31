"""The cpu backend's strategy (backends/cpu/strategy.py): which implementation runs each
node, chosen once when the runner is built and kept in its record, from the shape
predicates of graphcnn/ops/conv_shapes.py, the cost models and the autotuner."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu import autotune, blas
from graphcnn.backends.cpu.runner import CpuRunner
from graphcnn.backends.cpu.strategy import Site, choose, implementation
from graphcnn.ir.graph import Graph
from graphcnn.ops import conv_shapes


def conv_site(op, x_shape, w_shape, out_shape, frozen=False, dtype=np.float32, **attrs):
    attrs = dict(dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1), **attrs)
    dt = np.dtype(dtype)
    w = None
    if frozen:
        w = np.zeros(w_shape, dt)
        w.setflags(write=False)
    return Site(op, attrs, (x_shape, w_shape), (dt, dt), out_shape, dt, (None, w))


def test_the_shape_predicates():
    one = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    assert conv_shapes.is_pointwise((32, 16, 1, 1), one)
    assert not conv_shapes.is_pointwise((32, 16, 1, 1), dict(one, stride=(2, 2)))
    depthwise = dict(one, groups=24, padding=(1, 1, 1, 1))
    assert conv_shapes.is_depthwise_3x3(24, (24, 1, 3, 3), depthwise)
    assert not conv_shapes.is_depthwise_3x3(24, (24, 1, 3, 3), dict(depthwise, dilation=(2, 2)))
    assert conv_shapes.is_depthwise(24, (24, 1, 5, 5), depthwise)
    assert not conv_shapes.is_depthwise(1, (1, 1, 3, 3), one)  # one channel: a plain conv
    assert conv_shapes.is_unpadded_unit_stride(one)
    assert conv_shapes.is_full_window((64, 16, 5, 5), (120, 16, 5, 5), one)


def test_representative_nodes_get_their_implementations():
    # MobileNet's depthwise 3x3: too little work per group for a GEMM
    chosen, why = choose(conv_site("conv2d", (1, 32, 56, 56), (32, 1, 3, 3), (1, 32, 56, 56),
                                   groups=32, padding=(1, 1, 1, 1)))
    assert chosen.name == "depthwise-3x3" and why.startswith("depthwise 3x3")
    # LeNet-5's c1 (6 filters of 1x5x5, unpadded, at batch 64): the wide direct kernel
    c1 = conv_site("conv2d", (64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 28, 28))
    assert choose(c1)[0].name == "direct-wide"
    assert choose(conv_site("conv2d", (64, 1, 32, 32), (6, 1, 5, 5), (64, 6, 32, 32),
                            padding=(2, 2, 2, 2)))[0].name == "direct"
    # a 1x1 conv of GEMM size: the cost model's im2col-free GEMM among the packed ones
    chosen, why = choose(conv_site("conv2d", (1, 64, 14, 14), (64, 64, 1, 1), (1, 64, 14, 14)))
    assert chosen.name == "gemm" and why == "cost model, of gemm | packed | packed-channels | nchw16c"
    # NCHW16c: a 1x1 conv on a blocked input
    blocked = conv_site("conv2d_blocked", (1, 4, 14, 14, 16), (64, 64, 1, 1), (1, 4, 14, 14, 16))
    assert choose(blocked)[0].name == "nchw16c-1x1"


@pytest.mark.skipif(not blas.AVAILABLE, reason="numpy's OpenBLAS was not found: no Winograd")
def test_a_3x3_conv_with_autotune_off_takes_the_cost_models_choice(monkeypatch):
    """ResNet-18's 64@56 layer, frozen weights: every GEMM algorithm is a candidate;
    without measuring, the cost model's Winograd."""
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "0")
    site = conv_site("conv2d", (1, 64, 56, 56), (64, 64, 3, 3), (1, 64, 56, 56), frozen=True,
                     padding=(1, 1, 1, 1))
    chosen, why = choose(site)
    assert chosen.name == "winograd"
    assert why == ("cost model, of gemm | winograd | winograd-packed | packed | "
                   "packed-channels | implicit | nchw16c; outside the accuracy contract: "
                   "winograd-f4 "
                   "(declared 30x the GEMM's error)")


def test_ties_are_the_autotuners_with_the_same_key_as_before(monkeypatch):
    """The autotuner breaks the tie, asked with the op as its kind and the conv's key
    (shapes, geometry, dtype, frozen): the entries an on-disk cache already holds."""
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "1")
    asked = []
    monkeypatch.setattr(autotune, "pick", lambda kind, key, candidates, default: (
        asked.append((kind, key, sorted(candidates), default)) or "packed"))
    site = conv_site("conv2d", (1, 64, 14, 14), (64, 64, 1, 1), (1, 64, 14, 14), frozen=True)
    chosen, why = choose(site)
    assert chosen.name == "packed" and why.startswith("autotuned, of gemm")
    geometry = (("stride", (1, 1)), ("padding", (0, 0, 0, 0)), ("dilation", (1, 1)),
                ("groups", 1))
    assert asked == [("conv2d", ((1, 64, 14, 14), (64, 64, 1, 1), geometry, "<f4", "frozen"),
                      ["gemm", "nchw16c", "packed", "packed-channels"], "gemm")]


def test_dense_ops_go_to_blas_when_big_enough():
    def linear(batch, features):
        dt = np.dtype(np.float32)
        return Site("linear", {}, ((batch, features), (1000, features)), (dt, dt),
                    (batch, 1000), dt, (None, None))
    assert choose(linear(16, 512))[0].name == "blas"
    assert choose(linear(1, 512))[0].name == "columns"   # few rows: by columns (dense.py)
    assert choose(linear(1, 8))[0].name == "loops"


def lenet_runner():
    model = gc.models.lenet5()
    exe = gc.compile(model, batch_size=4)
    return model, exe


def test_the_runner_keeps_one_record_per_step_and_runs_it():
    model, exe = lenet_runner()
    runner = exe.runner
    records = runner.implementations()
    assert len(records) == len(runner.steps)
    assert [(op, name) for _, op, name, _ in records][:3] == [
        ("fused", "direct-wide"), ("avg_pool2d", "default"), ("fused", "gemm")]
    # the step calls the chosen function itself: nothing is looked up per call
    assert all(step.kernel is runner.chosen[step.node].run for step in runner.steps)
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    want = gc.compile(model, batch_size=4, backend="reference", opt_level=0)(x)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)


def test_no_process_wide_state_decides_a_kernel(monkeypatch):
    """A runner runs what it chose when it was built; a change of the cost model afterwards
    changes only runners built afterwards."""
    from graphcnn.backends.cpu.kernels import conv_gemm
    x = gc.Input((1, 16, 16), name="x")
    model = gc.Model(x, nn.Conv2d(1, 4, 5)(x))  # 5x5: no Winograd to offer
    graph = model.graph(2, training=False, frozen=True)
    before = CpuRunner(graph)
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)
    after = CpuRunner(graph)
    assert before.implementations()[0][2] == "direct-wide"
    assert after.implementations()[0][2] == "gemm"
    xs = np.random.default_rng(1).standard_normal((2, 1, 16, 16)).astype(np.float32)
    feeds = {graph.inputs[0].id: xs}
    np.testing.assert_allclose(before.run(feeds)[0], after.run(feeds)[0], rtol=1e-5, atol=1e-5)
    assert before.implementations()[0][2] == "direct-wide"


def test_saved_names_are_run_instead_of_choosing_again():
    model, exe = lenet_runner()
    graph = exe.graph
    c1 = next(n for n in graph.nodes if n.op == "fused")
    runner = CpuRunner(graph, exe.runner.plan, {c1.id: "direct"})
    record = runner.implementations()[0]
    assert record[:3] == (c1.id, "fused", "direct") and record[3].startswith("saved")
    with pytest.warns(RuntimeWarning, match="'winograd' of %.*does not apply here"):
        again = CpuRunner(graph, exe.runner.plan, {c1.id: "winograd"})
    assert again.implementations()[0][2] == "direct-wide"


def test_ops_without_a_strategy_run_their_kernel():
    from graphcnn.backends.cpu.registry import get_kernel
    g = Graph()
    y = g.add("softmax", [g.input("x", (2, 3))], axis=1)
    g.set_outputs([y])
    chosen = implementation(y.node, {})
    assert (chosen.name, chosen.run) == ("default", get_kernel("softmax"))
    assert chosen.workspace_bytes == 0 and chosen.prepack is None


def test_ops_with_a_scalar_formula_run_their_generated_kernel():
    g = Graph()
    x = g.input("x", (2, 3))
    y = g.add("relu", [x])
    g.set_outputs([y])
    chosen = implementation(y.node, {})
    assert chosen.name == "generated"
    data = np.array([[-1.0, 0.0, 2.0], [np.nan, -np.inf, 3.0]], np.float32)
    out = np.empty_like(data)
    chosen.run([data], [out], y.node.attrs)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 2.0], [np.nan, 0.0, 3.0]])


def test_a_fused_groups_anchor_is_tuned_with_the_groups_epilogue(monkeypatch):
    """conv + bias + add + relu: the autotuner times each candidate on the whole group (a
    candidate that applies the epilogue as it stores saves the pass the others make), under
    the conv's key and the epilogue's; every timed call computes the group's output."""
    from graphcnn.backends.cpu.candidates import Site as FusedSite
    from graphcnn.backends.cpu.strategy import fused_implementation
    from graphcnn.ops.conv import conv2d_ref

    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "1")
    rng = np.random.default_rng(0)
    conv_attrs = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    w = rng.standard_normal((32, 16, 1, 1)).astype(np.float32)
    w.setflags(write=False)
    b = rng.standard_normal(32).astype(np.float32)
    shapes = ((2, 16, 20, 20), w.shape, b.shape, (2, 32, 20, 20))
    attrs = {"anchor": "conv2d", "anchor_attrs": conv_attrs, "anchor_inputs": 3,
             "steps": (("add", {}, (-1, 3)), ("relu", {}, (-1,)))}
    f32 = np.dtype(np.float32)
    site = FusedSite("fused", attrs, shapes, (f32,) * 4, (2, 32, 20, 20), f32,
                     (None, w, b, None))
    asked, outputs = [], {}

    def pick(kind, key, candidates, default):
        asked.append((kind, key))
        for name, run in candidates.items():
            run()
            outputs[name] = site.scratch()[1].copy()
        return default
    monkeypatch.setattr(autotune, "pick", pick)
    fused_implementation(site, None)
    (kind, key), = asked
    assert kind == "conv2d" and key[-3] == "epilogue"
    assert [op for op, _, _ in key[-2]] == ["add", "relu"] and key[-1] == ((2, 32, 20, 20),)
    x, _, _, side = site.scratch()[0]
    want = np.maximum(conv2d_ref(x.astype(np.float64), w.astype(np.float64), b, **conv_attrs)
                      + side, 0)
    assert len(outputs) >= 2
    for name, out in outputs.items():
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4, err_msg=name)

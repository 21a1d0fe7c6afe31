"""A residual convolution writes its output over the residual it adds (memory_plan's
over_side): where the chosen kernel adds each element's side just before it stores it
(the packed, implicit and nchw16c GEMMs, and the blocked convs' tiles), the plan puts the
group's output in the side's bytes, so the block reads and writes one tensor instead of
reading one and writing another; where the kernel writes its output first (Winograd, then
the generated epilogue; packed-channels, then its epilogue from the cache), the plan
keeps them apart, and a side it finds there anyway (a plan made for other choices) is
copied first. Every way gives the reference's values."""
from __future__ import annotations

import numpy as np
import pytest
from test_blocked_layout import inverted_residual

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu.runner import CpuRunner
from graphcnn.backends.cpu.strategy import forced
from graphcnn.ir import Graph
from graphcnn.passes import run_pipeline
from graphcnn.runtime.executable import make_runner
from graphcnn.runtime.memory_plan import plan_memory

CHANNELS, SIZE, BATCH = 8, 10, 2


def residual_block() -> gc.Model:
    """A stem conv, then a basic block whose second conv adds the stem's output: the
    residual, read last by that add."""
    x = gc.Input((CHANNELS, SIZE, SIZE), name="image")
    h = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)(x))
    y = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)(h))
    y = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)(y) + h)
    return gc.Model(inputs=x, outputs=y)


def image(nonfinite: bool = False) -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((BATCH, CHANNELS, SIZE, SIZE))
    if nonfinite:
        x[0, 1, 2, 3], x[1, 0, 5, 5] = np.nan, np.inf
    return x.astype(np.float32)


def residual_node(graph: Graph):
    """(the fused conv + add node, the index of its side input: the residual)."""
    for node in graph.nodes_of("fused"):
        if any(step[0] == "add" for step in node.attrs["steps"]):
            head = node.attrs["anchor_inputs"]
            side = next(k for k, v in enumerate(node.inputs)
                        if k >= head and v.type == node.outputs[0].type)
            return node, side
    raise AssertionError("no residual group")


def reference(model: gc.Model, x: np.ndarray) -> np.ndarray:
    return gc.compile(model, batch_size=BATCH, backend="reference", opt_level=0)(x)


def compiled_with(algorithm: str):
    """(the residual block, compiled with every conv on `algorithm`, its residual node,
    that node's side input, whether the plan put the node's output over that side)."""
    model = residual_block()
    with forced({"conv2d": algorithm}):
        exe = gc.compile(model, batch_size=BATCH)
    node, side = residual_node(exe.graph)
    offsets = exe.runner.plan.offsets
    return model, exe, node, side, offsets[node.outputs[0].id] == offsets[node.inputs[side].id]


@pytest.mark.parametrize("algorithm", ["packed", "implicit", "nchw16c"])
def test_a_residual_conv_that_adds_as_it_stores_writes_over_its_residual(algorithm):
    model, exe, node, side, over = compiled_with(algorithm)
    assert exe.runner.chosen[node.id].name == algorithm
    assert exe.runner.chosen[node.id].side_in_place == side and over
    for nonfinite in (False, True):
        x = image(nonfinite)
        np.testing.assert_allclose(exe(x), reference(model, x), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(exe(x), exe(x))   # the residual is made afresh


@pytest.mark.parametrize("algorithm", ["winograd", "gemm", "packed-channels"])
def test_a_conv_that_writes_before_its_epilogue_keeps_its_residual_apart(algorithm):
    model, exe, node, side, over = compiled_with(algorithm)
    assert exe.runner.chosen[node.id].side_in_place is None and not over
    np.testing.assert_allclose(exe(image()), reference(model, image()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["winograd", "gemm", "packed-channels"])
def test_a_residual_found_in_the_output_of_a_kernel_that_writes_first_is_copied(algorithm):
    """A plan that puts the side in the output whatever the kernel (as an any-batch
    executable's, made for its largest batch's choices, may for another batch's): the
    step copies the side before its kernel writes, and the values stay the reference's."""
    model = residual_block()
    with forced({"conv2d": algorithm}):
        exe = gc.compile(model, batch_size=BATCH)
        graph = exe.graph
        node, side = residual_node(graph)
        plan = plan_memory(graph, over_side=lambda n: side if n.id == node.id else None)
        assert plan.offsets[node.outputs[0].id] == plan.offsets[node.inputs[side].id]
        runner = CpuRunner(graph, plan)
    (fed,) = [v.id for v in graph.inputs]
    for nonfinite in (False, True):
        x = image(nonfinite)
        (got,) = runner.run({fed: x})
        np.testing.assert_allclose(got, reference(model, x), rtol=1e-4, atol=1e-4)


def test_no_output_is_placed_over_a_residual_read_later_or_over_the_convs_own_input():
    """over_side is the kernel's permission; the plan still gives it only a side that
    dies at the group and that the anchor does not also read."""
    x = gc.Input((CHANNELS, SIZE, SIZE), name="image")
    h = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)(x))
    y = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)(h) + h)   # h is its input too
    z = gc.relu(nn.Conv2d(CHANNELS, CHANNELS, 1)(y) + y) * y          # y is read after
    model = gc.Model(inputs=x, outputs=z)
    with forced({"conv2d": "packed"}):
        exe = gc.compile(model, batch_size=BATCH)
    offsets = exe.runner.plan.offsets
    for node in exe.graph.nodes_of("fused"):
        outputs = {offsets.get(v.id) for v in node.outputs}
        assert not outputs & {offsets.get(v.id) for v in node.inputs}
    np.testing.assert_allclose(exe(image()), reference(model, image()), rtol=1e-4, atol=1e-4)


def test_an_any_batch_executable_runs_every_batch_over_its_largest_batchs_plan():
    model = residual_block()
    with forced({"conv2d": "packed"}):
        exe = gc.compile(model, batch_size=None, max_batch=BATCH + 2)
    x = np.random.default_rng(5).standard_normal((BATCH + 2, CHANNELS, SIZE, SIZE))
    x = x.astype(np.float32)
    want = gc.compile(model, batch_size=BATCH + 2, backend="reference", opt_level=0)(x)
    for batch in (1, BATCH + 2, 3):
        np.testing.assert_allclose(exe(x[:batch]), want[:batch], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [16, 20])
def test_a_blocked_projection_writes_over_the_residual_it_adds(channels):
    """MobileNetV2's block in NCHW16c: the 1x1 projection adds the block's input as it
    stores each vector, over that input's own bytes (the padding lanes of 20 channels
    included); the reference's values."""
    graph = inverted_residual(channels)
    fused, _ = run_pipeline(graph, 2, "cpu")
    runner = make_runner(fused, "cpu")
    node = next(n for n in fused.nodes_of("fused") if n.attrs["anchor"] == "conv2d_blocked"
                and any(step[0] == "add" for step in n.attrs["steps"]))
    chosen = runner.chosen[node.id]
    assert chosen.name == "nchw16c-1x1" and chosen.side_in_place is not None
    offsets = runner.plan.offsets
    assert offsets[node.outputs[0].id] == offsets[node.inputs[chosen.side_in_place].id]
    x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32)
    want = make_runner(graph, "reference").run({graph.inputs[0].id: x})
    got = runner.run({fused.inputs[0].id: x})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_an_artifact_keeps_the_residual_in_its_output_and_the_values(tmp_path):
    """The plan a saved executable holds puts the residual conv's output over its residual;
    loaded, it runs the same kernels and gives the same bits."""
    model = residual_block()
    with forced({"conv2d": "packed"}):
        exe = gc.compile(model, batch_size=BATCH)
    path = str(tmp_path / "block.gcnn")
    exe.save(path)
    loaded = gc.load(path)
    node, side = residual_node(loaded.graph)
    offsets = loaded.runner.plan.offsets
    assert offsets[node.outputs[0].id] == offsets[node.inputs[side].id]
    assert loaded.runner.chosen[node.id].side_in_place == side
    np.testing.assert_array_equal(loaded(image(True)), exe(image(True)))

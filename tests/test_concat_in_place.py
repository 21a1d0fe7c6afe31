"""Concatenation in place (graphcnn/runtime/memory_plan.py): at batch 1 a channel concat's
inputs are contiguous slices of its output, so each input is made in its slice and the
concat runs no kernel. Checked here: where it applies (an inception block, a DenseNet
block's growing concatenations, nested concats) and where it must not (batch > 1, an
input read after the concat, a fed input, the same value twice, unaligned slices, an
any-batch executable); the plan is sound by tests/test_memory_plan.py's checker; the cpu
backend equals the reference; a saved artifact keeps it and a tampered slice is refused."""
from __future__ import annotations

import numpy as np
import pytest
from test_artifact import read_all, write_all
from test_memory_plan import assert_cpu_equals_reference, check_plan

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import ArtifactError
from graphcnn.ir import Graph
from graphcnn.passes import run_pipeline
from graphcnn.runtime.executable import make_runner
from graphcnn.runtime.memory_plan import plan_memory


def concats(graph: Graph) -> list:
    return [n for n in graph.compute_nodes() if n.op == "concat"]


def inception_graph(batch: int, channels: int = 16) -> Graph:
    """Three branches of one input, concatenated along channels, then a conv."""
    g = Graph("inception")
    x = g.input("x", (batch, channels, 8, 8))
    branches = []
    for k, size in enumerate((1, 3, 5)):
        w = g.param(f"w{k}", (channels, channels, size, size))
        branches.append(g.add("relu", [g.add("conv2d", [x, w], padding=size // 2)]))
    y = g.add("concat", branches, axis=1)
    w = g.param("w_out", (channels, 3 * channels, 1, 1))
    g.set_outputs([g.add("conv2d", [y, w])], ["y"])
    return g


def dense_block_graph(batch: int, layers: int = 3, growth: int = 16) -> Graph:
    """A DenseNet block as torchvision writes it: every layer concatenates all the
    features so far (so only the last concat reads each feature last)."""
    g = Graph("dense")
    x = g.input("x", (batch, growth, 6, 6))
    features = [g.add("relu", [x])]
    for k in range(layers):
        joined = features[0] if len(features) == 1 else g.add("concat", features, axis=1)
        w = g.param(f"w{k}", (growth, joined.shape[1], 3, 3))
        features.append(g.add("conv2d", [g.add("relu", [joined]), w], padding=1))
    g.set_outputs([g.add("concat", features, axis=1)], ["y"])
    return g


@pytest.mark.parametrize("build", [inception_graph, dense_block_graph])
def test_concats_at_batch_1_are_free_and_equal_the_reference(build):
    graph = build(1)
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert {n.id for n in concats(graph)} <= plan.views
    for node in concats(graph):   # each input starts where its slice of the output does
        start = plan.offsets[node.output.id]
        for v in node.inputs:
            assert plan.offsets[v.id] == start
            start += v.type.nbytes
    without = plan_memory(graph, in_place=False)
    assert plan.arena_bytes < without.arena_bytes
    assert_cpu_equals_reference(graph, tol=1e-4)


def test_the_runner_skips_the_concats():
    graph, _ = run_pipeline(dense_block_graph(1), 2)
    runner = make_runner(graph, "cpu")
    assert not [s for s in runner.steps if s.op == "concat"]
    assert len(concats(graph)) == 2 + 1   # every layer's join and the block's output


@pytest.mark.parametrize("build", [inception_graph, dense_block_graph])
def test_batch_2_copies(build):
    """At batch 2 an input's channels are not contiguous in the output: a copy."""
    graph = build(2)
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert not {n.id for n in concats(graph)} & plan.views
    assert_cpu_equals_reference(graph, tol=1e-4)


def test_nested_concats_share_one_buffer():
    g = Graph("nested")
    x = g.input("x", (1, 16, 4, 4))
    a, b, c = (g.add("relu", [g.add("mul", [x, g.constant(np.float32(k + 1))])])
               for k in range(3))
    inner = g.add("concat", [a, b], axis=1)
    outer = g.add("concat", [inner, c], axis=1)
    g.set_outputs([g.add("relu", [outer])], ["y"])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert {n.id for n in concats(g)} <= plan.views
    base = plan.offsets[outer.id]
    assert [plan.offsets[v.id] - base for v in (a, b, c, inner)] == [0, 1024, 2048, 0]
    assert_cpu_equals_reference(g)


def test_no_slices_where_an_input_is_read_later_fed_or_twice():
    g = Graph("refusals")
    x = g.input("x", (1, 16, 4, 4))
    a = g.add("relu", [x])
    b = g.add("tanh", [x])
    read_later = g.add("concat", [a, b], axis=1)           # a is read again below
    fed = g.add("concat", [x, g.add("sigmoid", [x])], axis=1)
    twice = g.add("concat", [b, b], axis=1)
    g.set_outputs([g.add("add", [g.add("sigmoid", [a]), a]), read_later, fed, twice],
                  ["a", "r", "f", "t"])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert not {n.id for n in concats(g)} & plan.views
    assert_cpu_equals_reference(g)


def test_unaligned_slices_are_copied():
    g = Graph("unaligned")
    x = g.input("x", (1, 3, 5, 5))   # 300 bytes: the second slice would start unaligned
    g.set_outputs([g.add("concat", [g.add("relu", [x]), g.add("tanh", [x])], axis=1)], ["y"])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert not plan.views
    assert_cpu_equals_reference(g)


def _inception_model() -> gc.Model:
    x = gc.Input((3, 8, 8), name="x")
    stem = gc.relu(nn.Conv2d(3, 16, 3, padding=1)(x))
    joined = gc.concat([gc.relu(nn.Conv2d(16, 16, 1)(stem)),
                        gc.relu(nn.Conv2d(16, 16, 3, padding=1)(stem)),
                        nn.MaxPool2d(3, stride=1, padding=1)(stem)], axis=1)
    return gc.Model(x, nn.Linear(48 * 8 * 8, 5)(gc.flatten(joined)), name="inception")


def test_a_saved_executable_keeps_its_slices_and_a_tampered_one_is_refused(tmp_path):
    model = _inception_model()
    exe = gc.compile(model, batch_size=1)
    assert any(n.op == "concat" and n.id in exe.runner.plan.views
               for n in exe.runner.graph.nodes)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = gc.compile(model, batch_size=1, backend="reference")(x)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)
    path = tmp_path / "inception.gcnn"
    gc.save(exe, path)
    np.testing.assert_array_equal(gc.load(path)(x), exe(x))

    members, manifest = read_all(path)
    sliced = next(b for b in manifest["memory_plan"]["buffers"] if any(b["inner"]))
    sliced["inner"] = [k + 64 if k else k for k in sliced["inner"]]   # shift the slices
    target = write_all(tmp_path / "tampered.gcnn", members, manifest)
    with pytest.raises(ArtifactError):
        gc.load(target)


def test_any_batch_executables_copy():
    """An any-batch executable's plan is made at the largest batch, where the slices are
    not contiguous: it copies (and so runs at every batch)."""
    model = _inception_model()
    exe = gc.compile(model, batch_size=None, max_batch=4)
    assert not any(n.op == "concat" and n.id in exe.runner.plan.views
                   for n in exe.runner.graph.nodes)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    want = gc.compile(model, batch_size=3, backend="reference")(x)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)

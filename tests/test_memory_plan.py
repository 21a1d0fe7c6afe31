"""Memory planning (graphcnn/runtime/memory_plan.py), checked from the outside: liveness is
recomputed here from the graph, and every pair of tensors whose bytes overlap in the arena
must not be alive at once, except where an op legally writes over its own dying input
(in place). Then: in-place sharing happens where it should and not where it must not;
graph outputs and fed inputs stay intact; the arena against the lower bounds; random small
graphs planned and run on cpu equal the reference."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphcnn as gc
from graphcnn.ir import Graph
from graphcnn.ops.registry import get_op
from graphcnn.passes import run_pipeline
from graphcnn.runtime.executable import make_runner
from graphcnn.runtime.memory_plan import (
    ALIGN,
    VIEW_OPS,
    MemoryPlan,
    live_bytes_lower_bound,
    plan_memory,
)

RNG = np.random.default_rng(11)


# ---- an independent checker ---------------------------------------------------------------

def lifetimes(graph: Graph) -> dict[int, tuple[int, int]]:
    """Value id -> (step made, last step read; len(steps) for graph outputs)."""
    steps = graph.compute_nodes()
    first, last = {}, {}
    for step, node in enumerate(steps):
        for v in node.inputs:
            last[v.id] = step
        for v in node.outputs:
            first[v.id] = step
    for v in graph.outputs:
        last[v.id] = len(steps)
    return {vid: (f, max(f, last.get(vid, f))) for vid, f in first.items()}


def writes_in_place_legally(graph: Graph, dead: int, made: int) -> bool:
    """May the node making value `made` write over value `dead` (an input it reads last)?"""
    node = next(n for n in graph.nodes if any(v.id == made for v in n.outputs))
    dead_value = next((v for v in node.inputs if v.id == dead), None)
    if dead_value is None or len(node.outputs) != 1:
        return False
    if node.op in VIEW_OPS:
        return node.output.type.nbytes == dead_value.type.nbytes
    elementwise = get_op(node.op).scalar is not None or (
        node.op == "fused" and not node.attrs["anchor"])
    # a fused group over its epilogue's side (a residual its conv adds as it stores),
    # read by nothing else in the group
    over_side = node.op == "fused" and [v.id for v in node.inputs].count(dead) == 1 and \
        [v.id for v in node.inputs].index(dead) >= node.attrs["anchor_inputs"]
    return (elementwise or over_side) and node.output.type == dead_value.type


def concatenated_in_place(graph: Graph, plan: MemoryPlan, part: int, whole: int) -> bool:
    """Is value `whole` made by a concat the plan skips, and `part` one of its inputs,
    placed exactly at its slice of `whole` (its bytes are that part of the output)?"""
    node = next(n for n in graph.nodes if any(v.id == whole for v in n.outputs))
    if node.id not in plan.views or node.op != "concat":
        return False
    start = plan.offsets[whole]
    for v in node.inputs:
        if v.id == part:
            return plan.offsets[part] == start
        start += v.type.nbytes
    return False


def check_plan(graph: Graph, plan: MemoryPlan) -> None:
    values = {v.id: v for n in graph.compute_nodes() for v in n.outputs}
    life = lifetimes(graph)
    outputs = {v.id for v in graph.outputs}
    # every intermediate is placed, aligned, inside the arena
    assert set(plan.offsets) == set(values)
    for vid, v in values.items():
        assert plan.offsets[vid] % ALIGN == 0
        assert plan.offsets[vid] + v.type.nbytes <= plan.arena_bytes
    # buffers: a partition of the values, each big enough for its values
    assert sorted(v.id for b in plan.buffers for v in b.values) == sorted(values)
    for b in plan.buffers:
        assert b.size >= max(b.inner.get(v.id, 0) + v.type.nbytes for v in b.values)
        assert {v.id: plan.offsets[v.id] for v in b.values} == {
            v.id: b.offset + b.inner.get(v.id, 0) for v in b.values}
    # no two buffers that overlap in time overlap in memory: every pair
    for a, b in itertools.combinations(plan.buffers, 2):
        if a.first <= b.last and b.first <= a.last:
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    # the same, value by value with liveness recomputed here: bytes shared by two values
    # only if their lives are disjoint, or touch at the one step where an op writes over
    # its own dying input, or one is a skipped concat and the other an input in its slice
    for (u, vu), (w, vw) in itertools.combinations(values.items(), 2):
        ou, ow = plan.offsets[u], plan.offsets[w]
        if ou + vu.type.nbytes <= ow or ow + vw.type.nbytes <= ou or \
                vu.type.nbytes == 0 or vw.type.nbytes == 0:
            continue
        (fu, lu), (fw, lw) = life[u], life[w]
        if lu < fw or lw < fu:
            continue
        if lu == fw and u not in outputs and writes_in_place_legally(graph, u, w):
            continue
        if concatenated_in_place(graph, plan, u, w) or concatenated_in_place(graph, plan, w, u):
            continue
        if lw == fu and w not in outputs and writes_in_place_legally(graph, w, u):
            continue
        raise AssertionError(f"%{u} (live {fu}..{lu}) and %{w} (live {fw}..{lw}) share bytes")


def plan_lower_bound(plan: MemoryPlan) -> int:
    """The largest total size of this plan's buffers alive at one step."""
    last = max((b.last for b in plan.buffers), default=0)
    return max((sum(b.size for b in plan.buffers if b.first <= s <= b.last)
                for s in range(last + 1)), default=0)


def buffer_of(plan: MemoryPlan, vid: int):
    return next(b for b in plan.buffers if any(v.id == vid for v in b.values))


def feeds_for(graph: Graph) -> dict[int, np.ndarray]:
    feeds = {}
    for node in graph.nodes:
        if node.op in ("input", "param"):
            v = node.output
            if v.dtype == "int64":
                feeds[v.id] = RNG.integers(0, 3, v.shape).astype(np.int64)
            else:
                feeds[v.id] = RNG.normal(size=v.shape).astype(v.dtype)
    return feeds


def assert_cpu_equals_reference(graph: Graph, tol: float = 1e-5) -> None:
    feeds = feeds_for(graph)
    copies = {k: v.copy() for k, v in feeds.items()}
    want = make_runner(graph, "reference").run(feeds)
    runner = make_runner(graph, "cpu")
    check_plan(graph, runner.plan)
    got = runner.run(feeds)
    for name, w, g in zip(graph.output_names, want, got):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)
    for k in feeds:                              # fed arrays are never written
        np.testing.assert_array_equal(feeds[k], copies[k])
    again = runner.run(feeds)                    # outputs are copies, not arena views
    for first, second in zip(got, again):
        np.testing.assert_array_equal(first, second)


# ---- the zoo and training graphs ---------------------------------------------------------

def _graphs():
    lenet = gc.models.lenet5()
    resnet = gc.models.resnet18(10, width=8, input_size=32)
    return [
        ("lenet5", lambda: lenet.graph(2)),
        ("lenet5_training", lambda: gc.training_graph(lenet, "cross_entropy", 4)),
        ("resnet18_small", lambda: resnet.graph(1)),
        ("resnet18_small_training", lambda: gc.training_graph(resnet, "cross_entropy", 2)),
    ]


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("name,build", _graphs(), ids=[g[0] for g in _graphs()])
def test_plans_of_models_are_sound(name, build, level):
    graph, _ = run_pipeline(build(), level)
    plan = plan_memory(graph)
    check_plan(graph, plan)
    naive = sum(v.type.nbytes for n in graph.compute_nodes() for v in n.outputs)
    assert plan_lower_bound(plan) <= plan.arena_bytes <= sum(b.size for b in plan.buffers)
    assert plan.arena_bytes < naive
    # without in-place sharing no plan can go under the graph's live-bytes lower bound
    plain = plan_memory(graph, in_place=False)
    check_plan(graph, plain)
    assert all(len(b.values) == 1 for b in plain.buffers) and not plain.views
    assert plain.arena_bytes >= live_bytes_lower_bound(graph)
    assert plan_lower_bound(plain) <= plain.arena_bytes


@pytest.mark.parametrize("name,build", _graphs()[:3], ids=[g[0] for g in _graphs()[:3]])
def test_models_run_on_cpu_equal_reference(name, build):
    graph, _ = run_pipeline(build(), 2)
    assert_cpu_equals_reference(graph, tol=1e-4)


def test_in_place_can_go_under_the_live_bytes_lower_bound():
    """live_bytes_lower_bound counts a value and the one written over it as two tensors;
    with in-place sharing they are one buffer, so the arena may be smaller. LeNet-5 at opt
    level 0 (conv, tanh unfused): each tanh writes over its conv's output."""
    graph = gc.models.lenet5().graph(2)
    plan = plan_memory(graph)
    assert plan.arena_bytes < live_bytes_lower_bound(graph)
    assert plan.arena_bytes >= plan_lower_bound(plan)
    tanhs = graph.nodes_of("tanh")
    assert all(buffer_of(plan, t.output.id) is buffer_of(plan, t.inputs[0].id) for t in tanhs)


@pytest.mark.parametrize("level", [0, 2])
def test_training_plan_keeps_only_what_backward_reads(level):
    """A forward tensor the backward pass does not read takes no bytes of its own past
    its last reader: its buffer is taken over in place by a tensor made from it, or its
    bytes are reused by a buffer that starts later. LeNet-5 at opt 0: each conv's
    pre-activation is only read by its tanh (tanh_grad reads the tanh output), and the tanh
    writes over it."""
    graph, _ = run_pipeline(gc.training_graph(gc.models.lenet5(), "cross_entropy", 8), level)
    life = lifetimes(graph)
    steps = graph.compute_nodes()
    loss_step = next(i for i, n in enumerate(steps) if n.op == "cross_entropy")
    if level == 0:
        for conv in graph.nodes_of("conv2d"):
            assert [n.op for n in steps if conv.output in n.inputs] == ["tanh"]
    plan = plan_memory(graph)
    check_plan(graph, plan)
    forward_dead = [v for n in steps[:loss_step] for v in n.outputs
                    if life[v.id][1] < loss_step]
    assert forward_dead or level == 2
    for v in forward_dead:
        buf = buffer_of(plan, v.id)
        if buf.last > life[v.id][1]:
            continue                              # shared in place with a later tensor
        assert any(other.first > buf.last and other.offset < buf.offset + buf.size
                   and buf.offset < other.offset + other.size for other in plan.buffers), v
    naive = sum(v.type.nbytes for n in steps for v in n.outputs)
    assert plan.arena_bytes < naive


# ---- in place ------------------------------------------------------------------------------

def test_relu_chain_writes_in_place():
    """conv -> relu -> sigmoid, no fusion: relu writes over the conv output (it dies
    there), sigmoid over the relu output; one buffer for the three."""
    g = Graph("chain")
    x = g.input("x", (1, 2, 6, 6))
    w = g.constant(RNG.normal(size=(3, 2, 3, 3)).astype(np.float32))
    c = g.add("conv2d", [x, w])
    r = g.add("relu", [c])
    s = g.add("sigmoid", [r])
    g.set_outputs([s])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert buffer_of(plan, c.id) is buffer_of(plan, r.id) is buffer_of(plan, s.id)
    assert len(plan.buffers) == 1
    assert_cpu_equals_reference(g)


def test_relu_does_not_write_over_a_value_read_later():
    """conv -> relu, and the conv output is read again by the add after: relu must get
    its own bytes; the add may then write over the relu output (it dies at the add)."""
    g = Graph("fork")
    x = g.input("x", (1, 2, 6, 6))
    w = g.constant(RNG.normal(size=(3, 2, 3, 3)).astype(np.float32))
    c = g.add("conv2d", [x, w])
    r = g.add("relu", [c])
    s = g.add("sigmoid", [c])
    y = g.add("add", [r, s])
    g.set_outputs([y])
    plan = plan_memory(g)
    check_plan(g, plan)
    conv_buf, relu_buf = buffer_of(plan, c.id), buffer_of(plan, r.id)
    assert conv_buf is not relu_buf
    assert conv_buf.offset + conv_buf.size <= relu_buf.offset or \
        relu_buf.offset + relu_buf.size <= conv_buf.offset
    # sigmoid reads c last: it may write over c; add writes over one of its inputs
    assert buffer_of(plan, s.id) is conv_buf
    assert buffer_of(plan, y.id) in (relu_buf, conv_buf)
    assert_cpu_equals_reference(g)


def test_no_in_place_over_a_fed_input_or_a_broadcast_operand():
    g = Graph("fed")
    x = g.input("x", (2, 3, 4))
    b = g.input("b", (4,))
    r = g.add("relu", [x])                       # x is fed: never written
    t = g.add("tanh", [b])                       # (4,)
    y = g.add("add", [r, t])                     # (2, 3, 4): may only write over r
    g.set_outputs([y])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert buffer_of(plan, y.id) is buffer_of(plan, r.id)
    assert buffer_of(plan, t.id) is not buffer_of(plan, y.id)
    assert_cpu_equals_reference(g)


def test_graph_outputs_stay_intact():
    """An output read again later is never written over: y1 stays relu(x * 2) although
    sigmoid(y1) is computed after it; likewise when an output is the input of a view."""
    g = Graph("outs")
    x = g.input("x", (2, 3, 4))
    two = g.constant(np.full((2, 3, 4), 2.0, np.float32))
    y1 = g.add("relu", [g.add("mul", [x, two])])
    y2 = g.add("sigmoid", [y1])
    y3 = g.add("flatten", [y2])
    y4 = g.add("tanh", [y3])
    g.set_outputs([y1, y2, y3, y4], ["y1", "y2", "y3", "y4"])
    plan = plan_memory(g)
    check_plan(g, plan)
    for a, b in itertools.combinations([y1, y2, y3, y4], 2):
        assert buffer_of(plan, a.id) is not buffer_of(plan, b.id)
    assert not plan.views                         # y2 is an output: flatten must copy
    assert_cpu_equals_reference(g)


def test_reshape_of_a_dying_value_is_a_view():
    g = Graph("view")
    x = g.input("x", (2, 3, 4))
    r = g.add("relu", [x])
    f = g.add("reshape", [r], shape=(6, 4))
    y = g.add("tanh", [f])
    g.set_outputs([y])
    plan = plan_memory(g)
    check_plan(g, plan)
    assert plan.views == {f.node.id}
    assert buffer_of(plan, r.id) is buffer_of(plan, f.id) is buffer_of(plan, y.id)
    runner = make_runner(g, "cpu")
    assert len(runner.steps) == 2                 # relu, tanh: the reshape runs no kernel
    assert_cpu_equals_reference(g)


# ---- random graphs -------------------------------------------------------------------------

SHAPE = (2, 3, 4)


@st.composite
def random_graphs(draw) -> Graph:
    """Small graphs of elementwise ops, broadcasts, views and reductions over (2, 3, 4)
    values, with forks (values read several times) and outputs taken from the middle."""
    g = Graph("random")
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    values = [g.input("x", SHAPE), g.input("y", SHAPE)]
    for _ in range(draw(st.integers(2, 12))):
        pick = lambda: values[draw(st.integers(0, len(values) - 1))]  # noqa: E731
        op = draw(st.sampled_from(["relu", "tanh", "sigmoid", "add", "sub", "mul",
                                   "bias", "view", "softmax", "sum_to"]))
        if op in ("relu", "tanh", "sigmoid"):
            v = g.add(op, [pick()])
        elif op in ("add", "sub", "mul"):
            v = g.add(op, [pick(), pick()])
        elif op == "bias":                        # a broadcast operand on either side
            c = g.constant(rng.normal(size=(4,)).astype(np.float32))
            v = g.add("add", [pick(), c] if draw(st.booleans()) else [c, pick()])
        elif op == "view":                        # through another shape and back
            v = g.add("reshape", [g.add("flatten", [pick()])], shape=SHAPE)
        elif op == "softmax":
            v = g.add("softmax", [pick()], axis=2)
        else:
            v = g.add("broadcast_to", [g.add("sum_to", [pick()], shape=(1, 3, 1))],
                      shape=SHAPE)
        values.append(v)
    computed = [v for v in values if v.node.op != "input"]
    extra = draw(st.lists(st.sampled_from(computed), max_size=2))
    outs = {v.id: v for v in [computed[-1], *extra]}     # the last value, and 0-2 more
    g.set_outputs(list(outs.values()))
    return g


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(), st.sampled_from([0, 2]))
def test_random_graphs_planned_and_run_on_cpu_equal_reference(graph, level):
    optimized, _ = run_pipeline(graph, level)
    check_plan(optimized, plan_memory(optimized))
    check_plan(optimized, plan_memory(optimized, in_place=False))
    assert_cpu_equals_reference(optimized, tol=1e-5)

"""Concatenations written part by part through the elementwise chain that reads them
(passes/concat_epilogue.py, the cpu backend's inference pass): the pass alone (nested
concatenations flattened, the groups it forms, where it must not apply), the generated
kernel's gather variant, and whole DenseNets at batch 1 and above against opt level 0."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_fusion import randomize_bn_statistics

import graphcnn as gc
from graphcnn.backends.cpu.codegen import generate_source
from graphcnn.ir import Graph
from graphcnn.ir.verify import verify
from graphcnn.models.densenet import densenet
from graphcnn.passes.concat_epilogue import fuse_concat_epilogues
from graphcnn.runtime.executable import make_runner

RNG = np.random.default_rng(8)


def _dense_block_graph(batch: int, also_read_concat: bool = False) -> Graph:
    """Two dense layers' concatenations, each read by a scale + shift + relu:
    c1 = concat(x0, n1) -> affine -> relu; c2 = concat(c1, n2) -> affine -> relu."""
    g = Graph("block")
    x0, n1, n2 = (g.input(name, (batch, c, 3, 3)) for name, c in
                  (("x0", 4), ("n1", 2), ("n2", 2)))
    outputs = []
    c1 = g.add("concat", [x0, n1], axis=1)
    c2 = g.add("concat", [c1, n2], axis=1)
    for c in (c1, c2):
        channels = c.shape[1]
        scale = g.constant(RNG.uniform(0.5, 2, (channels, 1, 1)).astype(np.float32))
        shift = g.constant(RNG.normal(size=(channels, 1, 1)).astype(np.float32))
        outputs.append(g.add("relu", [g.add("add", [g.add("mul", [c, scale]), shift])]))
    if also_read_concat:
        outputs.append(g.add("sigmoid", [c2]))
    g.set_outputs(outputs)
    return g


def _run(graph: Graph, backend: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    by_id = {n.output.id: feeds[n.attrs["name"]] for n in graph.nodes if n.op == "input"}
    return make_runner(graph, backend).run(by_id)


def _feeds(graph: Graph) -> dict[str, np.ndarray]:
    return {n.attrs["name"]: RNG.normal(size=n.output.shape).astype(np.float32)
            for n in graph.nodes if n.op == "input"}


@pytest.mark.parametrize("batch", [2, 5])
def test_each_concatenation_becomes_a_group_reading_the_parts(batch):
    before = _dense_block_graph(batch)
    after = fuse_concat_epilogues(before)
    verify(after)
    groups = [n for n in after.compute_nodes() if n.op == "fused"]
    assert [n.op for n in after.compute_nodes()] == ["fused", "fused"]
    assert [g.attrs["anchor"] for g in groups] == ["concat", "concat"]
    assert [tuple(s[0] for s in g.attrs["steps"]) for g in groups] == [("mul", "add", "relu")] * 2
    # the second reads x0, n1 and n2 themselves: the first concatenation is never written
    names = [[v.node.attrs.get("name") for v in g.inputs[:g.attrs["anchor_inputs"]]]
             for g in groups]
    assert names == [["x0", "n1"], ["x0", "n1", "n2"]]
    feeds = _feeds(before)
    want = _run(before, "reference", feeds)
    for backend in ("reference", "cpu"):
        for w, got in zip(want, _run(after, backend, feeds)):
            np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-6, err_msg=backend)


def test_the_pass_leaves_batch_1_and_concatenations_read_elsewhere():
    graph = _dense_block_graph(1)
    assert fuse_concat_epilogues(graph) is graph   # free at batch 1 (the memory plan)
    shared = fuse_concat_epilogues(_dense_block_graph(2, also_read_concat=True))
    ops = Counter(n.attrs["anchor"] if n.op == "fused" else n.op
                  for n in shared.compute_nodes())
    # c2 has two readers (its chain and the sigmoid): it stays a concat, of x0, n1 and n2;
    # c1, then read by its chain alone, is fused
    assert ops["concat"] == 2 and ops["sigmoid"] == 1
    (c2,) = [n for n in shared.compute_nodes() if n.op == "concat"]
    assert [v.node.attrs["name"] for v in c2.inputs] == ["x0", "n1", "n2"]
    assert [n.attrs["anchor"] for n in shared.compute_nodes() if n.op == "fused"] == ["concat"]


def test_the_gather_kernel_reads_a_part_and_writes_its_channels():
    attrs = {"anchor": "concat", "anchor_attrs": {"axis": 1}, "anchor_inputs": 2,
             "steps": (("mul", {}, (-1, 2)), ("relu", {}, (-1,)))}
    source = generate_source(attrs, "plane", gather=True)
    assert "def fused_kernel(out, src, c0, s0, pre_bias, add_bias):" in source
    assert "v = src[p, q, y, x]" in source and "out[p, q + c0, y, x] =" in source
    with pytest.raises(ValueError, match="gather"):
        generate_source(dict(attrs, anchor=""), "plane", gather=True)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_small_densenet_matches_opt_level_0(batch):
    model = densenet(10, growth_rate=8, block_config=(3, 4), num_init_features=16,
                     input_size=32)
    randomize_bn_statistics(model)
    x = RNG.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    want = gc.compile(model, batch_size=batch, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=batch)
    anchors = Counter(n.attrs["anchor"] for n in exe.graph.nodes if n.op == "fused")
    plain = Counter(n.op for n in exe.graph.nodes)["concat"]
    # 3 + 4 dense layers: each concatenation fused beyond batch 1, in place at batch 1
    assert (anchors["concat"], plain) == ((0, 7) if batch == 1 else (7, 0))
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)
    any_batch = gc.compile(model, batch_size=None, max_batch=4)
    np.testing.assert_allclose(any_batch(x), want, rtol=1e-4, atol=1e-5)

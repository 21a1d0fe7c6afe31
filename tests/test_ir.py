"""The IR: deterministic printing, verification, networkx view, DOT, DCE, pass manager."""
import numpy as np
import pytest

from graphcnn.errors import VerificationError
from graphcnn.ir import Graph
from graphcnn.ir.nx import to_dot, to_networkx
from graphcnn.ir.verify import verify
from graphcnn.passes import run_pipeline
from graphcnn.passes.dce import dead_code_elimination


def small_graph() -> Graph:
    g = Graph("small")
    x = g.input("x", (2, 3))
    w = g.param("w", (4, 3))
    y = g.add("linear", [x, w])
    g.add("tanh", [y])                       # dead: not an output
    g.set_outputs([g.add("relu", [y])], ["out"])
    return g


def test_printer_is_deterministic_and_complete():
    text = str(small_graph())
    assert text == str(small_graph())
    assert text.splitlines()[0] == "graph small {"
    assert "%2 = linear(%0, %1) : f32[2,4]" in text
    assert text.splitlines()[-2] == "  return out=%4"


def test_constants_print_by_digest():
    g = Graph()
    c = g.constant(np.arange(6, dtype=np.float32).reshape(2, 3), name="k")
    g.set_outputs([c])
    assert 'array<float32[2, 3]#' in str(g) and 'name="k"' in str(g)


def test_verify_accepts_good_graph_and_names_bad_node():
    g = small_graph()
    verify(g)
    g.nodes[2].outputs[0].type = g.nodes[0].outputs[0].type   # corrupt the linear's type
    with pytest.raises(VerificationError, match="linear"):
        verify(g)


def test_networkx_view_and_dot():
    g = small_graph()
    dag = to_networkx(g)
    assert dag.number_of_nodes() == len(g.nodes)
    assert dag.nodes[2]["op"] == "linear"
    dot = to_dot(g)
    assert dot.startswith('digraph "small"') and "n0 -> n2" in dot


def test_dead_code_elimination_removes_unused_nodes():
    g = small_graph()
    out = dead_code_elimination(g)
    assert [n.op for n in out.nodes] == ["input", "param", "linear", "relu"]
    assert out.output_names == ["out"]


def test_pipeline_dumps_after_named_pass(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHCNN_DUMP_AFTER", "dead_code_elimination")
    graph, timings = run_pipeline(small_graph(), 1)
    assert "dead_code_elimination" in timings
    assert "// after dead_code_elimination" in capsys.readouterr().err
    with pytest.raises(ValueError, match="opt_level"):
        run_pipeline(small_graph(), 7)


def test_an_unknown_pass_name_to_dump_is_an_error_listing_the_valid_ones(monkeypatch):
    from graphcnn.passes.pipeline import pass_names
    assert {"dead_code_elimination", "fuse_operators", "constant_folding"} <= set(pass_names())
    monkeypatch.setenv("GRAPHCNN_DUMP_AFTER", "dead_code_elimination,fuse_operator")
    with pytest.raises(ValueError, match="unknown pass name.*fuse_operator;.*fuse_operators"):
        run_pipeline(small_graph(), 1)


def test_pipeline_names_the_pass_that_breaks_the_graph(monkeypatch):
    from graphcnn.passes import pipeline

    def broken_pass(graph: Graph) -> Graph:
        graph.outputs[0].type = graph.nodes[0].outputs[0].type
        return graph

    monkeypatch.setitem(pipeline.PIPELINES, 1, [broken_pass])
    with pytest.raises(VerificationError, match="broken_pass"):
        run_pipeline(small_graph(), 1)

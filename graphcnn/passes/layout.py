"""The layout pass: regions of the graph that run in NCHW16c (graphcnn/ops/layout.py).

Which nodes can run blocked: a float32 conv2d that the blocked kernels compute well (1x1
stride 1 unpadded with one group: output channels in the lanes; depthwise 3x3: whole
vectors of channels; any other one-group conv on an NCHW input, which it reads in place:
a region's 3x3 stem, so the image needs no conversion), elementwise ops whose operands
all have the output's shape (no broadcasting: the epilogues between them, clip and the
residual add), and a float32 max_pool2d of a blocked value. Those nodes, joined where one
reads another, make regions; a region runs blocked if it holds a depthwise convolution and
more convolutions than values to convert at its border (the cost model: depthwise layers
are where NCHW loses, 4-9 GFLOP/s on MobileNet's small planes against a third of the time
blocked; a region of 1x1 convolutions alone, or a lone depthwise conv, gains less than its
conversions cost), or if it holds max pools and converts no more values than it has pools:
an image stem (conv, relu, max pool: ResNet's, GoogLeNet's, DenseNet's), whose conv reads
the image as it is and whose pool's output is all that leaves, converted at a quarter of
the conv's size. The pass converts a value once where a region reads it
(`to_blocked`) and once where it leaves (`from_blocked`), each conversion placed just
before its first reader and shared by the others; the weights stay as they are (the
kernels pack them once).

The pass runs for the cpu backend in inference graphs, before fusion, so the fused groups
form around conv2d_blocked as they do around conv2d. A second pass here,
fuse_expand_depthwise, then joins each 1x1 expansion, its clip and the depthwise conv
after them into one op whose kernel keeps the expanded tensor out of memory.
"""
from __future__ import annotations

from collections import Counter

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ir.rebuild import Replacement, replace_groups
from graphcnn.ops.conv_shapes import is_depthwise_3x3, is_pointwise
from graphcnn.ops.layout import in_channels
from graphcnn.ops.registry import get_op


def _pointwise(node: Node) -> bool:
    """A one-group 1x1 stride-1 unpadded conv: output channels in the lanes."""
    return is_pointwise(node.inputs[1].shape, node.attrs) and node.attrs["groups"] == 1


def is_depthwise(node: Node) -> bool:
    """A float32 depthwise 3x3 conv2d: what the NCHW16c layout is for."""
    return (node.op == "conv2d" and node.inputs[0].dtype == "float32"
            and is_depthwise_3x3(node.inputs[0].shape[1], node.inputs[1].shape, node.attrs))


def _can_run_nchw16c(node: Node, blocked_input: bool) -> bool:
    """Whether `node` can run blocked, its (first) input coming blocked or not."""
    if len(node.outputs) != 1 or node.outputs[0].type.ndim != 4:
        return False
    if node.op == "conv2d":
        if node.inputs[0].dtype != "float32":
            return False
        # A 1x1 or depthwise conv converts an NCHW input; another conv (a region's 3x3
        # stem) runs blocked only on an NCHW input, which its kernel reads as it is.
        return _pointwise(node) or is_depthwise(node) or (
            node.attrs["groups"] == 1 and not blocked_input)
    if node.op == "max_pool2d":
        return blocked_input and node.inputs[0].dtype == "float32"
    out = node.outputs[0].type
    return (blocked_input and get_op(node.op).scalar is not None and out.is_float
            and all(v.type == out for v in node.inputs))


def nchw16c_regions(graph: Graph) -> set[int]:
    """The ids of the nodes that run blocked: the regions (nodes that can, joined where one
    reads another) that hold a depthwise convolution and more convolutions than values
    to convert at their border (a lone depthwise conv between two batch norms, as in a
    graph compiled with frozen=False, stays NCHW), or max pools and no more values to
    convert than pools (an image stem). An elementwise op or a pool can only where an
    operand comes blocked (else it stays with its NCHW producer, as that one's epilogue)."""
    able: dict[int, Node] = {}

    def joins(v: Value) -> bool:   # a pool ends its region: what reads it starts anew
        return v.node.id in able and able[v.node.id].op != "max_pool2d"

    for n in graph.nodes:  # in order, so each node knows whether its inputs come blocked
        if _can_run_nchw16c(n, any(joins(v) for v in n.inputs)):
            able[n.id] = n
    parent = {i: i for i in able}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for node in able.values():
        for v in node.inputs:
            if joins(v):
                parent[root(v.node.id)] = root(node.id)
    with_depthwise = {root(i) for i, n in able.items() if is_depthwise(n)}
    with_pool = {root(i) for i, n in able.items() if n.op == "max_pool2d"}
    regions: dict[int, set[int]] = {}
    for i in able:
        if root(i) in with_depthwise | with_pool:
            regions.setdefault(root(i), set()).add(i)
    chosen: set[int] = set()
    for r, members in regions.items():
        conversions = _conversions(graph, members)
        count = Counter(able[i].op for i in members)
        if (r in with_depthwise and conversions < count["conv2d"]) or (
                r in with_pool and conversions <= count["max_pool2d"]):
            chosen |= members
    return chosen


def _conversions(graph: Graph, members: set[int]) -> int:
    """How many values would be converted at the region's border: read into it from NCHW
    (a blocked conv's or elementwise op's operand; weights and a stem's image are read as
    they are) and read out of it (by other nodes or as graph outputs)."""
    entering: set[int] = set()
    for n in graph.nodes:
        if n.id not in members:
            continue
        operands = n.inputs[:1] if n.op == "conv2d" else n.inputs
        if n.op == "conv2d" and not (_pointwise(n) or is_depthwise(n)):
            operands = []
        entering |= {v.id for v in operands if v.node.id not in members}
    leaving = {v.id for n in graph.nodes if n.id not in members
               for v in n.inputs if v.node.id in members}
    leaving |= {v.id for v in graph.outputs if v.node.id in members}
    return len(entering) + len(leaving)


def nchw16c_layout(graph: Graph) -> Graph:
    """The graph with its regions in NCHW16c (see the module docstring); the
    graph itself if it has none."""
    chosen = nchw16c_regions(graph)
    if not chosen:
        return graph
    out = Graph(graph.name)
    nchw: dict[int, Value] = {}     # old value id -> the new graph's NCHW value
    blocked: dict[int, Value] = {}  # old value id -> the new graph's NCHW16c value

    def as_nchw(v: Value, loc: str | None) -> Value:
        if v.id not in nchw:
            nchw[v.id] = out.add_node("from_blocked", [blocked[v.id]],
                                      {"channels": v.shape[1]}, loc=loc).outputs[0]
        return nchw[v.id]

    def as_blocked(v: Value, loc: str | None) -> Value:
        if v.id not in blocked:
            blocked[v.id] = out.add_node("to_blocked", [nchw[v.id]], {}, loc=loc).outputs[0]
        return blocked[v.id]

    for node in graph.nodes:
        if node.id in chosen:
            if node.op == "conv2d":
                x = node.inputs[0]
                first = as_blocked(x, node.loc) if _pointwise(node) or is_depthwise(node) \
                    else as_nchw(x, node.loc)
                inputs = [first] + [as_nchw(v, node.loc) for v in node.inputs[1:]]
                new = out.add_node("conv2d_blocked", inputs, dict(node.attrs), loc=node.loc)
            else:
                op = "max_pool2d_blocked" if node.op == "max_pool2d" else node.op
                new = out.add_node(op, [as_blocked(v, node.loc) for v in node.inputs],
                                   dict(node.attrs), loc=node.loc)
            blocked[node.outputs[0].id] = new.outputs[0]
            continue
        new = out.add_node(node.op, [as_nchw(v, node.loc) for v in node.inputs],
                           dict(node.attrs), loc=node.loc)
        for old, fresh in zip(node.outputs, new.outputs):
            nchw[old.id] = fresh
    out.set_outputs([as_nchw(v, None) for v in graph.outputs], graph.output_names)
    return out


def _single_reader(value: Value, users: dict[int, list[Node]], outputs: set[int]) -> bool:
    return value.id not in outputs and len(users.get(value.id, [])) == 1


def _expansion_of(node: Node, users: dict[int, list[Node]], outputs: set[int]
                  ) -> tuple[Node, Node] | None:
    """(the 1x1 conv, the clip) before `node` if node is the depthwise conv of a blocked
    expand -> clip -> depthwise chain whose inner values nothing else reads."""
    if node.op != "conv2d_blocked" or len(node.inputs) != 3 or node.inputs[0].type.ndim != 5:
        return None
    w = node.inputs[1].shape
    if not is_depthwise_3x3(in_channels(w, node.attrs["groups"]), w, node.attrs):
        return None
    clip = node.inputs[0].node
    if clip.op != "clip" or not _single_reader(clip.outputs[0], users, outputs):
        return None
    conv = clip.inputs[0].node
    if (conv.op != "conv2d_blocked" or len(conv.inputs) != 3 or conv.inputs[0].type.ndim != 5
            or not _pointwise(conv) or not _single_reader(conv.outputs[0], users, outputs)):
        return None
    return conv, clip


def fuse_expand_depthwise(graph: Graph) -> Graph:
    """MobileNetV2's expansion in the blocked layout, conv2d_blocked (1x1) -> clip ->
    conv2d_blocked (depthwise 3x3), becomes one expand_depthwise_blocked node, placed
    where the depthwise conv was: its kernel never writes the expanded tensor (the
    block's largest) to memory."""
    users, outputs = graph.users(), {v.id for v in graph.outputs}
    replacements: dict[int, Replacement] = {}
    removed: set[int] = set()
    for node in graph.nodes:
        found = _expansion_of(node, users, outputs)
        if found is None:
            continue
        conv, clip = found
        attrs = dict(node.attrs, low=clip.attrs["low"], high=clip.attrs["high"])
        replacements[node.id] = ("expand_depthwise_blocked", conv.inputs + node.inputs[1:],
                                 attrs, node.loc)
        removed |= {conv.id, clip.id}
    return replace_groups(graph, replacements, removed) if replacements else graph

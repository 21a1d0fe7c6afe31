"""The blocked layout NCHW16c: its ops (graphcnn/ops/layout.py), their cpu kernels against
the reference on randomized shapes (backends/cpu/kernels/nchw16c*.py, chosen by
backends/cpu/strategy.py), and the layout pass (passes/layout.py) alone and in the
pipeline, numerically against opt level 0."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from op_check import check_op, forward

import graphcnn as gc
from graphcnn.errors import GraphBuildError
from graphcnn.ir.graph import Graph
from graphcnn.ops.layout import blocks, from_blocked_ref, to_blocked_ref
from graphcnn.passes.layout import fuse_expand_depthwise, nchw16c_layout, nchw16c_regions


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- the ops ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 16, 20, 33])
def test_conversions_round_trip_with_zero_padding(channels):
    x = rand(np.random.default_rng(channels), 2, channels, 3, 5)
    xb = to_blocked_ref(x)
    assert xb.shape == (2, blocks(channels), 3, 5, 16)
    assert xb[0, 0, 1, 2, 0] == x[0, 0, 1, 2] and xb[1, -1, 2, 4, (channels - 1) % 16] == \
        x[1, -1, 2, 4]
    assert not xb[:, -1, ..., channels % 16 or 16:].any()  # the padding lanes are zero
    assert np.array_equal(from_blocked_ref(xb, channels), x)


@pytest.mark.parametrize("channels", [5, 16, 20])
def test_conversions_on_cpu_equal_the_reference_with_their_gradients(channels):
    rng = np.random.default_rng(channels)
    check_op("to_blocked", [rand(rng, 2, channels, 3, 4)])
    check_op("from_blocked", [rand(rng, 2, blocks(channels), 3, 4, 16)],
             {"channels": channels})


def test_bad_blocked_shapes_name_the_op_and_the_shapes():
    g = Graph()
    x = g.input("x", (1, 2, 4, 4, 16))
    with pytest.raises(GraphBuildError, match=r"from_blocked.*\(1, 2, 4, 4, 16\).*40 channels"):
        g.add("from_blocked", [x], channels=40)
    w = g.input("w", (8, 20, 1, 1))
    with pytest.raises(GraphBuildError, match=r"conv2d_blocked.*\(1, 2, 4, 4, 8\).*20 channels"):
        g.add("conv2d_blocked", [g.input("y", (1, 2, 4, 4, 8)), w])
    with pytest.raises(GraphBuildError, match="N, C, H, W"):
        g.add("to_blocked", [x])


# ---- the kernels -------------------------------------------------------------------------------

@st.composite
def blocked_conv_case(draw):
    """(x shape NCHW, w shape, attrs, whether x comes blocked): a 1x1 conv, a depthwise
    3x3, any other one-group conv (on a blocked or an NCHW input), or a grouped one (which
    the kernel runs through NCHW), up to 40 channels (partial last blocks)."""
    kind = draw(st.sampled_from(["pointwise", "depthwise", "general", "grouped"]))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 40))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if kind == "pointwise":
        return (n, c, h, w), (draw(st.integers(1, 40)), c, 1, 1), dict(
            stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1), True
    pads = draw(st.tuples(*[st.integers(0, 2)] * 4))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (1, 1) if kind == "depthwise" else (draw(st.integers(1, 2)),
                                                   draw(st.integers(1, 2)))
    kernel = (3, 3) if kind == "depthwise" else (draw(st.integers(1, 3)),
                                                 draw(st.integers(1, 3)))
    assume(h + pads[0] + pads[1] >= (kernel[0] - 1) * dilation[0] + 1
           and w + pads[2] + pads[3] >= (kernel[1] - 1) * dilation[1] + 1)
    attrs = dict(stride=stride, padding=pads, dilation=dilation, groups=1)
    if kind == "depthwise":
        return (n, c, h, w), (c, 1) + kernel, dict(attrs, groups=c), True
    if kind == "grouped":
        c = 2 * -(-c // 2)
        return (n, c, h, w), (4, c // 2) + kernel, dict(attrs, groups=2), True
    return (n, c, h, w), (draw(st.integers(1, 20)), c) + kernel, attrs, draw(st.booleans())


@given(case=blocked_conv_case(), bias=st.booleans(), frozen=st.booleans(),
       seed=st.integers(0, 2**16))
def test_conv2d_blocked_kernel_equals_the_reference(case, bias, frozen, seed):
    """The cpu kernel on random shapes, a blocked input's padding lanes NaN: the real
    channels equal the reference's (padding never read into them); weights frozen or
    not."""
    from graphcnn.backends.cpu.registry import get_kernel
    from graphcnn.backends.cpu.strategy import array_site, choose
    from graphcnn.ops.registry import get_op
    x_shape, w_shape, attrs, blocked_input = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, *x_shape), rand(rng, *w_shape)
    ins = [to_blocked_ref(x) if blocked_input else x, w] + (
        [rand(rng, w_shape[0])] if bias else [])
    if blocked_input:
        ins[0][:, -1, ..., x_shape[1] % 16 or 16:] = np.nan
    for a in ins[1:]:
        a.setflags(write=not frozen)
    op = get_op("conv2d_blocked")
    out_type = op.infer([gc.ir.types.TensorType(a.shape, "float32") for a in ins], attrs)[0]
    out = np.full(out_type.shape, 7.0, np.float32)
    get_kernel("conv2d_blocked")(ins, [out], attrs)
    want = from_blocked_ref(op.run_ref([x] + ins[1:], attrs)[0], w_shape[0])
    got = from_blocked_ref(out, w_shape[0])
    np.testing.assert_allclose(
        got, want, rtol=1e-4, atol=1e-4 * max(1, x_shape[1]) ** 0.5,
        err_msg=choose(array_site("conv2d_blocked", ins, out, attrs))[0].name)


def nchw16c_choice(w_shape, attrs, dtype, blocked_input=True):
    """The conv2d_blocked implementation the cpu strategy picks for such a node."""
    from graphcnn.backends.cpu.strategy import Site, choose
    c, dt = w_shape[1] * attrs["groups"], np.dtype(dtype)
    x = (1, blocks(c), 8, 8, 16) if blocked_input else (1, c, 8, 8)
    site = Site("conv2d_blocked", attrs, (x, w_shape), (dt, dt), (1, blocks(w_shape[0]), 8, 8, 16),
                dt, (None, None))
    return choose(site)[0].name


def test_each_conv_goes_to_its_kernel():
    one = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    depthwise = dict(one, padding=(1, 1, 1, 1), groups=24)
    assert nchw16c_choice((32, 24, 1, 1), one, np.float32) == "nchw16c-1x1"
    assert nchw16c_choice((32, 24, 1, 1), one, np.float32, False) == "nchw16c-implicit"
    assert nchw16c_choice((24, 1, 3, 3), depthwise, np.float32) == "nchw16c-depthwise-3x3"
    assert nchw16c_choice((24, 1, 3, 3), depthwise, np.float64) == "nchw16c-via-nchw"
    assert nchw16c_choice((32, 24, 1, 1), one, np.float64) == "nchw16c-via-nchw"
    assert nchw16c_choice((32, 24, 3, 3), one, np.float32) == "nchw16c-implicit"
    assert nchw16c_choice((32, 12, 3, 3), dict(one, groups=2), np.float32) == \
        "nchw16c-via-nchw"


def test_conv2d_blocked_in_float64_and_fused_with_its_epilogue():
    """float64 runs through NCHW; a fused conv2d_blocked + clip + add on the cpu equals
    the reference."""
    rng = np.random.default_rng(3)
    x = to_blocked_ref(rand(rng, 2, 20, 6, 5))
    attrs = dict(padding=1, groups=20)
    w, b = rand(rng, 20, 1, 3, 3), rand(rng, 20)
    check_op("conv2d_blocked", [x, w, b], attrs, grad=False)
    got = forward("conv2d_blocked", [x, w], attrs, "cpu", "float64")[0]
    want = forward("conv2d_blocked", [x, w], attrs, "reference", "float64")[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    g = Graph()
    xs, ws, bs = (g.input(name, a.shape) for name, a in (("x", x), ("w", w), ("b", b)))
    conv = g.add("conv2d_blocked", [xs, ws, bs], **attrs)
    g.set_outputs([g.add("add", [g.add("clip", [conv], low=0.0, high=1.0), xs])])
    fused = gc.passes.fusion.fuse_operators(g)
    assert [n.op for n in fused.nodes if n.op != "input"] == ["fused"]
    from graphcnn.runtime.executable import make_runner
    feeds = {v.id: a for v, a in zip(g.inputs, (x, w, b))}
    want = make_runner(g, "reference").run(feeds)[0]
    got = make_runner(fused, "cpu").run({v.id: feeds[v.id] for v in fused.inputs})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- the pass ----------------------------------------------------------------------------------

def inverted_residual(channels: int = 20, expand: int = 3, dtype: str = "float32",
                      depthwise: bool = True, extra_reader: bool = False) -> Graph:
    """A MobileNetV2 block after batch-norm folding: a 3x3 stem, 1x1 expand + relu6,
    depthwise 3x3 + relu6, 1x1 project, residual add, then global pooling and a dense
    layer. `extra_reader`: the depthwise output is also average-pooled into a second output
    (an op that runs in NCHW only)."""
    rng = np.random.default_rng(0)
    g = Graph("block")

    def const(*shape):
        return g.constant(rand(rng, *shape, dtype=dtype) * 0.3)

    x = g.input("x", (2, 3, 12, 12), dtype)
    stem = g.add("clip", [g.add("conv2d", [x, const(channels, 3, 3, 3), const(channels)],
                                padding=1)], low=0.0, high=6.0)
    wide = channels * expand
    h = g.add("clip", [g.add("conv2d", [stem, const(wide, channels, 1, 1), const(wide)])],
              low=0.0, high=6.0)
    if depthwise:
        d = g.add("clip", [g.add("conv2d", [h, const(wide, 1, 3, 3), const(wide)],
                                 padding=1, groups=wide)], low=0.0, high=6.0)
    else:
        d = g.add("relu", [h])
    y = g.add("add", [g.add("conv2d", [d, const(channels, wide, 1, 1), const(channels)]), stem])
    pooled = g.add("flatten", [g.add("global_avg_pool2d", [y])])
    outputs = [g.add("linear", [pooled, const(5, channels), const(5)])]
    if extra_reader:
        outputs.append(g.add("avg_pool2d", [d], kernel_size=2))
    g.set_outputs(outputs)
    return g


def run(graph: Graph, x: np.ndarray, backend: str) -> list[np.ndarray]:
    from graphcnn.runtime.executable import make_runner
    return make_runner(graph, backend).run({graph.inputs[0].id: x})


def test_the_depthwise_region_runs_blocked_with_one_conversion_each_way():
    graph = inverted_residual()
    after = nchw16c_layout(graph)
    ops = Counter(n.op for n in after.nodes)
    # The stem reads the NCHW image and writes blocks: no conversion on the way in; one
    # on the way out, before the global pooling.
    assert ops["conv2d"] == 0 and ops["conv2d_blocked"] == 4
    assert ops["to_blocked"] == 0 and ops["from_blocked"] == 1
    stem = next(n for n in after.nodes if n.op == "conv2d_blocked")
    assert stem.inputs[0].type.ndim == 4 and stem.outputs[0].type.ndim == 5
    assert str(graph).count("conv2d_blocked") == 0  # the pass does not mutate its input
    x = rand(np.random.default_rng(1), 2, 3, 12, 12)
    want = run(graph, x, "reference")
    for backend in ("reference", "cpu"):
        np.testing.assert_allclose(run(after, x, backend)[0], want[0], rtol=1e-4, atol=1e-5)


def test_a_value_read_outside_the_region_is_converted_once():
    graph = inverted_residual(extra_reader=True)
    after = nchw16c_layout(graph)
    ops = Counter(n.op for n in after.nodes)
    assert ops["from_blocked"] == 2 and ops["avg_pool2d"] == 1  # the residual sum, d
    x = rand(np.random.default_rng(2), 2, 3, 12, 12)
    for got, want in zip(run(after, x, "cpu"), run(graph, x, "reference")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(depthwise=False), dict(dtype="float64")])
def test_graphs_without_a_float32_depthwise_region_are_left_alone(kwargs):
    graph = inverted_residual(**kwargs)
    assert nchw16c_regions(graph) == set()
    assert nchw16c_layout(graph) is graph


def image_stem(channels: int = 20, conv_read_twice: bool = False) -> Graph:
    """ResNet's stem after batch-norm folding: a 7x7/2 conv on the image, relu, a 3x3/2 max
    pool, then a 3x3 conv with the pool's output added back (20 channels: a partial
    block). `conv_read_twice`: the relu's output is a graph output too."""
    rng = np.random.default_rng(1)
    g = Graph("stem")
    x = g.input("x", (2, 3, 30, 30), "float32")
    w = g.constant(rand(rng, channels, 3, 7, 7) * 0.2)
    y = g.add("relu", [g.add("conv2d", [x, w, g.constant(rand(rng, channels))], stride=2,
                             padding=3)])
    p = g.add("max_pool2d", [y], kernel_size=3, stride=2, padding=1)
    w2 = g.constant(rand(rng, channels, channels, 3, 3) * 0.2)
    out = g.add("relu", [g.add("add", [g.add("conv2d", [p, w2], padding=1), p])])
    g.set_outputs([out, y] if conv_read_twice else [out])
    return g


def test_an_image_stems_pool_runs_blocked_and_only_its_output_is_converted():
    """The stem's conv reads the image as it is and writes blocks, the pool reads them, and
    the pooled map (a quarter of the conv's) is the one value converted back to NCHW; the
    residual add after the pool stays NCHW (a pool ends its region). Where the conv's output
    is read elsewhere too, the region would convert two values for one pool: NCHW."""
    graph = image_stem()
    after = nchw16c_layout(graph)
    ops = Counter(n.op for n in after.nodes)
    assert (ops["conv2d_blocked"], ops["max_pool2d_blocked"], ops["from_blocked"],
            ops["to_blocked"]) == (1, 1, 1, 0)
    assert ops["conv2d"] == 1 and ops["add"] == 1
    x = rand(np.random.default_rng(2), 2, 3, 30, 30)
    x[0, 1, 4:9, 4:9] = np.nan   # a NaN reaches some windows of the pool
    want = run(graph, x, "reference")[0]
    np.testing.assert_allclose(run(after, x, "cpu")[0], want, rtol=1e-4, atol=1e-5)
    assert np.isnan(want).any()
    twice = image_stem(conv_read_twice=True)
    assert nchw16c_regions(twice) == set() and nchw16c_layout(twice) is twice


def test_a_region_with_more_conversions_than_convolutions_stays_nchw():
    """Compiled with frozen=False the batch norms stay (their parameters are inputs), so
    each depthwise conv would be a region of its own, converted in and out: none is."""
    model = gc.models.mobilenet_v2(10, width_mult=0.5, input_size=32)
    exe = gc.compile(model, batch_size=2, frozen=False)
    ops = Counter(n.attrs.get("anchor") or n.op for n in exe.graph.nodes)
    assert ops["batch_norm"] > 0 and not ops["to_blocked"] and not ops["conv2d_blocked"]
    x = rand(np.random.default_rng(7), 2, 3, 32, 32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)


def test_the_pipeline_runs_the_pass_for_the_cpu_backend_before_fusion():
    from graphcnn.passes import run_pipeline
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.passes.pipeline import passes_for
    cpu = passes_for(2, "cpu")
    assert cpu[-4:-2] == [nchw16c_layout, fuse_expand_depthwise]
    assert cpu[-1] is fuse_operators
    assert nchw16c_layout not in passes_for(2) + passes_for(2, "cuda") + passes_for(1, "cpu")
    fused, _ = run_pipeline(inverted_residual(), 2, "cpu")
    anchors = Counter(n.attrs["anchor"] for n in fused.nodes if n.op == "fused")
    # stem + clip, expand + clip + depthwise + clip, project + add
    assert anchors == {"conv2d_blocked": 2, "expand_depthwise_blocked": 1}


def test_a_compiled_mobilenet_runs_blocked_and_equals_opt_level_0():
    model = gc.models.mobilenet_v2(10, width_mult=0.5, input_size=32)
    x = rand(np.random.default_rng(4), 2, 3, 32, 32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=2)
    ops = Counter(n.attrs.get("anchor") or n.op for n in exe.graph.nodes)
    assert ops["conv2d_blocked"] > 10 and ops["conv2d"] == ops["to_blocked"] == 0
    assert ops["expand_depthwise_blocked"] == 16  # every block but the first (no expansion)
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["pointwise", "depthwise", "stem"])
@pytest.mark.parametrize("steps", [("add",), ("clip",), ("relu",), ("add", "clip"),
                                   ("add", "relu"), ("clip", "add"), ("mul",)])
def test_epilogues_in_the_blocked_kernels_equal_the_ops_run_one_by_one(kind, steps,
                                                                       monkeypatch):
    """A fused conv2d_blocked + add/clip/relu group, run by the cpu (the kernels apply add,
    then clip or relu, as they store; other chains go through the generated epilogue):
    bit for bit what the unfused ops give one kernel each, NaN in the side input too."""
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.runtime.executable import make_runner
    rng = np.random.default_rng(len(steps))
    c = 20
    x = rand(rng, 2, 3, 9, 8) if kind == "stem" else to_blocked_ref(rand(rng, 2, c, 9, 8))
    w = {"pointwise": rand(rng, 24, c, 1, 1), "depthwise": rand(rng, c, 1, 3, 3),
         "stem": rand(rng, 24, 3, 3, 3)}[kind]
    attrs = {"pointwise": {}, "depthwise": dict(padding=1, groups=c),
             "stem": dict(padding=1, stride=2)}[kind]
    g = Graph()
    xs, ws = g.input("x", x.shape), g.input("w", w.shape)
    y = g.add("conv2d_blocked", [xs, ws], **attrs)
    side = rand(rng, *y.shape) * 3
    side[0, 0, 0, 0, :3] = np.nan
    ss = g.input("side", side.shape)
    for step in steps:
        y = {"add": lambda v: g.add("add", [ss, v]), "mul": lambda v: g.add("mul", [v, ss]),
             "clip": lambda v: g.add("clip", [v], low=-0.5, high=1.5),
             "relu": lambda v: g.add("relu", [v])}[step](y)
    g.set_outputs([y])
    fused = fuse_operators(g)
    assert [n.op for n in fused.nodes if n.op != "input"] == ["fused"]
    from graphcnn.backends.cpu.kernels import nchw16c
    function = {"pointwise": "conv_pointwise", "depthwise": "conv_depthwise",
                "stem": "conv_implicit"}[kind]
    original, modes = getattr(nchw16c, function), []
    monkeypatch.setattr(nchw16c, function, lambda ins, out, attrs, epilogue=nchw16c.NO_EPILOGUE: (
        modes.append(epilogue.mode), original(ins, out, attrs, epilogue)))
    feeds = {"x": x, "w": w, "side": side}
    runner = make_runner(fused, "cpu")  # the strategy binds the patched function
    got = runner.run({v.id: feeds[v.node.attrs["name"]] for v in fused.inputs})
    in_kernel = steps not in (("clip", "add"), ("mul",))
    assert modes and all(modes) == in_kernel
    ((_, _, name, why),) = runner.implementations()
    assert name == {"pointwise": "nchw16c-1x1", "depthwise": "nchw16c-depthwise-3x3",
                    "stem": "nchw16c-implicit"}[kind]
    assert ("as it stores" in why) == in_kernel
    want = make_runner(g, "cpu").run({v.id: feeds[v.node.attrs["name"]] for v in g.inputs})
    np.testing.assert_array_equal(got[0], want[0])


def test_which_chains_the_blocked_kernels_take_as_their_epilogue():
    from graphcnn.backends.cpu.kernels.nchw16c import epilogue_of
    from graphcnn.backends.cpu.kernels.vector_ir import ADD_SIDE, CLIP, RELU
    out, side, small = np.zeros((1, 2, 3, 3, 16)), np.ones((1, 2, 3, 3, 16)), np.ones((1, 16))
    ins = [None, None, side, small]
    clip = ("clip", {"low": 0.0, "high": 6.0}, (-1,))
    assert epilogue_of((clip,), ins, out).mode == CLIP
    add_relu = epilogue_of((("add", {}, (2, -1)), ("relu", {}, (-1,))), ins, out)
    assert add_relu.mode == ADD_SIDE | RELU and add_relu.side is side
    assert epilogue_of((("add", {}, (-1, 3)),), ins, out) is None     # broadcast side
    assert epilogue_of((clip, ("add", {}, (-1, 2))), ins, out) is None  # add after clip
    assert epilogue_of((("sigmoid", {}, (-1,)),), ins, out) is None


# ---- the expansion and depthwise conv as one op --------------------------------------------

def test_expand_clip_depthwise_become_one_node_where_nothing_else_reads_them():
    after = fuse_expand_depthwise(nchw16c_layout(inverted_residual()))
    ops = Counter(n.op for n in after.nodes)
    assert ops["expand_depthwise_blocked"] == 1 and ops["conv2d_blocked"] == 2
    x = rand(np.random.default_rng(5), 2, 3, 12, 12)
    want = run(inverted_residual(), x, "reference")[0]
    for backend in ("reference", "cpu"):
        np.testing.assert_allclose(run(after, x, backend)[0], want, rtol=1e-4, atol=1e-5)
    # the depthwise output read twice is fine; the expanded tensor read twice is not fused
    extra = fuse_expand_depthwise(nchw16c_layout(inverted_residual(extra_reader=True)))
    assert Counter(n.op for n in extra.nodes)["expand_depthwise_blocked"] == 1
    graph = nchw16c_layout(inverted_residual())
    expanded = [n for n in graph.nodes if n.op == "clip"][1].outputs[0]  # after the stem's
    graph.set_outputs(graph.outputs + [expanded], graph.output_names + ["expanded"])
    assert Counter(n.op for n in fuse_expand_depthwise(graph).nodes)[
        "expand_depthwise_blocked"] == 0


@given(n=st.integers(1, 2), c=st.integers(1, 40), e=st.integers(1, 70),
       h=st.integers(1, 13), w=st.integers(1, 13), stride=st.integers(1, 2),
       pads=st.tuples(*[st.integers(0, 2)] * 4), epilogue=st.sampled_from(["", "clip", "add"]),
       small_bands=st.booleans(), seed=st.integers(0, 2**16))
def test_expand_depthwise_kernel_equals_the_reference(n, c, e, h, w, stride, pads, epilogue,
                                                      small_bands, seed):
    """The fused kernel on random shapes (partial blocks, an odd number of expanded
    blocks, rows shorter than a tile, both strides, any padding up to 2, one band or bands
    of two or three output rows), alone and with a fused clip or residual add, the input's
    padding lanes NaN: equal to the reference."""
    from graphcnn.backends.cpu.kernels import nchw16c_expand
    from graphcnn.backends.cpu.kernels.nchw16c_conv import Epilogue
    from graphcnn.backends.cpu.kernels.nchw16c_expand import run_expand_depthwise
    from graphcnn.backends.cpu.kernels.vector_ir import ADD_SIDE, CLIP
    from graphcnn.backends.cpu.strategy import array_site, choose
    from graphcnn.ops.registry import get_op
    assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    rng = np.random.default_rng(seed)
    x = to_blocked_ref(rand(rng, n, c, h, w))
    x[:, -1, ..., c % 16 or 16:] = np.nan
    ins = [x, rand(rng, e, c, 1, 1), rand(rng, e), rand(rng, e, 1, 3, 3), rand(rng, e)]
    attrs = dict(stride=(stride, stride), padding=pads, dilation=(1, 1), groups=e,
                 low=-0.5, high=1.0)
    op = get_op("expand_depthwise_blocked")
    want = op.run_ref(ins, attrs)[0]
    side = rand(rng, *want.shape)
    mode = {"": 0, "clip": CLIP, "add": ADD_SIDE}[epilogue]
    out = np.full(want.shape, 7.0, np.float32)
    scratch_bytes = nchw16c_expand.SCRATCH_BYTES
    if small_bands:  # room for five input rows of the widest image drawn (17 columns)
        nchw16c_expand.SCRATCH_BYTES = 2 * 17 * 16 * 4 * 5
    try:
        run_expand_depthwise(ins, out, attrs, Epilogue(side if mode == ADD_SIDE else None,
                                                       mode, -0.3, 0.3))
    finally:
        nchw16c_expand.SCRATCH_BYTES = scratch_bytes
    if mode == CLIP:
        want = np.clip(want, -0.3, 0.3)
    elif mode == ADD_SIDE:
        want = want + side
    np.testing.assert_allclose(from_blocked_ref(out, e), from_blocked_ref(want, e),
                               rtol=1e-4, atol=1e-4 * max(1, c) ** 0.5)
    chosen, _ = choose(array_site("expand_depthwise_blocked", ins, out, attrs))
    assert chosen.name == "nchw16c-expand-depthwise"


def test_expand_depthwise_in_float64_runs_the_two_convolutions():
    rng = np.random.default_rng(6)
    x = to_blocked_ref(rand(rng, 2, 20, 6, 5))
    ins = [x, rand(rng, 24, 20, 1, 1), rand(rng, 24), rand(rng, 24, 1, 3, 3), rand(rng, 24)]
    attrs = dict(padding=1, groups=24, low=0.0, high=6.0)
    want = forward("expand_depthwise_blocked", ins, attrs, "reference", "float64")[0]
    got = forward("expand_depthwise_blocked", ins, attrs, "cpu", "float64")[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    check_op("expand_depthwise_blocked", ins, attrs, grad=False)

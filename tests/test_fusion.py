"""Kernel counts after fusion, in tinygrad's check_schedule style: build a small model with
the DSL, compile it, assert how many kernels the executable runs (exe.report()["kernels"])
and which ops sit inside each fused group; and opt level 2 computes what opt level 0 does
(1e-4) on the reference and the cpu backend."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.ir import Graph
from graphcnn.ops.fused import member_ops

BACKENDS = ("reference", "cpu")
RNG = np.random.default_rng(4)


# ---- helpers -------------------------------------------------------------------------------

def check_schedule(exe: gc.Executable, kernels: int | None = None,
                   max_kernels: int | None = None) -> list[tuple[str, ...]]:
    """Assert the kernel count; return each kernel as its tuple of member ops."""
    count = exe.report()["kernels"]
    if kernels is not None:
        assert count == kernels, _schedule_text(exe.graph)
    if max_kernels is not None:
        assert count <= max_kernels, _schedule_text(exe.graph)
    return schedule(exe.graph)


def schedule(graph: Graph) -> list[tuple[str, ...]]:
    return [tuple(member_ops(n.attrs)) if n.op == "fused" else (n.op,)
            for n in graph.compute_nodes()]


def _schedule_text(graph: Graph) -> str:
    return "schedule:\n" + "\n".join(" + ".join(k) for k in schedule(graph))


def randomize_bn_statistics(model: gc.Model) -> None:
    for key, value in model.parameters().items():
        if key.endswith("running_var"):
            value[...] = RNG.uniform(0.5, 2.0, value.shape)
        elif key.endswith("running_mean"):
            value[...] = RNG.normal(0, 0.3, value.shape)
        elif key.endswith("bias"):
            value[...] = RNG.normal(0, 0.3, value.shape)


def assert_opt2_equals_opt0(model: gc.Model, x: np.ndarray) -> None:
    want = gc.compile(model, batch_size=len(x), backend="reference", opt_level=0)(x)
    for backend in BACKENDS:
        for level in (0, 2):
            got = gc.compile(model, batch_size=len(x), backend=backend, opt_level=level)(x)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{backend} opt {level}")


# ---- models --------------------------------------------------------------------------------

def conv_bias_relu(explicit_bias: bool = False) -> gc.Model:
    """conv2d (bias inside it, or a separate broadcast add) + relu."""
    x = gc.Input((3, 8, 8), name="image")
    if explicit_bias:
        h = nn.Conv2d(3, 4, 3, padding=1, bias=False, name="conv")(x)
        h = h + gc.constant(RNG.normal(size=(4, 1, 1)))
    else:
        h = nn.Conv2d(3, 4, 3, padding=1, name="conv")(x)
    return gc.Model(inputs=x, outputs=gc.relu(h), name="conv_bias_relu")


def basic_block(channels: int = 8) -> gc.Model:
    """ResNet's basic block: conv-bn-relu-conv-bn, + identity, relu."""
    x = gc.Input((channels, 8, 8), name="image")
    h = nn.Conv2d(channels, channels, 3, padding=1, bias=False, name="conv1")(x)
    h = gc.relu(nn.BatchNorm2d(channels, name="bn1")(h))
    h = nn.Conv2d(channels, channels, 3, padding=1, bias=False, name="conv2")(h)
    h = nn.BatchNorm2d(channels, name="bn2")(h)
    model = gc.Model(inputs=x, outputs=gc.relu(gc.add(h, x)), name="basic_block")
    randomize_bn_statistics(model)
    return model


def conv_relu_conv() -> gc.Model:
    """Two convs with a relu between: the backward pass has conv2d_input_grad -> relu_grad."""
    x = gc.Input((2, 8, 8), name="image")
    h = gc.relu(nn.Conv2d(2, 4, 3, padding=1, name="c1")(x))
    h = nn.Conv2d(4, 4, 3, padding=1, name="c2")(h)
    return gc.Model(inputs=x, outputs=nn.Linear(4 * 8 * 8, 3, name="fc")(gc.flatten(h)),
                    name="conv_relu_conv")


# ---- inference ---------------------------------------------------------------------------

@pytest.mark.parametrize("explicit_bias", [False, True], ids=["conv_bias", "add_bias"])
def test_conv_bias_relu_is_one_kernel(explicit_bias):
    model = conv_bias_relu(explicit_bias)
    exe = gc.compile(model, batch_size=2, opt_level=2)
    kernels = check_schedule(exe, kernels=1)
    assert kernels == [("conv2d", "add", "relu")] if explicit_bias else [("conv2d", "relu")]
    assert exe.report()["ops_before"] == (3 if explicit_bias else 2)
    assert gc.compile(model, batch_size=2, opt_level=0).report()["kernels"] == \
        (3 if explicit_bias else 2)
    assert_opt2_equals_opt0(model, RNG.normal(size=(2, 3, 8, 8)).astype(np.float32))


def test_the_pass_decides_by_fusion_kind(monkeypatch):
    """relu fuses into conv2d's epilogue because it is ELEMWISE (and has a formula); the
    same op declared INJECTIVE would stay its own kernel."""
    from graphcnn.ops.registry import FusionKind, get_op
    model = conv_bias_relu(False)
    assert schedule(gc.compile(model, batch_size=2).graph) == [("conv2d", "relu")]
    monkeypatch.setattr(get_op("relu"), "kind", FusionKind.INJECTIVE)
    assert schedule(gc.compile(model, batch_size=2).graph) == [("conv2d",), ("relu",)]


def test_resnet_basic_block_is_at_most_two_kernels():
    model = basic_block()
    exe = gc.compile(model, batch_size=2, opt_level=2)
    kernels = check_schedule(exe, max_kernels=2)
    # batch norms folded into the convs; the residual add and relu in the second's epilogue
    assert kernels == [("conv2d", "relu"), ("conv2d", "add", "relu")]
    assert gc.compile(model, batch_size=2, opt_level=0).report()["kernels"] == 7
    assert_opt2_equals_opt0(model, RNG.normal(size=(2, 8, 8, 8)).astype(np.float32))


def test_lenet5_inference_kernels():
    model = gc.models.lenet5()
    exe = gc.compile(model, batch_size=2, opt_level=2)
    kernels = check_schedule(exe, kernels=7)      # the flatten is a view: no kernel
    assert Counter(kernels)[("conv2d", "tanh")] == 3
    assert ("linear", "tanh") in kernels
    assert_opt2_equals_opt0(model, RNG.normal(size=(2, 1, 32, 32)).astype(np.float32))


def test_resnet18_small_kernels():
    model = gc.models.resnet18(10, width=8, input_size=32)
    randomize_bn_statistics(model)
    exe = gc.compile(model, batch_size=1, opt_level=2)
    kernels = check_schedule(exe, max_kernels=30)
    assert Counter(kernels)[("conv2d", "add", "relu")] == 8      # a residual per block
    assert not any("batch_norm" in k for k in kernels)
    assert_opt2_equals_opt0(model, RNG.normal(size=(1, 3, 32, 32)).astype(np.float32))


def test_shared_value_is_not_fused_into_two_groups():
    """A conv output read twice (relu and sigmoid) is no chain: the conv stays alone."""
    x = gc.Input((2, 6, 6), name="image")
    h = nn.Conv2d(2, 3, 3, name="conv")(x)
    model = gc.Model(inputs=x, outputs=gc.add(gc.relu(h), gc.sigmoid(h)), name="fork")
    exe = gc.compile(model, batch_size=1, opt_level=2)
    kernels = check_schedule(exe, max_kernels=3)
    assert ("conv2d",) in kernels
    assert_opt2_equals_opt0(model, RNG.normal(size=(1, 2, 6, 6)).astype(np.float32))


# ---- training ----------------------------------------------------------------------------

def _grad_groups(graph: Graph, grad_op: str) -> list[tuple[str, ...]]:
    return [k for k in schedule(graph) if len(k) > 1 and grad_op in k]


def test_lenet5_training_fuses_tanh_grad_into_pool_grad_epilogues():
    step = gc.value_and_grad(gc.models.lenet5(), batch_size=4, opt_level=2)
    groups = _grad_groups(step.executable.graph, "tanh_grad")
    # s4 and s2: the gradient through the pooling, then through c3's and c1's tanh
    assert groups.count(("avg_pool2d_grad", "tanh_grad")) == 2
    # f6: the gradient of the f7 input, then through f6's tanh
    assert ("matmul", "tanh_grad") in groups
    report = step.report()
    assert report["kernels"] < report["ops_before"]


def test_conv_training_fuses_relu_grad_into_conv_input_grad():
    step = gc.value_and_grad(conv_relu_conv(), batch_size=2, opt_level=2)
    groups = _grad_groups(step.executable.graph, "relu_grad")
    assert ("conv2d_input_grad", "relu_grad") in groups


@pytest.mark.parametrize("build, shape", [
    (gc.models.lenet5, (1, 32, 32)),
    (conv_relu_conv, (2, 8, 8)),
], ids=["lenet5", "conv_relu_conv"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_training_step_opt2_equals_opt0(build, shape, backend):
    model = build()
    x = RNG.normal(size=(4,) + shape).astype(np.float32)
    labels = RNG.integers(0, model.outputs[0].shape[-1], 4)
    want_loss, want = gc.value_and_grad(model, batch_size=4, backend="reference",
                                        opt_level=0)(x, labels)
    for level in (0, 2):
        loss, grads = gc.value_and_grad(model, batch_size=4, backend=backend,
                                        opt_level=level)(x, labels)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-4)
        assert grads.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(grads[name], want[name], rtol=1e-4, atol=1e-4,
                                       err_msg=f"{backend} opt {level} {name}")


@pytest.mark.parametrize("side_shape, once_per_row", [
    ((4, 1, 1), True), ((4, 40, 1), True), ((1, 1, 40), False), ((4, 40, 40), False)])
def test_a_side_constant_along_the_inner_loop_is_read_once_per_row(side_shape, once_per_row):
    """A per-channel (or per-row) side is read before the generated inner loop, not per
    element: its zero stride would keep LLVM from vectorizing the loop. The values are the
    reference's, on planes wide enough to merge (40x40)."""
    from graphcnn.backends.cpu import codegen
    from graphcnn.backends.cpu.kernels import fused
    out_shape = (2, 4, 40, 40)
    view = fused._plane_view(out_shape, [side_shape])
    assert fused._constant_along_rows(side_shape, out_shape, view) == once_per_row
    attrs = {"anchor": "", "anchor_attrs": {}, "anchor_inputs": 0,
             "steps": (("mul", {}, (0, 1)), ("relu", {}, (-1,)))}
    lines = codegen.generate_source(attrs, "plane", [1] if once_per_row else []).splitlines()
    inner = next(i for i, line in enumerate(lines) if "for x in" in line)
    read = next(i for i, line in enumerate(lines) if line.strip().startswith("a1 = "))
    assert (read < inner) == once_per_row
    x = gc.Input((4, 40, 40), name="x")
    side = gc.constant(RNG.normal(size=side_shape).astype(np.float32))
    model = gc.Model(x, gc.relu(x * side))
    xs = RNG.normal(size=(2, 4, 40, 40)).astype(np.float32)
    got = gc.compile(model, batch_size=2)(xs)
    np.testing.assert_array_equal(got, gc.compile(model, batch_size=2, backend="reference")(xs))


@pytest.mark.parametrize("side_shape", [(4, 6, 6), (4, 1, 1), (4, 6, 1), (1, 1, 6), (6, 6)])
def test_epilogue_sides_broadcast_into_the_flat_plane_view(side_shape):
    """The cpu epilogue runs over (N, C, 1, H*W) views: full sides, per-channel sides and
    sides broadcast along only one of H and W all give what opt level 0 gives."""
    x = gc.Input((4, 6, 6), name="x")
    side = gc.constant(RNG.normal(size=side_shape).astype(np.float32))
    y = gc.relu(nn.Conv2d(4, 4, 3, padding=1)(x) * side + 1.0)
    model = gc.Model(x, y)
    exe = gc.compile(model, batch_size=2, opt_level=2)
    check_schedule(exe, kernels=1)
    assert_opt2_equals_opt0(model, RNG.normal(size=(2, 4, 6, 6)).astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 4, 3, 3), (2, 16, 32, 32)])
def test_small_groups_run_serially_and_large_ones_on_the_threads(shape, monkeypatch):
    """A group's kernel over fewer than codegen.SERIAL_BELOW elements is compiled without
    `parallel` (waking the threads costs more than such a loop); a larger one keeps it.
    Both give the reference's values, the serial one for a per-channel side too."""
    from graphcnn.backends.cpu import codegen
    from graphcnn.backends.cpu.kernels import fused
    built: list[bool] = []

    class Recording(codegen.GeneratedKernel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append("parallel=True" in self.source)

    monkeypatch.setattr(fused, "GeneratedKernel", Recording)
    serial = codegen.runs_serially(shape)
    assert serial == (np.prod(shape) < codegen.SERIAL_BELOW)
    x = gc.Input(shape[1:], name="x")
    scale = gc.constant(RNG.normal(size=(shape[1], 1, 1)).astype(np.float32))
    model = gc.Model(x, [gc.relu(x) + 1.0, gc.sigmoid(x * scale)])
    xs = RNG.normal(size=shape).astype(np.float32)
    got = gc.compile(model, batch_size=shape[0])(xs)
    want = gc.compile(model, batch_size=shape[0], backend="reference")(xs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert built and all(parallel == (not serial) for parallel in built)

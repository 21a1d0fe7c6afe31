"""Fused groups from the fusion pass, a small model compiled and differentiated on the
cuda backend against the reference, the device-array API and resident parameters."""
import itertools

import numpy as np
import pytest
from helpers import rand

import graphcnn as gc
from graphcnn import nn
from graphcnn.ir.graph import Graph
from graphcnn.passes.fusion import fuse_operators
from graphcnn.runtime.executable import make_runner


def _run(graph, backend, feeds):
    runner = make_runner(graph, backend)
    return runner.run({v.id: a for v, a in feeds}), runner


def test_fused_conv_bias_residual_relu_and_elementwise_chain():
    g = Graph("fused")
    x = g.input("x", (2, 3, 6, 6))
    w = g.input("w", (4, 3, 3, 3))
    res = g.input("res", (2, 4, 6, 6))
    bias = g.input("bias", (1, 4, 1, 1))
    y = g.add("conv2d", [x, w], padding=1)
    y = g.add("relu", [g.add("add", [g.add("add", [y, bias]), res])])
    z = g.add("tanh", [g.add("mul", [res, res])])
    z = g.add("clip", [z], low=-0.2, high=0.3)
    s = g.add("linear", [g.add("flatten", [y]), g.input("wl", (5, 144))])
    s = g.add("leaky_relu", [s], alpha=0.1)
    g.set_outputs([y, z, s])
    fused = fuse_operators(g)
    kinds = [n.attrs["anchor"] for n in fused.nodes if n.op == "fused"]
    assert "conv2d" in kinds and "linear" in kinds and "" in kinds, kinds
    arrays = [rand(2, 3, 6, 6), rand(4, 3, 3, 3), rand(2, 4, 6, 6), rand(1, 4, 1, 1),
              rand(5, 144)]
    inputs = [n.output for n in fused.nodes if n.op == "input"]
    want, _ = _run(fused, "reference", zip(inputs, arrays))
    got, runner = _run(fused, "cuda", zip(inputs, arrays))
    for w_, o in zip(want, got):
        np.testing.assert_allclose(o, w_, rtol=1e-4, atol=1e-5)
    assert sum(1 for step in runner.steps if step.op == "fused") == len(kinds)


def test_one_kernel_planned_with_two_grids():
    """Two convs share one compiled GEMM (same operands, epilogue and dtype) with different
    grids: the first needs 4 column tiles, the second 1. Each launch keeps its own grid.
    (The simulator's kernel[grid, block] sets the grid on the shared kernel and returns
    it, so a launch planned once and configured then ran with the last plan's grid:
    ResNet-18 on the simulator computed 1 of conv1's 4 tiles.)"""
    g = Graph("two grids")
    x = g.input("x", (1, 3, 16, 16))
    y = g.add("conv2d", [x, g.input("w1", (4, 3, 3, 3))], padding=1)        # 256 pixels
    y = g.add("conv2d", [y, g.input("w2", (4, 4, 3, 3))], stride=2, padding=1)  # 64
    g.set_outputs([y])
    arrays = [rand(1, 3, 16, 16), rand(4, 3, 3, 3), rand(4, 4, 3, 3)]
    inputs = [n.output for n in g.nodes if n.op == "input"]
    want, _ = _run(g, "reference", zip(inputs, arrays))
    got, runner = _run(g, "cuda", zip(inputs, arrays))
    (first,), (second,) = (step.kernel for step in runner.steps)   # one launch each
    assert first.grid != second.grid
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)


def _tiny_model():
    x = gc.Input((3, 8, 8), name="image")
    h = nn.Conv2d(3, 4, 3, padding=1)(x)
    h = gc.relu(nn.BatchNorm2d(4)(h))
    h = nn.MaxPool2d(2)(h)
    h = gc.relu(nn.Conv2d(4, 4, 3, padding=1, groups=4)(h))
    h = nn.Dropout(0.25)(h)
    logits = nn.Linear(4 * 4 * 4, 5)(gc.flatten(h))
    return gc.Model(inputs=x, outputs=logits, name="tiny")


def test_small_model_inference_and_value_and_grad_match_the_reference():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    Y = np.array([1, 3])
    want = gc.compile(model, batch_size=2, backend="reference")(X)
    exe = gc.compile(model, batch_size=2, backend="cuda")
    np.testing.assert_allclose(exe(X), want, rtol=1e-4, atol=1e-5)
    assert exe.report()["kernels"] < exe.report()["ops_before"]  # fused

    before = {k: v.copy() for k, v in model.parameters().items()}
    ref_step = gc.value_and_grad(model, batch_size=2, backend="reference")
    step = gc.value_and_grad(model, batch_size=2, backend="cuda")
    ref_step.executable._seeds = itertools.count(5)  # the same dropout masks
    step.executable._seeds = itertools.count(5)
    loss_ref, grads_ref = ref_step(X, Y)
    after_ref = {k: v.copy() for k, v in model.parameters().items()}
    model.load_parameters(before)
    loss, grads = step(X, Y)
    assert abs(loss - loss_ref) <= 1e-5 * max(1.0, abs(loss_ref))
    assert sorted(grads) == sorted(grads_ref)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
    for k, v in model.parameters().items():  # running statistics updated the same way
        np.testing.assert_allclose(v, after_ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_device_arrays_in_and_out_and_resident_parameters():
    from numba import cuda

    from graphcnn.backends.cuda.runner import run_device
    model = _tiny_model()
    X = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    exe = gc.compile(model, batch_size=2, backend="cuda", frozen=False)
    host = exe(X)
    out = run_device(exe, {"image": cuda.to_device(X)})
    (name, dev), = out.items()
    assert hasattr(dev, "copy_to_host")
    np.testing.assert_array_equal(dev.copy_to_host(), host)
    view = run_device(exe, {"image": X}, copy=False)[name]
    np.testing.assert_array_equal(view.copy_to_host(), host)
    with pytest.raises(ValueError, match="expects float32 of shape"):
        run_device(exe, {"image": np.zeros((1, 3, 8, 8), np.float32)})
    # resident parameters: uploaded once; host changes no longer reach the device ...
    runner = exe.runner
    params = model.parameters()
    runner.make_resident(params)
    first = next(iter(params))
    saved = params[first].copy()
    params[first][...] = 0
    np.testing.assert_array_equal(exe(X), host)
    # ... and download_parameters brings the device copy back
    runner.download_parameters(params)
    np.testing.assert_array_equal(params[first], saved)


def test_memory_error_names_the_bytes(monkeypatch):
    from graphcnn.backends.cuda import device
    from graphcnn.backends.cuda.device import DeviceMemoryError
    monkeypatch.setattr(device, "is_simulator", lambda: False)

    class Ctx:
        def get_memory_info(self):
            return 1000, 4000

    monkeypatch.setattr(device, "cuda", lambda: type("M", (), {
        "current_context": staticmethod(lambda: Ctx())}))
    with pytest.raises(DeviceMemoryError, match=r"needs 5,000 bytes .* only 1,000 of 4,000"):
        device.check_device_memory(5000, "graph 'x'")


def test_concats_at_batch_1_run_no_kernel_and_equal_the_reference():
    """At batch 1 each branch is made in its slice of the concat's output (the memory
    plan's concatenation in place): the cuda runner runs no concat, and the nested and
    prefix concats of a DenseNet-style block read the right bytes."""
    g = Graph("dense")
    x = g.input("x", (1, 16, 4, 4))
    features = [g.add("relu", [x])]
    for k in range(2):
        joined = features[0] if len(features) == 1 else g.add("concat", features, axis=1)
        w = g.input(f"w{k}", (16, joined.shape[1], 3, 3))
        features.append(g.add("conv2d", [g.add("tanh", [joined]), w], padding=1))
    g.set_outputs([g.add("concat", features, axis=1)])
    arrays = [rand(1, 16, 4, 4), rand(16, 16, 3, 3, seed=1), rand(16, 32, 3, 3, seed=2)]
    inputs = [n.output for n in g.nodes if n.op == "input"]
    want, _ = _run(g, "reference", zip(inputs, arrays))
    got, runner = _run(g, "cuda", zip(inputs, arrays))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)
    assert not [step for step in runner.steps if step.op == "concat"]

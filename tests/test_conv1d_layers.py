"""nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d and nn.AvgPool1d against torch.nn (forward
and the gradients of an MSE loss, parameters copied across), and their ONNX export
against ONNX Runtime."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import ArgumentError, GraphBuildError

try:
    import torch
except ImportError:   # PyTorch is an optional peer: the comparisons with it skip, the rest runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares with PyTorch, not installed "
                                                        "(pip install torch==2.13.0)")

RNG = np.random.default_rng(4)

# (graphcnn layer, torch layer, input (C, L)); torch's layer takes the same arguments
CASES: dict[str, tuple[Callable[[Any], Any], tuple[int, int]]] = {
    "conv1d": (lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (4, 13)),
    "conv1d_same_no_bias": (lambda m: m.Conv1d(3, 5, 5, padding="same", bias=False), (3, 9)),
    "conv_transpose1d": (lambda m: m.ConvTranspose1d(4, 6, 3, stride=2, padding=1,
                                                     output_padding=1, groups=2), (4, 7)),
    "conv_transpose1d_dilated": (lambda m: m.ConvTranspose1d(3, 2, 2, dilation=3), (3, 5)),
    "maxpool1d": (lambda m: m.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), (3, 10)),
    "maxpool1d_dilated": (lambda m: m.MaxPool1d(2, dilation=2), (2, 9)),
    "avgpool1d": (lambda m: m.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
                  (3, 10)),
    "avgpool1d_ceil": (lambda m: m.AvgPool1d(4, stride=3, ceil_mode=True), (2, 11)),
}


def build(name: str) -> tuple[gc.Model, Any]:
    make, shape = CASES[name]
    x = gc.Input(shape, name="x")
    layer = make(nn)
    y = layer(x)
    if not layer.own_parameters():   # a pool: a scale so that the loss has a parameter
        scale = nn.Conv1d(shape[0], shape[0], 1, bias=False)
        y = layer(scale(x))
        model = gc.Model(x, y)
        reference = torch.nn.Sequential(torch.nn.Conv1d(shape[0], shape[0], 1, bias=False),
                                        make(torch.nn))
    else:
        model = gc.Model(x, y)
        reference = torch.nn.Sequential(make(torch.nn))
    with torch.no_grad():   # the same parameters, in creation order
        for p, value in zip(reference.parameters(), model.parameters().values()):
            p.copy_(torch.from_numpy(value))
    return model, reference


@needs_torch
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_gradients_match_torch(name: str) -> None:
    model, reference = build(name)
    shape = CASES[name][1]
    x = RNG.standard_normal((2,) + shape).astype(np.float32)
    want = reference(torch.from_numpy(x))
    got = gc.compile(model, batch_size=2, backend="cpu")(x)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-5)
    target = RNG.standard_normal(tuple(want.shape)).astype(np.float32)
    loss, grads = gc.value_and_grad(model, loss="mse", batch_size=2, backend="cpu")(x, target)
    torch_loss = torch.nn.functional.mse_loss(want, torch.from_numpy(target))
    torch_loss.backward()
    np.testing.assert_allclose(float(loss), torch_loss.item(), rtol=1e-5)
    for (key, g), p in zip(grads.items(), reference.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


@needs_torch
@pytest.mark.parametrize("name", ["conv1d", "conv_transpose1d", "maxpool1d", "avgpool1d"])
def test_export_matches_onnxruntime(name: str, tmp_path: Any) -> None:
    ort = pytest.importorskip("onnxruntime")
    model, _ = build(name)
    path = gc.onnx.save(model, tmp_path / "m.onnx")
    x = RNG.standard_normal((3,) + CASES[name][1]).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(gc.compile(model, batch_size=3)(x), want, rtol=1e-5, atol=1e-5)


def test_errors_name_the_layer_and_shape() -> None:
    with pytest.raises(GraphBuildError, match=r"Conv1d expects \(N, 4, L\).*\(None, 3, 8\)"):
        nn.Conv1d(4, 2, 3)(gc.Input((3, 8)))
    with pytest.raises(GraphBuildError, match=r"MaxPool1d expects \(N, C, L\)"):
        nn.MaxPool1d(2)(gc.Input((3, 8, 8)))
    with pytest.raises(ArgumentError, match="padding should be at most half"):
        nn.AvgPool1d(2, padding=2)

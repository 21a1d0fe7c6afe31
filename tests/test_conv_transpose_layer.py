"""nn.ConvTranspose2d against PyTorch's definition of a transposed convolution, written
out as the scatter it is: every input pixel adds its weight-scaled kernel to the output."""
from __future__ import annotations

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import GraphBuildError


def scatter_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: tuple[int, int],
                      padding: tuple[int, int], output_padding: tuple[int, int],
                      dilation: tuple[int, int], groups: int) -> np.ndarray:
    n, cin, h, wd = x.shape
    cout_g, kh, kw = w.shape[1:]
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    full = np.zeros((n, cout_g * groups, (h - 1) * sh + dh * (kh - 1) + 1 + oph,
                     (wd - 1) * sw + dw * (kw - 1) + 1 + opw), np.float64)
    cin_g = cin // groups
    for c in range(cin):
        g = c // cin_g
        for a in range(kh):
            for bb in range(kw):
                rows = slice(a * dh, a * dh + (h - 1) * sh + 1, sh)
                cols = slice(bb * dw, bb * dw + (wd - 1) * sw + 1, sw)
                for o in range(cout_g):
                    full[:, g * cout_g + o, rows, cols] += x[:, c] * w[c, o, a, bb]
    out = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    return out + b[None, :, None, None]


CASES = [  # in, out, kernel, stride, padding, output_padding, groups, dilation, (H, W)
    (4, 6, 2, 2, 0, 0, 1, 1, (5, 5)),          # U-Net's up-convolution
    (4, 6, 3, 2, 1, 1, 2, 1, (4, 4)),
    (6, 4, 3, 1, 1, 0, 1, 2, (5, 5)),
    (4, 4, (3, 2), (2, 3), (1, 0), (1, 2), 4, 1, (4, 5)),
    (3, 2, 4, 2, 1, 0, 1, 1, (3, 3)),          # DCGAN's generator block
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_conv_transpose2d_matches_the_definition(case: tuple, backend: str) -> None:
    cin, cout, k, s, p, op, g, d, hw = case
    layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op,
                               groups=g, dilation=d)
    x = gc.Input((cin,) + hw)
    model = gc.Model(x, layer(x))
    w, b = layer._parameters["weight"].data, layer._parameters["bias"].data
    assert w.shape == (cin, cout // g) + layer.kernel_size
    X = np.random.default_rng(0).standard_normal((2, cin) + hw).astype(np.float32)
    want = scatter_transpose(X, w, b, layer.stride, layer.padding, layer.output_padding,
                             layer.dilation, g)
    got = gc.compile(model, batch_size=2, backend=backend)(X)
    assert got.shape == want.shape == (2, cout) + layer.output_size(hw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_transpose2d_gradients_match_finite_differences() -> None:
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
    x = gc.Input((2, 3, 3))
    model = gc.Model(x, layer(x))
    X = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    target = np.random.default_rng(2).standard_normal((2, 3, 6, 6))
    step = gc.value_and_grad(model, loss="mse", batch_size=2, backend="reference",
                             dtype="float64")
    _, grads = step(X, target)
    params = model.parameters()
    for name in ("convtranspose2d_0.weight", "convtranspose2d_0.bias"):
        p = params[name]
        index = tuple(i // 2 for i in p.shape)
        old = p[index]
        losses = []
        for delta in (1e-4, -1e-4):
            p[index] = old + delta
            losses.append(step(X, target)[0])
        p[index] = old
        assert grads[name][index] == pytest.approx((losses[0] - losses[1]) / 2e-4, rel=1e-4)


def test_conv_transpose2d_errors_name_the_problem() -> None:
    with pytest.raises(GraphBuildError, match="output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=1, output_padding=1)
    with pytest.raises(GraphBuildError, match="groups=3"):
        nn.ConvTranspose2d(4, 6, 3, groups=3)
    layer = nn.ConvTranspose2d(4, 2, 2, stride=2)
    with pytest.raises(GraphBuildError, match="expects \\(N, 4, H, W\\)"):
        layer(gc.Input((3, 4, 4)))

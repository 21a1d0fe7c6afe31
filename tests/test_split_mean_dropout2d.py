"""gc.split / gc.chunk / gc.mean / gc.sum (functional forms over existing ops) against
NumPy at a batch other than the one they were recorded with, their gradients, and
nn.Dropout2d's channel_dropout op (whole channels, the same mask on every backend)."""
import numpy as np
import pytest
from op_check import check_op, forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import GraphBuildError


def data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_both(model: gc.Model, X: np.ndarray) -> list[np.ndarray]:
    want = gc.compile(model, batch_size=len(X), backend="reference")(X)
    got = gc.compile(model, batch_size=len(X), backend="cpu")(X)
    want = list(want) if isinstance(want, tuple) else [want]
    got = list(got) if isinstance(got, tuple) else [got]
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    return want


def test_split_and_chunk_as_torch():
    x = gc.Input((7, 3, 2))
    parts = gc.split(x, 3) + gc.split(x, [1, 4, 2], axis=-3) + gc.chunk(x, 2, axis=2)
    assert [p.shape[1:] for p in parts] == [(3, 3, 2), (3, 3, 2), (1, 3, 2), (1, 3, 2),
                                            (4, 3, 2), (2, 3, 2), (7, 2, 2), (7, 1, 2)]
    X = data(0, (3, 7, 3, 2))   # batch 3, recorded at batch 1
    outs = run_both(gc.Model(inputs=x, outputs=parts), X)
    want = (np.split(X, [3, 6], axis=1) + np.split(X, [1, 5], axis=1)
            + np.split(X, [2], axis=2))
    for o, w in zip(outs, want):
        np.testing.assert_array_equal(o, w)


@pytest.mark.parametrize("axis, keepdims", [((2, 3), False), ((2, 3), True), (1, False),
                                            ((1, 3), True), (-1, False), (None, False)])
def test_mean_and_sum_over_axes(axis, keepdims):
    x = gc.Input((3, 4, 5))
    m, s = gc.mean(x, axis, keepdims), gc.sum(x, axis=axis, keepdims=keepdims)
    X = data(1, (2, 3, 4, 5))
    np_axis = tuple(range(1, 4)) if axis is None else axis
    got_m, got_s = run_both(gc.Model(inputs=x, outputs=[m, s]), X)
    np.testing.assert_allclose(got_m, X.mean(axis=np_axis, keepdims=keepdims), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(got_s, X.sum(axis=np_axis, keepdims=keepdims), rtol=1e-5,
                               atol=1e-5)
    assert m.shape[1:] == got_m.shape[1:]


def test_gradients_of_split_and_mean_match_finite_differences():
    x = gc.Input((4, 3, 3))
    conv = nn.Conv2d(4, 4, 1)
    a, b = gc.split(conv(x), [1, 3])
    y = gc.concat([gc.mean(a * a, axis=(1, 2)), gc.sum(b * b, axis=(1, 3))], axis=1)
    model = gc.Model(inputs=x, outputs=y)
    X = np.random.default_rng(2).standard_normal((2, 4, 3, 3))
    target = np.random.default_rng(3).standard_normal((2, 6))
    step = gc.value_and_grad(model, loss="mse", batch_size=2, backend="reference",
                             dtype="float64")
    _, grads = step(X, target)
    p = model.parameters()["conv2d_0.weight"]
    index = (2, 1, 0, 0)
    old, losses, moved = float(p[index]), [], []
    for delta in (1e-3, -1e-3):   # parameters are float32: take the step actually made
        p[index] = old + delta
        moved.append(float(p[index]) - old)
        losses.append(step(X, target)[0])
    p[index] = old
    numeric = (losses[0] - losses[1]) / (moved[0] - moved[1])
    assert grads["conv2d_0.weight"][index] == pytest.approx(numeric, rel=1e-5)
    cpu = gc.value_and_grad(model, loss="mse", batch_size=2, backend="cpu")
    loss32, grads32 = cpu(X.astype(np.float32), target.astype(np.float32))
    for k in grads:
        np.testing.assert_allclose(grads32[k], grads[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_split_and_mean_errors():
    x = gc.Input((6, 4))
    with pytest.raises(GraphBuildError, match="batch axis"):
        gc.split(x, 1, axis=0)
    with pytest.raises(GraphBuildError, match="add up to 5"):
        gc.split(x, [2, 3])
    with pytest.raises(GraphBuildError, match="out of range"):
        gc.mean(x, axis=3)
    with pytest.raises(GraphBuildError, match="batch axis"):
        gc.sum(x, axis=(0, 1))
    with pytest.raises(GraphBuildError, match="twice"):
        gc.mean(x, axis=(1, -2))
    with pytest.raises(GraphBuildError, match="split_size must be greater than zero"):
        gc.split(x, 0)


def test_channel_dropout_drops_whole_channels_and_scales_the_rest():
    x = np.abs(data(4, (8, 16, 3, 3))) + 0.5
    seed = np.asarray(12345, np.int64)
    attrs = {"p": 0.4, "salt": 3}
    (want,) = forward("channel_dropout", [x, seed], attrs, "reference")
    (got,) = forward("channel_dropout", [x, seed], attrs, "cpu")
    np.testing.assert_array_equal(got, want)
    planes = want.reshape(8 * 16, 9)
    dropped = (planes == 0).all(axis=1)
    assert ((planes == 0).any(axis=1) == dropped).all()        # a channel goes whole
    assert 0.2 < dropped.mean() < 0.6
    np.testing.assert_allclose(planes[~dropped], x.reshape(-1, 9)[~dropped] / 0.6, rtol=1e-6)
    # the mask is dropout's stream over the N * C channel indexes
    from graphcnn.ops.norm import dropout_keep
    np.testing.assert_array_equal(~dropped, dropout_keep(8 * 16, 12345, 3, 0.4))
    check_op("channel_dropout", [data(5, (2, 6, 2, 3)), seed], attrs)


def test_dropout2d_layer_train_and_inference():
    x = gc.Input((6, 4, 4))
    layer = nn.Dropout2d(0.5)
    model = gc.Model(inputs=x, outputs=layer(x))
    X = data(6, (2, 6, 4, 4))
    np.testing.assert_array_equal(gc.compile(model, batch_size=2, backend="cpu")(X), X)
    graph = model.graph(2, training=True)
    assert [n.op for n in graph.compute_nodes()] == ["channel_dropout"]
    with pytest.raises(GraphBuildError, match="p must be in"):
        nn.Dropout2d(1.0)
    with pytest.raises(GraphBuildError, match="N, C"):
        nn.Dropout2d(0.1)(gc.mean(x, axis=(1, 2, 3)))

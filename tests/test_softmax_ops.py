"""softmax / log_softmax along any axis and their gradient helpers: cpu vs reference,
gradients vs finite differences, stability for large logits, bad axes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_check import check_op, forward

from graphcnn.errors import GraphBuildError
from graphcnn.ir import Graph

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@st.composite
def case(draw):
    shape = draw(shapes)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(c=case(), seed=st.integers(0, 2**16))
def test_softmax(op, c, seed):
    shape, axis = c
    x = (np.random.default_rng(seed).standard_normal(shape) * 2).astype(np.float32)
    y = forward(op, [x], {"axis": axis}, "cpu")[0]
    e = np.exp(x.astype(np.float64) - x.max(axis=axis, keepdims=True))
    want = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(y, want if op == "softmax" else np.log(want),
                               rtol=1e-5, atol=1e-6)
    check_op(op, [x], {"axis": axis})


@pytest.mark.parametrize("op,base", [("softmax_grad", "softmax"),
                                     ("log_softmax_grad", "log_softmax")])
@given(c=case(), seed=st.integers(0, 2**16))
def test_softmax_grad_ops(op, base, c, seed):
    shape, axis = c
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(shape).astype(np.float32)
    y = forward(base, [rng.standard_normal(shape).astype(np.float32)], {"axis": axis}, "cpu")[0]
    check_op(op, [g, y], {"axis": axis}, grad=False)  # backward-only: no second order


def test_large_logits_are_stable():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -999.0]], np.float32)
    for backend in ("reference", "cpu"):
        p = forward("softmax", [x], {"axis": 1}, backend)[0]
        lp = forward("log_softmax", [x], {"axis": -1}, backend)[0]
        assert np.all(np.isfinite(p)) and np.all(np.isfinite(lp))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(np.exp(lp), p, rtol=1e-5, atol=1e-30)


def test_axis_normalized_and_bad_axis():
    g = Graph()
    x = g.input("x", (2, 3, 4))
    y = g.add("softmax", [x], axis=-1)
    assert y.node.attrs == {"axis": 2}
    assert g.add("log_softmax", [x], **y.node.attrs).node.attrs == {"axis": 2}
    with pytest.raises(GraphBuildError, match="axis 3 is out of range for a 3-D tensor"):
        g.add("softmax", [x], axis=3)
    with pytest.raises(GraphBuildError, match="axis -4 is out of range"):
        g.add("log_softmax", [x], axis=-4)
    with pytest.raises(GraphBuildError, match="float"):
        g.add("softmax", [g.input("i", (2, 3), "int64")])
    with pytest.raises(GraphBuildError, match="must match"):
        g.add("softmax_grad", [x, g.input("z", (2, 3, 5))], axis=1)


def test_second_order_is_refused():
    from graphcnn.autodiff import grad

    g = Graph()
    x = g.input("x", (2, 3))
    y = g.add("softmax", [x])
    loss = g.add("sum_to", [g.add("mul", [y, y])], shape=())
    (dx,) = grad(g, loss, [x])
    with pytest.raises(NotImplementedError, match="softmax_grad"):
        grad(g, g.add("sum_to", [dx], shape=()), [x])

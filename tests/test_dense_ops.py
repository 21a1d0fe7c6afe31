"""linear and matmul: cpu vs reference and gradients vs finite differences, on the loop
kernels (small) and on the BLAS path (from MIN_BLAS_WORK multiply-adds on)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_check import check_op

import graphcnn as gc
from graphcnn import nn


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@given(n=st.integers(1, 6), k=st.integers(1, 7), m=st.integers(1, 6), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_small(n, k, m, bias, seed):
    rng = np.random.default_rng(seed)
    check_op("linear", [rand(rng, (n, k)), rand(rng, (m, k))] + ([rand(rng, (m,))] if bias else []))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("size", [(3, 4, 5), (40, 48, 36)])   # loops, then BLAS
def test_matmul(trans_a, trans_b, size):
    m, k, n = size
    rng = np.random.default_rng(0)
    a = rand(rng, (k, m) if trans_a else (m, k))
    b = rand(rng, (n, k) if trans_b else (k, n))
    check_op("matmul", [a, b], {"trans_a": trans_a, "trans_b": trans_b})


@pytest.mark.parametrize("bias", [False, True])
def test_linear_through_blas(bias):
    rng = np.random.default_rng(1)
    x, w = rand(rng, (32, 48)), rand(rng, (40, 48))
    check_op("linear", [x, w] + ([rand(rng, (40,))] if bias else []))


def test_fused_linear_relu_through_blas_equals_reference():
    x = gc.Input((256,), name="x")
    model = gc.Model(x, gc.relu(nn.Linear(256, 128)(x)))
    data = rand(np.random.default_rng(2), (8, 256))
    fast = gc.compile(model, batch_size=8)
    assert fast.report()["kernels"] == 1
    want = gc.compile(model, batch_size=8, backend="reference", opt_level=0)(data)
    np.testing.assert_allclose(fast(data), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_by_columns_equals_reference(rows, bias):
    """A classifier at batch 1-4 (few rows, many columns) may run on the columns loop: the
    threads split the output's columns. NaN and Inf in the input spread as the reference's."""
    from graphcnn.backends.cpu import strategy
    rng = np.random.default_rng(3)
    x, w = rand(rng, (rows, 300)), rand(rng, (200, 300))
    ins = [x, w] + ([rand(rng, (200,))] if bias else [])
    with strategy.forced({"linear": "columns"}):
        check_op("linear", ins)
        x[0, 7] = np.nan if rows == 1 else np.inf
        check_op("linear", ins, grad=False)


def test_columns_offered_for_few_rows_only():
    from graphcnn.backends.cpu.kernels import dense
    no_trans = {"trans_a": False, "trans_b": False}
    assert dense.use_columns("linear", (1, 512), (1, 1000), {})
    assert dense.use_columns("linear", (4, 512), (4, 1000), {})
    assert not dense.use_columns("linear", (16, 512), (16, 1000), {})   # BLAS's
    assert not dense.use_columns("linear", (1, 8), (1, 1000), {})      # the row loops'
    assert not dense.use_columns("linear", (1, 4096), (1, 10), {})     # too few columns
    nt = {**no_trans, "trans_b": True}
    assert dense.use_columns("matmul", (2, 512), (2, 512), nt)
    assert not dense.use_columns("matmul", (2, 512), (2, 512), no_trans)  # b not transposed


def test_a_classifier_at_batch_1_takes_the_columns_loop_without_measuring(monkeypatch):
    """Few rows: columns and BLAS tie, the cost model (no autotuning) takes the columns
    loop; at batch 16 only BLAS is offered. The whole layer matches the reference."""
    from graphcnn.backends.cpu.strategy import Site, choose
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "0")
    f32 = np.dtype(np.float32)

    def site(rows):
        return Site("linear", {}, ((rows, 512), (1000, 512), (1000,)), (f32,) * 3,
                    (rows, 1000), f32, (None, None, None))
    chosen, why = choose(site(1))
    assert chosen.name == "columns" and why == "cost model, of columns | blas"
    assert choose(site(16))[0].name == "blas"
    x = gc.Input((512,), name="x")
    model = gc.Model(x, nn.Linear(512, 1000)(x))
    data = rand(np.random.default_rng(4), (1, 512))
    want = gc.compile(model, batch_size=1, backend="reference", opt_level=0)(data)
    np.testing.assert_allclose(gc.compile(model, batch_size=1)(data), want, rtol=1e-4,
                               atol=1e-5)

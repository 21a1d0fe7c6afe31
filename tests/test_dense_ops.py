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

"""The GEMM the cpu kernels call (graphcnn/backends/cpu/blas.py): numpy's OpenBLAS called
from Numba, its work split over Numba's threads while a graph runs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu import blas


def _operand(rng: np.random.Generator, rows: int, cols: int, dtype: type, layout: str
             ) -> np.ndarray:
    """A (rows, cols) array stored row-major, as a transposed view, or as a slice of a
    wider array (a leading dimension larger than its width)."""
    if layout == "transposed":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    if layout == "slice":
        return rng.standard_normal((rows, cols + 3)).astype(dtype)[:, 1:cols + 1]
    return rng.standard_normal((rows, cols)).astype(dtype)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(0, 40),
       layout_a=st.sampled_from(["rows", "transposed", "slice"]),
       layout_b=st.sampled_from(["rows", "transposed", "slice"]),
       dtype=st.sampled_from([np.float32, np.float64]), accumulate=st.booleans(),
       pooled=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_equals_numpy(m, n, k, layout_a, layout_b, dtype, accumulate, pooled, seed):
    rng = np.random.default_rng(seed)
    a, b = _operand(rng, m, k, dtype, layout_a), _operand(rng, k, n, dtype, layout_b)
    out = rng.standard_normal((m, n)).astype(dtype)
    expected = (out if accumulate else 0) + a.astype(np.float64) @ b.astype(np.float64)
    if pooled:
        with blas.one_thread_pool():
            blas.matmul(a, b, out, accumulate=accumulate)
    else:
        blas.matmul(a, b, out, accumulate=accumulate)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * max(1, k))


def test_big_matmul_is_split_over_the_threads_and_still_exact():
    """Large enough to be cut into one block per thread, both along rows and columns."""
    rng = np.random.default_rng(0)
    for m, n in ((300, 40), (40, 300)):
        a = rng.standard_normal((m, 256)).astype(np.float32)
        b = rng.standard_normal((256, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        with blas.one_thread_pool():
            blas.matmul(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)


def test_matrix_vector_product_is_split_by_the_bytes_it_reads(monkeypatch):
    """A classifier at batch 1 (1 x 512 @ 512 x 1000, the weights a transposed view): too
    little work to split by multiply-adds, but 2 MB of weights to read, so every thread
    takes a block of columns; still equal to numpy."""
    import numba
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: np.matmul runs instead")
    parts = []
    original = blas.launch
    monkeypatch.setattr(blas, "launch", lambda fn, *args: (parts.append(args[-1]),
                                                           original(fn, *args))[1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 512)).astype(np.float32)
    w = rng.standard_normal((1000, 512)).astype(np.float32)
    out = np.empty((1, 1000), np.float32)
    with blas.one_thread_pool():
        blas.matmul(x, w.T, out)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-4, atol=1e-4)
    threads = numba.get_num_threads()
    assert parts == [threads]
    if threads > 1:  # the bytes split it, not the multiply-adds
        assert 1 * 1000 * 512 // blas.MIN_WORK_PER_THREAD < threads


def test_nan_and_inf_pass_through_without_warnings():
    a = np.array([[np.nan, 1.0], [np.inf, 2.0]], np.float32)
    out = np.empty((2, 2), np.float32)
    with np.errstate(all="raise"):
        blas.matmul(a, np.eye(2, dtype=np.float32), out)
    assert np.isnan(out[0, 0]) and np.isinf(out[1, 0])


def test_one_thread_pool_restores_the_users_setting():
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: matmul uses np.matmul")
    before = blas._get_threads()
    with blas.one_thread_pool():
        assert blas._get_threads() == 1
    assert blas._get_threads() == before


def test_without_openblas_matmul_falls_back_to_numpy(monkeypatch):
    monkeypatch.setattr(blas, "AVAILABLE", False)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    out = np.ones((5, 3))
    blas.matmul(a, b, out, accumulate=True)
    np.testing.assert_allclose(out, 1 + a @ b)
    with blas.one_thread_pool():
        pass


def test_compiled_model_matches_the_reference_through_the_split_gemms():
    """A conv + linear model: every GEMM of the cpu backend runs inside the runner's
    one_thread_pool."""
    gc.manual_seed(0)
    x = gc.Input((8, 12, 12), name="x")
    h = gc.relu(nn.Conv2d(8, 32, 3, padding=1, name="conv")(x))
    model = gc.Model(inputs=x, outputs=nn.Linear(32 * 12 * 12, 10, name="fc")(gc.flatten(h)))
    feed = np.random.default_rng(2).standard_normal((2, 8, 12, 12)).astype(np.float32)
    got = gc.compile(model, batch_size=2, backend="cpu")(feed)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(feed)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_one_thread_pool_nests_across_threads():
    """Two Python threads running graphs at once: the first to finish must not give
    OpenBLAS its threads back under the other; the user's setting is back at the end."""
    import threading
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: matmul uses np.matmul")
    before = blas._get_threads()
    blas._set_threads(2)
    inside, first_done = threading.Event(), threading.Event()
    seen = []

    def second():
        with blas.one_thread_pool():
            inside.set()
            first_done.wait(5)
            seen.append(blas._get_threads())  # the first block has ended meanwhile

    try:
        with blas.one_thread_pool():
            thread = threading.Thread(target=second)
            thread.start()
            inside.wait(5)
        first_done.set()
        thread.join(5)
        assert seen == [1]
        assert blas._get_threads() == 2
    finally:
        blas._set_threads(before)


def test_two_threads_run_executables_at_once():
    gc.manual_seed(1)
    x = gc.Input((4, 16, 16), name="x")
    model = gc.Model(inputs=x, outputs=gc.relu(nn.Conv2d(4, 16, 3, padding=1, name="c")(x)))
    feed = np.random.default_rng(3).standard_normal((2, 4, 16, 16)).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(feed)
    exes = [gc.compile(model, batch_size=2) for _ in range(2)]
    results: list = [None, None]
    wrong = []

    def run(i: int) -> None:
        for _ in range(20):
            results[i] = exes[i](feed)
            if not np.allclose(results[i], want, rtol=1e-4, atol=1e-4):
                wrong.append(i)  # every call checked: a race need not hit the last one

    import threading
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert wrong == []


def test_each_python_thread_has_its_own_workspaces():
    """The kernels' scratch buffers (im2col columns, Winograd tiles...) are per Python
    thread: two executables running at once in two threads must not share them."""
    import threading

    from graphcnn.backends.cpu.kernels.conv_gemm import workspace
    mine = workspace("col", (3, 5), np.float32)
    assert np.shares_memory(workspace("col", (3, 5), np.float32), mine)
    assert np.shares_memory(workspace("col", (2, 5), np.float32), mine)  # a smaller call
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(workspace("col", (3, 5),
                                                                     np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(theirs[0], mine) and theirs[0].shape == (3, 5)


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 7), m=st.integers(1, 20), n=st.integers(1, 20),
       k=st.integers(1, 50), threads=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_matmul_sum_splits_the_products_over_the_threads(count, m, n, k, threads, dtype,
                                                          seed):
    """sum_i a[i] @ b[i], b[i] transposed views (a 1x1 conv's weight gradient), into a
    slice of a wider output: each thread sums its share of the products, then the
    partial sums are added."""
    import numba
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((count, m, k)).astype(dtype)
    b = rng.standard_normal((count, n, k)).astype(dtype).transpose(0, 2, 1)
    wide = np.full((m, n + 2), np.nan, dtype)
    out = wide[:, 1:n + 1]
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        partials = np.full((blas.sum_parts(count) - 1, m, n), np.nan, dtype)
        blas.matmul_sum(a, b, out, partials)
    finally:
        numba.set_num_threads(previous)
    expected = np.einsum("imk,ikn->mn", a.astype(np.float64), b.astype(np.float64))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * max(1, count * k))
    assert np.isnan(wide[:, 0]).all() and np.isnan(wide[:, -1]).all()


def test_matmul_sum_keeps_nan_and_inf():
    """A NaN or an infinity in one product's operands reaches the sum as numpy's."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((4, 3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5, 2)).astype(np.float32)
    a[3, 1, 2], b[0, 4, 1] = np.nan, np.inf
    out = np.empty((3, 2), np.float32)
    blas.matmul_sum(a, b, out, np.empty((blas.sum_parts(4) - 1, 3, 2), np.float32))
    with np.errstate(invalid="ignore"):
        want = np.matmul(a.astype(np.float64), b.astype(np.float64)).sum(axis=0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 6), m=st.integers(1, 20), n=st.integers(1, 20),
       k=st.integers(1, 30), shared=st.booleans(), threads=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_matmul_batched_runs_each_product_whole_on_one_thread(count, m, n, k, shared,
                                                              threads, dtype, seed):
    """out[i] = a[i] @ b[i] with one a shared by every product (a 1x1 conv's input
    gradient: the weights transposed), or one a per product; into slices of a wider
    output; fewer products than threads split each product instead."""
    import numba
    rng = np.random.default_rng(seed)
    if shared:
        one = rng.standard_normal((k, m)).astype(dtype).T
        a = np.broadcast_to(one, (count, m, k))
    else:
        a = rng.standard_normal((count, m, k)).astype(dtype)
    b = rng.standard_normal((count, k, n)).astype(dtype)
    wide = np.full((count, m + 1, n), np.nan, dtype)
    out = wide[:, :m]
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        blas.matmul_batched(a, b, out)
    finally:
        numba.set_num_threads(previous)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * k)
    assert np.isnan(wide[:, m]).all()

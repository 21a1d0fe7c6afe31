"""GEMM for the cpu kernels: the OpenBLAS that numpy ships, called from Numba, with the work
split over Numba's threads instead of OpenBLAS's own.

Why not plain `np.matmul`: it runs on OpenBLAS's thread pool, and every other kernel runs on
Numba's (OpenMP) pool. On a machine with as many cores as threads the two pools fight: an
OpenBLAS worker spins for milliseconds after each GEMM, taking a core from the next Numba
kernel, and Numba's workers cannot spin between kernels without taking the core from the
next GEMM. So Numba's workers had to sleep after every kernel, and waking them costs tens
of microseconds per kernel. Here OpenBLAS is held to one thread while a graph runs, each
Numba thread calls it on its own block of rows or columns, and one pool does all the work
(benchmarks/RESULTS.md has the measurements).

Where numpy's OpenBLAS cannot be found (another BLAS, an unknown naming: openblas.py looks),
`matmul` falls back to `np.matmul` and everything still works, as before.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from numba import prange, types

from graphcnn.backends.cpu.openblas import AVAILABLE
from graphcnn.backends.cpu.openblas import FOUND as _FOUND
from graphcnn.backends.cpu.registry import JIT, launch

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _gemm_function(name: str, scalar: types.Type, index: types.Type) -> types.ExternalFunction:
    # Pointers travel as integers (the same registers in the C calling convention), so one
    # compiled _gemm serves every array shape and layout.
    return types.ExternalFunction(name, types.void(
        types.int32, types.int32, types.int32, index, index, index, scalar, types.uintp,
        index, types.uintp, index, scalar, types.uintp, index))


if _FOUND is not None:
    import llvmlite.binding as llvm

    _PATH, _LIB, _GEMM_NAME, _THREADS_NAME, _BITS = _FOUND
    # Numba's compiled code (and artifacts' object code) find the symbols through LLVM.
    llvm.load_library_permanently(_PATH)
    _INDEX = types.int64 if _BITS == 64 else types.int32
    _sgemm = _gemm_function(_GEMM_NAME.format("sgemm"), types.float32, _INDEX)
    _dgemm = _gemm_function(_GEMM_NAME.format("dgemm"), types.float64, _INDEX)
    _set_threads = getattr(_LIB, _THREADS_NAME.format("set_num_threads"))
    _get_threads = getattr(_LIB, _THREADS_NAME.format("get_num_threads"))
    _set_threads.restype, _get_threads.restype = None, ctypes.c_int

    @numba.njit(inline="always")
    def gemm_call(double, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        """c = op(a) @ op(b) + beta * c on the calling thread (row-major, raw pointers): the
        one place that calls OpenBLAS, for _gemm below and for Numba kernels that cut
        their own work into blocks (conv_gemm.py)."""
        ta, tb = _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS
        if double:
            _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
        else:
            _sgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float32(1.0), a, lda, b, ldb,
                   np.float32(beta), c, ldc)

    @numba.njit(**JIT)
    def _gemm(double, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, parts):
        """c = a @ b + beta * c (row-major, raw pointers), in `parts` blocks of c's rows
        (when it has at least as many rows as columns) or columns, one GEMM call each."""
        size = 8 if double else 4
        by_rows = m >= n
        length = m if by_rows else n
        step = (length + parts - 1) // parts
        if not by_rows:
            step = (step + 15) // 16 * 16  # whole vectors of columns per block
        for part in prange(parts):
            lo, hi = part * step, min(length, (part + 1) * step)
            if hi <= lo:
                continue
            if by_rows:
                rows, cols = hi - lo, n
                a_at, b_at, c_at = lo * (1 if trans_a else lda), 0, lo * ldc
            else:
                rows, cols = m, hi - lo
                a_at, b_at, c_at = 0, lo * (ldb if trans_b else 1), lo
            gemm_call(double, trans_a, trans_b, rows, cols, k, a + a_at * size, lda,
                      b + b_at * size, ldb, beta, c + c_at * size, ldc)


    @numba.njit(**JIT)
    def _gemm_sum(double, trans_a, trans_b, m, n, k, a, lda, a_step, b, ldb, b_step, count,
                  c, ldc, partials, parts):
        """c = sum over i < count of op(a_i) @ op(b_i), a_i at a + i * a_step elements (b_i
        likewise): the i split into `parts` runs, one per thread, each summed by its GEMMs
        into c (the first) or its own m x n block of `partials` (the others), which the
        caller adds to c."""
        size = 8 if double else 4
        for part in prange(parts):
            lo, hi = part * count // parts, (part + 1) * count // parts
            target, ld = c, ldc
            if part > 0:
                target, ld = partials + (part - 1) * m * n * size, n
            for i in range(lo, hi):
                gemm_call(double, trans_a, trans_b, m, n, k, a + i * a_step * size, lda,
                          b + i * b_step * size, ldb, 0.0 if i == lo else 1.0, target, ld)


    @numba.njit(**JIT)
    def _gemm_batched(double, trans_a, trans_b, m, n, k, a, lda, a_step, b, ldb, b_step,
                      count, c, ldc, c_step, parts):
        """c_i = op(a_i) @ op(b_i) for i < count (a_i at a + i * a_step elements, b_i and
        c_i likewise; a step of 0 shares one matrix), the i split into `parts` runs, one
        per thread."""
        size = 8 if double else 4
        for part in prange(parts):
            for i in range(part * count // parts, (part + 1) * count // parts):
                gemm_call(double, trans_a, trans_b, m, n, k, a + i * a_step * size, lda,
                          b + i * b_step * size, ldb, 0.0, c + i * c_step * size, ldc)


def core_name() -> str:
    """The kernel set OpenBLAS picked for this CPU ('SkylakeX', 'Haswell'...), or 'numpy'
    when the GEMMs go through np.matmul."""
    if not AVAILABLE:
        return "numpy"
    name = getattr(_LIB, _THREADS_NAME.format("get_corename"), None)
    if name is None:
        return "openblas"
    name.restype = ctypes.c_char_p
    return (name() or b"openblas").decode("ascii", "replace")


# Below this many multiply-adds per thread, splitting a GEMM costs more than it saves...
MIN_WORK_PER_THREAD = 1 << 18
# ...unless it reads this many bytes of b per thread: a matrix-vector product (a classifier
# at batch 1) is bound by memory, and two cores read it faster than one (and OpenBLAS's
# one-row path is slow on some shapes, MobileNetV2's 1000 x 1280).
MIN_BYTES_PER_THREAD = 1 << 18


def _operand(x: np.ndarray) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a 2-d array as BLAS sees it, or None when neither
    its rows nor its columns are contiguous."""
    size = x.itemsize
    rows, cols = x.shape
    if (x.strides[1] == size or cols <= 1) and x.strides[0] % size == 0 \
            and x.strides[0] // size >= max(1, cols):
        return False, x.strides[0] // size
    if (x.strides[0] == size or rows <= 1) and x.strides[1] % size == 0 \
            and x.strides[1] // size >= max(1, rows):
        return True, x.strides[1] // size
    return None


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> None:
    """out = a @ b, or out += a @ b with `accumulate`, for 2-d arrays of one float dtype
    (float32 or float64); a and b may be transposed views. NaN and Inf pass through
    silently, as in the kernels' own loops."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if not accumulate:
            out[...] = 0
        return
    op_a, op_b, op_out = _operand(a), _operand(b), _operand(out)
    if (not AVAILABLE or out.dtype not in (np.float32, np.float64)
            or a.dtype != out.dtype or b.dtype != out.dtype
            or op_a is None or op_b is None or op_out is None or op_out[0]):
        with np.errstate(all="ignore"):
            if accumulate:
                out += a @ b
            else:
                np.matmul(a, b, out=out)
        return
    (ta, lda), (tb, ldb), (_, ldc) = op_a, op_b, op_out
    parts = max(1, min(numba.get_num_threads(), max(m * n * k // MIN_WORK_PER_THREAD,
                                                    b.nbytes // MIN_BYTES_PER_THREAD)))
    with one_thread_pool():  # a no-op inside the runner's
        launch(_gemm, out.dtype == np.float64, ta, tb, m, n, k, a.ctypes.data, lda,
               b.ctypes.data, ldb, 1.0 if accumulate else 0.0, out.ctypes.data, ldc, parts)


def _gemm_operands(a: np.ndarray, b: np.ndarray, out: np.ndarray
                   ) -> tuple[tuple[bool, int], tuple[bool, int], int] | None:
    """((transposed, leading dimension) of a, of b, out's leading dimension) of one GEMM as
    BLAS reads it; None where a matrix cannot be read so, or out is transposed."""
    op_a, op_b, op_out = _operand(a), _operand(b), _operand(out)
    if op_a is None or op_b is None or op_out is None or op_out[0]:
        return None
    return op_a, op_b, op_out[1]


def sum_parts(count: int) -> int:
    """How many runs matmul_sum cuts `count` products into: one per thread, at most one
    product each."""
    return max(1, min(numba.get_num_threads(), count))


def matmul_sum(a: np.ndarray, b: np.ndarray, out: np.ndarray, partials: np.ndarray) -> None:
    """out = sum_i a[i] @ b[i] for 3-d a (count, m, k) and b (count, k, n) whose matrices
    BLAS can read (rows or columns contiguous; b[i] a transposed view, say): the products
    split over the threads, each summing its share into its own block, rather than each
    product's output split, which leaves a thread too few rows or columns when m x n is
    small and k long (a 1x1 conv's weight gradient: m x n the weights, k the pixels).
    `partials`: sum_parts(count) - 1 blocks of m x n, of out's dtype (scratch)."""
    count, m, k = a.shape
    n = b.shape[2]
    if m == 0 or n == 0:
        return
    parts = sum_parts(count)
    ops = _gemm_operands(a[0], b[0], out) if count else None
    if (ops is None or not AVAILABLE or k == 0 or out.dtype not in (np.float32, np.float64)
            or a.dtype != out.dtype or b.dtype != out.dtype
            or a.strides[0] % a.itemsize or b.strides[0] % b.itemsize
            or partials.shape[0] < parts - 1 or not partials.flags.c_contiguous):
        with np.errstate(all="ignore"):
            out[...] = np.matmul(a, b).sum(axis=0) if count else 0
        return
    (ta, lda), (tb, ldb), ldc = ops
    with one_thread_pool():
        launch(_gemm_sum, out.dtype == np.float64, ta, tb, m, n, k, a.ctypes.data, lda,
               a.strides[0] // a.itemsize, b.ctypes.data, ldb, b.strides[0] // b.itemsize,
               count, out.ctypes.data, ldc, partials.ctypes.data, parts)
    for part in range(parts - 1):
        np.add(out, partials[part], out=out)


def matmul_batched(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out[i] = a[i] @ b[i] for 3-d a (count, m, k), b (count, k, n), out (count, m, n)
    (a step of 0 along the first axis shares one matrix: np.broadcast_to): with at least
    as many products as threads, each thread runs its share of them whole; with fewer,
    each product is split over the threads (matmul). A 1x1 conv's input gradient at
    batch 16 (16 x (C x O @ O x P)) runs no GEMM cut into blocks too thin to pay."""
    count, m, k = a.shape
    n = b.shape[2]
    if count == 0 or m == 0 or n == 0:
        return
    ops = _gemm_operands(a[0], b[0], out[0])
    if (ops is None or not AVAILABLE or count < numba.get_num_threads() or k == 0
            or out.dtype not in (np.float32, np.float64) or a.dtype != out.dtype
            or b.dtype != out.dtype or any(t.strides[0] % t.itemsize for t in (a, b, out))):
        for i in range(count):
            matmul(a[i], b[i], out[i])
        return
    (ta, lda), (tb, ldb), ldc = ops
    parts = min(numba.get_num_threads(), count)
    with one_thread_pool():
        launch(_gemm_batched, out.dtype == np.float64, ta, tb, m, n, k, a.ctypes.data, lda,
               a.strides[0] // a.itemsize, b.ctypes.data, ldb, b.strides[0] // b.itemsize,
               count, out.ctypes.data, ldc, out.strides[0] // out.itemsize, parts)


class _Hold:
    """How many blocks (in any Python thread) hold OpenBLAS to one thread, and the setting
    to give back when the last one ends: executables run with the GIL released, so two
    threads may run graphs at once, and the first to finish must not give OpenBLAS its
    threads back under the other."""
    lock = threading.Lock()
    depth = 0
    saved = 1


@contextmanager
def one_thread_pool() -> Iterator[None]:
    """Within the block, OpenBLAS runs each call on the calling thread alone (its own
    workers stay asleep), so Numba's threads are the only ones at work; the user's setting
    is back when the last such block ends. Every GEMM of the kernels runs inside one (a
    kernel called alone too: OpenBLAS's threads and Numba's spinning ones must never share
    the cores); the runner holds one around the whole graph, so the inner ones only count."""
    if not AVAILABLE:
        yield
        return
    with _Hold.lock:
        if _Hold.depth == 0:
            _Hold.saved = _get_threads()
            if _Hold.saved != 1:
                _set_threads(1)
        _Hold.depth += 1
    try:
        yield
    finally:
        with _Hold.lock:
            _Hold.depth -= 1
            if _Hold.depth == 0 and _Hold.saved != 1:
                _set_threads(_Hold.saved)

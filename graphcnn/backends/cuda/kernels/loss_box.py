"""L1 and smooth L1 losses (graphcnn/ops/loss_box.py): per-block float64 partial sums of
the terms and counts of the elements taken (NaN targets are left out with ignore_nan),
then a one-block finish that rounds the sum to the loss's dtype and divides by the count
(the reference's batch_total); the gradient counts the targets on the device first when
the mean needs it."""
from __future__ import annotations

from typing import Any

from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import block_sum
from graphcnn.backends.cuda.registry import (
    MAX_BLOCKS,
    THREADS,
    Launch,
    blocks_for,
    cuda_kernel,
    device_function,
    device_kernel,
    flat,
    launch_1d,
    scratch,
)

cu = numba_cuda()
f8, i8, b1 = types.float64, types.int64, types.boolean


@device_function
def _term(x, beta):
    a = abs(x)
    if a < beta:
        return 0.5 * x * x / beta
    return a - 0.5 * beta


@device_function
def _slope(x, beta):
    """As the cpu kernel's: PyTorch's backward, sign(0) = 0, l1's 0 at a NaN."""
    if abs(x) < beta:
        return x / beta
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    if x != x and beta > 0:
        return x
    return 0.0


@device_kernel(lambda f: (f[::1], f[::1], f8, b1, f8[::1], f8[::1]))
def _term_blocks(pred, target, beta, ignore_nan, sums, counts):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    count = 0.0
    i = cu.grid(1)
    while i < pred.size:
        t = f8(target[i])
        if not (ignore_nan and t != t):
            total += _term(f8(pred[i]) - t, beta)
            count += 1.0
        i += cu.gridsize(1)
    total = block_sum(buf, tid, total)
    count = block_sum(buf, tid, count)
    if tid == 0:
        sums[cu.blockIdx.x] = total
        counts[cu.blockIdx.x] = count


@device_kernel(lambda f: (f8[::1], f8[::1], i8, f[::1], b1))
def _finish(sums, counts, n, out, mean):
    """out[0] = the sum of the partial sums, rounded to out's dtype, divided by the count
    for the mean; 0 when nothing was counted."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    count = 0.0
    i = tid
    while i < n:
        total += sums[i]
        count += counts[i]
        i += THREADS
    total = block_sum(buf, tid, total)
    count = block_sum(buf, tid, count)
    if tid == 0:
        if count == 0.0:
            out[0] = 0.0
        else:
            out[0] = total
            if mean:
                out[0] = out[0] / count


def _blocks(size: int) -> int:
    return min(blocks_for(size), MAX_BLOCKS, 1024)


@cuda_kernel("l1", "smooth_l1")
def box_loss_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    pred, target = ins
    blocks = _blocks(pred.size)
    sums, counts = scratch(blocks), scratch(blocks)
    return [Launch(_term_blocks, blocks, THREADS,
                   (flat(pred), flat(target), float(attrs.get("beta", 0.0)),
                    bool(attrs["ignore_nan"]), sums, counts)),
            Launch(_finish, 1, THREADS, (sums, counts, blocks, flat(outs[0]),
                                         attrs["reduction"] == "mean"))]


@device_kernel(lambda f: (f[::1], f8[::1]))
def _count_blocks(target, counts):
    """counts[block] = how many targets of the block's stride are not NaN."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    count = 0.0
    i = cu.grid(1)
    while i < target.size:
        if target[i] == target[i]:
            count += 1.0
        i += cu.gridsize(1)
    count = block_sum(buf, tid, count)
    if tid == 0:
        counts[cu.blockIdx.x] = count


@device_kernel(lambda f: (f8[::1], i8, f8[::1]))
def _total(counts, n, out):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    i = tid
    while i < n:
        total += counts[i]
        i += THREADS
    total = block_sum(buf, tid, total)
    if tid == 0:
        out[0] = total


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f8, b1, f8, b1, f8[::1], f[::1]))
def _gradient(g, pred, target, beta, ignore_nan, per, counted, count, out):
    """out = g * per * slope, divided by max(count[0], 1) too when `counted` (the mean
    over the targets that are not NaN)."""
    i = cu.grid(1)
    scale = f8(g[0]) * per
    if counted:   # max(count, 1), spelled out: numba-cuda's max() fails to type here
        scale = scale / (count[0] if count[0] > 1.0 else 1.0)
    while i < pred.size:
        t = f8(target[i])
        if ignore_nan and t != t:
            out[i] = 0.0
        else:
            out[i] = _slope(f8(pred[i]) - t, beta) * scale
        i += cu.gridsize(1)


@cuda_kernel("smooth_l1_grad")
def smooth_l1_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                        ) -> list[Launch]:
    g, pred, target = ins
    ignore_nan, mean = bool(attrs["ignore_nan"]), attrs["reduction"] == "mean"
    counted = mean and ignore_nan
    per = 1.0 / pred.size if mean and not ignore_nan else 1.0
    count = scratch(1)
    plan = []
    if counted:
        blocks = _blocks(pred.size)
        counts = scratch(blocks)
        plan += [Launch(_count_blocks, blocks, THREADS, (flat(target), counts)),
                 Launch(_total, 1, THREADS, (counts, blocks, count))]
    plan.append(launch_1d(_gradient, pred.size, flat(g), flat(pred), flat(target),
                          float(attrs["beta"]), ignore_nan, per, counted, count,
                          flat(outs[0])))
    return plan

"""Index arithmetic shared by the sliding-window kernels."""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def col_range(off: int, stride: int, in_len: int, out_len: int) -> tuple[int, int]:
    """Output columns ox with 0 <= ox * stride + off < in_len: the kernels loop over these
    without a bounds test per element."""
    lo = max(0, (-off + stride - 1) // stride)
    hi = min(out_len, (in_len - 1 - off) // stride + 1) if in_len - 1 - off >= 0 else 0
    return lo, hi

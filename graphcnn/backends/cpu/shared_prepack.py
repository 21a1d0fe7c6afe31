"""Frozen weights transformed once for several runners of one graph.

A dynamic-batch executable (graphcnn/backends/cpu/dynamic.py) builds the steps of its graph
once per batch size it is called at; each build chooses kernels whose candidates transform
the frozen weights for them (packed GEMM panels, Winograd's U, NCHW16c blocks). The
transform depends on the weights and the layer, never on the batch: within
`sharing_prepacked(store)`, a candidate asks `shared_prepack` for it and gets what an
earlier build of the same kernel on the same arrays made, so the weights are held
transformed once, however many batch sizes run.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

_SCOPE = threading.local()

# (what transforms, its arguments' identities) -> (the transformed weights, the arrays
# the key names by id: held so that no id is reused while the store lives)
PrepackStore = dict[tuple[Any, ...], tuple[Any, tuple[Any, ...]]]


@contextmanager
def sharing_prepacked(store: PrepackStore) -> Iterator[None]:
    """Within it, this thread's `shared_prepack` calls read and fill `store`."""
    previous = getattr(_SCOPE, "store", None)
    _SCOPE.store = store
    try:
        yield
    finally:
        _SCOPE.store = previous


def shared_prepack(kind: Any, operands: tuple[np.ndarray | None, ...], extra: tuple[Any, ...],
                   prepack: Callable[[], Any]) -> Any:
    """prepack()'s result: made now outside a `sharing_prepacked` scope, else made once per
    (kind, operand arrays, extra) and shared."""
    store: PrepackStore | None = getattr(_SCOPE, "store", None)
    if store is None:
        return prepack()
    key = (kind, tuple(None if a is None else id(a) for a in operands), extra)
    held = store.get(key)
    if held is None:
        held = store[key] = (prepack(), operands)
    return held[0]

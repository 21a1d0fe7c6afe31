"""Frozen weights are transformed for their kernel once, when the node's implementation is
built, and held by it (no process-wide cache); a live weight is transformed at each call."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from graphcnn.backends.cpu import candidates
from graphcnn.backends.cpu.kernels import packed_gemm, winograd, winograd4

ATTRS = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
TRANSFORMING = ["winograd", "winograd-packed", "winograd-f4", "packed", "packed-channels",
                "implicit"]


def _site(w: np.ndarray) -> candidates.Site:
    f32 = np.dtype(np.float32)
    return candidates.Site("conv2d", ATTRS, ((2, 8, 12, 12), w.shape), (f32, f32),
                           (2, 16, 12, 12), f32, (None, w))


def _candidate(name: str) -> candidates.Candidate:
    return next(c for c in candidates.STRATEGIES["conv2d"].candidates if c.name == name)


def _count_transforms(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    for module, name in ((winograd, "weight_transform"), (winograd4, "weight_transform"),
                         (packed_gemm, "packed")):
        original = getattr(module, name)

        def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(1)
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("name", TRANSFORMING)
def test_a_frozen_weight_is_transformed_once_when_built(name, frozen, monkeypatch):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w.setflags(write=not frozen)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    site = _site(w)
    assert _candidate(name).applies(site)
    want = np.empty((2, 16, 12, 12), np.float32)
    _candidate("direct").build(site).run([x, w], want)
    calls = _count_transforms(monkeypatch)
    core = _candidate(name).build(site)
    assert len(calls) == (1 if frozen else 0)
    assert core.packed_bytes == (candidates.array_bytes(core.prepacked) if frozen else 0)
    assert (core.packed_bytes > 0) == frozen and (core.prepack is not None) == frozen
    for _ in range(2):
        out = np.empty_like(want)
        core.run([x, w], out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert len(calls) == (1 if frozen else 2)  # live: at each call, as a parameter may change


def test_the_kernels_keep_no_cache_of_transformed_weights():
    from graphcnn.backends.cpu.kernels import nchw16c
    for module, name in ((packed_gemm, "_PACKED"), (winograd, "_TRANSFORMED"),
                         (nchw16c, "_FROZEN")):
        assert not hasattr(module, name)


@pytest.mark.parametrize("name", TRANSFORMING + ["gemm"])
def test_a_candidate_declares_exactly_the_workspaces_it_takes(name):
    from graphcnn.backends.cpu.kernels import conv_gemm
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w.setflags(write=False)
    site = _site(w)
    core = _candidate(name).build(site)
    conv_gemm.release_workspaces()
    core.run([rng.standard_normal((2, 8, 12, 12)).astype(np.float32), w],
             np.empty((2, 16, 12, 12), np.float32))
    needs = _candidate(name).scratch(site)
    assert conv_gemm.held_workspace_bytes() == conv_gemm.layout_bytes(needs) > 0

"""The candidates of the NCHW16c ops on the cpu (conv2d_blocked, expand_depthwise_blocked;
graphcnn/passes/layout.py makes them): the blocked kernels in kernels/nchw16c*.py,
their weights prepacked once where frozen, and a way through NCHW for what they do not
compute."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.backends.cpu.candidates import (
    STORES_OVER_SIDE,
    Candidate,
    Core,
    OpStrategy,
    Site,
    _always,
    frozen_operands,
)
from graphcnn.backends.cpu.kernels import conv_gemm, nchw16c, nchw16c_conv, nchw16c_expand
from graphcnn.backends.cpu.shared_prepack import shared_prepack
from graphcnn.ops.conv_shapes import is_depthwise_3x3, is_pointwise
from graphcnn.ops.layout import in_channels

# ---- conv2d_blocked and expand_depthwise_blocked (NCHW16c) --------------------------------

def _f32_input(site: Site) -> bool:
    return site.in_dtypes[0] == np.float32


def _nchw16c_input(site: Site) -> bool:
    return len(site.in_shapes[0]) == 5 and _f32_input(site)


def _prepacked_core(site: Site, f: Callable[..., None], prepack: Callable[[], Any],
                    frozen: bool) -> Core:
    """Core of f(ins, out, attrs, epilogue, prepared): with `frozen` weights, prepared is
    prepack()'s, made now and held; else the kernel makes it at each call."""
    attrs = site.attrs
    if not frozen:
        return Core(lambda ins, out: f(ins, out, attrs),
                    store=lambda ins, out, epilogue: f(ins, out, attrs, epilogue))
    held = shared_prepack(f, site.known, (site.out_shape[1:], site.out_dtype), prepack)
    return Core(lambda ins, out: f(ins, out, attrs, prepared=held),
                store=lambda ins, out, epilogue: f(ins, out, attrs, epilogue, prepared=held),
                prepacked=held, prepack=prepack)


def _nchw16c_conv(function: str, depthwise: bool = False) -> Callable[[Site], Core]:
    def build(site: Site) -> Core:
        operands, blocks, dtype = list(site.known), site.out_shape[1], site.out_dtype
        return _prepacked_core(
            site, getattr(nchw16c, function),
            lambda: nchw16c.prepare(operands, blocks, dtype, depthwise),
            frozen_operands(site, 1, 2))
    return build


def _via_nchw(site: Site) -> Core:
    # Its conv2d (and the expansion's two-pass fallback) chooses at each call: neither
    # prepacks, and the workspaces its choice takes are not declared (no pass makes them).
    f, attrs = nchw16c.conv_via_nchw, site.attrs
    return Core(lambda ins, out: f(ins, out, attrs))


def _expand(site: Site) -> Core:
    operands, blocks, dtype = list(site.known), site.out_shape[1], site.out_dtype
    return _prepacked_core(site, nchw16c_expand.run_expand_depthwise,
                           lambda: nchw16c_expand.prepare(operands, blocks, dtype),
                           frozen_operands(site, 1, 2, 3, 4))


def _expand_two_pass(site: Site) -> Core:
    f, attrs = nchw16c_expand.run_two_pass, site.attrs
    return Core(lambda ins, out: f(ins, out, attrs))


BLOCKED_STRATEGIES: dict[str, OpStrategy] = {}
BLOCKED_STRATEGIES["conv2d_blocked"] = OpStrategy((
    Candidate("nchw16c-1x1", 3, lambda s: _nchw16c_input(s) and s.attrs["groups"] == 1
              and is_pointwise(s.in_shapes[1], s.attrs), _nchw16c_conv("conv_pointwise"),
              rule="1x1 on NCHW16c: output channels in the lanes"),
    Candidate("nchw16c-depthwise-3x3", 2, lambda s: _nchw16c_input(s) and is_depthwise_3x3(
        in_channels(s.in_shapes[1], s.attrs["groups"]), s.in_shapes[1], s.attrs),
              _nchw16c_conv("conv_depthwise", depthwise=True), rule="depthwise 3x3 on NCHW16c"),
    Candidate("nchw16c-implicit", 1, lambda s: _f32_input(s) and s.attrs["groups"] == 1,
              _nchw16c_conv("conv_implicit"), rule="float32, one group: the tap-table GEMM",
              scratch=lambda s: conv_gemm.scratch_bytes(nchw16c_conv.general_scratch(
                  s.in_shapes[0], s.attrs, s.in_dtypes[0]))),
    Candidate("nchw16c-via-nchw", 0, _always, _via_nchw,
              rule="no NCHW16c kernel computes it: through NCHW"),
))
# The blocked convs whose tiles store each output vector once, through the epilogue that
# reads the side's vector at the same place just before (nchw16c_conv._conv_rows): their
# output may be the residual's own bytes (MobileNetV2's projection and its add).
STORES_OVER_SIDE["conv2d_blocked"] = frozenset({"nchw16c-1x1", "nchw16c-implicit"})
BLOCKED_STRATEGIES["expand_depthwise_blocked"] = OpStrategy((
    Candidate("nchw16c-expand-depthwise", 1, lambda s: nchw16c_expand.applies(
        s.in_dtypes[0], s.in_shapes[3], s.attrs), _expand,
              rule="float32 depthwise 3x3: the expanded tensor never stored"),
    Candidate("nchw16c-expand-two-pass", 0, _always, _expand_two_pass,
              rule="no fused kernel computes it: the two convs one after the other"),
))

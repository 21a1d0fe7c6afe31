"""The strategies of the conv gradient ops, conv2d_input_grad and conv2d_weight_grad: the
GEMMs and the direct kernel of candidates.py, and the kernels for the shapes those serve
badly in a training step: the weight gradient of a stride-1 unpadded conv too small for a
GEMM (LeNet-5's c1: conv.py's wide kernel), and both gradients of depthwise 3x3 convs
(MobileNet's: depthwise_grad.py), and the weight gradient of convs with few weights over
large planes (the stems, MobileNet's 1x1 layers: weight_grad_dots.py); and the input gradient
of a stride-1 conv as a forward conv of dy with the weight turned, on the forward conv's
packed, implicit and Winograd kernels (kernels/turned.py). strategy.py adds these to
candidates.STRATEGIES."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.backends.cpu.accuracy import ERROR_GROWTH
from graphcnn.backends.cpu.candidates import (
    _DIRECT,
    _GRAD_GEMMS,
    Candidate,
    Core,
    OpStrategy,
    Site,
    _always,
    _conv_key,
    _gemm,
    _gemm_sized,
    _operands,
    _winograd4_applies,
    _winograd_offered,
    default_algorithm,
    f4_weights,
)
from graphcnn.backends.cpu.kernels import (
    conv,
    depthwise_grad,
    turned,
    weight_grad_dots,
    winograd,
)
from graphcnn.backends.cpu.kernels.conv_gemm import scratch_bytes
from graphcnn.backends.cpu.shared_prepack import shared_prepack
from graphcnn.ops.conv_shapes import is_depthwise_3x3, is_pointwise, is_unpadded_unit_stride


def _wide_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: conv.conv2d_weight_grad_wide(ins[0], ins[1], out, attrs))


def _wide_grad_offered(site: Site) -> bool:
    return is_unpadded_unit_stride(site.attrs) and not _gemm_sized(site)


def _depthwise_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: depthwise_grad.depthwise3x3_weight_grad(ins[0], ins[1], out,
                                                                    attrs))


def _depthwise_3x3_grad(site: Site) -> bool:
    x, w, _ = _operands(site)
    return is_depthwise_3x3(x[1], w, site.attrs)


_DEPTHWISE_GRAD = Candidate("depthwise-3x3", 2, _depthwise_3x3_grad, _depthwise_grad,
                            rule="depthwise 3x3 (too little work per group for a GEMM)",
                            error_growth=ERROR_GROWTH["direct"])


def _depthwise_input_grad(site: Site) -> Core:
    attrs, grad = site.attrs, depthwise_grad.depthwise3x3_input_grad
    return Core(lambda ins, out: grad(ins[0], ins[1], out, attrs),
                store_mask=lambda ins, out, mask: grad(ins[0], ins[1], out, attrs, mask))


_DEPTHWISE_INPUT_GRAD = Candidate(
    "depthwise-3x3", 2,
    lambda site: depthwise_grad.input_grad_applies(_operands(site)[0][1], _operands(site)[1],
                                              site.attrs),
    _depthwise_input_grad, rule="depthwise 3x3, stride 1: the forward kernel, filters turned",
    error_growth=ERROR_GROWTH["direct"])


def _depthwise_s2_input_grad(site: Site) -> Core:
    attrs, grad = site.attrs, depthwise_grad.depthwise3x3_s2_input_grad
    return Core(lambda ins, out: grad(ins[0], ins[1], out, attrs),
                store_mask=lambda ins, out, mask: grad(ins[0], ins[1], out, attrs, mask))


_DEPTHWISE_S2_INPUT_GRAD = Candidate(
    "depthwise-3x3-s2", 2,
    lambda site: depthwise_grad.input_grad_s2_applies(_operands(site)[0][1], _operands(site)[1],
                                                 site.attrs),
    _depthwise_s2_input_grad,
    rule="depthwise 3x3, stride 2: dy's taps by the parity of each pixel",
    error_growth=ERROR_GROWTH["direct"])


def _dots_applies(site: Site) -> bool:
    x, w, _ = _operands(site)
    return weight_grad_dots.applies(x, w, site.attrs, site.out_dtype)


def _dots(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: weight_grad_dots.conv2d_weight_grad_dots(ins[0], ins[1], out,
                                                                          attrs))


def _dots_scratch(site: Site) -> dict[str, int]:
    _, w, _ = _operands(site)
    return weight_grad_dots.scratch(w, site.attrs, site.out_dtype.itemsize)


# Against the GEMM (the autotuner measures both): few channels over large planes.
_DOTS = Candidate("dots", 1, _dots_applies, _dots, _gemm_sized,
                  rule="few weights, long sums: blocked dots over runs of pixels in cache",
                  scratch=_dots_scratch, error_growth=ERROR_GROWTH["dots"])


# Ahead of the GEMMs where they are not offered (too little work), as direct-wide is
# for the forward conv: LeNet-5's c1 (six filters of one channel).
_WIDE_GRAD = Candidate("direct-wide", 1, lambda s: is_unpadded_unit_stride(s.attrs),
                       _wide_grad, _wide_grad_offered,
                       rule="too little work for a GEMM; stride 1 unpadded: one dot per tap",
                       error_growth=ERROR_GROWTH["direct"])


def _turned_applies(site: Site) -> bool:
    return (site.out_dtype == np.float32 and site.in_dtypes[0] == np.float32
            and turned.applies(site.in_shapes[1], site.attrs))


def _turned(name: str, applies: Callable[[Site], bool] = _always,
            offered: Callable[[Site], bool] = _always) -> Candidate:
    """The input gradient as the forward conv of dy with the weight turned, on the forward
    conv's `name` kernel; a frozen weight is turned (and packed) once, at build."""
    def build(site: Site) -> Core:
        attrs, w, op = site.attrs, site.known[1], site.op
        guard = (lambda run: conv.exact_on_nonfinite(op, attrs, site.out_dtype, run))
        if w is None or not site.frozen:
            return Core(guard(lambda ins, out: turned.input_grad(name, ins[0], ins[1], out,
                                                                 attrs)), adds_bias=False)

        def prepack() -> Any:
            assert w is not None
            return turned.PREPARE[name](w)
        held = shared_prepack(("turned", name), (w,), (), prepack)
        return Core(guard(lambda ins, out: turned.input_grad(name, ins[0], ins[1], out,
                                                             attrs, held)),
                    adds_bias=False, prepacked=held, prepack=prepack)

    def scratch(site: Site) -> dict[str, int]:
        return scratch_bytes(turned.scratch(name, site.in_shapes[0], site.in_shapes[1],
                                            site.out_shape, site.attrs))
    return Candidate(name, 1, lambda site: _turned_applies(site) and applies(site), build,
                     offered=lambda site: _gemm_sized(site) and offered(site),
                     rule="the forward conv of dy with the weight turned (stride 1)",
                     scratch=scratch, error_growth=ERROR_GROWTH[name])


def _winograd_turned_applies(site: Site) -> bool:
    return winograd.input_grad_applies(site.in_shapes[1], site.attrs)


def _not_pointwise(site: Site) -> bool:
    # A 1x1 unpadded conv's dy is already the GEMM's columns: no table to gain by.
    return not is_pointwise(site.in_shapes[1], site.attrs)


_TURNED = (_turned("packed"), _turned("packed-channels"), _turned("implicit", _not_pointwise),
           _turned("winograd-packed", _winograd_turned_applies),
           _turned("winograd-f4", _winograd_turned_applies, f4_weights))

GRAD_STRATEGIES = {
    "conv2d_input_grad": OpStrategy(
        _GRAD_GEMMS + _TURNED + (_DEPTHWISE_INPUT_GRAD, _DEPTHWISE_S2_INPUT_GRAD, _DIRECT),
        _conv_key, default_algorithm),
    "conv2d_weight_grad": OpStrategy(
        _GRAD_GEMMS + (_gemm("winograd-f4", _winograd4_applies, _winograd_offered, priority=1),
                       _DOTS, _DEPTHWISE_GRAD, _WIDE_GRAD, _DIRECT),
        _conv_key, default_algorithm),
}

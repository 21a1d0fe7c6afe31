"""The strategies of the conv gradient ops, conv2d_input_grad and conv2d_weight_grad: the
GEMMs and the direct kernel of candidates.py, and the kernels for the shapes those serve
badly in a training step: the weight gradient of a stride-1 unpadded conv too small for a
GEMM (LeNet-5's c1: conv.py's wide kernel), and both gradients of depthwise 3x3 convs
(MobileNet's: depthwise.py). strategy.py adds these to candidates.STRATEGIES."""
from __future__ import annotations

from graphcnn.backends.cpu.accuracy import ERROR_GROWTH
from graphcnn.backends.cpu.candidates import (
    _DIRECT,
    _GRAD_GEMMS,
    Candidate,
    Core,
    OpStrategy,
    Site,
    _conv_key,
    _gemm_sized,
    _operands,
    default_algorithm,
)
from graphcnn.backends.cpu.kernels import conv, depthwise
from graphcnn.ops.conv_shapes import is_depthwise_3x3, is_unpadded_unit_stride


def _wide_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: conv.conv2d_weight_grad_wide(ins[0], ins[1], out, attrs))


def _wide_grad_offered(site: Site) -> bool:
    return is_unpadded_unit_stride(site.attrs) and not _gemm_sized(site)


def _depthwise_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: depthwise.depthwise3x3_weight_grad(ins[0], ins[1], out,
                                                                    attrs))


def _depthwise_3x3_grad(site: Site) -> bool:
    x, w, _ = _operands(site)
    return is_depthwise_3x3(x[1], w, site.attrs)


_DEPTHWISE_GRAD = Candidate("depthwise-3x3", 2, _depthwise_3x3_grad, _depthwise_grad,
                            rule="depthwise 3x3 (too little work per group for a GEMM)",
                            error_growth=ERROR_GROWTH["direct"])


def _depthwise_input_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: depthwise.depthwise3x3_input_grad(ins[0], ins[1], out,
                                                                   attrs))


_DEPTHWISE_INPUT_GRAD = Candidate(
    "depthwise-3x3", 2,
    lambda site: depthwise.input_grad_applies(_operands(site)[0][1], _operands(site)[1],
                                              site.attrs),
    _depthwise_input_grad, rule="depthwise 3x3, stride 1: the forward kernel, filters turned",
    error_growth=ERROR_GROWTH["direct"])


def _depthwise_s2_input_grad(site: Site) -> Core:
    attrs = site.attrs
    return Core(lambda ins, out: depthwise.depthwise3x3_s2_input_grad(ins[0], ins[1], out,
                                                                      attrs))


_DEPTHWISE_S2_INPUT_GRAD = Candidate(
    "depthwise-3x3-s2", 2,
    lambda site: depthwise.input_grad_s2_applies(_operands(site)[0][1], _operands(site)[1],
                                                 site.attrs),
    _depthwise_s2_input_grad,
    rule="depthwise 3x3, stride 2: dy's taps by the parity of each pixel",
    error_growth=ERROR_GROWTH["direct"])


# Ahead of the GEMMs where they are not offered (too little work), as direct-wide is
# for the forward conv: LeNet-5's c1 (six filters of one channel).
_WIDE_GRAD = Candidate("direct-wide", 1, lambda s: is_unpadded_unit_stride(s.attrs),
                       _wide_grad, _wide_grad_offered,
                       rule="too little work for a GEMM; stride 1 unpadded: one dot per tap",
                       error_growth=ERROR_GROWTH["direct"])


GRAD_STRATEGIES = {
    "conv2d_input_grad": OpStrategy(
        _GRAD_GEMMS + (_DEPTHWISE_INPUT_GRAD, _DEPTHWISE_S2_INPUT_GRAD, _DIRECT), _conv_key,
        default_algorithm),
    "conv2d_weight_grad": OpStrategy(_GRAD_GEMMS + (_DEPTHWISE_GRAD, _WIDE_GRAD, _DIRECT),
                                     _conv_key, default_algorithm),
}

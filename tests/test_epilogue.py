"""Epilogues applied by the conv kernels as they write (backends/cpu/kernels/epilogue.py):
which fused chains are recognized, every conv algorithm giving the same bits as the conv
followed by the chain in NumPy, and compiled ResNet and MobileNet blocks running their
fused convs without the generated epilogue pass."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu.kernels import epilogue
from graphcnn.backends.cpu.kernels.epilogue import CLIP, NONE, RELU


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def test_chain_takes_an_add_then_relu_or_clip_and_nothing_else():
    add = ("add", {}, [-1, 3])
    relu, clip = ("relu", {}, [-1]), ("clip", {"low": 0.0, "high": 6.0}, [-1])
    assert epilogue.chain([]) == (None, NONE, 0.0, 0.0)
    assert epilogue.chain([add, relu]) == (3, RELU, 0.0, 0.0)    # ResNet's conv + add + relu
    assert epilogue.chain([clip]) == (None, CLIP, 0.0, 6.0)      # MobileNet's conv + relu6
    assert epilogue.chain([("add", {}, [2, -1])]) == (2, NONE, 0.0, 0.0)
    assert epilogue.chain([relu, add]) is None                   # add after the activation
    assert epilogue.chain([("add", {}, [-1, -1])]) is None       # x + x
    assert epilogue.chain([("mul", {}, [-1, 2])]) is None
    assert epilogue.chain([relu, relu]) is None


def test_recognize_refuses_broadcast_and_overlapping_residuals():
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, (1, 2, 4, 4)), rand(rng, (3, 2, 3, 3)), rand(rng, (3,))
    out = np.empty((1, 3, 4, 4), np.float32)
    attrs = {"anchor": "conv2d", "anchor_inputs": 3, "steps": [("add", {}, [-1, 3])]}
    ep = epilogue.recognize(attrs, [x, w, b, rand(rng, out.shape)], out)
    assert ep is not None and ep.has_bias and ep.has_residual and ep.act == NONE
    assert epilogue.recognize(attrs, [x, w, b, rand(rng, (1, 3, 1, 1))], out) is None
    assert epilogue.recognize(attrs, [x, w, b, out], out) is None  # the output itself
    assert epilogue.recognize(dict(attrs, anchor="linear"), [x, w, b, out.copy()], out) is None


ALGORITHMS = ["gemm", "winograd", "winograd-packed", "packed", "packed-channels", "implicit",
              "direct", "depthwise"]


@st.composite
def epilogue_case(draw, algorithm):
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 20))
    h, w = draw(st.integers(3, 10)), draw(st.integers(3, 20))
    k = 3 if algorithm in ("winograd", "winograd-packed", "depthwise") else draw(
        st.integers(1, 3))
    stride = 1 if algorithm in ("winograd", "winograd-packed") else draw(st.integers(1, 2))
    groups = 1
    if algorithm == "depthwise":
        c = o = max(2, c)
        groups = c
    dtype = np.float32 if algorithm in ("winograd-packed", "packed", "packed-channels",
                                        "implicit") else draw(st.sampled_from([np.float32,
                                                                               np.float64]))
    attrs = dict(stride=(stride, stride), padding=(1, 1, 1, 1), dilation=(1, 1), groups=groups)
    act = draw(st.sampled_from([NONE, RELU, CLIP]))
    return ((n, c, h, w), (o, c // groups, k, k), attrs, dtype, draw(st.booleans()),
            draw(st.booleans()), act)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_every_conv_algorithm_applies_the_epilogue_to_the_same_bits(algorithm, data, seed):
    """conv + bias + residual + relu/clip through conv2d_with_epilogue, the algorithm
    forced: the same bits as the conv (+ bias) alone followed by the chain in NumPy, in the
    output's dtype (the clip bounds are exact in float32)."""
    from graphcnn.backends.cpu import autotune
    from graphcnn.backends.cpu.kernels import conv, conv_gemm, winograd
    case = data.draw(epilogue_case(algorithm))
    x_shape, w_shape, attrs, dtype, has_bias, has_residual, act = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    bias = rand(rng, (w_shape[0],), dtype) if has_bias else None
    oh = (x_shape[2] + 2 - w_shape[2]) // attrs["stride"][0] + 1
    ow = (x_shape[3] + 2 - w_shape[3]) // attrs["stride"][1] + 1
    shape = (x_shape[0], w_shape[0], oh, ow)
    residual = rand(rng, shape, dtype) if has_residual else None
    low, high = (-0.5, 1.5) if act == CLIP else (0.0, 0.0)
    plain, got = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    gemm = algorithm not in ("direct", "depthwise")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_gemm, "use_gemm", lambda *args: gemm)
        patch.setattr(winograd, "worth_trying", lambda *args: True)
        patch.setattr(autotune, "pick", lambda kind, key, candidates, default: (
            algorithm if algorithm in candidates else default))
        if gemm:
            names = conv.algorithms("conv2d", x_shape, w_shape, (oh, ow), attrs, dtype, False)
            assume(algorithm in names)
        conv.forget_choices()
        conv.conv2d_with_epilogue([x, w], plain, attrs, epilogue.make(dtype, bias))
        conv.conv2d_with_epilogue([x, w], got, attrs,
                                  epilogue.make(dtype, bias, residual, act, low, high))
    want = plain + residual if has_residual else plain
    if act == RELU:
        want = np.where(want > 0, want, dtype(0))
    elif act == CLIP:
        want = np.where(want < low, dtype(low), np.where(want > high, dtype(high), want))
    np.testing.assert_array_equal(got, want.astype(dtype))


def mobilenet_block() -> gc.Model:
    """An inverted residual: 1x1 expand + relu6, depthwise 3x3 + relu6, 1x1 project, + x."""
    x = gc.Input((8, 9, 9), name="image")
    h = gc.relu6(nn.BatchNorm2d(24, name="bn1")(nn.Conv2d(8, 24, 1, bias=False, name="e")(x)))
    h = nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False, name="dw")(h)
    h = gc.relu6(nn.BatchNorm2d(24, name="bn2")(h))
    h = nn.BatchNorm2d(8, name="bn3")(nn.Conv2d(24, 8, 1, bias=False, name="p")(h))
    return gc.Model(inputs=x, outputs=gc.add(h, x), name="inverted_residual")


def resnet_block() -> gc.Model:
    x = gc.Input((8, 9, 9), name="image")
    h = gc.relu(nn.BatchNorm2d(8, name="bn1")(nn.Conv2d(8, 8, 3, padding=1, bias=False,
                                                        name="c1")(x)))
    h = nn.BatchNorm2d(8, name="bn2")(nn.Conv2d(8, 8, 3, padding=1, bias=False, name="c2")(h))
    return gc.Model(inputs=x, outputs=gc.relu(gc.add(h, x)), name="basic_block")


@pytest.mark.parametrize("build", [mobilenet_block, resnet_block])
@pytest.mark.parametrize("gemm", [True, False], ids=["gemm", "direct"])
def test_compiled_blocks_run_their_fused_convs_without_the_epilogue_pass(
        build, gemm, monkeypatch):
    """Batch-norm folded into the convs, each fused conv + (add +) relu/relu6 runs in the
    conv kernels, never through a generated kernel, and equals the reference backend at
    opt level 0; on the GEMM algorithms and on the direct and depthwise kernels."""
    from graphcnn.backends.cpu.kernels import conv_gemm, fused
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda x, w, hw, attrs: gemm
                        and attrs["groups"] == 1)
    prepared = []
    original = fused._prepared
    monkeypatch.setattr(fused, "_prepared", lambda attrs: (prepared.append(attrs["anchor"]),
                                                           original(attrs))[1])
    model = build()
    rng = np.random.default_rng(1)
    for key, value in sorted(model.parameters().items()):
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith("running_mean"):
            value[...] = rng.normal(0, 0.1, value.shape)
    xs = 3 * rand(rng, (2, 8, 9, 9))  # large enough that relu6 clips some values
    exe = gc.compile(model, batch_size=2, opt_level=2)
    got = exe(xs)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert exe.report()["kernels"] == 3 if build is mobilenet_block else 2
    assert "conv2d" not in prepared

"""pixel_cross_entropy and soft_dice: the reference against written-out definitions (pixel
by pixel, as torch.nn.functional.cross_entropy defines its value and gradient) and
hand-computed cases; the cpu kernels against the reference; gradients against finite
differences in float64; bad labels and shapes as one-line errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from op_check import check_op, forward, gradients

import graphcnn as gc
from graphcnn.errors import GraphBuildError, ShapeError
from graphcnn.ops.registry import get_op


def _labels(rng: np.random.Generator, shape: tuple[int, ...], classes: int,
            ignored: float = 0.25, ignore_index: int = -100) -> np.ndarray:
    t = rng.integers(0, classes, shape).astype(np.int64)
    t[rng.random(shape) < ignored] = ignore_index
    return t


def ce_by_pixels(x: np.ndarray, t: np.ndarray, weight: list[float] | None, ignore: int,
                 reduction: str) -> tuple[float, np.ndarray]:
    """PyTorch's definition, pixel by pixel: the loss and d loss / d x."""
    n, c, h, w = x.shape
    wt = weight or [1.0] * c
    total, count = 0.0, 0.0
    for i in range(n):
        for r in range(h):
            for s in range(w):
                if t[i, r, s] == ignore:
                    continue
                z = x[i, :, r, s]
                lse = math.log(sum(math.exp(v) for v in z))
                total += wt[t[i, r, s]] * (lse - z[t[i, r, s]])
                count += wt[t[i, r, s]]
    denom = count if reduction == "mean" else 1.0
    grad = np.zeros_like(x)
    for i in range(n):
        for r in range(h):
            for s in range(w):
                if t[i, r, s] == ignore:
                    continue
                z = x[i, :, r, s]
                p = np.exp(z) / np.exp(z).sum()
                p[t[i, r, s]] -= 1.0
                grad[i, :, r, s] = p * wt[t[i, r, s]] / denom
    return total / denom, grad


def dice_by_classes(x: np.ndarray, t: np.ndarray, ignore: int, eps: float,
                    include_background: bool) -> float:
    n, c, h, w = x.shape
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    scores = []
    for k in range(0 if include_background else 1, c):
        inter = psum = gsum = 0.0
        for i in range(n):
            for r in range(h):
                for s in range(w):
                    if t[i, r, s] == ignore:
                        continue
                    psum += p[i, k, r, s]
                    if t[i, r, s] == k:
                        inter += p[i, k, r, s]
                        gsum += 1.0
        scores.append((2 * inter + eps) / (psum + gsum + eps))
    return 1.0 - float(np.mean(scores))


@pytest.mark.parametrize("weight,ignore,reduction", [
    (None, -100, "mean"), (None, -100, "sum"), ([0.2, 1.0, 3.0], -100, "mean"),
    ([0.2, 1.0, 3.0], 1, "mean"), ([1.0, 0.5, 2.0], 0, "sum")])
def test_pixel_cross_entropy_reference_is_the_written_out_definition(weight, ignore,
                                                                     reduction):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 3, 4)) * 2
    t = _labels(rng, (2, 3, 4), 3, ignore_index=ignore)
    attrs = dict(weight=weight, ignore_index=ignore, reduction=reduction)
    want, want_grad = ce_by_pixels(x, t, weight, ignore, reduction)
    assert get_op("pixel_cross_entropy").ref(x, t, **get_op(
        "pixel_cross_entropy").normalize_attrs(attrs, [])) == pytest.approx(want, rel=1e-12)
    normalized = get_op("pixel_cross_entropy_grad").normalize_attrs(attrs, [])
    got = get_op("pixel_cross_entropy_grad").ref(np.float64(1.0), x, t, **normalized)
    np.testing.assert_allclose(got, want_grad, rtol=1e-10, atol=1e-14)


def test_pixel_cross_entropy_hand_computed():
    # one image, two pixels, two classes: logits (0, 0) and (ln 3, 0); labels 0 and 1
    x = np.zeros((1, 2, 1, 2), np.float32)
    x[0, 0, 0, 1] = math.log(3.0)
    t = np.int64([[[0, 1]]])
    (loss,) = forward("pixel_cross_entropy", [x, t], {}, "cpu")
    assert loss == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    (loss,) = forward("pixel_cross_entropy", [x, t], {"weight": (1.0, 3.0)}, "cpu")
    assert loss == pytest.approx((math.log(2) + 3 * math.log(4)) / 4, rel=1e-6)
    (loss,) = forward("pixel_cross_entropy", [x, np.int64([[[0, -100]]])], {}, "cpu")
    assert loss == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("attrs", [{}, {"reduction": "sum"}, {"weight": (0.5, 2.0, 1.0, 0.0)},
                                   {"ignore_index": 2, "weight": (1.0, 0.3, 2.0, 1.5)}])
def test_pixel_cross_entropy_cpu_and_gradients(attrs):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    t = _labels(rng, (2, 5, 3), 4, ignore_index=attrs.get("ignore_index", -100))
    check_op("pixel_cross_entropy", [x, t], attrs)


def test_every_pixel_ignored_is_nan_with_zero_gradient_as_pytorch():
    x = np.random.default_rng(0).standard_normal((1, 3, 2, 2)).astype(np.float32)
    t = np.full((1, 2, 2), -100, np.int64)
    for backend in ("reference", "cpu"):
        (loss,) = forward("pixel_cross_entropy", [x, t], {}, backend)
        assert np.isnan(loss), backend
        (_, grad) = gradients("pixel_cross_entropy", [x, t], {}, backend)
        assert not np.isnan(grad).any() and not grad.any(), backend
        (loss,) = forward("pixel_cross_entropy", [x, t], {"reduction": "sum"}, backend)
        assert loss == 0.0


def test_soft_dice_reference_is_the_written_out_definition():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 3)) * 2
    t = _labels(rng, (2, 4, 3), 3)
    for eps, background in ((1.0, True), (0.0, False), (1e-3, True)):
        attrs = dict(eps=eps, include_background=background)
        got = get_op("soft_dice").ref(x, t, ignore_index=-100, **attrs)
        assert got == pytest.approx(dice_by_classes(x, t, -100, eps, background), rel=1e-12)


def test_soft_dice_hand_computed():
    # confident and right everywhere: D = 1 for each class, loss 0
    t = np.int64([[[0, 1], [1, 1]]])
    x = np.where(np.arange(2)[None, :, None, None] == t[:, None], 30.0, -30.0)
    (loss,) = forward("soft_dice", [x.astype(np.float32), t], {"eps": 0.0}, "cpu")
    assert abs(float(loss)) < 1e-6
    # uniform probabilities (0.5 each): class 0 has I=0.5, P=2, G=1 -> D=1/3; class 1:
    # I=1.5, P=2, G=3 -> D=0.6; with eps=1: (2+1)/(4) and (3+1)/(6)
    x = np.zeros((1, 2, 2, 2), np.float32)
    (loss,) = forward("soft_dice", [x, t], {"eps": 0.0}, "cpu")
    assert loss == pytest.approx(1 - (1 / 3 + 0.6) / 2, rel=1e-6)
    (loss,) = forward("soft_dice", [x, t], {"eps": 1.0}, "cpu")
    assert loss == pytest.approx(1 - (2 / 4 + 4 / 6) / 2, rel=1e-6)
    (loss,) = forward("soft_dice", [x, t], {"eps": 0.0, "include_background": False}, "cpu")
    assert loss == pytest.approx(1 - 0.6, rel=1e-6)


@pytest.mark.parametrize("attrs", [{}, {"include_background": False, "eps": 0.5},
                                   {"ignore_index": 0}])
def test_soft_dice_cpu_and_gradients(attrs):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = _labels(rng, (2, 4, 5), 3, ignore_index=attrs.get("ignore_index", -100))
    check_op("soft_dice", [x, t], attrs)


@pytest.mark.parametrize("op", ["pixel_cross_entropy", "soft_dice"])
def test_a_label_out_of_range_is_an_error_naming_it(op):
    x = np.zeros((1, 3, 2, 2), np.float32)
    t = np.int64([[[0, 1], [5, -100]]])
    for backend in ("reference", "cpu"):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*got \[5\]"):
            forward(op, [x, t], {}, backend)
    with pytest.raises(ValueError, match=r"ignore_index \(0\); got \[-100, 5\]"):
        forward(op, [x, t], {"ignore_index": 0}, "cpu")


def test_labels_and_weight_must_fit_the_logits():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(GraphBuildError, match=r"int64 of shape \(2, 4, 4\).*got int64 \(2, 4, 5\)"):
        forward("pixel_cross_entropy", [x, np.zeros((2, 4, 5), np.int64)], {}, "reference")
    with pytest.raises(GraphBuildError, match="weight has 2 values but the logits have 3 classes"):
        forward("pixel_cross_entropy", [x, np.zeros((2, 4, 4), np.int64)],
                {"weight": (1.0, 2.0)}, "reference")
    with pytest.raises(GraphBuildError, match="logits must be"):
        forward("soft_dice", [np.zeros((2, 3), np.float32), np.zeros((2,), np.int64)], {},
                "reference")


def _tiny_segmenter() -> gc.Model:
    from graphcnn import nn
    x = gc.Input((1, 4, 4), name="image")
    return gc.Model(x, nn.Conv2d(1, 3, 3, padding=1)(x), name="tiny_seg")


def test_training_steps_take_the_losses_by_name_and_configured():
    gc.manual_seed(0)
    model = _tiny_segmenter()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    t = _labels(rng, (2, 4, 4), 3)
    for loss in ("pixel_cross_entropy", "soft_dice",
                 gc.losses.Loss("pixel_cross_entropy", weight=(1.0, 2.0, 0.5), ignore_index=1)):
        step = gc.value_and_grad(model, loss=loss, batch_size=2, backend="cpu")
        target = np.where(t < 0, 1, t) if isinstance(loss, gc.losses.Loss) else t
        value, grads = step(x, target)
        assert np.isfinite(value) and sorted(grads) == ["conv2d_0.bias", "conv2d_0.weight"]
    assert gc.losses.Loss("soft_dice").target_type(model.outputs[0].type).shape[1:] == (4, 4)


def test_a_step_given_masks_of_the_wrong_shape_or_labels_out_of_range_says_so():
    gc.manual_seed(0)
    step = gc.value_and_grad(_tiny_segmenter(), loss="pixel_cross_entropy", batch_size=2,
                             backend="cpu")
    x = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(ValueError) as err:
        step(x, np.zeros((2, 5, 4), np.int64))
    assert "(2, 4, 4)" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError) as err:
        step(x, np.full((2, 4, 4), 3, np.int64))
    assert "[0, 3)" in str(err.value) and "[3]" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_attributes_are_clear():
    x = np.zeros((1, 2, 2, 2), np.float32)
    t = np.zeros((1, 2, 2), np.int64)
    for attrs, message in (({"ignore_index": 1.5}, "ignore_index must be an int"),
                           ({"weight": "heavy"}, "weight must be a sequence of floats"),
                           ({"reduction": "none"}, "reduction must be 'mean' or 'sum'")):
        with pytest.raises((ShapeError, GraphBuildError), match=message):
            forward("pixel_cross_entropy", [x, t], attrs, "reference")
    with pytest.raises((ShapeError, GraphBuildError), match="eps must be finite"):
        forward("soft_dice", [x, t], {"eps": -1.0}, "reference")

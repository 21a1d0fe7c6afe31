"""Augmenters: shape, dtype, determinism, and that each does what it says; the spec
parser; Normalize."""
import json

import numpy as np
import pytest

from graphcnn.train.augment import (
    Compose,
    RandomBrightness,
    RandomCrop,
    RandomFlip,
    RandomNoise,
    RandomRotation,
    RandomTranslate,
    parse_augment,
    rotate,
)
from graphcnn.train.normalize import Normalize


@pytest.fixture
def batch():
    return np.random.default_rng(0).random((16, 3, 12, 10)).astype(np.float32)


ALL = [RandomFlip(), RandomFlip(horizontal=False, vertical=True), RandomTranslate(3),
       RandomCrop(2), RandomRotation(15), RandomRotation(15, interpolation="nearest"),
       RandomBrightness(0.2), RandomNoise(0.1),
       Compose([RandomFlip(), RandomTranslate(1), RandomRotation(5)])]


@pytest.mark.parametrize("aug", ALL, ids=repr)
def test_shape_dtype_and_determinism(aug, batch):
    before = batch.copy()
    a = aug(batch, np.random.default_rng(7))
    b = aug(batch, np.random.default_rng(7))
    assert a.shape == batch.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(batch, before)  # the input is not modified
    c = aug(batch.astype(np.float64), np.random.default_rng(8))
    assert c.dtype == np.float32 and not np.array_equal(a, c)
    assert aug(batch[:, 0], np.random.default_rng(7)).shape == batch[:, 0].shape  # (N, H, W)


def test_flip_flips_each_sample_or_leaves_it(batch):
    out = RandomFlip(p=0.5)(batch, np.random.default_rng(1))
    flipped = np.array([np.array_equal(o, x[..., ::-1]) for o, x in zip(out, batch)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, batch)])
    assert np.all(flipped ^ kept) and flipped.any() and kept.any()
    np.testing.assert_array_equal(RandomFlip(p=1.0)(batch, np.random.default_rng(0)),
                                  batch[..., ::-1])
    np.testing.assert_array_equal(
        RandomFlip(horizontal=False, vertical=True, p=1.0)(batch, np.random.default_rng(0)),
        batch[..., ::-1, :])
    np.testing.assert_array_equal(RandomFlip(p=0.0)(batch, np.random.default_rng(0)), batch)


def test_translate_moves_content_by_the_drawn_offsets(batch):
    aug = RandomTranslate(3)
    out = aug(batch, np.random.default_rng(5))
    dy, dx = aug.offsets(len(batch), np.random.default_rng(5))
    assert (np.abs(dy) <= 3).all() and (np.abs(dx) <= 3).all() and (dy != 0).any()
    h, w = batch.shape[-2:]
    for i in range(len(batch)):
        expected = np.zeros_like(batch[i])
        ys, yd = slice(max(0, -dy[i]), h - max(0, dy[i])), slice(max(0, dy[i]), h - max(0, -dy[i]))
        xs, xd = slice(max(0, -dx[i]), w - max(0, dx[i])), slice(max(0, dx[i]), w - max(0, -dx[i]))
        expected[:, yd, xd] = batch[i][:, ys, xs]
        np.testing.assert_array_equal(out[i], expected)


def test_translate_single_pixel_goes_where_expected():
    img = np.zeros((1, 1, 7, 7), np.float32)
    img[0, 0, 3, 3] = 1.0
    aug = RandomTranslate(2)
    out = aug(img, np.random.default_rng(3))
    dy, dx = aug.offsets(1, np.random.default_rng(3))
    assert out[0, 0, 3 + dy[0], 3 + dx[0]] == 1.0 and out.sum() == 1.0
    np.testing.assert_array_equal(RandomTranslate(0)(img, np.random.default_rng(0)), img)


def test_crop_is_pad_and_crop_back():
    img = np.ones((64, 1, 6, 6), np.float32)
    out = RandomCrop(2)(img, np.random.default_rng(0))
    assert out.sum() < img.sum() and set(np.unique(out)) <= {0.0, 1.0}
    # each sample keeps a full (6 - |dy|) x (6 - |dx|) block of ones
    assert (out.reshape(64, -1).sum(1) >= 16).all()


def test_rotation_by_zero_is_identity_and_by_90_is_rot90(batch):
    np.testing.assert_array_equal(RandomRotation(0)(batch, np.random.default_rng(0)), batch)
    square = batch[..., :10, :]
    np.testing.assert_allclose(rotate(square, 90.0), np.rot90(square, 1, axes=(-2, -1)),
                               atol=1e-5)
    np.testing.assert_allclose(rotate(square, -90.0, "nearest"),
                               np.rot90(square, -1, axes=(-2, -1)), atol=1e-6)
    np.testing.assert_allclose(rotate(square, 180.0), square[..., ::-1, ::-1], atol=1e-5)


def test_rotation_is_per_sample_and_keeps_mass_roughly():
    img = np.zeros((8, 1, 21, 21), np.float32)
    img[:, 0, 8:13, 8:13] = 1.0  # a centered square: small rotations keep most of it
    aug = RandomRotation(20)
    out = aug(img, np.random.default_rng(0))
    angles = aug.angles(8, np.random.default_rng(0))
    assert len(np.unique(np.round(angles, 6))) == 8 and np.abs(angles).max() <= 20
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 25.0, rtol=0.1)
    assert not np.array_equal(out[0], out[1])
    np.testing.assert_allclose(out[:, 0, 10, 10], 1.0)  # the center stays put


def test_brightness_shifts_each_sample_mean(batch):
    out = RandomBrightness(0.3)(batch, np.random.default_rng(2))
    shift = (out - batch).reshape(len(batch), -1)
    np.testing.assert_allclose(shift, shift[:, :1] * np.ones_like(shift), atol=1e-6)
    assert np.abs(shift[:, 0]).max() <= 0.3 and np.unique(np.round(shift[:, 0], 5)).size > 1


def test_parse_augment():
    assert parse_augment("") is None and parse_augment("none") is None
    assert parse_augment(None) is None
    shift = parse_augment("shift")
    assert isinstance(shift, RandomTranslate) and shift.max_shift == 2
    assert parse_augment("shift:3").max_shift == 3
    assert isinstance(parse_augment("crop:4"), RandomCrop) and parse_augment("crop:4").padding == 4
    assert parse_augment("rotate:10").degrees == 10.0
    assert parse_augment("brightness:0.1").delta == 0.1
    flip, vflip = parse_augment("flip"), parse_augment("vflip")
    assert flip.horizontal and not flip.vertical and vflip.vertical and not vflip.horizontal
    combo = parse_augment("flip, shift:1,rotate")
    assert isinstance(combo, Compose) and len(combo.augmenters) == 3
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(combo(x, np.random.default_rng(1)),
                                  parse_augment("flip,shift:1,rotate")(x, np.random.default_rng(1)))


@pytest.mark.parametrize("spec, message", [
    ("zoom", "valid: flip"), ("flip,blur:2", "unknown augmentation 'blur'"),
    ("shift:x", "integer"), ("shift:-1", ">= 0"), ("rotate:abc", "number"),
    ("flip:3", "no argument"),
])
def test_parse_augment_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_augment(spec)


def test_image_augmenters_reject_flat_batches():
    with pytest.raises(ValueError, match="image batch"):
        RandomTranslate(2)(np.zeros((4, 64), np.float32), np.random.default_rng(0))


def test_trainer_accepts_a_spec_string():
    """The Trainer parses a string augment (as the CLI passes it) with parse_augment."""
    import graphcnn as gc
    from graphcnn import nn
    x = gc.Input((1, 8, 8), name="x")
    model = gc.Model(inputs=x, outputs=nn.Linear(64, 3, name="fc")(gc.flatten(x)))
    trainer = gc.Trainer(model, augment="shift")
    assert isinstance(trainer.augment, RandomTranslate)


# ---- Normalize ------------------------------------------------------------------------
def test_normalize_per_channel_images(batch):
    data = batch * np.array([1, 2, 3], np.float32)[None, :, None, None] + 5
    norm = Normalize()
    assert not norm.fitted
    with pytest.raises(RuntimeError, match="fit"):
        norm(data)
    assert norm.fit(data) is norm and norm.fitted
    out = norm(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(norm.inverse(out), data, rtol=1e-5)


def test_normalize_flat_is_scalar_and_constant_data_is_safe():
    X = np.random.default_rng(0).random((50, 64)).astype(np.float32) * 16
    X[:, 0] = 0.0
    norm = Normalize().fit(X)
    assert norm.mean.shape == (1,)
    out = norm(X)
    assert out.mean() == pytest.approx(0, abs=1e-5) and out.std() == pytest.approx(1, abs=1e-4)
    const = Normalize().fit(np.full((4, 3), 2.0))
    np.testing.assert_array_equal(const(np.full((4, 3), 2.0)), 0.0)
    scalar = Normalize(per_channel=False).fit(np.random.default_rng(1).random((4, 3, 5, 5)))
    assert scalar.mean.shape == (1,)


def test_normalize_given_statistics_and_state_round_trip(batch):
    norm = Normalize(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    assert norm.fitted
    expected = (batch - np.array([0.5, 0.4, 0.3])[None, :, None, None]) / \
        np.array([0.2, 0.25, 0.3])[None, :, None, None]
    np.testing.assert_allclose(norm(batch), expected, rtol=1e-5, atol=1e-6)
    fitted = Normalize().fit(batch)
    again = Normalize.from_state_dict(json.loads(json.dumps(fitted.state_dict())))
    np.testing.assert_array_equal(again(batch), fitted(batch))
    assert Normalize.from_state_dict(Normalize().state_dict()).fitted is False
    with pytest.raises(ValueError, match="per-channel"):
        norm(batch[:, :2])
    with pytest.raises(ValueError):
        Normalize(mean=0.5)
    with pytest.raises(ValueError):
        Normalize(mean=0.5, std=0.0)

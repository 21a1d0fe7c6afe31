"""The model zoo: torchvision-exact parameter counts and names, outputs that match
torchvision's for the same weights, and cpu == reference on small variants."""
import gc as pygc
import hashlib

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.errors import GraphBuildError
from graphcnn.models import ZOO, available_models, get_model

# Trainable parameters with num_classes=1000 at 224 px: torchvision's sum(p.numel() for p in
# model.parameters()) (buffers such as BN running statistics excluded); mobilenet_v1 is the
# standard 1.0/224 model (Keras' trainable count); lenet5 has 10 classes.
COUNTS = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    "densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "unet": 31_037_698,   # milesial/Pytorch-UNet, 3 channels, 2 classes (tests/test_unet.py)
    "yolo_grid_detector": 107_480,   # ours: 464 + 13,952 + 55,552 + 36,992 + 2 * 260
    "cnn_regressor": 146_418,   # graphcnn's own (2 outputs, 64 px); no torchvision twin
    # PyTorch's DCGAN tutorial at its defaults (nz=100, ngf=ndf=64, nc=3, 64 x 64)
    "dcgan_generator": 3_576_704, "dcgan_discriminator": 2_765_568,
}

# sha256 (first 16 hex digits) of torchvision's state_dict, one "key:shape" per line in
# order, num_batches_tracked left out; computed with torchvision 0.28 (googlenet with
# aux_logits=False). A model whose names, shapes or order drift from torchvision fails.
TORCHVISION_KEYS = {
    "alexnet": "7cf57469ad654ca3",
    "vgg11": "5e6ee14c22dc415d", "vgg13": "054bce641758c677",
    "vgg16": "77334610293d95e2", "vgg19": "b4eb1243614e83cf",
    "vgg11_bn": "9c89619050bc0000", "vgg13_bn": "56f4235802474f5a",
    "vgg16_bn": "8a0f5ac30c96cfaf", "vgg19_bn": "d05ef47fb989fbb6",
    "resnet18": "f2762fd97f801518", "resnet34": "0c05b6e1946a150e",
    "resnet50": "da2ca2ae55a558b6", "resnet101": "5e37e9568f4c0d32",
    "resnet152": "f492a24649613ade",
    "googlenet": "d7e21812e4bfe299",
    "densenet121": "fa008cc44a4ff750", "densenet161": "f80ca7a420bcc6fc",
    "densenet169": "999a21b2723b5a74", "densenet201": "9009b27d78cef46e",
    "mobilenet_v2": "04da0bd062e95683",
}

# torchvision 0.28's logits (eval mode, rounded to 5 decimals) for the weights of
# torch_like_weights(seed=7) and the input standard_normal((2, 3, size, size)) of
# default_rng(8); num_classes=10.
TORCHVISION_LOGITS = {
    ("resnet18", 32, ()): [
        [9.10492, 0.41679, -16.93587, -20.14285, 9.29286, 13.14991, 14.40262, 4.334, -31.63496,
         -30.79945],
        [12.38753, 6.54185, -19.17822, -17.97272, 11.54621, 13.6885, 11.56577, 4.6308,
         -25.88943, -42.62328]],
    ("resnet50", 32, ()): [
        [150.0517, 528.37286, 345.04239, -1605.66895, -113.60944, 214.26448, -76.97291,
         15.31396, 1597.00281, -278.03088],
        [272.59662, 545.38959, 253.373, -1797.57031, -67.34785, 284.55859, -91.25446,
         16.03741, 1418.79297, -477.07306]],
    ("googlenet", 32, ()): [
        [-0.8174, -4.95596, 0.52665, 4.65575, 1.23341, -3.42434, -4.74328, 7.76089, 1.61208,
         3.48244],
        [-1.69119, -5.07951, 0.10797, 4.53568, 1.53119, -2.99832, -4.11929, 7.41601, 1.55421,
         3.22779]],
    ("densenet121", 32, ()): [
        [-0.16291, -0.66736, -2.79674, 1.70058, -1.71813, 0.80538, -0.10411, -2.37006,
         -3.39973, 2.6866],
        [-0.31892, -0.63613, -2.83149, 1.76306, -1.73274, 0.97893, -0.23606, -2.20628,
         -3.29905, 2.52481]],
    ("mobilenet_v2", 32, (("width_mult", 0.25),)): [
        [-1.08974, 1.52418, 1.55986, -2.85173, 0.57339, -3.08227, -0.85462, 3.51865, 0.676,
         -3.16658],
        [-0.65108, 2.19075, 1.3941, -2.78312, 0.30629, -2.98766, -0.83602, 3.43032, 0.51761,
         -4.18275]],
    ("alexnet", 224, ()): [
        [-3.42658, 6.27071, 3.45884, -2.61169, 0.29948, 1.17468, 5.45854, -12.9883, -8.7844,
         1.41681],
        [-3.45402, 6.1185, 1.95123, -2.40813, 1.37402, 1.37317, 5.02949, -14.64961, -10.51014,
         2.29498]],
}


def torch_like_weights(shapes: dict, seed: int) -> dict:
    """Deterministic weights by name (He-normal convs and linears, BN scale and running
    variance in [0.5, 1.5), small biases and means), the same in torch and here."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("running_mean"):
            v = rng.normal(0.0, 0.1, shape)
        elif name.endswith("running_var") or (len(shape) == 1 and name.endswith(".weight")):
            v = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:
            v = rng.normal(0.0, 0.1, shape)
        else:
            v = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        out[name] = v.astype(np.float32)
    return out


def keys_digest(model: gc.Model) -> str:
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.parameters().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    """Agreement to rtol relative to the largest magnitude of the expected output."""
    expected = np.asarray(expected, np.float32)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-5)


# ---- the zoo's contents -------------------------------------------------------------------

def test_zoo_lists_every_model():
    assert set(COUNTS) == set(ZOO) == set(available_models())
    assert available_models() == sorted(available_models())
    for name, fn in ZOO.items():
        assert getattr(gc.models, name) is fn


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet9'") as info:
        get_model("resnet9")
    for name in ("resnet18", "mobilenet_v2", "vgg16_bn", "densenet121"):
        assert name in str(info.value)


def test_get_model_is_case_insensitive_and_passes_options():
    model = get_model("ResNet18", num_classes=7, width=8, input_size=32)
    assert model.parameters()["fc.weight"].shape == (7, 64)
    assert model.inputs[0].shape == (None, 3, 32, 32)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_builds_with_torchvision_parameter_count_and_names(name):
    model = get_model(name)
    try:
        assert model.num_parameters(trainable_only=True) == COUNTS[name]
        assert sum(v.size for v in model.trainable_parameters().values()) == COUNTS[name]
        if name in TORCHVISION_KEYS:
            assert keys_digest(model) == TORCHVISION_KEYS[name]
        if name not in ("lenet5", "unet", "yolo_grid_detector", "cnn_regressor") \
                and not name.startswith("dcgan_"):
            assert model.outputs[0].shape == (None, 1000)
            assert model.inputs[0].shape == (None, 3, 224, 224)
    finally:
        del model
        pygc.collect()   # layers and parameters reference each other: free vgg's 0.5 GB now


def test_torchvision_names():
    r18 = list(gc.models.resnet18(width=8, input_size=32).parameters())
    assert r18[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                       "bn1.running_var", "layer1.0.conv1.weight"]
    assert "layer2.0.downsample.0.weight" in r18 and "layer2.0.downsample.1.running_var" in r18
    assert "layer1.0.downsample.0.weight" not in r18
    assert r18[-2:] == ["fc.weight", "fc.bias"]
    v2 = gc.models.mobilenet_v2(width_mult=0.25, input_size=32).parameters()
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
            "features.2.conv.0.0.weight", "features.2.conv.3.running_var",
            "features.18.0.weight", "classifier.1.weight"} <= set(v2)
    v1 = gc.models.mobilenet_v1(width_mult=0.25, input_size=32).parameters()
    assert v1["features.1.0.weight"].shape == (8, 1, 3, 3)      # depthwise
    assert v1["features.1.3.weight"].shape == (16, 8, 1, 1)     # pointwise
    assert v1["classifier.1.weight"].shape == (1000, 256)


def test_batch_norm_starts_at_identity_statistics():
    params = gc.models.resnet18(width=8, input_size=32).parameters()
    np.testing.assert_array_equal(params["bn1.weight"], 1.0)
    np.testing.assert_array_equal(params["bn1.bias"], 0.0)
    np.testing.assert_array_equal(params["bn1.running_mean"], 0.0)
    np.testing.assert_array_equal(params["bn1.running_var"], 1.0)


def test_googlenet_uses_torchvision_basic_conv():
    model = gc.models.googlenet(input_size=32)
    params = model.parameters()
    assert "conv1.conv.bias" not in params
    assert params["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)  # "5x5" is 3x3
    eps = {t.attrs["eps"] for t in model.tensors if t.op == "batch_norm"}
    assert eps == {0.001}


def test_options_scale_the_models():
    assert gc.models.resnet18(num_classes=10, in_channels=1, width=16, input_size=40) \
        .parameters()["conv1.weight"].shape == (16, 1, 7, 7)
    small = gc.models.mobilenet_v2(width_mult=0.5).num_parameters(trainable_only=True)
    assert 1_000_000 < small < COUNTS["mobilenet_v2"]
    assert gc.models.vgg11(width_mult=0.25, hidden=64, num_classes=5) \
        .parameters()["classifier.0.weight"].shape == (64, 128 * 7 * 7)
    densenet = gc.models.densenet121(growth_rate=8, num_init_features=16, input_size=32)
    # 16 + 6*8 = 64 -> 32, 32 + 12*8 = 128 -> 64, 64 + 24*8 = 256 -> 128, 128 + 16*8 = 256
    assert densenet.parameters()["features.norm5.weight"].shape == (256,)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="num_classes"):
        gc.models.resnet18(num_classes=0)
    with pytest.raises(ValueError, match="width_mult"):
        gc.models.mobilenet_v2(width_mult=0)
    with pytest.raises(ValueError, match="input_size"):
        gc.models.googlenet(input_size=(32,))
    with pytest.raises(ValueError, match="depth"):
        from graphcnn.models.resnet import resnet
        resnet(20)
    with pytest.raises(TypeError):
        gc.models.resnet18(widht=8)


def test_adaptive_pool_sizes():
    # VGG's AdaptiveAvgPool2d((7, 7)): 224 px gives 7x7 (identity), 448 px gives 14x14
    # (an exact 2x2 average), 32 px gives 1x1, which is not supported: a clear error.
    vgg = gc.models.vgg11(width_mult=1 / 16, hidden=8, num_classes=3, input_size=448)
    assert not any(t.op == "global_avg_pool2d" for t in vgg.tensors)
    assert sum(t.op == "avg_pool2d" for t in vgg.tensors) == 1
    with pytest.raises(GraphBuildError, match="1x1.*7x7"):
        gc.models.vgg11(width_mult=1 / 16, hidden=8, input_size=32)
    with pytest.raises(GraphBuildError, match="6x6"):
        gc.models.alexnet(input_size=100)


# ---- numerics -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, size, options", sorted(TORCHVISION_LOGITS),
                         ids=[key[0] for key in sorted(TORCHVISION_LOGITS)])
def test_matches_torchvision_outputs(name, size, options):
    model = get_model(name, num_classes=10, input_size=size, **dict(options))
    shapes = {k: v.shape for k, v in model.parameters().items()}
    model.load_parameters(torch_like_weights(shapes, seed=7))
    x = np.random.default_rng(8).standard_normal((2, 3, size, size)).astype(np.float32)
    y = gc.compile(model, batch_size=2, backend="reference")(x)
    assert_close(y, TORCHVISION_LOGITS[(name, size, options)])


SMALL = [
    ("lenet5", {}, (1, 32)),
    ("resnet18", dict(width=8, input_size=32), (3, 32)),
    ("resnet50", dict(width=4, input_size=32), (3, 32)),
    ("mobilenet_v2", dict(width_mult=0.25, input_size=32), (3, 32)),
    ("mobilenet_v1", dict(width_mult=0.25, input_size=32), (3, 32)),
    ("googlenet", dict(input_size=32), (3, 32)),
    ("densenet121", dict(growth_rate=8, num_init_features=16, input_size=32), (3, 32)),
    ("vgg11_bn", dict(width_mult=1 / 32, hidden=16, input_size=224), (3, 224)),
]


@pytest.mark.parametrize("name, options, image", SMALL, ids=[s[0] for s in SMALL])
def test_small_variants_cpu_matches_reference(name, options, image):
    gc.manual_seed(0)
    model = get_model(name, num_classes=10, **options)
    # Non-trivial batch-norm statistics, so that the inference formula is exercised.
    rng = np.random.default_rng(1)
    params = model.parameters()
    for key, value in params.items():
        is_bn = key.rsplit(".", 1)[0] + ".running_var" in params
        if key.endswith(("running_var", "running_mean", ".weight", ".bias")) and is_bn:
            value[...] = rng.uniform(0.5, 1.5, value.shape) if key.endswith(
                ("running_var", ".weight")) else rng.normal(0.0, 0.1, value.shape)
    channels, size = image
    x = rng.standard_normal((2, channels, size, size)).astype(np.float32)
    expected = gc.compile(model, batch_size=2, backend="reference")(x)
    actual = gc.compile(model, batch_size=2, backend="cpu")(x)
    assert actual.shape == (2, 10)
    assert np.isfinite(expected).all() and np.abs(expected).max() > 0
    assert_close(actual, expected)

"""gc.models.unet: milesial/Pytorch-UNet's parameter names, shapes, order and count; the
output at the input's size (odd sizes pad each up to its skip); cpu == reference; ONNX
export, import and ONNX Runtime with equal outputs (tiny widths)."""
import hashlib

import numpy as np
import pytest

import graphcnn as gc

# sha256 (first 16 hex digits) of milesial/Pytorch-UNet's UNet(n_channels=3, n_classes=2)
# state_dict, one "key:shape" per line in order, num_batches_tracked left out (computed
# with torch 2.13 from that repository's unet_parts.py / unet_model.py).
UNET_KEYS = {False: "58651e615b238080", True: "2256061271858990"}
UNET_COUNTS = {False: 31_037_698, True: 17_263_042}


def keys_digest(model: gc.Model) -> str:
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.parameters().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_full_unet_has_the_torch_names_and_count():
    model = gc.models.unet(input_size=64)
    assert model.num_parameters(trainable_only=True) == UNET_COUNTS[False]
    assert keys_digest(model) == UNET_KEYS[False]
    names = list(model.parameters())
    assert names[:5] == ["inc.double_conv.0.weight", "inc.double_conv.1.weight",
                         "inc.double_conv.1.bias", "inc.double_conv.1.running_mean",
                         "inc.double_conv.1.running_var"]
    for key in ("down1.maxpool_conv.1.double_conv.0.weight", "down4.maxpool_conv.1.double_conv.4.bias",
                "up1.up.weight", "up1.up.bias", "up4.conv.double_conv.3.weight",
                "outc.conv.weight", "outc.conv.bias"):
        assert key in names, key
    assert model.parameters()["up1.up.weight"].shape == (1024, 512, 2, 2)
    assert model.outputs[0].shape == (None, 2, 64, 64)
    assert gc.models.get_model("unet", input_size=32).inputs[0].shape == (None, 3, 32, 32)


def test_bilinear_ups():
    model = gc.models.unet(bilinear=True, input_size=32)
    assert model.num_parameters(trainable_only=True) == UNET_COUNTS[True]
    assert keys_digest(model) == UNET_KEYS[True]


def _tiny(size=(21, 26), classes=3, seed=0, bilinear=False):
    gc.manual_seed(seed)
    model = gc.models.unet(2, classes, base_width=2, bilinear=bilinear, input_size=size)
    rng = np.random.default_rng(seed)
    for key, value in model.parameters().items():   # as after training
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("running_mean") or key.endswith("bias"):
            value[...] = rng.normal(0.0, 0.1, value.shape)
    return model


@pytest.mark.parametrize("bilinear", [False, True])
def test_odd_sizes_give_logits_at_the_input_size_and_cpu_matches_reference(bilinear):
    model = _tiny(bilinear=bilinear)
    assert model.outputs[0].shape == (None, 3, 21, 26)
    x = np.random.default_rng(1).standard_normal((2, 2, 21, 26)).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference")(x)
    got = gc.compile(model, batch_size=2, backend="cpu")(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="base_width must be an int >= 1"):
        gc.models.unet(base_width=0)
    with pytest.raises(ValueError, match="input_size must be at least 16"):
        gc.models.unet(input_size=8)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        gc.models.unet(n_classes=0)


def test_onnx_export_import_and_onnx_runtime(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _tiny(size=(20, 20))
    x = np.random.default_rng(2).standard_normal((2, 2, 20, 20)).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="cpu")(x)
    path = gc.onnx.save(model, tmp_path / "unet.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ran,) = sess.run(None, {sess.get_inputs()[0].name: x})
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(ran, want, rtol=1e-4, atol=1e-4 * scale)
    back = gc.onnx.load(path)
    # every parameter comes back under its name (the transposed convolutions' biases,
    # exported as Reshape + Add, come back folded into constants for now)
    original = model.parameters()
    for name, value in back.parameters().items():
        np.testing.assert_array_equal(value, original[name], err_msg=name)
    assert {n for n in original if not n.endswith(".up.bias")} <= set(back.parameters())
    again = gc.compile(back, batch_size=2, backend="cpu")(x)
    np.testing.assert_allclose(again, want, rtol=1e-4, atol=1e-4 * scale)

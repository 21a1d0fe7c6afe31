"""Every model of the zoo exports (at a small configuration of its own) a file that
onnx.checker.check_model(full_check=True) accepts and ONNX Runtime runs with graphcnn's
outputs. A model added to the zoo without a configuration here fails the first test."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.models import ZOO, get_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SMALL: dict[str, dict[str, Any]] = {
    "alexnet": dict(num_classes=10),   # no width option: the full 57 M weights
    "cnn_regressor": dict(input_size=16, width=4, stages=2),
    "dcgan_discriminator": dict(ndf=4, image_size=16),
    "dcgan_generator": dict(nz=8, ngf=4, image_size=16),
    "densenet121": dict(num_classes=10, growth_rate=4, num_init_features=8, input_size=32),
    "densenet161": dict(num_classes=10, growth_rate=4, num_init_features=8, input_size=32),
    "densenet169": dict(num_classes=10, growth_rate=4, num_init_features=8, input_size=32),
    "densenet201": dict(num_classes=10, growth_rate=4, num_init_features=8, input_size=32),
    "googlenet": dict(num_classes=10, input_size=32),
    "lenet5": {},
    "mobilenet_v1": dict(num_classes=10, width_mult=0.25, input_size=32),
    "mobilenet_v2": dict(num_classes=10, width_mult=0.25, input_size=32),
    "resnet18": dict(num_classes=10, width=8, input_size=32),
    "resnet34": dict(num_classes=10, width=8, input_size=32),
    "resnet50": dict(num_classes=10, width=8, input_size=32),
    "resnet101": dict(num_classes=10, width=4, input_size=32),
    "resnet152": dict(num_classes=10, width=4, input_size=32),
    "unet": dict(n_channels=1, n_classes=2, base_width=4, input_size=32),
    "vgg11": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg11_bn": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg13": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg13_bn": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg16": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg16_bn": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg19": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "vgg19_bn": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "yolo_grid_detector": dict(image_size=32, width=4, grid=4),
}


def test_every_zoo_model_has_a_small_configuration():
    assert sorted(SMALL) == sorted(ZOO)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_model_exports_a_checked_file_onnx_runtime_runs_equally(name, tmp_path):
    gc.manual_seed(0)
    model = get_model(name, **SMALL[name])
    shape = (2, *model.inputs[0].type.shape[1:])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = gc.compile(model, batch_size=2, backend="reference")(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    path = gc.onnx.save(model, tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    assert len(got) == len(expected)
    for have, want in zip(got, expected):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4)

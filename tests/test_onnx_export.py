"""ONNX export: zoo models written by gc.onnx.save pass onnx.checker, run in ONNX Runtime
with graphcnn's outputs (1e-4 relative), and import back (gc.onnx.load) to the same
outputs; every exported op; export errors."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphcnn as gc  # noqa: E402
from graphcnn import nn  # noqa: E402
from graphcnn.dsl import apply  # noqa: E402
from graphcnn.models import get_model  # noqa: E402
from graphcnn.onnx import OnnxExportError  # noqa: E402


def assert_close(actual, expected, rtol=1e-4):
    expected = np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-6)


def ort_run(path_or_bytes, x):
    sess = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def randomize(model, seed=1):
    """Non-trivial weights and batch-norm statistics, as after training."""
    rng = np.random.default_rng(seed)
    params = model.parameters()
    for key, value in params.items():
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("running_mean") or (value.ndim == 1 and key.endswith("bias")):
            value[...] = rng.normal(0.0, 0.1, value.shape)
        elif value.ndim == 1:
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        else:
            value[...] += rng.normal(0.0, 0.01, value.shape)


ZOO = [
    ("lenet5", {}, (1, 32)),
    ("resnet18", dict(width=8, input_size=32), (3, 32)),
    ("mobilenet_v2", dict(width_mult=0.25, input_size=32), (3, 32)),
    ("googlenet", dict(input_size=32), (3, 32)),
    ("densenet121", dict(growth_rate=8, num_init_features=16, input_size=32), (3, 32)),
]


@pytest.mark.parametrize("name, options, image", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_round_trip(name, options, image, tmp_path):
    gc.manual_seed(0)
    model = get_model(name, num_classes=10, **options)
    randomize(model)
    channels, size = image
    x = np.random.default_rng(2).standard_normal((2, channels, size, size)).astype(np.float32)
    expected = gc.compile(model, batch_size=2, backend="cpu")(x)

    path = gc.onnx.save(model, tmp_path / f"{name}.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {i.name for i in proto.graph.initializer} >= set(model.parameters())
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert_close(ort_run(path, x)[0], expected)
    x3 = np.random.default_rng(3).standard_normal((3, channels, size, size)).astype(np.float32)
    assert_close(ort_run(path, x3)[0], gc.compile(model, batch_size=3, backend="reference")(x3))

    back = gc.onnx.load(path)
    assert list(back.parameters()) == list(model.parameters())
    assert back.num_parameters(trainable_only=True) == model.num_parameters(trainable_only=True)
    assert_close(gc.compile(back, batch_size=2, backend="cpu")(x), expected)


def test_fixed_batch_and_opset(tmp_path):
    model = gc.models.lenet5()
    proto = gc.onnx.to_proto(model, batch_size=4, opset=13)
    onnx.checker.check_model(proto)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == \
        [4, 1, 32, 32]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [4, 10]
    assert proto.opset_import[0].version == 13
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    assert_close(ort_run(proto.SerializeToString(), x)[0],
                 gc.compile(model, batch_size=4, backend="reference")(x))


def every_op_model():
    """A model with every op the exporter writes."""
    gc.manual_seed(3)
    x = gc.Input((3, 9, 9), name="image")
    h = nn.Conv2d(3, 4, 3, stride=2, padding=(0, 1, 1, 0), name="conv")(x)
    h = gc.leaky_relu(nn.BatchNorm2d(4, name="bn")(h), 0.2)
    h = gc.pad2d(h, (1, 0, 2, 1), value=0.5)
    a = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)(h)
    b = apply("avg_pool2d", [h], kernel_size=3, stride=2, padding=1, ceil_mode=True,
              count_include_pad=False)
    h = gc.concat([gc.sigmoid(a), gc.tanh(b)], axis=1)
    h = apply("upsample_nearest2d", [h], scale=(2, 3))
    h = apply("conv2d_input_grad", [h, nn.Conv2d(4, 8, 3).param("weight")],
              input_hw=(2 * h.type.shape[2], 2 * h.type.shape[3] - 1), stride=2, padding=1)
    h = gc.clip(h, -1.0, 2.0) - gc.relu6(h) * 0.5
    h = apply("global_avg_pool2d", [h]) / 3.0
    h = apply("transpose", [h], perm=(0, 2, 3, 1))
    h = gc.flatten(h, start_dim=2)
    h = gc.reshape(h, (4,))
    mm = apply("matmul", [h, gc.constant(np.eye(4, 6, dtype=np.float32))])
    h = nn.Linear(6, 5, name="fc")(mm) + gc.constant(np.arange(5, dtype=np.float32))
    return gc.Model(x, [gc.softmax(h), gc.log_softmax(h, axis=-1)], name="every_op")


@pytest.mark.parametrize("batch_size", [None, 1])
def test_every_exported_op(batch_size, tmp_path):
    model = every_op_model()
    randomize(model)
    path = gc.onnx.save(model, tmp_path / "every.onnx", batch_size=batch_size, opset=21)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "ConvTranspose", "BatchNormalization", "LeakyRelu", "Pad", "MaxPool",
            "AveragePool", "Concat", "Sigmoid", "Tanh", "Resize", "Clip", "Sub", "Mul", "Div",
            "GlobalAveragePool", "Transpose", "Reshape", "Gemm", "Add", "Softmax",
            "LogSoftmax"} <= ops
    x = np.random.default_rng(4).standard_normal((1, 3, 9, 9)).astype(np.float32)
    exe = gc.compile(model, batch_size=1, backend="cpu")
    expected = list(exe.run({"image": x}).values())
    got = ort_run(path, x)
    for g, e in zip(got, expected):
        assert_close(g, e)
    back = gc.onnx.load(path)
    again = gc.compile(back, batch_size=1, backend="reference").run({"image": x})
    for g, e in zip(again.values(), expected):
        assert_close(g, e)


def test_slice():
    # a DSL slice takes the whole batch axis at every batch size (graphcnn.mode_rules), so
    # it exports with a dynamic batch
    x = gc.Input((4, 5), name="x")
    model = gc.Model(x, apply("slice", [x], starts=(0, 1, 2), ends=(1, 3, 5)))
    proto = gc.onnx.to_proto(model)
    onnx.checker.check_model(proto)
    x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(ort_run(proto.SerializeToString(), x)[0], x[:, 1:3, 2:5])


def test_export_errors(tmp_path):
    x = gc.Input((3, 4), name="x")
    model = gc.Model(x, apply("sum_to", [x], shape=(1, 3, 1)), name="reducer")
    with pytest.raises(OnnxExportError, match="'reducer'.*sum_to"):
        gc.onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(OnnxExportError, match="opset 12"):
        gc.onnx.save(gc.models.lenet5(), tmp_path / "old.onnx", opset=12)

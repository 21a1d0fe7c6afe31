"""ONNX import of 1-D Conv, ConvTranspose, MaxPool and AveragePool (N, C, L inputs), of
AveragePool with dilations and of ConvTranspose with an output_shape beyond the full
output: each agrees with ONNX Runtime at two batch sizes."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make(op, shape, inits=None, opset=17, **attrs):
    names = ["x"] + list(inits or {})
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)], "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


CASES = {
    "conv1d": lambda: make("Conv", (4, 11), {"w": rand(6, 2, 3), "b": rand(6)}, group=2,
                           pads=[2, 1], strides=[2], dilations=[2]),
    "conv1d_same_upper": lambda: make("Conv", (3, 9), {"w": rand(5, 3, 4)},
                                      auto_pad="SAME_UPPER"),
    "conv_transpose1d": lambda: make("ConvTranspose", (4, 7), {"w": rand(4, 3, 3),
                                                               "b": rand(3)},
                                     strides=[2], pads=[1, 0], output_padding=[1]),
    "conv_transpose1d_output_shape": lambda: make("ConvTranspose", (2, 5),
                                                  {"w": rand(2, 3, 3)}, strides=[2],
                                                  output_shape=[12]),
    "conv_transpose2d_output_shape_beyond_full": lambda: make(
        "ConvTranspose", (1, 3, 3), {"w": rand(1, 2, 3, 3), "b": rand(2)}, strides=[3, 2],
        output_shape=[10, 8]),
    "maxpool1d": lambda: make("MaxPool", (3, 10), kernel_shape=[3], strides=[2], pads=[1, 1],
                              ceil_mode=1),
    "maxpool1d_dilated": lambda: make("MaxPool", (3, 10), kernel_shape=[2], dilations=[3]),
    "avgpool1d_exclude_pad": lambda: make("AveragePool", (3, 10), kernel_shape=[3],
                                          pads=[1, 2], strides=[2]),
    "avgpool1d_include_pad": lambda: make("AveragePool", (3, 10), kernel_shape=[4],
                                          pads=[2, 2], count_include_pad=1),
    "avgpool2d_dilations": lambda: make("AveragePool", (2, 7, 8), kernel_shape=[2, 3], opset=19,
                                        dilations=[2, 2], pads=[1, 0, 1, 2]),
    "avgpool2d_dilations_include_pad": lambda: make("AveragePool", (2, 7, 8),
                                                    kernel_shape=[2, 2], dilations=[3, 2],
                                                    opset=19,
                                                    strides=[2, 1], pads=[1, 1, 1, 1],
                                                    count_include_pad=1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_window_ops(name):
    model = CASES[name]()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    imported = gc.onnx.load(model.SerializeToString())
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    for batch in (1, 3):
        x = rand(batch, *shape)
        want = sess.run(None, {"x": x})[0]
        got = gc.compile(imported, batch_size=batch, backend="cpu")(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv1d_weight_keeps_its_onnx_name_and_layout():
    w = rand(6, 4, 3)
    imported = gc.onnx.load(make("Conv", (4, 11), {"w": w}).SerializeToString())
    np.testing.assert_array_equal(imported.parameters()["w"], w)

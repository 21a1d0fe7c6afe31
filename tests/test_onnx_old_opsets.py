"""Models at the opsets of the ONNX model zoo's CNNs (7 to 10: AlexNet, GoogLeNet, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, DenseNet-121, Inception-v2 were exported from
Caffe2 and early PyTorch at those) import, converted on import by the onnx package's
version converter, and give ONNX Runtime's outputs.

The zoo's own files are not downloaded here: the same architectures are written at those
opsets instead, two ways. graphcnn's own exports of the zoo families, rewritten node by node
to opset 9 (the ops these CNNs use read the same there, except Clip's bounds, attributes
until opset 11, and the pooling's ceil_mode, which came at opset 10); and the Caffe2-era
constructs graphcnn never exports, built with onnx.helper: Sum for the residual add, LRN,
a channel shuffle through a fixed-batch Reshape, SqueezeNet's fire modules, a Softmax head.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.models import get_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def downgrade_to_9(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """An opset-13 export of graphcnn's as the same graph at opset 9."""
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = list(node.input)
        if node.op_type == "Clip":      # bounds: inputs from opset 11, attributes before
            if len(inputs) > 1 and inputs[1]:
                attrs["min"] = float(constants[inputs[1]])
            if len(inputs) > 2 and inputs[2]:
                attrs["max"] = float(constants[inputs[2]])
            inputs = inputs[:1]
        if node.op_type in ("MaxPool", "AveragePool"):
            assert set(attrs.pop("dilations", [1])) == {1}   # no dilations before opset 10
            if attrs.pop("ceil_mode", 0):   # nor ceil_mode: the windows it adds, as padding
                assert node.op_type == "MaxPool"
                attrs["pads"] = _ceil_pads(shapes[node.input[0]][2:], attrs)
        nodes.append(helper.make_node(node.op_type, inputs, list(node.output), name=node.name,
                                      **attrs))
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in graph.initializer if t.name in used]
    new_graph = helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output),
                                  initializers)
    old = helper.make_model(new_graph, opset_imports=[helper.make_opsetid("", 9)],
                            ir_version=4)
    onnx.checker.check_model(old)
    return old


def _ceil_pads(size: list[int], attrs: dict) -> list[int]:
    """Max pooling's pads with ceil_mode's extra windows made padding at the end (the
    windows that start inside the padded input, as ONNX and PyTorch count them)."""
    pads = list(attrs.get("pads", [0] * 4))
    for axis, (n, k, s) in enumerate(zip(size, attrs["kernel_shape"], attrs["strides"])):
        span = n + pads[axis] + pads[axis + 2] - k
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pads[axis]:
            out -= 1
        pads[axis + 2] += (out - 1) * s + k - (n + pads[axis] + pads[axis + 2])
    return pads


def ort_outputs(model: "onnx.ModelProto", x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def assert_imports_like_onnx_runtime(model: "onnx.ModelProto", x: np.ndarray) -> None:
    with pytest.warns(UserWarning, match="opset"):   # it says, in one line, that it converted
        imported = gc.onnx.load(model.SerializeToString())
    got = gc.compile(imported, batch_size=len(x))(x)
    got = got if isinstance(got, tuple) else (got,)
    for have, want in zip(got, ort_outputs(model, x)):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)


ZOO_AT_9 = {
    "alexnet": dict(num_classes=10),
    "googlenet": dict(num_classes=10, input_size=32),
    "resnet50": dict(num_classes=10, width=8, input_size=32),
    "vgg19": dict(num_classes=10, width_mult=1 / 16, hidden=32),
    "densenet121": dict(num_classes=10, growth_rate=4, num_init_features=8, input_size=32),
    "mobilenet_v2": dict(num_classes=10, width_mult=0.25, input_size=32),
}


@pytest.mark.parametrize("name", sorted(ZOO_AT_9))
def test_zoo_families_at_opset_9(name, tmp_path):
    gc.manual_seed(0)
    model = get_model(name, **ZOO_AT_9[name])
    path = gc.onnx.save(model, tmp_path / f"{name}.onnx", opset=13)
    old = downgrade_to_9(onnx.load(path))
    x = np.random.default_rng(0).standard_normal(
        (2, *model.inputs[0].type.shape[1:])).astype(np.float32)
    assert_imports_like_onnx_runtime(old, x)


# ---- Caffe2-era constructs, written at their opsets --------------------------------------

def weight(rng: np.random.Generator, name: str, *shape: int) -> "onnx.TensorProto":
    scale = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                   name)


def conv(nodes: list, inits: list, rng: np.random.Generator, x: str, name: str, c_in: int,
         c_out: int, k: int, relu: bool = True, group: int = 1) -> str:
    inits += [weight(rng, f"{name}_w", c_out, c_in // group, k, k),
              weight(rng, f"{name}_b", c_out)]
    nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_y"],
                                  kernel_shape=[k, k], pads=[k // 2] * 4, group=group))
    if not relu:
        return f"{name}_y"
    nodes.append(helper.make_node("Relu", [f"{name}_y"], [f"{name}_r"]))
    return f"{name}_r"


def head(nodes: list, inits: list, rng: np.random.Generator, x: str, channels: int,
         classes: int, batch: int) -> str:
    """GlobalAveragePool, a fixed-batch Reshape (as the Caffe2 exports have), Gemm, Softmax."""
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    inits.append(numpy_helper.from_array(np.array([batch, channels], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]))
    inits += [weight(rng, "fc_w", classes, channels), weight(rng, "fc_b", classes)]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"]))
    return "prob"


def model_at(opset: int, nodes: list, inits: list, shape: tuple[int, ...], out: str,
             classes: int) -> "onnx.ModelProto":
    graph = helper.make_graph(
        nodes, "old", [helper.make_tensor_value_info("data", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [shape[0], classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=4)
    onnx.checker.check_model(model)
    return model


def caffe2_resnet(batch: int) -> "onnx.ModelProto":
    """A residual stage whose add is Sum (Caffe2's), batch norm in its opset-7 form, at 7."""
    rng = np.random.default_rng(1)
    nodes: list = []
    inits: list = []
    h = conv(nodes, inits, rng, "data", "stem", 3, 8, 3)
    for i in range(2):
        a = conv(nodes, inits, rng, h, f"b{i}a", 8, 8, 3)
        b = conv(nodes, inits, rng, a, f"b{i}b", 8, 8, 3, relu=False)
        inits += [numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), f"s{i}"),
                  numpy_helper.from_array(rng.normal(0, .1, 8).astype(np.float32), f"o{i}"),
                  numpy_helper.from_array(rng.normal(0, .1, 8).astype(np.float32), f"m{i}"),
                  numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), f"v{i}")]
        nodes.append(helper.make_node("BatchNormalization",
                                      [b, f"s{i}", f"o{i}", f"m{i}", f"v{i}"], [f"bn{i}"],
                                      epsilon=1e-5))
        nodes.append(helper.make_node("Sum", [f"bn{i}", h], [f"sum{i}"]))
        nodes.append(helper.make_node("Relu", [f"sum{i}"], [f"res{i}"]))
        h = f"res{i}"
    out = head(nodes, inits, rng, h, 8, 5, batch)
    return model_at(7, nodes, inits, (batch, 3, 16, 16), out, 5)


def inception_with_lrn(batch: int) -> "onnx.ModelProto":
    """GoogLeNet's and ZFNet's stem (Conv, Relu, MaxPool, LRN) and an inception block of
    four branches joined by Concat, Dropout in inference, at opset 8."""
    rng = np.random.default_rng(2)
    nodes: list = []
    inits: list = []
    h = conv(nodes, inits, rng, "data", "stem", 3, 8, 3)
    nodes.append(helper.make_node("MaxPool", [h], ["pool1"], kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("LRN", ["pool1"], ["norm1"], size=5, alpha=1e-4,
                                  beta=0.75, bias=1.0))
    branches = [conv(nodes, inits, rng, "norm1", "i1", 8, 4, 1),
                conv(nodes, inits, rng, conv(nodes, inits, rng, "norm1", "i3r", 8, 4, 1),
                     "i3", 4, 6, 3),
                conv(nodes, inits, rng, conv(nodes, inits, rng, "norm1", "i5r", 8, 2, 1),
                     "i5", 2, 4, 5)]
    nodes.append(helper.make_node("MaxPool", ["norm1"], ["ipool"], kernel_shape=[3, 3],
                                  strides=[1, 1], pads=[1, 1, 1, 1]))
    branches.append(conv(nodes, inits, rng, "ipool", "ip", 8, 2, 1))
    nodes.append(helper.make_node("Concat", branches, ["mixed"], axis=1))
    nodes.append(helper.make_node("Dropout", ["mixed"], ["dropped"], ratio=0.4))
    out = head(nodes, inits, rng, "dropped", 16, 7, batch)
    return model_at(8, nodes, inits, (batch, 3, 16, 16), out, 7)


def shufflenet_unit(batch: int) -> "onnx.ModelProto":
    """ShuffleNet's grouped 1x1 convs and channel shuffle (Reshape to a fixed batch,
    Transpose, Reshape back), a depthwise 3x3, a Sum with the input, at opset 9."""
    rng = np.random.default_rng(3)
    nodes: list = []
    inits: list = []
    h = conv(nodes, inits, rng, "data", "stem", 3, 12, 3)
    a = conv(nodes, inits, rng, h, "g1", 12, 12, 1, group=3)
    inits += [numpy_helper.from_array(np.array([batch, 3, 4, 8, 8], np.int64), "split_g"),
              numpy_helper.from_array(np.array([batch, 12, 8, 8], np.int64), "merge_g")]
    nodes += [helper.make_node("Reshape", [a, "split_g"], ["grouped"]),
              helper.make_node("Transpose", ["grouped"], ["swapped"], perm=[0, 2, 1, 3, 4]),
              helper.make_node("Reshape", ["swapped", "merge_g"], ["shuffled"])]
    d = conv(nodes, inits, rng, "shuffled", "dw", 12, 12, 3, relu=False, group=12)
    b = conv(nodes, inits, rng, d, "g2", 12, 12, 1, relu=False, group=3)
    nodes += [helper.make_node("Sum", [b, h], ["joined"]),
              helper.make_node("Relu", ["joined"], ["unit"])]
    out = head(nodes, inits, rng, "unit", 12, 4, batch)
    return model_at(9, nodes, inits, (batch, 3, 8, 8), out, 4)


def squeezenet_fire(batch: int) -> "onnx.ModelProto":
    """SqueezeNet 1.1's fire modules (squeeze 1x1, expand 1x1 and 3x3, Concat), its
    ceil-less pooling, at opset 7."""
    rng = np.random.default_rng(4)
    nodes: list = []
    inits: list = []
    h = conv(nodes, inits, rng, "data", "stem", 3, 8, 3)
    for i, (c_in, s, e) in enumerate(((8, 4, 6), (12, 4, 8))):
        squeeze = conv(nodes, inits, rng, h, f"f{i}s", c_in, s, 1)
        e1 = conv(nodes, inits, rng, squeeze, f"f{i}e1", s, e, 1)
        e3 = conv(nodes, inits, rng, squeeze, f"f{i}e3", s, e, 3)
        nodes.append(helper.make_node("Concat", [e1, e3], [f"fire{i}"], axis=1))
        h = f"fire{i}"
    nodes.append(helper.make_node("MaxPool", [h], ["pooled3"], kernel_shape=[3, 3],
                                  strides=[2, 2]))
    final = conv(nodes, inits, rng, "pooled3", "final", 16, 6, 1)
    out = head(nodes, inits, rng, final, 6, 6, batch)
    return model_at(7, nodes, inits, (batch, 3, 16, 16), out, 6)


@pytest.mark.parametrize("build", [caffe2_resnet, inception_with_lrn, shufflenet_unit,
                                   squeezenet_fire], ids=lambda f: f.__name__)
def test_caffe2_era_models(build):
    batch = 2
    model = build(batch)
    x = np.random.default_rng(5).standard_normal(
        [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    ).astype(np.float32)
    assert_imports_like_onnx_runtime(model, x)

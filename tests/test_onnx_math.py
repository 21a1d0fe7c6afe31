"""ONNX export and import of the unary math ops, the smooth activations, Pow and the
variadic Sum/Max/Min/Mean: export -> ONNX Runtime, export -> import, and ONNX graphs
built by hand (every operand computed at run time) against ONNX Runtime."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphcnn as gc  # noqa: E402
from graphcnn import nn  # noqa: E402
from graphcnn.onnx import OnnxExportError  # noqa: E402


def ort_run(model_bytes, x):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def activation_model():
    gc.manual_seed(5)
    x = gc.Input((2, 6, 6), name="image")
    h = nn.Conv2d(2, 4, 3, padding=1)(x)
    a = nn.ELU(0.5)(h) + nn.SELU()(h) + nn.GELU()(h) + nn.GELU("tanh")(h)
    b = nn.Mish()(h) * nn.Softplus()(h) - nn.Softplus(beta=2.0)(h) + nn.Softsign()(h)
    c = gc.maximum(gc.exp(gc.neg(gc.abs(h))), gc.erf(h)) + gc.minimum(h, gc.sqrt(gc.abs(h)))
    d = gc.log(gc.abs(h) + 1.0) * gc.reciprocal(h * h + 1.0) + gc.pow(gc.abs(h), 1.5)
    return gc.Model(x, [a, b, c + d], name="activations")


@pytest.mark.parametrize("opset", [17, 21])
def test_export_runs_in_onnxruntime_and_imports_back(opset):
    model = activation_model()
    proto = gc.onnx.to_proto(model, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Elu", "Selu", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Erf", "Max", "Min",
            "Sqrt", "Log", "Reciprocal", "Pow"} <= ops
    if opset == 21:
        assert {"Gelu", "Mish"} <= ops
    else:   # written as the ops they are made of
        assert not {"Gelu", "Mish"} & ops and "Tanh" in ops
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    want = list(gc.compile(model, batch_size=3).run({"image": x}).values())
    got = ort_run(proto.SerializeToString(), x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    back = gc.onnx.load(proto.SerializeToString())
    again = gc.compile(back, batch_size=3).run({"image": x})
    for g, w in zip(again.values(), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_softplus_with_a_low_threshold_has_no_onnx_form():
    x = gc.Input((3,), name="x")
    model = gc.Model(x, nn.Softplus(threshold=5.0)(x))
    with pytest.raises(OnnxExportError, match="softplus with threshold=5.0 has no ONNX form"):
        gc.onnx.to_proto(model)


def hand_model(opset=18):
    """Runtime operands only (the variadic ops over values computed from the input), and
    initializers that broadcast along the channels."""
    from onnx import TensorProto, helper, numpy_helper
    make = helper.make_node
    nodes = [
        make("Abs", ["x"], ["ax"]), make("Exp", ["x"], ["ex"]), make("Neg", ["x"], ["nx"]),
        make("Sqrt", ["ax"], ["sx"]),
        make("Sum", ["x", "ex", "ax", "w"], ["sum"]),
        make("Max", ["x", "nx", "sx"], ["max"]),
        make("Min", ["nx", "w", "sx"], ["min"]),
        make("Mean", ["x", "ax", "ex"], ["mean"]),
        make("Mean", ["sum"], ["mean1"]),
        make("Pow", ["ax", "p"], ["pow"]),
        make("Pow", ["sx", "two"], ["pow2"]),
        make("Selu", ["x"], ["selu"]),
        make("Elu", ["x"], ["elu"], alpha=0.3),
        make("Gelu", ["x"], ["gelu"], approximate="tanh") if opset >= 20 else
        make("Softsign", ["x"], ["gelu"]),
        make("Softplus", ["x"], ["softplus"]),
        make("Mish", ["x"], ["mish"]),
        make("Reciprocal", ["ex"], ["rec"]), make("Log", ["ex"], ["log"]),
        make("Erf", ["x"], ["erf"]),
    ]
    outs = ["sum", "max", "min", "mean", "mean1", "pow", "pow2", "selu", "elu", "gelu",
            "softplus", "mish", "rec", "log", "erf"]
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 3, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 2.0, (3, 1, 1)).astype(np.float32), "p"),
             numpy_helper.from_array(np.asarray(2, np.int64), "two")]
    graph = helper.make_graph(
        nodes, "math", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


@pytest.mark.parametrize("opset", [18, 20])
def test_import_matches_onnxruntime(opset):
    data = hand_model(opset)
    model = gc.onnx.load(data)
    ops = [n.op for n in model.graph(2, training=False).nodes]
    assert ops.count("pow") == 1   # Pow(x, 2) imports as x * x
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x[0, 0, 0, :2] = [np.nan, -np.inf]
    got = list(gc.compile(model, batch_size=2).run({"x": x}).values())
    want = ort_run(data, x)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, equal_nan=True,
                                   err_msg=f"output {k}")

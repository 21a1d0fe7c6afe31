"""ONNX import of old opsets (7-10, converted to 11 on import) and of fixed-batch graphs
(read as they are, every axis a plain axis, where the batch-generic reading fails): each
model agrees with ONNX Runtime."""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn.onnx import OnnxImportError  # noqa: E402

RNG = np.random.default_rng(1)
FLOAT = TensorProto.FLOAT


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make(nodes, inputs, inits=None, opset=17, outputs=("y",)):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def check(model, feeds, rtol=1e-4):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    imported = gc.onnx.load(model.SerializeToString())
    batch = next(iter(feeds.values())).shape[0]
    got = gc.compile(imported, batch_size=batch, backend="cpu").run(feeds)
    for have, expected in zip(got.values(), want):
        assert have.shape == expected.shape
        np.testing.assert_allclose(have, expected, rtol=rtol, atol=rtol)
    return imported


# ---- old opsets ----------------------------------------------------------------------------

def opset9_cnn():
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Upsample -> Flatten -> Gemm, as an
    exporter of opset 9 writes it (Upsample with a scales input, BN with spatial)."""
    nodes = [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5),
             node("Relu", ["n"], ["r"]),
             node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Upsample", ["p", "scales"], ["u"], mode="nearest"),
             node("Flatten", ["u"], ["f"]),
             node("Gemm", ["f", "gw", "gb"], ["y"], transB=1)]
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4), "s": rand(4), "bb": rand(4), "m": rand(4),
             "v": np.abs(rand(4)) + 0.5, "scales": np.array([1, 1, 2, 2], np.float32),
             "gw": rand(5, 4 * 6 * 6), "gb": rand(5)}
    return make(nodes, {"x": ("N", 3, 6, 6)}, inits, opset=9)


def test_opset9_model_is_converted_and_matches_onnxruntime():
    model = opset9_cnn()
    with pytest.warns(UserWarning, match="converted from opset 9 to opset 11"):
        imported = check(model, {"x": rand(2, 3, 6, 6)})
    assert imported.onnx_opset == 11
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(model, {"x": rand(3, 3, 6, 6)})   # still batch-generic


def test_opset7_model_is_converted():
    model = make([node("Add", ["x", "c"]), ], {"x": ("N", 3)}, {"c": rand(3)}, opset=7)
    with pytest.warns(UserWarning, match="opset 7"):
        check(model, {"x": rand(4, 3)})


def test_opset8_upsample_with_scales_attribute_is_converted():
    nodes = [node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Upsample", ["p"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 3.0])]
    model = make(nodes, {"x": ("N", 2, 4, 4)}, opset=8)
    with pytest.warns(UserWarning, match="opset 8"):
        check(model, {"x": rand(2, 2, 4, 4)})


# ---- fixed-batch graphs ------------------------------------------------------------------------

def test_operand_sized_by_the_fixed_batch():
    model = make([node("Mul", ["x", "c"], ["m"]), node("Sub", ["m", "d"], ["y"])],
                 {"x": (2, 3, 4)}, {"c": rand(2, 3, 4), "d": rand(2, 1, 1)})
    imported = check(model, {"x": rand(2, 3, 4)})
    assert imported.fixed_batch == 2
    with pytest.raises(ValueError, match="fixed batch size 2.*batch_size=2"):
        gc.compile(imported, batch_size=3)


def test_concat_and_slice_and_split_of_axis_0():
    nodes = [node("Concat", ["x", "c"], ["cat"], axis=0),
             node("Slice", ["cat", "st", "en", "ax"], ["sl"]),
             node("Split", ["sl"], ["y", "z"], axis=0, split=[1, 2])]
    inits = {"c": rand(2, 3), "st": np.array([1], np.int64), "en": np.array([4], np.int64),
             "ax": np.array([0], np.int64)}
    model = make(nodes, {"x": (3, 3)}, inits, opset=11, outputs=("y", "z"))
    check(model, {"x": rand(3, 3)})


def test_gemm_trans_a_and_matmul_of_two_tensors():
    nodes = [node("Gemm", ["x", "w", "b"], ["g"], transA=1, alpha=0.5),
             node("Transpose", ["g"], ["t"]),
             node("MatMul", ["g", "t"], ["y"])]
    model = make(nodes, {"x": (4, 3)}, {"w": rand(4, 5), "b": rand(5)})
    check(model, {"x": rand(4, 3)})


def test_fixed_batch_cnn_still_runs_at_any_batch():
    # the batch-generic reading works: no fixed_batch, compiles at other sizes
    model = make([node("Relu", ["x"])], {"x": (1, 3, 4, 4)})
    imported = check(model, {"x": rand(1, 3, 4, 4)})
    assert imported.fixed_batch is None
    assert gc.compile(imported, batch_size=3)(rand(3, 3, 4, 4)).shape == (3, 3, 4, 4)


def test_dynamic_batch_graph_is_not_read_as_fixed():
    model = make([node("Add", ["x", "c"])], {"x": ("N", 3)}, {"c": rand(2, 3)})
    with pytest.raises(OnnxImportError, match="broadcast along the batch axis"):
        gc.onnx.load(model.SerializeToString())


def test_fixed_batch_model_exports_at_its_batch(tmp_path):
    model = make([node("Concat", ["x", "c"], ["y"], axis=0)], {"x": (2, 3)}, {"c": rand(1, 3)})
    imported = gc.onnx.load(model.SerializeToString())
    path = gc.onnx.save(imported, tmp_path / "again.onnx")
    x = rand(2, 3)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    dims = [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3]
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0],
                               gc.compile(imported, batch_size=2)(x))

"""ONNX import of reductions over any axes, Gather with constant indices and strided Slice
on tensors, Softmax on any axis, PRelu on 3-D inputs and MatMul beyond a 2-D weight:
each model agrees with ONNX Runtime, at two batch sizes where the batch is dynamic."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn.onnx import OnnxImportError  # noqa: E402

RNG = np.random.default_rng(2)
FLOAT = TensorProto.FLOAT


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make(nodes, inputs, inits=None, opset=17):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def node(op, inputs, **attrs):
    return helper.make_node(op, list(inputs), ["y"], **attrs)


def i64(values):
    return np.asarray(values, np.int64)


def check(model, shape, batches=(2, 3)):
    """Compare with ONNX Runtime at each batch size (the file's own batch where fixed)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    imported = gc.onnx.load(model.SerializeToString())
    for batch in batches:
        x = rand(batch, *shape)
        want = sess.run(None, {"x": x})[0]
        got = gc.compile(imported, batch_size=batch, backend="cpu")(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return imported


SHAPE = (3, 4, 5)
REDUCE_CASES = {
    "sum_axis1_opset11": lambda: make([node("ReduceSum", ["x"], axes=[1])],
                                      {"x": ("N",) + SHAPE}, opset=11),
    "sum_axes_input_no_keepdims": lambda: make(
        [node("ReduceSum", ["x", "a"], keepdims=0)], {"x": ("N",) + SHAPE},
        {"a": i64([1, -1])}, opset=13),
    "sum_noop_empty_axes": lambda: make([node("ReduceSum", ["x"], noop_with_empty_axes=1)],
                                        {"x": ("N",) + SHAPE}, opset=13),
    "mean_axes_1_3": lambda: make([node("ReduceMean", ["x"], axes=[1, 3], keepdims=0)],
                                  {"x": ("N",) + SHAPE}, opset=13),
    "mean_spatial": lambda: make([node("ReduceMean", ["x", "a"])], {"x": ("N",) + SHAPE},
                                 {"a": i64([2, 3])}, opset=18),
    "max_axis2": lambda: make([node("ReduceMax", ["x"], axes=[2])], {"x": ("N",) + SHAPE},
                              opset=13),
    "max_axes_input_no_keepdims": lambda: make(
        [node("ReduceMax", ["x", "a"], keepdims=0)], {"x": ("N",) + SHAPE},
        {"a": i64([3, 1])}, opset=18),
    "min_axis_minus1": lambda: make([node("ReduceMin", ["x"], axes=[-1])],
                                    {"x": ("N",) + SHAPE}, opset=13),
    # a fixed-batch file reducing over every axis, the batch included
    "sum_all_fixed_batch": lambda: make([node("ReduceSum", ["x"], keepdims=0)],
                                        {"x": (2,) + SHAPE}, opset=13),
    "max_axis0_fixed_batch": lambda: make([node("ReduceMax", ["x"], axes=[0])],
                                          {"x": (2,) + SHAPE}, opset=13),
}


@pytest.mark.parametrize("name", sorted(REDUCE_CASES))
def test_reductions(name):
    model = REDUCE_CASES[name]()
    fixed = "fixed" in name
    check(model, SHAPE, batches=(2,) if fixed else (2, 3))


def test_reduction_over_the_dynamic_batch_is_refused():
    model = make([node("ReduceMax", ["x"], axes=[0])], {"x": ("N", 3)}, opset=13)
    with pytest.raises(OnnxImportError, match="reduces the batch axis 0"):
        gc.onnx.load(model.SerializeToString())


def test_reduce_max_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    w = rand(3, 4)
    model = make([helper.make_node("Mul", ["x", "w"], ["m"]),
                  node("ReduceMax", ["m"], axes=[2])], {"x": ("N", 3, 4)}, {"w": w}, opset=13)
    imported = gc.onnx.load(model.SerializeToString())
    x, t = rand(2, 3, 4), rand(2, 3, 1)
    step = gc.value_and_grad(imported, loss="mse", batch_size=2, backend="cpu")
    loss, grads = step(x, t)
    tw = torch.tensor(w, requires_grad=True)
    want = torch.nn.functional.mse_loss((torch.tensor(x) * tw).amax(dim=2, keepdim=True),
                                        torch.tensor(t))
    want.backward()
    np.testing.assert_allclose(float(loss), want.item(), rtol=1e-5)
    np.testing.assert_allclose(grads["w"], tw.grad.numpy(), rtol=1e-4, atol=1e-6)


GATHER_SLICE_CASES = {
    "gather_scalar_index": lambda: make([node("Gather", ["x", "i"], axis=1)],
                                        {"x": ("N",) + SHAPE}, {"i": np.asarray(2)}),
    "gather_2d_negative_indices": lambda: make(
        [node("Gather", ["x", "i"], axis=-1)], {"x": ("N",) + SHAPE},
        {"i": i64([[0, -1, 4], [1, 2, 3]])}),
    "gather_axis0_fixed_batch": lambda: make([node("Gather", ["x", "i"], axis=0)],
                                             {"x": (2,) + SHAPE}, {"i": i64([1, 0, 1])}),
    "slice_negative_steps": lambda: make(
        [node("Slice", ["x", "s", "e", "a", "t"])], {"x": ("N",) + SHAPE},
        {"s": i64([-1, 1]), "e": i64([-100, 5]), "a": i64([1, 3]), "t": i64([-1, 2])}),
    "slice_step3_with_unit_axis": lambda: make(
        [node("Slice", ["x", "s", "e", "a", "t"])], {"x": ("N",) + SHAPE},
        {"s": i64([0, 1]), "e": i64([100, 4]), "a": i64([3, 2]), "t": i64([3, 1])}),
    "softmax_axis1_opset13": lambda: make([node("Softmax", ["x"], axis=1)],
                                          {"x": ("N",) + SHAPE}, opset=13),
    "logsoftmax_axis0_fixed_batch": lambda: make([node("LogSoftmax", ["x"], axis=0)],
                                                 {"x": (2,) + SHAPE}, opset=13),
    "prelu_3d_per_channel": lambda: make([node("PRelu", ["x", "s"])], {"x": ("N", 3, 5)},
                                         {"s": rand(3, 1)}),
}


@pytest.mark.parametrize("name", sorted(GATHER_SLICE_CASES))
def test_gather_slice_softmax_prelu(name):
    model = GATHER_SLICE_CASES[name]()
    shape = (3, 5) if "prelu" in name else SHAPE
    check(model, shape, batches=(2,) if "fixed" in name else (2, 3))


def test_gather_of_the_dynamic_batch_is_refused():
    model = make([node("Gather", ["x", "i"], axis=0)], {"x": ("N", 3)}, {"i": i64([0])})
    with pytest.raises(OnnxImportError, match="batch axis 0"):
        gc.onnx.load(model.SerializeToString())


def test_clip_with_min_above_max_gives_max():
    model = make([node("Clip", ["x", "lo", "hi"])], {"x": ("N", 4)},
                 {"lo": np.float32(2.0), "hi": np.float32(1.0)}, opset=13)
    check(model, (4,))   # every output 1.0, as ONNX Runtime gives


def two_input_model(op, a_shape, b_shape):
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "b"], ["y"])], "test",
        [helper.make_tensor_value_info("x", FLOAT, list(a_shape)),
         helper.make_tensor_value_info("b", FLOAT, list(b_shape))],
        [helper.make_tensor_value_info("y", FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("a_shape, b_shape", [
    ((2, 1, 3, 4), (2, 4, 5)),    # broadcast stacks of matrices, both computed at run time
    ((4, 4), (4,)),               # matrix @ vector
    ((3,), (3, 3, 5)),            # vector @ stack
])
def test_matmul_of_two_fixed_batch_tensors(a_shape, b_shape):
    # (the inputs of a graphcnn model share the batch: their leading sizes agree)
    model = two_input_model("MatMul", a_shape, b_shape)
    feeds = {"x": rand(*a_shape), "b": rand(*b_shape)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0]
    imported = gc.onnx.load(model.SerializeToString())
    got = gc.compile(imported, batch_size=a_shape[0], backend="cpu").run(feeds)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_matmul_by_a_weight_vector_keeps_the_dynamic_batch():
    model = make([node("MatMul", ["x", "v"])], {"x": ("N", 3, 4)}, {"v": rand(4)}, opset=13)
    check(model, (3, 4))

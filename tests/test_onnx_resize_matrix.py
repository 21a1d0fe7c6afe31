"""ONNX Resize beyond what PyTorch's kernels compute (cubic, antialias, half_pixel_symmetric,
tf_crop_and_resize with its extrapolation value, nearest at any scale, keep_aspect_ratio_
policy), imported as two matrix products: each agrees with ONNX Runtime at two batch
sizes, and the gradient reaches the input."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn.onnx.resize_matrix import AxisResize, axis_matrix  # noqa: E402

RNG = np.random.default_rng(5)


def resize_model(scales=None, sizes=None, roi=None, shape=(2, 5, 6), **attrs):
    inits = [numpy_helper.from_array(np.asarray(roi if roi is not None else [], np.float32),
                                     "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.asarray(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
        inputs += ["", "sizes"]
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **attrs)], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


CASES = {
    "cubic_up": dict(scales=[1, 1, 1.6, 2.0], mode="cubic"),
    "cubic_down_exclude_outside": dict(scales=[1, 1, 0.6, 0.5], mode="cubic",
                                       cubic_coeff_a=-0.5, exclude_outside=1),
    "cubic_align_corners_sizes": dict(sizes=[7, 4], axes=[2, 3], mode="cubic",
                                      coordinate_transformation_mode="align_corners"),
    "linear_antialias_down": dict(scales=[1, 1, 0.6, 0.5], mode="linear", antialias=1),
    "cubic_antialias_down": dict(sizes=[3, 4], axes=[2, 3], mode="cubic",
                                 antialias=1),
    "linear_half_pixel_symmetric": dict(scales=[1, 1, 1.7, 0.8], mode="linear",
                                        coordinate_transformation_mode="half_pixel_symmetric"),
    "linear_asymmetric": dict(scales=[1, 1, 1.5, 1.25], mode="linear",
                              coordinate_transformation_mode="asymmetric"),
    "tf_crop_and_resize_extrapolate": dict(
        sizes=[4, 5], axes=[2, 3], roi=[0.1, -0.2, 0.8, 1.3], mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0),
    "nearest_ceil_fractional": dict(scales=[1, 1, 1.5, 0.7], mode="nearest",
                                    nearest_mode="ceil"),
    "nearest_round_prefer_ceil_sizes": dict(sizes=[8, 9], axes=[2, 3], mode="nearest",
                                            nearest_mode="round_prefer_ceil"),
    "nearest_not_larger": dict(sizes=[7, 8], axes=[2, 3], mode="nearest",
                               keep_aspect_ratio_policy="not_larger"),
    "linear_not_smaller": dict(sizes=[3, 3], axes=[2, 3], mode="linear",
                               keep_aspect_ratio_policy="not_smaller"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_resize_matches_onnxruntime(name):
    model = resize_model(**CASES[name])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    imported = gc.onnx.load(model.SerializeToString())
    for batch in (1, 3):
        x = RNG.standard_normal((batch, 2, 5, 6)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = gc.compile(imported, batch_size=batch, backend="cpu")(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_linear_matrix_rows_sum_to_one_and_nearest_is_a_selection():
    linear, _ = axis_matrix(AxisResize(5, 3, 0.6, "linear", "half_pixel", antialias=True))
    np.testing.assert_allclose(linear.sum(axis=1), 1.0)
    nearest, _ = axis_matrix(AxisResize(4, 6, 1.5, "nearest", "asymmetric",
                                         nearest_mode="floor"))
    assert set(np.unique(nearest)) == {0.0, 1.0}
    np.testing.assert_array_equal(nearest.argmax(axis=1), [0, 0, 1, 2, 2, 3])


def test_resize_by_matrices_has_the_gradient_of_its_linear_map():
    # y = Resize(x * w): the gradient of the MSE in w against central differences
    model = resize_model(**CASES["cubic_up"])
    graph = model.graph
    graph.node[0].input[0] = "xw"
    graph.node.insert(0, helper.make_node("Mul", ["x", "w"], ["xw"]))
    w = RNG.standard_normal((2, 5, 6)).astype(np.float32)
    graph.initializer.append(numpy_helper.from_array(w, "w"))
    imported = gc.onnx.load(model.SerializeToString())
    x = RNG.standard_normal((2, 2, 5, 6)).astype(np.float32)
    target = RNG.standard_normal((2, 2, 8, 12)).astype(np.float32)
    loss, grads = gc.value_and_grad(imported, loss="mse", batch_size=2, backend="cpu")(x, target)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def mse(weights):
        proto = onnx.load_from_string(model.SerializeToString())
        proto.graph.initializer[-1].CopyFrom(numpy_helper.from_array(weights, "w"))
        s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return float(np.mean((s.run(None, {"x": x})[0].astype(np.float64) - target) ** 2))

    assert abs(float(loss) - float(np.mean((sess.run(None, {"x": x})[0] - target) ** 2))) < 1e-4
    for index in [(0, 0, 0), (1, 2, 3), (0, 4, 5)]:
        step = np.zeros_like(w)
        step[index] = 1e-2
        numeric = (mse(w + step) - mse(w - step)) / 2e-2
        np.testing.assert_allclose(grads["w"][index], numeric, rtol=2e-2, atol=1e-4)

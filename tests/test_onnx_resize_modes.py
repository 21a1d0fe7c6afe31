"""ONNX Resize in every mode (graphcnn/onnx/resize_matrix.py): every Resize case of
ONNX's conformance suite passes; a seeded grid of random configurations (mode, coordinate
transformation, nearest rounding, cubic coefficient, exclude_outside, antialias,
tf_crop_and_resize with extrapolation, scales, sizes, axes, keep_aspect_ratio_policy)
matches onnx's reference implementation, and ONNX Runtime where it computes what the
operator's definition says; gradients of the matrix path match finite differences."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphcnn as gc  # noqa: E402
from graphcnn.autodiff import grad  # noqa: E402
from graphcnn.onnx.conformance import collect_cases, run_case  # noqa: E402
from graphcnn.runtime.executable import make_runner  # noqa: E402

CASES = {c.name: c for c in collect_cases(["Resize"])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_resize_conformance_case_passes(name):
    result = run_case(CASES[name])
    assert result.outcome == "passed", result.message


def resize_model(shape: tuple[int, ...], attrs: dict[str, Any], *, scales=None, sizes=None,
                 roi=None, axes=None, opset: int = 19) -> Any:
    from onnx import TensorProto, helper, numpy_helper
    inits, inputs = [], ["x", ""]
    if roi is not None:
        inits.append(numpy_helper.from_array(np.float32(roi), "roi"))
        inputs[1] = "roi"
    if scales is not None:
        inits.append(numpy_helper.from_array(np.float32(scales), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.int64(sizes), "sizes"))
        inputs += ["", "sizes"]
    if axes is not None:
        attrs = dict(attrs, axes=list(axes))
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 9
    return proto


def reference(proto: Any, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceEvaluator(proto).run(None, {"x": x})[0]


def onnx_runtime(proto: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def ours(proto: Any, x: np.ndarray, backend: str = "cpu") -> np.ndarray:
    model = gc.onnx.load(proto.SerializeToString())
    return np.asarray(gc.compile(model, batch_size=x.shape[0], backend=backend)(x))


COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
          "asymmetric", "tf_crop_and_resize")


def random_configuration(seed: int) -> tuple[tuple[int, ...], dict[str, Any], dict[str, Any]]:
    """A shape, the node's attributes and its inputs (scales or sizes, roi, axes)."""
    rng = np.random.default_rng(seed)
    mode = str(rng.choice(["nearest", "linear", "cubic"]))
    coord = str(rng.choice(COORDS))
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = str(rng.choice(["round_prefer_floor", "round_prefer_ceil",
                                                "floor", "ceil"]))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = float(rng.choice([-0.75, -0.5]))
    if mode != "nearest" and rng.random() < 0.4:
        attrs["antialias"] = 1
    if rng.random() < 0.3:
        attrs["exclude_outside"] = 1
    h, w = (int(v) for v in rng.integers(1, 6, 2))
    shape = (2, 3, h, w)
    use_scales = coord != "tf_crop_and_resize" and rng.random() < 0.5
    inputs: dict[str, Any] = {}
    if not use_scales and mode == "nearest" and rng.random() < 0.5:
        attrs["keep_aspect_ratio_policy"] = str(rng.choice(["not_larger", "not_smaller"]))
    if "keep_aspect_ratio_policy" in attrs or rng.random() < 0.5:
        inputs["axes"] = (2, 3) if rng.random() < 0.5 else (3, 2)
    axes = inputs.get("axes", (0, 1, 2, 3))
    spatial = [a for a in axes if a >= 2]
    lead = [1.0] * (len(axes) - 2)
    if coord == "tf_crop_and_resize":
        start = rng.uniform(-0.3, 0.5, 2)
        roi = {2: (start[0], start[0] + rng.uniform(0.2, 1.0)),
               3: (start[1], start[1] + rng.uniform(0.2, 1.0))}
        inputs["roi"] = ([0.0] * len(lead) + [roi[a][0] for a in spatial]
                         + [1.0] * len(lead) + [roi[a][1] for a in spatial])
        attrs["extrapolation_value"] = float(rng.choice([0.0, 2.5]))
    if use_scales:
        # scales whose output is at least 1 pixel
        scale = {a: max(float(np.round(rng.uniform(0.3, 3.0), 2)), 1.0 / shape[a] + 0.01)
                 for a in (2, 3)}
        inputs["scales"] = lead + [scale[a] for a in spatial]
    else:
        size = {a: int(rng.integers(1, 9)) for a in (2, 3)}
        if "keep_aspect_ratio_policy" in attrs:   # the common scale keeps >= 1 pixel
            size = {a: max(v, (shape[a] + 1) // 2) for a, v in size.items()}
        inputs["sizes"] = ([2, 3] if len(axes) == 4 else []) + [size[a] for a in spatial]
    return shape, attrs, inputs


def close(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-5, atol=2e-5))


@pytest.mark.parametrize("seed", range(64))
def test_random_configuration_matches_onnx(seed):
    shape, attrs, inputs = random_configuration(seed)
    proto = resize_model(shape, attrs, **inputs)
    x = np.random.default_rng(100 + seed).standard_normal(shape).astype(np.float32)
    got = ours(proto, x, backend="cpu" if seed % 2 else "reference")
    if not close(got, reference(proto, x)):
        # where onnx's reference is not the definition, ONNX Runtime must agree: its
        # window moves by a pixel when x + pad rounds away a tiny fraction, and to a
        # resized length of 1 pytorch_half_pixel reads -0.5 there (the definition: 0)
        want = onnx_runtime(proto, x)
        assert close(got, want), (attrs, inputs, np.abs(got - want).max())


# configurations where ONNX Runtime computes the definition (it differs from onnx's
# reference for align_corners with a fractional scale * in, for antialias with scales, and
# for most tf_crop_and_resize regions; the conformance cases follow the reference)
ORT_CASES = [
    ({"mode": "linear"}, {"scales": [1, 1, 2.14, 1.09]}),   # 5 * 1.09 -> 5 still moves W
    ({"mode": "cubic"}, {"sizes": [3, 3, 7, 3]}),
    ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric"},
     {"scales": [1, 1, 2.0, 0.5]}),
    ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, {"sizes": [3, 3, 3, 8]}),
    ({"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"sizes": [3, 3, 1, 6]}),
    ({"mode": "linear", "antialias": 1}, {"sizes": [3, 3, 2, 3]}),
    ({"mode": "cubic", "antialias": 1}, {"sizes": [3, 3, 3, 2]}),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
     {"scales": [1, 1, 1.7, 0.6]}),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "round_prefer_ceil"}, {"sizes": [3, 3, 7, 9]}),
    ({"mode": "nearest", "nearest_mode": "ceil"}, {"sizes": [3, 3, 3, 2]}),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners",
      "nearest_mode": "floor"}, {"sizes": [3, 3, 6, 7]}),
    ({"mode": "nearest", "keep_aspect_ratio_policy": "not_smaller"},
     {"sizes": [5, 4], "axes": [3, 2]}),
]


@pytest.mark.parametrize("attrs, inputs", ORT_CASES, ids=lambda v: str(v)[:40])
def test_matches_onnx_runtime_at_batch_3(attrs, inputs):
    shape = (3, 3, 4, 5)
    proto = resize_model(shape, attrs, **inputs)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(ours(proto, x), onnx_runtime(proto, x), rtol=1e-5, atol=2e-5)


def _ops(proto: Any) -> set[str]:
    return {t.op for t in gc.onnx.load(proto.SerializeToString()).tensors}


def test_modes_pytorch_computes_keep_their_fast_ops():
    shape = (1, 2, 3, 4)
    assert "upsample_nearest2d" in _ops(resize_model(shape, {"mode": "nearest"},
                                                     scales=[1, 1, 2, 3]))
    linear = _ops(resize_model(shape, {"mode": "linear"}, sizes=[1, 2, 5, 7]))
    assert "resize2d" in linear and "conv2d" not in linear
    cubic = _ops(resize_model(shape, {"mode": "cubic"}, sizes=[1, 2, 5, 7]))
    assert "conv2d" in cubic and "resize2d" not in cubic


@pytest.mark.parametrize("attrs, inputs", [
    ({"mode": "cubic", "antialias": 1}, {"sizes": [3, 3, 2, 5]}),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
      "extrapolation_value": 1.5}, {"sizes": [2, 3, 3, 4], "roi": [0, 0, -0.2, 0.1, 1, 1, 0.8, 1.3]}),
])
def test_matrix_path_gradients_match_finite_differences(attrs, inputs):
    shape = (2, 3, 4, 3)
    model = gc.onnx.load(resize_model(shape, attrs, **inputs).SerializeToString())
    g = model.graph(batch_size=2, dtype="float64")
    (x_in,) = g.inputs
    (out,) = g.outputs
    rng = np.random.default_rng(3)
    c = g.constant(rng.standard_normal(out.shape))
    loss = g.add("sum_to", [g.add("mul", [out, c])], shape=())
    (dx,) = grad(g, loss, [x_in])
    g.set_outputs([loss, dx])
    runner = make_runner(g, "reference")
    x = rng.standard_normal(shape)
    loss0, analytic = runner.run({x_in.id: x})
    direction = rng.standard_normal(shape)
    eps = 1e-6
    plus = runner.run({x_in.id: x + eps * direction})[0]
    minus = runner.run({x_in.id: x - eps * direction})[0]
    numeric = (float(plus) - float(minus)) / (2 * eps)
    predicted = float(np.sum(analytic * direction))
    assert abs(numeric - predicted) <= 1e-7 + 1e-5 * abs(numeric)


def test_matrix_path_compiles_for_any_batch_size():
    proto = resize_model(("N", 3, 4, 5), {"mode": "cubic", "extrapolation_value": 3.0,
                                          "coordinate_transformation_mode": "tf_crop_and_resize"},
                         sizes=[6, 7], roi=[-0.2, 0.1, 0.9, 1.2], axes=[2, 3])
    exe = gc.compile(gc.onnx.load(proto.SerializeToString()), batch_size=None)
    for batch in (1, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4, 5)).astype(np.float32)
        np.testing.assert_allclose(exe(x), reference(proto, x), rtol=1e-5, atol=2e-5)


def test_refusals_are_one_line():
    shape = (1, 2, 3, 4)
    cases = [({"mode": "cubic"}, {"scales": [1, 2, 2, 2]}, "N or C"),
             ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
              {"sizes": [1, 2, 5, 5]}, "roi"),
             ({"mode": "nearest", "nearest_mode": "sideways"}, {"scales": [1, 1, 2, 2]},
              "nearest_mode 'sideways'"),
             ({"mode": "nearest", "keep_aspect_ratio_policy": "bigger"},
              {"sizes": [5, 5], "axes": [2, 3]}, "keep_aspect_ratio_policy 'bigger'")]
    for attrs, inputs, words in cases:
        with pytest.raises(gc.onnx.OnnxImportError, match=words) as info:
            gc.onnx.load(resize_model(shape, attrs, **inputs).SerializeToString())
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("policy, sizes, axes", [("stretch", [7, 6], [2, 3]),
                                                 ("not_larger", [9, 6], [3, 2])])
def test_nearest_exclude_outside_reads_nothing_beyond_the_edge(policy, sizes, axes):
    # half_pixel + ceil upsampling rounds the last output's coordinate up to index `in`:
    # with exclude_outside its weight is 0 and the output 0, where PyTorch's kernel clamps
    attrs = {"mode": "nearest", "nearest_mode": "ceil", "exclude_outside": 1,
             "keep_aspect_ratio_policy": policy}
    proto = resize_model((2, 3, 4, 5), attrs, sizes=sizes, axes=axes)
    x = np.random.default_rng(11).standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = reference(proto, x)
    assert (want == 0).any()
    np.testing.assert_array_equal(ours(proto, x), want)

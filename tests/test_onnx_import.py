"""ONNX import: models written with onnx.helper, one per supported op and attribute
variant (pads, strides, auto_pad, ceil_mode, count_include_pad, opset-dependent
semantics), agree with ONNX Runtime; shape subgraphs fold with a dynamic batch; bad files
give one clear error."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn.onnx import OnnxImportError  # noqa: E402

RNG = np.random.default_rng(0)
FLOAT = TensorProto.FLOAT


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def make(nodes, inputs, outputs=("y",), inits=None, opset=17, ir_version=8, check=True):
    """A model: inputs {name: shape ('N' = dynamic batch)}, outputs by name (their types
    from ONNX shape inference), initializers {name: array}; onnx.checker runs where the
    outputs' shapes infer (and `check`)."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    if not check:
        return model
    inferred = onnx.shape_inference.infer_shapes(model)   # the outputs' types, for the checker
    for out, typed in zip(model.graph.output, inferred.graph.output):
        out.type.CopyFrom(typed.type)
    if all(o.type.tensor_type.HasField("shape") for o in model.graph.output):
        onnx.checker.check_model(model)
    return model


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def assert_close(actual, expected, rtol=1e-4):
    expected = np.asarray(expected, np.float32)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-6)


def check(model, feeds, backend="cpu", rtol=1e-4):
    """Import `model` and compare every output with ONNX Runtime's at the feeds' batch."""
    want = run_ort(model, feeds)
    imported = gc.onnx.load(model.SerializeToString())
    batch = next(iter(feeds.values())).shape[0]
    got = gc.compile(imported, batch_size=batch, backend=backend).run(feeds)
    assert list(got) == list(want)
    for name in want:
        assert_close(got[name], want[name], rtol)
    return imported


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"the_{op.lower()}", **attrs)


X4 = {"x": ("N", 3, 8, 8)}


def feed4(batch=2, shape=(3, 8, 8)):
    return {"x": rand(batch, *shape)}


# ---- one model per op and attribute variant -------------------------------------------------

def conv_case(opset=17, w_shape=(4, 3, 3, 3), bias=True, **attrs):
    inits = {"W": rand(*w_shape, scale=0.3)}
    ins = ["x", "W"]
    if bias:
        inits["B"] = rand(w_shape[0])
        ins.append("B")
    return make([node("Conv", ins, **attrs)], X4, inits=inits, opset=opset), feed4()


def conv_t_case(w_shape=(3, 2, 3, 3), bias=True, opset=17, **attrs):
    inits = {"W": rand(*w_shape, scale=0.3)}
    ins = ["x", "W"]
    if bias:
        inits["B"] = rand(w_shape[1] * attrs.get("group", 1))
        ins.append("B")
    return make([node("ConvTranspose", ins, **attrs)], {"x": ("N", 3, 5, 5)}, inits=inits,
                opset=opset), {"x": rand(2, 3, 5, 5)}


def unary_case(op, opset=17, **attrs):
    return make([node(op, ["x"], **attrs)], X4, opset=opset), feed4()


def pool_case(op, opset=17, hw=(8, 8), **attrs):
    return make([node(op, ["x"], **attrs)], {"x": ("N", 3) + hw}, opset=opset), \
        {"x": rand(2, 3, *hw)}


def softmax_case(op, opset, **attrs):
    return make([node(op, ["x"], **attrs)], {"x": ("N", 3, 4, 5)}, opset=opset), \
        {"x": rand(2, 3, 4, 5)}


def clip_case(opset, low, high):
    inits, ins = {}, ["x", "", ""]
    if low is not None:
        inits["lo"] = np.float32(low)
        ins[1] = "lo"
    if high is not None:
        inits["hi"] = np.float32(high)
        ins[2] = "hi"
    while ins[-1] == "":
        ins.pop()
    return make([node("Clip", ins)], X4, inits=inits, opset=opset), feed4()


def binary_case(op):
    # runtime (op) constant with broadcasting, then runtime (op) runtime
    inits = {"c": rand(3, 1, 1) + (3.0 if op == "Div" else 0.0)}
    nodes = [node(op, ["x", "c"], ["t"]), helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node(op, ["t", "r" if op != "Div" else "t"], ["y"], name="second")]
    return make(nodes, X4, inits=inits), feed4()


def gemm_case(with_c=True, c_shape=(5,), **attrs):
    trans_b = attrs.get("transB", 0)
    inits = {"B": rand(*((5, 12) if trans_b else (12, 5)), scale=0.3)}
    ins = ["x", "B"]
    if with_c:
        inits["C"] = rand(*c_shape)
        ins.append("C")
    return make([node("Gemm", ins, **attrs)], {"x": ("N", 12)}, inits=inits), \
        {"x": rand(3, 12)}


def matmul_case(a_shape):
    return make([node("MatMul", ["x", "B"])], {"x": ("N",) + a_shape},
                inits={"B": rand(a_shape[-1], 4)}), {"x": rand(2, *a_shape)}


def bn_case(opset):
    c = 3
    inits = {"s": rand(c) + 1.5, "b": rand(c), "m": rand(c) * 0.1,
             "v": np.abs(rand(c)) + 0.5}
    return make([node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], X4,
                inits=inits, opset=opset), feed4()


def prelu_case(slope_shape):
    return make([node("PRelu", ["x", "slope"])], X4,
                inits={"slope": rand(*slope_shape)}), feed4()


def reshape_case(shape, allowzero=None, in_shape=(8, 2, 2)):
    attrs = {} if allowzero is None else {"allowzero": allowzero}
    return make([node("Reshape", ["x", "shape"], **attrs)], {"x": ("N",) + in_shape},
                inits={"shape": np.asarray(shape, np.int64)}, opset=14), \
        {"x": rand(2, *in_shape)}


def flatten_case(axis):
    return make([node("Flatten", ["x"], axis=axis)], X4), feed4()


def transpose_case(perm):
    nodes = [node("Transpose", ["x"], ["t"], perm=perm),
             helper.make_node("Relu", ["t"], ["y"], name="after")]
    return make(nodes, X4), feed4()


def squeeze_case(opset, axes, op="Squeeze", in_shape=(1, 4, 1)):
    if opset < 13:
        n = [node(op, ["x"], **({} if axes is None else {"axes": axes}))]
        inits = {}
    else:
        n = [node(op, ["x"] + ([] if axes is None else ["axes"]))]
        inits = {} if axes is None else {"axes": np.asarray(axes, np.int64)}
    return make(n, {"x": ("N",) + in_shape}, inits=inits, opset=opset), \
        {"x": rand(2, *in_shape)}


def pad_case(opset, pads, value=None, axes=None):
    inits = {"pads": np.asarray(pads, np.int64)}
    ins = ["x", "pads"]
    if value is not None:
        inits["value"] = np.float32(value)
        ins.append("value")
    if axes is not None:
        if value is None:
            ins.append("")
        inits["axes"] = np.asarray(axes, np.int64)
        ins.append("axes")
    return make([node("Pad", ins, mode="constant")], X4, inits=inits, opset=opset), feed4()


def resize_case(opset=17, scales=None, sizes=None, **attrs):
    inits, ins = {}, ["x", ""]
    if opset < 13:  # roi is a required input before opset 13
        inits["roi"] = np.zeros(0, np.float32)
        ins[1] = "roi"
    if scales is not None:
        inits["scales"] = np.asarray(scales, np.float32)
        ins.append("scales")
    else:
        ins += ["", "sizes"]
        inits["sizes"] = np.asarray(sizes, np.int64)
    return make([node("Resize", ins, mode="nearest", **attrs)], {"x": ("N", 3, 4, 5)},
                inits=inits, opset=opset), {"x": rand(2, 3, 4, 5)}


def constant_case():
    c = helper.make_node("Constant", [], ["c"], name="const",
                         value=numpy_helper.from_array(rand(3, 1, 1), "v"))
    f = helper.make_node("Constant", [], ["f"], name="const_f", value_float=0.5)
    return make([c, f, node("Add", ["x", "c"], ["t"]), node("Mul", ["t", "f"])], X4), feed4()


def dropout_case(opset):
    if opset >= 12:
        nodes = [node("Dropout", ["x", "ratio"], ["y", "mask"])]
        inits = {"ratio": np.float32(0.3)}
    else:
        nodes = [node("Dropout", ["x"], ["y"], ratio=0.3)]
        inits = {}
    return make(nodes, X4, inits=inits, opset=opset), feed4()


CASES = {
    # Conv
    "conv": lambda: conv_case(pads=[1, 1, 1, 1]),
    "conv_stride2_asym_pads_dilation": lambda: conv_case(strides=[2, 1], pads=[0, 1, 1, 0],
                                                         dilations=[2, 1]),
    "conv_same_upper_stride2": lambda: conv_case(auto_pad="SAME_UPPER", strides=[2, 2],
                                                 w_shape=(4, 3, 4, 4)),
    "conv_same_lower_stride2": lambda: conv_case(auto_pad="SAME_LOWER", strides=[2, 2],
                                                 w_shape=(4, 3, 4, 4)),
    "conv_valid_opset11": lambda: conv_case(opset=11, auto_pad="VALID", bias=False),
    "conv_depthwise": lambda: conv_case(w_shape=(6, 1, 3, 3), group=3, pads=[1, 1, 1, 1]),
    # ConvTranspose
    "convtranspose": lambda: conv_t_case(strides=[2, 2], pads=[1, 1, 1, 1],
                                         output_padding=[1, 1]),
    "convtranspose_groups_dilation": lambda: conv_t_case(w_shape=(3, 2, 3, 3), group=3,
                                                         dilations=[2, 2], bias=False),
    "convtranspose_output_shape": lambda: conv_t_case(strides=[2, 2], output_shape=[10, 9]),
    "convtranspose_same_upper": lambda: conv_t_case(strides=[2, 2], auto_pad="SAME_UPPER",
                                                    w_shape=(3, 2, 4, 4)),
    "convtranspose_same_upper_odd": lambda: conv_t_case(strides=[2, 2], auto_pad="SAME_UPPER"),
    "convtranspose_same_lower_odd": lambda: conv_t_case(strides=[2, 2], auto_pad="SAME_LOWER"),
    "convtranspose_output_shape_odd": lambda: conv_t_case(strides=[2, 2], output_shape=[10, 10],
                                                          auto_pad="SAME_UPPER"),
    "convtranspose_asym_pads": lambda: conv_t_case(strides=[2, 3], pads=[0, 1, 2, 0]),
    # BatchNormalization
    "batchnorm_opset11": lambda: bn_case(11),
    "batchnorm_opset15": lambda: bn_case(15),
    # activations
    "relu": lambda: unary_case("Relu"),
    "leakyrelu": lambda: unary_case("LeakyRelu", alpha=0.2),
    "leakyrelu_default": lambda: unary_case("LeakyRelu"),
    "sigmoid": lambda: unary_case("Sigmoid"),
    "tanh": lambda: unary_case("Tanh"),
    "hardsigmoid": lambda: unary_case("HardSigmoid"),
    "hardsigmoid_alpha_beta": lambda: unary_case("HardSigmoid", alpha=0.3, beta=0.4),
    "hardswish": lambda: unary_case("HardSwish", opset=14),
    "prelu_channel": lambda: prelu_case((3, 1, 1)),
    "prelu_scalar": lambda: prelu_case((1,)),
    "clip_opset11_min_max": lambda: clip_case(11, -0.5, 0.7),
    "clip_opset13_max_only": lambda: clip_case(13, None, 0.3),
    "clip_opset21_none": lambda: clip_case(21, None, None),
    # softmax: opset < 13 flattens to 2-D at the axis
    "softmax_opset11_axis1": lambda: softmax_case("Softmax", 11, axis=1),
    "softmax_opset11_default": lambda: softmax_case("Softmax", 11),
    "softmax_opset11_last": lambda: softmax_case("Softmax", 11, axis=-1),
    "softmax_opset13_axis1": lambda: softmax_case("Softmax", 13, axis=1),
    "softmax_opset13_default": lambda: softmax_case("Softmax", 13),
    "logsoftmax_opset11_axis2": lambda: softmax_case("LogSoftmax", 11, axis=2),
    "logsoftmax_opset17_axis1": lambda: softmax_case("LogSoftmax", 17, axis=1),
    # pooling
    "maxpool": lambda: pool_case("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 1, 1]),
    "maxpool_ceil": lambda: pool_case("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                                      ceil_mode=1, hw=(9, 10)),
    "maxpool_ceil_pads": lambda: pool_case("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                                           pads=[1, 1, 1, 1], ceil_mode=1, hw=(8, 7)),
    "maxpool_dilation": lambda: pool_case("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]),
    "maxpool_asym_pads": lambda: pool_case("MaxPool", kernel_shape=[2, 2], strides=[2, 2],
                                           pads=[0, 1, 1, 0]),
    "maxpool_big_pads": lambda: pool_case("MaxPool", kernel_shape=[3, 3], pads=[2, 2, 2, 2]),
    "maxpool_same_upper": lambda: pool_case("MaxPool", kernel_shape=[2, 2], strides=[2, 2],
                                            auto_pad="SAME_UPPER", hw=(7, 7)),
    "maxpool_same_lower": lambda: pool_case("MaxPool", kernel_shape=[3, 3],
                                            auto_pad="SAME_LOWER", hw=(6, 6)),
    "maxpool_opset11": lambda: pool_case("MaxPool", opset=11, kernel_shape=[2, 2],
                                         strides=[2, 2]),
    "avgpool": lambda: pool_case("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "avgpool_pads_exclude": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                              pads=[1, 1, 1, 1]),
    "avgpool_pads_include": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                              pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool_ceil": lambda: pool_case("AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                                      ceil_mode=1, hw=(9, 10)),
    "avgpool_ceil_pads_include": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                                   strides=[2, 2], pads=[1, 1, 1, 1],
                                                   ceil_mode=1, count_include_pad=1,
                                                   hw=(8, 7)),
    "avgpool_asym_exclude": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                              pads=[0, 1, 2, 1]),
    "avgpool_asym_include": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                              pads=[0, 1, 2, 1], count_include_pad=1),
    "avgpool_same_upper": lambda: pool_case("AveragePool", kernel_shape=[2, 2],
                                            strides=[2, 2], auto_pad="SAME_UPPER",
                                            hw=(7, 7)),
    "avgpool_same_lower_include": lambda: pool_case("AveragePool", kernel_shape=[3, 3],
                                                    auto_pad="SAME_LOWER", hw=(6, 5),
                                                    count_include_pad=1),
    "globalaveragepool": lambda: pool_case("GlobalAveragePool"),
    "reducemean_opset13_keepdims": lambda: pool_case("ReduceMean", opset=13, axes=[2, 3]),
    "reducemean_opset13_no_keepdims": lambda: pool_case("ReduceMean", opset=13, axes=[-1, -2],
                                                        keepdims=0),
    "reducemean_opset18_axes_input": lambda: (
        make([node("ReduceMean", ["x", "axes"], keepdims=0)], X4, opset=18,
             inits={"axes": np.asarray([2, 3], np.int64)}), feed4()),
    "globalmaxpool": lambda: pool_case("GlobalMaxPool"),
    # dense
    "gemm_linear": lambda: gemm_case(transB=1),
    "gemm_no_c": lambda: gemm_case(with_c=False, transB=1),
    "gemm_plain": lambda: gemm_case(),
    "gemm_alpha_beta_c2d": lambda: gemm_case(alpha=0.5, beta=2.0, c_shape=(1, 5)),
    "matmul_2d": lambda: matmul_case((6,)),
    "matmul_3d": lambda: matmul_case((3, 6)),
    # arithmetic
    "add": lambda: binary_case("Add"),
    "sub": lambda: binary_case("Sub"),
    "mul": lambda: binary_case("Mul"),
    "div": lambda: binary_case("Div"),
    # data movement
    "concat": lambda: (make([node("Relu", ["x"], ["a"]), node("Sigmoid", ["x"], ["b"]),
                             node("Concat", ["a", "b", "x"], axis=1)], X4), feed4()),
    "concat_negative_axis": lambda: (make([node("Concat", ["x", "x"], axis=-1)], X4),
                                     feed4()),
    "flatten_axis1": lambda: flatten_case(1),
    "flatten_axis2": lambda: flatten_case(2),
    "flatten_axis0": lambda: flatten_case(0),
    "flatten_axis_neg1": lambda: flatten_case(-1),
    "reshape_copy_batch": lambda: reshape_case([0, -1]),
    "reshape_copy_batch_3d": lambda: reshape_case([0, 4, -1]),
    "reshape_infer_batch": lambda: reshape_case([-1, 2, 4, 2]),
    "reshape_allowzero0": lambda: reshape_case([0, 32], allowzero=0),
    "transpose_nhwc": lambda: transpose_case([0, 2, 3, 1]),
    "transpose_hw": lambda: transpose_case([0, 1, 3, 2]),
    "squeeze_opset11_axes": lambda: squeeze_case(11, [1]),
    "squeeze_opset13_axes_input": lambda: squeeze_case(13, [-1]),
    "squeeze_no_axes": lambda: squeeze_case(13, None),
    "unsqueeze_opset11": lambda: squeeze_case(11, [1, -1], op="Unsqueeze", in_shape=(4, 3)),
    "unsqueeze_opset13": lambda: squeeze_case(13, [2], op="Unsqueeze", in_shape=(4, 3)),
    "identity": lambda: unary_case("Identity"),
    "dropout_opset11": lambda: dropout_case(11),
    "dropout_opset13": lambda: dropout_case(13),
    "constant": constant_case,
    "pad_opset11": lambda: pad_case(11, [0, 0, 1, 2, 0, 0, 2, 1]),
    "pad_value": lambda: pad_case(13, [0, 1, 1, 0, 0, 0, 0, 3], value=-1.5),
    "pad_axes_opset18": lambda: pad_case(18, [1, 0, 2, 3], axes=[2, 3]),
    "resize_asymmetric_floor": lambda: resize_case(
        scales=[1, 1, 2, 3], coordinate_transformation_mode="asymmetric",
        nearest_mode="floor"),
    "resize_half_pixel_default": lambda: resize_case(scales=[1, 1, 3, 2]),
    "resize_sizes": lambda: resize_case(sizes=[2, 3, 8, 10]),
    "resize_opset11": lambda: resize_case(
        opset=11, scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric",
        nearest_mode="floor"),
    "resize_opset18_axes": lambda: resize_case(opset=18, scales=[2, 2], axes=[2, 3]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_agrees_with_onnxruntime(case):
    model, feeds = CASES[case]()
    check(model, feeds)


@pytest.mark.parametrize("case", ["conv", "convtranspose", "maxpool_ceil_pads",
                                  "avgpool_asym_exclude", "softmax_opset11_axis1",
                                  "resize_half_pixel_default", "transpose_nhwc", "gemm_plain"])
def test_reference_backend_agrees(case):
    model, feeds = CASES[case]()
    check(model, feeds, backend="reference")


def test_imported_model_runs_at_any_batch():
    model, _ = CASES["conv_stride2_asym_pads_dilation"]()
    for batch in (1, 3):
        check(model, {"x": rand(batch, 3, 8, 8)})


# ---- shape subgraphs ----------------------------------------------------------------------

def flatten_subgraph(opset=13, fixed_batch=None):
    """What torch.onnx emits for x.view(x.size(0), -1) with a dynamic batch:
    Shape -> Gather(0) -> Unsqueeze -> Concat([n, -1]) -> Reshape; then a Gemm."""
    unsq = node("Unsqueeze", ["n"], ["n1"], axes=[0]) if opset < 13 else \
        node("Unsqueeze", ["n", "zero_axis"], ["n1"])
    nodes = [
        node("Relu", ["x"], ["h"]),
        node("Shape", ["h"], ["s"]),
        helper.make_node("Gather", ["s", "idx0"], ["n"], name="gather", axis=0),
        unsq,
        node("Cast", ["n1"], ["n1c"], to=TensorProto.INT64),
        node("Concat", ["n1c", "minus1"], ["target"], axis=0),
        node("Reshape", ["h", "target"], ["flat"]),
        node("Gemm", ["flat", "W", "b"], transB=1),
    ]
    inits = {"idx0": np.asarray(0, np.int64), "minus1": np.asarray([-1], np.int64),
             "W": rand(5, 3 * 8 * 8, scale=0.1), "b": rand(5)}
    if opset >= 13:
        inits["zero_axis"] = np.asarray([0], np.int64)
    batch = fixed_batch if fixed_batch else "N"
    return make(nodes, {"x": (batch, 3, 8, 8)}, inits=inits, opset=opset)


@pytest.mark.parametrize("opset", [11, 13])
def test_shape_subgraph_folds_with_dynamic_batch(opset):
    model = flatten_subgraph(opset)
    imported = gc.onnx.load(model.SerializeToString())
    ops = {t.op for t in imported.tensors}
    assert "flatten" in ops and not {"shape", "gather"} & ops
    assert set(imported.parameters()) == {"W", "b"}    # shape constants are not parameters
    for batch in (1, 3):
        check(model, {"x": rand(batch, 3, 8, 8)})


def test_shape_subgraph_with_slice_and_arithmetic():
    # target = concat(shape[0:1], C * H * W) with C, H, W sliced out of the shape one by one
    nodes = [node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "k0", "k1"], ["n"], name="slice_n")]
    for i, c in enumerate("abc", start=1):
        nodes.append(helper.make_node("Slice", ["s", f"k{i}", f"k{i + 1}"], [f"d_{c}"],
                                      name=f"slice_{c}"))
    nodes += [helper.make_node("Mul", ["d_a", "d_b"], ["m"], name="mul1"),
              helper.make_node("Mul", ["m", "d_c"], ["m2"], name="mul2"),
              node("Concat", ["n", "m2"], ["target"], axis=0),
              node("Reshape", ["x", "target"], ["y"])]
    inits = {f"k{i}": np.asarray([i], np.int64) for i in range(5)}
    model = make(nodes, X4, inits=inits)
    imported = check(model, feed4(batch=3))
    assert [t.op for t in imported.tensors if t.op not in ("input", "param")] == ["flatten"]


def test_fixed_batch_constant_target_reads_as_the_batch():
    # a file with batch 1 may spell the flatten target as the constant [1, -1]
    nodes = [node("Reshape", ["x", "target"])]
    model = make(nodes, {"x": (1, 3, 8, 8)},
                 inits={"target": np.asarray([1, -1], np.int64)})
    imported = gc.onnx.load(model.SerializeToString())
    x = rand(4, 3, 8, 8)
    y = gc.compile(imported, batch_size=4, backend="cpu")(x)
    np.testing.assert_array_equal(y, x.reshape(4, -1))


def test_parameters_keep_onnx_names_and_bn_state_is_not_trainable():
    model, _ = bn_case(15)
    imported = gc.onnx.load(model.SerializeToString())
    assert list(imported.parameters()) == ["s", "b", "m", "v"]
    assert list(imported.trainable_parameters()) == ["s", "b"]
    conv, _ = conv_case()
    params = gc.onnx.load(conv.SerializeToString()).parameters()
    assert list(params) == ["W", "B"] and params["W"].shape == (4, 3, 3, 3)


def test_load_from_path_and_batch_size_check(tmp_path):
    model, feeds = CASES["conv"]()
    path = tmp_path / "conv.onnx"
    path.write_bytes(model.SerializeToString())
    imported = gc.onnx.load(str(path), batch_size=2)
    assert imported.inputs[0].shape == (None, 3, 8, 8)
    assert imported.outputs[0].name == "y"
    y = gc.compile(imported, batch_size=2)(feeds["x"])
    assert_close(y, run_ort(model, feeds)["y"])


# ---- bad files -------------------------------------------------------------------------------

def good_bytes():
    return CASES["conv"]()[0].SerializeToString()


def test_unsupported_ops_are_listed_in_one_error():
    nodes = [helper.make_node("Hardmax", ["x"], ["a"], name="hardmax_1"),
             helper.make_node("Relu", ["a"], ["b"], name="fine"),
             helper.make_node("LpNormalization", ["b"], ["c"], name="lp_1"),
             helper.make_node("Hardmax", ["c"], ["y"], name="hardmax_2")]
    model = make(nodes, X4, opset=13)
    with pytest.raises(OnnxImportError) as info:
        gc.onnx.load(model.SerializeToString())
    message = str(info.value)
    assert "2 unsupported ONNX op types" in message
    for part in ("Hardmax", "'hardmax_1'", "'hardmax_2'", "LpNormalization", "'lp_1'",
                 "opset 13"):
        assert part in message
    assert "'fine'" not in message


def test_custom_domain_op_is_unsupported():
    n = helper.make_node("FusedConv", ["x"], ["y"], name="fc", domain="com.microsoft")
    graph = helper.make_graph([n], "t", [helper.make_tensor_value_info("x", FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(OnnxImportError, match="com.microsoft::FusedConv.*'fc'"):
        gc.onnx.load(model.SerializeToString())


@pytest.mark.parametrize("data, message", [
    (lambda: good_bytes()[:len(good_bytes()) // 2], "not a valid ONNX file|not an ONNX"),
    (lambda: good_bytes()[:40], "not a valid ONNX file|not an ONNX|no graph"),
    (lambda: np.random.default_rng(5).bytes(3000), "not a valid ONNX file|not an ONNX"),
    (lambda: b"", "empty"),
    (lambda: b"this is text, not a model", "not a valid ONNX file|not an ONNX"),
])
def test_corrupt_bytes(data, message):
    with pytest.raises(OnnxImportError, match=message):
        gc.onnx.load(data())


def test_truncated_file_on_disk(tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(good_bytes()[:-7])
    with pytest.raises(OnnxImportError, match="cut.onnx"):
        gc.onnx.load(path)
    with pytest.raises(FileNotFoundError):
        gc.onnx.load(tmp_path / "absent.onnx")


def test_missing_initializer_names_the_node():
    model = make([node("Conv", ["x", "W"])], X4, check=False)  # W: no input, no initializer
    with pytest.raises(OnnxImportError, match="'the_conv'.*reads 'W'.*missing initializer"):
        gc.onnx.load(model.SerializeToString())


def test_integer_input_is_rejected():
    graph = helper.make_graph([node("Relu", ["x"])], "t",
                              [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="'x' has dtype INT64.*float32"):
        gc.onnx.load(model.SerializeToString())


@pytest.mark.parametrize("opset", [6, 29])
def test_opset_out_of_range(opset):
    model = make([node("Relu", ["x"])], X4, opset=opset)
    with pytest.raises(OnnxImportError, match=f"opset {opset} is not supported.*7-28"):
        gc.onnx.load(model.SerializeToString())


def test_dynamic_spatial_dimension_is_rejected():
    model = make([node("Relu", ["x"])], {"x": ("N", 3, "H", 8)})
    with pytest.raises(OnnxImportError, match="dimension 2 \\('H'\\) is dynamic"):
        gc.onnx.load(model.SerializeToString())


def test_shape_error_names_the_node():
    model = make([node("Reshape", ["x", "shape"])], X4, check=False,
                 inits={"shape": np.asarray([0, 7, -1], np.int64)})
    with pytest.raises(OnnxImportError, match="'the_reshape' \\(Reshape, opset 17\\).*reshape"):
        gc.onnx.load(model.SerializeToString())
    bad_conv = make([node("Conv", ["x", "W"])], X4, inits={"W": rand(4, 5, 3, 3)},
                    check=False)
    with pytest.raises(OnnxImportError, match="'the_conv' \\(Conv.*channels"):
        gc.onnx.load(bad_conv.SerializeToString())


@pytest.mark.parametrize("build, message", [
    (lambda: make([node("Gather", ["x", "i"])], X4, inits={"i": np.asarray([0], np.int64)}),
     "'the_gather'.*batch axis 0"),
    (lambda: make([node("Resize", ["x", "", "s"], mode="cubic")], X4,
                  inits={"s": np.asarray([1, 2, 2, 2], np.float32)}), "change N or C"),
    (lambda: make([node("ReduceMean", ["x"], axes=[0])], X4, opset=13),
     "axes \\[0\\] reduces the batch axis"),
    (lambda: make([node("Pad", ["x", "p"], mode="reflect")], X4,
                  inits={"p": np.int64([0, 0, 8, 0, 0, 0, 0, 0])}),
     "reflect padding \\(8, 0\\) on axis 2 must be below the axis size 8"),
    (lambda: make([node("Clip", ["x", "lo"])], {"x": ("N", 3, 8, 8), "lo": ("N", 1)}),
     "min must be a constant"),
    (lambda: make([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                        training_mode=1)], X4,
                  inits={k: np.ones(3, np.float32) for k in "sbmv"}, opset=15),
     "training_mode"),
])
def test_unsupported_usage_is_a_clear_error(build, message):
    model = build()
    with pytest.raises(OnnxImportError, match=message):
        gc.onnx.load(model.SerializeToString())

"""ONNX for the normalization and rearrangement layers: a model with LocalResponseNorm,
GroupNorm, InstanceNorm2d, PixelShuffle/Unshuffle and the mode pads exports, runs in ONNX
Runtime with graphcnn's outputs and imports back (LRN's Pow through the Pow importer);
one-node ONNX models of LRN (odd and even sizes), InstanceNormalization,
GroupNormalization (opset 18's per-group scale and 21's per-channel one),
DepthToSpace/SpaceToDepth (DCR, CRD), Pad (reflect, edge, wrap) and Tile import and
compute what ONNX Runtime computes; unsupported forms are refused in one line naming the
node."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn import nn  # noqa: E402
from graphcnn.onnx import OnnxImportError  # noqa: E402


def ort_run(proto_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def layers_model() -> gc.Model:
    gc.manual_seed(3)
    x = gc.Input((4, 6, 6), name="image")
    h = nn.Conv2d(4, 8, 3, padding=1)(x)
    h = nn.LocalResponseNorm(3, alpha=0.2, beta=0.7, k=1.5)(h)
    h = nn.GroupNorm(4, 8)(nn.ReflectionPad2d((1, 0, 2, 1))(h))     # (8, 9, 7)
    a = nn.PixelShuffle(2)(h)                                        # (2, 18, 14)
    b = nn.InstanceNorm2d(8, affine=True)(nn.ReplicationPad2d((1, 0, 1, 0))(h))  # (8, 10, 8)
    c = nn.PixelUnshuffle(2)(b)                                      # (32, 5, 4)
    return gc.Model(inputs=x, outputs=[a, c], name="norms")


@pytest.mark.parametrize("opset", [13, 17])
def test_export_runs_in_onnx_runtime_and_imports_back(opset):
    model = layers_model()
    rng = np.random.default_rng(0)
    model.load_parameters({name: rng.standard_normal(p.shape).astype(np.float32)  # not 1, 0
                           for name, p in model.parameters().items()})
    proto = gc.onnx.to_proto(model, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"InstanceNormalization", "Pow", "Transpose", "Pad"} <= ops
    pad_modes = {onnx.helper.get_attribute_value(a) for n in proto.graph.node
                 if n.op_type == "Pad" for a in n.attribute if a.name == "mode"}
    assert {b"reflect", b"edge"} <= pad_modes   # and LRN's constant channel padding
    back = gc.onnx.load(proto.SerializeToString())
    for batch in (1, 3):
        x = rng.standard_normal((batch, 4, 6, 6)).astype(np.float32)
        want = gc.compile(model, batch_size=batch, backend="cpu")(x)
        got = ort_run(proto.SerializeToString(), x)
        again = gc.compile(back, batch_size=batch, backend="cpu")(x)
        for k, (w, g, a) in enumerate(zip(want, got, again)):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"output {k}")
            np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6, err_msg=f"output {k}")


def one_node(op: str, shape: tuple[int, ...], inits: dict[str, np.ndarray] | None = None,
             opset: int = 18, **attrs) -> bytes:
    """A one-node model: input x (batch dynamic), initializers in order, output y."""
    inits = inits or {}
    node = helper.make_node(op, ["x"] + list(inits), ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                    ["N"] + list(shape[1:]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def check_against_ort(proto: bytes, shape: tuple[int, ...], rtol: float = 1e-5) -> None:
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    (want,) = ort_run(proto, x)
    got = gc.compile(gc.onnx.load(proto), batch_size=shape[0], backend="cpu")(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn_matches_onnx_runtime(size):
    check_against_ort(one_node("LRN", (2, 5, 3, 3), size=size, alpha=0.3, beta=0.6,
                               bias=1.2, opset=13), (2, 5, 3, 3))


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size_follows_the_onnx_window(size):
    """ONNX's window is [c - floor((size-1)/2), c + ceil((size-1)/2)]: for an even size one
    channel later than torch's. ONNX Runtime refuses even sizes (and the onnx package's
    reference evaluator loops over the wrong axis), so the spec's formula is written out."""
    x = np.random.default_rng(size).standard_normal((2, 5, 2, 3)).astype(np.float32)
    proto = one_node("LRN", x.shape, size=size, alpha=0.3, beta=0.6, bias=1.2, opset=13)
    got = gc.compile(gc.onnx.load(proto), batch_size=2, backend="cpu")(x)
    x64 = x.astype(np.float64)
    want = np.empty_like(x64)
    for c in range(5):
        lo, hi = max(0, c - (size - 1) // 2), min(4, c + size // 2)
        square_sum = (x64[:, lo:hi + 1] ** 2).sum(axis=1)
        want[:, c] = x64[:, c] / (1.2 + 0.3 / size * square_sum) ** 0.6
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_instance_normalization_matches_onnx_runtime():
    rng = np.random.default_rng(1)
    inits = {"s": rng.standard_normal(3).astype(np.float32),
             "b": rng.standard_normal(3).astype(np.float32)}
    check_against_ort(one_node("InstanceNormalization", (2, 3, 4, 5), inits, epsilon=1e-3),
                      (2, 3, 4, 5))


@pytest.mark.parametrize("opset,per", [(18, "group"), (21, "channel")])
def test_group_normalization_scale_per_group_or_channel(opset, per):
    rng = np.random.default_rng(2)
    count = 2 if per == "group" else 6
    inits = {"s": rng.standard_normal(count).astype(np.float32),
             "b": rng.standard_normal(count).astype(np.float32)}
    proto = one_node("GroupNormalization", (2, 6, 3, 2), inits, opset=opset, num_groups=2,
                     epsilon=1e-4)
    x = rng.standard_normal((2, 6, 3, 2)).astype(np.float32)
    g = x.astype(np.float64).reshape(2, 2, -1)
    xhat = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-4))
    scale, bias = (np.repeat(inits[k], 3) if per == "group" else inits[k] for k in "sb")
    want = xhat.reshape(x.shape) * scale[:, None, None] + bias[:, None, None]
    got = gc.compile(gc.onnx.load(proto), batch_size=2, backend="cpu")(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    check_against_ort(one_node("DepthToSpace", (2, 8, 2, 3), blocksize=2, mode=mode,
                               opset=13), (2, 8, 2, 3))
    proto = one_node("SpaceToDepth", (2, 3, 4, 6), blocksize=2, opset=13)   # DCR only
    check_against_ort(proto, (2, 3, 4, 6))


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_modes_match_onnx_runtime(mode):
    pads = np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64)
    check_against_ort(one_node("Pad", (2, 3, 4, 5), {"pads": pads}, mode=mode), (2, 3, 4, 5))


def test_tile_matches_onnx_runtime_the_batch_axis_too():
    for reps in ([1, 2, 1, 3], [2, 1, 2, 1]):
        proto = one_node("Tile", (2, 3, 2, 2), {"repeats": np.array(reps, np.int64)},
                         opset=13)
        check_against_ort(proto, (2, 3, 2, 2))


@pytest.mark.parametrize("op,shape,inits,attrs,match", [
    ("Pad", (1, 2, 3, 3), {"pads": np.array([0, 0, 3, 0, 0, 0, 0, 0], np.int64)},
     {"mode": "reflect"}, "reflect padding .3, 0. on axis 2 must be below the axis size 3"),
    ("Pad", (1, 2, 3, 3), {"pads": np.array([1, 0, 0, 0, 0, 0, 0, 0], np.int64)},
     {"mode": "edge"}, "cannot pad the batch axis"),
    ("DepthToSpace", (1, 6, 2, 2), {}, {"blocksize": 2}, "not divisible by blocksize"),
    ("GroupNormalization", (1, 6, 2, 2), {"s": np.ones(6, np.float32),
                                          "b": np.zeros(6, np.float32)},
     {"num_groups": 4}, "num_groups 4 does not divide the 6 channels"),
    ("LRN", (1, 4, 2, 2), {}, {}, "size attribute is required"),
])
def test_refusals_are_one_line_naming_the_node(op, shape, inits, attrs, match):
    with pytest.raises(OnnxImportError, match=match) as info:
        gc.onnx.load(one_node(op, shape, inits, **attrs))
    assert "\n" not in str(info.value) and f"{op}_0" in str(info.value)


def test_wrap_padding_exports_from_opset_19():
    from graphcnn.nn.rearrange import pad_modes
    x = gc.Input((2, 3, 4))
    model = gc.Model(x, pad_modes(x, ((0, 0), (0, 0), (2, 1), (1, 3)), "wrap"))
    with pytest.raises(gc.onnx.OnnxExportError, match="opset 19"):
        gc.onnx.to_proto(model, opset=17)
    proto = gc.onnx.to_proto(model, opset=19).SerializeToString()
    images = np.random.default_rng(0).standard_normal((2, 2, 3, 4)).astype(np.float32)
    (got,) = ort_run(proto, images)
    np.testing.assert_array_equal(got, np.pad(images, ((0, 0), (0, 0), (2, 1), (1, 3)),
                                              mode="wrap"))


@pytest.mark.filterwarnings("ignore")   # torch.onnx's notes on its own export
def test_a_torch_exported_model_imports_with_torchs_outputs():
    """torch.onnx's own forms: GroupNorm as Reshape + InstanceNormalization + Mul/Add,
    the pads as Pad with computed pads, PixelShuffle as DepthToSpace (CRD) and
    PixelUnshuffle as Reshape/Transpose (torch's LRN export branches on the rank with If,
    which graphcnn does not import)."""
    torch = pytest.importorskip("torch")
    import io
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(2, 8),
        torch.nn.InstanceNorm2d(8, affine=True), torch.nn.ReplicationPad2d((1, 0, 2, 1)),
        torch.nn.PixelShuffle(2), torch.nn.PixelUnshuffle(2)).eval()
    x = torch.randn(2, 3, 6, 6)
    buf = io.BytesIO()
    torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    model = gc.onnx.load(buf.getvalue())
    for batch in (2, 3):
        xb = torch.randn(batch, 3, 6, 6)
        got = gc.compile(model, batch_size=batch, backend="cpu")(xb.numpy())
        np.testing.assert_allclose(got, m(xb).detach().numpy(), rtol=1e-5, atol=1e-5)

"""The shared lowering of elementwise chains (graphcnn/backends/lowering.py): its SSA
lines, the cpu and cuda renderers consuming the same lines, and single elementwise ops
running as generated cpu kernels."""
import numpy as np
import pytest

from graphcnn.backends import lowering
from graphcnn.backends.cpu import codegen as cpu_codegen
from graphcnn.backends.cpu.scalar_math import CPU_SCALAR_CALLS
from graphcnn.backends.cuda import codegen as cuda_codegen

# conv2d -> add(side 3) -> clip -> tanh -> mul(side 4): attributes, a libm call, two sides
CHAIN = (("add", {}, (-1, 3)), ("clip", {"low": 0.0, "high": 6.0}, (-1,)),
         ("tanh", {}, (-1,)), ("mul", {}, (4, -1)))


def test_a_chain_lowers_to_ssa_lines_with_inlined_attributes():
    chain = lowering.lower(CHAIN, anchored=True)
    assert [str(line) for line in chain.lines] == [
        "t0 = (v + a0)",
        "t1 = (0.0 if t0 < 0.0 else (6.0 if t0 > 6.0 else t0))",
        "t2 = math.tanh(t1)",
        "t3 = (a1 * t2)",
    ]
    assert chain.result == "t3" and chain.sides == (3, 4)
    assert chain.calls == {"math.tanh"}
    assert chain.render({"math.tanh": "fast_tanh"})[2] == "t2 = fast_tanh(t1)"


def test_cpu_and_cuda_render_the_same_ssa_lines():
    chain = lowering.lower(CHAIN, anchored=True)
    attrs = {"anchor": "conv2d", "anchor_attrs": {}, "anchor_inputs": 3, "steps": CHAIN}
    cpu = [line.strip() for line in cpu_codegen.generate_source(attrs).splitlines()]
    cuda = [line.strip() for line in
            cuda_codegen.epilogue_source(CHAIN, (True, False), chain.sides).splitlines()]

    def block(source: list[str], lines: list[str]) -> list[str]:
        start = source.index(lines[0])
        return source[start:start + len(lines)]

    # The same lines, in order; the cpu's with its vectorizable tanh, the device's as
    # lowered. Both bind the same side names before them and store the same result.
    assert block(cpu, chain.render(CPU_SCALAR_CALLS)) == chain.render(CPU_SCALAR_CALLS)
    assert block(cuda, chain.render()) == chain.render()
    assert "t2 = fast_tanh(t1)" in cpu and "t2 = math.tanh(t1)" in cuda
    for name in ("a0", "a1"):
        assert any(line.startswith(f"{name} = ") for line in cpu)
        assert any(line.startswith(f"{name} = ") for line in cuda)
    assert cpu[-1].endswith(f"= {chain.result}") and cuda[-1] == f"return {chain.result}"


def test_render_renames_whole_calls_only():
    chain = lowering.Lowered((lowering.Ssa("t0", "math.tanh(a0) + xmath.tanh(a0)"),),
                             "t0", (0,), False)
    assert chain.render({"math.tanh": "fast_tanh"}) == [
        "t0 = fast_tanh(a0) + xmath.tanh(a0)"]


def test_a_chain_without_an_anchor_cannot_read_a_running_value():
    with pytest.raises(ValueError, match="running value"):
        lowering.lower((("relu", {}, (-1,)),), anchored=False)
    with pytest.raises(NotImplementedError, match="no scalar formula"):
        lowering.lower((("reshape", {"shape": (1,)}, (0,)),), anchored=False)


def test_single_elementwise_ops_run_as_generated_cpu_kernels():
    from graphcnn.backends.cpu.aot import Recorder
    from graphcnn.backends.cpu.registry import get_kernel, launch_mode
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    bias = rng.standard_normal((3, 1, 1)).astype(np.float32)
    out = np.empty_like(x)
    recorder = Recorder()
    with launch_mode(recorder=recorder):
        get_kernel("relu")([x], [out], {})
        np.testing.assert_array_equal(out, np.maximum(x, 0))
        get_kernel("add")([x, bias], [out], {})       # broadcasting: the 4-D nest
        np.testing.assert_array_equal(out, x + bias)
    names = sorted(name for name, _ in recorder.launches)
    assert len(names) == 2 and all(n.startswith("graphcnn_fused_") for n in names)


def test_single_op_kernels_go_into_artifacts(tmp_path):
    """An unfused graph (opt_level=0) runs each elementwise op as a generated kernel; an
    artifact holds them precompiled, so the loaded executable launches no missing entry
    (which would warn and compile)."""
    import warnings

    import graphcnn as gc
    x = gc.Input((3, 4, 5), name="x")
    y = gc.sigmoid(gc.relu(x) + gc.tanh(x)) * 2.0       # one broadcast: the scalar
    exe = gc.compile(gc.Model(x, gc.clip(y, 0.0, 1.5)), batch_size=2, opt_level=0)
    assert exe.report()["kernels"] >= 5
    data = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = exe(data)
    exe.save(tmp_path / "ew.gcnn")
    loaded = gc.load(tmp_path / "ew.gcnn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = loaded(data)
    assert loaded.precompiled
    np.testing.assert_array_equal(got, want)


def test_ops_with_a_formula_are_elementwise_or_broadcast():
    """The fusion pass fuses ELEMWISE and BROADCAST ops into epilogues; a formula on an op
    of another kind (which moves or combines elements) is refused at registration."""
    from graphcnn.ops.registry import FusionKind, all_ops, register_op
    for name, op in all_ops().items():
        if op.scalar is not None:
            assert op.kind in (FusionKind.ELEMWISE, FusionKind.BROADCAST), name
    with pytest.raises(ValueError, match="fusion kind"):
        register_op("not_registered", inputs=("x",), shape=None, ref=None, vjp=None,
                    kind=FusionKind.INJECTIVE, scalar="{0}")
    assert "not_registered" not in all_ops()


def test_infinite_attributes_are_math_constants():
    """A clip with one bound (ONNX Clip without max) has the other at infinity."""
    from op_check import forward
    assert lowering.literal(float("inf")) == "math.inf"
    assert lowering.literal(-np.inf) == "(-math.inf)"
    assert lowering.literal(np.float32(0.5)) == "0.5"
    x = np.float32([[np.nan, -np.inf, -2.0, 0.5, 7.0, np.inf]])
    attrs = {"low": -1.0, "high": float("inf")}
    (got,) = forward("clip", [x], attrs, "cpu")
    np.testing.assert_array_equal(got, forward("clip", [x], attrs, "reference")[0])
    source = cuda_codegen.epilogue_source((("clip", attrs, (-1,)),), (), ())
    assert "math.inf" in source

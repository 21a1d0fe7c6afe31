"""The accuracy contract (backends/cpu/accuracy.py): every conv implementation the cpu
strategy may choose stays within its declared error growth over the float32 im2col GEMM's
error against float64, on every shape family it applies to (ResNet's 512 channels on 7x7
maps among them), and the autotuner never chooses one that breaks the contract, however
fast it is."""
import zlib

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.backends.cpu import accuracy, autotune, blas
from graphcnn.backends.cpu.candidates import STRATEGIES, array_site
from graphcnn.backends.cpu.strategy import choose, forced

CONV_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")
PAD1 = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)


def conv_case(op, n, c, o, hw, k=3, **attrs):
    """(operands, output, attrs) of one conv op, random, float32; the float64 truth."""
    attrs = dict(PAD1, **attrs)
    # a seed of the case's own (hash() of a str changes from process to process)
    rng = np.random.default_rng(zlib.crc32(repr((op, n, c, o, hw, k)).encode()))
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    s, p = attrs["stride"][0], attrs["padding"][0]
    out_hw = (hw + 2 * p - k) // s + 1
    dy = rng.standard_normal((n, o, out_hw, out_hw)).astype(np.float32)
    if op == "conv2d":
        ins, out_shape = [x, w], (n, o, out_hw, out_hw)
    elif op == "conv2d_input_grad":
        ins, out_shape, attrs = [dy, w], x.shape, dict(attrs, input_hw=(hw, hw))
    else:
        ins, out_shape, attrs = [dy, x], w.shape, dict(attrs, kernel_hw=(k, k))
    exact = np.empty(out_shape, np.float64)
    accuracy.yardstick(op)(ins[0].astype(np.float64), ins[1].astype(np.float64), exact, attrs)
    return ins, np.empty(out_shape, np.float32), attrs, exact


# (n, c, o, hw, attrs): ResNet-18's families at small batch: 512@7 (where the issue's
# autotuned Winograd ran in training), 64@14, a strided 3x3 and a 1x1 downsample; and a
# MobileNet-like 1x1 at stride 1 (the weight gradient's dots; channels not in fours).
SHAPES = [(1, 512, 512, 7, {}), (2, 64, 64, 14, {}),
          (2, 32, 64, 8, dict(stride=(2, 2))),
          (2, 64, 128, 8, dict(stride=(2, 2), padding=(0, 0, 0, 0))),
          (2, 26, 38, 24, dict(padding=(0, 0, 0, 0)))]


@pytest.mark.parametrize("op", CONV_OPS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}to{s[2]}at{s[3]}")
def test_every_conv_candidate_within_its_declared_growth(op, shape):
    n, c, o, hw, attrs = shape
    k = 1 if attrs.get("padding") == (0, 0, 0, 0) else 3
    ins, out, attrs, exact = conv_case(op, n, c, o, hw, k, **attrs)
    site = array_site(op, ins, out, attrs)
    errors = {}
    for cand in STRATEGIES[op].candidates:
        if not cand.applies(site) or (cand.priority == 0 and c * o > 64 * 64):
            continue  # the direct loops run only where a GEMM has too little work
        cand.build(site).run(ins, out)
        errors[cand.name] = accuracy.relative_error(out, exact)
    assert "gemm" in errors and errors["gemm"] < 1e-5
    for cand in STRATEGIES[op].candidates:
        if cand.name in errors:
            limit = max(accuracy.FLOOR, cand.error_growth * errors["gemm"])
            assert errors[cand.name] <= limit, (cand.name, errors)


@pytest.mark.skipif(not blas.AVAILABLE, reason="numpy's OpenBLAS was not found: no Winograd")
def test_the_autotuner_never_picks_a_candidate_outside_the_contract(monkeypatch, tmp_path):
    """A Winograd that loses accuracy (here: its output rounded to 1e-2) but is the fastest:
    the autotuner measures its error, leaves it out, and says why."""
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "1")
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE_CACHE", str(tmp_path / "autotune.json"))
    autotune.forget()
    from graphcnn.backends.cpu.kernels import winograd
    exact_winograd = winograd.conv2d_winograd

    def lossy(x, w, out, attrs, u=None):
        exact_winograd(x, w, out, attrs, u)
        np.round(out, 2, out=out)
    monkeypatch.setattr(winograd, "conv2d_winograd", lossy)
    measured = {}
    real_pick = autotune.pick

    def pick(kind, key, candidates, default):
        measured["timed"] = sorted(candidates)
        return real_pick(kind, key, candidates, default)
    monkeypatch.setattr(autotune, "pick", pick)
    monkeypatch.setattr(autotune, "_measure", lambda runs: {
        name: (0.1 if name == "winograd" else 1.0 + i) for i, name in enumerate(runs)})
    ins, out, attrs, _ = conv_case("conv2d", 2, 64, 64, 14)
    site = array_site("conv2d", ins, out, attrs)
    chosen, why = choose(site)
    assert chosen.name != "winograd" and "winograd" not in measured["timed"]
    assert "outside the accuracy contract: winograd (error" in why
    # cached: a second process takes the errors from the file, measuring nothing
    autotune.forget()
    monkeypatch.setattr("graphcnn.backends.cpu.accuracy.measure",
                        lambda *a: pytest.fail("measured the errors again"))
    assert choose(array_site("conv2d", ins, out, attrs))[0].name == chosen.name
    autotune.forget()


def test_the_cost_model_goes_by_the_declared_growth(monkeypatch):
    """Without measuring, a factor below an algorithm's declared growth leaves it out."""
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "0")
    ins, out, attrs, _ = conv_case("conv2d", 2, 64, 64, 56)
    site = array_site("conv2d", ins, out, attrs)
    chosen, _ = choose(site)
    monkeypatch.setenv("GRAPHCNN_ACCURACY_FACTOR", "2")
    strict, why = choose(site)
    assert strict.name == "gemm" and "winograd (declared 6x" in why
    if blas.AVAILABLE and chosen.name == "winograd":
        assert chosen.name != strict.name
    monkeypatch.setenv("GRAPHCNN_ACCURACY_FACTOR", "ten")
    with pytest.raises(ValueError, match="GRAPHCNN_ACCURACY_FACTOR='ten'"):
        choose(site)


def test_forced_runs_the_named_candidate_where_it_applies():
    ins, out, attrs, _ = conv_case("conv2d", 2, 64, 64, 14)
    site = array_site("conv2d", ins, out, attrs)
    with forced({"conv2d": "packed"}):
        assert choose(site)[0].name == "packed"
        depthwise = array_site("conv2d", [ins[0], ins[1][:, :1].copy()], out,
                               dict(attrs, groups=64))
        assert choose(depthwise)[0].name == "depthwise-3x3"   # packed does not apply
    assert not choose(site)[1].startswith("forced")


def test_relative_error_flags_non_finite():
    assert accuracy.relative_error(np.array([np.nan]), np.array([1.0])) == float("inf")
    assert accuracy.relative_error(np.array([1.5, 0.0]), np.array([2.0, 0.0])) == 0.25
    assert accuracy.model_bound(1e-6) == accuracy.MODEL_FLOOR
    assert accuracy.model_bound(1e-3) == pytest.approx(1e-2)


# ---- whole models in training --------------------------------------------------------------

def model_errors(grads, exact):
    """Each gradient's error relative to its float64 max, the scale floored at 1e-3 of the
    largest gradient of all (a bias whose exact gradient is 0, as one before a batch norm,
    returns rounding noise in every implementation)."""
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in exact.values())
    return {k: float(np.max(np.abs(np.asarray(grads[k], np.float64) - g)))
            / max(float(np.max(np.abs(g))), floor) for k, g in exact.items()}


def training_case(name, batch, size, **options):
    gc.manual_seed(0)
    model = gc.models.get_model(name, num_classes=10, input_size=size, **options)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    _, exact = gc.value_and_grad(model, batch_size=batch, backend="reference",
                                 dtype="float64")(x.astype(np.float64), y)
    _, ref32 = gc.value_and_grad(model, batch_size=batch, backend="reference")(x, y)
    return model, x, y, exact, model_errors(ref32, exact)


@pytest.mark.parametrize("algorithm", ["gemm", "winograd", "winograd-packed", "packed"])
def test_resnet18_training_gradients_meet_the_contract_with_each_algorithm(algorithm,
                                                                            resnet_case):
    """ResNet-18 (narrowed to width 32, batch 8 at 32x32: batch norm over enough values to
    be well conditioned) in training, every conv node that the algorithm computes forced to
    it: each gradient within max(1e-3, 10x the float32 reference's error) of float64."""
    model, x, y, exact, ref_errors = resnet_case
    with forced({op: algorithm for op in CONV_OPS}):
        step = gc.value_and_grad(model, batch_size=len(x))
    assert any(s.implementation == algorithm for s in step.executable.runner.steps)
    _, grads = step(x, y)
    errors = model_errors(grads, exact)
    over = {k: (errors[k], ref_errors[k]) for k in errors
            if errors[k] > accuracy.model_bound(ref_errors[k])}
    assert not over, over


@pytest.fixture(scope="module")
def resnet_case():
    return training_case("resnet18", 8, 32, width=32)


@pytest.mark.parametrize("algorithm", [None, "packed", "implicit", "dots"])
def test_mobilenet_v2_training_gradients_meet_the_contract(algorithm, mobilenet_case):
    """MobileNetV2 (width 0.5, batch 8 at 48x48, no dropout) in training, with the cost
    model's choices and with each packed GEMM (and the 1x1 weight gradients' dots) forced
    where it applies (no Winograd: its 3x3 convs are depthwise or strided)."""
    model, x, y, exact, ref_errors = mobilenet_case
    with forced({op: algorithm for op in CONV_OPS} if algorithm else {}):
        step = gc.value_and_grad(model, batch_size=len(x))
    _, grads = step(x, y)
    errors = model_errors(grads, exact)
    over = {k: (errors[k], ref_errors[k]) for k in errors
            if errors[k] > accuracy.model_bound(ref_errors[k])}
    assert not over, over


@pytest.fixture(scope="module")
def mobilenet_case():
    return training_case("mobilenet_v2", 8, 48, width_mult=0.5, dropout=0.0)


def test_the_bench_states_its_gradient_check_against_float64(monkeypatch):
    """`graphcnn bench --training`'s line: the yardstick, the tensor nearest its bound with
    PyTorch float32's error beside it, and whether the contract holds (without torch: the
    yardstick is graphcnn's NumPy reference in float64 and the bound 1e-3)."""
    from graphcnn.bench.gradient_check import float64_gradients, gradient_check, gradient_text
    exact = {"a": np.array([1.0, -2.0]), "b": np.array([4.0])}
    mine = {"a": np.array([1.0, -2.0 + 2e-5]), "b": np.array([4.0 + 4e-2])}
    peer = {"a": np.array([1.0, -2.0 + 2e-6]), "b": np.array([4.0 + 4e-6])}
    check = gradient_check(mine, exact, "PyTorch float64", peer)
    assert check["over"] == ["b"] and check["worst"] == "b"
    assert gradient_text(check) == (
        "gradients vs PyTorch float64: worst b 1.0e-02 of its max (PyTorch float32 1.0e-06); "
        "contract max(0.001, 10x PyTorch float32) NOT met by 1 of 2 tensors: b (a ReLU "
        "whose input is within float32 rounding of 0 can flip in any float32 run: README, "
        "Safety)")
    mine["b"] = np.array([4.0 + 4e-7])
    assert gradient_text(gradient_check(mine, exact, "PyTorch float64", peer)).endswith(
        "worst a 1.0e-05 of its max (PyTorch float32 1.0e-06); contract max(0.001, 10x "
        "PyTorch float32) met by all 2 tensors")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # torch not installed
    model = gc.models.lenet5()
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    y = np.array([1, 2])
    source, grads = float64_gradients("lenet5", {}, model, x, y)
    _, mine32 = gc.value_and_grad(model, batch_size=2)(x, y)
    check = gradient_check(mine32, grads, source)
    assert source == "graphcnn reference float64" and not check["over"]
    assert "(PyTorch not installed: no float32 peer to scale by) met by all 10" in \
        gradient_text(check)

"""bce_with_logits: PyTorch's binary cross-entropy with logits, written out here in NumPy
(the values below were checked against torch.nn.functional by hand), the reference
against finite differences in float64, the cpu kernels against the reference, and the
loss by name in a training step."""
import numpy as np
import pytest
from op_check import check_op, forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import GraphBuildError


def written_out(x, y, pos_weight=None, reduction="mean"):
    """PyTorch's documented definition: -[p y log s(x) + (1 - y) log(1 - s(x))]."""
    x, y = np.float64(x), np.float64(y)
    s = 1 / (1 + np.exp(-x))
    p = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    losses = -(p * y * np.log(s) + (1 - y) * np.log(1 - s))
    return losses.mean() if reduction == "mean" else losses.sum()


@pytest.mark.parametrize("attrs", [{}, {"reduction": "sum"}, {"pos_weight": 3.0},
                                   {"pos_weight": (0.5, 2.0, 1.0, 4.0, 1.5)},
                                   {"pos_weight": [2.0], "reduction": "sum"}])
def test_forward_and_gradients_against_the_reference_and_finite_differences(attrs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)) * 3
    y = rng.uniform(0, 1, (6, 5))                      # soft targets (label smoothing)
    check_op("bce_with_logits", [x, y], attrs)
    (got,) = forward("bce_with_logits", [x, y], attrs, "cpu", dtype="float64")
    want = written_out(x, y, attrs.get("pos_weight"), attrs.get("reduction", "mean"))
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_image_shaped_logits_and_hand_computed_values():
    rng = np.random.default_rng(1)
    check_op("bce_with_logits", [rng.standard_normal((2, 3, 4, 4)),
                                 rng.integers(0, 2, (2, 3, 4, 4)).astype(float)],
             {"pos_weight": (1.0, 2.0, 3.0, 4.0)})
    # x = 0: log 2 whatever the target; y = 1, x = 2: log(1 + e^-2); pos_weight 3 triples it
    for backend in ("reference", "cpu"):
        (a,) = forward("bce_with_logits", [np.zeros((1, 2)), np.float64([[0.0, 1.0]])], {},
                       backend)
        (b,) = forward("bce_with_logits", [np.float64([[2.0]]), np.float64([[1.0]])],
                       {"pos_weight": 3.0}, backend)
        assert float(a) == pytest.approx(np.log(2), rel=1e-6)
        assert float(b) == pytest.approx(3 * np.log1p(np.exp(-2.0)), rel=1e-6)


def test_stable_at_large_logits():
    x = np.float32([[-200.0, 200.0, 1e17, -1e17]])
    y = np.float32([[0.0, 1.0, 1.0, 0.0]])
    for backend in ("reference", "cpu"):
        (loss,) = forward("bce_with_logits", [x, y], {"reduction": "sum"}, backend)
        assert float(loss) == 0.0
        (loss,) = forward("bce_with_logits", [x, 1 - y], {"reduction": "sum"}, backend)
        assert float(loss) == pytest.approx(400 + 2e17, rel=1e-6)


def test_bad_attributes_and_shapes_are_named():
    g = gc.ir.Graph()
    x, y = g.input("x", (2, 3)), g.input("y", (2, 3))
    with pytest.raises(GraphBuildError, match="pos_weight has 2 weights.*last axis"):
        g.add("bce_with_logits", [x, y], pos_weight=(1.0, 2.0))
    with pytest.raises(GraphBuildError, match="logits .* and target .* must have"):
        g.add("bce_with_logits", [x, g.input("z", (2, 4))])
    with pytest.raises(GraphBuildError, match="pos_weight must be"):
        g.add("bce_with_logits", [x, y], pos_weight="heavy")


def test_training_step_by_name_and_configured():
    gc.manual_seed(0)
    x = gc.Input((4,), name="x")
    model = gc.Model(x, nn.Linear(4, 3, name="fc")(x), name="heads")
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((8, 4)).astype(np.float32)
    ys = (rng.uniform(size=(8, 3)) > 0.5).astype(np.float32) * 0.9
    losses = {}
    for loss in ("bce_with_logits", gc.losses.Loss("bce_with_logits", pos_weight=(1, 2, 3))):
        ref_loss, ref = gc.value_and_grad(model, loss=loss, batch_size=8,
                                          backend="reference")(xs, ys)
        cpu_loss, cpu = gc.value_and_grad(model, loss=loss, batch_size=8, backend="cpu")(xs, ys)
        assert np.isclose(ref_loss, cpu_loss, rtol=1e-5)
        for k in ref:
            np.testing.assert_allclose(cpu[k], ref[k], rtol=1e-4, atol=1e-6, err_msg=k)
        losses[str(loss)] = float(cpu_loss)
    logits = xs @ model.parameters()["fc.weight"].T + model.parameters()["fc.bias"]
    assert losses["bce_with_logits"] == pytest.approx(written_out(logits, ys), rel=1e-5)
    assert "bce_with_logits" in gc.losses.available()

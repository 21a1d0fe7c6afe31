"""l1 and smooth_l1 (graphcnn/ops/loss_box.py): PyTorch's values and gradients written
out by hand, the reference against finite differences in float64, the cpu kernels against
the reference, and the ignore_nan mask a detector's box head trains with."""
import numpy as np
import pytest
from op_check import check_op, forward, gradients

import graphcnn as gc
from graphcnn.errors import GraphBuildError


def _data(seed=0, shape=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(shape)


@pytest.mark.parametrize("op,attrs", [("l1", {}), ("l1", {"reduction": "sum"}),
                                      ("smooth_l1", {}), ("smooth_l1", {"beta": 0.3}),
                                      ("smooth_l1", {"beta": 0.0, "reduction": "sum"}),
                                      ("smooth_l1", {"beta": 0.5, "ignore_nan": True}),
                                      ("l1", {"ignore_nan": True})])
def test_against_the_definition_finite_differences_and_cpu(op, attrs):
    p, t = _data()
    if attrs.get("ignore_nan"):
        t[0, 1] = np.nan
    check_op(op, [p, t], attrs)
    beta = attrs.get("beta", 1.0) if op == "smooth_l1" else 0.0
    keep = ~np.isnan(t)
    x = (p - t)[keep]
    terms = np.abs(x) if beta == 0 else np.where(np.abs(x) < beta, 0.5 * x * x / beta,
                                                 np.abs(x) - 0.5 * beta)
    want = terms.sum() if attrs.get("reduction") == "sum" else terms.mean()
    for backend in ("reference", "cpu"):
        (got,) = forward(op, [p, t], attrs, backend, dtype="float64")
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_hand_computed_values_and_pytorch_gradients_at_the_edges():
    p = np.array([[0.0, 0.2, -3.0, 1.0]])
    t = np.array([[0.0, 0.0, 0.0, 0.5]])
    # smooth_l1, beta 0.5: x = 0, 0.2, -3, 0.5 -> 0, 0.04, 2.75, 0.25; mean 3.04 / 4
    (loss,) = forward("smooth_l1", [p, t], {"beta": 0.5}, "cpu", dtype="float64")
    assert loss == pytest.approx(3.04 / 4)
    for backend in ("reference", "cpu"):
        # gradients() weighs the loss by a fixed random c: compare the ratio to c's sign
        _, gp, gt = gradients("smooth_l1", [p, t], {"beta": 0.5, "reduction": "sum"}, backend,
                              dtype="float64")
        c = gp[0, 2] / -1.0        # slope -1 at x = -3
        np.testing.assert_allclose(gp / c, [[0.0, 0.4, -1.0, 1.0]], atol=1e-12)
        np.testing.assert_allclose(gt, -gp)
        # l1's gradient is sign(x) with sign(0) = 0, as PyTorch's
        _, gp, _ = gradients("l1", [p, t], {"reduction": "sum"}, backend, dtype="float64")
        c = gp[0, 1]
        np.testing.assert_allclose(gp / c, [[0.0, 1.0, -1.0, 1.0]], atol=1e-12)


def test_nan_and_inf_as_pytorch():
    """A NaN difference: loss NaN; its l1 gradient 0 (PyTorch's), smooth_l1's NaN."""
    p = np.array([[np.nan, np.inf, 1.0]])
    t = np.array([[0.0, 1.0, 1.0]])
    for backend in ("reference", "cpu"):
        (loss,) = forward("l1", [p, t], {}, backend)
        assert np.isnan(loss)
        _, g1, _ = gradients("l1", [p, t], {"reduction": "sum"}, backend)
        _, g2, _ = gradients("smooth_l1", [p, t], {"reduction": "sum"}, backend)
        assert g1[0, 0] == 0 and np.isnan(g2[0, 0])
        assert np.sign(g1[0, 1]) == np.sign(g2[0, 1]) != 0 and g1[0, 2] == g2[0, 2] == 0


def test_ignore_nan_counts_only_the_targets_given():
    p, t = _data(1, (2, 4, 3, 3))
    t[:, :, 1:] = np.nan                      # only row 0 of each grid has a target
    for backend in ("reference", "cpu"):
        (got,) = forward("smooth_l1", [p, t], {"beta": 0.2, "ignore_nan": True}, backend,
                         dtype="float64")
        (want,) = forward("smooth_l1", [p[:, :, :1], t[:, :, :1]], {"beta": 0.2}, backend,
                          dtype="float64")
        assert got == pytest.approx(want, rel=1e-12)
        _, gp, gt = gradients("smooth_l1", [p, t], {"beta": 0.2, "ignore_nan": True}, backend)
        assert np.all(gp[:, :, 1:] == 0) and np.all(gt[:, :, 1:] == 0)
        assert np.all(gp[:, :, :1] != 0)
        # every target ignored: loss 0, gradient 0 (a batch without objects)
        (zero,) = forward("l1", [p, np.full_like(t, np.nan)], {"ignore_nan": True}, backend)
        assert zero == 0
        # without the option a NaN target is NaN, as PyTorch
        (nan,) = forward("l1", [p, t], {}, backend)
        assert np.isnan(nan)


def test_losses_by_name_and_bad_attributes():
    assert {"l1", "smooth_l1"} <= set(gc.losses.available())
    term = gc.losses.Loss("smooth_l1", beta=0.1, ignore_nan=True)
    assert term.target_kind == "like"
    p, t = _data()
    for bad, msg in (({"beta": -1.0}, "beta must be a finite number >= 0"),
                     ({"beta": float("nan")}, "beta"), ({"ignore_nan": 1}, "ignore_nan"),
                     ({"reduction": "none"}, "reduction")):
        with pytest.raises(GraphBuildError, match=msg):
            forward("smooth_l1", [p, t], bad, "reference")
    with pytest.raises(GraphBuildError, match="must match"):
        forward("l1", [p, t[:, :2]], {}, "reference")

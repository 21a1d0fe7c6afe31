"""The public model API: parameters, names, summary, load_parameters, call checks."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn


def mlp(seed: int = 0) -> gc.Model:
    gc.manual_seed(seed)
    x = gc.Input((6,), name="features")
    h = gc.tanh(nn.Linear(6, 5, name="hidden")(x))
    return gc.Model(inputs=x, outputs=nn.Linear(5, 3, name="head")(h), name="mlp")


def test_parameters_in_creation_order_with_torch_layouts():
    model = mlp()
    params = model.parameters()
    assert list(params) == ["hidden.weight", "hidden.bias", "head.weight", "head.bias"]
    assert params["hidden.weight"].shape == (5, 6)   # (out_features, in_features)
    assert all(p.dtype == np.float32 for p in params.values())
    assert model.num_parameters() == 6 * 5 + 5 + 5 * 3 + 3


def test_kaiming_uniform_bounds_like_torch():
    gc.manual_seed(1)
    layer = nn.Conv2d(4, 8, 3)
    w = layer.own_parameters()[0].data
    bound = 1 / np.sqrt(4 * 9)
    assert w.shape == (8, 4, 3, 3)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


def test_seeded_initialization_is_reproducible():
    a, b = mlp(3).parameters(), mlp(3).parameters()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_unnamed_layers_get_kind_and_index():
    x = gc.Input((4,))
    y = nn.Linear(3, 2)(nn.Linear(4, 3)(x))
    assert list(gc.Model(x, y).parameters()) == ["linear_0.weight", "linear_0.bias",
                                                 "linear_1.weight", "linear_1.bias"]


def test_sequential_names_by_position_and_compiles():
    seq = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), input_shape=(4,))
    assert list(seq.parameters()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    out = gc.compile(seq, batch_size=2, backend="reference")(np.ones((2, 4), np.float32))
    assert out.shape == (2, 2)


def test_summary_lists_layers_shapes_and_counts():
    text = mlp().summary(print_fn=None)
    assert "hidden (Linear)" in text and "(None, 5)" in text and "Total params: 53" in text


def test_load_parameters_round_trip_and_mismatch_errors():
    a, b = mlp(0), mlp(1)
    b.load_parameters({k: v.copy() for k, v in a.parameters().items()})
    np.testing.assert_array_equal(a.parameters()["head.bias"], b.parameters()["head.bias"])
    with pytest.raises(KeyError, match="missing"):
        b.load_parameters({"hidden.weight": np.zeros((5, 6))})
    bad = {k: v.copy() for k, v in a.parameters().items()}
    bad["head.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"head.weight.*\(2, 2\).*\(3, 5\)"):
        b.load_parameters(bad)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_wrong_input_shape_or_dtype_is_a_clear_value_error(backend):
    exe = gc.compile(mlp(), batch_size=4, backend=backend)
    with pytest.raises(ValueError, match=r"'features' expects float32 of shape \(4, 6\)"):
        exe(np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="astype"):
        exe(np.zeros((4, 6), np.float64))
    assert exe(np.zeros((4, 6), np.float32)).shape == (4, 3)


def test_compile_freezes_parameters_unless_asked_not_to():
    model = mlp()
    frozen = gc.compile(model, batch_size=1, backend="reference")
    live = gc.compile(model, batch_size=1, backend="reference", frozen=False)
    x = np.ones((1, 6), np.float32)
    before = frozen(x)
    model.parameters()["head.bias"][:] += 1.0
    np.testing.assert_allclose(frozen(x), before)
    np.testing.assert_allclose(live(x), before + 1.0, rtol=1e-6)


def test_report_has_the_documented_keys():
    report = gc.compile(mlp(), batch_size=2, backend="cpu").report()
    for key in ("ops_before", "kernels", "peak_bytes", "naive_bytes", "lower_bound_bytes",
                "compile_seconds"):
        assert key in report
    assert report["lower_bound_bytes"] <= report["naive_bytes"]

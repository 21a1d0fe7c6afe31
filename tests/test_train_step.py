"""The training step on the cpu backend: the kernels chosen for the backward pass and the
gradients they give, against the reference backend (opt level 0) and a float64 oracle."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from graphcnn.backends.cpu.kernels import conv
from graphcnn.backends.cpu.registry import launch
from graphcnn.backends.cpu.strategy import Site, choose

UNPADDED = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)


def weight_grad_oracle(dy, x, groups):
    """dw[o, ci, i, j] = sum over n, oy, ox of dy[n, o, oy, ox] x[n, c, oy+i, ox+j], in
    float64, c the input channel ci of o's group."""
    o_len, kh = dy.shape[1], x.shape[2] - dy.shape[2] + 1
    kw = x.shape[3] - dy.shape[3] + 1
    cg, og = x.shape[1] // groups, o_len // groups
    windows = sliding_window_view(x.astype(np.float64), (kh, kw), axis=(2, 3))
    out = np.zeros((o_len, cg, kh, kw))
    for g in range(groups):
        out[g * og:(g + 1) * og] = np.einsum(
            "nohw,nchwij->ocij", dy[:, g * og:(g + 1) * og].astype(np.float64),
            windows[:, g * cg:(g + 1) * cg])
    return out


@pytest.mark.parametrize("n, c, o, hw, k, groups", [
    (3, 1, 6, (12, 11), (5, 5), 1),     # LeNet-5's c1, smaller
    (2, 4, 6, (7, 9), (3, 2), 2),       # groups, a non-square kernel
    (1, 2, 3, (4, 4), (4, 4), 1),       # a full window: one output pixel
])
def test_the_wide_weight_gradient_matches_a_float64_oracle(n, c, o, hw, k, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    dy = rng.standard_normal((n, o, hw[0] - k[0] + 1, hw[1] - k[1] + 1)).astype(np.float32)
    dw = np.empty((o, c // groups, *k), np.float32)
    conv.conv2d_weight_grad_wide(dy, x, dw, dict(UNPADDED, groups=groups))
    want = weight_grad_oracle(dy, x, groups)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_wide_weight_gradient_keeps_nan_and_inf_where_the_direct_kernel_does():
    """Its zero columns meet real inputs: an infinity there would make 0 * inf = NaN in
    taps that never read it, so an input that is not finite takes the direct kernel."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    x[1, 0, 7, 7] = np.inf       # read by tap (4, 4) only, with dy[1, :, 3, 3]
    dy[0, 1, 0, 0] = np.nan      # every tap of filter 1
    wide, direct = np.empty((2, 1, 5, 5), np.float32), np.empty((2, 1, 5, 5), np.float32)
    conv.conv2d_weight_grad_wide(dy, x, wide, UNPADDED)
    launch(conv._conv2d_weight_grad, dy, x, direct, *conv.geometry(UNPADDED))
    np.testing.assert_array_equal(wide, direct)
    assert np.isnan(wide[1]).all() and np.isfinite(wide[0, 0, :4]).all()


def test_lenet5_c1_weight_gradient_takes_the_wide_kernel():
    """Six filters of one channel: too little work for a GEMM, stride 1 unpadded."""
    shapes = ((64, 6, 28, 28), (64, 1, 32, 32))
    site = Site("conv2d_weight_grad", dict(UNPADDED, kernel_hw=(5, 5)), shapes,
                (np.dtype(np.float32),) * 2, (6, 1, 5, 5), np.dtype(np.float32), (None, None))
    chosen, why = choose(site)
    assert chosen.name == "direct-wide" and "one dot per tap" in why
    padded = dict(site.attrs, padding=(2, 2, 2, 2))
    site = Site("conv2d_weight_grad", padded, ((64, 6, 32, 32), (64, 1, 32, 32)),
                site.in_dtypes, (6, 1, 5, 5), site.out_dtype, (None, None))
    assert choose(site)[0].name == "direct"


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.05), dict(lr=0.05, weight_decay=1e-2), dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(lr=0.02, momentum=0.5, dampening=0.3, weight_decay=0.1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_one_pass_sgd_update_is_bitwise_the_numpy_one(monkeypatch, kwargs, dtype):
    """SGD's fused kernel (graphcnn/optim/sgd_kernel.py) against its NumPy path, over
    three steps (the momentum buffer's first and later ones), NaN and inf included."""
    from graphcnn.optim import SGD, sgd_kernel

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((5, 3, 2)).astype(dtype),
              "b": rng.standard_normal(7).astype(dtype)}
    params["b"][3], params["w"][0, 0, 0] = np.inf, np.nan
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(3)]
    fused = {k: v.copy() for k, v in params.items()}
    opt = SGD(**kwargs)
    for g in grads:
        opt.step(fused, g)
    monkeypatch.setattr(sgd_kernel, "fits", lambda p, g: False)
    plain = {k: v.copy() for k, v in params.items()}
    opt = SGD(**kwargs)
    with np.errstate(invalid="ignore"):   # inf - inf: NumPy warns, the kernel does not
        for g in grads:
            opt.step(plain, g)
    for k in params:
        assert fused[k].dtype == dtype
        np.testing.assert_array_equal(fused[k], plain[k])
    assert not np.array_equal(fused["b"], params["b"])   # it did update


def test_lenet5_training_step_kernels_and_gradients_against_the_reference():
    """The whole training graph at opt level 2 on the cpu: 27 kernels, c1's weight
    gradient on the wide kernel, and loss and gradients those of the reference backend
    at opt level 0 (1e-4 of each gradient's largest value)."""
    import graphcnn as gc

    model = gc.models.lenet5()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    step = gc.value_and_grad(model, batch_size=4, backend="cpu")
    reference = gc.value_and_grad(model, batch_size=4, backend="reference", opt_level=0)
    runner = step.executable.runner
    assert step.report()["kernels"] == len(runner.steps) == 27
    assert ("conv2d_weight_grad", "direct-wide") in {(s.op, s.implementation)
                                                     for s in runner.steps}
    loss, grads = step(x, y)
    want_loss, want = reference(x, y)
    assert abs(loss - want_loss) <= 1e-5 * abs(want_loss)
    assert sorted(grads) == sorted(want)
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=0, atol=1e-4 * np.abs(g).max(),
                                   err_msg=name)

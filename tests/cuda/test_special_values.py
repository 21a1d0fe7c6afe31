"""One float semantics on the cuda backend: NaN, +-Inf, huge, denormal and -0.0 inputs
give what the reference gives (NaN where it has NaN, the same infinities, finite values
close), for the ops whose kernels compare, reduce or take log-sum-exps, on the cases of
tests/special_values.py (a few seeds: the simulator runs each thread in Python)."""
import dataclasses

import numpy as np
import pytest
from op_check import forward
from special_values import CASES, assert_same_floats, sprinkle, sum_atol

# The input gradient's implicit GEMM multiplies the weight by the zeros around dy (the
# reference adds no such products): an infinite weight gives NaN there where the reference
# gives +-inf, so its case puts special values in dy only (a known limit, documented).
CUDA_CASES = dict(CASES, conv2d_input_grad=[dataclasses.replace(c, special=(0,))
                                            for c in CASES["conv2d_input_grad"]])

OPS = ["relu", "relu_grad", "leaky_relu", "clip", "clip_grad", "sigmoid", "max_pool2d",
       "max_pool2d_grad", "avg_pool2d", "global_avg_pool2d", "softmax", "log_softmax",
       "cross_entropy", "cross_entropy_grad", "mse", "batch_norm", "batch_norm_train",
       "sum_to", "linear", "dropout", "conv2d", "conv2d_weight_grad", "conv2d_input_grad",
       "resize2d", "resize2d_grad", "channel_dropout", "bce_with_logits",
       "bce_with_logits_grad", "pixel_cross_entropy", "pixel_cross_entropy_grad",
       "soft_dice", "soft_dice_grad", "running_var_update",
       # the smooth activations and elementwise math whose formulas the simulator runs as
       # the device does: it runs Python's math, which raises where libm gives inf or NaN
       # (exp of a large number, log or sqrt of a negative one), and NumPy float32 scalar
       # arithmetic where the device computes the formulas' float64 literals in float64
       # (the gradients of exp, elu, softplus, softsign, gelu_tanh and mish at 3e38)
       "abs", "abs_grad", "neg", "erf", "elu", "softplus", "softsign", "gelu", "gelu_grad",
       "gelu_tanh", "mish", "maximum", "minimum", "maximum_grad", "minimum_grad",
       "group_norm", "group_norm_grad", "mode_pad", "mode_pad_grad"]
# pow_scalar is left out: the simulator evaluates its formula with Python's math.pow and
# math.sqrt, which raise on a negative base where the compiled libm calls give NaN


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("seed,fraction", [(0, 0.2), (1, 0.6)])
def test_special_values_as_the_reference(op, seed, fraction):
    for case in CUDA_CASES[op]:
        rng = np.random.default_rng(seed)
        ins = sprinkle(rng, case.make(rng), case, fraction)
        want = forward(op, ins, case.attrs, "reference")
        got = forward(op, ins, case.attrs, "cuda")
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same_floats(g, w, f"{op} output {k} (cuda vs reference), seed {seed}",
                               atol=sum_atol(case, ins))


def test_the_exact_cases():
    """Max-pool with a NaN first or second in a 2x2 window; log_softmax of four equal
    1e17 logits; cross-entropy of 3e38 logits (inf, as the reference and PyTorch)."""
    for pos in range(4):
        x = np.zeros((1, 1, 2, 2), np.float32)
        x.reshape(-1)[pos] = np.nan
        (y,) = forward("max_pool2d", [x], {"kernel_size": 2}, "cuda")
        assert np.isnan(y).all(), pos
    (y,) = forward("log_softmax", [np.full((1, 4), 1e17, np.float32)], {"axis": 1}, "cuda")
    np.testing.assert_allclose(y, np.full((1, 4), -np.log(4.0)), rtol=1e-6)
    logits = np.float32([[3e38, 0, 0, 0]] * 4)
    labels = np.int64([1, 1, 1, 0])
    (loss,) = forward("cross_entropy", [logits, labels], {"reduction": "mean"}, "cuda")
    assert loss == np.inf

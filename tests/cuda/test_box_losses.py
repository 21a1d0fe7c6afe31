"""l1 and smooth_l1 on the cuda backend (simulator): forward and gradients against the
reference, with and without the ignore_nan mask, and special values as the reference."""
import numpy as np
import pytest
from helpers import check_cuda, rand
from op_check import forward
from special_values import CASES, assert_same_floats, sprinkle, sum_atol


@pytest.mark.parametrize("op,attrs", [("l1", {"reduction": "mean"}),
                                      ("smooth_l1", {"beta": 0.5, "reduction": "sum"}),
                                      ("smooth_l1", {"beta": 0.7, "ignore_nan": True}),
                                      ("l1", {"ignore_nan": True, "reduction": "sum"})])
def test_box_losses_against_the_reference(op, attrs):
    p, t = rand(14, 5), rand(14, 5, seed=1)     # 70 elements: three simulator blocks
    p[0, :2] = t[0, :2]                          # x == 0: l1's gradient 0
    if attrs.get("ignore_nan"):
        t[::3] = np.nan
    check_cuda(op, [p, t], attrs)


def test_every_target_ignored_is_a_zero_loss():
    p = rand(3, 4)
    (loss,) = forward("l1", [p, np.full_like(p, np.nan)], {"ignore_nan": True}, "cuda")
    assert loss == 0


@pytest.mark.parametrize("op", ["l1", "smooth_l1", "smooth_l1_grad"])
def test_special_values_as_the_reference(op):
    for case in CASES[op]:
        for seed, fraction in ((0, 0.3),):
            rng = np.random.default_rng(seed)
            ins = sprinkle(rng, case.make(rng), case, fraction)
            want = forward(op, ins, case.attrs, "reference")
            got = forward(op, ins, case.attrs, "cuda")
            for k, (g, w) in enumerate(zip(got, want)):
                assert_same_floats(g, w, f"{op} output {k} (cuda vs reference)",
                                   atol=sum_atol(case, ins))

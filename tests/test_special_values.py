"""One float semantics: every op on the cpu backend treats NaN, +-Inf, huge, denormal and
-0.0 inputs as the reference does (IEEE, as PyTorch): NaN where the reference has NaN, the
same infinities, finite values close. Each op with a strategy is checked in every candidate
implementation that applies, not only the one the cost model picks."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from op_check import forward
from special_values import CASES, NOT_APPLICABLE, Case, assert_same_floats, sprinkle, sum_atol

from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import all_ops, get_op


def test_every_registered_op_has_a_case_or_a_reason():
    ops = set(all_ops())
    assert ops == set(CASES) | set(NOT_APPLICABLE), (
        f"without a special-values case: {sorted(ops - set(CASES) - set(NOT_APPLICABLE))}; "
        f"unknown: {sorted((set(CASES) | set(NOT_APPLICABLE)) - ops)}")
    assert not set(CASES) & set(NOT_APPLICABLE)


def candidate_outputs(op: str, ins: list[np.ndarray], attrs: dict[str, Any]
                      ) -> dict[str, np.ndarray]:
    """The op's output from each candidate implementation that applies to these arrays
    (the ops with a cpu strategy); {} for the other ops."""
    from graphcnn.backends.cpu.candidates import array_site
    from graphcnn.backends.cpu.kernels import conv_gemm
    from graphcnn.backends.cpu.strategy import STRATEGIES
    if op not in STRATEGIES:
        return {}
    opdef = get_op(op)
    attrs = opdef.normalize_attrs(attrs, [TensorType(a.shape, str(a.dtype)) for a in ins])
    (out_type,) = opdef.infer([TensorType(a.shape, str(a.dtype)) for a in ins], attrs)
    strategy, results = STRATEGIES[op], {}
    for candidate in strategy.candidates:
        out = np.full(out_type.shape, 7.0, out_type.dtype)
        site = array_site(op, ins, out, attrs)
        if not candidate.applies(site):
            continue
        core = candidate.build(site)
        conv_gemm.begin_call()
        core.run(ins, out)
        if not core.adds_bias and len(ins) == 3 and strategy.add_bias is not None:
            strategy.add_bias(out, ins[2])
        results[candidate.name] = out
    return results


def logical(op: str, y: np.ndarray, ins: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    """A blocked output's real channels (its padding lanes hold whatever the formula makes
    of zeros, which no op reads)."""
    from graphcnn.ops.layout import from_blocked_ref
    if op in ("to_blocked",):
        return from_blocked_ref(y, ins[0].shape[1])
    if op in ("conv2d_blocked", "expand_depthwise_blocked"):
        weight = ins[1] if op == "conv2d_blocked" else ins[3]
        return from_blocked_ref(y, weight.shape[0])
    return y


def check_case(op: str, case: Case, seed: int, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    ins = sprinkle(rng, case.make(rng), case, fraction)
    atol = sum_atol(case, ins)
    want = forward(op, ins, case.attrs, "reference")
    got = forward(op, ins, case.attrs, "cpu")
    for k, (g, w) in enumerate(zip(got, want)):
        assert_same_floats(logical(op, g, ins, case.attrs), logical(op, w, ins, case.attrs),
                           f"{op} output {k} (cpu vs reference), seed {seed}", atol=atol)
    for name, g in candidate_outputs(op, ins, case.attrs).items():
        assert_same_floats(logical(op, g, ins, case.attrs), logical(op, want[0], ins, case.attrs),
                           f"{op} by {name!r} (cpu vs reference), seed {seed}", atol=atol)


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=6, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(seed=st.integers(0, 2**16), fraction=st.sampled_from([0.05, 0.2, 0.6]))
def test_special_values_as_the_reference(op, seed, fraction):
    for case in CASES[op]:
        check_case(op, case, seed, fraction)

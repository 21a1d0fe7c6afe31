"""Special float values for the op tests: inputs with NaN, +-Inf, huge (3e38, 1e17),
denormal (1e-40) and -0.0 sprinkled in, one case per registered op, and the comparison
every backend must pass against the reference: NaN where it has NaN, the same infinities,
finite values close. tests/test_special_values.py runs the cpu backend (every candidate
implementation of the ops with a strategy), tests/cuda/test_special_values.py the cuda
simulator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

NAN, INF = float("nan"), float("inf")
HUGE = (3e38, -3e38)
SPECIALS = (NAN, INF, -INF, 3e38, -3e38, 1e17, -1e17, 1e-40, -1e-40, -0.0)
# Ops that accumulate products in float32 (GEMMs, as PyTorch's): a sum of several 3e38
# terms overflows there but not in the float64 reference, so their cases draw every
# special value except +-3e38 (1e17 still: its products and sums stay finite).
NO_HUGE = tuple(v for v in SPECIALS if v not in HUGE)
SUMS = 1e-6  # Case.sum_tolerance of the ops that sum

Maker = Callable[[np.random.Generator], list[np.ndarray]]


@dataclass
class Case:
    """One op's inputs (made by `make`), attributes, and which float inputs get special
    values (`special`: input indexes; None: all float inputs), drawn from `values`."""
    make: Maker
    attrs: dict[str, Any] = field(default_factory=dict)
    special: tuple[int, ...] | None = None
    values: tuple[float, ...] = SPECIALS
    # Ops that sum many terms (pool gradients, reductions) may sum them in another order
    # or precision than the reference: their finite results are compared within this
    # many times the largest finite input (cancellation between 1e17s leaves ~1e10).
    sum_tolerance: float = 0.0


def normal(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.standard_normal(shape).astype(np.float32)


def arrays(*parts: Callable[[np.random.Generator], np.ndarray]) -> Maker:
    return lambda rng: [p(rng) for p in parts]


def labels(n: int, classes: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.integers(0, classes, n).astype(np.int64)


def pixel_labels(n: int, classes: int, h: int, w: int
                 ) -> Callable[[np.random.Generator], np.ndarray]:
    """(n, h, w) class labels with about a fifth of the pixels ignored (-100)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        labels = rng.integers(0, classes, (n, h, w)).astype(np.int64)
        labels[rng.random((n, h, w)) < 0.2] = -100
        return labels
    return make


def scalar_int(value: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.asarray(value, np.int64)


def positive(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(0.5, 2.0, shape).astype(np.float32)


def blocked(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    """An NCHW16c tensor of the NCHW `shape`, its padding lanes zero (as to_blocked)."""
    from graphcnn.ops.layout import to_blocked_ref
    return lambda rng: to_blocked_ref(rng.standard_normal(shape).astype(np.float32))


def log_softmax_of(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal(shape)
        return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)
    return make


_CONV = dict(padding=1)
_POOL = dict(kernel_size=2, stride=1, padding=1)
_POOL3 = dict(kernel_size=3, stride=2, padding=1)

# op -> its cases. Shapes are small (the test runs every op many times), but large enough
# that every candidate implementation of the ops with a strategy applies to some case.
CASES: dict[str, list[Case]] = {
    "conv2d": [
        Case(arrays(normal(1, 3, 6, 6), normal(4, 3, 3, 3), normal(4)), _CONV, values=NO_HUGE, sum_tolerance=SUMS),
        Case(arrays(normal(1, 4, 5, 5), normal(4, 1, 3, 3), normal(4)), dict(padding=1, groups=4),
             values=NO_HUGE, sum_tolerance=SUMS),
        Case(arrays(normal(2, 3, 4, 4), normal(5, 3, 1, 1)), {}, values=NO_HUGE, sum_tolerance=SUMS),
        Case(arrays(normal(1, 2, 7, 7), normal(3, 2, 3, 3)), dict(stride=2), values=NO_HUGE, sum_tolerance=SUMS),
    ],
    "conv2d_input_grad": [Case(arrays(normal(1, 4, 6, 6), normal(4, 3, 3, 3)),
                               dict(_CONV, input_hw=(6, 6)), values=NO_HUGE, sum_tolerance=SUMS),
                          # depthwise 3x3, stride 1 (the depthwise-3x3 candidate)
                          Case(arrays(normal(2, 4, 5, 5), normal(4, 1, 3, 3)),
                               dict(padding=1, groups=4, input_hw=(5, 5)), values=NO_HUGE,
                               sum_tolerance=SUMS),
                          # depthwise 3x3, stride 2 (the depthwise-3x3-s2 candidate)
                          Case(arrays(normal(2, 4, 3, 3), normal(4, 1, 3, 3)),
                               dict(stride=2, padding=1, groups=4, input_hw=(6, 5)),
                               values=NO_HUGE, sum_tolerance=SUMS)],
    "conv2d_weight_grad": [Case(arrays(normal(1, 4, 6, 6), normal(1, 3, 6, 6)),
                                dict(_CONV, kernel_hw=(3, 3)), values=NO_HUGE, sum_tolerance=SUMS),
                           # stride 1 unpadded (direct-wide), depthwise 3x3 (depthwise-3x3)
                           Case(arrays(normal(2, 2, 4, 4), normal(2, 1, 6, 6)),
                                dict(kernel_hw=(3, 3)), values=NO_HUGE, sum_tolerance=SUMS),
                           Case(arrays(normal(2, 4, 3, 3), normal(2, 4, 5, 5)),
                                dict(stride=2, padding=1, groups=4, kernel_hw=(3, 3)),
                                values=NO_HUGE, sum_tolerance=SUMS)],
    "linear": [Case(arrays(normal(3, 5), normal(4, 5), normal(4)), values=NO_HUGE, sum_tolerance=SUMS)],
    "matmul": [Case(arrays(normal(3, 5), normal(5, 4)), dict(trans_a=False, trans_b=False),
                    values=NO_HUGE, sum_tolerance=SUMS),
               Case(arrays(normal(5, 3), normal(4, 5)), dict(trans_a=True, trans_b=True),
                    values=NO_HUGE, sum_tolerance=SUMS)],
    "relu": [Case(arrays(normal(3, 7)))],
    "relu_grad": [Case(arrays(normal(3, 7), normal(3, 7)))],
    "leaky_relu": [Case(arrays(normal(3, 7)), dict(alpha=0.1))],
    "leaky_relu_grad": [Case(arrays(normal(3, 7), normal(3, 7)), dict(alpha=0.1))],
    "sigmoid": [Case(arrays(normal(3, 7)))],
    "sigmoid_grad": [Case(arrays(normal(3, 7), normal(3, 7)))],
    "tanh": [Case(arrays(normal(3, 7)))],
    "tanh_grad": [Case(arrays(normal(3, 7), normal(3, 7)))],
    "clip": [Case(arrays(normal(3, 7)), dict(low=-0.5, high=6.0))],
    "clip_grad": [Case(arrays(normal(3, 7), normal(3, 7)), dict(low=-0.5, high=6.0))],
    "add": [Case(arrays(normal(3, 7), normal(7)))],
    "sub": [Case(arrays(normal(3, 1), normal(3, 7)))],
    "mul": [Case(arrays(normal(3, 7), normal(3, 7)))],
    "div": [Case(arrays(normal(3, 7), normal(1, 7)))],
    "sum_to": [Case(arrays(normal(3, 4, 5)), dict(shape=(4, 1)), sum_tolerance=SUMS)],
    "broadcast_to": [Case(arrays(normal(4, 1)), dict(shape=(3, 4, 5)))],
    "to_blocked": [Case(arrays(normal(1, 18, 3, 3)))],
    "from_blocked": [Case(arrays(blocked(1, 18, 3, 3)), dict(channels=18), special=())],
    "conv2d_blocked": [
        Case(arrays(blocked(1, 18, 5, 5), normal(20, 18, 1, 1), normal(20)), {},
             values=NO_HUGE, sum_tolerance=SUMS),
        Case(arrays(blocked(1, 18, 5, 5), normal(18, 1, 3, 3), normal(18)),
             dict(padding=1, groups=18), values=NO_HUGE, sum_tolerance=SUMS),
        Case(arrays(normal(1, 5, 6, 6), normal(17, 5, 3, 3), normal(17)), _CONV,
             values=NO_HUGE, sum_tolerance=SUMS),
    ],
    "max_pool2d_blocked": [Case(arrays(blocked(1, 18, 7, 7)), _POOL3),
                           Case(arrays(blocked(1, 18, 8, 8)),
                                dict(kernel_size=3, stride=2, ceil_mode=True))],
    "expand_depthwise_blocked": [
        Case(arrays(blocked(1, 16, 5, 5), normal(32, 16, 1, 1), normal(32), normal(32, 1, 3, 3),
                    normal(32)), dict(padding=1, groups=32, low=0.0, high=6.0),
             values=NO_HUGE, sum_tolerance=SUMS)],
    "cross_entropy": [Case(arrays(normal(4, 5), labels(4, 5)), dict(reduction="mean")),
                      Case(arrays(normal(3, 4), labels(3, 4)), dict(reduction="sum"))],
    "cross_entropy_grad": [Case(arrays(normal(), normal(4, 5), labels(4, 5)),
                                dict(reduction="mean"), special=(1,))],
    "mse": [Case(arrays(normal(3, 4), normal(3, 4)), dict(reduction="mean"))],
    "pixel_cross_entropy": [
        Case(arrays(normal(2, 3, 3, 4), pixel_labels(2, 3, 3, 4)), dict(reduction="mean")),
        Case(arrays(normal(1, 4, 2, 3), pixel_labels(1, 4, 2, 3)),
             dict(reduction="sum", weight=(0.5, 1.0, 2.0, 0.0)))],
    "pixel_cross_entropy_grad": [
        Case(arrays(normal(), normal(2, 3, 3, 4), pixel_labels(2, 3, 3, 4)),
             dict(weight=(0.5, 1.0, 2.0)), special=(1,))],
    "soft_dice": [Case(arrays(normal(2, 3, 3, 4), pixel_labels(2, 3, 3, 4)), sum_tolerance=SUMS),
                  Case(arrays(normal(1, 4, 2, 3), pixel_labels(1, 4, 2, 3)),
                       dict(include_background=False, eps=0.0), sum_tolerance=SUMS)],
    "soft_dice_grad": [Case(arrays(normal(), normal(2, 3, 3, 4), pixel_labels(2, 3, 3, 4)),
                            special=(1,), sum_tolerance=SUMS)],
    "mse_grad": [Case(arrays(normal(), normal(3, 4), normal(3, 4)), dict(reduction="mean"),
                      special=(1, 2))],
    "l1": [Case(arrays(normal(3, 4), normal(3, 4)), dict(reduction="mean")),
           Case(arrays(normal(3, 4), normal(3, 4)), dict(reduction="sum", ignore_nan=True))],
    "smooth_l1": [Case(arrays(normal(3, 4), normal(3, 4)), dict(beta=0.5)),
                  Case(arrays(normal(3, 4), normal(3, 4)), dict(beta=1.0, ignore_nan=True))],
    "smooth_l1_grad": [Case(arrays(normal(), normal(3, 4), normal(3, 4)), dict(beta=0.5),
                            special=(1, 2)),
                       Case(arrays(normal(), normal(3, 4), normal(3, 4)),
                            dict(beta=0.0, ignore_nan=True), special=(1, 2))],
    "bce_with_logits": [Case(arrays(normal(3, 4), normal(3, 4)), dict(reduction="mean")),
                        Case(arrays(normal(3, 4), normal(3, 4)),
                             dict(reduction="sum", pos_weight=(0.5, 2.0, 1.0, 3.0)))],
    "bce_with_logits_grad": [Case(arrays(normal(), normal(3, 4), normal(3, 4)), special=(1, 2)),
                             Case(arrays(normal(), normal(3, 4), normal(3, 4)),
                                  dict(pos_weight=2.0, wrt="target"), special=(1, 2)),
                             Case(arrays(normal(), normal(3, 4), normal(3, 4)),
                                  dict(pos_weight=(0.5, 2.0, 1.0, 3.0)), special=(1, 2))],
    "batch_norm": [Case(arrays(normal(2, 3, 4, 4), normal(3), normal(3), normal(3),
                               positive(3)))],
    "batch_norm_normalize": [Case(arrays(normal(2, 3, 4, 4), normal(3), normal(3), normal(3),
                                         positive(3)))],
    # a world of one: the identity (the mean over several ranks: tests/test_sync_batchnorm.py)
    "allreduce": [Case(arrays(normal(2, 3)), dict(world_size=1))],
    # x is read for its shape only: the special values go into the two statistics
    "running_var_update": [Case(arrays(positive(3), positive(3), normal(2, 3, 4, 4)),
                                dict(momentum=0.1), special=(0, 1))],
    "batch_norm_train": [Case(arrays(normal(2, 3, 4, 4), normal(3), normal(3)), special=(0,),
                              values=NO_HUGE, sum_tolerance=SUMS),
                         Case(arrays(normal(2, 3, 4, 4), normal(3), normal(3)),
                              dict(activation="relu"), special=(0,), values=NO_HUGE,
                              sum_tolerance=SUMS),
                         Case(arrays(normal(2, 3, 4, 4), normal(3), normal(3)),
                              dict(activation="clip", low=0.0, high=6.0), special=(0,),
                              values=NO_HUGE, sum_tolerance=SUMS)],
    "batch_norm_train_grad": [Case(arrays(normal(2, 3, 4, 4), normal(2, 3, 4, 4), normal(3),
                                          normal(3), positive(3)), special=(0, 1),
                                   values=NO_HUGE, sum_tolerance=SUMS)],
    "group_norm": [Case(arrays(normal(2, 4, 3, 3), normal(4), normal(4)),
                        dict(num_groups=2, eps=1e-5), special=(0,), values=NO_HUGE,
                        sum_tolerance=SUMS)],
    "group_norm_grad": [Case(arrays(normal(2, 4, 3, 3), normal(2, 4, 3, 3), normal(4)),
                             dict(num_groups=4, eps=1e-5), special=(0, 1), values=NO_HUGE,
                             sum_tolerance=SUMS)],
    "mode_pad": [Case(arrays(normal(2, 3, 4, 5)), dict(pads=((0, 0), (0, 0), (3, 2), (1, 4)),
                                                      mode="reflect")),
                 Case(arrays(normal(2, 3, 4)), dict(pads=((0, 0), (2, 1), (3, 0)), mode="edge")),
                 Case(arrays(normal(3, 4)), dict(pads=((1, 2), (4, 3)), mode="wrap"))],
    "mode_pad_grad": [Case(arrays(normal(2, 3, 9, 10)),
                           dict(pads=((0, 0), (0, 0), (3, 2), (1, 4)), mode="reflect",
                                input_shape=(2, 3, 4, 5)), sum_tolerance=SUMS),
                      Case(arrays(normal(2, 6, 7)), dict(pads=((0, 0), (2, 1), (3, 0)),
                                                         mode="edge", input_shape=(2, 3, 4)),
                           sum_tolerance=SUMS)],
    "pow_scalar": [Case(arrays(normal(3, 7)), dict(exponent=-0.75, scale=0.5, shift=1.0)),
                   Case(arrays(normal(3, 7)), dict(exponent=2.0)),
                   Case(arrays(normal(3, 7)), dict(exponent=0.5))],
    "dropout": [Case(arrays(normal(3, 9), scalar_int(7)), dict(p=0.3, salt=1))],
    "max_pool2d": [Case(arrays(normal(1, 2, 4, 4)), _POOL), Case(arrays(normal(1, 2, 7, 7)), _POOL3),
                   Case(arrays(normal(1, 2, 4, 6)), dict(kernel_size=2))],
    "max_pool2d_grad": [Case(arrays(normal(1, 2, 5, 5), normal(1, 2, 4, 4)), _POOL),
                        Case(arrays(normal(1, 2, 4, 4), normal(1, 2, 7, 7)), _POOL3)],
    "avg_pool2d": [Case(arrays(normal(1, 2, 4, 4)), _POOL, sum_tolerance=SUMS),
                   Case(arrays(normal(1, 2, 7, 7)), dict(_POOL3, count_include_pad=False),
                        sum_tolerance=SUMS)],
    "avg_pool2d_grad": [Case(arrays(normal(1, 2, 5, 5)), dict(_POOL, input_hw=(4, 4)),
                               sum_tolerance=SUMS)],
    "global_avg_pool2d": [Case(arrays(normal(2, 3, 3, 4)), sum_tolerance=SUMS)],
    "reshape": [Case(arrays(normal(2, 6)), dict(shape=(3, 4)))],
    "flatten": [Case(arrays(normal(2, 3, 2, 2)))],
    "concat": [Case(arrays(normal(2, 3), normal(2, 4)), dict(axis=1))],
    "pad": [Case(arrays(normal(2, 3)), dict(pads=((1, 0), (0, 2)), value=0.0))],
    "slice": [Case(arrays(normal(4, 5)), dict(starts=(1, 0), ends=(3, 4)))],
    "softmax": [Case(arrays(normal(3, 5))), Case(arrays(normal(2, 4, 3)), dict(axis=1))],
    "log_softmax": [Case(arrays(normal(3, 5))), Case(arrays(normal(2, 3, 4)), dict(axis=2))],
    "softmax_grad": [Case(arrays(normal(3, 5), positive(3, 5)), dict(axis=1), values=NO_HUGE, sum_tolerance=SUMS)],
    "log_softmax_grad": [Case(arrays(normal(3, 5), log_softmax_of(3, 5)), dict(axis=1),
                              values=NO_HUGE, sum_tolerance=SUMS)],
    "transpose": [Case(arrays(normal(2, 3, 4)), dict(perm=(2, 0, 1)))],
    "upsample_nearest2d": [Case(arrays(normal(1, 2, 2, 3)), dict(scale=2))],
    "resize2d": [Case(arrays(normal(1, 2, 3, 4)), dict(size=(5, 7), mode="bilinear")),
                 Case(arrays(normal(1, 2, 3, 4)), dict(size=(4, 3), mode="bilinear",
                                                       align_corners=True)),
                 Case(arrays(normal(1, 2, 3, 4)), dict(size=(5, 3), mode="nearest"))],
    # the adjoint sums up to 4 weighted terms per pixel in another order than the reference
    "resize2d_grad": [Case(arrays(normal(1, 2, 5, 7)), dict(size=(5, 7), input_hw=(3, 4),
                                                            mode="bilinear"),
                           values=NO_HUGE, sum_tolerance=SUMS),
                      Case(arrays(normal(1, 2, 5, 3)), dict(size=(5, 3), input_hw=(3, 4),
                                                            mode="nearest"), values=NO_HUGE,
                           sum_tolerance=SUMS)],
    "channel_dropout": [Case(arrays(normal(2, 5, 2, 3), scalar_int(7)), dict(p=0.4, salt=1))],
}

# Registered ops without a case here, and why.
NOT_APPLICABLE: dict[str, str] = {
    "input": "a graph source: no float input to compute on",
    "param": "a graph source: no float input to compute on",
    "constant": "a graph source: no float input to compute on",
    "fused": "made by the fusion pass: tested on fused graphs (test_fused_groups_*)",
}


def sprinkle(rng: np.random.Generator, arrays_: list[np.ndarray], case: Case,
             fraction: float) -> list[np.ndarray]:
    """Copies of `arrays_` with about `fraction` of the elements of the special inputs
    replaced by values drawn from case.values (at least one per special input)."""
    out = []
    for k, a in enumerate(arrays_):
        a = np.array(a)
        chosen = case.special is None or k in case.special
        if chosen and a.dtype.kind == "f" and a.size:
            flat = a.reshape(-1)
            count = max(1, int(round(fraction * a.size)))
            where = rng.choice(a.size, size=min(count, a.size), replace=False)
            flat[where] = rng.choice(np.asarray(case.values, np.float64), size=len(where))
        out.append(a)
    return out


def sum_atol(case: Case, ins: list[np.ndarray]) -> float:
    """The absolute tolerance of a case's finite results: 1e-5, plus for a case that sums,
    its sum_tolerance times its largest finite input."""
    finite = [np.abs(a[np.isfinite(a)]).max(initial=0.0) for a in ins if a.dtype.kind == "f"]
    return 1e-5 + case.sum_tolerance * float(max(finite, default=0.0))


def assert_same_floats(got: np.ndarray, want: np.ndarray, what: str,
                       rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """NaN exactly where `want` has NaN, the same infinities, finite values close."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (
        f"{what}: {got.dtype}{got.shape} != {want.dtype}{want.shape}")
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), (
        f"{what}: NaN at {np.argwhere(nan_g & ~nan_w).tolist()} where the reference has "
        f"{want[nan_g & ~nan_w].tolist()}; not NaN at {np.argwhere(nan_w & ~nan_g).tolist()}"
        f" (got {got[nan_w & ~nan_g].tolist()})")
    inf_g, inf_w = np.isinf(got), np.isinf(want)
    both = ~nan_w
    assert (got[inf_w] == want[inf_w]).all() and (inf_g == inf_w).all(), (
        f"{what}: infinities differ: got {got[inf_g | inf_w].tolist()}, reference "
        f"{want[inf_g | inf_w].tolist()}")
    finite = both & ~inf_w
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=atol, err_msg=what)


# the unary math, smooth activations, pow, maximum, minimum (ops/activations.py,
# ops/binary_math.py)
_SELU = dict(alpha=1.6732632423543772, scale=1.0507009873554805)
_SOFTPLUS = dict(beta=2.0, threshold=3.0)
_UNARY = ("abs", "neg", "exp", "log", "sqrt", "reciprocal", "erf", "softsign", "gelu",
          "gelu_tanh", "mish")
CASES.update({op: [Case(arrays(normal(3, 7)))] for op in _UNARY})
CASES.update({f"{op}_grad": [Case(arrays(normal(3, 7), normal(3, 7)))]
              for op in ("abs", "softsign", "gelu", "gelu_tanh", "mish")})
CASES.update({
    "elu": [Case(arrays(normal(3, 7)), dict(alpha=0.7)), Case(arrays(normal(3, 7)), _SELU)],
    "elu_grad": [Case(arrays(normal(3, 7), normal(3, 7)), _SELU)],
    "softplus": [Case(arrays(normal(3, 7))), Case(arrays(normal(3, 7)), _SOFTPLUS),
                 Case(arrays(normal(3, 7)), dict(threshold=INF))],
    "softplus_grad": [Case(arrays(normal(3, 7), normal(3, 7)), _SOFTPLUS)],
    "pow": [Case(arrays(normal(3, 7), normal(7))), Case(arrays(positive(3, 7), normal(3, 1)))],
    "pow_exponent_grad": [Case(arrays(normal(3, 7), positive(7), positive(3, 7)))],
    "maximum": [Case(arrays(normal(3, 7), normal(7)))],
    "minimum": [Case(arrays(normal(3, 1), normal(3, 7)))],
    "maximum_grad": [Case(arrays(normal(3, 7), normal(3, 7), normal(7)))],
    "minimum_grad": [Case(arrays(normal(3, 7), normal(1, 7), normal(3, 7)))],
})

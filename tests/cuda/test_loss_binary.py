"""bce_with_logits on the cuda backend against the reference: the loss and both of its
gradients (logits and target), with and without pos_weight, in several grid-stride turns."""
import pytest
from helpers import check_cuda, rand


@pytest.mark.parametrize("shape,attrs", [((6, 5), {}),
                                         ((40, 9), {"reduction": "sum", "pos_weight": 2.5}),
                                         ((3, 2, 2, 4), {"pos_weight": (0.5, 1.0, 2.0, 3.0)})])
def test_bce_with_logits(shape, attrs):
    target = (rand(*shape, seed=1) > 0).astype("float32") * 0.8 + 0.1   # soft targets
    check_cuda("bce_with_logits", [rand(*shape) * 3, target], attrs)

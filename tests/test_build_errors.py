"""A bad model fails at build time with a GraphBuildError naming the op, the shapes and
the user's file:line — never a Numba traceback."""
import re

import pytest

import graphcnn as gc
from graphcnn import nn

HERE = re.escape(__file__.split("/")[-1])


def test_dense_size_mismatch_names_op_shapes_and_line():
    x = gc.Input((10,))
    with pytest.raises(gc.GraphBuildError) as err:
        nn.Linear(12, 4)(x)
    message = str(err.value)
    assert message.startswith("linear:")
    assert "10 features" in message and "in_features=12" in message
    assert re.search(HERE + r":\d+", message), message


def test_broadcast_mismatch_names_both_shapes():
    a, b = gc.Input((3, 4)), gc.Input((5,))
    with pytest.raises(gc.GraphBuildError, match=r"add: shapes \(1, 3, 4\) and \(1, 5\)"):
        a + b


def test_non_tensor_input_is_named():
    with pytest.raises(gc.GraphBuildError, match="not a graphcnn Tensor"):
        gc.relu([1, 2, 3])


def test_model_with_foreign_input_is_rejected():
    x, other = gc.Input((3,), name="x"), gc.Input((3,), name="other")
    with pytest.raises(ValueError, match="other"):
        gc.Model(inputs=x, outputs=x + other)

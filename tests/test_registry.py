"""Every registered op has every rule, and every op that runs has a cpu kernel."""
import numpy as np

from graphcnn.backends.cpu.registry import all_kernels
from graphcnn.ops.registry import FusionKind, OpDef, all_ops

SOURCES = {"input", "param", "constant"}


def test_every_op_has_every_rule():
    ops = all_ops()
    assert len(ops) > 30
    for name, op in ops.items():
        assert isinstance(op, OpDef)
        assert op.name == name
        for rule in ("shape", "ref", "vjp"):
            assert callable(getattr(op, rule)), f"{name} has no {rule} rule"
        assert isinstance(op.kind, FusionKind), f"{name} has no fusion kind"
        assert isinstance(op.attrs, dict)


def test_every_runnable_op_has_a_cpu_kernel():
    from graphcnn.backends.cpu import strategy
    assert strategy.STRATEGIES  # importing it registers the kernels of the ops it chooses for
    kernels = all_kernels()
    missing = sorted(set(all_ops()) - SOURCES - set(kernels))
    assert missing == []
    assert not set(kernels) - set(all_ops()), "kernels for ops that are not registered"


def test_the_issue_op_list_is_registered():
    wanted = {"conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "relu", "leaky_relu",
              "sigmoid", "tanh", "softmax", "log_softmax", "linear", "batch_norm",
              "batch_norm_train", "dropout", "flatten", "reshape", "add", "sub", "mul",
              "concat", "pad", "cross_entropy", "mse"}
    assert wanted <= set(all_ops())


def test_attribute_defaults_and_unknown_attribute():
    import pytest

    from graphcnn.errors import GraphBuildError
    from graphcnn.ir import Graph

    g = Graph()
    x = g.input("x", (2, 3))
    y = g.add("leaky_relu", [x])
    assert y.node.attrs == {"alpha": 0.01}
    with pytest.raises(GraphBuildError, match="unknown attribute"):
        g.add("relu", [x], slope=2)
    with pytest.raises(GraphBuildError, match="expected 1 inputs"):
        g.add("relu", [x, x])
    assert np.isclose(y.node.attrs["alpha"], 0.01)

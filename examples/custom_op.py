"""Extend graphcnn with a new op, outside graphcnn's own files: ISRU, the inverse square
root unit y = x / sqrt(1 + alpha x^2), with an attribute, its gradient, a NumPy reference
and a scalar formula from which the cpu backend generates (and fuses) its kernel.

    python examples/custom_op.py

An op is one registry entry (graphcnn/ops/registry.py, register_op): its inputs and
attributes, the shape rule, the NumPy reference, the VJP (built from graph ops, so the
backward pass is a graph too), the fusion kind and, for an elementwise op, its scalar
formula. The script checks the cpu backend against the reference, and the gradient
against finite differences.
"""
import numpy as np

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor, apply
from graphcnn.ops.elementwise import same_as_first
from graphcnn.ops.registry import Attr, FusionKind, register_op


def isru_ref(x, alpha):
    return (x / np.sqrt(1 + alpha * x * x)).astype(x.dtype)


def isru_grad_ref(g, x, alpha):
    return (g * (1 + alpha * x * x) ** -1.5).astype(g.dtype)


def isru_vjp(graph, node, cotangents):
    """d isru / dx = (1 + alpha x^2)^(-3/2): the gradient is one more elementwise op."""
    return [graph.add("isru_grad", [cotangents[0], node.inputs[0]], alpha=node.attrs["alpha"])]


def isru_grad_vjp(graph, node, cotangents):
    """Only what training needs: the gradient with respect to g (not x: no 2nd order)."""
    return [graph.add("isru_grad", [cotangents[0], node.inputs[1]], alpha=node.attrs["alpha"]),
            None]


alpha = {"alpha": Attr(1.0, convert=float)}          # an attribute with its default
register_op("isru", inputs=("x",), shape=same_as_first, kind=FusionKind.ELEMWISE,
            attrs=alpha, ref=isru_ref, vjp=isru_vjp, doc="x / sqrt(1 + alpha x^2)",
            scalar="({0} / math.sqrt(1.0 + {alpha} * {0} * {0}))")
register_op("isru_grad", inputs=("g", "x"), shape=same_as_first, kind=FusionKind.ELEMWISE,
            attrs=alpha, ref=isru_grad_ref, vjp=isru_grad_vjp,
            doc="g * (1 + alpha x^2)^(-3/2)",
            scalar="({0} / ((1.0 + {alpha} * {1} * {1}) * math.sqrt(1.0 + {alpha} * {1} * {1})))")


def isru(x: Tensor, alpha: float = 1.0) -> Tensor:
    """The DSL function: records the op on the graph (shapes are checked here)."""
    return apply("isru", [x], alpha=alpha)


x = gc.Input((1, 8, 8), name="image")
h = isru(nn.Conv2d(1, 4, 3, padding=1)(x), alpha=0.5)   # conv + bias + isru: one kernel
model = gc.Model(x, nn.Linear(4 * 8 * 8, 3)(gc.flatten(h)), name="isru_net")

images = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
cpu = gc.compile(model, batch_size=2)(images)
reference = gc.compile(model, batch_size=2, backend="reference")(images)
assert np.allclose(cpu, reference, atol=1e-5)
print(f"cpu and reference agree: largest difference {np.abs(cpu - reference).max():.2e}")

# gradients: the step differentiates through isru; compare one weight's gradient
# with a central finite difference of the loss, in float64 on the reference backend
X, labels = images.astype(np.float64), np.array([0, 2])
step = gc.value_and_grad(model, batch_size=2, backend="reference", dtype="float64")
loss, grads = step(X, labels)
name, index, eps = "conv2d_0.weight", (0, 0, 1, 1), 1e-3
w = step.parameters[name]                 # the values the step reads (float32 here)
saved = w[index]
w[index] = saved + eps
up, _ = step(X, labels)
w[index] = saved - eps
down, _ = step(X, labels)
w[index] = saved
numeric = (up - down) / (2 * eps)
assert abs(numeric - grads[name][index]) < 1e-5, (numeric, grads[name][index])
print(f"gradient of {name}{list(index)}: {grads[name][index]:.6f} "
      f"(finite difference {numeric:.6f})")

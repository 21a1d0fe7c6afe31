"""Extend graphcnn with a new op, outside graphcnn's own files: softsign,
y = x / (1 + |x|), with its gradient, a NumPy reference and a scalar formula from which
the cpu backend generates (and fuses) its kernel.

    python examples/custom_op.py

An op is one registry entry (graphcnn/ops/registry.py, register_op): its inputs, the
shape rule, the NumPy reference, the VJP (built from graph ops, so the backward pass is a
graph too), the fusion kind and, for an elementwise op, its scalar formula. The script
checks the cpu backend against the reference, and the gradient against finite
differences.
"""
import numpy as np

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor, apply
from graphcnn.ops.elementwise import same_as_first
from graphcnn.ops.registry import FusionKind, register_op


def softsign_vjp(graph, node, cotangents):
    """d softsign / dx = 1 / (1 + |x|)^2: the gradient is one more elementwise op."""
    return [graph.add("softsign_grad", [cotangents[0], node.inputs[0]])]


def softsign_grad_vjp(graph, node, cotangents):
    """Only what training needs: the gradient with respect to g (not x: no 2nd order)."""
    return [graph.add("softsign_grad", [cotangents[0], node.inputs[1]]), None]


register_op("softsign", inputs=("x",), shape=same_as_first, kind=FusionKind.ELEMWISE,
            ref=lambda x: (x / (1 + np.abs(x))).astype(x.dtype), vjp=softsign_vjp,
            scalar="({0} / (1.0 + abs({0})))", doc="x / (1 + |x|)")
register_op("softsign_grad", inputs=("g", "x"), shape=same_as_first,
            kind=FusionKind.ELEMWISE, vjp=softsign_grad_vjp,
            ref=lambda g, x: (g / (1 + np.abs(x)) ** 2).astype(g.dtype),
            scalar="({0} / ((1.0 + abs({1})) * (1.0 + abs({1}))))", doc="g / (1 + |x|)^2")


def softsign(x: Tensor) -> Tensor:
    """The DSL function: records the op on the graph (shapes are checked here)."""
    return apply("softsign", [x])


x = gc.Input((1, 8, 8), name="image")
h = softsign(nn.Conv2d(1, 4, 3, padding=1)(x))      # conv + bias + softsign: one fused kernel
model = gc.Model(x, nn.Linear(4 * 8 * 8, 3)(gc.flatten(h)), name="softsign_net")

images = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
cpu = gc.compile(model, batch_size=2)(images)
reference = gc.compile(model, batch_size=2, backend="reference")(images)
assert np.allclose(cpu, reference, atol=1e-5)
print(f"cpu and reference agree: largest difference {np.abs(cpu - reference).max():.2e}")

# gradients: the step differentiates through softsign; compare one weight's gradient
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

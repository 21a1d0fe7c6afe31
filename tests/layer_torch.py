"""Run a graphcnn layer and its gradients (w.r.t. the input and every parameter) on a
backend, for comparison with the torch layer of the same definition."""
from __future__ import annotations

from typing import Any

import numpy as np

import graphcnn as gc
from graphcnn.autodiff import grad
from graphcnn.runtime.executable import make_runner


def layer_outputs(layer: Any, x: np.ndarray, cot: np.ndarray, backend: str,
                  dtype: str = "float32") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """y = layer(x) and the gradients of sum(y * cot): {"input": dx, parameter name: d}."""
    inp = gc.Input(x.shape[1:], name="x")
    model = gc.Model(inp, layer(inp))
    g = model.graph(x.shape[0], training=False, dtype=dtype, frozen=False)
    x_value = next(n.output for n in g.nodes if n.op == "input")
    params = {n.attrs["name"]: n.output for n in g.nodes if n.op == "param"}
    y = g.outputs[0]
    loss = g.add("sum_to", [g.add("mul", [y, g.constant(cot.astype(dtype))])], shape=())
    names = ["input"] + list(params)
    grads = grad(g, loss, [x_value] + list(params.values()))
    g.set_outputs([y] + grads)
    feed = {x_value.id: x.astype(dtype)}
    values = model.parameters()
    for name, v in params.items():
        feed[v.id] = values[name].astype(dtype)
    out = make_runner(g, backend).run(feed)
    return out[0], dict(zip(names, out[1:]))


def torch_outputs(module: Any, x: np.ndarray, cot: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The same from a torch module (float64 when x is)."""
    import torch
    module.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    (y * torch.tensor(cot)).sum().backward()
    grads = {"input": xt.grad.numpy()}
    for name, p in module.named_parameters():
        grads[name] = p.grad.numpy()
    return y.detach().numpy(), grads

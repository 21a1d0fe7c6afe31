"""The training benchmark's gradient check against a float64 yardstick.

graphcnn's float32 gradients (and PyTorch's float32 ones, when torch is installed) are
compared per tensor with a float64 run of the same step (PyTorch in float64 when torch is
installed, else graphcnn's own cpu backend in float64), each as max |error| / max |exact|
of the tensor. The accuracy contract (graphcnn/backends/cpu/accuracy.py) holds each
tensor within max(1e-3, 10x PyTorch float32's error on it) (within 1e-3 without torch).
The line says which tensor comes closest to its bound, so a reader can tell whether a
difference is expected:

    gradients vs PyTorch float64: worst layer4.1.conv2.weight 3.1e-06 of its max (PyTorch
    float32 5.4e-06); contract max(1e-3, 10x PyTorch float32) met by all 62 tensors
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.accuracy import MODEL_FACTOR, MODEL_FLOOR, model_bound, relative_error


def float64_gradients(name: str, model_kwargs: dict[str, Any], model: Any, x: np.ndarray,
                      y: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """(what computed them, the float64 gradients of the mean cross-entropy): PyTorch's,
    or without PyTorch graphcnn's NumPy reference backend's, which shares no kernel with
    the cpu backend it checks."""
    try:
        import torch
    except ImportError:
        import graphcnn as gc
        step = gc.value_and_grad(model, batch_size=len(x), backend="reference",
                                 dtype="float64")
        _, grads = step(x.astype(np.float64), y)
        return "graphcnn reference float64", {k: np.asarray(v, np.float64)
                                              for k, v in grads.items()}
    from graphcnn.bench.torch_models import build, load_graphcnn_weights
    net = load_graphcnn_weights(build(name, **model_kwargs), model).double().train()
    loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x.astype(np.float64))),
                                             torch.from_numpy(y))
    loss.backward()
    return "PyTorch float64", {k: p.grad.numpy().copy() for k, p in net.named_parameters()
                               if p.grad is not None}


def gradient_check(mine: dict[str, np.ndarray], exact: dict[str, np.ndarray], source: str,
                   peer: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Per tensor: graphcnn's error, the float32 peer's, the contract's bound; the tensor
    nearest its bound and those over it."""
    rows: dict[str, dict[str, Any]] = {}
    for key, truth in exact.items():
        if key not in mine:
            continue
        peer_error = relative_error(peer[key], truth) if peer and key in peer else None
        rows[key] = {"error": relative_error(mine[key], truth), "peer_error": peer_error,
                     "bound": model_bound(peer_error or 0.0)}
    worst = max(rows, key=lambda k: rows[k]["error"] / rows[k]["bound"], default="")
    return {"yardstick": source, "tensors": rows, "worst": worst,
            "over": sorted(k for k, r in rows.items() if r["error"] > r["bound"]),
            "peer": peer is not None}


def gradient_text(check: dict[str, Any]) -> str:
    """One line: the yardstick, the tensor nearest its bound, whether the contract holds."""
    rows, worst = check["tensors"], check["worst"]
    if not worst:
        return f"gradients vs {check['yardstick']}: none compared"
    w = rows[worst]
    text = f"gradients vs {check['yardstick']}: worst {worst} {w['error']:.1e} of its max"
    if check["peer"]:
        text += f" (PyTorch float32 {w['peer_error']:.1e})"
        contract = f"max({MODEL_FLOOR:g}, {MODEL_FACTOR:g}x PyTorch float32)"
    else:
        contract = f"{MODEL_FLOOR:g} (PyTorch not installed: no float32 peer to scale by)"
    if check["over"]:
        return (text + f"; contract {contract} NOT met by {len(check['over'])} of "
                f"{len(rows)} tensors: {', '.join(check['over'][:5])} (a ReLU whose input is "
                f"within float32 rounding of 0 can flip in any float32 run: README, Safety)")
    return text + f"; contract {contract} met by all {len(rows)} tensors"

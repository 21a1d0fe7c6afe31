"""Layer: configuration in __init__, parameters created there (PyTorch style: the layer
knows its shapes), a forward on symbolic tensors, and a name for its parameters."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn import dsl
from graphcnn.dsl import Parameter, Tensor
from graphcnn.seeding import generator


class Layer:
    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._parameters: dict[str, Parameter] = {}

    def add_parameter(self, attr: str, data: np.ndarray, trainable: bool = True) -> Parameter:
        p = Parameter(data, trainable=trainable, owner=self, attr=attr)
        self._parameters[attr] = p
        return p

    def own_parameters(self) -> list[Parameter]:
        return list(self._parameters.values())

    def param(self, attr: str) -> Tensor:
        """The symbolic tensor for one of this layer's parameters."""
        return dsl.parameter_tensor(self._parameters[attr])

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        dsl._layer_stack.append(self)
        try:
            out = self.forward(x, *args, **kwargs)
        finally:
            dsl._layer_stack.pop()
        if out.layer_call is None:  # containers keep the innermost layer's row
            out.layer_call = self
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""


def kaiming_uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """torch.nn's default for Conv and Linear weights: kaiming_uniform_(a=sqrt(5)),
    i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return generator().uniform(-bound, bound, size=shape).astype(np.float32)


def bias_uniform(size: int, fan_in: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return generator().uniform(-bound, bound, size=(size,)).astype(np.float32)

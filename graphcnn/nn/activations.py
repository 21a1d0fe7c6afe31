"""The smooth activations as layers, as in torch.nn: ELU, SELU, GELU, Mish, Softplus,
Softsign (their ops: graphcnn/ops/activations.py)."""
from __future__ import annotations

from graphcnn import functional as F
from graphcnn.arguments import check_number
from graphcnn.dsl import Tensor
from graphcnn.nn.module import Layer


class ELU(Layer):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = check_number("alpha", alpha, owner="ELU")

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class SELU(Layer):
    """scale * elu(x, alpha) with the self-normalizing constants (1.0507, 1.6733)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.selu(x)


class GELU(Layer):
    """x * Phi(x); approximate='tanh' uses the tanh form."""

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name)
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)


class Mish(Layer):
    """x * tanh(softplus(x))."""

    def forward(self, x: Tensor) -> Tensor:
        return F.mish(x)


class Softplus(Layer):
    """log(1 + exp(beta x)) / beta, reverting to x where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.beta = check_number("beta", beta, 0.0, low_open=True, owner="Softplus")
        self.threshold = check_number("threshold", threshold, owner="Softplus")

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)


class Softsign(Layer):
    """x / (1 + |x|)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.softsign(x)

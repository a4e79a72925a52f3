"""Plain (stochastic) gradient descent, θ ← θ − η ∇L, without torch.optim.

torch.optim's first optimizer imports torch._dynamo (1.4-3.4 s per process measured here), most of
the fixed cost of a short job. :class:`GradientDescent` does exactly what ``torch.optim.SGD(params,
lr)`` without momentum does on each tensor (``param.add_(grad, alpha=-lr)``), so results are
bitwise the same; optimizers with state (momentum, Adam) still come from torch.optim.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class GradientDescent:
    """zero_grad() / step() like torch.optim.SGD(params, lr) with momentum 0."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        self.params = list(params)
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)

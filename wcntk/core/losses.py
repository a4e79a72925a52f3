"""Losses and accuracy on network outputs f ∈ ℝ^{N×k}.

mse:  L = 1/(2N) Σ_i ‖f(x_i) − y_i‖²   (y one-hot; the normalization under which
      full-batch GD gives f_{t+1} = f_t − η/N · Θ (f_t − y))
xent: L = 1/N Σ_i −log softmax(f(x_i))_{y_i}   (y integer labels)
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def mse(out: Tensor, target: Tensor) -> Tensor:
    """1/(2N) Σ_i ‖out_i − target_i‖²."""
    return 0.5 * (out - target).pow(2).sum(dim=-1).mean()


def xent(out: Tensor, target: Tensor) -> Tensor:
    """Mean softmax cross-entropy against integer labels."""
    return torch.nn.functional.cross_entropy(out, target)


LOSSES: dict[str, LossFn] = {"mse": mse, "xent": xent}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]


def accuracy(out: Tensor, target: Tensor) -> Tensor:
    """Fraction of argmax(out) equal to the label (argmax of one-hot targets)."""
    labels = target.argmax(dim=-1) if target.dim() == 2 else target
    return (out.argmax(dim=-1) == labels).to(out.dtype).mean()

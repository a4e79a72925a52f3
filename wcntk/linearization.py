"""The linearized twin  f_lin(x; θ) = f(x; θ₀) + J(θ₀)(θ − θ₀).

Evaluated with forward-mode autodiff (one jvp at θ₀ in the direction θ − θ₀), so
no Jacobian is ever materialized; the result is differentiable in θ with ordinary
autograd, so the twin trains in parameter space with any torch optimizer.
For a fixed input batch (full-batch GD, a fixed eval set) `cached(x)` traces the
jvp once with `torch.func.linearize`, so each later call costs only the tangent
half of the computation.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor
from torch.func import jvp, linearize

from .models import Params

Fn = Callable[[Params, Tensor], Tensor]


def tree_sub(a: Params, b: Params) -> Params:
    return {k: a[k] - b[k] for k in a}


def tree_norm(a: Params) -> Tensor:
    """‖a‖₂ over all entries of all tensors."""
    return torch.sqrt(sum(v.pow(2).sum() for v in a.values()))


class LinearizedModel:
    """f_lin(params, x) = f(params0, x) + ⟨∇_θ f(params0, x), params − params0⟩."""

    def __init__(self, f: Fn, params0: Params):
        self.f = f
        self.params0 = {k: v.detach().clone() for k, v in params0.items()}   # own copy: θ₀ must not move

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        out0, tangent = jvp(lambda p: self.f(p, x), (self.params0,), (tree_sub(params, self.params0),))
        return out0 + tangent

    def cached(self, x: Tensor) -> Callable[[Params], Tensor]:
        """params ↦ f_lin(params, x) for this fixed x, with f(θ₀, x) and the
        primal part of the jvp computed once."""
        with warnings.catch_warnings():   # linearize's tracer warns about its own internals
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            out0, jvp_fn = linearize(lambda p: self.f(p, x), self.params0)
        out0 = out0.detach()

        def f_lin(params: Params) -> Tensor:
            return out0 + jvp_fn(tree_sub(params, self.params0))

        return f_lin

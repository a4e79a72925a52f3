"""The linearized twin  f_lin(x; θ) = f(x; θ₀) + J(θ₀)(θ − θ₀).

Evaluated with forward-mode autodiff (one jvp at θ₀ in the direction θ − θ₀), so
no Jacobian is ever materialized; the result is differentiable in θ with ordinary
autograd, so the twin trains in parameter space with any torch optimizer.
For a fixed input batch (full-batch GD, a fixed eval set) `cached(x)` traces the
jvp once (wcntk.core.linearize_trace, from its third call on), so each later call
costs only the tangent half of the computation.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp

from .layers import Fn, Params
from .linearize_trace import linearize
from .mlp import MLP, mlp_layers

TRACE_AFTER = 2   # cached(x): plain jvps for the first calls, the trace from call TRACE_AFTER + 1 on


def tree_sub(a: Params, b: Params) -> Params:
    return {k: a[k] - b[k] for k in a}


def tree_norm(a: Params) -> Tensor:
    """‖a‖₂ over all entries of all tensors."""
    return torch.sqrt(sum(v.pow(2).sum() for v in a.values()))


class LinearizedModel:
    """f_lin(params, x) = f(params0, x) + ⟨∇_θ f(params0, x), params − params0⟩."""

    def __init__(self, f: Fn, params0: Params, trace_after: int = TRACE_AFTER):
        self.f = f
        self.params0 = {k: v.detach().clone() for k, v in params0.items()}   # own copy: θ₀ must not move
        self.trace_after = trace_after   # cached()'s default

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        out0, tangent = jvp(lambda p: self.f(p, x), (self.params0,), (tree_sub(params, self.params0),))
        return out0 + tangent

    def cached(self, x: Tensor, trace_after: int | None = None) -> Callable[[Params], Tensor]:
        """params ↦ f_lin(params, x) for this fixed x, with f(θ₀, x) and the primal part of the
        jvp computed once. The trace costs about two jvp calls (plus, once per process, importing
        torch.fx's tracer): the first `trace_after` calls (default: the model's `trace_after`) are
        plain jvps and the trace is built at the next one, so a function evaluated only once or
        twice (a run with steps=0) never pays it."""
        trace_after = self.trace_after if trace_after is None else trace_after
        calls, traced = 0, None

        def f_lin(params: Params) -> Tensor:
            nonlocal calls, traced
            if traced is None:
                calls += 1
                if calls <= trace_after:
                    return self(params, x)
                traced = self._trace(x)
            return traced(params)

        return f_lin

    def _trace(self, x: Tensor) -> Callable[[Params], Tensor]:
        out0, jvp_fn = linearize(lambda p: self.f(p, x), self.params0)
        out0 = out0.detach()
        return lambda params: out0 + jvp_fn(tree_sub(params, self.params0))


def linearized_mlp(model: MLP, params0: Params, x: Tensor) -> Callable[[Params], Tensor]:
    """params ↦ f_lin(params, x) for our MLP and a fixed x, written out by hand.

    The primal pass at θ₀ is done once; with δ = θ − θ₀ each call then computes only

        ḣ_1 = c_w δW_1 x + c_b δb_1,
        ḣ_{l+1} = c_w (δW_{l+1} a_l + W⁰_{l+1} ȧ_l) + c_b δb_{l+1},   ȧ_l = σ'(h_l) ⊙ ḣ_l,
        f_lin = f(θ₀) + ḣ_{L+1},

    (one matmul per δW and one per W⁰), which autograd differentiates in δ with one
    more matmul each: the twin's step costs what the network's does.
    """
    layers0 = [(w.detach(), b.detach(), c_w, c_b) for w, b, c_w, c_b in mlp_layers(model, params0)]
    with torch.no_grad():
        a, inputs, slopes = x.flatten(1), [], []
        for i, (w, b, c_w, c_b) in enumerate(layers0):
            inputs.append(c_w * a)                                   # c_w·a_{l−1}
            h = c_w * torch.nn.functional.linear(a, w) + c_b * b
            if i < len(model.hidden):
                a, slope = jvp(model.act, (h,), (torch.ones_like(h),))   # σ(h), σ'(h)
                slopes.append(layers0[i + 1][2] * slope)            # c_w of the next layer · σ'(h)
        out0 = h

    def f_lin(params: Params) -> Tensor:
        # c_w·(δW a + W⁰ ȧ) + c_b·δb accumulated in the GEMMs, each c_w on a constant (the
        # inputs, the slopes): no per-call pass over δW (784·4096 at width 4096) or the output,
        # and none in the backward (addmm's alpha and beta would scale its gradients)
        tangent = None   # c_w(next layer)·ȧ, then ḣ_{L+1}
        for i, ((w, b, _, _), (w0, b0, _, c_b), a_in) in enumerate(
                zip(mlp_layers(model, params), layers0, inputs, strict=True)):
            pre = torch.addmm(c_b * (b - b0), a_in, (w - w0).T)
            tangent = pre if tangent is None else torch.addmm(pre, tangent, w0.T)
            if i < len(slopes):
                tangent = slopes[i] * tangent
        return out0 + tangent

    return f_lin

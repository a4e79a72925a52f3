"""Exact derivative correlations over all parameters (DESIGN.md §4).

For a probe input x_a and output o, with φ(θ) = f_o(x_a; θ) and g = ∇_θ φ(θ):

    C02[a, o] = η²/2   · D²φ[g, g]
    C03[a, o] = η³/6   · D³φ[g, g, g]
    C11[a, o] = η^{3/2} · ‖∇²φ · g‖₂

D²φ[g, g] and D³φ[g, g, g] are nested forward-mode jvps along g (one triple
nesting yields both); ∇²φ·g is forward-over-reverse (jvp of grad). Everything is
exact to working precision and costs a few forward passes per (probe, output)
pair, vmapped over chunks of pairs so memory stays at chunk × P numbers.

The step Taylor ratios along one GD step u = −η ∇_θ L(θ₀) use a single shared
direction for all probes:

    step_ratio_d = ‖D^d f(x)[u, …, u] / d!‖_F / ‖Df(x)[u]‖_F   (Frobenius over probes × outputs)
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from .linearization import tree_norm
from .models import Params, detached

Fn = Callable[[Params, Tensor], Tensor]


def _pair_chunk(n_params: int, itemsize: int, budget_bytes: float) -> int:
    """(probe, output) pairs per vmapped chunk: each holds ~12 parameter-sized tensors."""
    return max(1, int(budget_bytes // (12 * n_params * itemsize)))


def _along(fn: Callable[[Params], Tensor], v: Params) -> Callable[[Params], Tensor]:
    """p ↦ Dfn(p)[v], the directional derivative as a new function of p."""
    return lambda p: jvp(fn, (p,), (v,))[1]


def _pair_correlations(f: Fn, params: Params, x_a: Tensor, e_o: Tensor):
    """(D²φ[g,g], D³φ[g,g,g], ‖∇²φ g‖) for φ(θ) = ⟨e_o, f(θ, x_a)⟩."""

    def phi(p: Params) -> Tensor:
        return (f(p, x_a.unsqueeze(0))[0] * e_o).sum()

    grad_phi = grad(phi)
    g = grad_phi(params)
    hess_g = jvp(grad_phi, (params,), (g,))[1]
    second, third = jvp(_along(_along(phi, g), g), (params,), (g,))
    return second, third, tree_norm(hess_g)


def derivative_correlations(f: Fn, params: Params, x: Tensor, lr: float = 1.0,
                            chunk_size: Optional[int] = None,
                            memory_budget_bytes: float = 1e9) -> Dict[str, Tensor]:
    """C02, C03, C11 of every probe x[a] and output o, each a tensor [m, k].

    f(params, x) -> [m, k] must treat rows independently (no batch statistics).
    """
    params = detached(params)
    with torch.no_grad():
        k = f(params, x[:1]).shape[-1]
    m = x.shape[0]
    eye = torch.eye(k, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    probe_idx = torch.arange(m, device=x.device).repeat_interleave(k)
    out_idx = torch.arange(k, device=x.device).repeat(m)
    n_params = sum(v.numel() for v in params.values())
    itemsize = next(iter(params.values())).element_size()
    chunk = chunk_size or _pair_chunk(n_params, itemsize, memory_budget_bytes)
    pair_fn = vmap(lambda xa, eo: _pair_correlations(f, params, xa, eo))
    results = [pair_fn(x[probe_idx[i:i + chunk]], eye[out_idx[i:i + chunk]])
               for i in range(0, m * k, chunk)]
    second, third, hess_norm = (torch.cat(r).reshape(m, k) for r in zip(*results))
    return {
        "C02": lr ** 2 / 2 * second,
        "C03": lr ** 3 / 6 * third,
        "C11": lr ** 1.5 * hess_norm,
    }


def directional_derivative(f: Fn, params: Params, x: Tensor, u: Params, order: int) -> Tensor:
    """D^order f(x)[u, …, u] as [m, k], by `order` nested jvps along u."""
    params = detached(params)
    fn: Callable[[Params], Tensor] = lambda p: f(p, x)
    for _ in range(order):
        fn = _along(fn, u)
    return fn(params)


def step_ratios(f: Fn, params: Params, x: Tensor, u: Params,
                orders: Sequence[int] = (2, 3)) -> Dict[str, Tensor]:
    """step_ratio_d = ‖D^d f(x)[u^d]/d!‖_F / ‖Df(x)[u]‖_F for d in `orders`."""
    first = directional_derivative(f, params, x, u, 1).norm()
    return {f"step_ratio_{d}": directional_derivative(f, params, x, u, d).norm() / math.factorial(d) / first
            for d in orders}


def gd_step_direction(f: Fn, params: Params, x: Tensor, y: Tensor,
                      loss_fn: Callable[[Tensor, Tensor], Tensor], lr: float) -> Params:
    """u = −η ∇_θ L(θ) on (x, y): the first full-batch GD step."""
    params = detached(params)
    g = grad(lambda p: loss_fn(f(p, x), y))(params)
    return {k: -lr * v for k, v in g.items()}

"""Exact derivative correlations over all parameters.

For a probe input x_a and output o, with φ(θ) = f_o(x_a; θ), g = ∇_θ φ(θ) and H = ∇²φ(θ):

    C02[a, o] = η²/2   · D²φ[g, g]     = η²/2 · ⟨g, H g⟩
    C03[a, o] = η³/6   · D³φ[g, g, g]  = η³/6 · ⟨g, D(H·g)[g]⟩
    C11[a, o] = η^{3/2} · ‖H g‖₂

With q(p) = Dφ(p)[g] (a jvp along g; ∇q = H g and ∇²q = D³φ[g, ·, ·] at θ, because g is
held fixed), one forward-over-reverse-over-forward pass per pair gives all three: the jvp along
g of p ↦ ∇q(p) returns ∇q = H g as its primal and ∇²q·g = D³φ[g, g, ·] as its tangent, so
C03 = ⟨g, D³φ[g, g, ·]⟩, and D²φ[g, g] = ⟨g, H g⟩ needs no pass of its own. Differentiating the
reverse pass of the first-order q costs fewer convolutions than differentiating twice the reverse
pass of φ (forward-over-forward-over-reverse: the same numbers, 4-55 % slower on the CNNs of
benchmarks/ntk.py). The outputs of one probe are vmapped inside the probe, so the primal
computations on x_a (forward and the primal half of every jvp) run once per probe, not once per
pair; probes are vmapped in chunks of `_PROBES_PER_CHUNK` (fewer if the memory budget asks):
the k·chunk stacked activation tangents then stay small enough for the cache, which on one CPU
thread is up to 2× faster than stacking all probes. Everything is exact to working precision.
Kept eager: nested jvp under torch.compile crashes.

The step Taylor ratios along one GD step u = −η ∇_θ L(θ₀) use a single shared
direction for all probes:

    step_ratio_d = ‖D^d f(x)[u, …, u] / d!‖_F / ‖Df(x)[u]‖_F   (Frobenius over probes × outputs)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from .layers import Fn, Params, detached
from .linearization import tree_norm
from .ntk import DEFAULT_BUDGET, sample_cost
from .tf32 import no_tf32

# Parameter-sized and activation-sized tensors alive per (probe, output) pair at the peak of the
# nested jvp (g, its tangents and H g, D³φ[g, g, ·]; the tangents of every activation).
_PARAMS_PER_PAIR, _ACTS_PER_PAIR = 8, 12
# Probes per vmapped chunk unless the memory budget allows fewer: measured on the CNNs of
# benchmarks/ntk.py (1 thread), 2-4 probes beat 1 (per-call overhead) and ≥ 8 (cache misses).
_PROBES_PER_CHUNK = 4


def _tree_dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def _along(fn: Callable[[Params], Tensor], v: Params) -> Callable[[Params], Tensor]:
    """p ↦ Dfn(p)[v], the directional derivative as a new function of p."""
    return lambda p: jvp(fn, (p,), (v,))[1]


def _probe_correlations(f: Fn, params: Params, x_a: Tensor, eye: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(D²φ[g,g], D³φ[g,g,g], ‖H g‖), each [k], for every output o of one probe x_a."""

    def one_output(e_o: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        def phi(p: Params) -> Tensor:
            return (f(p, x_a.unsqueeze(0))[0] * e_o).sum()

        g = grad(phi)(params)
        hess_g, third = jvp(grad(_along(phi, g)), (params,), (g,))
        return _tree_dot(g, hess_g), _tree_dot(g, third), tree_norm(hess_g)

    return vmap(one_output)(eye)


@no_tf32()
def derivative_correlations(f: Fn, params: Params, x: Tensor, lr: float = 1.0,
                            chunk_size: int | None = None,
                            memory_budget_bytes: float = DEFAULT_BUDGET) -> dict[str, Tensor]:
    """C02, C03, C11 of every probe x[a] and output o, each a tensor [m, k].

    f(params, x) -> [m, k] must treat rows independently (no batch statistics).
    `chunk_size`: probes per vmapped chunk (default: `_PROBES_PER_CHUNK`), fewer if the memory
    budget asks.
    """
    params = detached(params)
    cost = sample_cost(f, params, x)
    per_probe = cost.k * (_PARAMS_PER_PAIR * cost.n_params + _ACTS_PER_PAIR * cost.saved) * cost.itemsize
    chunk = max(1, min(chunk_size or _PROBES_PER_CHUNK, int(memory_budget_bytes // per_probe)))
    eye = torch.eye(cost.k, dtype=next(iter(params.values())).dtype, device=x.device)
    probe_fn = vmap(lambda xa: _probe_correlations(f, params, xa, eye))
    results = [probe_fn(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    second, third, hess_norm = (torch.cat(r) for r in zip(*results, strict=True))
    return {
        "C02": lr ** 2 / 2 * second,
        "C03": lr ** 3 / 6 * third,
        "C11": lr ** 1.5 * hess_norm,
    }


def _nested(f: Fn, params: Params, x: Tensor, u: Params, order: int) -> Callable[[Params], Tensor]:
    """p ↦ D^order f(p, x)[u, …, u] by `order` nested jvps along u."""

    def fn(p: Params) -> Tensor:
        return f(p, x)

    for _ in range(order):
        fn = _along(fn, u)
    return fn


@no_tf32()
def directional_derivative(f: Fn, params: Params, x: Tensor, u: Params, order: int) -> Tensor:
    """D^order f(x)[u, …, u] as [m, k], by `order` nested jvps along u."""
    return _nested(f, detached(params), x, u, order)(detached(params))


@no_tf32()
def step_ratios(f: Fn, params: Params, x: Tensor, u: Params,
                orders: Sequence[int] = (2, 3)) -> dict[str, Tensor]:
    """step_ratio_d = ‖D^d f(x)[u^d]/d!‖_F / ‖Df(x)[u]‖_F for d in `orders`. The jvp along u of
    p ↦ D^{d-1}f[u^{d-1}] returns D^{d-1} as its primal and D^d as its tangent, so the highest
    order yields the one below it for free."""
    params = detached(params)
    derivs = {1: directional_derivative(f, params, x, u, 1)}
    for d in sorted(orders, reverse=True):
        if d not in derivs:
            derivs[d - 1], derivs[d] = jvp(_nested(f, params, x, u, d - 1), (params,), (u,))
    first = derivs[1].norm()
    return {f"step_ratio_{d}": derivs[d].norm() / math.factorial(d) / first for d in orders}


def gd_step_direction(f: Fn, params: Params, x: Tensor, y: Tensor,
                      loss_fn: Callable[[Tensor, Tensor], Tensor], lr: float) -> Params:
    """u = −η ∇_θ L(θ) on (x, y): the first full-batch GD step."""
    params = detached(params)
    g = grad(lambda p: loss_fn(f(p, x), y))(params)
    return {k: -lr * v for k, v in g.items()}

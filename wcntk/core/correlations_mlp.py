"""Exact derivative correlations (docs/theory.md §2) specialised to our MLP.

Same quantities as :func:`wcntk.core.correlations.derivative_correlations`, for a probe
x_a and output o with φ(θ) = f_o(x_a; θ) and g = ∇_θ φ(θ):

    C02 = η²/2 · D²φ[g, g],   C03 = η³/6 · D³φ[g, g, g],   C11 = η^{3/2} · ‖∇²φ g‖₂,

but without ever materialising g. Layer l = 1 … L+1 (L+1 the readout) computes
h_l = c_w W_l a_{l-1} + c_b b_l with a_0 = x and a_l = σ(h_l). With
δ_l = ∂φ/∂h_l at θ (δ_{L+1} = e_o, δ_l = σ'(h_l) ⊙ q_l, q_l = c_w W_{l+1}ᵀ δ_{l+1})
the gradient is rank one per layer,

    ∂φ/∂W_l = c_w δ_l a_{l-1}ᵀ,        ∂φ/∂b_l = c_b δ_l,

so along θ + s·g every pre-activation is a function of the scalar s alone:

    h_l(s) = c_w W_l a_{l-1}(s) + c_b b_l + s · (c_w² ⟨a_{l-1}, a_{l-1}(s)⟩ + c_b²) · δ_l.

D²φ and D³φ: ψ(s) = φ(θ + s g) = h_{L+1}(s)_o has ψ^{(j)}(0) = D^jφ[g^j], read off
Taylor coefficients (h(s) = Σ_j h_j s^j) pushed through the net, exactly:

    h_{l,j} = c_w W_l a_{l-1,j} + (c_w² ⟨a_{l-1,0}, a_{l-1,j-1}⟩ + c_b² [j=1]) δ_l   (j ≥ 1)
    a_{l,1} = σ' h_1,  a_{l,2} = σ' h_2 + σ''/2 h_1²,  a_{l,3} = σ' h_3 + σ'' h_1 h_2 + σ'''/6 h_1³

with a_{0,j} = 0, σ^{(i)} at h_{l,0}; D²φ[g,g] = 2 h_{L+1,2,o}, D³φ[g,g,g] = 6 h_{L+1,3,o}.

∇²φ g = d/ds ∇φ(θ + s g) at 0. The gradient at θ + s g is still rank one,
c_w δ_l(s) a_{l-1}(s)ᵀ, and backpropagating through W_{l+1}(s) = W_{l+1} + s c_w δ_{l+1} a_lᵀ
gives, with dots for d/ds at 0 (δ̇_{L+1} = 0, ȧ_l = a_{l,1}, ȧ_0 = 0),

    δ̇_l = σ'' h_{l,1} ⊙ q_l + σ' ⊙ (c_w W_{l+1}ᵀ δ̇_{l+1} + c_w² ‖δ_{l+1}‖² a_l)
    ‖∇²φ g‖² = Σ_l c_w² (‖δ̇_l‖² ‖a_{l-1}‖² + 2 ⟨δ̇_l, δ_l⟩ ⟨a_{l-1}, ȧ_{l-1}⟩ + ‖δ_l‖² ‖ȧ_{l-1}‖²)
               + c_b² ‖δ̇_l‖²

(c_w, c_b of layer l+1 inside δ̇_l, of layer l in the sum). σ', σ'', σ''' come from
nested forward-mode autodiff of the activation, elementwise. All (probe, output)
pairs of a chunk run as one batch sharing the weights: five [pairs, width] rows
of matrix products per hidden-to-hidden layer, memory O(pairs × width), never O(parameters).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp

from .layers import Params
from .mlp import MLP, mlp_layers
from .ntk import DEFAULT_BUDGET
from .tf32 import no_tf32

Layer = tuple[Tensor, Tensor, float, float]  # (W, b, c_w, c_b)

# Width-sized tensors alive per (pair, hidden unit) at the peak of a chunk (measured ~20).
_TENSORS_PER_UNIT = 40


def _pair_chunk(units: int, itemsize: int, budget_bytes: float) -> int:
    """(probe, output) pairs per chunk so that the chunk's tensors fit the budget."""
    return max(1, int(budget_bytes // (_TENSORS_PER_UNIT * units * itemsize)))


@no_tf32()
def mlp_derivative_correlations(model: MLP, x: Tensor, lr: float = 1.0,
                                chunk_size: int | None = None,
                                params: Params | None = None,
                                memory_budget_bytes: float = DEFAULT_BUDGET) -> dict[str, Tensor]:
    """C02, C03, C11 of every probe x[a] and output o, each [m, k], for an :class:`MLP`.

    `params` (names as in `params_of(model)`) defaults to the module's own parameters.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"mlp_derivative_correlations needs an MLP, got {type(model).__name__}")
    layers: list[Layer] = [(w.detach(), b.detach(), c_w, c_b) for w, b, c_w, c_b in mlp_layers(model, params)]
    w0 = layers[0][0]
    x = x.to(device=w0.device, dtype=w0.dtype).flatten(1)
    m, k = x.shape[0], layers[-1][0].shape[0]
    units = sum(W.shape[0] for W, _, _, _ in layers)
    chunk = chunk_size or _pair_chunk(units, x.element_size(), memory_budget_bytes)
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    results = []
    for start in range(0, m * k, chunk):
        stop = min(start + chunk, m * k)
        pair = torch.arange(start, stop, device=x.device)   # probe-major: pair = probe·k + o
        lo, hi = start // k, (stop - 1) // k + 1
        results.append(_chunk(layers, model.act, x[lo:hi], pair // k - lo, eye[pair % k]))
    second, third, hess_sq = (torch.cat(r).reshape(m, k) for r in zip(*results, strict=True))
    return {
        "C02": lr ** 2 / 2 * second,
        "C03": lr ** 3 / 6 * third,
        "C11": lr ** 1.5 * hess_sq.sqrt(),
    }


def _act_derivatives(act: Callable[[Tensor], Tensor], h: Tensor) -> tuple[Tensor, ...]:
    """(σ, σ', σ'', σ''') at h, elementwise."""
    ones = torch.ones_like(h)

    def d1(u: Tensor) -> Tensor:
        return jvp(act, (u,), (ones,))[1]

    def d2(u: Tensor) -> Tensor:
        return jvp(d1, (u,), (ones,))[1]

    return (act(h), d1(h), *jvp(d2, (h,), (ones,)))


def _dot(u: Tensor, v: Tensor) -> Tensor:
    return (u * v).sum(-1)


def _chunk(layers: list[Layer], act: Callable[[Tensor], Tensor], x: Tensor, probe: Tensor,
           e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(D²φ[g,g], D³φ[g,g,g], ‖∇²φ g‖²), each [B], for B pairs: probe x[probe[i]], output e[i]."""
    # Forward at θ on the probes, then σ^{(0..3)}(h_{l,0}) of every hidden layer per pair.
    sig, a = [], x
    for W, b, cw, cb in layers[:-1]:
        derivs = _act_derivatives(act, cw * a @ W.T + cb * b)
        sig.append([t[probe] for t in derivs])
        a = derivs[0]
    xx = x.pow(2).sum(-1)[probe]
    acts0 = [s[0] for s in sig]                        # a_1 … a_L at θ

    # δ_l and q_l (δ_l = σ'_l ⊙ q_l), from the readout down.
    deltas, qs = [e], []
    for (W, _, cw, _), s in zip(reversed(layers[1:]), reversed(sig), strict=True):
        qs.insert(0, cw * deltas[0] @ W)
        deltas.insert(0, s[1] * qs[0])

    # Taylor coefficients h_{l,1..3} of every layer, a_{l,1..3} of every hidden layer.
    h1s, a_jets = [], []
    for li, ((W, _, cw, cb), delta) in enumerate(zip(layers, deltas, strict=True)):
        if li == 0:
            h1 = (cw ** 2 * xx + cb ** 2).unsqueeze(-1) * delta
            h2 = h3 = torch.zeros_like(h1)
        else:
            a0, a_prev = acts0[li - 1], a_jets[-1]
            lin = cw * torch.stack(a_prev) @ W.T
            h1, h2, h3 = (lin[j] + (cw ** 2 * _dot(a0, a_j) + (cb ** 2 if j == 0 else 0.0))
                          .unsqueeze(-1) * delta
                          for j, a_j in enumerate((a0, *a_prev[:2])))
        h1s.append(h1)
        if li < len(sig):
            _, s1, s2, s3 = sig[li]
            a_jets.append((s1 * h1, s1 * h2 + s2 / 2 * h1 ** 2,
                           s1 * h3 + s2 * h1 * h2 + s3 / 6 * h1 ** 3))
    second, third = 2 * _dot(e, h2), 6 * _dot(e, h3)

    # δ̇_l from the readout down, then ‖∇²φ g‖² layer by layer.
    delta_dots = [torch.zeros_like(e)]
    for li in reversed(range(len(sig))):
        W, _, cw, _ = layers[li + 1]
        d_next = deltas[li + 1]
        back = cw * delta_dots[0] @ W + (cw ** 2 * _dot(d_next, d_next)).unsqueeze(-1) * acts0[li]
        delta_dots.insert(0, sig[li][2] * h1s[li] * qs[li] + sig[li][1] * back)
    hess_sq = (layers[0][2] ** 2 * xx + layers[0][3] ** 2) * _dot(delta_dots[0], delta_dots[0])
    for li in range(1, len(layers)):
        cw, cb = layers[li][2:]
        a, a_dot, d, d_dot = acts0[li - 1], a_jets[li - 1][0], deltas[li], delta_dots[li]
        dd = _dot(d_dot, d_dot)
        hess_sq = hess_sq + cw ** 2 * (dd * _dot(a, a) + 2 * _dot(d_dot, d) * _dot(a, a_dot)
                                       + _dot(d, d) * _dot(a_dot, a_dot)) + cb ** 2 * dd
    return second, third, hess_sq

"""Empirical NTK and the closed-form kernel dynamics used as a test oracle.

Θ(x, x')_{oo'} = ⟨∇_θ f_o(x), ∇_θ f_{o'}(x')⟩, computed as NTK-vector products
(vjp for Jᵀe, then jvp for J(Jᵀe)) in chunks of rows, so memory stays at
chunk × P numbers whatever the width.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from .models import MLP, Params, mlp_layers

Fn = Callable[[Params, Tensor], Tensor]


def default_chunk(n_params: int, itemsize: int, budget_bytes: float = 512e6) -> int:
    """How many parameter-sized vectors fit in `budget_bytes`."""
    return max(1, int(budget_bytes // (3 * n_params * itemsize)))


def empirical_ntk(f: Fn, params: Params, x1: Tensor, x2: Optional[Tensor] = None,
                  chunk_size: Optional[int] = None) -> Tensor:
    """Θ as a tensor [n1, k, n2, k]; x2 defaults to x1."""
    x2 = x1 if x2 is None else x2
    out1, vjp_fn = vjp(lambda p: f(p, x1), params)
    n1, k = out1.shape
    rows = n1 * k
    n_par = sum(v.numel() for v in params.values())
    chunk = chunk_size or default_chunk(n_par, out1.element_size())
    eye = torch.eye(rows, dtype=out1.dtype, device=out1.device).reshape(rows, n1, k)

    def row_block(cot: Tensor) -> Tensor:
        (grads,) = vjp_fn(cot)
        return jvp(lambda p: f(p, x2), (params,), (grads,))[1]

    blocks = [vmap(row_block)(eye[i:i + chunk]) for i in range(0, rows, chunk)]
    return torch.cat(blocks).reshape(n1, k, *blocks[0].shape[1:]).detach()


def mlp_ntk(model: MLP, x: Tensor, params: Optional[Params] = None) -> Tensor:
    """Θ [m, k, m, k] of an :class:`MLP` from its rank-one per-layer gradients.

    With δ^o_l(x) = ∂f_o(x)/∂h_l and a_{l-1}(x) the input of layer l (the readout included),
    ∂f_o/∂W_l = c_w δ^o_l a_{l-1}ᵀ and ∂f_o/∂b_l = c_b δ^o_l, so

        Θ(x, x')_{oo'} = Σ_l ⟨δ^o_l(x), δ^{o'}_l(x')⟩ · (c_w² ⟨a_{l-1}(x), a_{l-1}(x')⟩ + c_b²).

    Costs one forward and k backward passes on x; never forms a gradient vector.
    """
    layers = [(w.detach(), b.detach(), c_w, c_b) for w, b, c_w, c_b in mlp_layers(model, params)]

    def forward(offsets):
        a, inputs = x.flatten(1), []
        for i, ((w, b, c_w, c_b), off) in enumerate(zip(layers, offsets)):
            inputs.append(a)
            h = c_w * torch.nn.functional.linear(a, w) + c_b * b + off
            a = h if i == len(layers) - 1 else model.act(h)
        return a, inputs

    offsets = [torch.zeros(x.shape[0], w.shape[0], dtype=x.dtype, device=x.device) for w, _, _, _ in layers]
    out, vjp_fn, inputs = vjp(forward, offsets, has_aux=True)
    k = out.shape[1]
    cot = torch.eye(k, dtype=out.dtype, device=out.device)[:, None, :].expand(k, *out.shape)
    (deltas,) = vmap(vjp_fn)(cot)                    # per layer [k, m, width_l]
    ntk = 0
    for (_, _, c_w, c_b), delta, a in zip(layers, deltas, inputs):
        delta_dot = torch.einsum("oai,pbi->aobp", delta, delta)
        ntk = ntk + delta_dot * (c_w ** 2 * (a @ a.T) + c_b ** 2)[:, None, :, None]
    return ntk.detach()


def flat_ntk(ntk: Tensor) -> Tensor:
    """[n1, k, n2, k] → [n1·k, n2·k]."""
    n1, k1, n2, k2 = ntk.shape
    return ntk.reshape(n1 * k1, n2 * k2)


def gd_mse_kernel_dynamics(ntk_train: Tensor, f0_train: Tensor, y_train: Tensor, lr: float,
                           steps: int, ntk_test_train: Optional[Tensor] = None,
                           f0_test: Optional[Tensor] = None):
    """Outputs after `steps` of full-batch GD on L = 1/(2N)Σ‖f − y‖² of the linearized model.

    Train:  f_t = y + (I − η/N Θ)^t (f_0 − y)                (closed form)
    Test:   f_t(x*) = f_0(x*) − η/N Θ(x*, X) Σ_{s<t} (I − η/N Θ)^s (f_0 − y)
    Returns (f_t on train [N, k], f_t on test [M, k] or None).
    """
    n, k = f0_train.shape
    theta = flat_ntk(ntk_train)
    step_matrix = torch.eye(n * k, dtype=theta.dtype, device=theta.device) - lr / n * theta
    r0 = (f0_train - y_train).reshape(-1)
    f_train = y_train + (torch.linalg.matrix_power(step_matrix, steps) @ r0).reshape(n, k)
    if ntk_test_train is None:
        return f_train, None
    residual_sum = torch.zeros_like(r0)
    r = r0
    for _ in range(steps):
        residual_sum = residual_sum + r
        r = step_matrix @ r
    f_test = f0_test - lr / n * (flat_ntk(ntk_test_train) @ residual_sum).reshape(f0_test.shape)
    return f_train, f_test

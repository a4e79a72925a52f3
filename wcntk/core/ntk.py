"""Empirical NTK.

Θ(x, x')_{oo'} = ⟨∇_θ f_o(x), ∇_θ f_{o'}(x')⟩ for a model f(params, x) → [n, k] whose rows are
independent, by one of two exact methods (as in neural-tangents and the PyTorch NTK tutorial):

- ``"jacobian"`` (Jacobian contraction): per-sample Jacobians J(x) [n·k, P] from `jacrev`
  vmapped over single samples (one forward and k backward rows per sample), then Θ = J(x1) J(x2)ᵀ,
  one matmul per parameter tensor. Time ≈ n·k backward rows + 2·n1·n2·k²·P FLOPs of GEMM;
  memory n2·k·P numbers for the stored Jacobian (computed once when x2 is x1).
- ``"ntvp"`` (NTK-vector products): for every column (x2_b, o') the vector g = J(x2_b)ᵀ e_o' by a
  vjp on the single sample x2_b, then the column J(x1) g by one jvp over x1 (the primal shared by
  all columns). Time ≈ n2·k backward rows + n2·k jvps over x1; memory chunk × (P + activations).

``"auto"`` takes the Jacobian contraction when the stored Jacobians fit in `memory_budget_bytes`:
its extra cost, the GEMM, is at most the FLOPs of NTVP's extra jvps whenever k ≤ 2·(forward FLOPs
per sample / 2P) (every parameter is used at least once per sample, a convolution's H·W times)
and a GEMM runs near the machine's peak, while NTVP's jvps are many small operations. Otherwise
(a wide dense net with more parameters than the budget allows to store n·k times) NTVP keeps
memory bounded. Both run in chunks of samples sized from the budget and the activation size of
one sample (measured by the autograd saved-tensor hooks on one forward).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vjp, vmap

from .layers import Fn, Params
from .mlp import MLP, mlp_layers
from .tf32 import no_tf32

NTK_METHODS = ("auto", "jacobian", "ntvp")
DEFAULT_BUDGET = 1e9   # bytes of working memory a chunked NTK or correlation pass may take
# Tensors of one sample's activation size alive per row of a vmapped backward/jvp chunk (measured
# peak ≈ 3-4 on the CNNs, with margin).
_ACTS_PER_ROW = 6


@dataclass(frozen=True)
class SampleCost:
    """What one sample costs: outputs k, parameters P, elements autograd saves in one forward."""

    k: int
    n_params: int
    saved: int
    itemsize: int


def sample_cost(f: Fn, params: Params, x: Tensor, batch: int = 1) -> SampleCost:
    """Run f on x[:batch] (one sample by default) with the autograd saved-tensor hooks counting
    the activation elements (the parameters a layer saves for its backward included)."""
    saved = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal saved
        saved += t.numel()
        return t

    p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = f(p, x[:batch])
    itemsize = next(iter(params.values())).element_size()
    return SampleCost(out.shape[-1], sum(v.numel() for v in params.values()), saved, itemsize)


def choose_method(cost: SampleCost, n1: int, n2: int, same: bool,
                  memory_budget_bytes: float = DEFAULT_BUDGET) -> str:
    """"jacobian" when J(x1) (and J(x2) unless x2 is x1) fit in half the budget, else "ntvp"."""
    rows = cost.k * (n1 if same else n1 + n2)
    return "jacobian" if rows * cost.n_params * cost.itemsize <= memory_budget_bytes / 2 else "ntvp"


def _samples_per_chunk(row_elems: int, rows_per_sample: int, itemsize: int, budget: float) -> int:
    return max(1, int(budget // (rows_per_sample * row_elems * itemsize)))


def _single(f: Fn) -> Callable[[Params, Tensor], Tensor]:
    """f on one sample without its batch dimension (what vmap over samples calls)."""
    return lambda p, xa: f(p, xa.unsqueeze(0)).squeeze(0)


def per_sample_jacobian(f: Fn, params: Params, x: Tensor, chunk: int) -> list[Tensor]:
    """J(x) as one [n·k, P_t] matrix per parameter tensor t: `jacrev` vmapped over single samples,
    `chunk` samples at a time."""
    jac = vmap(jacrev(_single(f)), (None, 0))
    blocks = [jac(params, x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    return [torch.cat([b[name] for b in blocks]).flatten(0, 1).flatten(1) for name in params]


def _ntk_jacobian(f: Fn, params: Params, x1: Tensor, x2: Tensor, same: bool, cost: SampleCost,
                  chunk: int | None, budget: float) -> Tensor:
    chunk = chunk or _samples_per_chunk(cost.n_params + _ACTS_PER_ROW * cost.saved, cost.k,
                                        cost.itemsize, budget / 2)
    j1 = per_sample_jacobian(f, params, x1, chunk)
    j2 = j1 if same else per_sample_jacobian(f, params, x2, chunk)
    ntk = sum(a @ b.T for a, b in zip(j1, j2, strict=True))
    return ntk.reshape(x1.shape[0], cost.k, x2.shape[0], cost.k)


def _ntk_vector_products(f: Fn, params: Params, x1: Tensor, x2: Tensor, cost: SampleCost,
                         chunk: int | None, budget: float) -> Tensor:
    fs = _single(f)
    eye = torch.eye(cost.k, dtype=x1.dtype, device=x1.device)

    def columns(xb: Tensor) -> Tensor:   # Θ[:, :, b, :] as [k, n1, k]
        _, vjp_fn = vjp(lambda p: fs(p, xb), params)
        return vmap(lambda e: jvp(lambda p: f(p, x1), (params,), vjp_fn(e))[1])(eye)

    n1 = x1.shape[0]
    chunk = chunk or _samples_per_chunk(cost.n_params + _ACTS_PER_ROW * n1 * cost.saved, cost.k,
                                        cost.itemsize, budget)
    cols = torch.cat([vmap(columns)(x2[i:i + chunk]) for i in range(0, x2.shape[0], chunk)])
    return cols.permute(2, 3, 0, 1)     # [n2, k, n1, k'] → [n1, k', n2, k]


@no_tf32()
def empirical_ntk(f: Fn, params: Params, x1: Tensor, x2: Tensor | None = None, method: str = "auto",
                  chunk_size: int | None = None, memory_budget_bytes: float = DEFAULT_BUDGET) -> Tensor:
    """Θ as a tensor [n1, k, n2, k]; x2 defaults to x1. `method`: "auto", "jacobian" or "ntvp"
    (module docstring); `chunk_size`: samples per vmapped chunk (default: from the budget)."""
    if method not in NTK_METHODS:
        raise ValueError(f"unknown NTK method {method!r}; choose one of {NTK_METHODS}")
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    params = {k: v.detach() for k, v in params.items()}
    cost = sample_cost(f, params, x1)
    if method == "auto":
        method = choose_method(cost, x1.shape[0], x2.shape[0], same, memory_budget_bytes)
    if method == "jacobian":
        ntk = _ntk_jacobian(f, params, x1, x2, same, cost, chunk_size, memory_budget_bytes)
    else:
        ntk = _ntk_vector_products(f, params, x1, x2, cost, chunk_size, memory_budget_bytes)
    return ntk.detach()


@no_tf32()
def mlp_ntk(model: MLP, x: Tensor, params: Params | None = None) -> Tensor:
    """Θ [m, k, m, k] of an :class:`MLP` from its rank-one per-layer gradients.

    With δ^o_l(x) = ∂f_o(x)/∂h_l and a_{l-1}(x) the input of layer l (the readout included),
    ∂f_o/∂W_l = c_w δ^o_l a_{l-1}ᵀ and ∂f_o/∂b_l = c_b δ^o_l, so

        Θ(x, x')_{oo'} = Σ_l ⟨δ^o_l(x), δ^{o'}_l(x')⟩ · (c_w² ⟨a_{l-1}(x), a_{l-1}(x')⟩ + c_b²).

    Costs one forward and k backward passes on x; never forms a gradient vector.
    """
    layers = [(w.detach(), b.detach(), c_w, c_b) for w, b, c_w, c_b in mlp_layers(model, params)]

    def forward(offsets):
        a, inputs = x.flatten(1), []
        for i, ((w, b, c_w, c_b), off) in enumerate(zip(layers, offsets, strict=True)):
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
    for (_, _, c_w, c_b), delta, a in zip(layers, deltas, inputs, strict=True):
        delta_dot = torch.einsum("oai,pbi->aobp", delta, delta)
        ntk = ntk + delta_dot * (c_w ** 2 * (a @ a.T) + c_b ** 2)[:, None, :, None]
    return ntk.detach()

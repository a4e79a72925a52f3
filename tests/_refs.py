"""Independent numerical references for the numerics tests.

Everything here uses plain reverse-mode autograd (torch.autograd.grad,
torch.autograd.functional.jacobian / hessian) on a *flattened* parameter
vector, and finite differences with Richardson extrapolation; nothing here
uses torch.func, so it does not share code paths with the library's
forward-mode (jvp / vmap / linearize) implementation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

DT = torch.float64
Params = dict[str, Tensor]


# ----------------------------------------------------------------- flattening
def flat(params: Params) -> Tensor:
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflat(vec: Tensor, like: Params) -> Params:
    out, i = {}, 0
    for k, v in like.items():
        n = v.numel()
        out[k] = vec[i:i + n].reshape(v.shape)
        i += n
    assert i == vec.numel()
    return out


def flat_ntk(ntk: Tensor) -> Tensor:
    """An NTK [n1, k, n2, k] as the matrix [n1·k, n2·k] (row-major over (probe, output))."""
    n1, k1, n2, k2 = ntk.shape
    return ntk.reshape(n1 * k1, n2 * k2)


def flat_fn(f, like: Params, x: Tensor) -> Callable[[Tensor], Tensor]:
    """θ_flat ↦ f(θ, x) as a flat vector [m·k] (row-major over (probe, output))."""
    return lambda th: f(unflat(th, like), x).reshape(-1)


def scalar_fn(f, like: Params, x: Tensor, a: int, o: int) -> Callable[[Tensor], Tensor]:
    """θ_flat ↦ f_o(x_a; θ)."""
    xa = x[a:a + 1]
    return lambda th: f(unflat(th, like), xa)[0, o]


# ------------------------------------------------------------ reverse mode refs
def rev_grad(fn: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    th = th.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(th), th)
    return g.detach()


def jacobian(f, params: Params, x: Tensor) -> Tensor:
    """Explicit Jacobian [m·k, P] by torch.autograd.functional.jacobian."""
    th = flat(params).detach()
    return torch.autograd.functional.jacobian(flat_fn(f, params, x), th)


def hessian(fn: Callable[[Tensor], Tensor], th: Tensor) -> Tensor:
    """Explicit Hessian [P, P] of a scalar function of a flat vector."""
    return torch.autograd.functional.hessian(fn, th.detach())


# --------------------------------------------------------- finite differences
def richardson(values: Callable[[float], Tensor], h: float, levels: int) -> Tensor:
    """Extrapolate D(h) = D + c₁h² + c₂h⁴ + … from D(h), D(h/2), …, D(h/2^(levels-1))."""
    table: list[Tensor] = [values(h / 2 ** i) for i in range(levels)]
    for j in range(1, levels):
        fac = 4.0 ** j
        table = [(fac * table[i + 1] - table[i]) / (fac - 1) for i in range(len(table) - 1)]
    return table[0]


def central_derivs(psi: Callable[[float], Tensor], h: float, levels: int = 3) -> tuple[Tensor, Tensor]:
    """(ψ'(0), ψ''(0)) by central differences + Richardson extrapolation."""
    cache: dict[float, Tensor] = {}

    def at(s: float) -> Tensor:
        if s not in cache:
            cache[s] = psi(s)
        return cache[s]

    d1 = richardson(lambda t: (at(t) - at(-t)) / (2 * t), h, levels)
    d2 = richardson(lambda t: (at(t) - 2 * at(0.0) + at(-t)) / (t * t), h, levels)
    return d1, d2


def fd_directional(fn: Callable[[Tensor], Tensor], th: Tensor, v: Tensor, h: float = 0.05,
                   levels: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """(Dφ[v], D²φ[v,v], D³φ[v,v,v]) of a scalar φ = fn at th.

    ψ(s) = ⟨∇φ(th + s v̂), v̂⟩ by reverse-mode autograd (exact first derivative),
    then ψ'(0) = D²φ[v̂,v̂] and ψ''(0) = D³φ[v̂,v̂,v̂] by Richardson-extrapolated
    central differences; rescaled by ‖v‖² and ‖v‖³.
    """
    nv = v.norm()
    vh = v / nv

    def psi(s: float) -> Tensor:
        return rev_grad(fn, th + s * vh) @ vh

    d1, d2 = central_derivs(psi, h, levels)
    return psi(0.0) * nv, d1 * nv ** 2, d2 * nv ** 3


def rel_err(a: Tensor, b: Tensor) -> float:
    """max_i |a_i − b_i| / max(|b_i|, floor), floor = 1e-3·max|b| (guards entries near 0)."""
    a, b = a.detach().to(DT), b.detach().to(DT)
    floor = 1e-3 * b.abs().max().clamp_min(1e-300)
    return ((a - b).abs() / torch.maximum(b.abs(), floor)).max().item()


def train_sgd(fn: Callable[[Params], Tensor], params0: Params, y: Tensor, loss_fn, lr: float,
              steps: int) -> Params:
    """`steps` of full-batch torch.optim.SGD on loss_fn(fn(θ), y), from a copy of params0."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    opt = torch.optim.SGD(list(params.values()), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(fn(params), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in params.items()}


def seeded(shape: Sequence[int], seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def gd_mse_kernel_dynamics(ntk_train: Tensor, f0_train: Tensor, y_train: Tensor, lr: float,
                           steps: int, ntk_test_train: Tensor | None = None,
                           f0_test: Tensor | None = None):
    """Outputs after `steps` of full-batch GD on L = 1/(2N)Σ‖f − y‖² of the linearized model.

    Train:  f_t = y + (I − η/N Θ)^t (f_0 − y)                (closed form)
    Test:   f_t(x*) = f_0(x*) − η/N Θ(x*, X) Σ_{s<t} (I − η/N Θ)^s (f_0 − y)
    Returns (f_t on train [N, k], f_t on test [M, k] or None).
    """
    n, k = f0_train.shape
    theta = ntk_train.reshape(n * k, n * k)
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
    theta_test = ntk_test_train.reshape(f0_test.numel(), n * k)
    f_test = f0_test - lr / n * (theta_test @ residual_sum).reshape(f0_test.shape)
    return f_train, f_test

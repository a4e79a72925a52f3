"""Linearity-deviation metrics (docs/theory.md §2).

With f the network, f_lin its linearization at θ₀ (see `linearization`), θ_t the
network's parameters and θ^lin_t the twin's, on inputs X with targets Y:

    func_rmse        = RMS_{x∈X, o} [f_o(x; θ_t) − f_lin,o(x; θ^lin_t)]
    func_mse         = func_rmse²
    taylor_rmse      = RMS_{x∈X, o} [f_o(x; θ_t) − f_lin,o(x; θ_t)]
    loss_gap         = |L(θ_t) − L_lin(θ^lin_t)|
    param_rel_change = ‖θ_t − θ₀‖ / ‖θ₀‖
    ntk_rel_change   = ‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F
"""
from __future__ import annotations

import torch
from torch import Tensor

from .layers import Params
from .linearization import tree_norm, tree_sub
from .losses import LossFn


def rms(a: Tensor) -> Tensor:
    """sqrt(mean(a²)) over all entries."""
    return a.pow(2).mean().sqrt()


def deviation_from_outputs(out_net: Tensor, out_twin: Tensor, out_taylor: Tensor, target: Tensor,
                           loss_fn: LossFn) -> dict[str, Tensor]:
    """func_rmse, func_mse, taylor_rmse, loss_gap from already computed outputs:
    out_net = f(X; θ_t), out_twin = f_lin(X; θ^lin_t), out_taylor = f_lin(X; θ_t)."""
    func_rmse = rms(out_net - out_twin)
    return {
        "func_rmse": func_rmse,
        "func_mse": func_rmse.pow(2),
        "taylor_rmse": rms(out_net - out_taylor),
        "loss_gap": (loss_fn(out_net, target) - loss_fn(out_twin, target)).abs(),
    }


@torch.no_grad()
def param_rel_change(params0: Params, params_t: Params) -> Tensor:
    """‖θ_t − θ₀‖ / ‖θ₀‖."""
    return tree_norm(tree_sub(params_t, params0)) / tree_norm(params0)


def ntk_rel_change(ntk0: Tensor, ntk_t: Tensor) -> Tensor:
    """‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F."""
    return (ntk_t - ntk0).norm() / ntk0.norm()

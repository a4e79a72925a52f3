"""wcntk.core.metrics (and the mse loss they rely on) against hand computations."""
from __future__ import annotations

import math

import torch

from tests._refs import DT, flat, jacobian, seeded
from wcntk.core import losses
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.linearization import LinearizedModel
from wcntk.core.metrics import (
    deviation_from_outputs,
    ntk_rel_change,
    param_rel_change,
    rms,
)
from wcntk.core.models import build_model


def test_rms_by_hand():
    a = torch.tensor([[3.0, -4.0], [0.0, 12.0]], dtype=DT)
    # sqrt((9 + 16 + 0 + 144) / 4) = sqrt(169/4) = 6.5
    assert rms(a).item() == 6.5
    b = seeded((5, 3), 1)
    ref = math.sqrt(sum(v * v for v in b.reshape(-1).tolist()) / 15)
    assert abs(rms(b).item() - ref) <= 1e-14 * ref


def test_mse_by_hand():
    out = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]], dtype=DT)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=DT)
    # 1/(2N) Σ‖f − y‖² = (4 + 9 + 16 + 1) / 6 = 5
    assert losses.mse(out, y).item() == 5.0


def test_param_rel_change_by_hand():
    p0 = {"a": torch.tensor([3.0, 0.0], dtype=DT), "b": torch.tensor([[4.0]], dtype=DT)}
    pt = {"a": torch.tensor([3.0, 1.0], dtype=DT), "b": torch.tensor([[6.0]], dtype=DT)}
    # ‖(0, 1, 2)‖ / ‖(3, 0, 4)‖ = √5 / 5
    assert abs(param_rel_change(p0, pt).item() - math.sqrt(5) / 5) <= 1e-15
    q0 = {"x": seeded((4, 3), 2), "y": seeded((7,), 3)}
    qt = {k: v + 0.1 * seeded(v.shape, 10 + i) for i, (k, v) in enumerate(q0.items())}
    ref = ((flat(qt) - flat(q0)).pow(2).sum().sqrt() / flat(q0).pow(2).sum().sqrt()).item()
    assert abs(param_rel_change(q0, qt).item() / ref - 1) <= 1e-14
    assert param_rel_change(q0, q0).item() == 0.0


def test_ntk_rel_change_by_hand():
    ntk0 = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=DT).reshape(2, 1, 2, 1)
    ntk_t = torch.tensor([[2.0, 3.0], [3.0, 2.0]], dtype=DT).reshape(2, 1, 2, 1)
    # ‖[[0,2],[2,0]]‖_F / ‖[[2,1],[1,2]]‖_F = √8 / √10
    assert abs(ntk_rel_change(ntk0, ntk_t).item() - math.sqrt(8 / 10)) <= 1e-15
    a, b = seeded((3, 2, 3, 2), 4), seeded((3, 2, 3, 2), 5)
    pairs = zip(b.reshape(-1).tolist(), a.reshape(-1).tolist(), strict=True)
    ref = math.sqrt(sum((u - v) ** 2 for u, v in pairs) / sum(u * u for u in a.reshape(-1).tolist()))
    assert abs(ntk_rel_change(a, b).item() / ref - 1) <= 1e-14


def test_deviation_from_outputs_by_hand():
    out_net = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=DT)
    out_twin = torch.tensor([[1.0, 1.0], [3.0, 2.0]], dtype=DT)
    out_taylor = torch.tensor([[0.0, 2.0], [3.0, 4.0]], dtype=DT)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=DT)
    dev = deviation_from_outputs(out_net, out_twin, out_taylor, target, losses.mse)
    # net − twin = (0, 1, 0, 2): rms = √(5/4)
    assert abs(dev["func_rmse"].item() - math.sqrt(5 / 4)) <= 1e-15
    assert abs(dev["func_mse"].item() - 5 / 4) <= 1e-15
    # net − taylor = (1, 0, 0, 0): rms = √(1/4)
    assert abs(dev["taylor_rmse"].item() - 0.5) <= 1e-15
    # L(net) = (0 + 4 + 9 + 9)/4 = 5.5, L(twin) = (0 + 1 + 9 + 1)/4 = 2.75
    assert abs(dev["loss_gap"].item() - 2.75) <= 1e-15


def test_linearity_deviation_vs_explicit_jacobian():
    """The four deviations, with f_lin(θ) = f(θ₀) + J(θ₀)(θ − θ₀) built from an explicit Jacobian."""
    cfg = ModelConfig(width=8, depth=2, activation="gelu", b_std=0.3)
    model = build_model(cfg, (3,), 2, seed=3, dtype=DT)
    f, p0 = functional(model), params_of(model)
    x, y = seeded((6, 3), 20), seeded((6, 2), 21)
    p_t = {k: v + 0.2 * seeded(v.shape, 30 + i) for i, (k, v) in enumerate(p0.items())}
    p_lin = {k: v + 0.2 * seeded(v.shape, 40 + i) for i, (k, v) in enumerate(p0.items())}
    J = jacobian(f, p0, x)

    def f_lin(p):
        return f(p0, x) + (J @ (flat(p) - flat(p0))).reshape(6, 2)

    net, twin, taylor = f(p_t, x), f_lin(p_lin), f_lin(p_t)
    lin = LinearizedModel(f, p0)
    dev = deviation_from_outputs(f(p_t, x), lin(p_lin, x), lin(p_t, x), y, losses.mse)
    ref = {
        "func_rmse": (net - twin).pow(2).mean().sqrt(),
        "func_mse": (net - twin).pow(2).mean(),
        "taylor_rmse": (net - taylor).pow(2).mean().sqrt(),
        "loss_gap": (0.5 * (net - y).pow(2).sum(1).mean() - 0.5 * (twin - y).pow(2).sum(1).mean()).abs(),
    }
    assert set(dev) == set(ref)
    for name in ref:
        assert ref[name] > 1e-4, name
        torch.testing.assert_close(dev[name], ref[name], rtol=1e-10, atol=0)
    # the four are computed without building a graph
    assert all(not v.requires_grad for v in dev.values())

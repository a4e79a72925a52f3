"""The generic empirical NTK: both methods (Jacobian contraction, NTK-vector products) against
an explicit Jacobian, against each other and against the MLP's rank-one mlp_ntk, in float64,
on an MLP and a CNN; the automatic choice and the chunking."""
from __future__ import annotations

import pytest
import torch

from tests._refs import DT, flat_ntk, jacobian, seeded
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model
from wcntk.core.ntk import choose_method, empirical_ntk, mlp_ntk, sample_cost

K = 3
SHAPES = {"mlp": (5,), "cnn": (2, 5, 5)}


def _case(kind: str, activation: str = "tanh", depth: int = 2):
    cfg = ModelConfig(kind=kind, width=6, depth=depth, activation=activation, w_std=1.3, b_std=0.4)
    model = build_model(cfg, SHAPES[kind], K, seed=3, dtype=DT)
    x1, x2 = seeded((4, *SHAPES[kind]), 11), seeded((3, *SHAPES[kind]), 12)
    return model, functional(model), params_of(model), x1, x2


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["jacobian", "ntvp", "auto"])
def test_each_method_matches_explicit_jacobian(kind, method):
    _, f, p, x1, x2 = _case(kind)
    j1, j2 = jacobian(f, p, x1), jacobian(f, p, x2)
    same = empirical_ntk(f, p, x1, method=method)
    assert same.shape == (4, K, 4, K) and same.dtype == DT
    torch.testing.assert_close(flat_ntk(same), j1 @ j1.T, rtol=1e-12, atol=1e-13)
    cross = empirical_ntk(f, p, x1, x2, method=method)
    assert cross.shape == (4, K, 3, K)
    torch.testing.assert_close(flat_ntk(cross), j1 @ j2.T, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_methods_agree_with_each_other(kind):
    _, f, p, x1, x2 = _case(kind, activation="relu", depth=3)
    jac = empirical_ntk(f, p, x1, x2, method="jacobian")
    ntvp = empirical_ntk(f, p, x1, x2, method="ntvp")
    torch.testing.assert_close(ntvp, jac, rtol=1e-13, atol=1e-14)
    assert jac.abs().max() > 1e-3   # not trivially zero


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_generic_methods_match_mlp_ntk(method, activation):
    model, f, p, x1, _ = _case("mlp", activation=activation)
    torch.testing.assert_close(empirical_ntk(f, p, x1, method=method), mlp_ntk(model, x1),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method", ["jacobian", "ntvp"])
@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_chunking_does_not_change_the_kernel(method, chunk):
    _, f, p, x1, x2 = _case("cnn")
    full = empirical_ntk(f, p, x1, x2, method=method)
    torch.testing.assert_close(empirical_ntk(f, p, x1, x2, method=method, chunk_size=chunk), full,
                               rtol=1e-13, atol=1e-14)


def test_float32_agrees_with_float64():
    model, f, p, x1, _ = _case("cnn", activation="relu")
    ref = empirical_ntk(f, p, x1)
    p32 = {k: v.float() for k, v in p.items()}
    for method in ("jacobian", "ntvp"):
        got = empirical_ntk(f, p32, x1.float(), method=method)
        assert got.dtype == torch.float32
        assert (got.double() - ref).norm() / ref.norm() < 1e-5


def test_auto_takes_the_contraction_unless_the_jacobian_exceeds_the_budget():
    _, f, p, x1, _ = _case("cnn")
    cost = sample_cost(f, p, x1)
    n_params = sum(v.numel() for v in p.values())
    assert (cost.k, cost.n_params, cost.itemsize) == (K, n_params, 8)
    assert cost.saved > 0
    jac_bytes = 4 * K * n_params * 8
    assert choose_method(cost, 4, 4, same=True, memory_budget_bytes=2 * jac_bytes) == "jacobian"
    assert choose_method(cost, 4, 4, same=True, memory_budget_bytes=2 * jac_bytes - 1) == "ntvp"
    # x2 distinct from x1: both Jacobians are stored
    assert choose_method(cost, 4, 4, same=False, memory_budget_bytes=2 * jac_bytes) == "ntvp"
    small = empirical_ntk(f, p, x1, memory_budget_bytes=jac_bytes)   # runs NTK-vector products
    torch.testing.assert_close(small, empirical_ntk(f, p, x1, method="jacobian"), rtol=1e-13, atol=1e-14)


def test_unknown_method_is_rejected():
    _, f, p, x1, _ = _case("mlp")
    with pytest.raises(ValueError, match="unknown NTK method"):
        empirical_ntk(f, p, x1, method="structured")

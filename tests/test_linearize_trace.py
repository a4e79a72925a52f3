"""The twin's traced tangent map (wcntk.core.linearize_trace) against explicit Jacobians.

Reference: J = torch.autograd.functional.jacobian of f at θ₀ (float64, no torch.func); the
traced map must give J·δ and, through autograd, Jᵀ·r, for every network the generic path serves.
"""
from __future__ import annotations

import pytest
import torch

from tests._refs import DT, flat, jacobian, rel_err, seeded
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.linearize_trace import linearize
from wcntk.core.models import build_model

NETWORKS = [ModelConfig(kind="cnn", width=4, depth=2, activation="tanh"),
            ModelConfig(kind="resnet", width=4, depth=2),
            ModelConfig(kind="transformer", width=4, depth=1, heads=2, activation="gelu")]


@pytest.fixture(scope="module", params=NETWORKS, ids=lambda c: c.kind)
def traced(request):
    model = build_model(request.param, (1, 8, 8), 3, seed=5, dtype=DT)
    f, params0 = functional(model), params_of(model)
    x = seeded((4, 1, 8, 8), 11)
    out0, jvp_fn = linearize(lambda p: f(p, x), params0)
    return dict(f=f, params0=params0, x=x, out0=out0, jvp_fn=jvp_fn, J=jacobian(f, params0, x))


def test_traced_tangent_map_is_the_jacobian_and_its_gradient_the_transpose(traced):
    """out0 = f(θ₀, x); jvp_fn(δ) = J δ; ∂⟨r, jvp_fn(δ)⟩/∂δ = Jᵀ r (the twin's gradient)."""
    params0, J = traced["params0"], traced["J"]
    assert torch.allclose(traced["out0"], traced["f"](params0, traced["x"]), rtol=0, atol=1e-14)
    delta = {k: seeded(v.shape, 40 + i).requires_grad_(True) for i, (k, v) in enumerate(params0.items())}
    out = traced["jvp_fn"](delta)
    assert rel_err(out.reshape(-1), J @ flat(delta).detach()) < 1e-12
    r = seeded(out.shape, 60)
    (out * r).sum().backward()
    grad = torch.cat([delta[k].grad.reshape(-1) for k in params0])
    assert rel_err(grad, J.T @ r.reshape(-1)) < 1e-12


def test_the_trace_keeps_none_of_forward_ads_identity_copies(traced):
    """No `_to_copy`, `expand`, tangent copy or zero constant is left in the traced graph (each was
    a full-size pass per call; torch.func.linearize's trace of these networks holds them all)."""
    ops = {str(n.target) for n in traced["jvp_fn"].graph.nodes if n.op == "call_function"}
    left = ops & {"aten._to_copy.default", "aten.expand.default", "aten.copy_.default", "aten.zeros.default",
                  "aten._efficientzerotensor.default", "aten._new_zeros_with_same_feature_meta.default"}
    assert "aten.convolution.default" in ops or "aten.addmm.default" in ops
    assert not left

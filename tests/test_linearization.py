"""The linearized twin, the empirical NTK and the closed-form kernel dynamics.

References: explicit Jacobians from torch.autograd.functional.jacobian (no
torch.func), Θ = J Jᵀ, and an explicit parameter-space GD iteration of the
linear model θ ↦ f₀ + J(θ − θ₀).
"""
from __future__ import annotations

import pytest
import torch

from tests._refs import DT, flat, flat_ntk, gd_mse_kernel_dynamics, jacobian, rel_err, seeded, train_sgd
from wcntk.core import losses
from wcntk.core.layers import ACTIVATIONS, ModelConfig, functional, params_of
from wcntk.core.linearization import LinearizedModel, linearized_mlp
from wcntk.core.metrics import deviation_from_outputs
from wcntk.core.models import build_model
from wcntk.core.ntk import empirical_ntk

D_IN, K, N_TRAIN, N_TEST = 3, 2, 5, 4
LR, STEPS = 0.8, 25


@pytest.fixture(scope="module")
def net():
    cfg = ModelConfig(width=10, depth=2, activation="tanh", w_std=1.2, b_std=0.3)
    model = build_model(cfg, (D_IN,), K, seed=7, dtype=DT)
    f, params0 = functional(model), params_of(model)
    x, xt = seeded((N_TRAIN, D_IN), 31), seeded((N_TEST, D_IN), 32)
    y = seeded((N_TRAIN, K), 33)
    J, Jt = jacobian(f, params0, x), jacobian(f, params0, xt)   # [N·k, P], [M·k, P]
    return dict(f=f, params0=params0, x=x, xt=xt, y=y, J=J, Jt=Jt)


def _perturbed(params, seed, scale=0.3):
    return {k: v + scale * seeded(v.shape, seed + i) for i, (k, v) in enumerate(params.items())}


# ----------------------------------------------------------------------- twin
def test_twin_at_theta0_equals_network(net):
    lin = LinearizedModel(net["f"], net["params0"])
    f0 = net["f"](net["params0"], net["x"])
    torch.testing.assert_close(lin(net["params0"], net["x"]), f0, rtol=0, atol=0)
    torch.testing.assert_close(lin.cached(net["x"], trace_after=0)(net["params0"]), f0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_twin_matches_explicit_jacobian(net, mode):
    f, p0, x = net["f"], net["params0"], net["xt"]
    lin = LinearizedModel(f, p0)
    theta = _perturbed(p0, seed=100)
    got = lin(theta, x) if mode == "plain" else lin.cached(x, trace_after=0)(theta)
    ref = f(p0, x) + (net["Jt"] @ (flat(theta) - flat(p0))).reshape(N_TEST, K)
    assert rel_err(got, ref) <= 1e-12
    # …and it is not the network itself away from θ₀
    assert (got - f(theta, x)).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_twin_gradient_is_jacobian_transpose(net, mode):
    """The twin trains by ordinary autograd: ∇_θ ⟨w, f_lin(θ, x)⟩ = Jᵀ w for any θ."""
    f, p0, x = net["f"], net["params0"], net["x"]
    lin = LinearizedModel(f, p0)
    theta = {k: v.clone().requires_grad_(True) for k, v in _perturbed(p0, seed=200).items()}
    w = seeded((N_TRAIN, K), 201)
    out = lin(theta, x) if mode == "plain" else lin.cached(x, trace_after=0)(theta)
    grads = torch.autograd.grad((out * w).sum(), list(theta.values()))
    got = torch.cat([g.reshape(-1) for g in grads])
    torch.testing.assert_close(got, net["J"].T @ w.reshape(-1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_twin_keeps_its_own_theta0(mode):
    """Building the twin from the live module parameters and then training the
    module in place must not move the twin's θ₀ (the reference code's
    perturbation helper aliased its parameter copies)."""
    model = build_model(ModelConfig(width=4, depth=1, activation="tanh"), (D_IN,), K, seed=9, dtype=DT)
    f, p0, x = functional(model), params_of(model), seeded((N_TRAIN, D_IN), 51)
    lin = LinearizedModel(f, dict(model.named_parameters()))
    fn = (lambda p: lin(p, x)) if mode == "plain" else lin.cached(x, trace_after=0)
    before = fn(p0).detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).sum().backward()
    opt.step()
    assert not torch.equal(params_of(model)["readout.weight"], p0["readout.weight"])
    torch.testing.assert_close(fn(p0).detach(), before, rtol=0, atol=1e-15)


@pytest.fixture(scope="module")
def kernel_solution(net):
    """Closed-form outputs after STEPS of GD, from Θ = J Jᵀ (not from empirical_ntk)."""
    f, p0 = net["f"], net["params0"]
    theta = (net["J"] @ net["J"].T).reshape(N_TRAIN, K, N_TRAIN, K)
    theta_test = (net["Jt"] @ net["J"].T).reshape(N_TEST, K, N_TRAIN, K)
    return gd_mse_kernel_dynamics(theta, f(p0, net["x"]), net["y"], LR, STEPS,
                                  ntk_test_train=theta_test, f0_test=f(p0, net["xt"]))


def test_kernel_dynamics_vs_explicit_parameter_iteration(net, kernel_solution):
    """Oracle check: θ ← θ − η/N Jᵀ(f₀ + J(θ−θ₀) − y), written out in ℝᴾ."""
    f, p0, J, Jt = net["f"], net["params0"], net["J"], net["Jt"]
    f0, f0t, y = f(p0, net["x"]).reshape(-1), f(p0, net["xt"]).reshape(-1), net["y"].reshape(-1)
    delta = torch.zeros(J.shape[1], dtype=DT)
    for _ in range(STEPS):
        delta = delta - LR / N_TRAIN * J.T @ (f0 + J @ delta - y)
    f_train, f_test = kernel_solution
    torch.testing.assert_close(f_train.reshape(-1), f0 + J @ delta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f_test.reshape(-1), f0t + Jt @ delta, rtol=1e-10, atol=1e-12)
    # training actually moved the outputs
    assert (f_train.reshape(-1) - f0).abs().max() > 1e-2


def test_kernel_dynamics_zero_steps_is_identity(net):
    f, p0 = net["f"], net["params0"]
    theta = (net["J"] @ net["J"].T).reshape(N_TRAIN, K, N_TRAIN, K)
    theta_test = (net["Jt"] @ net["J"].T).reshape(N_TEST, K, N_TRAIN, K)
    f_train, f_test = gd_mse_kernel_dynamics(theta, f(p0, net["x"]), net["y"], LR, 0,
                                             ntk_test_train=theta_test, f0_test=f(p0, net["xt"]))
    torch.testing.assert_close(f_train, f(p0, net["x"]), rtol=0, atol=1e-15)
    torch.testing.assert_close(f_test, f(p0, net["xt"]), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_twin_sgd_matches_kernel_dynamics(net, kernel_solution, mode):
    """Full-batch torch.optim.SGD on losses.mse of the twin == closed form."""
    f, p0, x, xt = net["f"], net["params0"], net["x"], net["xt"]
    lin = LinearizedModel(f, p0)
    fn = (lambda p: lin(p, x)) if mode == "plain" else lin.cached(x, trace_after=0)
    params = train_sgd(fn, p0, net["y"], losses.mse, LR, STEPS)
    f_train, f_test = kernel_solution
    torch.testing.assert_close(lin(params, x), f_train, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lin.cached(xt, trace_after=0)(params), f_test, rtol=1e-10, atol=1e-10)


def test_cached_twin_traces_at_its_third_call_and_agrees(net):
    f, p0, x = net["f"], net["params0"], net["xt"]
    lin = LinearizedModel(f, p0)
    traces, trace = [], lin._trace
    lin._trace = lambda xx: traces.append(xx) or trace(xx)
    fn = lin.cached(x)
    for i in range(4):                               # calls 1-2: jvp; 3-4: the trace
        theta = _perturbed(p0, seed=300 + i)
        torch.testing.assert_close(fn(theta), lin(theta, x), rtol=1e-12, atol=1e-13)
        assert len(traces) == (0 if i < 2 else 1)


# ----------------------------------------------------------------------- NTK
def test_empirical_ntk_vs_explicit_jacobian(net):
    f, p0 = net["f"], net["params0"]
    ntk = empirical_ntk(f, p0, net["x"])
    assert ntk.shape == (N_TRAIN, K, N_TRAIN, K)
    torch.testing.assert_close(flat_ntk(ntk), net["J"] @ net["J"].T, rtol=1e-12, atol=1e-13)
    cross = empirical_ntk(f, p0, net["xt"], net["x"])
    assert cross.shape == (N_TEST, K, N_TRAIN, K)
    torch.testing.assert_close(flat_ntk(cross), net["Jt"] @ net["J"].T, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_empirical_ntk_chunk_invariance(net, chunk):
    f, p0 = net["f"], net["params0"]
    full = empirical_ntk(f, p0, net["xt"], net["x"])
    torch.testing.assert_close(empirical_ntk(f, p0, net["xt"], net["x"], chunk_size=chunk), full,
                               rtol=1e-13, atol=1e-14)


def test_empirical_ntk_symmetric_psd(net):
    th = flat_ntk(empirical_ntk(net["f"], net["params0"], net["x"]))
    torch.testing.assert_close(th, th.T, rtol=1e-13, atol=1e-14)
    assert torch.linalg.eigvalsh(th).min() > -1e-10


# --------------------------------------------- exactly linear vs polynomial nets
def linear_f(p, x):
    """Exactly linear in θ: f = x W + b."""
    return x @ p["W"] + p["b"]


def test_linear_in_theta_model_has_zero_linearity_deviation(net):
    x, xt, y = net["x"], net["xt"], net["y"]
    p0 = {"W": seeded((D_IN, K), 41), "b": seeded((K,), 42)}
    lin = LinearizedModel(linear_f, p0)
    p_net = train_sgd(lambda p: linear_f(p, x), p0, y, losses.mse, LR, 10)
    p_lin = train_sgd(lambda p: lin(p, x), p0, y, losses.mse, LR, 10)
    assert (flat(p_net) - flat(p0)).norm() > 1e-2           # it did train
    torch.testing.assert_close(p_lin, p_net, rtol=1e-12, atol=1e-13)
    for inputs in (x, xt):
        dev = deviation_from_outputs(linear_f(p_net, inputs), lin(p_lin, inputs), lin(p_net, inputs),
                                     linear_f(p_net, inputs), losses.mse)
        for name in ("func_rmse", "func_mse", "taylor_rmse", "loss_gap"):
            assert dev[name].item() <= 1e-12, name


def test_deep_identity_mlp_is_not_linear_in_theta(net):
    """Linear in x, polynomial in θ: one GD step leaves a non-zero Taylor remainder."""
    x, y = net["x"], net["y"]
    cfg = ModelConfig(width=6, depth=2, activation="identity", b_std=0.3)
    model = build_model(cfg, (D_IN,), K, seed=8, dtype=DT)
    f, p0 = functional(model), params_of(model)
    lin = LinearizedModel(f, p0)
    p_net = train_sgd(lambda p: f(p, x), p0, y, losses.mse, LR, 1)
    p_lin = train_sgd(lambda p: lin(p, x), p0, y, losses.mse, LR, 1)
    dev = deviation_from_outputs(f(p_net, x), lin(p_lin, x), lin(p_net, x), y, losses.mse)
    # taylor remainder: by hand, with the explicit Jacobian
    ref = f(p_net, x) - f(p0, x) - (jacobian(f, p0, x) @ (flat(p_net) - flat(p0))).reshape(N_TRAIN, K)
    assert ref.pow(2).mean().sqrt() > 1e-4
    torch.testing.assert_close(dev["taylor_rmse"], ref.pow(2).mean().sqrt(), rtol=1e-10, atol=0)
    # after one step both models have seen the same gradient: θ_net == θ_lin, so
    # func_rmse == taylor_rmse exactly
    torch.testing.assert_close(p_lin, p_net, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dev["func_rmse"], dev["taylor_rmse"], rtol=1e-10, atol=0)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mean_field"])
def test_hand_written_mlp_twin_matches_the_jvp_twin(activation, parameterization):
    """linearized_mlp (the trainer's MLP twin) = f(θ₀) + J(θ₀)(θ − θ₀), values and gradients."""
    model = build_model(ModelConfig(width=6, depth=3, activation=activation,
                                    parameterization=parameterization), (D_IN,), K, seed=4, dtype=DT)
    p0, x = params_of(model), seeded((N_TRAIN, D_IN), 61)
    theta = {k: (v + 0.3 * seeded(v.shape, 70 + i)).requires_grad_(True)
             for i, (k, v) in enumerate(p0.items())}
    reference = LinearizedModel(functional(model), p0)(theta, x)
    fast = linearized_mlp(model, p0, x)(theta)
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)
    w = seeded(reference.shape, 80)
    g_ref = torch.autograd.grad((reference * w).sum(), list(theta.values()))
    g_fast = torch.autograd.grad((fast * w).sum(), list(theta.values()))
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():   # at θ₀ exactly the network (same ops), so lin/* start at 0
        assert torch.equal(linearized_mlp(model, p0, x)(p0), model(x))

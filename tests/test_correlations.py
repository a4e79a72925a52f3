"""wcntk.core.correlations against independent references (docs/theory.md §2).

References: reverse-mode gradients (torch.autograd.grad) + Richardson-extrapolated
central differences for D²/D³ along g; explicit Hessian matrices
(torch.autograd.functional.hessian) for ∇²φ·g; closed forms for a hand-written
polynomial. All in float64 on tiny networks with smooth activations and biases.
"""
from __future__ import annotations

import math

import pytest
import torch

from tests._refs import DT, fd_directional, flat, hessian, jacobian, rel_err, rev_grad, scalar_fn, seeded
from tests.conftest import built
from wcntk.core import losses
from wcntk.core.correlations import (
    derivative_correlations,
    directional_derivative,
    gd_step_direction,
    step_ratios,
)
from wcntk.core.layers import ModelConfig

LR = 0.7           # a non-unit η, so the η^{…}/d! prefactors are checked too
M, K, D_IN = 3, 2, 3

SMOOTH_CASES = {
    "erf-d1-w8": ModelConfig(width=8, depth=1, activation="erf", w_std=1.2, b_std=0.5),
    "tanh-d2-w6": ModelConfig(width=6, depth=2, activation="tanh", w_std=1.2, b_std=0.5),
    "gelu-d3-w5": ModelConfig(width=5, depth=3, activation="gelu", w_std=1.2, b_std=0.5),
}


def _net(cfg: ModelConfig, seed: int = 1):
    return built(cfg, (D_IN,), K, seed=seed, dtype=DT)


def _reference_pairs(f, params, x, lr):
    """FD references of C02, C03 and the explicit-Hessian references of C02, C11, per (a, o)."""
    th = flat(params)
    m, k = x.shape[0], f(params, x[:1]).shape[-1]
    out = {name: torch.zeros(m, k, dtype=DT) for name in ("C02_fd", "C03_fd", "C02_hess", "C11_hess")}
    for a in range(m):
        for o in range(k):
            fn = scalar_fn(f, params, x, a, o)
            g = rev_grad(fn, th)
            _, d2, d3 = fd_directional(fn, th, g)
            hg = hessian(fn, th) @ g
            out["C02_fd"][a, o] = lr ** 2 / 2 * d2
            out["C03_fd"][a, o] = lr ** 3 / 6 * d3
            out["C02_hess"][a, o] = lr ** 2 / 2 * (g @ hg)
            out["C11_hess"][a, o] = lr ** 1.5 * hg.norm()
    return out


@pytest.fixture(scope="module", params=list(SMOOTH_CASES), ids=list(SMOOTH_CASES))
def smooth_case(request):
    model, f, params = _net(SMOOTH_CASES[request.param])
    x = seeded((M, D_IN), 5)
    corr = derivative_correlations(f, params, x, lr=LR)
    return dict(f=f, params=params, x=x, corr=corr, ref=_reference_pairs(f, params, x, LR))


# --------------------------------------------------------------- smooth networks
def test_output_shapes_and_dtype(smooth_case):
    for name in ("C02", "C03", "C11"):
        c = smooth_case["corr"][name]
        assert c.shape == (M, K) and c.dtype == DT
        assert torch.isfinite(c).all()


def test_c02_vs_finite_differences(smooth_case):
    c, ref = smooth_case["corr"]["C02"], smooth_case["ref"]["C02_fd"]
    assert ref.abs().min() > 1e-6          # the check is not vacuous
    assert rel_err(c, ref) <= 1e-6


def test_c03_vs_finite_differences(smooth_case):
    c, ref = smooth_case["corr"]["C03"], smooth_case["ref"]["C03_fd"]
    assert ref.abs().min() > 1e-6
    assert rel_err(c, ref) <= 1e-6


def test_c02_vs_explicit_hessian(smooth_case):
    assert rel_err(smooth_case["corr"]["C02"], smooth_case["ref"]["C02_hess"]) <= 1e-9


def test_c11_vs_explicit_hessian(smooth_case):
    c, ref = smooth_case["corr"]["C11"], smooth_case["ref"]["C11_hess"]
    assert (ref > 1e-6).all()
    assert rel_err(c, ref) <= 1e-6


def test_chunk_size_invariance(smooth_case):
    s = smooth_case
    chunked = derivative_correlations(s["f"], s["params"], s["x"], lr=LR, chunk_size=4)
    for name in ("C02", "C03", "C11"):
        torch.testing.assert_close(chunked[name], s["corr"][name], rtol=1e-12, atol=0)


def test_lr_scaling():
    """C02 ∝ η², C03 ∝ η³, C11 ∝ η^{3/2} exactly."""
    _, f, params = _net(SMOOTH_CASES["erf-d1-w8"])
    x = seeded((2, D_IN), 7)
    c1 = derivative_correlations(f, params, x, lr=1.0)
    c2 = derivative_correlations(f, params, x, lr=0.3)
    for name, power in (("C02", 2), ("C03", 3), ("C11", 1.5)):
        torch.testing.assert_close(c2[name], 0.3 ** power * c1[name], rtol=1e-12, atol=0)


def test_params_not_modified():
    _, f, params = _net(SMOOTH_CASES["erf-d1-w8"])
    before = {k: v.clone() for k, v in params.items()}
    derivative_correlations(f, params, seeded((2, D_IN), 7))
    for k in params:
        assert torch.equal(params[k], before[k])


# ------------------------------------------------------ hand-written polynomial
def poly_f(p, x):
    """Not a model: f₀ = a·b₀²·x + c³, f₁ = a·b₁·x² + b₀·c.  θ = (a, b₀, b₁, c)."""
    a, b, c, xx = p["a"], p["b"], p["c"], x[:, 0]
    return torch.stack([a * b[0] ** 2 * xx + c ** 3, a * b[1] * xx ** 2 + b[0] * c], dim=-1)


def poly_closed_form(theta, xv):
    """(grad [k,4], Hessian [k,4,4], third derivative [k,4,4,4]) written out by hand."""
    a, b0, b1, c = theta.tolist()
    z = torch.zeros
    g = torch.tensor([[b0 ** 2 * xv, 2 * a * b0 * xv, 0.0, 3 * c ** 2],
                      [b1 * xv ** 2, c, a * xv ** 2, b0]], dtype=DT)
    H = z(2, 4, 4, dtype=DT)
    H[0, 0, 1] = H[0, 1, 0] = 2 * b0 * xv
    H[0, 1, 1] = 2 * a * xv
    H[0, 3, 3] = 6 * c
    H[1, 0, 2] = H[1, 2, 0] = xv ** 2
    H[1, 1, 3] = H[1, 3, 1] = 1.0
    T = z(2, 4, 4, 4, dtype=DT)
    for idx in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):       # ∂a ∂b₀ ∂b₀ (a·b₀²·x)
        T[(0,) + idx] = 2 * xv
    T[0, 3, 3, 3] = 6.0                                  # ∂c³ (c³)
    return g, H, T


def test_polynomial_closed_form():
    params = {"a": torch.tensor(0.8, dtype=DT), "b": torch.tensor([-1.3, 0.6], dtype=DT),
              "c": torch.tensor(1.1, dtype=DT)}
    theta = torch.tensor([0.8, -1.3, 0.6, 1.1], dtype=DT)
    x = torch.tensor([[0.5], [-2.0], [1.7]], dtype=DT)
    lr = 0.9
    corr = derivative_correlations(poly_f, params, x, lr=lr)
    for a in range(x.shape[0]):
        g, H, T = poly_closed_form(theta, x[a, 0].item())
        for o in range(2):
            go = g[o]
            c02 = lr ** 2 / 2 * go @ H[o] @ go
            c03 = lr ** 3 / 6 * torch.einsum("ijk,i,j,k->", T[o], go, go, go)
            c11 = lr ** 1.5 * (H[o] @ go).norm()
            torch.testing.assert_close(corr["C02"][a, o], c02, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(corr["C03"][a, o], c03, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(corr["C11"][a, o], c11, rtol=1e-12, atol=1e-14)
    # f₁ has no third derivative at all
    assert corr["C03"][:, 1].abs().max() <= 1e-14
    assert corr["C03"][:, 0].abs().min() > 1e-3


# --------------------------------------------------- ReLU, linear, identity nets
def test_relu_one_hidden_layer_c03_vanishes_c02_does_not():
    cfg = ModelConfig(width=16, depth=1, activation="relu", b_std=0.5)
    _, f, params = _net(cfg, seed=3)
    x = seeded((4, D_IN), 11)
    corr = derivative_correlations(f, params, x, lr=LR)
    scale = corr["C02"].abs().max()
    assert (corr["C02"].abs() > 1e-3 * scale).all() and scale > 1e-3
    assert corr["C03"].abs().max() <= 1e-12 * scale
    # C02 and C11 of the piecewise-bilinear net still agree with the explicit Hessian
    th = flat(params)
    for a in range(4):
        for o in range(K):
            fn = scalar_fn(f, params, x, a, o)
            g = rev_grad(fn, th)
            hg = hessian(fn, th) @ g
            torch.testing.assert_close(corr["C02"][a, o], LR ** 2 / 2 * g @ hg, rtol=1e-10, atol=0)
            torch.testing.assert_close(corr["C11"][a, o], LR ** 1.5 * hg.norm(), rtol=1e-10, atol=0)


def linear_f(p, x):
    """Exactly linear in θ: f = x W + b."""
    return x @ p["W"] + p["b"]


def test_linear_in_theta_model_has_zero_correlations():
    params = {"W": seeded((D_IN, K), 1), "b": seeded((K,), 2)}
    corr = derivative_correlations(linear_f, params, seeded((4, D_IN), 3), lr=LR)
    for name in ("C02", "C03", "C11"):
        assert corr[name].abs().max() <= 1e-12, name


def test_deep_identity_mlp_has_nonzero_correlations():
    """Depth ≥ 2 with identity activation is linear in x but polynomial in θ."""
    cfg = ModelConfig(width=6, depth=2, activation="identity", b_std=0.5)
    _, f, params = _net(cfg, seed=2)
    x = seeded((3, D_IN), 4)
    corr = derivative_correlations(f, params, x, lr=LR)
    ref = _reference_pairs(f, params, x, LR)
    assert corr["C02"].abs().min() > 1e-4
    assert corr["C03"].abs().max() > 1e-4
    assert (corr["C11"] > 1e-4).all()
    assert rel_err(corr["C02"], ref["C02_hess"]) <= 1e-9
    assert rel_err(corr["C11"], ref["C11_hess"]) <= 1e-9
    assert rel_err(corr["C03"], ref["C03_fd"]) <= 1e-6


# ---------------------------------------------- GD step direction and step ratios
@pytest.fixture(scope="module")
def step_case():
    cfg = ModelConfig(width=6, depth=2, activation="tanh", w_std=1.2, b_std=0.5)
    model, f, params = _net(cfg, seed=4)
    x_train, y_train = seeded((5, D_IN), 21), seeded((5, K), 22)
    return dict(model=model, f=f, params=params, x=x_train, y=y_train,
                probe=seeded((M, D_IN), 23), lr=0.5)


def test_gd_step_direction_vs_autograd(step_case):
    s = step_case
    u = gd_step_direction(s["f"], s["params"], s["x"], s["y"], losses.mse, s["lr"])
    model = s["model"]
    model.zero_grad()
    out = model(s["x"])                                       # plain nn.Module forward
    loss = 0.5 * ((out - s["y"]) ** 2).sum() / s["x"].shape[0]  # 1/(2N) Σ‖f − y‖², by hand
    loss.backward()
    assert set(u) == {k for k, _ in model.named_parameters()}
    for k, p in model.named_parameters():
        torch.testing.assert_close(u[k], -s["lr"] * p.grad, rtol=1e-12, atol=1e-15)
    model.zero_grad()


def _directional_refs(f, params, x, u):
    """D¹f[u], D²f[u,u], D³f[u,u,u] per (probe, output): D¹ by explicit Jacobian,
    D² and D³ by finite differences of reverse-mode directional derivatives."""
    th, v = flat(params), flat(u)
    m = x.shape[0]
    d1 = (jacobian(f, params, x) @ v).reshape(m, -1)
    d2, d3 = torch.zeros_like(d1), torch.zeros_like(d1)
    for a in range(m):
        for o in range(d1.shape[1]):
            _, d2[a, o], d3[a, o] = fd_directional(scalar_fn(f, params, x, a, o), th, v)
    return d1, d2, d3


@pytest.fixture(scope="module")
def step_refs(step_case):
    s = step_case
    u = gd_step_direction(s["f"], s["params"], s["x"], s["y"], losses.mse, s["lr"])
    return u, _directional_refs(s["f"], s["params"], s["probe"], u)


def test_directional_derivative_vs_references(step_case, step_refs):
    s = step_case
    u, refs = step_refs
    for order, ref in zip((1, 2, 3), refs, strict=True):
        got = directional_derivative(s["f"], s["params"], s["probe"], u, order)
        assert got.shape == ref.shape
        assert rel_err(got, ref) <= (1e-12 if order == 1 else 1e-6), order


def test_step_ratios_vs_references(step_case, step_refs):
    s = step_case
    u, (d1, d2, d3) = step_refs
    ratios = step_ratios(s["f"], s["params"], s["probe"], u, orders=(2, 3))
    assert set(ratios) == {"step_ratio_2", "step_ratio_3"}
    ref2 = d2.norm() / math.factorial(2) / d1.norm()
    ref3 = d3.norm() / math.factorial(3) / d1.norm()
    assert ref2 > 1e-8 and ref3 > 1e-8
    assert abs(ratios["step_ratio_2"].item() / ref2.item() - 1) <= 1e-6
    assert abs(ratios["step_ratio_3"].item() / ref3.item() - 1) <= 1e-6


def test_step_ratio_2_matches_taylor_remainder(step_case):
    """Independent of derivatives altogether: for a step t·u,
    f(θ+tu) − f(θ) − t·Df[u] = t²·D²f[u,u]/2 + O(t³), so the ratio
    ‖remainder‖ / ‖t·Df[u]‖ / t → step_ratio_2 as t → 0."""
    s = step_case
    f, params, x = s["f"], s["params"], s["probe"]
    u = gd_step_direction(f, params, s["x"], s["y"], losses.mse, s["lr"])
    ratio = step_ratios(f, params, x, u, orders=(2,))["step_ratio_2"].item()
    d1 = (jacobian(f, params, x) @ flat(u)).reshape(x.shape[0], -1)
    f0 = f(params, x)

    def remainder_ratio(t: float) -> float:
        moved = {k: params[k] + t * u[k] for k in params}
        return ((f(moved, x) - f0 - t * d1).norm() / (t * d1).norm() / t).item()

    # Richardson on r(t) = ratio + c·t + O(t²) (one-sided, so first-order in t)
    t = 1e-3
    est = 2 * remainder_ratio(t / 2) - remainder_ratio(t)
    assert abs(est / ratio - 1) <= 1e-4

"""The MLP fast path against the generic exact path (wcntk.core.correlations)."""
import pytest
import torch

from wcntk.core.correlations import derivative_correlations
from wcntk.core.correlations_mlp import mlp_derivative_correlations
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.models import build_model

KEYS = ("C02", "C03", "C11")


def _model(activation, parameterization, depth, width=8, in_dim=5, k=3, dtype=torch.float64,
           kind="mlp"):
    cfg = ModelConfig(kind=kind, width=width, depth=depth, activation=activation,
                      parameterization=parameterization, b_std=0.3)
    return build_model(cfg, (in_dim,), k, seed=1, dtype=dtype)


def _perturbed(model, scale=0.3, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return {n: p + scale * p.std().clamp_min(1.0) * torch.randn(p.shape, generator=gen, dtype=p.dtype)
            for n, p in params_of(model).items()}


def _assert_close(got, ref, rtol):
    for key in KEYS:
        assert got[key].shape == ref[key].shape
        err = (got[key] - ref[key]).abs().max().item()
        assert err <= rtol * ref[key].abs().max().item() + 1e-15, (key, err, ref[key].abs().max().item())


# Every activation under every parameterization; depths 1, 2, 3 each meet every activation.
CASES = [(act, par, depth)
         for act in ("erf", "tanh", "gelu", "sigmoid", "relu", "leaky_relu", "identity")
         for par, depth in (("ntk", 1), ("standard", 2), ("mean_field", 3))]
CASES += [("erf", "ntk", 3), ("tanh", "mean_field", 1), ("gelu", "standard", 1)]


@pytest.mark.parametrize("activation,parameterization,depth", CASES)
def test_matches_generic_path(activation, parameterization, depth):
    model = _model(activation, parameterization, depth)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for params in (params_of(model), _perturbed(model)):
        ref = derivative_correlations(functional(model), params, x, lr=0.7)
        _assert_close(mlp_derivative_correlations(model, x, lr=0.7, params=params), ref, 1e-9)


def test_defaults_to_module_params_and_chunks_consistently():
    model = _model("tanh", "ntk", 2)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    whole = mlp_derivative_correlations(model, x, lr=0.3)
    explicit = mlp_derivative_correlations(model, x, lr=0.3, params=params_of(model))
    with torch.no_grad():
        for chunk in (1, 5, 12, 100):  # chunks splitting a probe's outputs, and larger than m·k
            chunked = mlp_derivative_correlations(model, x, lr=0.3, chunk_size=chunk)
            for key in KEYS:
                torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=0)
    for key in KEYS:
        assert whole[key].shape == (4, 3) and whole[key].dtype == torch.float64
        torch.testing.assert_close(explicit[key], whole[key], rtol=0, atol=0)


def test_one_hidden_relu_has_no_third_derivative():
    model = _model("relu", "ntk", 1, width=16)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = mlp_derivative_correlations(model, x)
    assert torch.all(out["C03"] == 0)
    assert out["C02"].abs().max() > 0 and out["C11"].min() > 0


def test_float32_matches_float64_at_width_1024():
    x = torch.randn(6, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = {}
    for dtype in (torch.float32, torch.float64):
        model = _model("erf", "ntk", 2, width=1024, in_dim=20, k=4, dtype=dtype)
        out[dtype] = mlp_derivative_correlations(model, x.to(dtype))
    for key in KEYS:
        assert out[torch.float32][key].dtype == torch.float32
    _assert_close({k: v.double() for k, v in out[torch.float32].items()}, out[torch.float64], 1e-4)


def test_rejects_non_mlp():
    cnn = build_model(ModelConfig(kind="cnn", width=2, depth=1), (1, 4, 4), 2, seed=0)
    with pytest.raises(TypeError):
        mlp_derivative_correlations(cnn, torch.zeros(1, 1, 4, 4))

"""The dispatch of implementations: the MLP gets its fast paths, every other model the generic
one, subclasses inherit, and on an MLP the two implementations compute the same things."""
from __future__ import annotations

import pytest
import torch

from tests._refs import DT, seeded
from wcntk.core import implementations as impls
from wcntk.core.cnn import CNN
from wcntk.core.implementations import GENERIC, MLP_FAST, Implementation, implementation_for, register
from wcntk.core.layers import ModelConfig, functional, params_of
from wcntk.core.linearization import LinearizedModel
from wcntk.core.mlp import MLP
from wcntk.core.models import build_model


def _model(kind: str, shape=(4,)):
    cfg = ModelConfig(kind=kind, width=8, depth=2, activation="erf", w_std=1.1, b_std=0.3)
    return build_model(cfg, shape, 3, seed=5, dtype=DT)


def test_mlp_gets_its_fast_path_and_cnn_the_generic_one():
    assert implementation_for(_model("mlp")) is MLP_FAST
    assert implementation_for(_model("cnn", (1, 4, 4))) is GENERIC
    assert implementation_for(torch.nn.Linear(2, 2)) is GENERIC


def test_transformer_takes_more_probes_per_chunk_with_the_same_correlations():
    cfg = ModelConfig(kind="transformer", width=8, depth=1, activation="erf", heads=2, patch_size=2)
    model = build_model(cfg, (1, 4, 4), 3, seed=5, dtype=DT)
    assert implementation_for(model) is impls.TRANSFORMER
    f, p = functional(model), params_of(model)
    x = seeded((6, 1, 4, 4), 42)
    chunked = impls.TRANSFORMER.correlations(model, f, p, x, 0.7)
    generic = GENERIC.correlations(model, f, p, x, 0.7)
    for name in generic:
        torch.testing.assert_close(chunked[name], generic[name], rtol=1e-12, atol=1e-15)


def test_subclasses_inherit_and_registration_overrides(monkeypatch):
    monkeypatch.setattr(impls, "_REGISTRY", dict(impls._REGISTRY))

    class WideMLP(MLP):
        pass

    model = _model("mlp")
    model.__class__ = WideMLP
    assert implementation_for(model) is MLP_FAST
    custom = Implementation("custom", GENERIC.linearize, GENERIC.ntk, GENERIC.correlations,
                            GENERIC.function_space_misfit)
    register(CNN, custom)
    assert implementation_for(_model("cnn", (1, 4, 4))) is custom
    assert implementation_for(model) is MLP_FAST


@pytest.fixture(scope="module")
def mlp_case():
    model = _model("mlp")
    f, p0 = functional(model), params_of(model)
    p = {k: v + 0.05 * seeded(v.shape, 40 + i) for i, (k, v) in enumerate(p0.items())}
    return model, f, p0, p, seeded((5, 4), 41)


def test_mlp_fast_and_generic_agree_on_ntk_and_correlations(mlp_case):
    model, f, _, p, x = mlp_case
    torch.testing.assert_close(MLP_FAST.ntk(model, f, p, x), GENERIC.ntk(model, f, p, x),
                               rtol=1e-12, atol=1e-13)
    fast, generic = MLP_FAST.correlations(model, f, p, x, 0.7), GENERIC.correlations(model, f, p, x, 0.7)
    assert fast.keys() == generic.keys() == {"C02", "C03", "C11"}
    for name in fast:
        torch.testing.assert_close(fast[name], generic[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reuse", [True, False])
def test_mlp_fast_and_generic_twins_agree(mlp_case, reuse):
    model, f, p0, p, x = mlp_case
    twin = LinearizedModel(f, p0)
    fast = MLP_FAST.linearize(model, twin, x, reuse)(p)
    torch.testing.assert_close(GENERIC.linearize(model, twin, x, reuse)(p), fast, rtol=1e-12, atol=1e-13)
    assert (fast - f(p, x)).abs().max() > 1e-6   # the twin is not the network away from θ₀

"""wcntk.core.models: parameterizations, seeding, validation, hand-written forward passes."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from tests._refs import DT, seeded
from wcntk.core import init
from wcntk.core.layers import (
    ACTIVATIONS,
    ModelConfig,
    functional,
    get_activation,
    layer_scales,
    lr_width_multiplier,
    num_params,
    params_of,
)
from wcntk.core.models import build_model

D_IN, K = 3, 2

# Activations written out independently of the library's table.
ACT_REF = {
    "relu": lambda z: torch.where(z > 0, z, torch.zeros_like(z)),
    "erf": torch.erf,
    "tanh": lambda z: (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)),
    "sigmoid": lambda z: 1 / (1 + torch.exp(-z)),
    "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))),
    "leaky_relu": lambda z: torch.where(z > 0, z, 0.1 * z),
    "identity": lambda z: z,
}


def multipliers(parameterization, fan_in, w_std, b_std, readout):
    """(c_w, c_b) from the table in docs/theory.md §3 / the models docstring, by hand."""
    if parameterization == "standard":
        return 1.0, 1.0
    if parameterization == "mean_field" and readout:
        return w_std / fan_in, b_std / math.sqrt(fan_in)
    return w_std / math.sqrt(fan_in), b_std


def scheme_normals(seed, name, shape, signature, chunk=1 << 20):
    """The standard normals of parameter `name` under the documented scheme chunked-v2, written
    out from its text: chunk c of the flattened tensor from its own generator seeded with
    BLAKE2b-64("chunked-v2|seed|signature|name|d1x…xdr|c") (little-endian, mod 2^63), concatenated;
    `signature` the model's, e.g. "mlp|width=6|depth=2|in=3|out=2"."""
    n, parts = math.prod(shape), []
    for c in range(math.ceil(n / chunk)):
        key = f"chunked-v2|{seed}|{signature}|{name}|{'x'.join(map(str, shape))}|{c}".encode()
        s = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % 2 ** 63
        parts.append(torch.randn(min(chunk, n - c * chunk), generator=torch.Generator().manual_seed(s),
                                 dtype=DT))
    return torch.cat(parts).reshape(shape)


def init_draws(sizes, seed):
    """The standard normals build_model must draw for an MLP, (W, b) layer by layer."""
    names = [f"hidden.{i}" for i in range(len(sizes) - 2)] + ["readout"]
    sig = f"mlp|width={sizes[1]}|depth={len(sizes) - 2}|in={sizes[0]}|out={sizes[-1]}"
    return [(scheme_normals(seed, f"{n}.weight", (fo, fi), sig),
             scheme_normals(seed, f"{n}.bias", (fo,), sig))
            for n, fi, fo in zip(names, sizes[:-1], sizes[1:], strict=True)]


def ref_mlp(params, x, cfg):
    a = x.reshape(x.shape[0], -1)
    names = [f"hidden.{i}" for i in range(cfg.depth)] + ["readout"]
    for name in names:
        W, b = params[f"{name}.weight"], params[f"{name}.bias"]
        c_w, c_b = multipliers(cfg.parameterization, W.shape[1], cfg.w_std, cfg.b_std, name == "readout")
        h = c_w * (a @ W.T) + c_b * b
        a = h if name == "readout" else ACT_REF[cfg.activation](h)
    return a


def ref_cnn(params, x, cfg):
    a = x
    for i in range(cfg.depth):
        W, b = params[f"hidden.{i}.weight"], params[f"hidden.{i}.bias"]
        c_w, c_b = multipliers(cfg.parameterization, W.shape[1] * 9, cfg.w_std, cfg.b_std, False)
        # explicit 3×3 correlation with zero padding
        ap = F.pad(a, (1, 1, 1, 1))
        H, Wd = a.shape[2], a.shape[3]
        h = torch.zeros(a.shape[0], W.shape[0], H, Wd, dtype=a.dtype)
        for di in range(3):
            for dj in range(3):
                h = h + torch.einsum("nchw,oc->nohw", ap[:, :, di:di + H, dj:dj + Wd], W[:, :, di, dj])
        a = ACT_REF[cfg.activation](c_w * h + c_b * b[None, :, None, None])
    pooled = a.mean(dim=(2, 3))
    W, b = params["readout.weight"], params["readout.bias"]
    c_w, c_b = multipliers(cfg.parameterization, W.shape[1], cfg.w_std, cfg.b_std, True)
    return c_w * pooled @ W.T + c_b * b


def _build(cfg, seed=0, shape=(D_IN,), k=K, dtype=DT):
    return build_model(cfg, shape, k, seed=seed, dtype=dtype)


# ------------------------------------------------------------ forward passes
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mean_field"])
@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_forward_vs_handwritten(activation, parameterization, depth):
    cfg = ModelConfig(width=7, depth=depth, activation=activation, parameterization=parameterization,
                      w_std=1.3, b_std=0.4)
    model = _build(cfg, seed=5)
    x = seeded((6, D_IN), 1)
    out = model(x)
    assert out.shape == (6, K) and out.dtype == DT
    torch.testing.assert_close(out, ref_mlp(params_of(model), x, cfg), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(functional(model)(params_of(model), x), out, rtol=0, atol=0)


def test_mlp_flattens_its_input():
    cfg = ModelConfig(width=5, depth=1, activation="tanh")
    model = _build(cfg, shape=(2, 3, 2))
    x = seeded((4, 2, 3, 2), 2)
    assert model.hidden[0].weight.shape == (5, 12)
    torch.testing.assert_close(model(x), model(x.reshape(4, 12)), rtol=0, atol=0)


@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mean_field"])
def test_cnn_forward_vs_handwritten(parameterization):
    cfg = ModelConfig(kind="cnn", width=4, depth=2, activation="tanh",
                      parameterization=parameterization, w_std=1.3, b_std=0.4)
    model = _build(cfg, seed=3, shape=(2, 5, 6), k=3)
    x = seeded((3, 2, 5, 6), 4)
    out = model(x)
    assert out.shape == (3, 3)
    assert model.hidden[0].weight.shape == (4, 2, 3, 3) and model.hidden[1].weight.shape == (4, 4, 3, 3)
    assert model.readout.weight.shape == (3, 4)
    torch.testing.assert_close(out, ref_cnn(params_of(model), x, cfg), rtol=1e-12, atol=1e-14)


def test_cnn_standard_init_scale():
    """A 3×3 conv's fan_in is in_channels·9: standard stores σ_w/√(C·9)·z for the seeded z."""
    cfg = ModelConfig(kind="cnn", width=4, depth=2, activation="tanh", parameterization="standard",
                      w_std=1.3, b_std=0.4)
    params = params_of(_build(cfg, seed=15, shape=(2, 4, 4)))
    sig = "cnn|width=4|depth=2|in=2x4x4|out=2"
    for name, c_in in (("hidden.0", 2), ("hidden.1", 4)):
        zw = scheme_normals(15, f"{name}.weight", (4, c_in, 3, 3), sig)
        zb = scheme_normals(15, f"{name}.bias", (4,), sig)
        torch.testing.assert_close(params[f"{name}.weight"], zw * 1.3 / math.sqrt(c_in * 9),
                                   rtol=1e-15, atol=0)
        torch.testing.assert_close(params[f"{name}.bias"], zb * 0.4, rtol=1e-15, atol=0)


def test_cnn_seeded():
    cfg = ModelConfig(kind="cnn", width=4, depth=1, activation="relu")
    p1 = params_of(_build(cfg, seed=11, shape=(1, 4, 4)))
    p2 = params_of(_build(cfg, seed=11, shape=(1, 4, 4)))
    p3 = params_of(_build(cfg, seed=12, shape=(1, 4, 4)))
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert all(not torch.equal(p1[k], p3[k]) for k in p1)


# --------------------------------------------------------------- initialization
@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mean_field"])
def test_init_draws_and_scales(parameterization):
    """Stored θ₀ is exactly the seeded standard normals, scaled as the table says."""
    cfg = ModelConfig(width=6, depth=2, activation="erf", parameterization=parameterization,
                      w_std=1.3, b_std=0.4)
    params = params_of(_build(cfg, seed=21))
    draws = init_draws([D_IN, 6, 6, K], seed=21)
    names = ["hidden.0", "hidden.1", "readout"]
    assert list(params) == [f"{n}.{w}" for n in names for w in ("weight", "bias")]
    for name, (zw, zb), fan_in in zip(names, draws, [D_IN, 6, 6], strict=True):
        if parameterization == "standard":
            sw, sb = cfg.w_std / math.sqrt(fan_in), cfg.b_std
        else:
            sw, sb = 1.0, 1.0
        torch.testing.assert_close(params[f"{name}.weight"], zw * sw, rtol=1e-15, atol=0)
        torch.testing.assert_close(params[f"{name}.bias"], zb * sb, rtol=1e-15, atol=0)


def test_same_seed_same_params_different_seed_different():
    cfg = ModelConfig(width=8, depth=2, activation="gelu")
    a, b, c = (params_of(_build(cfg, seed=s)) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)


def test_init_independent_of_dtype():
    cfg = ModelConfig(width=8, depth=2, activation="gelu")
    p64 = params_of(_build(cfg, seed=4, dtype=torch.float64))
    p32 = params_of(_build(cfg, seed=4, dtype=torch.float32))
    for k in p64:
        assert p32[k].dtype == torch.float32
        assert torch.equal(p32[k], p64[k].to(torch.float32))


@pytest.mark.parametrize("threads", [1, 4])
def test_init_chunks_independent_of_threads(monkeypatch, threads):
    """With chunks of 7 entries the 6×9 weight spans 8 chunks: any thread count draws the
    scheme's values, float32 is their cast, and a second call gives them again."""
    monkeypatch.setattr(init, "CHUNK", 7)
    cfg = ModelConfig(width=6, depth=2, activation="tanh", parameterization="standard", w_std=1.3)
    p64 = params_of(build_model(cfg, (9,), K, seed=3, dtype=torch.float64, threads=threads))
    p32 = params_of(build_model(cfg, (9,), K, seed=3, dtype=torch.float32, threads=threads))
    again = params_of(build_model(cfg, (9,), K, seed=3, dtype=torch.float64, threads=threads))
    ref = scheme_normals(3, "hidden.0.weight", (6, 9), "mlp|width=6|depth=2|in=9|out=2", chunk=7) * (
        1.3 / math.sqrt(9))
    assert torch.equal(p64["hidden.0.weight"], ref)
    for k in p64:
        assert torch.equal(p32[k], p64[k].to(torch.float32)) and torch.equal(again[k], p64[k])


def test_init_scheme_is_named():
    assert init.INIT_SCHEME == "chunked-v2"


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet", "transformer"])
def test_every_tensor_is_drawn_anew_at_every_width(kind):
    """θ₀ of width 8 and 16 at one seed share no tensor, not even the width-free readout bias
    (shape (k,); chunked-v1 drew it the same at every width); the same width and seed give the
    same θ₀ again."""
    def theta(width):
        return params_of(build_model(ModelConfig(kind=kind, width=width, depth=1), (1, 8, 8), 3, seed=5,
                                     dtype=DT))
    narrow, wide, again = theta(8), theta(16), theta(8)
    assert narrow["readout.bias"].shape == wide["readout.bias"].shape == (3,)
    assert not torch.equal(narrow["readout.bias"], wide["readout.bias"])
    for name in narrow:
        assert torch.equal(narrow[name], again[name])
        n = min(narrow[name].numel(), wide[name].numel())
        assert not torch.equal(narrow[name].flatten()[:n], wide[name].flatten()[:n]), name


def test_params_of_is_a_copy_and_functional_uses_given_params():
    cfg = ModelConfig(width=5, depth=1, activation="tanh", b_std=0.4)
    model = _build(cfg, seed=6)
    x = seeded((3, D_IN), 7)
    params = params_of(model)
    assert all(not v.requires_grad for v in params.values())
    before = model(x).detach().clone()
    params["readout.weight"].zero_()
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)          # model untouched
    # with zero readout weights the output is the readout bias term c_b·b alone
    expected = (cfg.b_std * params["readout.bias"]).expand(3, K)
    torch.testing.assert_close(functional(model)(params, x), expected, rtol=1e-15, atol=0)
    assert num_params(params) == (D_IN * 5 + 5) + (5 * K + K)


# --------------------------------------------------------------- parameterizations
def _grads(model, x, w):
    model.zero_grad()
    (model(x) * w).sum().backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_ntk_and_standard_same_function_at_init(kind):
    shape = (D_IN,) if kind == "mlp" else (2, 4, 4)
    common = dict(kind=kind, width=6, depth=2, activation="tanh", w_std=1.3, b_std=0.4)
    ntk = _build(ModelConfig(parameterization="ntk", **common), seed=8, shape=shape)
    std = _build(ModelConfig(parameterization="standard", **common), seed=8, shape=shape)
    x = seeded((4,) + shape, 9)
    torch.testing.assert_close(std(x), ntk(x), rtol=1e-14, atol=1e-15)


def test_ntk_vs_standard_gradient_relation():
    """W_std = c_w·W_ntk, b_std = σ_b·b_ntk at the same function, so
    ∂f/∂W_std = ∂f/∂W_ntk / c_w  (c_w = σ_w/√fan_in)  and  ∂f/∂b_std = ∂f/∂b_ntk / σ_b."""
    common = dict(width=6, depth=2, activation="tanh", w_std=1.3, b_std=0.4)
    ntk = _build(ModelConfig(parameterization="ntk", **common), seed=8)
    std = _build(ModelConfig(parameterization="standard", **common), seed=8)
    x, w = seeded((4, D_IN), 9), seeded((4, K), 10)
    g_ntk, g_std = _grads(ntk, x, w), _grads(std, x, w)
    for name, fan_in in (("hidden.0", D_IN), ("hidden.1", 6), ("readout", 6)):
        c_w = common["w_std"] / math.sqrt(fan_in)
        torch.testing.assert_close(g_std[f"{name}.weight"], g_ntk[f"{name}.weight"] / c_w,
                                   rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(g_std[f"{name}.bias"], g_ntk[f"{name}.bias"] / common["b_std"],
                                   rtol=1e-12, atol=1e-15)
        # the relation is not trivially an equality
        assert not torch.allclose(g_std[f"{name}.weight"], g_ntk[f"{name}.weight"])


@pytest.mark.parametrize("b_std", [0.0, 0.4])
def test_mean_field_differs_from_ntk_by_readout_scale(b_std):
    width = 9
    common = dict(width=width, depth=2, activation="erf", w_std=1.3, b_std=b_std)
    ntk = _build(ModelConfig(parameterization="ntk", **common), seed=12)
    mf = _build(ModelConfig(parameterization="mean_field", **common), seed=12)
    p_ntk, p_mf = params_of(ntk), params_of(mf)
    assert all(torch.equal(p_ntk[k], p_mf[k]) for k in p_ntk)     # same stored θ₀
    x = seeded((5, D_IN), 13)
    assert ntk(x).abs().min() > 1e-3
    # the whole readout (weight and bias) is 1/√width of ntk's, so the output is too ...
    torch.testing.assert_close(mf(x), ntk(x) / math.sqrt(width), rtol=1e-12, atol=1e-15)
    # ... and so is every gradient (every NTK term is 1/width of ntk's)
    w = seeded((5, K), 14)
    g_ntk, g_mf = _grads(ntk, x, w), _grads(mf, x, w)
    for k in g_ntk:
        torch.testing.assert_close(g_mf[k], g_ntk[k] / math.sqrt(width), rtol=1e-12, atol=1e-15)


def test_lr_width_multiplier():
    assert lr_width_multiplier("mean_field", 64) == 64.0
    assert lr_width_multiplier("ntk", 64) == 1.0
    assert lr_width_multiplier("standard", 64) == 1.0


@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mean_field"])
@pytest.mark.parametrize("readout", [False, True])
def test_layer_scales_table(parameterization, readout):
    sw, c_w, sb, c_b = layer_scales(parameterization, 16, 1.3, 0.4, readout)
    assert (c_w, c_b) == pytest.approx(multipliers(parameterization, 16, 1.3, 0.4, readout), rel=1e-15)
    # the product (init std × multiplier) is the same in every parameterization,
    # except mean_field's readout, 1/√fan_in smaller
    readout_scale = 4 if (parameterization == "mean_field" and readout) else 1
    assert sw * c_w == pytest.approx(1.3 / 4 / readout_scale, rel=1e-15)
    assert sb * c_b == pytest.approx(0.4 / readout_scale, rel=1e-15)


# --------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad, shape", [
    (dict(width=0), (D_IN,)),
    (dict(width=-3), (D_IN,)),
    (dict(width=2.5), (D_IN,)),
    (dict(depth=0), (D_IN,)),
    (dict(activation="swish"), (D_IN,)),
    (dict(parameterization="mup"), (D_IN,)),
    (dict(kind="rnn"), (D_IN,)),
    (dict(w_std=0.0), (D_IN,)),
    (dict(b_std=-0.1), (D_IN,)),
    (dict(kind="cnn"), (D_IN,)),            # flat input to a CNN
    (dict(kind="cnn"), (1, 2, 4, 4)),
], ids=["width0", "width-neg", "width-float", "depth0", "activation", "parameterization",
        "kind", "w_std0", "b_std-neg", "cnn-flat", "cnn-4d"])
def test_bad_config_raises(bad, shape):
    cfg = ModelConfig(**{**dict(width=4, depth=1, activation="tanh"), **bad})
    with pytest.raises(ValueError):
        build_model(cfg, shape, K, seed=0)


def test_get_activation_and_layer_scales_reject_unknown():
    with pytest.raises(ValueError):
        get_activation("swish")
    with pytest.raises(ValueError):
        layer_scales("mup", 4, 1.0, 0.1, False)
    assert {"relu", "erf", "tanh", "gelu", "identity"} <= set(ACTIVATIONS)

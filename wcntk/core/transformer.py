"""Small vision transformer on image patches (`model=transformer`).

An image x ∈ ℝ^{C×H×W} is cut into T = (H/p)(W/p) non-overlapping p×p patches
(p = `model.patch_size`; null: a 4×4 grid, p = H/4, i.e. 7×7 patches of MNIST, 2×2 of digits).
Every dense layer is a :class:`~wcntk.core.models.ScaledLinear`, h = c_w·W a + c_b·b with the
multipliers of the chosen parameterization (ntk: W ~ N(0,1), c_w = σ_w/√fan_in;
standard: W ~ N(0, σ_w²/fan_in), c_w = 1; docs/theory.md §3); n = `width`, `heads` heads of
dimension d = n/heads, LN the layer norm over the n features without learned gain or bias:

    z₀_t = embed(patch_t) + c_b·P_t                          (C·p² → n; P_t a learned per-token
                                                              bias, drawn and scaled like b)
    z ← z + β · out(Σ_h softmax_s(s · q_h(LN z) k_h(LN z)ᵀ) v_h(LN z))    attention, per block
    z ← z + β · fc₂(σ(fc₁(LN z)))                             MLP (n → n → n), per block
    f(x) = readout(mean_t LN(z)_t)                            (n → k)

with q, k, v, out dense n → n layers, β = 1/√(2·depth) (2·depth residual branches, as the
resnet's 1/√depth) and the attention-logit scale s set by `model.attention_logits`:

- ``inv_d`` (default), s = 1/d: at θ₀ the logits are O(1/√d) and the attention tends to a
  uniform average as d → ∞; the network has a deterministic NTK limit at a fixed number of heads
  (Hron et al. 2020, "Infinite attention", §3; Yang's Tensor Programs use the same), which is
  the regime the weak-correlation theory is about. The query and key weights then move the
  output only by O(1/d) (their NTK contribution vanishes like a mean-field readout's).
- ``inv_sqrt_d``, s = 1/√d (the usual practice): logits stay O(1) random at θ₀; with a fixed
  number of heads the limit is not Gaussian (Hron et al. need heads → ∞), so no width exponent
  is claimed for it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .init import ParamInit
from .layers import ModelConfig, ScaledLinear, get_activation, layer_scales

LOGIT_POWER = {"inv_d": 1.0, "inv_sqrt_d": 0.5}  # s = d^(−power), keys as models.AttentionLogits
LAYER_NORM_EPS = 1e-6


def default_patch_size(image_size: int) -> int:
    """p of a 4×4 grid of patches (7 for 28×28, 2 for 8×8, 8 for 32×32)."""
    return image_size // 4


def patches(x: Tensor, p: int) -> Tensor:
    """[B, C, H, W] → [B, (H/p)(W/p), C·p²], row-major over patches."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def layer_norm(z: Tensor) -> Tensor:
    """(z − mean) / √(var + ε) over the last dimension, no learned gain or bias."""
    centred = z - z.mean(dim=-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + LAYER_NORM_EPS)


class Attention(nn.Module):
    """Multi-head self-attention with scaled dense q, k, v, out layers and logit scale s."""

    def __init__(self, width: int, heads: int, logit_power: float, name: str, **common):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.scale = self.head_dim ** -logit_power
        self.q, self.k, self.v, self.out = (ScaledLinear(width, width, readout=False, name=f"{name}.{m}",
                                                         **common)
                                            for m in ("q", "k", "v", "out"))

    def forward(self, a: Tensor) -> Tensor:
        b, t, n = a.shape

        def split(h: Tensor) -> Tensor:
            return h.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(a)), split(self.k(a)), split(self.v(a))
        weights = torch.softmax(self.scale * (q @ k.transpose(-1, -2)), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, n))


class VisionTransformer(nn.Module):
    """x ∈ ℝ^{C×H×W} → patch embedding + per-token bias → `depth` pre-LN blocks of multi-head
    self-attention and an MLP → LN → mean over tokens → dense readout to ℝ^k."""

    def __init__(self, input_shape: tuple[int, ...], out_features: int, cfg: ModelConfig, init: ParamInit):
        super().__init__()
        c, h, w = input_shape
        n = cfg.width
        self.patch = cfg.patch_size or default_patch_size(h)
        self.act = get_activation(cfg.activation)
        self.branch_scale = 1.0 / math.sqrt(2 * cfg.depth)
        common = dict(parameterization=cfg.parameterization, w_std=cfg.w_std, b_std=cfg.b_std, init=init)
        fan_in = c * self.patch * self.patch
        self.embed = ScaledLinear(fan_in, n, readout=False, name="embed", **common)
        tokens = (h // self.patch) * (w // self.patch)
        _, _, pos_std, self.pos_scale = layer_scales(cfg.parameterization, fan_in, cfg.w_std,
                                                     cfg.b_std, False)
        self.pos = nn.Parameter(init.normal("pos", (tokens, n), pos_std))
        power = LOGIT_POWER[cfg.attention_logits]
        self.attention = nn.ModuleList(Attention(n, cfg.heads, power, name=f"attention.{b}", **common)
                                       for b in range(cfg.depth))
        self.mlp = nn.ModuleList(
            nn.ModuleList([ScaledLinear(n, n, readout=False, name=f"mlp.{b}.{i}", **common)
                           for i in range(2)])
            for b in range(cfg.depth))
        self.readout = ScaledLinear(n, out_features, readout=True, name="readout", **common)

    def forward(self, x: Tensor) -> Tensor:
        z = self.embed(patches(x, self.patch)) + self.pos_scale * self.pos
        for attention, (fc1, fc2) in zip(self.attention, self.mlp, strict=True):
            z = z + self.branch_scale * attention(layer_norm(z))
            z = z + self.branch_scale * fc2(self.act(fc1(layer_norm(z))))
        return self.readout(layer_norm(z).mean(dim=1))

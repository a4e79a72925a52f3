"""Pre-activation residual network of 3×3 convolutions (`model=resnet`).

With σ the activation, every conv a :class:`~wcntk.core.models.ScaledConv2d` and the readout a
:class:`~wcntk.core.models.ScaledLinear` (so each layer is h = c_w·W*a + c_b·b in the chosen
parameterization, docs/theory.md §3):

    h₀ = conv_in(x)                                          (C_in → width channels)
    h_l = h_{l−1} + β · conv_{l,2}(σ(conv_{l,1}(σ(h_{l−1}))))    l = 1 … depth, β = 1/√depth
    f(x) = readout(mean_{pixels} σ(h_depth))                 (width → k)

The branch scale β = 1/√depth keeps the variance of h_depth O(1) at any depth (each of the
depth branches adds O(1/depth) to it), so width and depth can be swept independently; it is a
constant multiplier, not a parameter, and does not depend on the width, so under the ntk
parameterization every layer keeps its 1/√fan_in and the width exponents of docs/theory.md
§11 hold as for the CNN.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from .init import ParamInit
from .layers import ModelConfig, ScaledConv2d, ScaledLinear, get_activation


class ResNet(nn.Module):
    """x ∈ ℝ^{C×H×W} → stem conv → `depth` pre-activation residual blocks of two 3×3 convs
    at `width` channels → σ → global average pool → dense readout to ℝ^k."""

    def __init__(self, in_channels: int, out_features: int, cfg: ModelConfig, init: ParamInit):
        super().__init__()
        self.act = get_activation(cfg.activation)
        self.branch_scale = 1.0 / math.sqrt(cfg.depth)
        common = dict(parameterization=cfg.parameterization, w_std=cfg.w_std, b_std=cfg.b_std, init=init)
        n = cfg.width
        self.stem = ScaledConv2d(in_channels, n, name="stem", **common)
        self.blocks = nn.ModuleList(
            nn.ModuleList([ScaledConv2d(n, n, name=f"blocks.{b}.{i}", **common) for i in range(2)])
            for b in range(cfg.depth))
        self.readout = ScaledLinear(n, out_features, readout=True, name="readout", **common)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for first, second in self.blocks:
            h = h + self.branch_scale * second(self.act(first(self.act(h))))
        return self.readout(self.act(h).mean(dim=(2, 3)))

"""The CNN (`model=cnn`): `depth` 3×3 same-padding convolutions, global average pooling, a dense
readout, each layer in the chosen parameterization (wcntk.core.layers)."""
from __future__ import annotations

import itertools

from torch import Tensor, nn

from .init import ParamInit
from .layers import ModelConfig, ScaledConv2d, ScaledLinear, get_activation


class CNN(nn.Module):
    """x ∈ ℝ^{C×H×W} → `depth` 3×3 same-padding convs of `width` channels →
    global average pool → dense readout to ℝ^k.

    Global average pooling (not flatten) keeps the readout at width·k parameters
    whatever the image size, and has a well-defined infinite-width limit.
    """

    def __init__(self, in_channels: int, out_features: int, cfg: ModelConfig, init: ParamInit):
        super().__init__()
        self.act = get_activation(cfg.activation)
        common = dict(parameterization=cfg.parameterization, w_std=cfg.w_std, b_std=cfg.b_std, init=init)
        chans = [in_channels] + [cfg.width] * cfg.depth
        self.hidden = nn.ModuleList(ScaledConv2d(i, o, name=f"hidden.{n}", **common)
                                    for n, (i, o) in enumerate(itertools.pairwise(chans)))
        self.readout = ScaledLinear(cfg.width, out_features, readout=True, name="readout", **common)

    def forward(self, x: Tensor) -> Tensor:
        a = x
        for layer in self.hidden:
            a = self.act(layer(a))
        return self.readout(a.mean(dim=(2, 3)))

"""The MLP (`model=mlp`): `depth` dense hidden layers of `width` units, each h = c_w·W a + c_b·b
in the chosen parameterization (wcntk.core.layers)."""
from __future__ import annotations

import itertools

from torch import Tensor, nn

from .init import ParamInit
from .layers import ModelConfig, Params, ScaledLinear, get_activation


class MLP(nn.Module):
    """x ∈ ℝ^d → `depth` hidden layers of `width` units → ℝ^k; flattens its input."""

    def __init__(self, in_features: int, out_features: int, cfg: ModelConfig, init: ParamInit):
        super().__init__()
        self.act = get_activation(cfg.activation)
        sizes = [in_features] + [cfg.width] * cfg.depth
        common = dict(parameterization=cfg.parameterization, w_std=cfg.w_std, b_std=cfg.b_std, init=init)
        self.hidden = nn.ModuleList(ScaledLinear(i, o, readout=False, name=f"hidden.{n}", **common)
                                    for n, (i, o) in enumerate(itertools.pairwise(sizes)))
        self.readout = ScaledLinear(cfg.width, out_features, readout=True, name="readout", **common)

    def forward(self, x: Tensor) -> Tensor:
        a = x.flatten(1)
        for layer in self.hidden:
            a = self.act(layer(a))
        return self.readout(a)


def mlp_layers(model: MLP, params: Params | None = None) -> list[tuple[Tensor, Tensor, float, float]]:
    """(W, b, c_w, c_b) of every dense layer of an :class:`MLP`, the readout last, taking W
    and b from `params` (names as in `params_of`; default: the module's own parameters)."""
    params = dict(model.named_parameters()) if params is None else params
    names = [f"hidden.{i}" for i in range(len(model.hidden))] + ["readout"]
    return [(params[f"{n}.weight"], params[f"{n}.bias"], float(layer.c_w), float(layer.c_b))
            for n, layer in zip(names, [*model.hidden, model.readout], strict=True)]

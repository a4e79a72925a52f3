"""A network of your own for `python run.py model=custom model.target=examples.my_nets.make_net`.

run.py calls make_net with the arguments it names (input_shape, out_features, width,
parameterization here) plus every model.kwargs entry (hidden_layers). Forward pass, with
n = width and each Linear drawn as N(0, 1) and scaled by 1/√fan_in in the forward pass
(the ntk parameterization) or drawn N(0, 1/fan_in) and used as is (standard):
    f(x) = W_out tanh(W_l … tanh(W_1 flatten(x)))   with hidden_layers layers of n units.
"""
import math

import torch
from torch import nn


class ScaledTanhNet(nn.Module):
    def __init__(self, sizes, ntk):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:]))
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=1.0 if ntk else 1 / math.sqrt(layer.in_features))
        self.scales = [1 / math.sqrt(layer.in_features) if ntk else 1.0 for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(1)
        for i, (layer, scale) in enumerate(zip(self.layers, self.scales)):
            a = scale * layer(a)
            a = a if i == len(self.layers) - 1 else torch.tanh(a)
        return a


def make_net(input_shape, out_features, width, parameterization, hidden_layers=1):
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"make_net has no {parameterization} parameterization")
    sizes = [math.prod(input_shape)] + [width] * hidden_layers + [out_features]
    return ScaledTanhNet(sizes, ntk=parameterization == "ntk")

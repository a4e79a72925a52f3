"""A network of your own: `python run.py model=custom model.target=examples.my_nets.make_net`.

run.py passes make_net the arguments it names (input_shape, out_features, width) and every
`model.kwargs` entry (hidden_layers), under torch.manual_seed(seed). With n = width and every
W ~ N(0, 1) (the ntk parameterization, without biases):
    f(x) = W_L/√n · tanh(… tanh(W_1/√d · flatten(x)))     with hidden_layers layers of n units.
"""
import itertools
import math

import torch
from torch import nn


class TanhNet(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.weights = nn.ParameterList(torch.randn(o, i) for i, o in itertools.pairwise(sizes))

    def forward(self, x):
        a = x.flatten(1)
        for i, w in enumerate(self.weights):
            a = a @ w.T / math.sqrt(w.shape[1])
            a = torch.tanh(a) if i < len(self.weights) - 1 else a
        return a


def make_net(input_shape, out_features, width, hidden_layers=1):
    return TanhNet([math.prod(input_shape)] + [width] * hidden_layers + [out_features])

"""Ordinary user modules that the measurement must get right or refuse (issue: "your network,
safely"). Each factory takes (input_shape, out_features, width) like examples/my_nets.py."""
import math

import torch
from torch import nn


class Tanh2(nn.Module):
    """f(x) = W2 tanh(W1 x / √d) / √n, optionally with W1 a buffer (a constant of f)."""

    def __init__(self, d, n, k, w1_as_buffer=False):
        super().__init__()
        w1 = torch.randn(n, d)
        if w1_as_buffer:
            self.register_buffer("w1", w1)
        else:
            self.w1 = nn.Parameter(w1)
        self.w2 = nn.Parameter(torch.randn(k, n))
        self.b2 = nn.Parameter(torch.zeros(k))

    def hidden(self, x):
        a = x.flatten(1)
        return a @ self.w1.T / math.sqrt(a.shape[1])

    def forward(self, x):
        return torch.tanh(self.hidden(x)) @ self.w2.T / math.sqrt(self.w2.shape[1]) + self.b2


def frozen_first_layer(input_shape, out_features, width):
    net = Tanh2(math.prod(input_shape), width, out_features)
    net.w1.requires_grad_(False)
    return net


def first_layer_as_buffer(input_shape, out_features, width):
    """The same function and the same draws as frozen_first_layer, W1 held as a buffer."""
    return Tanh2(math.prod(input_shape), width, out_features, w1_as_buffer=True)


def all_frozen(input_shape, out_features, width):
    net = Tanh2(math.prod(input_shape), width, out_features)
    return net.requires_grad_(False)


class BatchCentred(Tanh2):
    def hidden(self, x):
        h = super().hidden(x)
        return h - h.mean(dim=0, keepdim=True)


def batch_centred(input_shape, out_features, width):
    return BatchCentred(math.prod(input_shape), width, out_features)


class OneRow(Tanh2):
    def forward(self, x):
        return super().forward(x).mean(dim=0, keepdim=True)


def one_row(input_shape, out_features, width):
    return OneRow(math.prod(input_shape), width, out_features)


class CastOutput(Tanh2):
    def __init__(self, *args, dtype):
        super().__init__(*args)
        self.out_dtype = dtype

    def forward(self, x):
        return super().forward(x).to(self.out_dtype)


def float64_output(input_shape, out_features, width):
    return CastOutput(math.prod(input_shape), width, out_features, dtype=torch.float64)


class HalfInside(Tanh2):
    def forward(self, x):
        return super().forward(x.half())


def half_inside(input_shape, out_features, width):
    return HalfInside(math.prod(input_shape), width, out_features)


class Detached(Tanh2):
    def forward(self, x):
        return super().forward(x).detach()


def detached_output(input_shape, out_features, width):
    return Detached(math.prod(input_shape), width, out_features)


def _sequential(input_shape, out_features, width, middle):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), *middle, nn.Tanh(),
                         nn.Linear(width, out_features))


def dropout(input_shape, out_features, width):
    return _sequential(input_shape, out_features, width, [nn.Dropout(0.5)])


def batchnorm_training(input_shape, out_features, width):
    return _sequential(input_shape, out_features, width, [nn.BatchNorm1d(width)])


def batchnorm_eval(input_shape, out_features, width):
    return batchnorm_training(input_shape, out_features, width).eval()


def groupnorm(input_shape, out_features, width):
    return _sequential(input_shape, out_features, width, [nn.GroupNorm(2, width)])


def layernorm(input_shape, out_features, width):
    return _sequential(input_shape, out_features, width, [nn.LayerNorm(width)])


class Counter(Tanh2):
    def __init__(self, *args):
        super().__init__(*args)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def mutates_buffer(input_shape, out_features, width):
    return Counter(math.prod(input_shape), width, out_features)


def open_kwargs(**kw):
    """Builds from what **kw receives: width must reach it."""
    return Tanh2(math.prod(kw["input_shape"]), kw["width"], kw["out_features"])


def no_width(input_shape, out_features):
    return Tanh2(math.prod(input_shape), 8, out_features)

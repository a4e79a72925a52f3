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


class TiedLayer(nn.Module):
    """f(x) = W2 tanh(B tanh(A tanh(W0 x + b0) + a) + b) + b2 with one layer A = B registered
    under two names (`self.a = self.b`), or with only A's weight shared by two layers."""

    def __init__(self, d, n, k, share_weight_only=False):
        super().__init__()
        self.inp = nn.Linear(d, n)
        if share_weight_only:
            self.a, self.b = nn.Linear(n, n), nn.Linear(n, n)
            self.b.weight = self.a.weight
        else:
            self.a = self.b = nn.Linear(n, n)
        self.out = nn.Linear(n, k)

    def forward(self, x):
        h = torch.tanh(self.a(torch.tanh(self.inp(x.flatten(1)))))
        return self.out(torch.tanh(self.b(h)))


def tied_layer(input_shape, out_features, width):
    return TiedLayer(math.prod(input_shape), width, out_features)


def shared_weight(input_shape, out_features, width):
    return TiedLayer(math.prod(input_shape), width, out_features, share_weight_only=True)


class Unused(Tanh2):
    """Tanh2 holding a large trainable parameter that forward never reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.spare = nn.Parameter(torch.randn(4, 64) * 10)


def unused_parameter(input_shape, out_features, width):
    return Unused(math.prod(input_shape), width, out_features)


def lazy(input_shape, out_features, width):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.Tanh(), nn.LazyLinear(out_features))


class Attention(nn.Module):
    """Rows of the image as tokens through nn.MultiheadAttention, mean over tokens, a readout."""

    def __init__(self, input_shape, out_features, width):
        super().__init__()
        self.embed = nn.Linear(input_shape[-1], width)
        self.attention = nn.MultiheadAttention(width, 2, batch_first=True)
        self.out = nn.Linear(width, out_features)

    def forward(self, x):
        tokens = self.embed(x.flatten(1, -2))
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.out(mixed.mean(dim=1))


def attention_eval(input_shape, out_features, width):
    return Attention(input_shape, out_features, width).eval()


def weight_norm(input_shape, out_features, width):
    net = _sequential(input_shape, out_features, width, [])
    net[1] = nn.utils.weight_norm(net[1])
    return net


def attention_training(input_shape, out_features, width):
    return Attention(input_shape, out_features, width)


def needs_hidden_layers(input_shape, out_features, width, hidden_layers):
    return Tanh2(math.prod(input_shape), width * hidden_layers, out_features)


CALLS = {"counted": 0}


def counted(input_shape, out_features, width, tag=None):
    """Tanh2, counting the factory's calls (in CALLS)."""
    CALLS["counted"] += 1
    return Tanh2(math.prod(input_shape), width, out_features)

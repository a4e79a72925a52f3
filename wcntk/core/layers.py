"""The layers every built-in network is made of, ModelConfig, and a network as a pure function.

Every layer computes  h = c_w · W a + c_b · b  where the stored parameters
(W, b) and the multipliers (c_w, c_b) depend on the parameterization
(docs/theory.md §3), with fan_in the layer's input size (in_channels·k² for a conv):

=============  ======================  ===========  =====================  ======
name           W stored                c_w          b stored               c_b
=============  ======================  ===========  =====================  ======
ntk            N(0, 1)                 σ_w/√fan_in  N(0, 1)                σ_b
standard       N(0, σ_w²/fan_in)       1            N(0, σ_b²)             1
mean_field     hidden layers as ntk; readout c_w = σ_w/fan_in, c_b = σ_b/√fan_in (μP-like)
=============  ======================  ===========  =====================  ======

ntk and standard compute the same function at θ₀ for the same seed (the same
standard normals are drawn and scaled); their gradients differ by c_w.
mean_field's whole readout (weight and bias) is smaller by 1/√fan_in than ntk's, so
every NTK contribution is 1/width of ntk's and the learning rate is scaled up by the width
(:func:`lr_width_multiplier`) to train at O(1) speed. (An unscaled readout bias would keep
its O(1) kernel term and make η·width diverge.)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .custom import resolve_target
from .init import ParamInit

Params = dict[str, Tensor]
Fn = Callable[[Params, Tensor], Tensor]   # f(params, x): a network in functional form



class ModelKind(StrEnum):
    """`model.kind`: which network."""

    mlp = "mlp"
    cnn = "cnn"
    resnet = "resnet"
    transformer = "transformer"
    custom = "custom"


class Parameterization(StrEnum):
    """`parameterization`: how width enters the init and the forward pass."""

    ntk = "ntk"
    standard = "standard"
    mean_field = "mean_field"


class AttentionLogits(StrEnum):
    """`model.attention_logits`: the transformer's logit scale, 1/d or 1/√d."""

    inv_d = "inv_d"
    inv_sqrt_d = "inv_sqrt_d"


def _erf(x: Tensor) -> Tensor:
    return torch.erf(x)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "erf": _erf,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": nn.functional.gelu,
    "leaky_relu": lambda x: nn.functional.leaky_relu(x, 0.1),
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def layer_scales(parameterization: str, fan_in: int, w_std: float, b_std: float,
                 readout: bool) -> tuple[float, float, float, float]:
    """Return (init std of W, c_w, init std of b, c_b) for one layer."""
    if parameterization == "ntk":
        return 1.0, w_std / math.sqrt(fan_in), 1.0, b_std
    if parameterization == "standard":
        return w_std / math.sqrt(fan_in), 1.0, b_std, 1.0
    if parameterization == "mean_field":
        if readout:
            return 1.0, w_std / fan_in, 1.0, b_std / math.sqrt(fan_in)
        return 1.0, w_std / math.sqrt(fan_in), 1.0, b_std
    raise ValueError(f"unknown parameterization {parameterization!r}; "
                     f"choose one of {', '.join(Parameterization)}")


def lr_width_multiplier(parameterization: str, width: int) -> float:
    """Factor the base learning rate is multiplied by: width for mean_field
    (so the 1/width readout still trains at O(1) speed), 1 otherwise."""
    return float(width) if parameterization == "mean_field" else 1.0


class ScaledLinear(nn.Module):
    """h = c_w · a Wᵀ + c_b · b (scalars applied to the product, not to W: no weight-sized
    copy per forward and multiply per backward, 0.73x the step time at width 16384).
    `name` is the layer's path in its model (`hidden.0`): with the parameter's own name it keys
    the θ₀ streams (wcntk.core.init)."""

    def __init__(self, fan_in: int, fan_out: int, parameterization: str, w_std: float,
                 b_std: float, readout: bool, init: ParamInit, name: str):
        super().__init__()
        sw, self.c_w, sb, self.c_b = layer_scales(parameterization, fan_in, w_std, b_std, readout)
        self.weight = nn.Parameter(init.normal(f"{name}.weight", (fan_out, fan_in), sw))
        self.bias = nn.Parameter(init.normal(f"{name}.bias", (fan_out,), sb))

    def forward(self, a: Tensor) -> Tensor:
        return self.c_w * nn.functional.linear(a, self.weight) + self.c_b * self.bias


class ScaledConv2d(nn.Module):
    """h = c_w · conv3x3(a, W) + c_b · b, same padding, fan_in = in_channels·9; `name` as for
    ScaledLinear."""

    def __init__(self, in_channels: int, out_channels: int, parameterization: str, w_std: float,
                 b_std: float, init: ParamInit, name: str, kernel_size: int = 3):
        super().__init__()
        fan_in = in_channels * kernel_size * kernel_size
        sw, self.c_w, sb, self.c_b = layer_scales(parameterization, fan_in, w_std, b_std, False)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(init.normal(f"{name}.weight", shape, sw))
        self.bias = nn.Parameter(init.normal(f"{name}.bias", (out_channels,), sb))
        self.padding = kernel_size // 2

    def forward(self, a: Tensor) -> Tensor:
        h = nn.functional.conv2d(a, self.weight, padding=self.padding)
        return self.c_w * h + (self.c_b * self.bias)[:, None, None]


@dataclass
class ModelConfig:
    """Everything that defines a network and its initialization."""

    kind: ModelKind = ModelKind.mlp
    width: int = 1024
    depth: int = 1
    activation: str = "relu"
    parameterization: Parameterization = Parameterization.ntk
    w_std: float = 1.0
    b_std: float = 0.05
    heads: int = 2                    # transformer: attention heads (divides width)
    patch_size: int | None = None     # transformer: p×p patches (None: a 4×4 grid)
    attention_logits: AttentionLogits = AttentionLogits.inv_d  # transformer (wcntk.core.transformer)
    target: str | None = None         # custom: dotted path of the factory (wcntk.core.custom)
    kwargs: dict[str, Any] = field(default_factory=dict)  # custom: extra factory arguments

    def validate(self) -> None:
        if self.kind not in list(ModelKind):
            raise ValueError(f"unknown model {self.kind!r}; choose one of {', '.join(ModelKind)}")
        if not isinstance(self.width, int) or self.width <= 0:
            raise ValueError(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {self.depth!r}")
        get_activation(self.activation)
        if self.parameterization not in list(Parameterization):
            raise ValueError(f"unknown parameterization {self.parameterization!r}; "
                             f"choose one of {', '.join(Parameterization)}")
        if not (math.isfinite(self.w_std) and self.w_std > 0):
            raise ValueError(f"model.w_std must be finite and > 0, got {self.w_std}")
        if not (math.isfinite(self.b_std) and self.b_std >= 0):
            raise ValueError(f"model.b_std must be finite and >= 0, got {self.b_std}")
        if self.kind == "transformer":
            if not isinstance(self.heads, int) or self.heads < 1 or self.width % self.heads:
                raise ValueError(f"model.heads must be a positive divisor of width={self.width}, "
                                 f"got {self.heads!r}")
            if self.patch_size is not None and (not isinstance(self.patch_size, int) or self.patch_size < 1):
                raise ValueError(f"model.patch_size must be a positive integer or null, "
                                 f"got {self.patch_size!r}")
            if self.attention_logits not in list(AttentionLogits):
                raise ValueError(f"model.attention_logits must be one of {', '.join(AttentionLogits)}, "
                                 f"got {self.attention_logits!r}")
        if self.kind == "custom":
            resolve_target(self.target)
        elif self.target is not None or self.kwargs:
            raise ValueError(f"model.target and model.kwargs are for model=custom, not model={self.kind}")


def trainable_params(model: nn.Module) -> Params:
    """θ: the module's parameters with requires_grad (live, no copy). A frozen parameter is a
    constant of f: `functional(model)` takes it from the module, and θ, the twin, the NTK and the
    correlations never see it."""
    return {k: v for k, v in model.named_parameters() if v.requires_grad}


def frozen_count(model: nn.Module) -> int:
    """Entries of the parameters with requires_grad=False (constants of f)."""
    return sum(v.numel() for v in model.parameters() if not v.requires_grad)


def params_of(model: nn.Module) -> Params:
    """θ (the trainable parameters) as a dict of detached tensors (a copy)."""
    return {k: v.detach().clone() for k, v in trainable_params(model).items()}


def detached(params: Mapping[str, Tensor]) -> Params:
    """θ as a dict of detached views (no copy): a fixed point to differentiate at."""
    return {k: v.detach() for k, v in params.items()}


def parameter_slots(model: nn.Module) -> dict[str, list[str]]:
    """For each parameter by its first name (named_parameters' key), one name per place that holds
    it: a weight shared by two layers (`l2.weight = l1.weight`) has two places, a layer registered
    under two names (`self.a = self.b = nn.Linear(…)`) one (`a.weight` and `b.weight` are one
    attribute of one module)."""
    first = {id(p): name for name, p in model.named_parameters()}
    slots: dict[str, list[str]] = {}
    seen: set[tuple[int, str]] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        owner, _, attr = name.rpartition(".")
        place = (id(model.get_submodule(owner)), attr)
        if place not in seen:
            seen.add(place)
            slots.setdefault(first[id(p)], []).append(name)
    return slots


def functional(model: nn.Module) -> Callable[[Params, Tensor], Tensor]:
    """The pure function f(params, x) -> [batch, k] of a module; a parameter or buffer missing
    from `params` (a frozen one) is taken from the module. A tensor that several names share
    (parameter_slots) is set once in each place that holds it: torch.func.functional_call's own
    weight tying swaps a layer registered under two names twice and restores the traced value,
    not the module's parameter, into it."""
    slots = parameter_slots(model)
    if len(list(model.named_parameters(remove_duplicate=False))) == len(slots):   # no tensor has two names
        def f(params: Params, x: Tensor) -> Tensor:
            return functional_call(model, params, (x,))
        return f

    def f_tied(params: Params, x: Tensor) -> Tensor:
        placed = {name: value for key, value in params.items() for name in slots.get(key, [key])}
        return functional_call(model, placed, (x,), tie_weights=False)

    return f_tied


def num_params(params: Params) -> int:
    return sum(p.numel() for p in params.values())

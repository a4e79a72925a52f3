"""The networks on image or arbitrary inputs (cnn, resnet, transformer, custom): building one."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .init import ParamInit
from .models import CNN, ModelConfig
from .models_custom import build_custom, factory_arguments, recorded_value, resolve_target
from .models_resnet import ResNet
from .models_transformer import VisionTransformer

IMAGE_MODELS = ("cnn", "resnet", "transformer")


def custom_provided(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                    init: ParamInit) -> dict[str, Any]:
    """What the runner offers a custom factory (wcntk.core.models_custom.PROVIDED)."""
    return dict(input_shape=tuple(input_shape), out_features=out_features, width=cfg.width, depth=cfg.depth,
                activation=cfg.activation, parameterization=cfg.parameterization,
                generator=torch.Generator().manual_seed(init.seed), seed=init.seed, dtype=init.dtype,
                device=init.device)


def custom_factory_arguments(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                             seed: int) -> dict[str, Any]:
    """The arguments a custom factory receives, as plain values for the run's record."""
    provided = custom_provided(cfg, input_shape, out_features, ParamInit(seed, torch.float32, "cpu"))
    arguments = factory_arguments(resolve_target(cfg.target), provided, dict(cfg.kwargs), cfg.target)
    return {k: recorded_value(v) for k, v in arguments.items() if k not in ("dtype", "device")}


def build_network(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                  init: ParamInit) -> nn.Module:
    """A cnn, resnet, transformer or custom network (see wcntk.core.models.build_model). The built-in ones
    draw θ₀ by `init` (wcntk.core.init); a custom factory gets `torch.Generator().manual_seed(seed)`
    and runs under torch.manual_seed(seed) (wcntk.core.models_custom)."""
    if cfg.kind == "custom":
        provided = custom_provided(cfg, input_shape, out_features, init)
        return build_custom(cfg.target, cfg.kwargs, provided, init.dtype, init.device)
    if len(input_shape) != 3:
        raise ValueError(f"model={cfg.kind} needs image inputs [C, H, W], got shape {tuple(input_shape)}")
    if cfg.kind == "cnn":
        return CNN(input_shape[0], out_features, cfg, init)
    if cfg.kind == "resnet":
        return ResNet(input_shape[0], out_features, cfg, init)
    return VisionTransformer(tuple(input_shape), out_features, cfg, init)

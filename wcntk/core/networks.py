"""The networks on image or arbitrary inputs (cnn, resnet, transformer, custom): building one."""
from __future__ import annotations

import torch
from torch import nn

from .init import ParamInit
from .models import CNN, ModelConfig
from .models_custom import build_custom
from .models_resnet import ResNet
from .models_transformer import VisionTransformer

IMAGE_MODELS = ("cnn", "resnet", "transformer")


def build_network(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                  init: ParamInit) -> nn.Module:
    """A cnn, resnet, transformer or custom network (see wcntk.core.models.build_model). The built-in ones
    draw θ₀ by `init` (wcntk.core.init); a custom factory gets `torch.Generator().manual_seed(seed)`
    and runs under torch.manual_seed(seed) (wcntk.core.models_custom)."""
    if cfg.kind == "custom":
        provided = dict(input_shape=tuple(input_shape), out_features=out_features, width=cfg.width,
                        depth=cfg.depth, activation=cfg.activation,
                        parameterization=cfg.parameterization,
                        generator=torch.Generator().manual_seed(init.seed), seed=init.seed,
                        dtype=init.dtype, device=init.device)
        return build_custom(cfg.target, cfg.kwargs, provided, init.dtype, init.device)
    if len(input_shape) != 3:
        raise ValueError(f"model={cfg.kind} needs image inputs [C, H, W], got shape {tuple(input_shape)}")
    if cfg.kind == "cnn":
        return CNN(input_shape[0], out_features, cfg, init)
    if cfg.kind == "resnet":
        return ResNet(input_shape[0], out_features, cfg, init)
    return VisionTransformer(tuple(input_shape), out_features, cfg, init)

"""Building any network: `build_model` knows every kind (mlp, cnn, resnet, transformer, custom),
each in a module of its own, all made of wcntk.core.layers (ModelConfig, the scaled layers)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .cnn import CNN
from .custom import build_custom, factory_arguments, recorded_value, resolve_target
from .init import ParamInit, shape_signature
from .layers import ModelConfig
from .mlp import MLP
from .resnet import ResNet
from .transformer import VisionTransformer

IMAGE_MODELS = ("cnn", "resnet", "transformer")


def custom_provided(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                    init: ParamInit) -> dict[str, Any]:
    """What the runner offers a custom factory (wcntk.core.custom.PROVIDED)."""
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


def model_signature(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int) -> str:
    """The θ₀ key of a model's shapes (wcntk.core.init.shape_signature): kind, width, depth, the
    transformer's patch_size, input shape and output count."""
    sizes: dict[str, object] = {"width": cfg.width, "depth": cfg.depth}
    if cfg.kind == "transformer":
        sizes["patch_size"] = cfg.patch_size
    return shape_signature(str(cfg.kind), sizes, tuple(input_shape), out_features)


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int, seed: int,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                threads: int | None = None, keep: bool = False, reuse: bool = False) -> nn.Module:
    """Seeded network for inputs of shape `input_shape` (without batch dim).

    Initial values follow wcntk.core.init's scheme (INIT_SCHEME): drawn in float64 on the CPU, per
    (seed, the model's shape signature, parameter name, chunk), by `threads` threads (None:
    torch.get_num_threads()), then cast; the same seed gives the same θ₀ on every device, dtype
    and thread count, and another width (depth, input or output size) independent draws of
    every tensor. `keep`, `reuse`: a custom factory's module kept for one later call
    (wcntk.core.custom.build_custom).
    """
    cfg.validate()
    init = ParamInit(seed, dtype, torch.device(device), threads,
                     signature=model_signature(cfg, input_shape, out_features))
    if cfg.kind == "mlp":
        return MLP(math.prod(input_shape), out_features, cfg, init)
    if cfg.kind == "custom":
        provided = custom_provided(cfg, input_shape, out_features, init)
        return build_custom(cfg.target, cfg.kwargs, provided, init.dtype, init.device, keep, reuse)
    if len(input_shape) != 3:
        raise ValueError(f"model={cfg.kind} needs image inputs [C, H, W], got shape {tuple(input_shape)}")
    if cfg.kind == "cnn":
        return CNN(input_shape[0], out_features, cfg, init)
    if cfg.kind == "resnet":
        return ResNet(input_shape[0], out_features, cfg, init)
    return VisionTransformer(tuple(input_shape), out_features, cfg, init)

"""The networks beyond the MLP and the CNN (resnet, transformer, custom): building one, and
the checks that need the input shape, made from the dataset config before any data is loaded."""
from __future__ import annotations

import json

import torch
from torch import nn

from .data import IMAGE_SHAPES, NATIVE_CLASSES, DataConfig
from .init import ParamInit
from .models import ModelConfig
from .models_custom import build_custom
from .models_resnet import ResNet
from .models_transformer import VisionTransformer, default_patch_size

IMAGE_MODELS = ("cnn", "resnet", "transformer")
_checked: set[str] = set()  # custom settings whose factory already passed check_network


def data_shapes(data: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape without the batch dim, number of outputs) the dataset will have."""
    if data.name == "synthetic":
        return (data.input_dim,), data.n_classes
    classes = len(data.classes) if data.classes is not None else NATIVE_CLASSES
    shape = IMAGE_SHAPES[data.name]
    if data.name == "cifar10" and data.grayscale:
        shape = (1, *shape[1:])
    return shape, classes


def build_network(cfg: ModelConfig, input_shape: tuple[int, ...], out_features: int,
                  init: ParamInit) -> nn.Module:
    """A resnet, transformer or custom network (see wcntk.models.build_model). The built-in ones
    draw θ₀ by `init` (wcntk.init); a custom factory gets `torch.Generator().manual_seed(seed)`
    and runs under torch.manual_seed(seed) (wcntk.models_custom)."""
    if cfg.kind == "custom":
        provided = dict(input_shape=tuple(input_shape), out_features=out_features, width=cfg.width,
                        depth=cfg.depth, activation=cfg.activation,
                        parameterization=cfg.parameterization,
                        generator=torch.Generator().manual_seed(init.seed), seed=init.seed,
                        dtype=init.dtype, device=init.device)
        return build_custom(cfg.target, cfg.kwargs, provided, init.dtype, init.device)
    if len(input_shape) != 3:
        raise ValueError(f"model={cfg.kind} needs image inputs [C, H, W], got shape {tuple(input_shape)}")
    if cfg.kind == "resnet":
        return ResNet(input_shape[0], out_features, cfg, init)
    return VisionTransformer(tuple(input_shape), out_features, cfg, init)


def check_network(model: ModelConfig, data: DataConfig) -> None:
    """What ModelConfig.validate cannot check alone: an image dataset for the image networks,
    patches that tile the image, and a custom factory that builds a fitting module (built once
    on the CPU per setting). ValueError with one line."""
    if model.kind in IMAGE_MODELS and data.name not in IMAGE_SHAPES:
        raise ValueError(f"model={model.kind} needs an image dataset, got dataset={data.name}")
    shape, classes = data_shapes(data)
    if model.kind == "transformer":
        p = model.patch_size or default_patch_size(shape[1])
        if p < 1 or shape[1] % p or shape[2] % p:
            raise ValueError(f"model.patch_size={p} does not tile {shape[1]}×{shape[2]} images; "
                             f"choose a divisor of both")
    if model.kind == "custom":
        key = json.dumps([model.target, model.kwargs, model.width, model.depth, model.activation,
                          model.parameterization, shape, classes], sort_keys=True, default=str)
        if key not in _checked:
            build_network(model, shape, classes, ParamInit(0, torch.float32, torch.device("cpu")))
            _checked.add(key)

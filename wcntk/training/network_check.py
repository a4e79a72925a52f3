"""The checks a network setting needs the dataset's shapes for, made from the dataset config
before any data is loaded (wcntk.training.config.validate_all runs them): for a custom network,
the pre-flight check of wcntk.training.module_check on a module built on the CPU."""
from __future__ import annotations

import json

import torch

from ..core.layers import ModelConfig
from ..core.models import IMAGE_MODELS, build_model
from ..core.transformer import default_patch_size
from .data import DataConfig, data_shapes, is_image_dataset
from .module_check import ModuleRefused, check_module, check_reproducible

_checked: set[str] = set()  # custom settings whose module already passed check_network


def check_network(model: ModelConfig, data: DataConfig, dtype: torch.dtype = torch.float32,
                  lr: float = 1.0) -> None:
    """What ModelConfig.validate cannot check alone: an image dataset for the image networks,
    patches that tile the image, and a custom factory whose module the run can measure (built
    once on the CPU in `dtype` per setting, checked by module_check.check_module with the
    effective lr, and built again for module_check.check_reproducible). ValueError with one line."""
    if model.kind in IMAGE_MODELS and not is_image_dataset(data.name):
        raise ValueError(f"model={model.kind} needs an image dataset, got dataset={data.name}")
    shape, classes = data_shapes(data)
    if model.kind == "transformer":
        p = model.patch_size or default_patch_size(shape[1])
        if p < 1 or shape[1] % p or shape[2] % p:
            raise ValueError(f"model.patch_size={p} does not tile {shape[1]}×{shape[2]} images; "
                             f"choose a divisor of both")
    if model.kind == "custom":
        key = json.dumps([model.target, model.kwargs, model.width, model.depth, model.activation,
                          model.parameterization, shape, classes, str(dtype), lr],
                         sort_keys=True, default=str)
        if key not in _checked:
            module = build_model(model, shape, classes, seed=0, dtype=dtype)
            try:
                check_module(module, shape, classes, dtype, lr)
                check_reproducible(module, build_model(model, shape, classes, seed=0, dtype=dtype))
            except ModuleRefused as err:
                raise ValueError(f"model.target={model.target!r}: {err}") from None
            _checked.add(key)

"""The checks a network setting needs the dataset's shapes for, made from the dataset config
before any data is loaded (wcntk.training.config.validate_all runs them): for a custom network,
the pre-flight check of wcntk.training.module_check on a module built on the CPU."""
from __future__ import annotations

import json
import warnings
import weakref

import torch
from torch import nn

from ..core.layers import ModelConfig
from ..core.models import IMAGE_MODELS, build_model
from ..core.transformer import default_patch_size
from .data import DataConfig, data_shapes, is_image_dataset
from .module_check import ModuleRefused, check_module, check_reproducible

_checked: set[str] = set()  # custom settings whose module already passed check_network
# the last module that passed, by its setting's key, while the run (or the kept copy) holds it
_last: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()


def _setting_key(model: ModelConfig, shape, classes: int, dtype: torch.dtype) -> str:
    return json.dumps([model.target, model.kwargs, model.width, model.depth, model.activation,
                       model.parameterization, list(shape), classes, str(dtype)], sort_keys=True, default=str)


def check_network(model: ModelConfig, data: DataConfig, dtype: torch.dtype = torch.float32,
                  lr: float = 1.0, seed: int = 0) -> None:
    """What ModelConfig.validate cannot check alone: an image dataset for the image networks,
    patches that tile the image, and a custom factory whose module the run can measure (built
    once on the CPU in `dtype` with `seed` per setting, checked by module_check.check_module with
    the effective lr, built again for module_check.check_reproducible, torch's own warnings
    silenced: the one line says what matters). The checked module is kept for the run (a Trainer
    of the same seed on the CPU takes it instead of calling the factory a third time;
    wcntk.core.custom.build_custom) and for the memory estimate (`checked_module`). ValueError
    with one line."""
    if model.kind in IMAGE_MODELS and not is_image_dataset(data.name):
        raise ValueError(f"model={model.kind} needs an image dataset, got dataset={data.name}")
    shape, classes = data_shapes(data)
    if model.kind == "transformer":
        p = model.patch_size or default_patch_size(shape[1])
        if p < 1 or shape[1] % p or shape[2] % p:
            raise ValueError(f"model.patch_size={p} does not tile {shape[1]}×{shape[2]} images; "
                             f"choose a divisor of both")
    if model.kind == "custom":
        key = json.dumps([_setting_key(model, shape, classes, dtype), lr])
        if key not in _checked:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = build_model(model, shape, classes, seed=seed, dtype=dtype, keep=True)
                try:
                    check_module(module, shape, classes, dtype, lr)
                    check_reproducible(module, build_model(model, shape, classes, seed=seed, dtype=dtype))
                except ModuleRefused as err:
                    raise ValueError(f"model.target={model.target!r}: {err}") from None
            _checked.add(key)
            _last.clear()
            _last[_setting_key(model, shape, classes, dtype)] = module


def checked_module(model: ModelConfig, shape, classes: int, dtype: torch.dtype) -> nn.Module | None:
    """The module of this custom setting that check_network last checked (on the CPU), or None."""
    return _last.get(_setting_key(model, shape, classes, dtype))

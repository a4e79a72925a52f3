"""Bring your own network (`model=custom model.target=pkg.mod.factory`).

The target is a dotted path to a callable (a function or an nn.Module class) returning an
``nn.Module`` that maps [batch, *input_shape] to [batch, out_features]. It is imported with
the current directory on ``sys.path`` (as ``python -m`` would), so a module next to where
run.py is started (``examples/my_nets.py``) is found, in a sweep's workers too. The factory
receives, among

    input_shape, out_features, width, depth, activation, parameterization,
    generator (a seeded torch.Generator), seed, dtype, device

the keyword arguments its signature names (``**kwargs`` does not ask for them), plus every
entry of ``model.kwargs`` unchanged. It is called under ``torch.manual_seed(seed)`` (the
global generator restored afterwards), so a factory that draws with torch's default
generator is seeded too; the module is then moved to the run's dtype and device.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

PROVIDED = ("input_shape", "out_features", "width", "depth", "activation", "parameterization",
            "generator", "seed", "dtype", "device")


def resolve_target(target: str | None) -> Callable[..., Any]:
    """The callable named by a dotted path `pkg.mod.attr`; ValueError (one line) if it cannot
    be imported or is not callable."""
    if not target or not isinstance(target, str):
        raise ValueError("model=custom needs model.target=<module>.<callable>, e.g. "
                         "model.target=examples.my_nets.make_net")
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ValueError(f"model.target={target!r}: not a dotted path <module>.<callable>")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ValueError(f"model.target={target!r}: cannot import {module_name!r} "
                         f"({type(err).__name__}: {err})") from None
    if not hasattr(module, attr):
        raise ValueError(f"model.target={target!r}: module {module_name!r} has no attribute {attr!r}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise ValueError(f"model.target={target!r}: not callable (it is a {type(factory).__name__})")
    return factory


def factory_arguments(factory: Callable[..., Any], provided: Mapping[str, Any],
                      kwargs: Mapping[str, Any], target: str) -> dict[str, Any]:
    """The keyword arguments to call `factory` with: the `provided` ones its signature names,
    and all of `kwargs` (which must not repeat a provided name, and must be accepted)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    names = set(signature.parameters) if signature is not None else set()
    open_kwargs = signature is None or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                           for p in signature.parameters.values())
    for key in kwargs:
        if key in PROVIDED:
            raise ValueError(f"model.kwargs.{key}: {key} is passed by the runner; set it as a run "
                             f"setting instead (e.g. width=…), not in model.kwargs")
        if key not in names and not open_kwargs:
            raise ValueError(f"model.kwargs.{key}: {target} takes no argument {key!r} "
                             f"(it takes {', '.join(sorted(names)) or 'none'})")
    return {**{k: v for k, v in provided.items() if k in names}, **kwargs}


def build_custom(target: str | None, kwargs: Mapping[str, Any], provided: Mapping[str, Any],
                 dtype: torch.dtype, device: torch.device) -> nn.Module:
    """Call the factory (seeded by provided["seed"]) and check what it returns: an nn.Module
    with parameters mapping one sample of `input_shape` to [1, out_features]."""
    factory = resolve_target(target)
    arguments = factory_arguments(factory, provided, dict(kwargs), target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(provided["seed"]))
        try:
            model = factory(**arguments)
        except Exception as err:
            raise ValueError(f"model.target={target!r}: failed when called "
                             f"({type(err).__name__}: {err})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model.target={target!r}: returned an object of type {type(model).__name__}, "
                         f"not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"model.target={target!r}: returned a module with no parameters (nothing to train)")
    model = model.to(device=device, dtype=dtype)
    check_output_shape(model, tuple(provided["input_shape"]), int(provided["out_features"]), target,
                       dtype, device)
    return model


def check_output_shape(model: nn.Module, input_shape: tuple[int, ...], out_features: int, target: str,
                       dtype: torch.dtype, device: torch.device) -> None:
    """One seeded sample through `model` must give [1, out_features]."""
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    try:
        with torch.no_grad():
            y = model(x.to(device=device, dtype=dtype))
    except Exception as err:
        raise ValueError(f"model.target={target!r}: the module fails on one input of shape "
                         f"{[1, *input_shape]} ({type(err).__name__}: {err})") from None
    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else None
    if shape != (1, out_features):
        got = list(shape) if shape is not None else type(y).__name__
        raise ValueError(f"model.target={target!r}: the module maps an input of shape {[1, *input_shape]} "
                         f"to {got}, expected {[1, out_features]}")

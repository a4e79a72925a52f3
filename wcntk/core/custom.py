"""Bring your own network (`model=custom model.target=pkg.mod.factory`).

The target is a dotted path to a callable (a function or an nn.Module class) returning an
``nn.Module`` that maps [batch, *input_shape] to [batch, out_features]. It is imported with
the current directory on ``sys.path`` (as ``python -m`` would), so a module next to where
run.py is started (``examples/my_nets.py``) is found, in a sweep's workers too. The factory
receives, among

    input_shape, out_features, width, depth, activation, parameterization,
    generator (a seeded torch.Generator), seed, dtype, device

the keyword arguments its signature names (all of them if it takes ``**kwargs``), plus every
entry of ``model.kwargs`` unchanged; the record keeps what it received (facts.factory_arguments).
A factory that takes no ``width`` builds the same network at every width: a run that sets width
says so in one line, a sweep over width is refused (wcntk.run.cli_checks). It is called under
``torch.manual_seed(seed)`` (the global generator restored afterwards), so a factory that draws
with torch's default generator is seeded too; the module is then moved to the run's dtype and device,
and a lazy module (nn.LazyLinear, …) gets its parameters by one dry forward, under the same seed.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

PROVIDED = ("input_shape", "out_features", "width", "depth", "activation", "parameterization",
            "generator", "seed", "dtype", "device")


def differentiable_attention() -> None:
    """Attention by its plain (math) kernel, from now on (for the process): nn.MultiheadAttention's
    fused inference path (taken outside autograd: eval mode under no_grad, or inside torch.func's
    jvp) and scaled_dot_product_attention's flash / memory-efficient / cuDNN kernels have no
    forward-mode derivative (the twin, the correlations) and round differently from each other."""
    torch.backends.mha.set_fastpath_enabled(False)
    for enable in (torch.backends.cuda.enable_flash_sdp, torch.backends.cuda.enable_mem_efficient_sdp,
                   torch.backends.cuda.enable_cudnn_sdp):
        enable(False)   # process-wide flags, the CPU's flash kernel included; the math kernel stays


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


def accepted_names(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """(the parameter names of factory's signature, whether it takes any keyword: **kwargs or
    no signature to read)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return set(), True
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return set(signature.parameters), open_kwargs


def takes_width(factory: Callable[..., Any]) -> bool:
    """Whether the factory receives `width` (names it, or takes **kwargs)."""
    names, open_kwargs = accepted_names(factory)
    return open_kwargs or "width" in names


def factory_arguments(factory: Callable[..., Any], provided: Mapping[str, Any],
                      kwargs: Mapping[str, Any], target: str) -> dict[str, Any]:
    """The keyword arguments to call `factory` with: the `provided` ones its signature names (all
    of them with **kwargs), and all of `kwargs` (which must not repeat a provided name, and must
    be accepted)."""
    names, open_kwargs = accepted_names(factory)
    for key in kwargs:
        if key in PROVIDED:
            raise ValueError(f"model.kwargs.{key}: {key} is passed by the runner; set it as a run "
                             f"setting instead (e.g. width=…), not in model.kwargs")
        if key not in names and not open_kwargs:
            raise ValueError(f"model.kwargs.{key}: {target} takes no argument {key!r} "
                             f"(it takes {', '.join(sorted(names)) or 'none'})")
    arguments = {**{k: v for k, v in provided.items() if k in names or open_kwargs}, **kwargs}
    for name in required_names(factory):
        if name not in arguments:
            raise ValueError(f"model.target={target!r}: the factory needs an argument {name!r} that the "
                             f"runner does not provide: add model.kwargs.{name}=…")
    return arguments


def required_names(factory: Callable[..., Any]) -> list[str]:
    """The factory's parameters without a default that can be passed by keyword."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keyword and p.default is inspect.Parameter.empty]


def recorded_value(value: Any) -> Any:
    """A factory argument as a plain JSON value (a generator by its seed)."""
    if isinstance(value, torch.Generator):
        return f"torch.Generator(seed={value.initial_seed()})"
    if isinstance(value, tuple | list):
        return [recorded_value(v) for v in value]
    if isinstance(value, str | int | float | bool | type(None) | dict):
        return value
    return str(value)


_KEPT: dict[str, nn.Module] = {}   # the last module built with keep=True, by its build key


def build_custom(target: str | None, kwargs: Mapping[str, Any], provided: Mapping[str, Any],
                 dtype: torch.dtype, device: torch.device, keep: bool = False,
                 reuse: bool = False) -> nn.Module:
    """Call the factory (seeded by provided["seed"]) and check that it returns an nn.Module with
    parameters (what the module computes is checked by wcntk.training.module_check).

    keep=True keeps the module (the last one only) for one later call with reuse=True and the same
    target, arguments, seed, dtype and device, which takes it instead of calling the factory again: the
    pre-flight check's module becomes the run's (a factory may take seconds)."""
    factory = resolve_target(target)
    arguments = factory_arguments(factory, provided, dict(kwargs), target)
    key = json.dumps([target, {k: recorded_value(v) for k, v in arguments.items()}, provided["seed"],
                      str(dtype), str(device)], sort_keys=True, default=str)   # seeded, argument or not
    if reuse and key in _KEPT:
        return _KEPT.pop(key)
    model = _build(factory, arguments, provided, dtype, device, target)
    if keep:
        _KEPT.clear()
        _KEPT[key] = model
    return model


def _build(factory: Callable[..., Any], arguments: dict[str, Any], provided: Mapping[str, Any],
           dtype: torch.dtype, device: torch.device, target: str | None) -> nn.Module:
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
            raise ValueError(f"model.target={target!r}: returned a module with no parameters "
                             f"(nothing to train)")
        model = model.to(device=device, dtype=dtype)
        materialise(model, tuple(provided["input_shape"]), dtype, device, target)
    return model


def materialise(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                target: str | None) -> None:
    """Give a lazy module's parameters (nn.LazyLinear, …) their shapes and initial values by one dry
    forward on zeros [2, *input_shape], under the factory's seed (the caller's), before θ₀ is taken."""
    if not any(is_lazy(p) for p in [*model.parameters(), *model.buffers()]):
        return
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape, dtype=dtype, device=device))
    except Exception as err:
        raise ValueError(f"model.target={target!r}: has lazy parameters (nn.LazyLinear, …), and the dry "
                         f"forward that gives them their shapes fails ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None

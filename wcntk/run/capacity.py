"""Whether a run's sizes can work at all, judged from its config before any data is loaded:
integers that fit torch's int64, and a model that fits in the memory of its device.

Memory estimate, in bytes of the run's precision (4 for float32, 8 for float64):

    parameters   8 · P: the network's θ, the twin's θ_lin, θ₀, two gradients, up to two
                 optimizer states (adam) and one P-sized tangent in flight
    activations  4 · n · width · depth · S: n = n_train + n_test inputs evaluated at once by the
                 network, the twin (primal and tangent) and the Taylor twin; S = H·W per channel
                 for a CNN (same-padding convs keep the image size), 1 for an MLP

with P the parameter count (a dense layer: fan_in·fan_out + fan_out; a 3×3 conv:
9·c_in·c_out + c_out; the readout dense from width to the class count). It is compared with
the device's free memory (CUDA: torch.cuda.mem_get_info; CPU: MemAvailable in /proc/meminfo).
It counts the least a run holds, so a run above it cannot work; one below it may still need
more (the correlations' probes), which is why it only refuses, never promises.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from ..core.models import ModelConfig
from ..training.data import DataConfig, data_shapes
from .record import flatten

INT64_MAX = 2 ** 63 - 1
PRECISION_BYTES = {"float32": 4, "float64": 8}
PARAMETER_COPIES = 8
ACTIVATION_COPIES = 4


def check_integers(config: Mapping[str, Any]) -> None:
    """ValueError (one line) for any integer of a nested config outside torch's int64."""
    for key, value in flatten(config):
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and abs(v) > INT64_MAX for v in values):
            raise ValueError(f"{key}={value} is too large: integers must be below 2^63")


def n_parameters(model: ModelConfig, data: DataConfig) -> int:
    """P of the network `model` builds for `data` (wcntk.core.models.MLP / CNN)."""
    (shape, k), width = data_shapes(data), model.width
    if model.kind == "cnn":
        first = 9 * shape[0] * width + width
        return first + (model.depth - 1) * (9 * width * width + width) + width * k + k
    first = math.prod(shape) * width + width
    return first + (model.depth - 1) * (width * width + width) + width * k + k


def memory_needed(model: ModelConfig, data: DataConfig, precision_bytes: int) -> tuple[int, int]:
    """(parameter bytes, activation bytes) of the module docstring's estimate."""
    shape, _ = data_shapes(data)
    per_channel = math.prod(shape[1:]) if model.kind == "cnn" else 1
    params = PARAMETER_COPIES * n_parameters(model, data) * precision_bytes
    n = data.n_train + data.n_test
    activations = ACTIVATION_COPIES * n * model.width * model.depth * per_channel * precision_bytes
    return params, activations


def free_memory(device: str) -> tuple[str, int | None]:
    """(what, free bytes) of the device a run with `device` (auto | cpu | cuda[:i]) uses;
    None when it cannot be told."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return device, None
        return device, torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return "the CPU's RAM", int(line.split()[1]) * 1024
    except OSError:
        pass
    return "the CPU's RAM", None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_memory(model: ModelConfig, data: DataConfig, precision_bytes: int, device: str) -> None:
    """ValueError (one line) when the estimate exceeds the device's free memory, naming the
    largest width that fits with everything else unchanged."""
    what, free = free_memory(device)
    params, activations = memory_needed(model, data, precision_bytes)
    if free is None or params + activations <= free:
        return
    low, high = 0, model.width                    # largest width whose estimate fits: bisection
    while low < high:
        mid = (low + high + 1) // 2
        if sum(memory_needed(replace(model, width=mid), data, precision_bytes)) <= free:
            low = mid
        else:
            high = mid - 1
    fits = f"width <= {low} fits" if low else "no width fits (reduce dataset.n_train / n_test or depth)"
    raise ValueError(f"width={model.width} needs about {_size(params + activations)} "
                     f"({_size(params)} parameters and optimizer state, {_size(activations)} activations) "
                     f"but {what} has {_size(free)} free: {fits} (estimate: wcntk.run.capacity)")

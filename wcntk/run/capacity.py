"""Whether a run's sizes can work at all, judged from its config before any data is loaded:
integers that fit torch's int64, and a model that fits in the memory of its device.

Memory estimate, in bytes of the run's precision (4 for float32, 8 for float64):

    parameters   8 · P: the network's θ, the twin's θ_lin, θ₀, two gradients, up to two
                 optimizer states (adam) and one P-sized tangent in flight
    activations  4 · N · A: N = n_train + n_test inputs evaluated at once by the network, the
                 twin (primal and tangent) and the Taylor twin; A the activation elements one
                 input keeps in the network's forward pass
    kernel       (n_train · k)²: Θ₀ of a twin that may train in function space
                 (wcntk.training.function_space: twin_space, the optimizer, n_train · k, steps;
                 counted whenever the network's own rule could allow it)

P and A of each network (`network_sizes`), with n = width, L = depth, k outputs, an input of d
entries or an image C×H×W (same-padding 3×3 convs keep the image size), and for the transformer
T = (H/p)(W/p) tokens of p×p patches and h heads (wcntk.core.models, resnet,
transformer):

    mlp          P = d·n + n + (L−1)(n² + n) + n·k + k        A = n·L
    cnn          P = 9Cn + n + (L−1)(9n² + n) + n·k + k       A = n·L·H·W              (one map per conv)
    resnet       P = 9Cn + n + 2L(9n² + n) + n·k + k          A = n·(2L + 1)·H·W       (stem, 2 convs a block)
    transformer  P = Cp²n + n + T·n + 6L(n² + n) + n·k + k    A = T·n·(6L + 1) + L·h·T²
                 (embedding and per-token bias; per block q, k, v, out and the MLP's 2 layers,
                 and the attention weights, T² per head)
    custom       measured on the module the network check built (wcntk.training.network_check),
                 its tensors replaced by meta ones (shapes without memory or values), else on the
                 factory's module built on the meta device (wcntk.core.models.build_model): P is
                 the module's parameter count and A the elements autograd saves for its backward
                 per input (wcntk.core.ntk.sample_cost on 2 inputs minus on 1, so the saved
                 parameters cancel); a factory that cannot be
                 built or run on the meta device gets no estimate (the network check reports its own
                 failures)

It is compared with the device's free memory (CUDA: torch.cuda.mem_get_info; CPU: MemAvailable in
/proc/meminfo). It counts the least a run holds, so a run above it cannot work; one below it may
still need more (the correlations' probes, a conv's workspace), which is why it only refuses,
never promises.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from ..core.layers import ModelConfig, functional
from ..core.models import build_model
from ..core.ntk import sample_cost
from ..core.transformer import default_patch_size
from ..training.config import resolve_device
from ..training.data import DataConfig, data_shapes
from ..training.function_space import function_space_reason
from ..training.network_check import checked_module
from .record import flatten

INT64_MAX = 2 ** 63 - 1
PRECISION_BYTES = {"float32": 4, "float64": 8}
DTYPES = {4: torch.float32, 8: torch.float64}
PARAMETER_COPIES = 8
ACTIVATION_COPIES = 4


def check_integers(config: Mapping[str, Any]) -> None:
    """ValueError (one line) for any integer of a nested config outside torch's int64."""
    for key, value in flatten(config):
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and abs(v) > INT64_MAX for v in values):
            raise ValueError(f"{key}={value} is too large: integers must be below 2^63")


def builtin_sizes(model: ModelConfig, shape: tuple[int, ...], k: int) -> tuple[int, int]:
    """(P, A) of a built-in network by the module docstring's formulas."""
    n, depth, readout = model.width, model.depth, model.width * k + k
    if model.kind == "mlp":
        return math.prod(shape) * n + n + (depth - 1) * (n * n + n) + readout, n * depth
    c, h, w = shape if len(shape) == 3 else (math.prod(shape), 1, 1)   # a flat input: 1×1 pixels
    if model.kind == "cnn":
        return 9 * c * n + n + (depth - 1) * (9 * n * n + n) + readout, n * depth * h * w
    if model.kind == "resnet":
        return 9 * c * n + n + 2 * depth * (9 * n * n + n) + readout, n * (2 * depth + 1) * h * w
    p = max(1, model.patch_size or default_patch_size(h))
    tokens = (h // p) * (w // p)
    params = c * p * p * n + n + tokens * n + 6 * depth * (n * n + n) + readout
    return params, tokens * n * (6 * depth + 1) + depth * model.heads * tokens ** 2


_MEASURED: dict[str, tuple[int, int] | None] = {}   # custom settings measured in this process


def measured_sizes(model: ModelConfig, shape: tuple[int, ...], k: int, dtype: torch.dtype
                   ) -> tuple[int, int] | None:
    """(P, A) of a custom network measured on the meta device (module docstring); None when it
    cannot be built or run there."""
    key = json.dumps([model.target, model.kwargs, model.width, model.depth, model.activation,
                      model.parameterization, shape, k, str(dtype)], sort_keys=True, default=str)
    if key not in _MEASURED:
        meta = torch.device("meta")
        checked = checked_module(model, shape, k, dtype)
        try:
            with warnings.catch_warnings(), meta:
                warnings.simplefilter("ignore")
                net = checked or build_model(model, shape, k, seed=0, dtype=dtype, device=meta)
                params = {name: torch.empty_like(p, device=meta) for name, p in net.named_parameters()}
                buffers = {name: torch.empty_like(b, device=meta) for name, b in net.named_buffers()}
                f = functional(net)
                x = torch.empty(2, *shape, dtype=dtype)
                one, two = (sample_cost(lambda p, xb: f({**p, **buffers}, xb), params, x, batch)
                            for batch in (1, 2))
            _MEASURED[key] = one.n_params, max(0, two.saved - one.saved)
        except Exception:   # any failure on meta: no estimate (the network check reports the factory's)
            _MEASURED[key] = None
    return _MEASURED[key]


def network_sizes(model: ModelConfig, data: DataConfig, precision_bytes: int) -> tuple[int, int] | None:
    """(P, A) of the network `model` builds for `data` (module docstring); None: not estimated."""
    shape, k = data_shapes(data)
    if model.kind == "custom":
        return measured_sizes(model, tuple(shape), k, DTYPES[precision_bytes])
    return builtin_sizes(model, tuple(shape), k)


def kernel_rows(data: DataConfig, optimizer: str, twin_space: str, steps: int) -> int:
    """N·k of the function-space twin's Θ₀ when the run may train its twin there, else 0."""
    k = data_shapes(data)[1]
    may = function_space_reason(twin_space, optimizer, data.n_train, k, steps, lambda: None) is None
    return data.n_train * k if may else 0


def memory_needed(model: ModelConfig, data: DataConfig, precision_bytes: int,
                  kernel: int = 0) -> tuple[int, int, int] | None:
    """(parameter bytes, activation bytes, kernel bytes) of the module docstring's estimate, with
    `kernel` = kernel_rows(…); None: not estimated."""
    sizes = network_sizes(model, data, precision_bytes)
    if sizes is None:
        return None
    params, per_input = sizes
    n = data.n_train + data.n_test
    return (PARAMETER_COPIES * params * precision_bytes,
            ACTIVATION_COPIES * n * per_input * precision_bytes,
            kernel * kernel * precision_bytes)


def free_memory(device: str) -> tuple[str, int | None]:
    """(what, free bytes) of the device a run with `device` (auto | cpu | cuda[:i]) uses;
    None when it cannot be told."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            return str(resolved), None
        return str(resolved), torch.cuda.mem_get_info(resolved)[0]
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


def check_memory(model: ModelConfig, data: DataConfig, precision_bytes: int, device: str,
                 kernel: int = 0) -> None:
    """ValueError (one line) when the estimate exceeds the device's free memory, naming the
    largest width that fits with everything else unchanged (`kernel`: kernel_rows(…))."""
    what, free = free_memory(device)
    needed = memory_needed(model, data, precision_bytes, kernel) if free is not None else None
    if needed is None or sum(needed) <= free:
        return
    params, activations, kernel_bytes = needed

    def fits(width: int) -> bool:
        est = memory_needed(replace(model, width=width), data, precision_bytes, kernel)
        return est is not None and sum(est) <= free

    low, high = 0, model.width                    # largest width whose estimate fits: bisection
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    fits_text = (f"width <= {low} fits" if low
                 else "no width fits (reduce dataset.n_train / n_test or depth)")
    kernel_text = (f", {_size(kernel_bytes)} for the function-space twin's kernel (twin_space=parameter "
                   f"needs none)" if kernel_bytes else "")
    total = _size(params + activations + kernel_bytes)
    raise ValueError(f"width={model.width} needs about {total} for model={model.kind} ({_size(params)} "
                     f"parameters and optimizer state, {_size(activations)} activations{kernel_text}) but "
                     f"{what} has {_size(free)} free: {fits_text} (estimate: wcntk.run.capacity)")

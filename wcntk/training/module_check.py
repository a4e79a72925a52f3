"""The pre-flight check of a user's network (`model=custom`): before any data is loaded or any run
dir is made, run on a few random inputs exactly what the run will do with the module, and turn the
first thing that would give wrong numbers or a traceback into one line naming the cause and the fix.

What a module must satisfy (docs/networks.md), checked in this order:

1. at least one trainable parameter (frozen ones, ``requires_grad=False``, are constants of f);
2. a batch of B inputs gives a tensor [B, k] in the run's precision that depends on the trainable
   parameters (not detached, not cast to another dtype);
3. ``forward`` leaves the module's buffers alone (BatchNorm in training mode updates its running
   statistics: the twin and the NTK would see another function at every call);
4. ``forward`` is deterministic (Dropout is not: the NTK of a random function is not defined);
5. samples are independent: f(x[:B]) equals the per-sample outputs f(x_i) (what vmap over single
   samples computes) to ``coupling_tolerance(dtype)`` · (1 + max|f|) (batch statistics break it);
6. the run's transforms work: the per-sample NTK (vmap ∘ jacrev), the correlations (nested jvp),
   and one twin step (a jvp at θ₀, then backward), with finite results;
7. the factory is reproducible: two builds from the same seed hold the same θ₀ (check_reproducible).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..core.custom import differentiable_attention
from ..core.fingerprint import theta0_fingerprint
from ..core.implementations import Implementation, implementation_for
from ..core.layers import functional, trainable_params
from ..core.linearization import TRACE_AFTER, LinearizedModel
from ..core.losses import mse

BATCH = 3          # inputs in the batch compared with the per-sample outputs
TRANSFORM_SAMPLES = 2


class ModuleRefused(ValueError):
    """A user's module the run cannot measure right; its message is one line."""


def coupling_tolerance(dtype: torch.dtype) -> float:
    """√eps of the dtype (3.5e-4 for float32, 1.5e-8 for float64): far above the round-off of a
    batched vs a per-sample product, far below any real coupling of samples."""
    return torch.finfo(dtype).eps ** 0.5


def roundoff_gap(reference: Tensor, other: Tensor) -> tuple[float, float]:
    """(max|other − reference|, coupling_tolerance · (1 + max|reference|)): two ways of computing
    the same thing agree when the first is at most the second."""
    gap = (other - reference).abs().max().item()
    return gap, coupling_tolerance(reference.dtype) * (1 + reference.abs().max().item())


def _or_precision(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    return f", or run with precision={name}" if dtype in (torch.float32, torch.float64) else ""


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def _cause(err: BaseException) -> str:
    """The fix for a torch.func failure, recognised by its message; else the error's first line."""
    text = str(err)
    if "randomness" in text:
        return "forward draws random numbers (Dropout?): call model.eval() in the factory or remove Dropout"
    if "in-place" in text or "inplace" in text or "mutat" in text:
        return ("forward changes a tensor in place (a buffer, e.g. BatchNorm's running statistics in "
                "training mode): call model.eval() in the factory, or use GroupNorm or LayerNorm")
    if "does not require grad" in text or "doesn't require grad" in text:
        return "no gradient reaches the output (is it detached, or computed under torch.no_grad?)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first}"


def check_inputs(input_shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> Tensor:
    """The check's BATCH random inputs (seeded: the same on every call)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, *input_shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


@torch.enable_grad()
def unused_parameters(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype,
                      device: torch.device | str = "cpu") -> list[str]:
    """The trainable parameters that receive no gradient from the output on the check's inputs:
    f does not depend on them (forward never reads them, or only through a detached path)."""
    params = trainable_params(model)
    out = model(check_inputs(input_shape, dtype, device))
    if not out.requires_grad:
        return list(params)
    grads = torch.autograd.grad(out, list(params.values()), torch.ones_like(out), allow_unused=True)
    return [name for name, grad in zip(params, grads, strict=True) if grad is None]


def check_module(model: nn.Module, input_shape: tuple[int, ...], out_features: int, dtype: torch.dtype,
                 lr: float) -> None:
    """Raise ModuleRefused (one line) if the run cannot measure `model` right (module docstring)."""
    differentiable_attention()   # as the Trainer does
    params = trainable_params(model)
    if not params:
        raise ModuleRefused("every parameter has requires_grad=False: nothing to train "
                            "(leave at least one trainable)")
    x = check_inputs(input_shape, dtype)
    before = _buffers(model)
    try:
        out = model(x)
    except Exception as err:
        raise ModuleRefused(f"the module fails on a batch of inputs of shape {[BATCH, *input_shape]} "
                            f"({_cause(err)})") from None
    shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
    if shape != [BATCH, out_features]:
        raise ModuleRefused(f"the module maps a batch of shape {[BATCH, *input_shape]} to {shape}, "
                            f"expected {[BATCH, out_features]} (one row of {out_features} outputs per input)")
    if out.dtype != dtype:
        raise ModuleRefused(f"the module returns {str(out.dtype).removeprefix('torch.')} outputs in a "
                            f"{str(dtype).removeprefix('torch.')} run: keep every output in the run's "
                            f"precision (remove the cast in forward{_or_precision(out.dtype)})")
    if not out.requires_grad:
        raise ModuleRefused("no gradient reaches the output from the trainable parameters "
                            "(is it detached, or computed under torch.no_grad?)")
    changed = [name for name, b in model.named_buffers() if not torch.equal(b, before[name])]
    if changed:
        raise ModuleRefused(f"forward changes the buffer {changed[0]!r} (as BatchNorm in training mode "
                            f"does with its running statistics): call model.eval() in the factory, "
                            f"or use GroupNorm or LayerNorm")
    again = model(x).detach()   # in the same grad mode: under no_grad torch may take a fused path
    if not torch.equal(out.detach(), again):
        raise ModuleRefused("forward is random (two calls on the same input differ; Dropout?): "
                            "call model.eval() in the factory or remove Dropout")
    places = [(name, id(p)) for name, p in model.named_parameters(remove_duplicate=False)]
    check_independent_samples(model, params, x, out.detach())
    check_transforms(model, params, x[:TRANSFORM_SAMPLES], lr)
    now = [(name, id(p)) for name, p in model.named_parameters(remove_duplicate=False)]
    replaced = [name for name, _ in sorted(set(places) ^ set(now))]
    if replaced:
        raise ModuleRefused(f"a functional call of the module left another tensor than its parameter "
                            f"in {replaced[0]!r} (a layer registered in an unusual way?): the network "
                            f"would stop training it; register each layer once")


def check_independent_samples(model: nn.Module, params: dict[str, Tensor], x: Tensor,
                              batched: Tensor) -> None:
    """f(x[:B]) against vmap over single samples; the gap must be round-off."""
    f = functional(model)
    try:
        single = vmap(lambda xi: f(params, xi.unsqueeze(0)).squeeze(0))(x).detach()
    except Exception as err:
        raise ModuleRefused(f"the module fails when vmapped over single samples ({_cause(err)})") from None
    gap, tol = roundoff_gap(batched, single)
    if not gap <= tol:
        raise ModuleRefused(f"samples are coupled: a batch's outputs differ from each input's alone by "
                            f"{gap:.3g} (round-off allows {tol:.2g}); batch statistics (BatchNorm in "
                            f"training mode, a batch mean) break the per-sample NTK: use eval mode, "
                            f"GroupNorm or LayerNorm")


def check_transforms(model: nn.Module, params: dict[str, Tensor], x: Tensor, lr: float) -> None:
    """The run's own computations on a few samples: NTK, correlations, one twin step."""
    f = functional(model)
    impl = implementation_for(model)
    detached = {k: v.detach() for k, v in params.items()}
    steps = {
        "the NTK (vmap of jacrev over samples)": lambda: impl.ntk(model, f, detached, x),
        "the derivative correlations (nested jvp)": lambda: impl.correlations(model, f, detached, x, lr),
        "the linearized twin's steps (jvp at θ₀, then backward; on a fixed batch traced by "
        "wcntk.core.linearize_trace from the third call on)":
            lambda: _twin_steps(model, impl, f, detached, x),
    }
    for what, compute in steps.items():
        try:
            result = compute()
        except ModuleRefused:
            raise
        except Exception as err:
            raise ModuleRefused(f"the module fails in {what} ({_cause(err)})") from None
        values = result.values() if isinstance(result, dict) else [result]
        if not all(torch.isfinite(v).all() for v in values):
            raise ModuleRefused(f"{what} is not finite on random inputs at θ₀")


def _twin_steps(model: nn.Module, impl: Implementation, f, params: dict[str, Tensor],
                x: Tensor) -> dict[str, Tensor]:
    """The gradient of the twin's loss at θ₀ + 0 (what its first optimizer step uses), by each
    twin the run builds: the fixed batch's (impl.linearize with reuse: plain jvps, then the trace
    from call TRACE_AFTER + 1 on) and a minibatch's; they must agree to coupling_tolerance."""
    twin = LinearizedModel(f, params)
    fixed = impl.linearize(model, twin, x, True)
    calls = [fixed] * (TRACE_AFTER + 1) + [impl.linearize(model, twin, x, False)]
    grads = [_twin_grad(call, params) for call in calls]
    for name, first in grads[0].items():
        for other in grads[1:]:
            gap, tol = roundoff_gap(first, other[name])
            if not gap <= tol:
                raise ModuleRefused(f"the linearized twin traced by wcntk.core.linearize_trace differs "
                                    f"from its plain jvp by {gap:.3g} in the gradient of {name!r} (round-off "
                                    f"allows {tol:.2g}): forward's result depends on more than its "
                                    f"inputs and parameters")
    return grads[-1]


def _twin_grad(twin, params: dict[str, Tensor]) -> dict[str, Tensor]:
    moving = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    out = twin(moving)
    mse(out, torch.zeros_like(out)).backward()
    return {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in moving.items()}


def check_reproducible(first: nn.Module, second: nn.Module) -> None:
    """Two modules the factory built from the same seed must hold the same θ₀ (its fingerprint,
    wcntk.core.fingerprint): a resumed run rebuilds θ₀ from the seed."""
    a, b = theta0_fingerprint(first), theta0_fingerprint(second)
    if a != b:
        which = " and ".join(k for k in ("trainable", "frozen") if a[k] != b[k])
        raise ModuleRefused(f"two calls with the same seed give different initial {which} tensors: draw "
                            f"them from the `generator` (or `seed`) the factory receives, not from numpy's "
                            f"or Python's global RNG (a resumed run rebuilds θ₀ from the seed)")

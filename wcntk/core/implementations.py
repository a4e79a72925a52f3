"""Which implementation serves a model: the one place that decides.

The Trainer needs three model-specific computations; an :class:`Implementation` bundles them:

- ``linearize(model, twin, x, reuse)`` → params ↦ f_lin(params, x) for this x; ``reuse`` says the
  function will be called many times on the same x (full batch, eval sets), so tracing once pays;
- ``ntk(model, f, params, x, budget)`` → Θ(x, x) [m, k, m, k] in `budget` bytes of working memory;
- ``correlations(model, f, params, x, lr)`` → {"C02", "C03", "C11"}, each [m, k];
- ``function_space_misfit(model, f, params, x, budget)`` → why the twin should not train in function
  space on the training inputs x (wcntk.training.function_space: Θ₀ on x would need NTK-vector
  products within `budget`, or Θ₀'s product costs more than the parameter-space step), or None.

:func:`implementation_for` walks the model's class hierarchy and returns the first registered
implementation, else :data:`GENERIC`, which serves any model through torch.func (the twin traced
by :func:`wcntk.core.linearize_trace.linearize`; :func:`wcntk.core.ntk.empirical_ntk`, which picks
the Jacobian contraction or NTK-vector products by cost;
:func:`wcntk.core.correlations.derivative_correlations`). The MLP registers its exact rank-one
fast paths, tested against the generic ones. A new model or a model-specific method (e.g. a
CNN path) is one more :func:`register` call here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor, nn

from .correlations import derivative_correlations
from .correlations_mlp import mlp_derivative_correlations
from .layers import Fn, Params
from .linearization import LinearizedModel, linearized_mlp
from .mlp import MLP
from .ntk import DEFAULT_BUDGET, choose_method, empirical_ntk, mlp_ntk, sample_cost
from .transformer import VisionTransformer

Twin = Callable[[Params], Tensor]


@dataclass(frozen=True)
class Implementation:
    name: str
    linearize: Callable[[nn.Module, LinearizedModel, Tensor, bool], Twin]
    ntk: Callable[[nn.Module, Fn, Params, Tensor, float], Tensor]
    correlations: Callable[[nn.Module, Fn, Params, Tensor, float], dict[str, Tensor]]
    function_space_misfit: Callable[[nn.Module, Fn, Params, Tensor, float], str | None]


def _generic_linearize(model: nn.Module, twin: LinearizedModel, x: Tensor, reuse: bool) -> Twin:
    if reuse:
        return twin.cached(x)
    return lambda params: twin(params, x)


def _generic_ntk(model: nn.Module, f: Fn, params: Params, x: Tensor,
                 budget: float = DEFAULT_BUDGET) -> Tensor:
    return empirical_ntk(f, params, x, memory_budget_bytes=budget)


def _generic_function_space_misfit(model: nn.Module, f: Fn, params: Params, x: Tensor,
                                   budget: float = DEFAULT_BUDGET) -> str | None:
    """Whether Θ₀ on x takes the Jacobian contraction (a convolution's or attention's twin step costs
    many FLOPs per parameter: function space paid at every size measured, docs/performance.md)."""
    cost = sample_cost(f, {k: v.detach() for k, v in params.items()}, x)
    if choose_method(cost, len(x), len(x), True, budget) != "jacobian":
        return (f"Θ₀ on the {len(x)} training inputs would need NTK-vector products "
                f"(its Jacobian is over budget)")
    return None


# Θ₀·vec(R) reads (N·k)² numbers (memory-bound); the MLP's parameter-space twin step is ≈ 4·N·P FLOPs
# of GEMM plus elementwise passes over its activations. Function space is faster from P ≈ 2·N·k²
# (Trainer.step, function ÷ parameter space, 256 inputs, 1 thread; MNIST: P = 38k 1.10, 51k 1.03,
# 76k 0.91, 102k 0.87; digits: P = 38k 0.96, 58k 0.89, 77k 0.80, 115k 0.71).
MLP_PARAMS_PER_KERNEL_ENTRY = 2


def mlp_function_space_misfit(n_params: int, n: int, k: int) -> str | None:
    """Why an MLP of n_params parameters on n inputs × k outputs keeps the parameter-space twin, or None."""
    least = MLP_PARAMS_PER_KERNEL_ENTRY * n * k * k
    if n_params < least:
        return (f"{n_params} parameters < {MLP_PARAMS_PER_KERNEL_ENTRY}·N·k² = {least}: the parameter-space "
                f"step is cheaper than Θ₀'s product")
    return None   # Θ₀ in closed form: GEMMs of the activations


def _mlp_function_space_misfit(model: nn.Module, f: Fn, params: Params, x: Tensor,
                               budget: float = DEFAULT_BUDGET) -> str | None:
    return mlp_function_space_misfit(sum(v.numel() for v in params.values()), len(x),
                                     model.readout.weight.shape[0])


GENERIC = Implementation(
    name="generic",
    linearize=_generic_linearize,
    ntk=_generic_ntk,
    correlations=lambda model, f, params, x, lr: derivative_correlations(f, params, x, lr=lr),
    function_space_misfit=_generic_function_space_misfit,
)

MLP_FAST = Implementation(
    name="mlp",
    linearize=lambda model, twin, x, reuse: linearized_mlp(model, twin.params0, x),
    ntk=lambda model, f, params, x, budget=DEFAULT_BUDGET: mlp_ntk(model, x, params),
    correlations=lambda model, f, params, x, lr: mlp_derivative_correlations(model, x, lr=lr, params=params),
    function_space_misfit=_mlp_function_space_misfit,
)

# The transformer's many small operations (softmax, layer norm, per-head products) make the
# per-call cost dominate at the generic 4 probes per vmapped chunk. benchmarks/models.py (1 thread,
# 32 probes × 10 outputs): correlations 15.7× / 8.2× the tutorial's Jacobian contraction at width
# 32 / 64 with 4 probes per chunk, 4.3× / 3.2× with 32 (the resnet stays best at 4: 7.1× vs 11.0×).
TRANSFORMER_PROBES_PER_CHUNK = 32

TRANSFORMER = replace(
    GENERIC, name="transformer",
    correlations=lambda model, f, params, x, lr: derivative_correlations(
        f, params, x, lr=lr, chunk_size=TRANSFORMER_PROBES_PER_CHUNK),
)

_REGISTRY: dict[type, Implementation] = {}


def register(model_type: type, implementation: Implementation) -> None:
    """Serve `model_type` (and its subclasses, unless they register their own) by `implementation`."""
    _REGISTRY[model_type] = implementation


def implementation_for(model: nn.Module) -> Implementation:
    """The registered implementation of the nearest class in type(model)'s MRO, else GENERIC."""
    for cls in type(model).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return GENERIC


register(MLP, MLP_FAST)
register(VisionTransformer, TRANSFORMER)

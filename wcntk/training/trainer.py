"""One training loop for every model, dataset and optimizer: the network and its
linearized twin start from the same θ₀, see the same minibatches and the same
optimizer settings; the metrics of docs/theory.md §2 are measured along the way.

Learning rate actually used:  η = lr · (width / width_ref)^α · m_param,
with α = `lr_width_exponent` and m_param = width for mean_field, 1 otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..core.correlations import gd_step_direction, step_ratios
from ..core.custom import differentiable_attention
from ..core.fingerprint import theta0_fingerprint
from ..core.implementations import implementation_for
from ..core.init import INIT_SCHEME
from ..core.layers import (
    ModelConfig,
    detached,
    frozen_count,
    functional,
    num_params,
    params_of,
    trainable_params,
)
from ..core.linearization import TRACE_AFTER, LinearizedModel
from ..core.losses import accuracy, get_loss
from ..core.metric_registry import NET, TRAIN_LOSSES, TWIN, correlation, deviation, model_metric
from ..core.metrics import deviation_from_outputs, ntk_rel_change, param_rel_change, rms
from ..core.models import build_model, custom_factory_arguments
from ..core.status import Status
from ..core.tf32 import disable_tf32
from .config import PRECISIONS, OptimizerConfig, TrainConfig, effective_lr, resolve_device, validate_all
from .data import DataConfig, Dataset, load_dataset
from .function_space import KERNEL_BUDGET, FunctionSpaceTwin, function_space_reason
from .module_check import unused_parameters
from .progress import progress_bar, say
from .sampler import MinibatchSampler
from .step_graph import Capture, StepChoice, choose_step, cuda_graph_capture

T = TypeVar("T")


class NotReproducible(ValueError):
    """A checkpoint's θ₀ is not the one this trainer rebuilt from the seed; one line."""


class MeasurementStopped(BaseException):
    """`stop()` said so inside a measurement (stoppable): its row is measured again later. A
    BaseException, so that no `except Exception` on the way swallows it."""


@contextmanager
def stoppable(model: nn.Module, stop: Callable[[], bool] | None) -> Iterator[None]:
    """Within the block, every call of one of the model's modules (the network, the NTK's and the
    correlations' passes through f, whatever transform calls it) first asks `stop()`; True raises
    MeasurementStopped there. A long measurement thus stops within one module's pass."""
    if stop is None:
        yield
        return

    def hook(_module: nn.Module, _args: object) -> None:
        if stop():
            raise MeasurementStopped

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class RunResult:
    status: Status                     # Status.OK | Status.DIVERGED
    message: str | None
    diverged_step: int | None
    initial: dict[str, float]
    final: dict[str, float]



def make_optimizer(opt: OptimizerConfig, params, lr: float,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The torch optimizer; `capturable` (CUDA graphs) keeps Adam's step count on the device."""
    if opt.name in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr)
    if opt.name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum)
    return torch.optim.Adam(params, lr=lr, betas=tuple(opt.betas), capturable=capturable)


def to_floats(row: dict[str, Tensor]) -> dict[str, float]:
    """A logged row as Python floats with one device sync (one stacked float64 copy)."""
    if not row:
        return {}
    stacked = torch.stack([torch.as_tensor(v).detach().to(torch.float64).reshape(()) for v in row.values()])
    return dict(zip(row, stacked.tolist(), strict=True))


def divergence(values: dict[str, float], initial: dict[str, float], factor: float) -> str | None:
    """Why a logged row means the run diverged, or None: a non-finite training loss, or one that
    grew over `factor` × its initial value (a finite blow-up is no result either)."""
    if any(not math.isfinite(values[k]) for k in TRAIN_LOSSES):
        net, twin = (values[k] for k in TRAIN_LOSSES)
        return f"non-finite training loss (net {net}, twin {twin})"
    for key in TRAIN_LOSSES:
        start = initial.get(key)
        if start is not None and values[key] > factor * max(start, torch.finfo(torch.float64).tiny):
            return f"{key} {values[key]:.4g} is over {factor:g} × its initial {start:.4g}"
    return None


def gd_stable_lr(ntk: Tensor) -> float:
    """2 / λ_max(Θ/m): the largest learning rate at which full-batch GD on the MSE loss
    1/(2m) Σ‖f − y‖² is stable in the kernel regime (f ← f − η/m · Θ (f − y)), from the NTK
    [m, k, m, k] of m training inputs (λ_max(Θ)/m estimates the full batch's: the top eigenvalue
    of an NTK grows with the number of inputs)."""
    m, k = ntk.shape[0], ntk.shape[1]
    top = torch.linalg.eigvalsh(ntk.reshape(m * k, m * k).to(torch.float64)).max().item()
    return 2 * m / top if top > 0 else math.inf


class Trainer:
    """Network and twin side by side. `log(step, metrics)` receives every logged row.
    `capture` replaces wcntk.training.step_graph.cuda_graph_capture; given one, the first step chooses
    between its replay and the eager step (`graph_step`) whatever the device."""

    def __init__(self, model_cfg: ModelConfig, data_cfg: DataConfig, opt_cfg: OptimizerConfig,
                 train_cfg: TrainConfig, log: Callable[[int, dict[str, float]], None] = lambda s, m: None,
                 data: Dataset | None = None, capture: Capture | None = None, validated: bool = False):
        if not validated:  # a notebook's configs; a run's were validated once (wcntk.run.config)
            validate_all(model_cfg, data_cfg, opt_cfg, train_cfg)
        self.model_cfg, self.data_cfg, self.opt_cfg, self.cfg = model_cfg, data_cfg, opt_cfg, train_cfg
        self.log = log
        self.device = resolve_device(train_cfg.device)
        self.dtype = PRECISIONS[train_cfg.precision]
        disable_tf32()
        differentiable_attention()
        self.data = data or load_dataset(data_cfg, flatten=model_cfg.kind == "mlp", loss=train_cfg.loss,
                                         seed=train_cfg.seed, dtype=self.dtype, device=self.device)
        self.loss_fn = get_loss(train_cfg.loss)
        self.model = build_model(model_cfg, self.data.input_shape, self.data.n_classes,
                                 seed=train_cfg.seed, dtype=self.dtype, device=self.device,
                                 reuse=True)   # the pre-flight check's module, when it was built alike
        self.f = functional(self.model)
        self.impl = implementation_for(self.model)
        # θ: the trainable parameters f depends on (frozen ones are constants; unused ones are left out)
        self.unused = (unused_parameters(self.model, self.data.input_shape, self.dtype, self.device)
                       if model_cfg.kind == "custom" else [])
        self.params0 = {k: v for k, v in params_of(self.model).items() if k not in self.unused}
        self.n_unused = sum(v.numel() for k, v in trainable_params(self.model).items() if k in self.unused)
        self.theta0_sha256 = theta0_fingerprint(self.model)   # a resume checks it (load_state_dict)
        # A run that steps calls its fixed-batch twins (training set, test set) at every evaluation or
        # step: traced from the first call, so each call takes the same path whether the process
        # started at step 0 or resumed (plain jvps and the trace differ at round-off).
        self.twin = LinearizedModel(self.f, self.params0,
                                    trace_after=0 if train_cfg.steps > 0 else TRACE_AFTER)
        self.lr = effective_lr(opt_cfg, model_cfg)
        graphs = train_cfg.graphs_wanted()
        self.net_opt = make_optimizer(opt_cfg, trainable_params(self.model).values(), self.lr,
                                      capturable=graphs)
        # The twin trains in function space (wcntk.training.function_space) or on its own parameters.
        why_not = function_space_reason(
            train_cfg.twin_space, opt_cfg.name, len(self.data.x_train), self.data.n_classes, train_cfg.steps,
            lambda: self.impl.function_space_misfit(self.model, self.f, self.params0, self.data.x_train,
                                                    KERNEL_BUDGET))
        self.use_twin_space("function" if why_not is None else "parameter")
        self.capture = capture or cuda_graph_capture
        choose = graphs or capture is not None
        self.step_mode = "undecided" if choose else "eager"   # undecided -> graph | eager at the 1st step
        self._step: Callable[[], None] | None = None if choose else self.eager_step
        self.sampler = MinibatchSampler(len(self.data.x_train), opt_cfg.batch_size,
                                        train_cfg.seed + 1, self.device)
        d = self.data
        self.twin_train = self.linearized_at(d.x_train)
        self.twin_test = self.linearized_at(d.x_test) if len(d.x_test) else None
        self.x_probe = d.x_train[:train_cfg.probes]
        self.ntk0: Tensor | None = None     # Θ₀ on the probes (initial_ntk)
        self.steps_taken = 0                 # optimizer steps the network has taken (restored too)
        # Where run() starts: after `start_step` steps, that step's row logged or not (load_state_dict).
        self.start_step, self.start_logged = 0, False
        self.row_pending = False             # inside run(): the row of the current step is still to log
        self.initial: dict[str, float] = {}
        self.final: dict[str, float] = {}

    def use_twin_space(self, space: str) -> None:
        """Set the twin up to train in `space` ("function" or "parameter"), from θ₀."""
        self.twin_space = space
        if space == "function":
            self.twin_leaves, self.twin_opt = None, None
            self.function_twin = FunctionSpaceTwin(
                len(self.data.x_train), self.data.n_classes, self.lr,
                self.opt_cfg.momentum if self.opt_cfg.name == "momentum" else None,
                self.loss_fn, self.dtype, self.device, self.train_kernel)
        else:
            self.function_twin = None
            self.twin_leaves = {k: v.clone().requires_grad_(True) for k, v in self.params0.items()}
            self.twin_opt = make_optimizer(self.opt_cfg, self.twin_leaves.values(), self.lr,
                                           capturable=self.cfg.graphs_wanted())

    @torch.no_grad()
    def train_kernel(self) -> tuple[Tensor, Tensor]:
        """(f(X; θ₀), Θ₀(X, X)) on the training inputs X: what the function-space twin starts from."""
        x = self.data.x_train
        return self.f(self.params0, x), self.impl.ntk(self.model, self.f, self.params0, x, KERNEL_BUDGET)

    @property
    def twin_params(self) -> dict[str, Tensor]:
        """θ_lin: the parameter-space twin's own tensors (trained by its optimizer), or in function
        space θ₀ + J₀(X)ᵀ vec(R), computed by one vjp at each call."""
        if self.function_twin is None:
            return self.twin_leaves
        return self.function_twin.parameters(self.twin_train, self.params0)

    @property
    def n_params(self) -> int:
        return num_params(self.params0)

    def theta(self) -> dict[str, Tensor]:
        """θ_t: the network's parameters that θ₀ holds (trainable and used), as detached views."""
        live = trainable_params(self.model)
        return {k: live[k].detach() for k in self.params0}

    def linearized_at(self, x: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        """params ↦ f_lin(params, x) for a fixed x, with the θ₀ part computed once, by the
        model's implementation (wcntk.core.implementations)."""
        return self.impl.linearize(self.model, self.twin, x, True)

    # --- one step -------------------------------------------------------------------------
    def step(self) -> None:
        """One optimizer step of the network and of the twin on the same minibatch: eager, or
        with CUDA graphs (cfg.graphs_wanted()) the replayed step that `graph_step` chose at the
        first call (its one line goes to stderr when it keeps the eager step)."""
        self.steps_taken += 1
        if self._step is None:   # (its eager step builds a function-space twin's Θ₀, before any capture)
            choice = self.graph_step()
            self._step, self.step_mode = choice.step, "graph" if choice.graphed else "eager"
            if choice.note:
                say(choice.note)
        self._step()

    def eager_step(self) -> None:
        self.sampler.advance()
        self.step_body()

    def graph_step(self) -> StepChoice:
        """wcntk.training.step_graph.choose_step for this trainer, called before its first step: the state
        is both models' parameters and optimizer state (in function space the twin's coefficients);
        rewinding restores the parameters, zeroes optimizer state created since (a zero
        moment/momentum buffer steps exactly as a fresh one) and restarts the minibatch order."""
        opts = (self.net_opt,) if self.twin_opt is None else (self.net_opt, self.twin_opt)
        twin_state = (self.function_twin.tensors() if self.function_twin is not None
                      else list(self.twin_leaves.values()))
        params = [*trainable_params(self.model).values(), *twin_state]
        start = [p.detach().clone() for p in params]
        opt_start = {(i, id(p), k): v.clone() for i, o in enumerate(opts) for p, st in o.state.items()
                     for k, v in st.items() if isinstance(v, Tensor)}
        sampler_start = self.sampler.state_dict()  # the seed's start, or a restored checkpoint's position

        def state() -> list[Tensor]:
            return params + [v for o in opts for st in o.state.values() for v in st.values()
                             if isinstance(v, Tensor)]

        @torch.no_grad()
        def rewind() -> None:
            for p, p0 in zip(params, start, strict=True):
                p.copy_(p0)
            for i, o in enumerate(opts):
                for p, st in o.state.items():
                    for k, v in st.items():
                        if isinstance(v, Tensor) and (i, id(p), k) in opt_start:
                            v.copy_(opt_start[i, id(p), k])
                        elif isinstance(v, Tensor):
                            v.zero_()
            self.sampler.load_state_dict(sampler_start)

        return choose_step(self.sampler.advance, self.step_body, state, rewind, self.capture)

    def step_body(self) -> None:
        """The device work of one step (what a CUDA graph captures): minibatch indices from the
        sampler's device buffer, network forward/backward/update, twin forward/backward/update."""
        idx = self.sampler.indices()
        d = self.data
        x, y = ((d.x_train, d.y_train) if idx is None
                else (d.x_train.index_select(0, idx), d.y_train.index_select(0, idx)))
        self.net_opt.zero_grad(set_to_none=True)
        self.loss_fn(self.model(x), y).backward()
        self.net_opt.step()
        if self.function_twin is not None:
            self.function_twin.step(idx, y)
            return
        self.twin_opt.zero_grad(set_to_none=True)
        if idx is None:
            twin_out = self.twin_train(self.twin_leaves)
        else:
            twin_out = self.impl.linearize(self.model, self.twin, x, False)(self.twin_leaves)
        self.loss_fn(twin_out, y).backward()
        self.twin_opt.step()

    # --- measurements ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor]:
        """Losses/accuracies of both models and the lin/* deviations on train and test."""
        d = self.data
        params_t = self.theta()
        twin_params = detached(self.twin_params)
        out: dict[str, Tensor] = {}
        splits = [("train", d.x_train, d.y_train, self.twin_train)]
        if self.twin_test is not None:
            splits.append(("test", d.x_test, d.y_test, self.twin_test))
        for split, x, y, twin_fn in splits:
            net, twin, taylor = self.model(x), twin_fn(twin_params), twin_fn(params_t)
            for model, outputs in ((NET, net), (TWIN, twin)):
                out[model_metric(model, split, "loss")] = self.loss_fn(outputs, y)
                out[model_metric(model, split, "acc")] = accuracy(outputs, y)
            for name, value in deviation_from_outputs(net, twin, taylor, y, self.loss_fn).items():
                out[deviation(name, split)] = value
        out[deviation("param_rel_change")] = param_rel_change(self.params0, params_t)
        return out

    def correlations(self) -> dict[str, Tensor]:
        """corr/* at the current network parameters and lin/ntk_rel_change on the probes."""
        params_t = self.theta()
        corr = self.impl.correlations(self.model, self.f, params_t, self.x_probe, self.lr)
        ntk = (self.initial_ntk() if self.steps_taken == 0
               else self.impl.ntk(self.model, self.f, params_t, self.x_probe))
        out: dict[str, Tensor] = {}
        for name, values in corr.items():
            out[correlation(name)] = rms(values)
            out[correlation(name, "max")] = values.abs().max()
        d = self.data
        u = gd_step_direction(self.f, params_t, d.x_train, d.y_train, self.loss_fn, self.lr)
        out.update({correlation(k): v for k, v in step_ratios(self.f, params_t, self.x_probe, u).items()})
        out[deviation("ntk_rel_change")] = ntk_rel_change(self.initial_ntk(), ntk)
        return out

    def initial_ntk(self) -> Tensor:
        """Θ₀ on the probes, computed once at θ₀."""
        if self.ntk0 is None:
            self.ntk0 = self.impl.ntk(self.model, self.f, self.params0, self.x_probe)
        return self.ntk0

    # --- the loop -------------------------------------------------------------------------
    def is_corr_step(self, t: int) -> bool:
        every = self.cfg.corr_every
        return t == 0 or t == self.cfg.steps or (every is not None and t % every == 0)

    def is_log_step(self, t: int) -> bool:
        return t % self.cfg.log_every == 0 or t == self.cfg.steps or self.is_corr_step(t)

    def run(self, label: str | None = None, boundary: Callable[[int], None] | None = None,
            stop: Callable[[], bool] | None = None) -> RunResult:
        """Train for cfg.steps steps, logging at log/corr steps. Stops at the first non-finite loss.
        Progress (cfg.progress): a bar on a terminal, a line per 10 % elsewhere, named `label`.
        `boundary(t)` is called between steps, when t steps are done and step t's row (if any)
        is logged: the state then is what state_dict saves (wcntk.run.checkpoint). `stop()`
        (with `boundary`) is asked inside measurements (stoppable): True drops the row being
        measured and calls `boundary(t)` with the row still to log (state_dict says so), which is
        expected to end the run; if it returns, the row is measured again. After load_state_dict
        the run continues from the restored step."""
        steps, start = self.cfg.steps, self.start_step
        initial, final = self.initial, self.final  # empty, or restored by load_state_dict
        status, message, bad_step = Status.OK, None, None
        self.warn_unstable_lr()
        self.warn_unused(label)
        bar = progress_bar(steps, self.cfg.progress, label)
        if start:
            bar.update(start)
        try:
            for t in range(start, steps + 1):
                if self.is_log_step(t) and not (self.start_logged and t == start):  # logged before it
                    values = self.measure_row(t, boundary, stop)
                    self.log(t, values)
                    if t == 0:
                        initial.update(values)
                    final.update(values)
                    net, twin = (values[k] for k in TRAIN_LOSSES)
                    bar.set_postfix(at_step=t, net=f"{net:.4g}", twin=f"{twin:.4g}",
                                    func_rmse=f"{values[deviation('func_rmse', 'train')]:.3g}", refresh=False)
                    why = divergence(values, initial, self.cfg.diverge_factor)
                    if why is not None:
                        status, bad_step = Status.DIVERGED, t
                        message = (f"diverged at step {t}: {why}; lower optimizer.lr "
                                   f"(effective lr {self.lr:g})")
                        break
                if t > start:  # step t done and, at a log step, logged: the line shows its values
                    bar.update(1)
                if boundary is not None:  # t steps done, row t logged: a consistent state
                    boundary(t)
                if t < steps:
                    self.prepare_twin(t, boundary, stop)
                    self.step()
        finally:
            bar.close()
        return RunResult(status, message, bad_step, initial, final)

    def until_done(self, work: Callable[[], T], t: int, boundary: Callable[[int], None] | None,
                   stop: Callable[[], bool] | None, row_pending: bool) -> T:
        """work() under stoppable (with `boundary` only); if `stop()` stops it, boundary(t), with
        row t pending when `row_pending` (state_dict says so), then work() again if the run goes on."""
        if boundary is None:
            stop = None
        while True:
            try:
                with stoppable(self.model, stop):
                    return work()
            except MeasurementStopped:
                pass
            self.row_pending = row_pending
            try:
                boundary(t)
            finally:
                self.row_pending = False

    def measure_row(self, t: int, boundary: Callable[[int], None] | None,
                    stop: Callable[[], bool] | None) -> dict[str, float]:
        """Row t (evaluate, and correlations at a corr step); if `stop()` stops it (stoppable),
        boundary(t) with the row pending, then measured again if the run goes on."""
        def measure() -> dict[str, float]:
            row = self.evaluate()
            if self.is_corr_step(t):
                row.update(self.correlations())
            return to_floats(row)
        return self.until_done(measure, t, boundary, stop, row_pending=True)

    def prepare_twin(self, t: int, boundary: Callable[[int], None] | None,
                     stop: Callable[[], bool] | None) -> None:
        """Build the function-space twin's Θ₀ before its first step, stoppable as a measurement is
        (a generic network's kernel can take many seconds): `stop()` while it is built calls
        boundary(t), t steps done and row t logged, which is expected to end the run; if it
        returns, Θ₀ is built again."""
        if self.function_twin is not None and self.function_twin.kernel is None:   # (before each step)
            self.until_done(self.function_twin.prepare, t, boundary, stop, row_pending=False)

    def stable_lr(self) -> float | None:
        """gd_stable_lr of the initial NTK on the probes, for MSE with GD/SGD (else None, as for a
        zero NTK)."""
        if self.cfg.loss != "mse" or self.opt_cfg.name not in ("gd", "sgd"):
            return None
        limit = gd_stable_lr(self.initial_ntk())
        return limit if math.isfinite(limit) else None

    def warn_unstable_lr(self) -> None:
        """One line on stderr when η exceeds the kernel regime's stable limit (a warning only)."""
        limit = self.stable_lr()
        if limit is not None and self.lr > limit:
            say(f"warning: effective lr {self.lr:g} is above 2/λ_max = {limit:.3g} of the initial NTK on "
                f"{len(self.x_probe)} training inputs (MSE, {self.opt_cfg.name}): the network and its "
                f"twin will likely diverge; lower optimizer.lr")

    def warn_unused(self, label: str | None = None) -> None:
        """One line on stderr naming the trainable parameters f does not depend on."""
        if self.unused:
            say(f"warning: {len(self.unused)} trainable parameter(s) receive no gradient from the output "
                f"({', '.join(self.unused)}; {self.n_unused} entries): left out of θ, n_params and "
                f"lin/param_rel_change (facts.n_unused_params)", label)

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self, step: int) -> dict[str, object]:
        """Everything the rest of the run depends on, at a boundary of run() after `step` steps:
        both models' parameters (and the network's buffers; in function space the twin's coefficients
        instead of its parameters, `twin_space` says which), both optimizer states, the sampler's
        position and generator, the process's global RNGs (a custom network may draw from them),
        the initial NTK on the probes, the initial / last values run() returns and whether row
        `step` is logged (False when a measurement was stopped: run() measures it again). θ₀, the
        data, the twin's linearization point (and in function space Θ₀) are rebuilt from the seed and
        not saved: θ₀'s fingerprint is, and load_state_dict refuses another θ₀ (NotReproducible). As
        torch's state_dicts, it refers to the live tensors (on the CPU): serialize it before the next
        step."""
        with torch.no_grad():
            state: dict[str, object] = {
                "step": step,
                "net": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "twin_space": self.twin_space,
                "twin": (None if self.twin_leaves is None
                         else {k: v.detach().cpu() for k, v in self.twin_leaves.items()}),
                "twin_dual": None if self.function_twin is None else self.function_twin.state_dict(),
                "net_opt": self.net_opt.state_dict(),
                "twin_opt": None if self.twin_opt is None else self.twin_opt.state_dict(),
                "sampler": self.sampler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "ntk0": None if self.ntk0 is None else self.ntk0.cpu(),
                "initial": dict(self.initial), "final": dict(self.final),
                "theta0_sha256": dict(self.theta0_sha256), "row_logged": not self.row_pending}
            if self.device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue from a state_dict: run() then starts after its step. Call it before the first
        step: with CUDA graphs the step is captured at the first step, after the restore (the
        graph reads the parameters, optimizer state and sampler buffers restored in place)."""
        if self._step is not None and self.step_mode != "eager":
            raise RuntimeError("load_state_dict after the CUDA graph was captured: restore before step 1")
        saved = state.get("theta0_sha256")
        if saved is not None and saved != self.theta0_sha256:
            which = " and ".join(k for k in ("trainable", "frozen") if saved.get(k) != self.theta0_sha256[k])
            raise NotReproducible(
                f"θ₀ rebuilt from seed {self.cfg.seed} is not the checkpoint's ({which} tensors differ): "
                f"the network's factory is not reproducible from its seed/generator (numpy's or Python's "
                f"global RNG? a file?); start over with overwrite=true")
        space = state.get("twin_space", "parameter")   # checkpoints before the function-space twin
        if space != self.twin_space:
            self.use_twin_space(space)
        with torch.no_grad():
            self.model.load_state_dict(state["net"])
            if self.function_twin is None:
                twin = state["twin"]
                if twin.keys() != self.twin_leaves.keys():
                    raise ValueError("the checkpoint's twin parameters are not this network's")
                for k, v in self.twin_leaves.items():
                    v.copy_(twin[k])
        self.net_opt.load_state_dict(state["net_opt"])
        if self.function_twin is None:
            self.twin_opt.load_state_dict(state["twin_opt"])
        else:
            self.function_twin.load_state_dict(state["twin_dual"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        ntk0 = state["ntk0"]
        self.ntk0 = None if ntk0 is None else ntk0.to(self.device)
        self.initial, self.final = dict(state["initial"]), dict(state["final"])
        self.start_step, self.start_logged = int(state["step"]), bool(state.get("row_logged", True))
        self.steps_taken = self.start_step

    def facts(self) -> dict[str, object]:
        """What the run resolved from its config: trainable and frozen parameter counts, η and its
        stable limit, data source, device, the θ₀ scheme (wcntk.core.init.INIT_SCHEME), θ₀'s
        fingerprint (wcntk.core.fingerprint: trainable and frozen), and for a custom network the
        arguments its factory received."""
        facts: dict[str, object] = {
            "n_params": self.n_params, "n_frozen_params": frozen_count(self.model), "effective_lr": self.lr,
            "stable_lr": self.stable_lr(), "data_source": self.data.source, "device": str(self.device),
            "init_scheme": INIT_SCHEME, "twin_space": self.twin_space,
            "theta0_sha256": self.theta0_sha256["trainable"],
            "theta0_frozen_sha256": self.theta0_sha256["frozen"]}
        if self.model_cfg.kind == "custom":
            facts["n_unused_params"] = self.n_unused
            facts["factory_arguments"] = custom_factory_arguments(
                self.model_cfg, self.data.input_shape, self.data.n_classes, self.cfg.seed)
        return facts

"""One training loop for every model, dataset and optimizer: the network and its
linearized twin start from the same θ₀, see the same minibatches and the same
optimizer settings; the metrics of docs/theory.md §2 are measured along the way.

Learning rate actually used:  η = lr · (width / width_ref)^α · m_param,
with α = `lr_width_exponent` and m_param = width for mean_field, 1 otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .correlations import gd_step_direction, step_ratios
from .data import DataConfig, Dataset, is_image_dataset, load_dataset
from .implementations import implementation_for
from .linearization import LinearizedModel
from .losses import accuracy, get_loss
from .metrics import deviation_from_outputs, ntk_rel_change, param_rel_change, rms
from .models import ModelConfig, build_model, detached, functional, lr_width_multiplier, num_params, params_of
from .progress import progress_bar

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}

EVAL_METRICS = [f"{model}/{split}_{kind}" for model in ("net", "twin")
                for split in ("train", "test") for kind in ("loss", "acc")]
LIN_METRICS = [f"lin/{name}_{split}" for name in ("func_rmse", "func_mse", "taylor_rmse", "loss_gap")
               for split in ("train", "test")] + ["lin/param_rel_change"]
CORR_METRICS = (["lin/ntk_rel_change"]
                + [f"corr/{c}{suffix}" for c in ("C02", "C03", "C11") for suffix in ("", "_max")]
                + ["corr/step_ratio_2", "corr/step_ratio_3"])
METRIC_NAMES: list[str] = EVAL_METRICS + LIN_METRICS + CORR_METRICS


@dataclass
class OptimizerConfig:
    name: str = "gd"                   # gd | sgd | momentum | adam
    lr: float = 1.0
    batch_size: int | None = None   # None = full batch
    lr_width_exponent: float = 0.0     # α in η = lr · (width/width_ref)^α
    width_ref: int = 1024
    momentum: float = 0.9              # momentum only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only

    def validate(self, n_train: int) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {OPTIMIZERS}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optimizer.lr must be finite and > 0, got {self.lr}")
        if not math.isfinite(self.lr_width_exponent):
            raise ValueError(f"optimizer.lr_width_exponent must be finite, got {self.lr_width_exponent}")
        if self.width_ref <= 0:
            raise ValueError(f"optimizer.width_ref must be > 0, got {self.width_ref}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.batch_size is not None and not 0 < self.batch_size <= n_train:
            raise ValueError(f"optimizer.batch_size must be in 1..n_train={n_train} (or null for "
                             f"full batch), got {self.batch_size}")


@dataclass
class TrainConfig:
    steps: int = 1000
    loss: str = "mse"                  # mse | xent
    precision: str = "float32"         # float32 | float64
    device: str = "auto"               # auto | cpu | cuda
    seed: int = 0
    log_every: int = 25
    corr_every: int | None = None   # correlations at 0, the end, and every corr_every steps
    probes: int = 32
    progress: bool = True

    def validate(self, n_train: int) -> None:
        get_loss(self.loss)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device=cuda requested but CUDA is not available")
        if self.device.startswith("cuda:") and not (self.device[5:].isdigit()
                                                    and int(self.device[5:]) < torch.cuda.device_count()):
            raise ValueError(f"device={self.device} is not one of this machine's "
                             f"{torch.cuda.device_count()} CUDA devices (cuda:0, …)")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.corr_every is not None and self.corr_every < 1:
            raise ValueError(f"corr_every must be >= 1 or null, got {self.corr_every}")
        if not 1 <= self.probes <= n_train:
            raise ValueError(f"probes must be in 1..n_train={n_train}, got {self.probes}")


@dataclass
class RunResult:
    status: str                        # ok | diverged
    message: str | None
    diverged_step: int | None
    initial: dict[str, float]
    final: dict[str, float]


def validate_all(model: ModelConfig, data: DataConfig, opt: OptimizerConfig, train: TrainConfig) -> None:
    """Every config check that needs no data loaded; raises ValueError with one readable line."""
    model.validate()
    data.validate()
    opt.validate(data.n_train)
    train.validate(data.n_train)
    if model.kind == "cnn" and not is_image_dataset(data.name):
        raise ValueError(f"model=cnn needs an image dataset, got dataset={data.name}")
    lr = effective_lr(opt, model)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"the effective learning rate lr·(width/width_ref)^lr_width_exponent is {lr} "
                         f"at width {model.width}: lower optimizer.lr or optimizer.lr_width_exponent")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def disable_tf32() -> None:
    """Deviations are 1e-4…1e-6 of the outputs: TF32 matmuls/convolutions would swamp them."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def effective_lr(opt: OptimizerConfig, model: ModelConfig) -> float:
    """η = lr · (width/width_ref)^α · (width if mean_field else 1)."""
    return (opt.lr * (model.width / opt.width_ref) ** opt.lr_width_exponent
            * lr_width_multiplier(model.parameterization, model.width))


def make_optimizer(opt: OptimizerConfig, params, lr: float) -> torch.optim.Optimizer:
    if opt.name in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr)
    if opt.name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum)
    return torch.optim.Adam(params, lr=lr, betas=tuple(opt.betas))


class MinibatchSampler:
    """Seeded reshuffling minibatches, epochs without replacement (a short remainder is
    dropped); full batch when batch_size is None."""

    def __init__(self, n: int, batch_size: int | None, seed: int, device: torch.device):
        self.n, self.batch_size, self.device = n, batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)

    def next(self) -> Tensor | None:
        """Indices of the next minibatch (None = the full training set)."""
        if self.batch_size is None or self.batch_size == self.n:
            return None
        if len(self.order) < self.batch_size:
            self.order = torch.randperm(self.n, generator=self.gen)
        idx, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        return idx.to(self.device)


def _is_bad(values: dict[str, float]) -> bool:
    return any(not math.isfinite(values[k]) for k in ("net/train_loss", "twin/train_loss"))


class Trainer:
    """Network and twin side by side. `log(step, metrics)` receives every logged row."""

    def __init__(self, model_cfg: ModelConfig, data_cfg: DataConfig, opt_cfg: OptimizerConfig,
                 train_cfg: TrainConfig, log: Callable[[int, dict[str, float]], None] = lambda s, m: None,
                 data: Dataset | None = None):
        validate_all(model_cfg, data_cfg, opt_cfg, train_cfg)
        self.model_cfg, self.data_cfg, self.opt_cfg, self.cfg = model_cfg, data_cfg, opt_cfg, train_cfg
        self.log = log
        self.device = resolve_device(train_cfg.device)
        self.dtype = PRECISIONS[train_cfg.precision]
        disable_tf32()
        self.data = data or load_dataset(data_cfg, flatten=model_cfg.kind == "mlp", loss=train_cfg.loss,
                                         seed=train_cfg.seed, dtype=self.dtype, device=self.device)
        self.loss_fn = get_loss(train_cfg.loss)
        self.model = build_model(model_cfg, self.data.input_shape, self.data.n_classes,
                                 seed=train_cfg.seed, dtype=self.dtype, device=self.device)
        self.f = functional(self.model)
        self.impl = implementation_for(self.model)
        self.params0 = params_of(self.model)
        self.twin = LinearizedModel(self.f, self.params0)
        self.twin_params = {k: v.clone().requires_grad_(True) for k, v in self.params0.items()}
        self.lr = effective_lr(opt_cfg, model_cfg)
        self.net_opt = make_optimizer(opt_cfg, self.model.parameters(), self.lr)
        self.twin_opt = make_optimizer(opt_cfg, self.twin_params.values(), self.lr)
        self.sampler = MinibatchSampler(len(self.data.x_train), opt_cfg.batch_size,
                                        train_cfg.seed + 1, self.device)
        d = self.data
        self.twin_train = self.linearized_at(d.x_train)
        self.twin_test = self.linearized_at(d.x_test) if len(d.x_test) else None
        self.x_probe = d.x_train[:train_cfg.probes]
        self.ntk0: Tensor | None = None

    @property
    def n_params(self) -> int:
        return num_params(self.params0)

    def linearized_at(self, x: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        """params ↦ f_lin(params, x) for a fixed x, with the θ₀ part computed once, by the
        model's implementation (wcntk.implementations)."""
        return self.impl.linearize(self.model, self.twin, x, True)

    # --- one step -------------------------------------------------------------------------
    def step(self) -> None:
        """One optimizer step of the network and of the twin on the same minibatch."""
        idx = self.sampler.next()
        d = self.data
        x, y = (d.x_train, d.y_train) if idx is None else (d.x_train[idx], d.y_train[idx])
        self.net_opt.zero_grad(set_to_none=True)
        self.loss_fn(self.model(x), y).backward()
        self.net_opt.step()
        self.twin_opt.zero_grad(set_to_none=True)
        if idx is None:
            twin_out = self.twin_train(self.twin_params)
        else:
            twin_out = self.impl.linearize(self.model, self.twin, x, False)(self.twin_params)
        self.loss_fn(twin_out, y).backward()
        self.twin_opt.step()

    # --- measurements ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor]:
        """Losses/accuracies of both models and the lin/* deviations on train and test."""
        d = self.data
        params_t = detached(dict(self.model.named_parameters()))
        twin_params = detached(self.twin_params)
        out: dict[str, Tensor] = {}
        splits = [("train", d.x_train, d.y_train, self.twin_train)]
        if self.twin_test is not None:
            splits.append(("test", d.x_test, d.y_test, self.twin_test))
        for split, x, y, twin_fn in splits:
            net, twin, taylor = self.model(x), twin_fn(twin_params), twin_fn(params_t)
            out[f"net/{split}_loss"] = self.loss_fn(net, y)
            out[f"net/{split}_acc"] = accuracy(net, y)
            out[f"twin/{split}_loss"] = self.loss_fn(twin, y)
            out[f"twin/{split}_acc"] = accuracy(twin, y)
            for name, value in deviation_from_outputs(net, twin, taylor, y, self.loss_fn).items():
                out[f"lin/{name}_{split}"] = value
        out["lin/param_rel_change"] = param_rel_change(self.params0, params_t)
        return out

    def correlations(self) -> dict[str, Tensor]:
        """corr/* at the current network parameters and lin/ntk_rel_change on the probes."""
        params_t = detached(dict(self.model.named_parameters()))
        corr = self.impl.correlations(self.model, self.f, params_t, self.x_probe, self.lr)
        ntk = self.impl.ntk(self.model, self.f, params_t, self.x_probe)
        out: dict[str, Tensor] = {}
        for name, values in corr.items():
            out[f"corr/{name}"] = rms(values)
            out[f"corr/{name}_max"] = values.abs().max()
        d = self.data
        u = gd_step_direction(self.f, params_t, d.x_train, d.y_train, self.loss_fn, self.lr)
        out.update({f"corr/{k}": v for k, v in step_ratios(self.f, params_t, self.x_probe, u).items()})
        if self.ntk0 is None:
            self.ntk0 = ntk
        out["lin/ntk_rel_change"] = ntk_rel_change(self.ntk0, ntk)
        return out

    # --- the loop -------------------------------------------------------------------------
    def is_corr_step(self, t: int) -> bool:
        every = self.cfg.corr_every
        return t == 0 or t == self.cfg.steps or (every is not None and t % every == 0)

    def is_log_step(self, t: int) -> bool:
        return t % self.cfg.log_every == 0 or t == self.cfg.steps or self.is_corr_step(t)

    def run(self, label: str | None = None) -> RunResult:
        """Train for cfg.steps steps, logging at log/corr steps. Stops at the first non-finite loss.
        Progress (cfg.progress): a bar on a terminal, a line per 10 % elsewhere, named `label`."""
        steps = self.cfg.steps
        initial: dict[str, float] = {}
        final: dict[str, float] = {}
        status, message, bad_step = "ok", None, None
        bar = progress_bar(steps, self.cfg.progress, label)
        try:
            for t in range(steps + 1):
                if self.is_log_step(t):
                    row = self.evaluate()
                    if self.is_corr_step(t):
                        row.update(self.correlations())
                    values = {k: float(v) for k, v in row.items()}
                    self.log(t, values)
                    if t == 0:
                        initial = dict(values)
                    final.update(values)
                    bar.set_postfix(at_step=t, net=f"{values['net/train_loss']:.4g}",
                                    twin=f"{values['twin/train_loss']:.4g}",
                                    func_rmse=f"{values['lin/func_rmse_train']:.3g}", refresh=False)
                    if _is_bad(values):
                        status, bad_step = "diverged", t
                        message = (f"diverged at step {t}: non-finite training loss "
                                   f"(net {values['net/train_loss']}, twin {values['twin/train_loss']}); "
                                   f"lower optimizer.lr (effective lr {self.lr:g})")
                        break
                if t > 0:  # step t done and, at a log step, logged: the line shows its values
                    bar.update(1)
                if t < steps:
                    self.step()
        finally:
            bar.close()
        return RunResult(status, message, bad_step, initial, final)

    def facts(self) -> dict[str, object]:
        """What the run resolved from its config: parameter count, η, data source, device."""
        return {"n_params": self.n_params, "effective_lr": self.lr,
                "data_source": self.data.source, "device": str(self.device)}

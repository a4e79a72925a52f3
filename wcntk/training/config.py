"""The training part's own settings and every check on them that needs no data:
OptimizerConfig, TrainConfig, and validate_all over them plus the model's and the data's configs.
A leaf: it imports the core and the data settings, never the Trainer (wcntk.run.config builds the
run's schema on it)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from ..core.layers import ModelConfig, lr_width_multiplier
from ..core.losses import get_loss
from .data import DataConfig
from .function_space import LINEAR_OPTIMIZERS
from .network_check import check_network


class Optimizer(StrEnum):
    """`optimizer.name`."""

    gd = "gd"
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"


class Precision(StrEnum):
    """`precision`: the dtype of parameters and data."""

    float32 = "float32"
    float64 = "float64"


class CudaGraphs(StrEnum):
    """`cuda_graphs`: auto (on for CUDA, off for CPU), on or off."""

    auto = "auto"
    on = "on"
    off = "off"


class TwinSpace(StrEnum):
    """`twin_space`: where the twin trains (wcntk.training.function_space): auto (function space for
    gd/sgd/momentum when its kernel is small and the run long enough), function or parameter."""

    auto = "auto"
    function = "function"
    parameter = "parameter"


PRECISIONS = {Precision.float32: torch.float32, Precision.float64: torch.float64}


@dataclass
class OptimizerConfig:
    name: Optimizer = Optimizer.gd
    lr: float = 1.0
    batch_size: int | None = None   # None = full batch
    lr_width_exponent: float = 0.0     # α in η = lr · (width/width_ref)^α
    width_ref: int = 1024
    momentum: float = 0.9              # momentum only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only

    def validate(self, n_train: int) -> None:
        if self.name not in list(Optimizer):
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {', '.join(Optimizer)}")
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
    precision: Precision = Precision.float32
    device: str = "auto"               # auto | cpu | cuda
    seed: int = 0
    log_every: int = 25
    corr_every: int | None = None   # correlations at 0, the end, and every corr_every steps
    probes: int = 32
    progress: bool = True
    cuda_graphs: CudaGraphs = CudaGraphs.auto
    diverge_factor: float = 1e6        # diverged: a training loss over this × its initial value
    twin_space: TwinSpace = TwinSpace.auto

    def validate(self, n_train: int) -> None:
        get_loss(self.loss)
        if self.precision not in list(Precision):
            raise ValueError(f"precision must be one of {', '.join(Precision)}, got {self.precision!r}")
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
        if not (math.isfinite(self.diverge_factor) and self.diverge_factor > 1):
            raise ValueError(f"diverge_factor must be finite and > 1, got {self.diverge_factor}")
        if self.cuda_graphs not in list(CudaGraphs):
            raise ValueError(f"cuda_graphs must be one of {', '.join(CudaGraphs)}, got {self.cuda_graphs!r}")
        if self.twin_space not in list(TwinSpace):
            raise ValueError(f"twin_space must be one of {', '.join(TwinSpace)}, got {self.twin_space!r}")
        if self.cuda_graphs == "on" and resolve_device(self.device).type != "cuda":
            raise ValueError(f"cuda_graphs=on needs a CUDA device (device={self.device} runs on the CPU, "
                             f"where steps are always eager); use cuda_graphs=auto or off")

    def graphs_wanted(self) -> bool:
        """Whether the Trainer tries to replay its steps as a CUDA graph."""
        return self.cuda_graphs == "on" or (self.cuda_graphs == "auto"
                                            and resolve_device(self.device).type == "cuda")


def validate_all(model: ModelConfig, data: DataConfig, opt: OptimizerConfig, train: TrainConfig) -> None:
    """Every config check that needs no data loaded; raises ValueError with one readable line."""
    model.validate()
    data.validate()
    opt.validate(data.n_train)
    train.validate(data.n_train)
    if train.twin_space == TwinSpace.function and opt.name not in LINEAR_OPTIMIZERS:
        raise ValueError(f"twin_space=function needs optimizer gd, sgd or momentum ({opt.name}'s update is "
                         f"not linear in the gradients); use twin_space=auto or parameter")
    lr = effective_lr(opt, model)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"the effective learning rate lr·(width/width_ref)^lr_width_exponent is {lr} "
                         f"at width {model.width}: lower optimizer.lr or optimizer.lr_width_exponent")
    check_network(model, data, PRECISIONS[train.precision], lr, train.seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def effective_lr(opt: OptimizerConfig, model: ModelConfig) -> float:
    """η = lr · (width/width_ref)^α · (width if mean_field else 1)."""
    return (opt.lr * (model.width / opt.width_ref) ** opt.lr_width_exponent
            * lr_width_multiplier(model.parameterization, model.width))

"""The run configuration: one typed schema, made of the library's own config dataclasses.

`RunConfig` is both the schema wcntk.run.cli_checks registers in Hydra's ConfigStore (the
library itself never imports Hydra) and what `OmegaConf.to_object` turns a composed config into.
Its keys are the command line's:

    width depth activation parameterization, model.*   -> ModelConfig
    dataset.*                                          =  DataConfig
    optimizer.*                                        =  OptimizerConfig
    seed steps loss precision device log_every
    corr_every probes progress cuda_graphs
    diverge_factor twin_space                          -> TrainConfig
    threads                                            torch CPU threads per job (entry)
    overwrite                                          replace a finished run dir's record (entry)
    checkpoint_every keep_checkpoint                   checkpoints in the run dir (wcntk.run.checkpoint)
    wandb.*                                            =  WandbConfig

Defaults are the library classes' own. A leaf of the run layer: it imports the library's
config dataclasses (wcntk.core.models, wcntk.training.data, wcntk.training.config), never the
Trainer, the records or the entry.

A run's config takes three forms on its way to the Trainer: the composed DictConfig (Hydra),
this RunConfig (`run_config`: keys and types, no settings checked), and the library configs
(`RunConfig.library_configs()`) the Trainer gets. `RunConfig.validate` runs every check that
needs no data, once per run (it marks the object validated), and raises ValueError with one line.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum, StrEnum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ..core.layers import AttentionLogits, ModelConfig, ModelKind, Parameterization
from ..training.config import CudaGraphs, OptimizerConfig, Precision, TrainConfig, TwinSpace, validate_all
from ..training.data import DataConfig
from .capacity import PRECISION_BYTES, check_integers, check_memory, kernel_rows


class WandbMode(StrEnum):
    """`wandb.mode`."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


WANDB_PROJECT_FORBIDDEN = "/\\#?%:"  # W&B rejects these; ".." would also escape a local folder


@dataclass
class ModelGroup:
    """The `model.*` keys (group `model=mlp|cnn|resnet|transformer|custom`): which network, its
    init scales σ_w, σ_b, the transformer's settings, and a custom network's factory and the
    extra arguments it gets (`model.kwargs`, an open dict: `model.kwargs.heads=2` needs no `+`)."""

    kind: ModelKind = ModelConfig.kind
    w_std: float = ModelConfig.w_std
    b_std: float = ModelConfig.b_std
    heads: int = ModelConfig.heads
    patch_size: int | None = ModelConfig.patch_size
    attention_logits: AttentionLogits = ModelConfig.attention_logits
    target: str | None = ModelConfig.target
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class WandbConfig:
    """Where the run's W&B record goes; `init_timeout` bounds an online wandb.init (seconds)
    before the run goes on offline."""

    mode: WandbMode = WandbMode.offline
    project: str = "wcntk"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None            # null: w<width>-d<depth>-<act>-<param>-<opt>-s<seed>
    init_timeout: float = 10.0

    def validate(self) -> None:
        if self.mode not in list(WandbMode):
            raise ValueError(f"wandb.mode must be one of {', '.join(WandbMode)}, got {self.mode!r}")
        bad = sorted(set(WANDB_PROJECT_FORBIDDEN) & set(self.project))
        if not self.project or bad or ".." in self.project or len(self.project) > 128:
            raise ValueError(f"wandb.project={self.project!r} is not a valid W&B project name (1 to 128 "
                             f"characters, none of {' '.join(WANDB_PROJECT_FORBIDDEN)}, no '..')")
        if not all(1 <= len(tag) <= 64 for tag in self.tags):
            raise ValueError(f"wandb.tags must each have 1 to 64 characters, got {list(self.tags)}")
        if not (math.isfinite(self.init_timeout) and self.init_timeout > 0):
            raise ValueError(f"wandb.init_timeout must be finite seconds > 0, got {self.init_timeout}")


@dataclass
class RunConfig:
    """Everything one run of run.py is: see the module docstring for where each key goes."""

    dataset: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    model: ModelGroup = field(default_factory=ModelGroup)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    width: int = ModelConfig.width     # hidden units (MLP) or channels (CNN)
    depth: int = ModelConfig.depth     # hidden layers
    activation: str = ModelConfig.activation
    parameterization: Parameterization = ModelConfig.parameterization
    seed: int = TrainConfig.seed
    steps: int = TrainConfig.steps
    loss: str = TrainConfig.loss
    precision: Precision = TrainConfig.precision
    device: str = TrainConfig.device
    log_every: int = TrainConfig.log_every
    corr_every: int | None = TrainConfig.corr_every
    probes: int = TrainConfig.probes
    progress: bool = TrainConfig.progress
    cuda_graphs: CudaGraphs = TrainConfig.cuda_graphs
    diverge_factor: float = TrainConfig.diverge_factor
    twin_space: TwinSpace = TrainConfig.twin_space
    threads: int | None = None         # CPU threads per job (null: torch's default; joblib: cores/n_jobs)
    overwrite: bool = False            # hydra.run.dir holding a finished record: move it to superseded/
    checkpoint_every: str | None = "10min"  # steps (500) or time (30s, 10min, 2h) between checkpoints
    keep_checkpoint: bool = False      # keep checkpoint.pt once the run is ok (default: removed)

    def model_config(self) -> ModelConfig:
        """Each ModelConfig field from model.* (ModelGroup) or, for width, depth, activation and
        parameterization, from the top level."""
        group = {f.name for f in fields(ModelGroup)}
        values = {f.name: getattr(self.model if f.name in group else self, f.name)
                  for f in fields(ModelConfig)}
        return ModelConfig(**values | {"kwargs": dict(self.model.kwargs)})

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def library_configs(self) -> tuple[ModelConfig, DataConfig, OptimizerConfig, TrainConfig]:
        return self.model_config(), self.dataset, self.optimizer, self.train_config()

    @property
    def validated(self) -> bool:
        """Whether `validate` passed on this object (the run then validates it no more)."""
        return self.__dict__.get("_validated", False)

    def validate(self) -> None:
        """Every check that needs no data; ValueError with one line. First, every integer fits
        torch's int64; last, the model fits the device's free memory (wcntk.run.capacity)."""
        check_integers(asdict(self))
        model, data, opt, train = self.library_configs()
        validate_all(model, data, opt, train)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        checkpoint_interval(self.checkpoint_every)
        self.wandb.validate()
        check_memory(model, data, PRECISION_BYTES[train.precision], train.device,
                     kernel_rows(data, opt.name, train.twin_space, train.steps))
        self.__dict__["_validated"] = True

    def recorded(self) -> dict[str, Any]:
        """The config as summary.json's `config` (plain values, nested as .hydra/config.yaml;
        the closed choices as their strings)."""
        return asdict(self, dict_factory=lambda items: {k: plain(v) for k, v in items})


CHECKPOINT_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def checkpoint_interval(every: str | int | None) -> tuple[str, float] | None:
    """`checkpoint_every` as ("steps", n) or ("seconds", s); None when periodic checkpoints are off
    (null). ValueError (one line) for anything else."""
    if every is None:
        return None
    text = str(every).strip()
    if text.isdigit() and int(text) > 0:
        return "steps", int(text)
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*(s|min|h)", text)
    if match and float(match[1]) > 0:
        return "seconds", float(match[1]) * CHECKPOINT_UNITS[match[2]]
    raise ValueError(f"checkpoint_every must be a number of steps (500), a time (30s, 10min, 2h) or "
                     f"null (only on signals), got {every!r}")


def plain(value: Any) -> Any:
    """An Enum member as its value (the string the command line gives); anything else as it is."""
    return value.value if isinstance(value, Enum) else value


def schema() -> DictConfig:
    """RunConfig as an OmegaConf node, with `model.kwargs` open to new keys."""
    node = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(node.model.kwargs, False)
    return node


def config_keys(node: Any = RunConfig, prefix: str = "") -> Iterator[str]:
    """Every dotted key of the schema, nodes (`optimizer`) and leaves (`optimizer.lr`)."""
    for f in fields(node):
        yield prefix + f.name
        value = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(value):
            yield from config_keys(type(value), f"{prefix}{f.name}.")


def unknown_key_message(key: str, extra: tuple[str, ...] = ()) -> str:
    """`unknown config key 'widht' (did you mean 'width'?)`: the nearest schema key (or one of
    `extra`, e.g. config group names); under a known node (`optimizer.lrr`), its keys only."""
    keys = [*config_keys(), *extra]
    parent, _, leaf = key.rpartition(".")
    if parent not in keys:
        near = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        return f"unknown config key {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    leaves = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    near = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.6)
    hint = f"did you mean '{parent}.{near[0]}'?" if near else f"{parent} has {', '.join(leaves)}"
    return f"unknown config key {key!r} ({hint})"


def one_line(err: BaseException) -> str:
    """An OmegaConf/Hydra error message (multi-line, maybe with an OmegaConf cause) as one line:
    its lines joined, the key it is about kept, hints to set HYDRA_FULL_ERROR dropped; a closed
    choice's `invalid value 'foo', expected one of gd, sgd, momentum, adam`."""
    lines = str(err).splitlines()
    if isinstance(err.__cause__, OmegaConfBaseException):
        lines += str(err.__cause__).splitlines()
    kept: list[str] = []
    key = None
    for line in filter(None, (ln.strip() for ln in lines)):
        if line.startswith("Config search path"):  # Hydra's list of where it looked
            break
        if line.startswith("full_key:"):
            key = key or line.split(":", 1)[1].strip()
        elif line not in kept and not line.startswith(("object_type=", "reference_type=", "Set the env")):
            kept.append(line)
    text = " ".join(kept) or type(err).__name__
    choice = re.search(r"Invalid value ('.*?'), expected one of \[(.*?)\]", text)
    if choice and key:
        return f"{key}: invalid value {choice[1]}, expected one of {choice[2]}"
    return f"{key}: {text}" if key and key not in text else text


def run_config(cfg: Mapping[str, Any] | DictConfig) -> RunConfig:
    """The typed RunConfig of a config (a plain dict, or the DictConfig Hydra composed; keys
    left out take their defaults). Unknown keys, wrong types and unresolvable interpolations
    raise ValueError (one line); the settings are not checked (RunConfig.validate)."""
    try:
        merged = OmegaConf.merge(schema(), cfg)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        raise ValueError(unknown_key_message(err.full_key) if err.full_key else one_line(err)) from None
    except OmegaConfBaseException as err:
        raise ValueError(one_line(err)) from None


def library_configs(cfg: Mapping[str, Any]) -> tuple[ModelConfig, DataConfig, OptimizerConfig, TrainConfig]:
    """(ModelConfig, DataConfig, OptimizerConfig, TrainConfig) of a resolved config dict."""
    return run_config(cfg).library_configs()


def validate_config(cfg: Mapping[str, Any] | DictConfig | RunConfig) -> RunConfig:
    """The validated RunConfig of `cfg`: ValueError (one readable line) for any bad key or
    setting, before any work. A RunConfig already validated is returned as it is."""
    run = cfg if isinstance(cfg, RunConfig) else run_config(cfg)
    if not run.validated:
        run.validate()
    return run

"""Typed schema of run.py's configuration (registered in Hydra's ConfigStore by
run.py; plain dataclasses here so the library never imports Hydra), and its
conversion to the library's own config objects."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .data import DataConfig
from .models import ModelConfig
from .trainer import OptimizerConfig, TrainConfig


@dataclass
class DatasetSchema:
    name: str = "mnist"
    n_train: int = 256
    n_test: int = 256
    classes: Optional[List[int]] = None
    source: str = "auto"
    data_dir: str = "~/.cache/wcntk"
    download: bool = True
    grayscale: bool = False
    standardize: bool = True
    input_dim: int = 32
    n_classes: int = 10
    teacher_width: int = 64


@dataclass
class OptimizerSchema:
    name: str = "gd"
    lr: float = 1.0
    batch_size: Optional[int] = None
    lr_width_exponent: float = 0.0
    width_ref: int = 1024
    momentum: float = 0.9
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ModelSchema:
    kind: str = "mlp"
    w_std: float = 1.0
    b_std: float = 0.05


@dataclass
class WandbSchema:
    mode: str = "offline"
    project: str = "wcntk"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    name: Optional[str] = None


@dataclass
class RunSchema:
    dataset: DatasetSchema = field(default_factory=DatasetSchema)
    optimizer: OptimizerSchema = field(default_factory=OptimizerSchema)
    model: ModelSchema = field(default_factory=ModelSchema)
    wandb: WandbSchema = field(default_factory=WandbSchema)
    width: int = 1024
    depth: int = 1
    activation: str = "relu"
    parameterization: str = "ntk"
    seed: int = 0
    steps: int = 1000
    loss: str = "mse"
    precision: str = "float32"
    device: str = "auto"
    log_every: int = 25
    corr_every: Optional[int] = None
    probes: int = 32
    progress: bool = True
    threads: Optional[int] = None


def library_configs(cfg: Dict[str, Any]):
    """(ModelConfig, DataConfig, OptimizerConfig, TrainConfig) from the resolved config dict."""
    d, o, m = cfg["dataset"], cfg["optimizer"], cfg["model"]
    model = ModelConfig(kind=m["kind"], width=cfg["width"], depth=cfg["depth"],
                        activation=cfg["activation"], parameterization=cfg["parameterization"],
                        w_std=m["w_std"], b_std=m["b_std"])
    data = DataConfig(**{**d, "classes": tuple(d["classes"]) if d["classes"] is not None else None})
    opt = OptimizerConfig(**{**o, "betas": tuple(o["betas"])})
    train = TrainConfig(steps=cfg["steps"], loss=cfg["loss"], precision=cfg["precision"],
                        device=cfg["device"], seed=cfg["seed"], log_every=cfg["log_every"],
                        corr_every=cfg["corr_every"], probes=cfg["probes"], progress=cfg["progress"])
    return model, data, opt, train


def essentials(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The config keys summary.json and the report group by."""
    d, o = cfg["dataset"], cfg["optimizer"]
    return {"width": cfg["width"], "depth": cfg["depth"], "activation": cfg["activation"],
            "parameterization": cfg["parameterization"], "dataset": d["name"], "model": cfg["model"]["kind"],
            "optimizer": o["name"], "lr": o["lr"], "lr_width_exponent": o["lr_width_exponent"],
            "width_ref": o["width_ref"], "batch_size": o["batch_size"], "loss": cfg["loss"],
            "steps": cfg["steps"], "seed": cfg["seed"], "precision": cfg["precision"],
            "n_train": d["n_train"], "n_test": d["n_test"],
            "classes": d["classes"]}

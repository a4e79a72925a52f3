"""Train a network and its linearized twin side by side: `python run.py width=4096`.

Thin Hydra entry point: composes conf/, hands the resolved config to
wcntk.job.run_job, and turns bad settings and divergence into one-line errors.
"""
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from wcntk.data import DatasetUnavailable
from wcntk.job import run_job, validate_config
from wcntk.schema import RunSchema

ConfigStore.instance().store(name="run_schema", node=RunSchema)

# Launchers that start fresh interpreters (submitit_local, SLURM) unpickle the task by importing
# wcntk: make the repository importable there whatever the working directory.
_ROOT = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        validate_config(config)
    except ValueError as err:
        if multirun:
            raise
        sys.exit(f"wcntk: error: {err}")
    try:
        summary = run_job(config, hydra_cfg.runtime.output_dir, resume=multirun)
    except DatasetUnavailable as err:
        if multirun:
            raise
        sys.exit(f"wcntk: error: {err}")
    if summary["status"] != "ok":
        print(f"wcntk: {summary['message']}", file=sys.stderr)
        if not multirun:
            sys.exit(1)


if __name__ == "__main__":
    main()

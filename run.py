"""Train a network and its linearized twin side by side: `python run.py width=4096`.

Thin Hydra entry point: composes conf/, hands the resolved config to
wcntk.job.run_job, and turns bad settings and divergence into one-line errors.
"""
import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine spinning
# threads made a training step up to 6x slower (README, Performance). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from wcntk.data import DatasetUnavailable  # noqa: E402
from wcntk.job import run_job, validate_config  # noqa: E402
from wcntk.schema import RunSchema  # noqa: E402

ConfigStore.instance().store(name="run_schema", node=RunSchema)

# Launchers that start fresh interpreters (submitit_local, SLURM) unpickle the task by importing
# wcntk: make the repository importable there whatever the working directory.
_ROOT = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


def torch_threads(requested, launcher) -> int | None:
    """Threads per job: `threads` if set; under the joblib launcher the cores divided among
    its n_jobs parallel jobs (-1 = one job per core); otherwise torch's default."""
    if requested is not None:
        return requested
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else max(1, n_jobs)))


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
    threads = torch_threads(config["threads"], hydra_cfg.launcher if multirun else None)
    if threads is not None:
        torch.set_num_threads(threads)
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

"""`hydra/sweeper=arms`: a sweep made of per-network arms, each with its own settings and width
grid (wcntk.run.arms); the jobs go to whichever launcher the command line names, as with
Hydra's basic sweeper (joblib, submitit, SLURM).

    hydra:
      sweeper:
        params: {seed: 0,1,2}                   # crossed with every arm
        arms:                                   # name -> keys; a list is swept within the arm
          mlp: {optimizer: {lr: 1.0}, width: [1024, 256, 64]}
          transformer: {optimizer: {lr: 0.3}, width: [128, 64, 32]}
        other: {width: [64, 32, 16]}            # the settings of an arm added by model=X
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from wcntk.run.arms import arm_jobs


@dataclass
class ArmSweeperConf:
    _target_: str = "hydra_plugins.wcntk_sweeper.arm_sweeper.ArmSweeper"
    max_batch_size: int | None = None
    params: dict[str, Any] | None = None
    arms: dict[str, Any] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="arms", node=ArmSweeperConf, provider="wcntk")


class ArmSweeper(Sweeper):
    """A sweeper whose job list is the union of the arms' grids (wcntk.run.arms.arm_jobs), arm by
    arm in the preset's order, then the arms the command line's model=… adds; launched in batches
    of max_batch_size (all at once by default), as Hydra's basic sweeper does, on Hydra's public
    Sweeper API."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, Any] | None = None,
                 arms: dict[str, Any] | None = None, other: dict[str, Any] | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = _plain(params) or {}
        self.arms = _plain(arms) or {}
        self.other = _plain(other) or {}

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.hydra_context = hydra_context   # validate_batch_is_legal composes each job with it
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        grids = arm_jobs(self.arms, self.other, self.params, arguments)
        jobs = [job for grid in grids.values() for job in grid]
        size = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else max(len(jobs), 1)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = []
        for first in range(0, len(jobs), size):
            batch = jobs[first:first + size]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first)
            for r in results:
                _ = r.return_value   # a job's exception ends the sweep as in Hydra's basic sweeper
            returns.append(results)
        return returns


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

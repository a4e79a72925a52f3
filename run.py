"""Train a network and its linearized twin side by side: `python run.py width=4096`.

The Hydra entry point, and only that: the command line's checks, the run itself and the exit
codes live in wcntk.run.entry (which see). The schema is registered in Hydra's ConfigStore as
this module loads, before Hydra composes anything; from there it reaches the joblib/submitit
workers, which compose each job's config and name its dir.
"""
import os

# Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine spinning
# threads made a training step up to 6x slower (README, Performance). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The launchers' job processes (joblib workers, submitit, SLURM jobs, which start
# `python -m submitit.core._submit` in the submitting shell's environment) import wcntk by name:
# this checkout goes first on their path, so they run the code this command runs, wherever it was
# started from and whichever checkout an editable install points at.
_checkout = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != _checkout:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_checkout, os.environ.get("PYTHONPATH")]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from wcntk.run import entry  # noqa: E402
from wcntk.run.cli_checks import register_configs  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    entry.main(cfg)


if __name__ == "__main__":
    entry.cli(main)

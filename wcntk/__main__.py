"""Train a network and its linearized twin side by side: `python run.py width=4096` in a checkout,
`python -m wcntk width=4096` (or the `wcntk` command) wherever the package is installed.

The Hydra entry point, and only that: Hydra parses the command line and composes the config,
wcntk.run.cli_checks.CommandLineCheck (a callback conf/config.yaml names) checks it before any
directory exists, and wcntk.run.entry runs the job through run_job and maps how it ended to an
exit code. The configs are the package's `conf` (the checkout's top-level conf/, shipped inside
the package). The schema is registered in Hydra's ConfigStore as this module loads, before Hydra
composes anything; from there it reaches the joblib/submitit workers, which compose each job's
config and name its dir.
"""
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared or oversubscribed machine spinning
# threads made a training step up to 6x slower (docs/performance.md). Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from wcntk.run import entry  # noqa: E402
from wcntk.run.cli_checks import CONF, register_configs  # noqa: E402

register_configs()


# An absolute path: given a relative one, Hydra would look for a Python module `wcntk.conf`.
@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> None:
    entry.main(cfg)


def cli(argv: list[str] | None = None) -> None:
    """The `wcntk` command and `python -m wcntk` (`argv`: the arguments, default sys.argv[1:])."""
    if argv is not None:
        sys.argv[1:] = argv
    entry.cli(main)


if __name__ == "__main__":
    cli()

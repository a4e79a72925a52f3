"""wcntk's SLURM launcher as a Hydra plugin (conf/hydra/launcher/slurm.yaml's `_target_`): Hydra
instantiates launchers only from the `hydra_plugins` namespace; the launcher itself is
wcntk.run.launcher.SweepLauncher."""
from wcntk.run.launcher import SweepLauncher


class SlurmLauncher(SweepLauncher):
    """wcntk.run.launcher.SweepLauncher, under the name Hydra accepts."""

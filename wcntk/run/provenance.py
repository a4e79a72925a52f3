"""Where a run's numbers came from: code version, library versions, machine, start time
(summary.json's `provenance`, also in the W&B config)."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

# The package's own directory: git finds the checkout it lives in, if any (not the working
# directory: runs start from anywhere).
_PACKAGE_DIR = Path(str(files("wcntk")))


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def checkout_root() -> Path | None:
    """The git checkout wcntk is imported from: the work tree that tracks the package's own
    files; None for an installed package (site-packages inside some other repository included),
    an exported tarball, or no git."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    return Path(top)


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of checkout_root(); (None, None) outside one.
    dirty: a tracked file differs from the commit (untracked files do not count)."""
    if checkout_root() is None:
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else status != "")


def wcntk_version() -> str | None:
    """The installed distribution's version (pyproject.toml); None when wcntk is not installed."""
    try:
        return metadata.version("wcntk")
    except metadata.PackageNotFoundError:
        return None


# Set (by run.py, through hydra.job.env_set) to one id per sweep launch, in every job it runs.
LAUNCH_ENV = "WCNTK_LAUNCH_ID"


def provenance() -> dict[str, Any]:
    """git_commit, git_dirty, wcntk, torch, cuda (torch's CUDA build, null for CPU builds),
    torch_threads (torch's CPU threads: another count changes numbers at round-off), python, host,
    pid, started_at (ISO 8601, UTC), launch (the sweep launch's id, $WCNTK_LAUNCH_ID; null for a
    single run)."""
    import torch  # here, not at import: the record readers (report, .wandb reader) need no torch

    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "wcntk": wcntk_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "host": socket.gethostname(),
            "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "launch": os.environ.get(LAUNCH_ENV)}

"""Where a run's numbers came from: code version, library versions, machine, start time
(summary.json's `provenance`, also in the W&B config)."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# The checkout wcntk was imported from (not the working directory: runs start from anywhere).
_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout wcntk lives in; (None, None) when wcntk is not in a git
    checkout of its own (installed package, exported tarball) or git is missing.
    dirty: a tracked file differs from the commit (untracked files do not count)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != _REPO:
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
    python, host, pid, started_at (ISO 8601, UTC), launch (the sweep launch's id, $WCNTK_LAUNCH_ID;
    null for a single run)."""
    import torch  # here, not at import: the record readers (report, .wandb reader) need no torch

    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "wcntk": wcntk_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "host": socket.gethostname(),
            "pid": os.getpid(), "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "launch": os.environ.get(LAUNCH_ENV)}

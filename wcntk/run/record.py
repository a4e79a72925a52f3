"""What a run directory's `summary.json` says, for everyone who reads it (runner, resume,
report, dashboard).

Layout of summary.json::

    status         running | ok | diverged | failed | interrupted
    message        one line: why the run ended that way (null for ok)
    diverged_step  step of the first non-finite loss (diverged only)
    last_step      last step whose metrics were logged (null before step 0 was logged)
    config         the full resolved config, nested exactly as .hydra/config.yaml; for a job
                   whose settings failed validation, the raw composed config it was asked to run
    config_validated  true, or false when `config` is that raw, unvalidated config
    facts          what the run resolved at run time: effective_lr, n_params, data_source, device,
                   init_scheme (how θ₀ was drawn, wcntk.core.init.INIT_SCHEME)
    provenance     git_commit, git_dirty, wcntk, torch, cuda, python, host, pid, started_at,
                   launch (the id of the sweep launch that ran it; null for a single run)
    initial        metrics logged at step 0;  final: at the last logged step
    wall_time_s

Bookkeeping keys are config keys that never change a run's numbers: they stay out of sweep
job-dir names and are never a "setting" of the report (which also ignores width and seed,
the axes it fits along).
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

STATUSES = ("running", "ok", "diverged", "failed", "interrupted")

BOOKKEEPING_KEYS: tuple[str, ...] = (
    "sweep", "progress", "threads", "device", "cuda_graphs", "dataset.data_dir", "dataset.download",
    "wandb.mode", "wandb.project", "wandb.entity", "wandb.group", "wandb.tags", "wandb.name",
    "wandb.init_timeout", "overwrite",
)


def is_bookkeeping(key: str) -> bool:
    """True for a dotted config key (or a key below one) that never changes the numbers."""
    return any(key == k or key.startswith(k + ".") for k in BOOKKEEPING_KEYS)


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) pairs of a nested config dict; lists are leaves."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def effective_status(summary: Mapping[str, Any], lock_held: bool | None = None) -> str:
    """The summary's status, except a `running` one whose process is gone (SIGKILL, crash):
    "stale". `lock_held` is whether the run dir's writer lock is held (wcntk.run.rundir.lock_is_held):
    a free lock means stale wherever the process ran; without a lock file (None) only a process
    on this host can be checked, elsewhere `running` is kept."""
    status = summary.get("status") or "unknown"
    if status != "running" or lock_held:
        return status
    if lock_held is False:
        return "stale"
    prov: dict[str, Any] = summary.get("provenance") or {}
    pid, host = prov.get("pid"), prov.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not _process_alive(pid):
        return "stale"
    return status


def is_record(data: Any) -> bool:
    """Whether parsed JSON has summary.json's layout where readers rely on it: an object with a
    known `status`, `config`/`initial`/`final` objects (when present), and an integer width and
    seed in a validated config."""
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        return False
    if not all(isinstance(data.get(key, {}), dict) for key in ("config", "initial", "final")):
        return False
    config = data.get("config", {})
    return data.get("config_validated") is False or not config or all(
        type(config.get(key)) is int for key in ("width", "seed"))


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """run_dir's summary.json, or None if there is none, it cannot be read, or it is not a
    record (is_record)."""
    try:
        data = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if is_record(data) else None

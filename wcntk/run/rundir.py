"""Who may write a run directory, and what becomes of a record that a new run replaces.

One writer per run dir: a run (or sweep job) writes its dir only while it holds an exclusive
`flock` on `<run dir>/.lock`, from before it reads the old record until its own is written.
Taking the lock removes the temp files an atomic write killed midway left
(`.summary.json.<hex>.tmp`, `.checkpoint.pt.<hex>.tmp`): no writer holds them then.
The kernel drops the lock when the process ends, SIGKILL included, so a lock is never stale;
a record that says `running` while its lock is free was left by a killed process. A process
that finds the lock held leaves the dir alone (the job is "running elsewhere").

A record is never deleted: one that a new run replaces (a changed experiment on resume, or
`overwrite=true`) is moved, with its metrics and W&B files, to
`<run dir>/superseded/<UTC time>/`; the new run then gets a W&B run id of its own.
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .record import CHECKPOINT_FILE, SUMMARY_FILE, flatten, is_bookkeeping

NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def natural_key(text: str) -> list:
    """Sort key of a run dir's name or path with its numbers compared as numbers (width=16
    before width=128, lr=0.3 before lr=1.0): sweep job dirs in the order of their values."""
    return [(0, float(t), "") if re.fullmatch(NUMBER, t) else (1, 0.0, t)
            for t in re.split(f"({NUMBER})", text) if t]


LOCK_FILE = ".lock"
SUPERSEDED_DIR = "superseded"
# What a run writes into its dir (besides Hydra's .hydra/ and job log): moved aside together.
RECORD_FILES = (SUMMARY_FILE, "metrics.csv", "traceback.txt", "wandb_run_id", "wandb", CHECKPOINT_FILE)


class RunningElsewhere(RuntimeError):
    """Another process holds the run dir's lock; the message names it (pid, host)."""


def _holder(run_dir: Path) -> str:
    try:
        text = (run_dir / LOCK_FILE).read_text().split()
    except OSError:
        text = []
    return f"pid {text[0]} on {text[1]}" if len(text) == 2 else "another process"


_held: set[Path] = set()  # run dirs whose lock this process holds


@contextmanager
def writer_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `<run_dir>/.lock` exclusively for the block (creating the dir and the lock file);
    raise RunningElsewhere at once if another process holds it. The lock file says who holds it:
    `<pid> <host>`. Re-entrant within a process (an inner block for a dir already held does
    nothing). A reader that only probes the lock (lock_is_held) holds it for an instant: a few
    tries 50 ms apart tell it from a writer."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        for attempt in range(5):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 4:
                    raise RunningElsewhere(f"{run_dir} is being written by {_holder(run_dir)}") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        _held.add(run_dir)
        remove_temp_files(run_dir)
        yield
    finally:
        _held.discard(run_dir)
        os.close(fd)  # also releases the lock


def remove_temp_files(run_dir: Path) -> None:
    """The temp files of the atomic writes (summary.json, checkpoint.pt) a killed writer left."""
    for name in (SUMMARY_FILE, CHECKPOINT_FILE):
        for tmp in run_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def lock_is_held(run_dir: str | Path) -> bool | None:
    """True while a process holds run_dir's lock, False when it is free, None when the dir has
    no lock file (a record written before locks, or no run yet)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every key whose value differs between two nested
    configs (a key the new config lacks has the value None there). Left out: bookkeeping keys,
    which never change a run's numbers (wcntk.run.record.BOOKKEEPING_KEYS), and keys the old record
    lacks because it predates them (a key is added with a default that keeps the old behaviour)."""
    before, after = dict(flatten(old)), dict(flatten(new))
    return {key: (before.get(key), after.get(key)) for key in sorted(before)
            if not is_bookkeeping(key) and before.get(key) != after.get(key)}


def finished_run_message(run_dir: str | Path, status: str) -> str:
    """The one line refusing a run dir that holds a finished record (overwrite=true not given)."""
    return (f"{run_dir} already holds a finished run (status {status}); choose another "
            f"hydra.run.dir, or add overwrite=true to move its record to {Path(run_dir) / SUPERSEDED_DIR}/")


def supersede(run_dir: str | Path, names: tuple[str, ...] = RECORD_FILES) -> Path | None:
    """Move run_dir's record files (RECORD_FILES, or `names`) to `run_dir/superseded/<UTC time>/`
    and return that dir; None when there was nothing to move. Call it holding the writer lock."""
    run_dir = Path(run_dir)
    present = [name for name in names if (run_dir / name).exists()]
    if not present:
        return None
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S-%f")
    target = run_dir / SUPERSEDED_DIR / stamp
    target.mkdir(parents=True)
    for name in present:
        os.replace(run_dir / name, target / name)
    return target

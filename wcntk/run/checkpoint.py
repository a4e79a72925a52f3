"""A run's checkpoint, `<run dir>/checkpoint.pt`: what the run needs to continue where it stopped
and end with the record and metrics.csv of an uninterrupted run (on the CPU, same dtype: bit for
bit).

When (Checkpointer, the boundary hook of Trainer.run, i.e. between two steps, never inside one):
on SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 (the run defers them while it trains: the step in progress
ends, or a measurement in progress stops at its next module call (wcntk.run.lifecycle.signal_pending,
Trainer.run's `stop`) and its row is measured again on resume; the checkpoint is written, then
Interrupted records `interrupted`), and every
`checkpoint_every` (a number of steps, or a time: `30s`, `10min`, `2h`; null: on signals only).
A timed interval also waits 49× the last write's duration, so checkpoints never take more than
2 % of a run's time. Re-running the run (same dir, same config) continues from it
(wcntk.run.job.train_and_record); a run that ends ok (or diverged: it would diverge again) removes
it unless `keep_checkpoint=true`.

Format: one file, written to a temp file in the run dir, fsync'ed, renamed over the old one
(and the dir fsync'ed), so a kill at any moment leaves the old checkpoint or the new one:

    WCNTK-CHECKPOINT 2 <sha256 of everything after this line: header line and payload>\\n
    <header: one line of JSON>\\n
    <payload: torch.save of Trainer.state_dict(step)>

header: `step`, `written_at` (UTC), `config` (the run's config as summary.json holds it: a
checkpoint of another config, by resume's rule wcntk.run.rundir.config_changes, is set aside),
`recorder` (RunRecorder.recorder_state: initial/final/last_step, metrics.csv's size at the
checkpoint, resumed_from, wall_time_s), `wandb_run_id`, `torch_threads` (a resume with another
count says so: numbers may differ at round-off) and `payload_bytes`. The header is JSON, so
`head -2 checkpoint.pt` tells what a checkpoint is; the checksum covers it, so a changed digit
in it is refused like a damaged payload. The payload holds θ₀'s fingerprint
(Trainer.state_dict): a resume whose rebuilt θ₀ differs is refused (NotReproducible).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..training.progress import say
from ..training.trainer import Trainer
from .config import checkpoint_interval
from .lifecycle import Interrupted, take_pending
from .record import CHECKPOINT_FILE
from .rundir import config_changes, supersede
from .tracking import WANDB_ID_FILE, RunRecorder, csv_prefix_problem

MAGIC = b"WCNTK-CHECKPOINT 2 "
TIME_SHARE = 0.02   # a timed checkpoint_every never spends more than this share of the run writing


class BadCheckpoint(ValueError):
    """A checkpoint file that cannot be used; the message says why."""


@dataclass
class Checkpoint:
    header: dict[str, Any]
    state: dict[str, Any]        # Trainer.state_dict

    @property
    def step(self) -> int:
        return self.header["step"]

    def recorder_resume(self) -> dict[str, Any]:
        """RunRecorder's `resume`: the recorder state, with the checkpoint's step."""
        return {**self.header["recorder"], "step": self.step}


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def write_checkpoint(run_dir: str | Path, header: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """Write `state` (Trainer.state_dict) with `header` to run_dir/checkpoint.pt atomically."""
    path = checkpoint_path(run_dir)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    payload = buf.getbuffer()
    head = {**header, "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch_threads": torch.get_num_threads(), "payload_bytes": len(payload)}
    head_line = json.dumps(head).encode() + b"\n"
    digest = hashlib.sha256(head_line)
    digest.update(payload)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + digest.hexdigest().encode() + b"\n")
            fh.write(head_line)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """A checkpoint's header, unchecked (cheap: the payload is not read). BadCheckpoint if it has none."""
    with open(path, "rb") as fh:
        _checksum(fh.readline())
        return _header(fh.readline())


def _checksum(first_line: bytes) -> str:
    """The sha256 the first line names; BadCheckpoint if it is not a WCNTK-CHECKPOINT 2 line."""
    if not first_line.startswith(MAGIC):
        old = first_line.startswith(b"WCNTK-CHECKPOINT ")
        raise BadCheckpoint("is of an older format (its header is outside its checksum)" if old
                            else "is not a wcntk checkpoint (no WCNTK-CHECKPOINT 2 line)")
    return first_line[len(MAGIC):].strip().decode(errors="replace")


def _header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        raise BadCheckpoint("has an unreadable header") from None
    if not isinstance(header, dict) or not all(k in header for k in ("step", "config", "recorder")):
        raise BadCheckpoint("has an incomplete header")
    return header


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint in `path`, its header and payload checked against the first line's SHA-256
    and the header's payload size; BadCheckpoint (why) otherwise."""
    try:
        with open(path, "rb") as fh:
            checksum = _checksum(fh.readline())
            head_line = fh.readline()
            payload = fh.read()
    except OSError as err:
        raise BadCheckpoint(f"cannot be read ({type(err).__name__}: {err})") from None
    digest = hashlib.sha256(head_line)
    digest.update(payload)
    if digest.hexdigest() != checksum:
        raise BadCheckpoint("fails its checksum (truncated or damaged)")
    header = _header(head_line)
    if len(payload) != header.get("payload_bytes"):
        raise BadCheckpoint("fails its checksum (truncated or damaged)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch cannot read is a bad checkpoint
        raise BadCheckpoint(f"cannot be loaded ({type(err).__name__})") from None
    return Checkpoint(header, state)


def set_aside(run_dir: str | Path, why: str, label: str | None = None) -> None:
    """Move run_dir's checkpoint to superseded/<UTC time>/ with one line: the run starts from 0."""
    moved = supersede(run_dir, (CHECKPOINT_FILE,))
    say(f"{CHECKPOINT_FILE} {why}: moved to {moved}; the run starts from step 0", label)


def load_checkpoint(run_dir: str | Path, config: Mapping[str, Any], metric_names: Sequence[str],
                    label: str | None = None) -> Checkpoint | None:
    """run_dir's checkpoint if the run of `config` can continue from it, else None. A checkpoint
    that fails its checksum, belongs to another config (resume's rule), or whose metrics.csv no
    longer holds the rows it was taken after, is set aside with one line. A checkpoint written
    with another torch thread count says so in one line (numbers may differ at round-off)."""
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    try:
        ckpt = read_checkpoint(path)
        changes = config_changes(ckpt.header["config"], config)
        if changes:
            raise BadCheckpoint("is of another config (" + ", ".join(
                f"{key} {before!r} -> {after!r}" for key, (before, after) in changes.items()) + ")")
        rec = ckpt.header["recorder"]
        problem = csv_prefix_problem(run_dir / "metrics.csv", metric_names, rec["csv_bytes"],
                                     rec["last_step"])
        if problem:
            raise BadCheckpoint(f"cannot continue: {problem}")
    except BadCheckpoint as err:
        set_aside(run_dir, str(err), label)
        return None
    threads = ckpt.header.get("torch_threads")
    if threads is not None and threads != torch.get_num_threads():
        say(f"torch threads: {threads} when {CHECKPOINT_FILE} was written, {torch.get_num_threads()} now: "
            f"numbers may differ from an uninterrupted run at round-off (set threads={threads} to continue "
            f"as it ran)", label)
    return ckpt


def remove_checkpoint(run_dir: str | Path) -> None:
    checkpoint_path(run_dir).unlink(missing_ok=True)


class Checkpointer:
    """Trainer.run's boundary hook for a recorded run: at each boundary (t steps done, row t
    logged) a signal noted meanwhile (wcntk.run.lifecycle.take_pending) is answered with a
    checkpoint and Interrupted; otherwise a checkpoint is written when `checkpoint_every` is due.
    A write that fails (a full disk) says so in one line, once until a write succeeds again (one
    more line); the run goes on (on a signal: ends)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], trainer: Trainer,
                 recorder: RunRecorder, every: str | int | None, label: str | None = None):
        self.run_dir, self.config, self.trainer, self.recorder = Path(run_dir), config, trainer, recorder
        self.interval = checkpoint_interval(every)
        self.label = label
        self.last_time = time.monotonic()
        self.last_cost = 0.0
        self.writes, self.seconds = 0, 0.0     # checkpoints written by this attempt, and their time
        self.failing = False                    # the last write failed (and said so)

    def boundary(self, t: int) -> None:
        signum = take_pending()
        if signum is not None:
            self.save(t, f"on {signal.Signals(signum).name}")
            raise Interrupted(signum)
        if t < self.trainer.cfg.steps and t != self.trainer.start_step and self.due(t):
            self.save(t)

    def due(self, t: int) -> bool:
        if self.interval is None:
            return False
        kind, every = self.interval
        if kind == "steps":
            return t % every == 0
        return time.monotonic() - self.last_time >= max(every, self.last_cost / TIME_SHARE)

    def save(self, t: int, why: str = "") -> None:
        start = time.perf_counter()
        wandb_id = self.run_dir / WANDB_ID_FILE
        header = {"step": t, "config": self.config, "recorder": self.recorder.recorder_state(),
                  "wandb_run_id": wandb_id.read_text().strip() if wandb_id.is_file() else None}
        try:
            write_checkpoint(self.run_dir, header, self.trainer.state_dict(t))
        except OSError as err:
            if not self.failing:
                say(f"could not write the checkpoint at step {t}{' ' + why if why else ''} "
                    f"({type(err).__name__}: {err}); retrying at each interval, said again once one "
                    f"is written", self.label)
            self.failing = True
            self.last_time = time.monotonic()  # retried when the interval is next due, not at every step
            return
        if self.failing:
            say(f"checkpoint written again at step {t}", self.label)
            self.failing = False
        self.recorder.record.checkpoint_step = t
        self.last_cost = time.perf_counter() - start
        self.last_time = time.monotonic()
        self.writes += 1
        self.seconds += self.last_cost

"""A run directory's `summary.json`: its layout (Record), its statuses (Status, defined in the
leaf module wcntk.core.status and re-exported here), its one writer
(write_summary) and its one reader (load_record / read_record), for everyone who reads it:
the runner, resume, the sweep's table, the report and the dashboard.

Layout of summary.json (Record's fields)::

    status         running | ok | diverged | failed | interrupted (Status.written())
    message        one line: why the run ended that way (null for ok)
    diverged_step  step of the first non-finite loss (diverged only)
    last_step      last step whose metrics were logged (null before step 0 was logged)
    config         the full resolved config, nested exactly as .hydra/config.yaml; for a job
                   whose settings failed validation, the raw composed config it was asked to run
    config_validated  true, or false when `config` is that raw, unvalidated config
    facts          what the run resolved at run time: effective_lr, stable_lr (2/λ_max of the
                   initial NTK, MSE with gd/sgd), n_params (trainable) and n_frozen_params,
                   data_source, device, init_scheme (how θ₀ was drawn, wcntk.core.init.INIT_SCHEME),
                   n_unused_params and factory_arguments (model=custom: trainable entries no
                   gradient reaches, left out of θ; what its factory received)
    provenance     git_commit, git_dirty, wcntk, torch, cuda, python, host, pid, started_at,
                   launch (the id of the sweep launch that ran it; null for a single run)
    initial        metrics logged at step 0;  final: at the last logged step
    wall_time_s    seconds of training, summed over the attempts a resumed run took
    checkpoint_step  the step of the run dir's checkpoint.pt (null: none; wcntk.run.checkpoint)
    resumed_from   the steps this run was continued from, one per resume (empty: one attempt)

Keys a record of an older version lacks read as their defaults (Record.from_dict): records
written before `config_validated` existed read as validated. Status also holds words that are
never written: `stale` (a `running` record whose writer is gone, effective_status), `unreadable`
(a summary.json that is not a record, UnreadableRecord) and a sweep table's (wcntk.run.outcome).
W&B's run summary holds the initial values under INITIAL_PREFIX.

Bookkeeping keys are config keys that never change a run's numbers: they stay out of sweep
job-dir names and are never a "setting" of the report (which also ignores width and seed,
the axes it fits along).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.metric_registry import INITIAL
from ..core.status import Status
from .provenance import provenance

INITIAL_PREFIX = INITIAL   # initial (step 0) values next to the final ones (W&B's run summary)
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"   # wcntk.run.checkpoint

BOOKKEEPING_KEYS: tuple[str, ...] = (
    "sweep", "progress", "threads", "device", "cuda_graphs", "dataset.data_dir", "dataset.download",
    "wandb.mode", "wandb.project", "wandb.entity", "wandb.group", "wandb.tags", "wandb.name",
    "wandb.init_timeout", "overwrite", "checkpoint_every", "keep_checkpoint",
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


def effective_status(record: Record, lock_held: bool | None = None) -> Status:
    """The record's status, except a `running` one whose process is gone (SIGKILL, crash):
    Status.STALE. `lock_held` is whether the run dir's writer lock is held
    (wcntk.run.rundir.lock_is_held): a free lock means stale wherever the process ran; without a
    lock file (None) only a process on this host can be checked, elsewhere `running` is kept."""
    if record.status != Status.RUNNING or lock_held:
        return record.status
    if lock_held is False:
        return Status.STALE
    pid, host = record.provenance.get("pid"), record.provenance.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not _process_alive(pid):
        return Status.STALE
    return record.status


class UnreadableRecord(ValueError):
    """A summary.json that cannot be read, or is not a record; the message says why."""


@dataclass(slots=True)
class Record:
    """summary.json, typed (see the module docstring for each field): what a run, resume, the
    sweep's table and the report pass around. Slotted, so a misspelt field is an error:
    `record.stauts = ...` raises AttributeError, `Record(stauts=...)` TypeError; `status` is
    always a Status (a plain string given, also by assignment, is converted: ValueError for an
    unknown word)."""

    status: Status = Status.RUNNING
    message: str | None = None
    diverged_step: int | None = None
    last_step: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    config_validated: bool = True
    facts: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    initial: dict[str, float | None] = field(default_factory=dict)
    final: dict[str, float | None] = field(default_factory=dict)
    wall_time_s: float | None = None
    checkpoint_step: int | None = None
    resumed_from: list[int] = field(default_factory=list)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, Status(value) if name == "status" else value)

    @classmethod
    def new(cls, config: dict[str, Any], validated: bool = True) -> Record:
        """A `running` record of `config`, its provenance taken now."""
        return cls(config=config, config_validated=validated, provenance=provenance())

    @classmethod
    def from_dict(cls, data: Any) -> Record:
        """The Record of parsed JSON; UnreadableRecord (why) when it is not one (not_a_record).
        Keys a record of an older version lacks take their defaults, and so do keys it holds as
        null where the default is not null (facts, provenance, resumed_from, config_validated);
        unknown keys are dropped."""
        if (why := not_a_record(data)) is not None:
            raise UnreadableRecord(f"not a record ({why})")
        known = {f.name: f for f in fields(cls)}
        return cls(**{key: value for key, value in data.items()
                      if key in known and (value is not None or known[key].default is None)})

    def to_dict(self) -> dict[str, Any]:
        """The plain dict summary.json holds (status a Status, which JSON writes as its word)."""
        return asdict(self)


def not_a_record(data: Any) -> str | None:
    """Why parsed JSON lacks summary.json's layout where readers rely on it (None when it has it):
    an object with a known `status`, `initial`/`final` objects (when present), a non-empty
    `config` object (a status without the config it belongs to says nothing: resume could not
    tell whether it is this job's, the report could not place it), and an integer width and seed
    in a validated config."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if data.get("status") not in Status.written():
        return f"status {data.get('status')!r} is none of {', '.join(Status.written())}"
    for key in ("config", "initial", "final"):
        if not isinstance(data.get(key, {}), dict):
            return f"{key} is not an object"
    config = data.get("config")
    if not config:
        return "no config"
    if data.get("config_validated") is not False and not all(
            type(config.get(key)) is int for key in ("width", "seed")):
        return "a non-integer width or seed in its config"
    return None


def load_record(path: str | Path) -> Record:
    """The record in the file `path` (a summary.json); UnreadableRecord saying why it is none:
    it cannot be read, is not JSON, or is not a record (not_a_record). The reader of the run
    layer (resume, the sweep's table) and of the analysis (report, dashboard)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UnreadableRecord(f"{type(err).__name__}: {err}") from None
    return Record.from_dict(data)


def read_record(run_dir: str | Path) -> Record | None:
    """run_dir's record, or None if there is none or it is unreadable (load_record)."""
    try:
        return load_record(Path(run_dir) / SUMMARY_FILE)
    except UnreadableRecord:
        return None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, then rename over `path`. The file gets
    the mode any other new file gets (0666 less the umask: 0644 under umask 022), so colleagues
    who can read the other files can read it too."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_summary(run_dir: str | Path, record: Record, atomic: bool = True) -> None:
    """The one writer of summary.json: `record` atomically (write_json_atomic), or, with
    atomic=False, by rewriting the file in place (on a full disk, which has no room for a temp
    file)."""
    data = record.to_dict()
    path = Path(run_dir) / SUMMARY_FILE
    if atomic:
        write_json_atomic(path, data)
    else:
        path.write_text(json.dumps(data, indent=2, default=_json_default))

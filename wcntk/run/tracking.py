"""Where a run's numbers go: `metrics.csv` (row by row), `summary.json` (atomic, the layout of
wcntk.run.record) and a Weights & Biases run (offline by default; never blocks or stalls a run).
"""
from __future__ import annotations

import csv
import io
import math
import secrets
import shlex
import shutil
import signal
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..training.progress import say
from .lifecycle import Interrupted, deferred_signals, ended_status, exit_code
from .record import INITIAL_PREFIX, SUMMARY_FILE, Record, Status, write_summary

WANDB_ID_FILE = "wandb_run_id"


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN/inf: store them as null."""
    return value if math.isfinite(value) else None


class CsvLog:
    """metrics.csv: a header (`step` + metric names), then one row per logged step. Each row is
    formatted first and written with one unbuffered write; a failed write (disk full, a signal)
    is cut back to the last complete row before the error propagates."""

    def __init__(self, path: Path, metric_names: Sequence[str], keep: int | None = None):
        """A new file; or, with `keep` (a resumed run), the existing one cut back to its first
        `keep` bytes (its header and the rows up to the checkpoint: csv_prefix_problem checked
        them), appended to from there."""
        self.columns = ["step", *metric_names]
        if keep is None:
            self.fh = open(path, "wb", buffering=0)
            self.size = 0                  # bytes of complete rows
            self._write(self.columns)
        else:
            self.fh = open(path, "r+b", buffering=0)
            self.fh.truncate(keep)
            self.fh.seek(keep)
            self.size = keep

    def _write(self, values: Sequence[Any]) -> None:
        text = io.StringIO()
        csv.writer(text).writerow(values)
        raw = text.getvalue().encode()
        data = memoryview(raw)
        try:
            while data:
                data = data[self.fh.write(data):]
        except BaseException:
            try:
                self.fh.truncate(self.size)
                self.fh.seek(self.size)
            except OSError:
                pass
            raise
        self.size += len(raw)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._write([step, *(metrics.get(name, "") for name in self.columns[1:])])

    def close(self) -> None:
        self.fh.close()


def csv_rows(path: Path, size: int | None = None) -> tuple[list[str], list[tuple[int, dict[str, float]]]]:
    """(header, [(step, metrics)]) of metrics.csv's first `size` bytes (all of it by default);
    a row's metrics are the cells it has, as the floats that were logged (CSV holds repr())."""
    with open(path, "rb") as fh:
        data = fh.read() if size is None else fh.read(size)
    rows = list(csv.reader(io.StringIO(data.decode())))
    if not rows:
        return [], []
    header = rows[0]
    return header, [(int(row[0]), {k: float(v) for k, v in zip(header[1:], row[1:], strict=True) if v != ""})
                    for row in rows[1:]]


def csv_prefix_problem(path: Path, metric_names: Sequence[str], size: int,
                       last_step: int | None) -> str | None:
    """Why metrics.csv cannot continue from a checkpoint taken when it held `size` bytes ending
    at row `last_step` (None: it can): gone, shorter, other columns, or another last row."""
    try:
        if path.stat().st_size < size:
            return f"{path.name} is shorter than when the checkpoint was taken"
        header, rows = csv_rows(path, size)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return f"{path.name} cannot be read back ({_short(err)})"
    if header != ["step", *metric_names]:
        return f"{path.name} has other columns than this version of wcntk logs"
    if (rows[-1][0] if rows else None) != last_step:
        return f"{path.name} does not end at step {last_step} where the checkpoint was taken"
    return None


def _short(err: BaseException) -> str:
    """`Type: first line of the message`."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}"


def _remove_local_runs(run_dir: Path, pattern: str) -> None:
    """Remove local W&B run folders `<run_dir>/wandb/<pattern>` (a previous or failed attempt)."""
    for old in (run_dir / "wandb").glob(pattern):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


class WandbLog:
    """One W&B run per run dir. Its id is kept in `<run_dir>/wandb_run_id`, so a re-run job
    continues the same W&B run (online: resume="allow"), and a previous attempt's local run
    files are removed first (`wandb sync` uploads one run per job). Online init gives up after
    `init_timeout` seconds and the run goes on offline (one line says where and how to sync);
    if even that fails, the run goes on without W&B."""

    def __init__(self, mode: str, project: str, group: str | None, tags: list[str], name: str | None,
                 config: dict[str, Any], run_dir: Path, entity: str | None = None,
                 init_timeout: float = 10.0, label: str | None = None):
        self.run = None
        self.online = False                # an online run continues on the server (resume="allow")
        if mode == "disabled":
            return
        import wandb

        run_dir = Path(run_dir)
        id_file = run_dir / WANDB_ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            id_file.write_text(run_id + "\n")
        _remove_local_runs(run_dir, "*run-*")
        kwargs = dict(project=project, group=group, tags=list(tags) or None, name=name, config=config,
                      dir=str(run_dir), entity=entity, id=run_id, reinit="finish_previous")
        settings = dict(console="off", silent=True, x_disable_stats=True)
        if mode == "online":
            wandb.setup(settings=wandb.Settings(silent=True))  # no "Loaded credentials" line
            try:
                self.run = wandb.init(mode="online", resume="allow", **kwargs,
                                      settings=wandb.Settings(**settings, init_timeout=init_timeout))
            except Exception as err:  # noqa: BLE001 - no network, no login, bad entity: go on offline
                reason = _short(err)
                wandb.teardown()  # else the failed attempt keeps holding the run id
                _remove_local_runs(run_dir, f"run-*-{run_id}")
            else:
                reason = None
                self.online = True
        if self.run is None:
            try:
                self.run = wandb.init(mode="offline", **kwargs, settings=wandb.Settings(**settings))
            except Exception as err:  # noqa: BLE001 - W&B must never stop a run
                say(f"W&B could not start ({_short(err)}); the run goes on without W&B", label)
                return
            if mode == "online":
                sync_dir = self.run.settings.sync_dir
                say(f"W&B online init failed ({reason}); the run goes on offline in {sync_dir}; "
                    f"upload it later with: wandb sync {shlex.quote(str(sync_dir))}", label)
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({"step": step, **metrics})

    def update_config(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.config.update(values, allow_val_change=True)

    def finish(self, record: Record, exit_code: int) -> None:
        """The W&B run's summary from `record`: final values under their metric names, initial
        ones as `initial/<metric>` (INITIAL_PREFIX; so W&B panels can plot both against
        config.width), status, message, last_step, wall time; then the run ends with exit_code."""
        if self.run is None:
            return
        values = {**record.final,
                  **{INITIAL_PREFIX + key: value for key, value in record.initial.items()},
                  "status": record.status.value,   # W&B would store a Status as its name, "OK"
                  "message": record.message, "last_step": record.last_step, "wall_time_s": record.wall_time_s}
        self.run.summary.update(values)
        self.run.finish(exit_code=exit_code)


def write_invalid_setting_record(run_dir: Path, raw_config: dict[str, Any], message: str) -> Record:
    """Record a job whose settings failed validation, and return that record: status `failed`,
    `message`, and the raw composed config it was asked to run, marked `config_validated: false`
    (so its width, seed and settings are those of the job, never blanks the report would mistake
    for a setting)."""
    record = Record.new(raw_config, validated=False)
    record.status, record.message = Status.FAILED, message
    write_summary(run_dir, record)
    return record


class RunRecorder:
    """Context manager that owns a run directory's outputs (summary.json: wcntk.run.record's layout).
    `record` is the run's Record as it stands; summary.json is written from it.

    On entry summary.json says `running` with the full config and provenance (rewritten with the
    facts and after step 0 with the initial values). Inside the block
    `log(step, metrics)` appends to metrics.csv and W&B and keeps initial (step 0), final (last
    value of each metric) and last_step. On exit summary.json is written with the status set by
    `set_result` (ok / diverged), `interrupted` (Interrupted, KeyboardInterrupt) or `failed`
    (any other exception; its traceback goes to traceback.txt), and the W&B run is finished
    with exit code 0 (ok), 128 + signal (interrupted) or 1.
    """

    def __init__(self, run_dir: Path, metric_names: Sequence[str], config: dict[str, Any],
                 label: str | None = None, resume: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.record = Record.new(config)
        self.exit_code = 0
        self.wandb_log: WandbLog | None = None
        self.start = time.perf_counter()
        self.resume = resume
        self.wall_before = 0.0             # seconds of the attempts before a resume
        (self.run_dir / "traceback.txt").unlink(missing_ok=True)
        if resume is None:
            self.csv = CsvLog(self.run_dir / "metrics.csv", metric_names)
        else:  # a checkpoint's recorder_state (wcntk.run.checkpoint), `step` added
            self.csv = CsvLog(self.run_dir / "metrics.csv", metric_names, keep=resume["csv_bytes"])
            r = self.record
            r.initial, r.final = dict(resume["initial"]), dict(resume["final"])
            r.last_step, r.checkpoint_step = resume["last_step"], resume["step"]
            r.resumed_from = [*resume["resumed_from"], resume["step"]]
            self.wall_before = resume["wall_time_s"]
        self.write_summary()

    def recorder_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the record, to continue it (RunRecorder's `resume`)."""
        r = self.record
        return {"initial": r.initial, "final": r.final, "last_step": r.last_step,
                "csv_bytes": self.csv.size, "resumed_from": r.resumed_from,
                "wall_time_s": self.wall_time()}

    def wall_time(self) -> float:
        return round(self.wall_before + time.perf_counter() - self.start, 3)

    @property
    def path(self) -> Path:
        return self.run_dir / SUMMARY_FILE

    def write_summary(self) -> None:
        write_summary(self.run_dir, self.record)

    def wandb_config(self) -> dict[str, Any]:
        """What W&B gets as its config: the full config, plus `facts` and `provenance`."""
        r = self.record
        return {**r.config, "facts": r.facts, "provenance": r.provenance}

    def start_wandb(self, mode: str, **kwargs: Any) -> None:
        self.wandb_log = WandbLog(mode, config=self.wandb_config(), run_dir=self.run_dir, label=self.label,
                                  **kwargs)
        if self.resume is not None and self.wandb_log.run is not None and not self.wandb_log.online:
            # A local run holds one attempt: the new one gets the kept rows again, so the run dir's
            # W&B run (same id) holds every row of metrics.csv, as an uninterrupted run's does.
            for step, metrics in csv_rows(self.csv.fh.name, self.csv.size)[1]:
                self.wandb_log.log(step, metrics)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        values = {k: _finite_or_none(v) for k, v in metrics.items()}
        with deferred_signals():  # the CSV row and last_step/initial/final change together
            self.csv.log(step, metrics)
            if step == 0:
                self.record.initial = dict(values)
            self.record.final.update(values)
            self.record.last_step = step
        if step == 0:  # a run killed later (SIGKILL) still records its initial values
            self.write_summary()
        if self.wandb_log is not None:
            self.wandb_log.log(step, metrics)

    def set_facts(self, facts: dict[str, Any]) -> None:
        """What the run resolved at run time (effective_lr, n_params, data_source, device)."""
        self.record.facts = dict(facts)
        self.write_summary()
        if self.wandb_log is not None:
            self.wandb_log.update_config({"facts": self.record.facts})

    def set_result(self, status: Status, message: str | None, diverged_step: int | None) -> None:
        """How training ended (Trainer.run's ok or diverged), written as the block exits."""
        r = self.record
        r.status, r.message, r.diverged_step = status, message, diverged_step
        self.exit_code = exit_code(status)

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            status = ended_status(exc)
            message = (str(exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT))
                       if status == Status.INTERRUPTED else _short(exc))
            self.record.status, self.record.message = status, message
            self.exit_code = exit_code(status, exc)
        try:
            self.csv.close()
        except OSError:
            pass
        self.record.wall_time_s = self.wall_time()
        self.finish_summary(raise_errors=exc is None)
        if exc is not None and self.record.status == Status.FAILED:
            path = self.run_dir / "traceback.txt"
            try:
                path.write_text("".join(traceback.format_exception(exc)))
            except OSError:
                path.unlink(missing_ok=True)
        if self.wandb_log is not None:
            try:
                self.wandb_log.finish(self.record, self.exit_code)
            except Exception as err:  # noqa: BLE001 - the record on disk is complete already
                if isinstance(exc, Interrupted):  # SLURM signals every process of a job, W&B's service
                    # too: the run's closing line says so (wcntk.run.job.signal_line)
                    exc.wandb_note = f"W&B run left unfinished ({_short(err)})"
                else:
                    say(f"W&B finish failed: {_short(err)}", self.label)
        if exc is not None:
            try:
                exc.record = self.record  # also when it could not be written
            except AttributeError:
                pass
        return False

    def finish_summary(self, raise_errors: bool) -> None:
        """The final summary.json: atomically; on a full disk (no room for the temp file) by
        rewriting the start's summary.json in place, which frees its own space first."""
        try:
            self.write_summary()
            return
        except OSError:
            pass
        try:
            write_summary(self.run_dir, self.record, atomic=False)
        except OSError as err:
            say(f"could not write {self.path}: {_short(err)}", self.label)
            if raise_errors:
                raise

"""What `python run.py` does: `cli` checks the command line before Hydra starts
(wcntk.run.cli_checks) and maps how the process ended to one line and an exit code; `main` is
the job Hydra starts: it holds its dir's writer lock (wcntk.run.rundir), settles the dir's old
record and trains (wcntk.run.job: prepare_run_dir, then train_and_record).

Exit codes (wcntk.run.lifecycle.exit_code): 0 ok; 1 a bad setting or command line (one
`wcntk: error: …` line), a run that failed or diverged, or a sweep with such a job; 128 + signal
for a run ended by a signal (130 Ctrl-C, 143 SIGTERM).
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..training.data import DatasetUnavailable
from ..training.progress import say
from .cli_checks import ConfigError, check_command_line
from .config import one_line, run_config, validate_config
from .job import FinishedRecord, prepare_run_dir, train_and_record
from .lifecycle import Interrupted, exit_code, interruptible
from .outcome import closing_line, metrics_text
from .record import SUMMARY_FILE, Status, read_record
from .rundir import LOCK_FILE, RunningElsewhere, supersede, writer_lock
from .tracking import write_invalid_setting_record


def cli(hydra_main: Callable[[], None]) -> None:
    """Run `hydra_main` (run.py's @hydra.main function) for this process's command line."""
    try:
        sys.argv[1:] = check_command_line(sys.argv[1:])
    except ConfigError as err:
        sys.exit(f"wcntk: error: {err}")
    try:
        with interruptible():
            hydra_main()
    except (Interrupted, KeyboardInterrupt) as err:
        # A job's interruption has been recorded and reported by the job; anything else (Ctrl-C
        # while Hydra starts, or in the launcher's process) gets one line here, never a traceback.
        if not isinstance(err, Interrupted) or err.record is None:
            say(str(err) if isinstance(err, Interrupted) else "interrupted by SIGINT")
        sys.exit(exit_code(Status.INTERRUPTED, err))


def main(cfg: DictConfig) -> None:
    """The job Hydra starts (run.py's @hydra.main task): one run, or one job of a sweep, in
    Hydra's output dir, holding that dir's writer lock."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    job = hydra_cfg.job.override_dirname if multirun else None
    try:
        with writer_lock(run_dir):
            run_locked(cfg, run_dir, multirun, job, hydra_cfg)
    except RunningElsewhere as err:
        if not multirun:
            sys.exit(f"wcntk: error: {err}")
        say(f"running elsewhere: {err}; left alone", job)  # the sweep goes on; its table lists the job


def torch_threads(requested, launcher) -> int | None:
    """Threads per job: `threads` if set; under the joblib launcher the cores divided among
    its n_jobs parallel jobs (-1 = one job per core); otherwise torch's default."""
    if requested is not None:
        return requested
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else max(1, n_jobs)))


def remove_if_untouched(run_dir: Path) -> None:
    """Remove a run dir that holds only what Hydra wrote (.hydra/, <job>.log) and the writer
    lock: no results."""
    kept = (".hydra", LOCK_FILE)
    if run_dir.is_dir() and all(p.name in kept or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir)


def run_locked(cfg: DictConfig, run_dir: Path, multirun: bool, job: str | None,
               hydra_cfg: DictConfig) -> None:
    """One run (or sweep job) in run_dir, whose writer lock this process holds."""
    try:
        run = validate_config(run_config(cfg))
    except (OmegaConfBaseException, ValueError) as err:
        if multirun:  # the job fails alone: recorded, so the sweep's table and the report list it
            old = read_record(run_dir)
            if (run_dir / SUMMARY_FILE).exists() and (old is None or old.config_validated is not False):
                supersede(run_dir)  # a record with results (or an unreadable one) is kept aside
            write_invalid_setting_record(run_dir, raw_config(cfg), f"invalid setting: {one_line(err)}")
            say(f"error: {one_line(err)}", job or run_dir.name)
            return
        remove_if_untouched(run_dir)
        sys.exit(f"wcntk: error: {one_line(err)}")
    threads = torch_threads(run.threads, hydra_cfg.launcher if multirun else None)
    if threads is not None:
        torch.set_num_threads(threads)
    where = None if multirun else run_dir  # a sweep job's label names its dir
    record = run.record()
    try:
        done = prepare_run_dir(run_dir, record, resume=multirun, overwrite=run.overwrite, label=job)
    except FinishedRecord as err:
        sys.exit(f"wcntk: error: {err}")
    if done is not None:
        print(f"wcntk: [{job}] skipped (already ok)  {metrics_text(done)}", flush=True)
        return
    try:
        summary = train_and_record(run, run_dir, record, label=job)
    except Interrupted as err:
        if err.record is not None:  # else stopped before its record (loading a checkpoint): cli says it
            say(closing_line(err.record, where), job)
        raise
    except SystemExit as err:  # submitit's requeue (the signal's previous handler) exits instead
        if isinstance(err.__context__, Interrupted) and err.__context__.record is not None:
            say(closing_line(err.__context__.record, where) + "; requeued", job)
        raise
    except Exception as err:
        summary = getattr(err, "record", None) or read_record(run_dir)
        if summary is None:  # failed before the run was recorded
            raise
        say(closing_line(summary, where), job)
        if multirun:  # the other jobs go on; the sweep's closing table lists this one and exits 1
            return
        if not isinstance(err, DatasetUnavailable | OSError):
            raise  # a bug, not a setting or the machine: Hydra shows where
        sys.exit(exit_code(summary.status, err))
    if summary.status == Status.OK:
        print(f"wcntk: {f'[{job}] ' if job else ''}{closing_line(summary, where)}", flush=True)
    else:
        say(closing_line(summary, where), job)
        if not multirun:
            sys.exit(exit_code(summary.status))


def raw_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict: resolved, or as written (`${…}` kept) when one of
    its interpolations does not resolve; the closed choices as their strings."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)

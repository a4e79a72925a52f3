"""What `python run.py` does: `cli` starts Hydra, which parses the command line, composes the
config and has wcntk.run.cli_checks.CommandLineCheck check it before any directory exists; `cli`
turns any mistake into one `wcntk: error: …` line and maps how the process ended to an exit
code. `main` is the job Hydra starts: it validates its config and calls wcntk.run.job.run_job,
the one run path.

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
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..training.data import DatasetUnavailable
from ..training.progress import say
from ..training.trainer import NotReproducible
from .cli_checks import config_error
from .config import validate_config
from .job import FinishedRecord, run_job
from .lifecycle import Interrupted, exit_code, interruptible
from .record import SUMMARY_FILE, Status, read_record
from .rundir import LOCK_FILE, RunningElsewhere, finished_run_message, supersede, writer_lock
from .tracking import write_invalid_setting_record


class _Finished:
    """The exit code of this process's single run once its record is final (run_single), else None."""
    code: int | None = None


def cli(hydra_main: Callable[[], None]) -> None:
    """Run `hydra_main` (the @hydra.main function) for this process's command line."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them: one line here
    _Finished.code = None
    try:
        with interruptible():
            hydra_main()
    except (HydraException, OmegaConfBaseException) as err:
        sys.exit(f"wcntk: error: {config_error(err)}")
    except (Interrupted, KeyboardInterrupt) as err:
        if _Finished.code is not None:   # after the closing line: the signal changes nothing
            say(f"{err.signal_name if isinstance(err, Interrupted) else 'SIGINT'} after the run ended: "
                "its record stands")
            sys.exit(_Finished.code)
        # A job's interruption has been recorded and reported by the job; anything else (Ctrl-C
        # while Hydra starts, or in the launcher's process) gets one line here, never a traceback.
        if not isinstance(err, Interrupted) or err.record is None:
            say(str(err) if isinstance(err, Interrupted) else "interrupted by SIGINT")
        sys.exit(exit_code(Status.INTERRUPTED, err))


def main(cfg: DictConfig) -> None:
    """The job Hydra starts: one run, or one job of a sweep, in Hydra's output dir."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    job = hydra_cfg.job.override_dirname if multirun else None
    try:
        if multirun:
            run_sweep_job(cfg, run_dir, job, hydra_cfg.launcher)
        else:
            run_single(cfg, run_dir)
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


def run_single(cfg: DictConfig, run_dir: Path) -> None:
    """A single run (its config checked by CommandLineCheck before Hydra made run_dir); exits
    with the run's exit code unless it is ok; a bug's exception goes on up (Hydra shows where)."""
    try:
        run = validate_config(cfg)
    except ValueError as err:  # valid at the check, not now (the free memory changed)
        remove_if_untouched(run_dir)
        sys.exit(f"wcntk: error: {err}")
    apply_threads(run.threads, None)
    try:
        record = run_job(run, run_dir, overwrite=run.overwrite)
    except FinishedRecord as err:
        sys.exit(f"wcntk: error: {finished_run_message(err.run_dir, err.status)}")
    except (DatasetUnavailable, OSError, NotReproducible) as err:  # the machine, the data or the factory
        if getattr(err, "record", None) is None:
            raise
        sys.exit(exit_code(err.record.status, err))
    _Finished.code = exit_code(record.status)
    if _Finished.code:
        sys.exit(_Finished.code)


def run_sweep_job(cfg: DictConfig, run_dir: Path, job: str, launcher: DictConfig) -> None:
    """One job of a sweep: it resumes (an ok record of the same config is kept), and whatever
    happens it returns, recorded, for the other jobs to go on (the closing table lists it); a
    job whose settings are invalid is recorded `failed` with its one line."""
    try:
        run = validate_config(cfg)
    except ValueError as err:
        with writer_lock(run_dir):
            old = read_record(run_dir)
            if (run_dir / SUMMARY_FILE).exists() and (old is None or old.config_validated):
                supersede(run_dir)  # a record with results (or an unreadable one) is kept aside
            write_invalid_setting_record(run_dir, raw_config(cfg), f"invalid setting: {err}")
        say(f"error: {err}", job)
        return
    apply_threads(run.threads, launcher)
    try:
        run_job(run, run_dir, resume=True, label=job)
    except Exception as err:
        if getattr(err, "record", None) is None:  # failed before the run was recorded
            raise


def apply_threads(requested: int | None, launcher: DictConfig | None) -> None:
    """torch's CPU threads for this job (torch_threads)."""
    if (threads := torch_threads(requested, launcher)) is not None:
        torch.set_num_threads(threads)


def remove_if_untouched(run_dir: Path) -> None:
    """Remove a run dir that holds only what Hydra wrote (.hydra/, <job>.log) and the writer
    lock: no results."""
    kept = (".hydra", LOCK_FILE)
    if run_dir.is_dir() and all(p.name in kept or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir)


def raw_config(cfg: DictConfig) -> dict:
    """The composed config as a plain dict: resolved, or as written (`${…}` kept) when one of
    its interpolations does not resolve; the closed choices as their strings."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)

"""The SLURM launcher of a sweep (conf/hydra/launcher/slurm.yaml, registered with Hydra by
hydra_plugins/wcntk_launcher): Hydra's submitit launcher, except that it

- submits only the jobs that are not already `ok` (the others are the closing table's `skipped`,
  without an allocation: an `ok` record of the same config, wcntk.run.job.prepare_run_dir's rule);
- waits on each job by itself: a job has ended when its submitit result file exists, or when it
  has been gone from the queue (`squeue`, or a final SLURM state there) on two looks GONE_AFTER_S
  apart without one (scancel, a killed srun, a job out of requeues: no accounting needed);
- never raises for a job, and stops waiting on Ctrl-C/SIGTERM, so the closing table
  (wcntk.run.outcome.SweepSummary) always comes, with a row for every job of the launch;
- in the job, ends a run a signal interrupted with its one closing line and exit code 128 +
  signal (lifecycle.exit_code), instead of a traceback.

Hydra imports this module whenever it scans its plugins (every Hydra start): it imports torch
only where it is used.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

from ..training.progress import say
from .lifecycle import Interrupted
from .outcome import LAUNCH
from .record import Status, effective_status, read_record
from .rundir import config_changes, lock_is_held

POLL_S = 2.0            # how often the result files are looked at
QUEUE_POLL_S = 10.0     # how often squeue is asked (one call for all the jobs still waited on)
GONE_AFTER_S = 10.0     # a job seen gone this long (two looks) without a result has ended
# SLURM job states of a job that is over (squeue shows them for MinJobAge seconds). A preempted or
# node-failed job SLURM requeues is PENDING again by the next look.
FINAL_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT", "REVOKED"}


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM job id -> state of those of `job_ids` squeue shows; a job it does not show is gone.
    None when squeue does not answer (the controller is down: nothing can be said)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:   # every id unknown: all gone; anything else: no answer
        return {} if "Invalid job id" in proc.stderr else None
    return dict(line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) >= 2)


def has_result(job: Any) -> bool:
    """submitit wrote the job's result file (chmod first: a shared filesystem's cached listing)."""
    try:
        job.paths.folder.chmod(job.paths.folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")


def already_ok(job_dir: Path, config: Any) -> bool:
    """The job dir holds an `ok` record of this config that no process is writing: the job
    would only say `skipped` (wcntk.run.job.prepare_run_dir with resume)."""
    record = read_record(job_dir)
    if record is None or effective_status(record, lock_is_held(job_dir)) != Status.OK:
        return False
    from .config import run_config  # (torch: not at Hydra's plugin scan)

    task_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    try:
        recorded = run_config(task_cfg).recorded()
    except ValueError:   # the job itself says what is wrong
        return False
    return not config_changes(record.config, recorded)


class SweepLauncher(SlurmLauncher):
    """Hydra's SlurmLauncher with the module docstring's launch, wait and job exit."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """The job, in its SLURM allocation. A signal's run has said its line (closing_line) and is
        recorded; it exits 128 + signal. submitit's SIGTERM and SIGCONT handlers only log, so they are
        dropped (wcntk's own handler takes SIGTERM); its SIGUSR2 handler requeues (SystemExit) or says
        why not (UncompletedJobError)."""
        for sig in (signal.SIGTERM, signal.SIGCONT):
            signal.signal(sig, signal.SIG_DFL)
        submitit_log = logging.getLogger("submitit")
        level, submitit_log.level = submitit_log.level, logging.ERROR   # its signal lines: wcntk says it
        try:
            ret = super().__call__(*args, **kwargs)
        except Interrupted as err:
            if err.record is None:   # before the run had a record (run_job said nothing)
                say(f"{err} before the run started")
            quiet_exit(err.exit_code)
        except SystemExit as err:
            if isinstance(err.__context__, Interrupted):   # requeued by submitit
                quiet_exit(err.__context__.exit_code)
            raise
        submitit_log.level = level
        err = ret._return_value if ret.status == JobStatus.FAILED else None
        if err is not None and isinstance(err.__context__, Interrupted):   # submitit did not requeue it
            stopped = err.__context__
            label = None if ret.hydra_cfg is None else OmegaConf.select(ret.hydra_cfg, "job.override_dirname")
            why = str(err).removeprefix("Job not requeued because: ").rstrip(".")
            if stopped.record is not None:
                from .job import signal_line
                say(signal_line(stopped, None, f"not requeued: {why}"), label)
            quiet_exit(stopped.exit_code)
        return ret

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        """Submit the jobs not already ok as one array, wait for each, return a COMPLETED
        JobReturn for every job (what became of each is LAUNCH's and the records')."""
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))   # as SweepSummary names it
        sweep_dir.mkdir(parents=True, exist_ok=True)   # (LAUNCH: emptied as the multirun starts)
        todo, returns = [], []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = idx
            job_dir = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
            LAUNCH.jobs[job_dir] = None
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED))
            if already_ok(job_dir, cfg):
                continue
            todo.append((i, job_dir, (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                      Singleton.get_state())))
        skipped = len(returns) - len(todo)
        say(f"submitting {len(todo)} of {len(returns)} jobs to SLURM"
            + (f" ({skipped} already ok: skipped)" if skipped else ""))
        if not todo:
            return returns
        executor = self._executor()
        try:
            jobs = executor.map_array(self, *zip(*(params for *_, params in todo), strict=True))
        except Exception as err:  # noqa: BLE001 - sbatch refused (partition, account, limits): one line
            raise SystemExit(f"wcntk: error: SLURM refused the jobs: {first_line(err)}") from None
        waiting = {}
        for (i, job_dir, _), job in zip(todo, jobs, strict=True):
            LAUNCH.jobs[job_dir] = job.job_id
            waiting[job_dir] = (i, job)
        try:
            self._wait(waiting, returns)
        except Interrupted as err:   # Ctrl-C or SIGTERM of this process: the jobs go on in SLURM
            LAUNCH.stopped = err
        return returns

    def _executor(self) -> Any:
        """submitit's executor with the launcher's parameters (as SlurmLauncher.launch builds it)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=self.params["max_num_timeout"])
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        return executor

    def _wait(self, waiting: dict[Path, tuple[int, Any]], returns: list[JobReturn]) -> None:
        """Until every job of `waiting` (job dir -> (index in returns, submitit job)) has ended
        (module docstring): its JobReturn from its result file, or how it ended without one in
        LAUNCH.ended."""
        gone_since: dict[Path, float] = {}
        next_queue_look = 0.0
        while waiting:
            now = time.monotonic()
            states = None
            if now >= next_queue_look:
                states = queue_states([job.job_id for _, job in waiting.values()])
                next_queue_look = now + QUEUE_POLL_S
            for job_dir, (i, job) in list(waiting.items()):
                if has_result(job):
                    returns[i] = self._collect(job_dir, job, returns[i])
                    del waiting[job_dir]
                    continue
                if states is None:
                    continue
                state = states.get(job.job_id)
                if state is not None and state not in FINAL_STATES:
                    gone_since.pop(job_dir, None)
                elif now - gone_since.setdefault(job_dir, now) >= GONE_AFTER_S and not has_result(job):
                    LAUNCH.ended[job_dir] = (f"SLURM: {state.lower()}" if state else
                                             "gone from the SLURM queue") + f", job {job.job_id}"
                    del waiting[job_dir]
            if waiting:
                time.sleep(POLL_S)

    def _collect(self, job_dir: Path, job: Any, ret: JobReturn) -> JobReturn:
        """The job's JobReturn from its result file, made COMPLETED (BasicSweeper raises a failed
        one's exception, which would end the launch before its table): a job's exception is
        printed once here, and the table has its row."""
        try:
            result = job.result()
        except Exception as err:  # noqa: BLE001 - submitit's FailedJobError etc.: the job's trace
            say(f"[{job_dir.name}] the job ended with an error (SLURM job {job.job_id}):\n{err}")
            LAUNCH.ended[job_dir] = f"error: {first_line(err)}, job {job.job_id}"
            return ret
        if not isinstance(result, JobReturn):
            return ret
        if result.status == JobStatus.FAILED:
            err = result._return_value
            text = "".join(traceback.format_exception(err)) if isinstance(err, BaseException) else str(err)
            say(f"[{job_dir.name}] the job raised (SLURM job {job.job_id}):\n{text.rstrip()}")
            LAUNCH.ended[job_dir] = f"error: {first_line(err)}"
            result.status, result._return_value = JobStatus.COMPLETED, None
        return result


def quiet_exit(code: int) -> None:
    """End the job process now with `code`: its record and closing line are written, and what
    would run at exit (W&B's teardown after its service got the same signal) only adds tracebacks."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

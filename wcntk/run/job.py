"""One run from its config (the command line's validated RunConfig, or a dict hand-written in a
notebook): settle the run dir's old record, train network + twin, record metrics.csv,
summary.json and the W&B run in `run_dir`."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.metric_registry import METRIC_NAMES
from ..training.progress import say
from ..training.trainer import Trainer
from .checkpoint import Checkpointer, checkpoint_path, load_checkpoint, remove_checkpoint
from .config import RunConfig, validate_config
from .lifecycle import Interrupted, deferred_signals, interruptible, signal_pending
from .outcome import closing_line, metrics_text
from .record import CHECKPOINT_FILE, SUMMARY_FILE, Record, Status, effective_status, read_record
from .rundir import SUPERSEDED_DIR, config_changes, supersede, writer_lock
from .tracking import WANDB_ID_FILE, RunRecorder


class FinishedRecord(ValueError):
    """The run dir already holds the record of a finished run, and overwrite was not asked for.
    Its message speaks Python (run_job's arguments); the command line says its own
    (wcntk.run.rundir.finished_run_message, from `run_dir` and `status`)."""

    def __init__(self, run_dir: Path, status: str):
        self.run_dir, self.status = run_dir, status
        super().__init__(f"{run_dir} already holds a finished run (status {status}); pass another "
                         f"run_dir, resume=True to keep an ok record, or overwrite=True to move its "
                         f"record to {run_dir / SUPERSEDED_DIR}/")


def prepare_run_dir(run_dir: str | Path, cfg: dict[str, Any], resume: bool = False,
                    overwrite: bool = False, label: str | None = None) -> Record | None:
    """Decide what becomes of run_dir's record before a run of `cfg` (a validated, complete
    config); call it holding run_dir's writer lock. Returns the record to keep instead of
    running (resume only), or None: run, in a dir that now holds no finished record.

    - no summary.json: run.
    - summary.json that is not a record (wcntk.run.record.not_a_record): moved aside, run (one line).
    - a single run on a finished record (any status but a stale `running`: we hold the lock, so
      its writer is gone): FinishedRecord, unless `overwrite`, which moves the record aside, or
      the record is `interrupted` and of the same config: the run continues in place, from its
      checkpoint (wcntk.run.checkpoint), or without one from step 0 (a record with logged rows
      moved aside first, one line).
    - a record of another config (wcntk.run.rundir.config_changes; bookkeeping keys never count):
      moved aside, run (one line naming the changed keys).
    - resume: an `ok` record of the same config is kept; any other status runs again in place
      (the same experiment: its W&B run id is reused).
    - a stale record of the same config runs again in place.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_FILE).exists():
        return None
    old = read_record(run_dir)
    if old is None:
        moved = supersede(run_dir)
        say(f"{run_dir / 'summary.json'} is not a readable record: moved to {moved}; the job runs again",
            label)
        return None
    status = effective_status(old, lock_held=False)
    changes = config_changes(old.config, cfg)
    has_checkpoint = checkpoint_path(run_dir).exists()
    continues = status == Status.INTERRUPTED and not changes
    finished = status != Status.STALE and not continues
    if not resume and finished and not overwrite:
        raise FinishedRecord(run_dir, status)
    # overwrite=true also means: not from the checkpoint (it moves aside with the record)
    if changes or (not resume and (finished or (overwrite and (has_checkpoint or continues)))):
        moved = supersede(run_dir)
        why = ("config changed: " + ", ".join(f"{key} {before!r} -> {after!r}"
                                              for key, (before, after) in changes.items())
               if changes else "overwrite=true")
        say(f"{why}; the previous record was moved to {moved}", label)
        return None
    if continues and not has_checkpoint and old.last_step is not None:  # its rows are kept aside
        moved = supersede(run_dir)
        say(f"the interrupted run has no {CHECKPOINT_FILE} to continue from (last step {old.last_step}): "
            f"its record was moved to {moved}; the run starts from step 0", label)
    return old if resume and status == Status.OK else None


def default_run_name(cfg: RunConfig) -> str:
    return (f"w{cfg.width}-d{cfg.depth}-{cfg.activation}-{cfg.parameterization}"
            f"-{cfg.optimizer.name}-s{cfg.seed}")


def run_job(cfg: RunConfig | Mapping[str, Any], run_dir: str | Path, resume: bool = False,
            label: str | None = None, overwrite: bool = False) -> Record:
    """Train and record one run; returns its Record (wcntk.run.record: record.status,
    record.final["corr/C02"], …), as summary.json holds it. The one run path: the command
    line's job (wcntk.run.entry), each sweep job, notebooks, benchmarks.

    `cfg` is validated here unless it is a RunConfig that already was; a hand-written dict that
    leaves keys out gets their defaults, and the record holds every key.

    The run holds run_dir's writer lock throughout (wcntk.run.rundir; another process holding it
    raises RunningElsewhere) and first settles the old record (prepare_run_dir): with
    resume=True an `ok` record of the same config is returned without running; a finished
    record is never overwritten (FinishedRecord) unless `overwrite`, which moves it aside.
    Status ok or diverged is returned; an exception after validation is recorded as `failed`
    and re-raised; SIGINT/SIGTERM/SIGUSR1/SIGUSR2 record `interrupted` and raise
    wcntk.run.lifecycle.Interrupted (its `record`: the run's Record).

    It ends with one line (wcntk.run.outcome.closing_line): `wcntk: ok …` on stdout, any other
    outcome on stderr. `label` names the job in its lines (a sweep job's override dirname),
    which then leave out the run dir.
    """
    run = validate_config(cfg)
    config = run.recorded()
    run_dir = Path(run_dir)
    where = None if label else run_dir
    with writer_lock(run_dir):
        if (done := prepare_run_dir(run_dir, config, resume, overwrite, label)) is not None:
            say(f"skipped (already ok)  {metrics_text(done)}", label, stdout=True)
            return done
        try:
            record = train_and_record(run, run_dir, config, label)
        except Interrupted as err:
            if err.record is not None:  # else stopped before its record (loading a checkpoint)
                say(signal_line(err, where), label)
            raise
        except SystemExit as err:  # submitit's requeue (the signal's previous handler) exits instead
            if isinstance(err.__context__, Interrupted) and err.__context__.record is not None:
                say(signal_line(err.__context__, where, "requeued"), label)
            raise
        except Exception as err:
            if getattr(err, "record", None) is not None:  # recorded `failed`
                say(closing_line(err.record, where), label)
            raise  # (submitit's UncompletedJobError after a signal: the SLURM launcher says it)
    say(closing_line(record, where), label, stdout=record.status == Status.OK)
    return record


def signal_line(err: Interrupted, where: Path | None, *notes: str) -> str:
    """The closing line of a run a signal ended, with `notes` (`requeued`) and what became of its
    W&B run when W&B's service process got the signal too (RunRecorder)."""
    notes = (*notes, *filter(None, [getattr(err, "wandb_note", None)]))
    return "; ".join([closing_line(err.record, where), *notes])


def train_and_record(run: RunConfig, run_dir: Path, config: dict[str, Any],
                     label: str | None = None) -> Record:
    """The body of run_job, holding run_dir's writer lock, its old record settled
    (prepare_run_dir): train network + twin, record metrics.csv, summary.json, W&B; returns
    the run's Record."""
    model, data, opt, train = run.library_configs()
    w = run.wandb
    with interruptible():
        ckpt = load_checkpoint(run_dir, config, METRIC_NAMES, label)
        if ckpt is not None and ckpt.header.get("wandb_run_id") and not (run_dir / WANDB_ID_FILE).exists():
            (run_dir / WANDB_ID_FILE).write_text(ckpt.header["wandb_run_id"] + "\n")
        resume = None if ckpt is None else ckpt.recorder_resume()
        with RunRecorder(run_dir, METRIC_NAMES, config, label=label, resume=resume) as recorder:
            recorder.start_wandb(w.mode, project=w.project, group=w.group, tags=list(w.tags),
                                 name=w.name or default_run_name(run), entity=w.entity,
                                 init_timeout=w.init_timeout)
            trainer = Trainer(model, data, opt, train, log=recorder.log, validated=True)
            if ckpt is not None:  # before the first step (a CUDA graph is captured there)
                trainer.load_state_dict(ckpt.state)
                say(f"resumed from step {ckpt.step}", label)
                del ckpt
            recorder.set_facts(trainer.facts())
            saver = Checkpointer(run_dir, config, trainer, recorder, run.checkpoint_every, label)
            with deferred_signals():  # a signal ends the run at the next step boundary, checkpointed,
                # or stops a measurement and checkpoints the boundary before it (measured again on resume)
                result = trainer.run(label=label, boundary=saver.boundary, stop=signal_pending)
            recorder.set_result(result.status, result.message, result.diverged_step)
            done = result.status in (Status.OK, Status.DIVERGED) and not run.keep_checkpoint
            if done:  # nothing to continue: an ok run is complete, a diverged one would diverge again
                recorder.record.checkpoint_step = None
    if done:
        remove_checkpoint(run_dir)
    return recorder.record

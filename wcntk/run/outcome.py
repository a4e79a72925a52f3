"""What a run and a sweep say when they end: one closing line per run, one line per job at the
end of a sweep (a Hydra callback; wcntk itself never imports Hydra)."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from ..core.metric_registry import HEADLINE_METRICS, INITIAL, is_correlation
from .provenance import LAUNCH_ENV, git_state
from .record import SUMMARY_FILE, Record, Status, effective_status, read_record
from .rundir import SUPERSEDED_DIR, config_changes, lock_is_held, natural_key


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def corr_step(record: Record) -> int | None:
    """The step whose values `final` holds for corr/* metrics: they are measured at step 0, every
    `corr_every` steps and at the last step (`steps`), so the last of those up to `last_step`.
    None when the record has no last step or no config to tell."""
    last, cfg = record.last_step, record.config
    steps, every = cfg.get("steps"), cfg.get("corr_every")
    if type(last) is not int or type(steps) is not int:
        return None
    if last == steps:
        return last
    return last // every * every if type(every) is int and every > 0 else 0


def metrics_text(record: Record, initial_correlations: bool = False) -> str:
    """`lin/func_rmse_test <final>  corr/C02 <final> (step <t>)`: the record's final values (n/a
    where not logged or not finite); corr/C02 names the step it was measured at (corr_step),
    which for an interrupted or diverged run may be step 0. With `initial_correlations` (a
    sweep's closing table): `initial/corr/C02 <at θ₀>`, the value the width fits read."""
    texts = []
    for key in HEADLINE_METRICS:
        if initial_correlations and is_correlation(key):
            texts.append(f"{INITIAL}{key} {_number(record.initial.get(key))}")
            continue
        text = f"{key} {_number(record.final.get(key))}"
        step = corr_step(record) if is_correlation(key) else None
        texts.append(text + (f" (step {step})" if step is not None and not text.endswith("n/a") else ""))
    return "  ".join(texts)


def sweep_metrics(record: Record) -> str:
    """A job's values in the sweep's closing table: the final deviation, the initial correlations."""
    return metrics_text(record, initial_correlations=True)


def outcome_text(record: Record) -> str:
    """`ok`, or the record's status with the reason: `diverged at step 40: …`, `failed: OSError: …`,
    `interrupted by SIGTERM (last step 120)`."""
    status, message = effective_status(record), record.message
    if status == Status.OK or not message:
        text = str(status)
    else:
        text = message if message.startswith(status) else f"{status}: {message}"
    notes = []
    if status in (Status.INTERRUPTED, Status.STALE) and record.last_step is not None:
        notes.append(f"last step {record.last_step}")
    if status != Status.OK and record.checkpoint_step is not None:
        notes.append(f"checkpoint at step {record.checkpoint_step}")
    return text + (f" ({', '.join(notes)})" if notes else "")


def resumes_text(record: Record) -> str:
    """`resumed 2× (from step 40, 80)` for a run continued from checkpoints ('' for none)."""
    steps = record.resumed_from
    return f"resumed {len(steps)}× (from step {', '.join(map(str, steps))})" if steps else ""


def closing_line(record: Record, run_dir: str | Path | None = None) -> str:
    """A run's last line, from its record: status (and why), the final lin/func_rmse_test and
    corr/C02, run dir (left out for a sweep job, whose label already names its dir)."""
    return f"{outcome_text(record)}  {metrics_text(record)}" + (f"  {run_dir}" if run_dir else "")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@dataclass
class Launch:
    """What a launcher that waits on its jobs itself (wcntk.run.launcher.SweepLauncher) tells the
    closing table of this process's multirun: every job dir of the launch (-> its SLURM job id,
    None: not submitted, already ok), how a job ended without a result (SLURM cancelled it, it
    left the queue, it raised), and the signal that stopped the wait (the jobs went on)."""

    jobs: dict[Path, str | None] = field(default_factory=dict)
    ended: dict[Path, str] = field(default_factory=dict)
    stopped: BaseException | None = None

    def reset(self) -> None:
        self.jobs.clear()
        self.ended.clear()
        self.stopped = None


LAUNCH = Launch()


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job dirs, in the numeric order of their swept values (natural_key)."""
    return sorted((p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")),
                  key=lambda d: natural_key(d.relative_to(sweep_dir).as_posix()))


def _superseded(job: Path) -> set[str]:
    return {p.name for p in (job / SUPERSEDED_DIR).glob("*")}


class SweepSummary(Callback):
    """Hydra callback (`hydra.callbacks.<name>._target_: wcntk.run.outcome.SweepSummary`): when a
    multirun ends, one line per job it launched: skipped (already ok), ok, diverged, failed,
    interrupted, elsewhere (another process holds the job dir: wcntk.run.rundir; a job another
    process finished meanwhile is skipped, one it left unfinished has its status), with how
    many jobs re-ran because their config changed (and which keys) and a warning for skipped
    records made by another git commit. Exit code (SWEEP_EXIT_CODES): 1 if a job failed,
    diverged or did not finish, else 3 if a job is another process's, else 0.

    Which jobs this multirun launched is read from file times compared with a snapshot taken at
    its start (no clocks compared: job dirs may be on another host's disk): Hydra rewrites
    `.hydra/overrides.yaml` of every job it launches. A record this launch wrote names it in
    `provenance.launch` (run.py sets $WCNTK_LAUNCH_ID per launch); a skipped job leaves its
    record untouched; any other record of a launched job was written by another process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sweep_dir: Path | None = None
        self.launch: str | None = None
        self.before: dict[Path, tuple[int | None, int | None, set[str]]] = {}
        self.records: dict[Path, Record | None] = {}   # what row() read, per job

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.launch = OmegaConf.select(config, f"hydra.job.env_set.{LAUNCH_ENV}")
        LAUNCH.reset()
        self.before = {d: (_mtime(d / ".hydra" / "overrides.yaml"), _mtime(d / SUMMARY_FILE),
                           _superseded(d)) for d in _job_dirs(self.sweep_dir)}

    def row(self, job: Path) -> tuple[Status, str, dict[str, tuple[Any, Any]]]:
        """(status, detail, config changes that made it re-run) of a job this multirun launched."""
        _, summary_time, superseded = self.before.get(job, (None, None, set()))
        record = self.records[job] = read_record(job)
        held = lock_is_held(job)
        if record is None:
            if held:
                return Status.ELSEWHERE, "running elsewhere (no record yet)", {}
            if job in LAUNCH.ended:
                return Status.CANCELLED, f"ended before it wrote a record ({LAUNCH.ended[job]})", {}
            unreadable = (job / SUMMARY_FILE).exists()
            return (Status.FAILED, "summary.json is not a readable record", {}) if unreadable \
                else (Status.NO_SUMMARY, "", {})
        status = effective_status(record, held)
        prov = record.provenance
        not_submitted = job in LAUNCH.jobs and LAUNCH.jobs[job] is None   # the launcher left it out: ok
        untouched = _mtime(job / SUMMARY_FILE) == summary_time or not_submitted
        if status == Status.OK and untouched:
            return Status.SKIPPED, sweep_metrics(record), {}
        # Without a launch id (a callback used outside run.py): a record written since the start.
        mine = prov.get("launch") == self.launch if self.launch is not None else not untouched
        if not mine:
            who = f"pid {prov.get('pid')} on {prov.get('host')}"
            if status == Status.OK:  # finished by another process meanwhile: this sweep skipped it
                return Status.SKIPPED, f"{sweep_metrics(record)}  (run by {who})", {}
            if held:
                return Status.ELSEWHERE, f"running elsewhere ({who})", {}
            # The other process is done with it and left it unfinished: no one will finish it.
            return status, f"{outcome_text(record)}  (run by {who})", {}
        detail = sweep_metrics(record) if status == Status.OK else outcome_text(record)
        detail += f"  {resumes_text(record)}" if record.resumed_from else ""
        changes: dict[str, tuple[Any, Any]] = {}
        for name in sorted(_superseded(job) - superseded):
            old = read_record(job / SUPERSEDED_DIR / name)
            changes.update(config_changes({} if old is None else old.config, record.config))
        return status, detail, changes

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.sweep_dir is None:
            return
        rows = []
        jobs = {*_job_dirs(self.sweep_dir), *LAUNCH.jobs}   # the launcher's may have no dir yet
        for job in sorted(jobs, key=lambda d: natural_key(d.as_posix())):
            if job not in LAUNCH.jobs and \
                    _mtime(job / ".hydra" / "overrides.yaml") == self.before.get(job, (None,))[0]:
                continue                       # not part of this multirun
            status, detail, changes = self.row(job)
            if job in LAUNCH.ended and status != Status.CANCELLED:
                detail += f"  ({LAUNCH.ended[job]})"
            elif LAUNCH.stopped is not None and LAUNCH.jobs.get(job) and \
                    status in (Status.RUNNING, Status.ELSEWHERE, Status.NO_SUMMARY):
                status, detail = Status.RUNNING, f"still queued or running (SLURM job {LAUNCH.jobs[job]})"
            rows.append((job, status, detail, changes))
        counts = Counter(status for _, status, *_ in rows)
        order = [Status.SKIPPED, Status.OK, Status.DIVERGED, *Status.unfinished(), Status.ELSEWHERE]
        names = {Status.SKIPPED: "skipped (already ok)", Status.ELSEWHERE: "running elsewhere"}
        tally = ", ".join(f"{counts[s]} {names.get(s, s)}" for s in order if counts[s])
        lines = [f"wcntk: sweep {self.sweep_dir}: {len(rows)} jobs: {tally or 'none'}"]
        width = max((len(str(job.relative_to(self.sweep_dir))) for job, *_ in rows), default=0)
        for job, status, detail, _ in rows:
            lines.append(f"  {status:<11} {str(job.relative_to(self.sweep_dir)):<{width}}  {detail}".rstrip())
        resumed = [len(self.records[job].resumed_from) for job, status, *_ in rows
                   if status not in (Status.SKIPPED, Status.ELSEWHERE) and self.records[job] is not None]
        resumed = [n for n in resumed if n]
        if resumed:
            lines.append(f"  {len(resumed)} jobs continued from checkpoints ({sum(resumed)} resumes: "
                         f"requeued by SLURM, or re-run after an interruption)")
        changed = [changes for *_, changes in rows if changes]
        if changed:
            keys = sorted({key for changes in changed for key in changes})
            lines.append(f"  {len(changed)} jobs re-ran because their config changed ({', '.join(keys)}); "
                         f"their previous records are in <job dir>/{SUPERSEDED_DIR}/")
        commit = git_state()[0]
        recorded = {job: self.records[job].provenance.get("git_commit")
                    for job, status, *_ in rows if status == Status.SKIPPED}
        other_code = [job for job, made_by in recorded.items() if made_by not in (None, commit)]
        if commit is not None and other_code:
            lines.append(f"  warning: {len(other_code)} skipped jobs were recorded by another git commit "
                         f"than {commit[:12]} (kept: a code change alone does not re-run a job)")
        if LAUNCH.stopped is not None:
            lines.append(f"  stopped waiting ({LAUNCH.stopped}); the jobs still queued or running go on "
                         f"in SLURM: re-run the same command to collect them (scancel stops them)")
        print("\n".join(lines), flush=True)
        if LAUNCH.stopped is not None:
            raise LAUNCH.stopped
        code = sweep_exit_code(counts)
        if code:
            raise SystemExit(code)


# Exit codes of a sweep (docs/sweeps.md).
SWEEP_EXIT_CODES = {0: "every job ok or skipped (already ok)",
                    1: "a job failed, diverged, was interrupted or did not finish",
                    3: "otherwise: a job was left to another process that holds its dir (running elsewhere)"}


def sweep_exit_code(counts: Counter) -> int:
    """SWEEP_EXIT_CODES for the closing table's counts of each status."""
    if any(counts[s] for s in (Status.DIVERGED, *Status.unfinished())):
        return 1
    return 3 if counts[Status.ELSEWHERE] else 0

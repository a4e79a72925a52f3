"""Every status word of wcntk, in one enum that imports nothing of wcntk, so every layer uses it:
the trainer (how training ended), the run record (what summary.json says), its readers (resume,
the report) and a sweep's closing table. A misspelt member (`Status.OKK`) is an AttributeError.
"""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A run's status, and the words a reader or a sweep's table says of a job. A StrEnum: each
    member is its plain string (`Status.OK == "ok"`; JSON, pandas and print show "ok")."""

    # written into summary.json (written())
    RUNNING = "running"          # written at the start, until the run ends
    OK = "ok"                    # all steps done
    DIVERGED = "diverged"        # a training loss became non-finite or blew up
    FAILED = "failed"            # an exception, or settings that failed validation
    INTERRUPTED = "interrupted"  # a signal ended it
    # derived by a reader of a record
    STALE = "stale"              # `running`, but its writer is gone (wcntk.run.record.effective_status)
    UNREADABLE = "unreadable"    # summary.json is not a record (wcntk.run.record.UnreadableRecord)
    # a sweep's closing table only (wcntk.run.outcome.SweepSummary)
    SKIPPED = "skipped"          # already ok: the job's record was kept
    ELSEWHERE = "elsewhere"      # another process holds the job's dir
    NO_SUMMARY = "no summary"    # the job left no summary.json
    CANCELLED = "cancelled"      # SLURM ended the job before it wrote a record (wcntk.run.launcher)

    @classmethod
    def written(cls) -> tuple[Status, ...]:
        """The statuses summary.json may hold."""
        return (cls.RUNNING, cls.OK, cls.DIVERGED, cls.FAILED, cls.INTERRUPTED)

    @classmethod
    def ended(cls) -> tuple[Status, ...]:
        """The statuses of a run that has ended (its W&B run was finished)."""
        return (cls.OK, cls.DIVERGED, cls.FAILED, cls.INTERRUPTED)

    @classmethod
    def unfinished(cls) -> tuple[Status, ...]:
        """A sweep job that did not produce its result (with diverged: the sweep exits 1)."""
        return (cls.FAILED, cls.INTERRUPTED, cls.STALE, cls.RUNNING, cls.NO_SUMMARY, cls.CANCELLED)

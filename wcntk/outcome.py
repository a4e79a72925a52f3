"""What a run and a sweep say when they end: one closing line per run, one line per job at the
end of a sweep (a Hydra callback; wcntk itself never imports Hydra)."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from .record import effective_status, read_summary

HEADLINE_METRICS = ("lin/func_rmse_test", "corr/C02")
# Statuses that make a sweep exit non-zero: the job did not produce its result.
UNFINISHED = ("failed", "interrupted", "stale", "running", "no summary")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def metrics_text(summary: dict[str, Any]) -> str:
    """`lin/func_rmse_test <final>  corr/C02 <final>` (n/a where not logged or not finite)."""
    final = summary.get("final") or {}
    return "  ".join(f"{key} {_number(final.get(key))}" for key in HEADLINE_METRICS)


def outcome_text(summary: dict[str, Any]) -> str:
    """`ok`, or the status with the reason: `diverged at step 40: …`, `failed: OSError: …`,
    `interrupted by SIGTERM (last step 120)`."""
    status, message = effective_status(summary), summary.get("message")
    if status == "ok" or not message:
        text = status
    else:
        text = message if message.startswith(status) else f"{status}: {message}"
    if status in ("interrupted", "stale") and summary.get("last_step") is not None:
        text += f" (last step {summary['last_step']})"
    return text


def closing_line(summary: dict[str, Any], run_dir: str | Path | None = None) -> str:
    """A run's last line: status (and why), the final lin/func_rmse_test and corr/C02, run dir
    (left out for a sweep job, whose label already names its dir)."""
    return f"{outcome_text(summary)}  {metrics_text(summary)}" + (f"  {run_dir}" if run_dir else "")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml"))


class SweepSummary:
    """Hydra callback (`hydra.callbacks.<name>._target_: wcntk.outcome.SweepSummary`): when a
    multirun ends, one line per job it launched: skipped (already ok), ok, diverged, failed,
    interrupted; the sweep then exits 1 if a job failed or was interrupted.

    Which jobs this multirun launched, and which it skipped, is read from file times compared
    with a snapshot taken at its start (no clocks compared: job dirs may be on another host's
    disk): Hydra rewrites `.hydra/overrides.yaml` of every job it launches, and a skipped job
    leaves its summary.json untouched.
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.before: dict[Path, tuple[int | None, int | None]] = {}

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.before = {d: (_mtime(d / ".hydra" / "overrides.yaml"), _mtime(d / "summary.json"))
                       for d in _job_dirs(self.sweep_dir)}

    # Hydra calls every callback method on every callback: the others do nothing here.
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.sweep_dir is None:
            return
        rows = []
        for job in _job_dirs(self.sweep_dir):
            launched, summary_time = self.before.get(job, (None, None))
            if _mtime(job / ".hydra" / "overrides.yaml") == launched:
                continue                       # not part of this multirun
            summary = read_summary(job)
            if summary is None:
                rows.append(("no summary", job, ""))
                continue
            status = effective_status(summary)
            if status == "ok" and _mtime(job / "summary.json") == summary_time:
                status = "skipped"
            detail = metrics_text(summary) if status in ("ok", "skipped") else outcome_text(summary)
            rows.append((status, job, detail))
        counts = Counter(status for status, *_ in rows)
        order = ["skipped", "ok", "diverged", *UNFINISHED]
        tally = ", ".join(f"{counts[s]} {'skipped (already ok)' if s == 'skipped' else s}"
                          for s in order if counts[s])
        lines = [f"wcntk: sweep {self.sweep_dir}: {len(rows)} jobs: {tally or 'none'}"]
        width = max((len(str(job.relative_to(self.sweep_dir))) for _, job, _ in rows), default=0)
        for status, job, detail in rows:
            lines.append(f"  {status:<11} {str(job.relative_to(self.sweep_dir)):<{width}}  {detail}".rstrip())
        print("\n".join(lines), flush=True)
        if any(counts[s] for s in UNFINISHED):
            raise SystemExit(1)

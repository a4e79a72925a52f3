"""Where a run's numbers go: `metrics.csv` (incremental), `summary.json` (atomic),
and a Weights & Biases run (offline by default; never blocks a run).
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

WANDB_MODES = ("offline", "online", "disabled")


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _finite_or_none(value: float) -> Optional[float]:
    """JSON has no NaN/inf: store them as null."""
    return value if math.isfinite(value) else None


class CsvLog:
    """metrics.csv with a fixed header (`step` + metric names), one flushed row per logged step."""

    def __init__(self, path: Path, metric_names: Sequence[str]):
        self.columns = ["step", *metric_names]
        self.fh = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=self.columns, extrasaction="ignore")
        self.writer.writeheader()
        self.fh.flush()

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        self.writer.writerow({"step": step, **metrics})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class WandbLog:
    """One W&B run per job; falls back to offline if online init fails, and to no
    W&B at all (with a warning) if even that fails."""

    def __init__(self, mode: str, project: str, group: Optional[str], tags: List[str],
                 name: Optional[str], config: Dict[str, Any], run_dir: Path,
                 entity: Optional[str] = None):
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is in requirements
            warnings.warn("wandb is not installed; logging to files only")
            return
        kwargs = dict(project=project, group=group, tags=list(tags) or None, name=name,
                      config=config, dir=str(run_dir), entity=entity, reinit="finish_previous",
                      settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                              init_timeout=60))
        for attempt in ([mode, "offline"] if mode == "online" else [mode]):
            try:
                self.run = wandb.init(mode=attempt, **kwargs)
                break
            except Exception as err:  # noqa: BLE001 - any W&B failure must not block the run
                print(f"wcntk: wandb.init(mode={attempt}) failed: {err}", file=sys.stderr)
        if self.run is None:
            return
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({"step": step, **metrics})

    def update_config(self, values: Dict[str, Any]) -> None:
        if self.run is not None:
            self.run.config.update(values, allow_val_change=True)

    def finish(self, summary: Dict[str, Any], failed: bool) -> None:
        if self.run is None:
            return
        for key, value in summary.get("final", {}).items():
            self.run.summary[key] = value
        self.run.summary["status"] = summary.get("status")
        self.run.summary["wall_time_s"] = summary.get("wall_time_s")
        self.run.finish(exit_code=1 if failed else 0)


class RunRecorder:
    """Context manager that owns a run directory's outputs.

    Inside the block call `log(step, metrics)`; on exit `summary.json` is written
    atomically with status ok / diverged (as set by `set_result`) or failed (exception),
    and the W&B run is finished (marked failed unless status is ok).
    """

    def __init__(self, run_dir: Path, metric_names: Sequence[str], essentials: Dict[str, Any],
                 wandb_log: Optional[WandbLog] = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.essentials = dict(essentials)
        self.summary: Dict[str, Any] = {"status": "running", "message": None, "diverged_step": None,
                                        "config": self.essentials, "initial": {}, "final": {},
                                        "wall_time_s": None}
        self.wandb_log = wandb_log
        self.start = time.perf_counter()
        self.csv = CsvLog(self.run_dir / "metrics.csv", metric_names)
        write_json_atomic(self.run_dir / "summary.json", self.summary)

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        self.csv.log(step, metrics)
        if self.wandb_log is not None:
            self.wandb_log.log(step, metrics)

    def update_config(self, values: Dict[str, Any]) -> None:
        """Add facts known only once the run is set up (parameter count, data source, …)."""
        self.summary["config"].update(values)
        if self.wandb_log is not None:
            self.wandb_log.update_config(values)

    def set_result(self, status: str, message: Optional[str], diverged_step: Optional[int],
                   initial: Dict[str, float], final: Dict[str, float]) -> None:
        self.summary.update(status=status, message=message, diverged_step=diverged_step,
                            initial={k: _finite_or_none(v) for k, v in initial.items()},
                            final={k: _finite_or_none(v) for k, v in final.items()})

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.summary["status"] = "failed"
            self.summary["message"] = f"{exc_type.__name__}: {exc}".splitlines()[0]
        self.csv.close()
        self.summary["wall_time_s"] = round(time.perf_counter() - self.start, 3)
        write_json_atomic(self.run_dir / "summary.json", self.summary)
        if self.wandb_log is not None:
            try:
                self.wandb_log.finish(self.summary, failed=self.summary["status"] != "ok")
            except Exception as err:  # noqa: BLE001
                print(f"wcntk: wandb finish failed: {err}", file=sys.stderr)
        return False

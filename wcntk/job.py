"""One run from a plain config dict (the resolved Hydra config, or hand-written in
a notebook): validate, train network + twin, record metrics.csv, summary.json
and the W&B run in `run_dir`."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import library_configs, validate_config
from .lifecycle import interruptible
from .record import read_summary
from .tracking import RunRecorder
from .trainer import METRIC_NAMES, Trainer


def finished_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary of a run already completed with status ok in run_dir, else None: anything
    else (missing, failed, diverged, interrupted, `running` left by a killed process) re-runs."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") == "ok" else None


def default_run_name(cfg: dict[str, Any]) -> str:
    return (f"w{cfg['width']}-d{cfg['depth']}-{cfg['activation']}-{cfg['parameterization']}"
            f"-{cfg['optimizer']['name']}-s{cfg['seed']}")


def run_job(cfg: dict[str, Any], run_dir: str | Path, resume: bool = False,
            label: str | None = None) -> dict[str, Any]:
    """Train and record one run; returns the summary dict (wcntk.record's layout).

    With resume=True a run_dir whose summary.json already says ok is not run again (any other
    status, or none, runs it afresh). Status ok or diverged is returned; an exception after
    validation is recorded as `failed` and re-raised; SIGINT/SIGTERM/SIGUSR1/SIGUSR2 record
    `interrupted` and raise wcntk.lifecycle.Interrupted (its `summary` holds the record).
    `label` names the job in the lines it prints (a sweep job's override dirname).
    """
    # The record holds every key: a hand-written dict that leaves some out gets their defaults.
    cfg = asdict(validate_config(cfg))
    run_dir = Path(run_dir)
    if resume and (done := finished_summary(run_dir)) is not None:
        return done
    model, data, opt, train = library_configs(cfg)
    w = cfg["wandb"]
    with interruptible(), RunRecorder(run_dir, METRIC_NAMES, cfg, label=label) as recorder:
        recorder.start_wandb(w["mode"], project=w["project"], group=w["group"], tags=w["tags"],
                             name=w["name"] or default_run_name(cfg), entity=w["entity"],
                             init_timeout=w["init_timeout"])
        trainer = Trainer(model, data, opt, train, log=recorder.log)
        recorder.set_facts(trainer.facts())
        result = trainer.run(label=label)
        recorder.set_result(result.status, result.message, result.diverged_step)
    return recorder.summary

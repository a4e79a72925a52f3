"""One run from a plain config dict (the resolved Hydra config, or hand-written in
a notebook): validate, train network + twin, record metrics.csv, summary.json
and the W&B run in `run_dir`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from .schema import essentials, library_configs
from .tracking import RunRecorder, WandbLog, WANDB_MODES
from .trainer import METRIC_NAMES, Trainer, validate_all


def validate_config(cfg: Dict[str, Any]) -> None:
    """Raise ValueError (one readable line) for any bad setting, before any work."""
    validate_all(*library_configs(cfg))
    if cfg.get("threads") is not None and cfg["threads"] < 1:
        raise ValueError(f"threads must be >= 1 or null, got {cfg['threads']}")
    if cfg["wandb"]["mode"] not in WANDB_MODES:
        raise ValueError(f"wandb.mode must be one of {WANDB_MODES}, got {cfg['wandb']['mode']!r}")


def finished_summary(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The summary of a run already completed with status ok in run_dir, else None."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") == "ok" else None


def default_run_name(cfg: Dict[str, Any]) -> str:
    return (f"w{cfg['width']}-d{cfg['depth']}-{cfg['activation']}-{cfg['parameterization']}"
            f"-{cfg['optimizer']['name']}-s{cfg['seed']}")


def run_job(cfg: Dict[str, Any], run_dir: str | Path, resume: bool = False) -> Dict[str, Any]:
    """Train and record one run; returns the summary dict (status ok | diverged | failed).

    With resume=True a run_dir whose summary.json already says ok is not run again.
    Exceptions after validation are recorded as status failed and re-raised.
    """
    validate_config(cfg)
    run_dir = Path(run_dir)
    if resume and (done := finished_summary(run_dir)) is not None:
        return done
    model, data, opt, train = library_configs(cfg)
    w = cfg["wandb"]
    wandb_log = WandbLog(mode=w["mode"], project=w["project"], group=w["group"], tags=w["tags"],
                         name=w["name"] or default_run_name(cfg), config=cfg, run_dir=run_dir,
                         entity=w["entity"])
    with RunRecorder(run_dir, METRIC_NAMES, essentials(cfg), wandb_log) as recorder:
        trainer = Trainer(model, data, opt, train, log=recorder.log)
        recorder.update_config(trainer.facts())
        result = trainer.run()
        recorder.set_result(result.status, result.message, result.diverged_step, result.initial,
                            result.final)
    return recorder.summary

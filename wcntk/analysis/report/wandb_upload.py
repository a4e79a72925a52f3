"""Logging the report's tables and plots to W&B (never breaks the report)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd


def _wandb_section(runs: pd.DataFrame) -> dict:
    """wandb.project, .entity and .group of the first job whose summary.json config sets one of
    them ({} if none); values that are missing or an unresolved ${...} are left out."""
    keys = [c for c in ("wandb.project", "wandb.entity", "wandb.group") if c in runs]
    for _, row in runs[keys].iterrows():
        section = {k.split(".", 1)[1]: v for k, v in row.items()
                   if isinstance(v, str) and v and "${" not in v}
        if section:
            return section
    return {}


def wandb_group(runs: pd.DataFrame, sweep_dir) -> str:
    """wandb.group from the jobs' summary.json configs, else the sweep dir name."""
    return _wandb_section(runs).get("group") or Path(sweep_dir).resolve().name


def _wandb_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of df with every non-numeric column as str (W&B tables need one type per column)."""
    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype(str)
    return out


def log_to_wandb(result: dict, sweep_dir, mode: str = "offline") -> str | None:
    """Log the slope, local-slope and deviation-vs-correlation tables and the PNG plots as one
    W&B run "report" in the sweep's group.
    Returns the run directory, or None (with a warning) if anything in wandb fails."""
    try:
        import wandb
        section = _wandb_section(result["runs"])
        tables = {name: _wandb_ready(result[key]) for name, key in
                  (("slopes", "slopes"), ("local_slopes", "local"),
                   ("deviation_vs_correlation", "deviation"))}
        with wandb.init(project=section.get("project", "wcntk"), entity=section.get("entity"),
                        group=wandb_group(result["runs"], sweep_dir), name="report", job_type="report",
                        mode=mode, dir=str(result["out_dir"]),
                        config={"sweep_dir": str(sweep_dir), "n_jobs": len(result["runs"])}) as run:
            images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in result["files"]["plots"]
                      if p.suffix == ".png"}
            run.log({**{k: wandb.Table(dataframe=t) for k, t in tables.items()}, **images})
            return getattr(run, "dir", None)
    except Exception as e:  # noqa: BLE001 — wandb must never break the report
        warnings.warn(f"wandb logging failed, report written without it: {type(e).__name__}: {e}",
                      stacklevel=2)
        return None

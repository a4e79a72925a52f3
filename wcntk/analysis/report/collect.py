"""Reading a sweep's records into the runs table (one row per job), and its settings.

Setting. A job's setting is the tuple of config values (dotted keys of the nested config) that
vary across the sweep's validated jobs (not failed, not ``"config_validated": false``: a
failed job keeps its width and seed but never makes a key vary), except width, seed and the
bookkeeping keys of
:data:`wcntk.run.record.BOOKKEEPING_KEYS`; facts (effective lr, n_params, …) are never settings.
A setting is labelled by the last component of each key (the full key where two would clash;
``optimizer.lr_width_exponent`` is written α). Where the network (``model.kind``) varies, a
setting is labelled by its network instead: ``mlp``, ``transformer``, ``custom:make_net`` (the
factory's name), with the other keys that vary among that network's jobs in parentheses
(``mlp (lr=0.5)``); the sweep's other differences between networks (each arm's own lr) are
part of the network. Only jobs with status "ok" are fitted; every
other job (diverged, failed, interrupted, running, stale, unreadable) is listed in the
failures table, never dropped silently.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.metric_registry import stage_column as metric_column  # a bare name → initial/ or final/
from ...core.status import Status
from ...run.record import (
    SUMMARY_FILE,
    UnreadableRecord,
    effective_status,
    flatten,
    is_bookkeeping,
    load_record,
)
from ...run.rundir import SUPERSEDED_DIR, natural_key

JOB_COLUMNS = ("job_dir", "status", "message", "diverged_step", "last_step", "resumes", "config_validated",
               "record_problems")
SHORT_NAMES = {"lr_width_exponent": "α"}


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def metrics_csv_problem(path: Path) -> str:
    """Why a metrics.csv cannot be trusted ("" when it looks whole): empty (not even its header:
    a full disk, a copy cut short), NUL bytes (two writers), or a last line cut off (no final
    newline, or fewer fields than the header)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"metrics.csv unreadable ({type(e).__name__})"
    if not data:
        return "metrics.csv empty (no header)"
    if b"\0" in data:
        return "metrics.csv holds NUL bytes"
    lines = data.split(b"\n")
    if data and (not data.endswith(b"\n") or lines[-2].count(b",") != lines[0].count(b",")):
        return "metrics.csv truncated (last line incomplete)"
    return ""


def has_curves(job_dir: Path) -> bool:
    """Whether job_dir holds a metrics.csv the plots can read: a file with at least its header
    (what is whole of a damaged one is read; an empty one is listed by metrics_csv_problem)."""
    path = Path(job_dir) / "metrics.csv"
    return path.is_file() and path.stat().st_size > 0


def wandb_file_problem(job_dir: Path, status: Status) -> str:
    """"<name> truncated (no exit record)" for an offline W&B run file of a job that finished
    (status ok, diverged, failed or interrupted) whose records end before W&B's exit record, or
    that cannot be parsed; "" otherwise (and when W&B is not installed)."""
    files = sorted(job_dir.glob("wandb/*run-*/run-*.wandb"))
    if not files or status not in Status.ended() or find_spec("wandb") is None:
        return ""
    from ..wandb_records import read_records
    for f in files:
        try:
            if not any(r.WhichOneof("record_type") == "exit" for r in read_records(f)):
                return f"{f.name} truncated (no exit record)"
        except Exception as e:  # noqa: BLE001 — a torn protobuf or bad header: one line, not a traceback
            return f"{f.name} unreadable ({type(e).__name__})"
    return ""


def _job_row(path: Path, root: Path) -> dict:
    """The runs-table row of the summary.json at `path` (collect's columns), from its Record; a
    row with status "unreadable" and why, when it holds none."""
    row = {"job_dir": path.parent.relative_to(root).as_posix()}
    try:
        record = load_record(path)
    except UnreadableRecord as e:
        return {**row, "status": Status.UNREADABLE, "message": str(e)}
    row.update(status=effective_status(record), message=record.message,
               diverged_step=record.diverged_step, last_step=record.last_step,
               resumes=len(record.resumed_from), config_validated=record.config_validated is not False)
    if row["status"] == Status.STALE:
        row["message"] = row["message"] or "status running, but its process is gone (killed?)"
    problems = [p for p in (metrics_csv_problem(path.parent / "metrics.csv")
                            if (path.parent / "metrics.csv").is_file() else "",
                            wandb_file_problem(path.parent, row["status"])) if p]
    row["record_problems"] = "; ".join(problems)
    for k, v in flatten(record.config):
        row[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
    for k, v in record.facts.items():
        row[f"facts.{k}"] = v
    row["wall_time_s"] = _number(record.wall_time_s)
    row.update({f"initial/{k}": _number(v) for k, v in record.initial.items()})
    row.update({f"final/{k}": _number(v) for k, v in record.final.items()})
    return row


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The config keys among the columns of a `collect` table (facts.* included)."""
    return [c for c in runs.columns if c not in JOB_COLUMNS + ("wall_time_s", "setting")
            and not c.startswith(("initial/", "final/"))]


def sweep_root(sweep_dirs) -> Path:
    """The folder job_dir is relative to: the sweep dir, or the deepest folder holding all of
    several (their common path)."""
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, str | Path) else [Path(d) for d in sweep_dirs]
    if len(dirs) == 1:
        return dirs[0]
    return Path(os.path.commonpath([d.absolute() for d in dirs]))


def collect(sweep_dir) -> pd.DataFrame:
    """One row per job below sweep_dir (a folder, or several whose jobs are read together):
    job_dir (relative to :func:`sweep_root`), status (stale for a dead running job), message,
    diverged_step, last_step, resumes (how often it was continued from a checkpoint: requeued by
    SLURM or re-run), every config key (dotted), width, seed, facts.<k>, wall_time_s,
    initial/<metric>, final/<metric>. Unparsable summary.json files become rows with status
    "unreadable"."""
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else [Path(d) for d in sweep_dir]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a directory: a report reads the summary.json files below "
                                    f"a sweep's dir (or a dir of runs)")
    root = sweep_root(dirs)
    found = {p.absolute(): p for d in dirs for p in d.rglob(SUMMARY_FILE)
             if SUPERSEDED_DIR not in p.relative_to(d).parts}
    base = root.absolute()
    paths = sorted(found, key=lambda p: natural_key(p.relative_to(base).as_posix()))
    rows = [_job_row(p, base) for p in paths]
    if not rows:
        raise FileNotFoundError(f"no summary.json below {', '.join(map(str, dirs))}")
    runs = pd.DataFrame(rows)
    for c in JOB_COLUMNS + ("width", "seed"):
        if c not in runs:
            runs[c] = None
    for c in ("diverged_step", "last_step", "resumes"):
        runs[c] = pd.to_numeric(runs[c], errors="coerce").astype("Int64")
    cols = list(runs.columns)
    metrics = [c for c in cols if c.startswith("initial/")] + [c for c in cols if c.startswith("final/")]
    ordered = list(JOB_COLUMNS) + config_columns(runs) + ["wall_time_s"] + metrics
    return runs[[c for c in ordered if c in runs]]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "none"
    return f"{v:.10g}" if isinstance(v, (float, np.floating)) else str(v)


def _sort_key(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def is_setting_key(key: str) -> bool:
    """False for width and seed (also as model.width, train.seed, …), bookkeeping keys and facts."""
    return not (key.split(".")[-1] in ("width", "seed") or key.startswith("facts.")
                or is_bookkeeping(key))


def validated(runs: pd.DataFrame) -> pd.Series:
    """Rows whose config was validated and run: not unreadable, not failed, and not marked
    config_validated false (a failed-validation record carries the raw config it was asked
    to run)."""
    return ~runs["status"].isin((Status.UNREADABLE, Status.FAILED)) & (runs["config_validated"] != False)  # noqa: E712


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns that are setting keys and vary across the sweep's validated jobs
    (:func:`validated`: a failed job never makes a key look as if it varied)."""
    basis = runs[validated(runs)]
    return [c for c in config_columns(runs)
            if is_setting_key(c) and basis[c].nunique(dropna=False) > 1]


def setting_labels(columns: Sequence[str]) -> dict[str, str]:
    """Short label of each setting column: its last dotted component (α for lr_width_exponent),
    the full key where two columns would share one."""
    last = [c.split(".")[-1] for c in columns]
    return {c: SHORT_NAMES.get(s, s) if last.count(s) == 1 else c
            for c, s in zip(columns, last, strict=True)}


KIND = "model.kind"
KIND_ORDER = ("mlp", "cnn", "resnet", "transformer", "custom")


def network(row) -> str:
    """A job's network: its model.kind, a custom one with its factory's name (custom:make_net)."""
    kind = row.get(KIND)
    kind = "mlp" if _missing(kind) else str(kind)
    target = row.get("model.target")
    return f"{kind}:{str(target).rpartition('.')[2]}" if kind == "custom" and not _missing(target) else kind


def _network_keys(runs: pd.DataFrame, cols: list[str]) -> dict[str, list[str]]:
    """Per network, the setting columns (other than the network's own) that vary among its
    validated jobs: the keys its labels name in parentheses."""
    basis = runs[validated(runs)]
    nets = basis.apply(network, axis=1) if len(basis) else pd.Series(dtype=str)
    return {net: [c for c in cols if c not in (KIND, "model.target") and g[c].nunique(dropna=False) > 1]
            for net, g in basis.groupby(nets)}


def with_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy of runs with an ordered categorical "setting" label ("b_std=0.5, α=-1", or "all";
    by network where model.kind varies: "mlp", "transformer (lr=0.3)")."""
    cols = setting_columns(runs)
    names = setting_labels(cols)
    by_network = KIND in cols
    within = _network_keys(runs, cols) if by_network else {}

    def label(row) -> str:
        if row["status"] == Status.UNREADABLE:
            return "(unreadable)"
        if by_network:
            net = network(row)
            rest = ", ".join(f"{names[c]}={_fmt(row[c])}" for c in within.get(net, []))
            return f"{net} ({rest})" if rest else net
        return ", ".join(f"{names[c]}={_fmt(row[c])}" for c in cols) or "all"

    def order_key(row) -> tuple:
        keys = tuple(_sort_key(row[c]) for c in cols)
        if not by_network:
            return keys
        kind = network(row).split(":")[0]
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), network(row), *keys)

    out = runs.copy()
    labels = [label(r) for _, r in out.iterrows()]
    first = {}
    for lab, (_, r) in zip(labels, out.iterrows(), strict=False):
        first.setdefault(lab, order_key(r) if lab != "(unreadable)" else ((3,),))
    order = sorted(first, key=lambda lab: (lab == "(unreadable)", first[lab]))
    out.insert(1, "setting", pd.Categorical(labels, categories=order, ordered=True))
    return out


def _settings(runs: pd.DataFrame) -> list[str]:
    """The settings of a `with_settings` table, in order, without "(unreadable)"."""
    return [s for s in runs["setting"].cat.categories if s != "(unreadable)"]


def _setting_rows(runs: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The jobs of a setting, validated ones (:func:`validated`) first."""
    rows = runs[runs["setting"] == setting]
    return pd.concat([rows[validated(rows)], rows[~validated(rows)]])


def setting_config(runs: pd.DataFrame, setting: str) -> dict:
    """The config of a setting (dotted keys, from its first validated job, else its first job)
    for :func:`expected`."""
    rows = _setting_rows(runs, setting)
    return {c: v for c, v in rows.iloc[0][config_columns(runs)].items() if not _missing(v)}


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))




def failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Every job whose status is not "ok", with its setting, width, seed and message."""
    bad = runs[runs["status"] != Status.OK]
    cols = ["setting", "width", "seed", "status", "last_step", "diverged_step", "resumes", "message",
            "job_dir"]
    return bad[[c for c in cols if c in bad]].sort_values(["setting", "job_dir"]).reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Jobs per setting and status, with a total column and `resumes` (how often the setting's
    jobs were continued from a checkpoint: requeued by SLURM or re-run after an interruption)."""
    counts = pd.crosstab(runs["setting"], runs["status"])
    counts = counts[sorted(counts.columns, key=lambda s: (s != Status.OK, s))]
    counts["total"] = counts.sum(axis=1)
    counts["resumes"] = runs.groupby("setting")["resumes"].sum(min_count=0).reindex(counts.index).astype(int)
    return counts.reset_index()


def check_metrics(runs: pd.DataFrame, metrics: Sequence[str]) -> None:
    """ValueError naming the logged metrics when one of `metrics` is logged by no job."""
    logged = [c for c in runs.columns if c.startswith(("initial/", "final/"))]
    unknown = [m for m in metrics if metric_column(m) not in logged]
    if unknown:
        raise ValueError(f"metric(s) not logged by any job: {', '.join(unknown)}; logged: "
                         f"{', '.join(logged) or 'none'}")


def check_curve_width(runs: pd.DataFrame, width: float) -> None:
    """ValueError naming the sweep's widths when `width` is not one of them."""
    widths = sorted(pd.to_numeric(runs["width"], errors="coerce").dropna().unique())
    if width not in widths:
        raise ValueError(f"--curve-width {_fmt(width)} is not a width of this sweep; widths: "
                         f"{', '.join(_fmt(float(w)) for w in widths) or 'none'}")


def record_problems(runs: pd.DataFrame) -> pd.DataFrame:
    """Jobs whose metrics.csv or offline W&B run file is damaged (empty, truncated, NUL bytes)."""
    bad = runs[runs["record_problems"].fillna("") != ""]
    return bad[["setting", "width", "seed", "status", "record_problems", "job_dir"]].reset_index(drop=True)

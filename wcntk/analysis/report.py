"""Sweep report: width-scaling power laws of linearity deviation and derivative correlations,
each slope judged against the theory of its own setting, and the deviation against the
correlations (the paper's comparison).

Usage::

    python -m wcntk.analysis.report SWEEP_DIR [--out DIR] [--width-metric M [M ...]] [--curve-width N]
                           [--min-width N] [--formats png pdf] [--wandb]
                           [--wandb-mode offline|online|disabled]

or, from a notebook, ``make_report(sweep_dir)`` (returns the tables and the written paths).

Input: every ``summary.json`` below SWEEP_DIR (layout: :mod:`wcntk.run.record`) and, for the
curves, the ``metrics.csv`` next to it. Output (default ``SWEEP_DIR/report/``, written only
once the inputs are checked): ``runs.csv`` (+ ``runs.parquet`` when pyarrow imports),
``per_width.csv``, ``slopes.md`` / ``slopes.csv``, ``local_slopes.md`` / ``.csv``,
``deviation_vs_correlation.md`` / ``.csv``, ``failures.md`` / ``failures.csv``, ``report.md``
and ``plots/*.png|pdf``.

Bad input is one line, never a traceback: a summary.json that is not a record (not a JSON
object, a non-dict section, a non-numeric width or seed) is a job with status "unreadable";
a damaged metrics.csv (last line cut off, NUL bytes) or offline W&B run file (no exit record)
is listed under "Damaged records" of the job-status table; a metric named explicitly that no
job logged, or a --curve-width that is not a width of the sweep, is an error (exit 2) that
names the valid ones.

Setting. A job's setting is the tuple of config values (dotted keys of the nested config) that
vary across the sweep's validated jobs (not failed, not ``"config_validated": false``: a
failed job keeps its width and seed but never makes a key vary), except width, seed and the
bookkeeping keys of
:data:`wcntk.run.record.BOOKKEEPING_KEYS`; facts (effective lr, n_params, …) are never settings.
A setting is labelled by the last component of each key (the full key where two would clash;
``optimizer.lr_width_exponent`` is written α). Only jobs with status "ok" are fitted; every
other job (diverged, failed, interrupted, running, stale, unreadable) is listed in the
failures table, never dropped silently.

Metrics are named ``final/<name>`` (value at the last logged step) or ``init/<name>`` (at θ₀).
A bare name means ``init/`` for ``corr/*`` (the headline correlations are at θ₀), else ``final/``.

Per width (setting s, metric M, width n, seeds i = 1..k, finite values only)::

    mean = (1/k) Σ_i M_i,        s.e. = std_{ddof=1}(M_i) / √k

Slopes: :func:`wcntk.analysis.powerlaw.fit_power_law_by_seed` of M against n, per seed of a setting,
95 % Student-t CI across the seeds' slopes (t on S − 1 dof; docs/theory.md §8). Two fits:

    asymptotic   widths ≥ n_min (:func:`wcntk.analysis.asymptotic.choose_n_min`, the lack-of-fit rule of
                 docs/theory.md §7, or --min-width), ln M = a + b ln n + c n^{-1/2} per seed:
                 columns slope, ci_half, intercept, correction (mean c), …; the verdict
    all widths   every width, plain ln M = a + b ln n per seed: columns slope_all,
                 ci_half_all, …; shown, never judged

Local slopes between adjacent widths (:func:`wcntk.analysis.asymptotic.local_slopes`, Welch 95 %
interval across seeds) are tabulated and drawn. The deviation vs correlation table fits final
deviation against initial correlation by the pooled OLS of :func:`wcntk.analysis.powerlaw.fit_power_law`
(the (width, seed) points as independent; no correction term), over the jobs with width ≥ the
larger n_min of the two metrics.

Special cases: |M| ≤ 1e-30 in every ok run of the setting → "exactly 0", not fitted (e.g.
corr/C03 of a 1-hidden-layer ReLU net); fewer than 2 distinct widths → "n/a"; fewer than 3
widths ≥ n_min → no asymptotic fit ("n/a", no verdict, the all-widths fit still shown);
N = 2 → slope without CI. Single non-finite or ≤ 1e-30 values are left out of the fit and
counted in "note".

Theory: :func:`wcntk.analysis.theory.expected` per setting and metric (prediction, bound, exact 0 or
"—"), :func:`wcntk.analysis.theory.expected_ratio` for deviation vs correlation (β/γ; a lower bound
"≥" where an upper bound is divided by a negative exponent), derived in docs/theory.md; the
verdict is "yes"/"no" for a prediction (does the CI cover it), "consistent"/"above bound"
for a bound, "consistent"/"below bound" for a lower bound.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..run.record import effective_status, flatten, is_bookkeeping
from ..run.rundir import SUPERSEDED_DIR
from .asymptotic import MIN_TAIL_WIDTHS, choose_n_min, local_slopes
from .powerlaw import CORRECTION_EXPONENT, fit_power_law, fit_power_law_by_seed
from .theory import Expectation, expected, expected_ratio

ZERO_TOL = 1e-30
THEORY_DOC = Path(__file__).resolve().parents[2] / "docs" / "theory.md"
# Facts that the old summary layout kept inside its flat config: never settings.
OLD_LAYOUT_FACTS = ("n_params", "effective_lr", "data_source", "device")
JOB_COLUMNS = ("job_dir", "status", "message", "diverged_step", "last_step", "config_validated",
               "record_problems")
DEFAULT_METRICS = (
    "final/lin/func_rmse_test", "final/lin/func_mse_test", "final/lin/taylor_rmse_test",
    "final/lin/param_rel_change", "final/lin/ntk_rel_change", "final/lin/loss_gap_test",
    "init/corr/C02", "init/corr/C03", "init/corr/C11", "init/corr/step_ratio_2",
    "init/corr/step_ratio_3",
)
DEVIATIONS = ("final/lin/func_rmse_test", "final/lin/loss_gap_test")
CORRELATIONS = ("init/corr/C02", "init/corr/C11")
LOSS_CURVES = (("train", "net/train_loss", "twin/train_loss"), ("test", "net/test_loss", "twin/test_loss"))
SHORT_NAMES = {"lr_width_exponent": "α"}


# ----------------------------------------------------------------------------- collection

def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _axis_key(config: dict, name: str) -> str | None:
    """The config key of an axis ("width", "seed"): the key itself, else the one ending in .name."""
    if name in config:
        return name
    hits = [k for k in config if k.endswith("." + name)]
    return hits[0] if len(hits) == 1 else None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _malformed(s) -> str:
    """Why a parsed summary.json is not a record ("" when it is one)."""
    if not isinstance(s, dict):
        return f"not a record (a JSON {type(s).__name__})"
    for section in ("config", "facts", "initial", "final"):
        if s.get(section) is not None and not isinstance(s[section], dict):
            return f"not a record ({section} is a JSON {type(s[section]).__name__})"
    config = dict(flatten(s.get("config") or {}))
    for axis in ("width", "seed"):
        key = _axis_key(config, axis)
        value = config[key] if key is not None else s.get(axis)
        if value is not None and not _is_number(value):
            return f"not a record ({axis} {value!r} is not a number)"
    return ""


def metrics_csv_problem(path: Path) -> str:
    """Why a metrics.csv cannot be trusted ("" when it looks whole): NUL bytes (two writers),
    or a last line cut off (no final newline, or fewer fields than the header)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"metrics.csv unreadable ({type(e).__name__})"
    if b"\0" in data:
        return "metrics.csv holds NUL bytes"
    lines = data.split(b"\n")
    if data and (not data.endswith(b"\n") or lines[-2].count(b",") != lines[0].count(b",")):
        return "metrics.csv truncated (last line incomplete)"
    return ""


def wandb_file_problem(job_dir: Path, status: str) -> str:
    """"<name> truncated (no exit record)" for an offline W&B run file of a job that finished
    (status ok, diverged, failed or interrupted) whose records end before W&B's exit record, or
    that cannot be parsed; "" otherwise (and when W&B is not installed)."""
    files = sorted(job_dir.glob("wandb/*run-*/run-*.wandb"))
    if not files or status not in ("ok", "diverged", "failed", "interrupted") or find_spec("wandb") is None:
        return ""
    from .wandb_records import read_records
    for f in files:
        try:
            if not any(r.WhichOneof("record_type") == "exit" for r in read_records(f)):
                return f"{f.name} truncated (no exit record)"
        except Exception as e:  # noqa: BLE001 — a torn protobuf or bad header: one line, not a traceback
            return f"{f.name} unreadable ({type(e).__name__})"
    return ""


def _read_summary(path: Path, root: Path) -> dict:
    row = {"job_dir": path.parent.relative_to(root).as_posix()}
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {**row, "status": "unreadable", "message": f"{type(e).__name__}: {e}"}
    why = _malformed(s)
    if why:
        return {**row, "status": "unreadable", "message": why}
    row.update(status=effective_status(s), message=s.get("message"),
               diverged_step=s.get("diverged_step"), last_step=s.get("last_step"),
               config_validated=s.get("config_validated") is not False)
    if row["status"] == "stale":
        row["message"] = row["message"] or "status running, but its process is gone (killed?)"
    problems = [p for p in (metrics_csv_problem(path.parent / "metrics.csv")
                            if (path.parent / "metrics.csv").is_file() else "",
                            wandb_file_problem(path.parent, row["status"])) if p]
    row["record_problems"] = "; ".join(problems)
    config = dict(flatten(s.get("config") or {}))
    for k, v in config.items():
        row[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
    for axis in ("width", "seed"):
        key = _axis_key(config, axis)
        if key is not None or s.get(axis) is not None:
            row[axis] = config[key] if key is not None else s[axis]
    for k, v in (s.get("facts") or {}).items():
        row[f"facts.{k}"] = v
    row["wall_time_s"] = _number(s.get("wall_time_s"))
    row.update({f"init/{k}": _number(v) for k, v in (s.get("initial") or {}).items()})
    row.update({f"final/{k}": _number(v) for k, v in (s.get("final") or {}).items()})
    return row


def config_columns(runs: pd.DataFrame) -> list[str]:
    """The config keys among the columns of a `collect` table (facts.* included)."""
    return [c for c in runs.columns if c not in JOB_COLUMNS + ("wall_time_s", "setting")
            and not c.startswith(("init/", "final/"))]


def collect(sweep_dir) -> pd.DataFrame:
    """One row per job below sweep_dir: job_dir (relative), status (stale for a dead running
    job), message, diverged_step, last_step, every config key (dotted), width, seed, facts.<k>,
    wall_time_s, init/<metric>, final/<metric>. Unparsable summary.json files become rows with
    status "unreadable"."""
    root = Path(sweep_dir)
    paths = sorted((p for p in root.rglob("summary.json") if SUPERSEDED_DIR not in p.relative_to(root).parts),
                   key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.as_posix())])
    rows = [_read_summary(p, root) for p in paths]
    if not rows:
        raise FileNotFoundError(f"no summary.json below {root}")
    runs = pd.DataFrame(rows)
    for c in JOB_COLUMNS + ("width", "seed"):
        if c not in runs:
            runs[c] = None
    for c in ("diverged_step", "last_step"):
        runs[c] = pd.to_numeric(runs[c], errors="coerce").astype("Int64")
    cols = list(runs.columns)
    metrics = [c for c in cols if c.startswith("init/")] + [c for c in cols if c.startswith("final/")]
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
                or is_bookkeeping(key) or key in OLD_LAYOUT_FACTS)


def validated(runs: pd.DataFrame) -> pd.Series:
    """Rows whose config was validated and run: not unreadable, not failed, and not marked
    config_validated false (a failed-validation record carries the raw config it was asked
    to run)."""
    return ~runs["status"].isin(("unreadable", "failed")) & (runs["config_validated"] != False)  # noqa: E712


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


def with_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy of runs with an ordered categorical "setting" label ("b_std=0.5, α=-1", or "all")."""
    cols = setting_columns(runs)
    names = setting_labels(cols)

    def label(row) -> str:
        if row["status"] == "unreadable":
            return "(unreadable)"
        return ", ".join(f"{names[c]}={_fmt(row[c])}" for c in cols) or "all"

    out = runs.copy()
    labels = [label(r) for _, r in out.iterrows()]
    first = {}
    for lab, (_, r) in zip(labels, out.iterrows(), strict=False):
        first.setdefault(lab, tuple(_sort_key(r[c]) for c in cols) if lab != "(unreadable)" else ((3,),))
    order = sorted(first, key=first.get)
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


def metric_column(spec: str) -> str:
    """'final/…' or 'init/…' as given; a bare name → init/ for corr/*, else final/."""
    if spec.startswith(("final/", "init/")):
        return spec
    return ("init/" if spec.startswith("corr/") else "final/") + spec


# ----------------------------------------------------------------------------- fitting

FIT_COLUMNS = ("slope", "intercept", "stderr", "ci_half", "r2")


def _fit_row(x: np.ndarray, v: np.ndarray, row: dict, x_name: str = "widths", seeds: np.ndarray | None = None,
             corrections: bool = False) -> dict:
    """Fill row (result, note, n_points, n_<x_name>, fit columns) from points (x, v): with
    `seeds`, :func:`wcntk.analysis.powerlaw.fit_power_law_by_seed` (per-seed slopes, t across seeds;
    `corrections` adds the n^{-1/2} term), else the pooled :func:`wcntk.analysis.powerlaw.fit_power_law`."""
    finite = np.isfinite(v) & np.isfinite(x) & (x > 0)
    if not finite.any():
        return {**row, "note": "no finite values"}
    if (np.abs(v[finite]) <= ZERO_TOL).all():
        return {**row, "result": "exactly 0", "n_points": int(finite.sum()),
                f"n_{x_name}": len(np.unique(x[finite]))}
    use = finite & (v > ZERO_TOL)
    dropped = len(v) - int(use.sum())
    row = {**row, "n_points": int(use.sum()), f"n_{x_name}": len(np.unique(x[use])),
           "note": f"{dropped} non-finite/≤0 value(s) left out" if dropped else ""}
    if row[f"n_{x_name}"] < 2:
        return {**row, "note": "; ".join(filter(None, [f"fewer than 2 {x_name}", row["note"]]))}
    fit = (fit_power_law(x[use], v[use]) if seeds is None
           else fit_power_law_by_seed(x[use], v[use], seeds[use], corrections))
    return {**row, **fit, "result": "fit"}


def _usable(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.isfinite(w) & np.isfinite(v) & (w > 0) & (v > ZERO_TOL)


def regime(w: np.ndarray, v: np.ndarray, min_width: float | None = None) -> tuple[float, str]:
    """(n_min, rule) of metric values v at widths w: `min_width` as given ("--min-width"), else
    :func:`wcntk.analysis.asymptotic.choose_n_min` on the finite positive points."""
    if min_width is not None:
        return float(min_width), "--min-width"
    use = _usable(w, v)
    return choose_n_min(w[use], v[use])


def _judged_fit(x: np.ndarray, v: np.ndarray, w: np.ndarray, row: dict, n_min: float, rule: str,
                x_name: str, seeds: np.ndarray | None = None) -> dict:
    """All-points fit (columns *_all) and the asymptotic fit over points with width ≥ n_min
    (the plain columns, and the result the verdict reads). Fewer than MIN_TAIL_WIDTHS widths
    ≥ n_min: result "n/a", no verdict. With `seeds` (width fits): the asymptotic fit is the
    per-seed corrections-to-scaling fit, the all-widths fit a plain power law with the same
    per-seed interval (docs/theory.md §8); without (deviation vs correlation): pooled OLS."""
    everything = _fit_row(x, v, row, x_name, seeds)
    out = {**row, **{f"{k}_all": everything.get(k, math.nan) for k in FIT_COLUMNS},
           "result_all": everything["result"], "n_points_all": everything.get("n_points", 0),
           "n_min": n_min, "n_min_rule": rule, "n_widths_fit": 0, "note": everything.get("note", "")}
    if everything["result"] != "fit":   # exactly 0 or n/a: no regime to speak of
        return {**out, "n_min": math.nan, "n_min_rule": "", "result": everything["result"],
                "n_points": everything.get("n_points", 0),
                f"n_{x_name}": everything.get(f"n_{x_name}", 0)}
    tail = np.isfinite(w) & (w >= n_min) if math.isfinite(n_min) else np.zeros(len(w), bool)
    n_tail = len(np.unique(w[tail & _usable(w, v) & _usable(x, v)]))
    if n_tail < MIN_TAIL_WIDTHS:
        why = rule if not math.isfinite(n_min) else f"{n_tail} width(s) ≥ {_fmt(n_min)}"
        return {**out, "result": "n/a", "n_points": 0, f"n_{x_name}": n_tail,
                "note": "; ".join(filter(None, [f"no asymptotic fit ({why}; it needs "
                                                f"{MIN_TAIL_WIDTHS}): all-widths fit not judged",
                                                out["note"]]))}
    fit = _fit_row(x[tail], v[tail], row, x_name, None if seeds is None else seeds[tail], corrections=True)
    fit.setdefault("correction", 0.0)
    return {**out, **{k: fit[k] for k in (*FIT_COLUMNS, "correction", "result", "n_points", f"n_{x_name}")},
            "n_widths_fit": n_tail,
            "note": "; ".join(filter(None, [out["note"], rule if rule.startswith("auto (") else ""]))}


def _theory_columns(e: Expectation, row: dict) -> dict:
    return {"theory": e.text(), "theory_kind": e.kind, "theory_slope": e.slope, "theory_reason": e.reason,
            "verdict": e.verdict(row["result"], row.get("slope", math.nan), row.get("ci_half", math.nan))}


def _finish(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in (*FIT_COLUMNS, *(f"{k}_all" for k in FIT_COLUMNS), "n_min", "correction"):
        if c not in df:
            df[c] = math.nan
    if "n_widths_fit" not in df:
        df["n_widths_fit"] = 0
    for c in ("n_min_rule", "result_all"):
        if c not in df:
            df[c] = ""
    df["ci_low"] = df["slope"] - df["ci_half"]
    df["ci_high"] = df["slope"] + df["ci_half"]
    return df


def _metric_points(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return g["width"].astype(float).to_numpy(), g[metric].astype(float).to_numpy()


def fit_slopes(runs: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, min_width: float | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(slopes, per_width, local) for every setting × metric, from the status-ok rows of a
    `with_settings` table.

    slopes: the asymptotic fit over widths ≥ n_min (slope, ci_half, …, result "fit",
    "exactly 0" or "n/a"; n_min and n_min_rule from :func:`regime`), the all-widths fit beside
    it (slope_all, ci_half_all, r2_all, n_points_all, result_all), and theory, theory_kind,
    theory_slope, theory_reason and verdict (:func:`wcntk.analysis.theory.expected`, on the asymptotic
    fit). per_width: mean and s.e. over seeds, in_fit (width ≥ n_min). local: the local slopes
    of :func:`wcntk.analysis.asymptotic.local_slopes`, in_fit when both widths are ≥ n_min."""
    cols = setting_columns(runs)
    ok = runs[runs["status"] == "ok"]
    slope_rows, width_rows, local_rows = [], [], []
    for setting in _settings(runs):
        g = ok[ok["setting"] == setting]
        keys = _setting_rows(runs, setting)[cols].iloc[0].to_dict()
        config = setting_config(runs, setting)
        for metric in map(metric_column, metrics):
            row = {"setting": setting, **keys, "metric": metric, "result": "n/a", "note": "",
                   "n_points": 0, "n_widths": 0}
            if g.empty:
                row["note"] = "no ok jobs"
            elif metric not in g:
                row["note"] = "not logged"
            else:
                w, v = _metric_points(g, metric)
                n_min, rule = regime(w, v, min_width)
                finite = np.isfinite(v) & np.isfinite(w) & (w > 0)
                for width in np.unique(w[finite]):
                    vals = v[finite & (w == width)]
                    width_rows.append({"setting": setting, "metric": metric, "width": width, "n": len(vals),
                                       "mean": vals.mean(),
                                       "se": vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1
                                       else math.nan, "in_fit": bool(width >= n_min)})
                local_rows += [{"setting": setting, "metric": metric, **r,
                                "in_fit": bool(r["width_lo"] >= n_min)} for r in local_slopes(w, v)]
                seeds = g["seed"].to_numpy() if "seed" in g else np.zeros(len(g))
                row = _judged_fit(w, v, w, row, n_min, rule, "widths", seeds)
            slope_rows.append({**row, **_theory_columns(expected(metric, config), row)})
    per_width = pd.DataFrame(width_rows, columns=["setting", "metric", "width", "n", "mean", "se", "in_fit"])
    local = pd.DataFrame(local_rows, columns=["setting", "metric", "width_lo", "width_hi", "slope", "stderr",
                                              "df", "ci_half", "n_lo", "n_hi", "in_fit"])
    return _finish(slope_rows), per_width, local


def fit_deviation_vs_correlation(runs: pd.DataFrame, deviations: Sequence[str] = DEVIATIONS,
                                 correlations: Sequence[str] = CORRELATIONS,
                                 min_width: float | None = None) -> pd.DataFrame:
    """Per setting, deviation ∝ correlation^b: one row per setting × deviation × correlation.
    Asymptotic fit (plain columns, the verdict's) over the ok jobs of width ≥ n_min, where n_min
    is the larger of the two metrics' :func:`regime` (both must be asymptotic for b = β/γ), or
    `min_width`; the fit over all ok jobs beside it (*_all). theory from
    :func:`wcntk.analysis.theory.expected_ratio`."""
    ok = runs[runs["status"] == "ok"]
    rows = []
    for setting in _settings(runs):
        g = ok[ok["setting"] == setting]
        config = setting_config(runs, setting)
        for dev in map(metric_column, deviations):
            for corr in map(metric_column, correlations):
                row = {"setting": setting, "deviation": dev, "correlation": corr, "result": "n/a",
                       "note": "", "n_points": 0, "n_values": 0}
                if g.empty:
                    row["note"] = "no ok jobs"
                elif dev not in g or corr not in g:
                    row["note"] = "not logged"
                else:
                    (w, y), (_, x) = _metric_points(g, dev), _metric_points(g, corr)
                    if min_width is not None:
                        n_min, rule = float(min_width), "--min-width"
                    else:
                        (n_dev, r_dev), (n_corr, r_corr) = regime(w, y), regime(w, x)
                        n_min = max(n_dev, n_corr)
                        rule = r_dev if n_dev >= n_corr else r_corr
                    row = _judged_fit(x, y, w, row, n_min, rule, "values")
                    if row["result"] == "fit" and row["n_points"] < 3:
                        row["note"] = "; ".join(filter(None, ["2 points: no CI", row["note"]]))
                rows.append({**row, **_theory_columns(expected_ratio(dev, corr, config), row)})
    return _finish(rows)


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Every job whose status is not "ok", with its setting, width, seed and message."""
    bad = runs[runs["status"] != "ok"]
    cols = ["setting", "width", "seed", "status", "last_step", "diverged_step", "message", "job_dir"]
    return bad[[c for c in cols if c in bad]].sort_values(["setting", "job_dir"]).reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Jobs per setting and status, with a total column."""
    counts = pd.crosstab(runs["setting"], runs["status"])
    counts = counts[sorted(counts.columns, key=lambda s: (s != "ok", s))]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


# ----------------------------------------------------------------------------- markdown

def markdown_table(df: pd.DataFrame) -> str:
    """GitHub markdown table of df (cells stringified, '|' escaped, NaN → empty)."""
    def cell(v) -> str:
        return "" if _missing(v) else _fmt(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


SLOPES_HEADER = ("Width exponent b, judged on the asymptotic regime: per seed, least squares of "
                 "ln(metric) = a + b·ln(width) + c·width^(−1/2) (the leading finite-width correction) on "
                 "the status-ok jobs of each setting with width ≥ n_min; the slope is the mean of the "
                 "seeds' b and ± the 95 % Student-t half-width t_{0.975, S−1}·sd(b)/√S across the S seeds "
                 "(a seed's points are correlated across widths: seeds are the replicates). n_min is "
                 "the smallest width from which the points pass the 5 % lack-of-fit F test of one power "
                 "law (seed scatter against the bend of the width means; \"auto\", at least 3 widths), "
                 "or --min-width; a plain power law over all widths (same per-seed interval) is shown "
                 "beside it and never judged. "
                 "\"theory\" is the setting's expected slope: a prediction (verdict "
                 "yes/no: does the CI cover it), a bound \"≤ b\" (verdict consistent when slope − CI ≤ b), "
                 "\"0 exactly\", or \"—\" where no result applies; the regime rule, the reasons and the "
                 "derivations are in docs/theory.md of the wcntk repository.")
LOCAL_HEADER = ("Local slopes (m(n') − m(n)) / (ln n' − ln n) between adjacent widths, m the mean of "
                "ln(metric) over seeds, ± the 95 % Welch-t interval across seeds; * marks the pairs "
                "inside the asymptotic fit (both widths ≥ n_min).")
DEVIATION_HEADER = ("Final deviation vs initial correlation, per setting: slope b of ln(deviation) = a + "
                    "b·ln(correlation), 95 % Student-t CI, over the ok jobs with width ≥ n_min (the larger "
                    "n_min of the two metrics, or --min-width); the fit over all widths beside it, not "
                    "judged. Theory: a deviation ∝ n^β against a correlation ∝ n^γ has slope β/γ; an "
                    "upper bound β over γ < 0 gives a lower bound \"≥ β/γ\" (verdict consistent when "
                    "slope + CI ≥ β/γ, else below bound).")


def _slope_text(r, suffix: str = "") -> str:
    result, slope, half = (getattr(r, k + suffix) for k in ("result", "slope", "ci_half"))
    if result != "fit":
        return result
    return f"{slope:+.3f} ± {half:.3f}" if not math.isnan(half) else f"{slope:+.3f} (no CI)"


def _range_text(r) -> str:
    """"≥ 64 (5 widths, auto)": the asymptotic fit's width range."""
    if r.result != "fit":
        return ""
    return f"≥ {_fmt(r.n_min)} ({r.n_widths_fit} widths, {r.n_min_rule})"


def slopes_markdown(slopes: pd.DataFrame) -> str:
    """The slope table as markdown (one row per setting × metric): asymptotic fit (judged) and
    all-widths fit (shown)."""
    rows = [{"setting": r.setting, "metric": r.metric, "asymptotic slope ± 95% CI (t)": _slope_text(r),
             "widths fitted": _range_text(r), "R²": f"{r.r2:.3f}" if r.result == "fit" else "",
             "all widths (not judged)": _slope_text(r, "_all"), "theory": r.theory, "verdict": r.verdict,
             "note": r.note}
            for r in slopes.itertuples(index=False)]
    return markdown_table(pd.DataFrame(rows))


def local_markdown(local: pd.DataFrame) -> str:
    """The local slopes as a markdown table: one row per setting × metric, one column per
    pair of adjacent widths."""
    if local.empty:
        return "No local slopes (fewer than 2 widths)."
    cell = local.assign(
        pair=[f"{_fmt(a)}→{_fmt(b)}" for a, b in zip(local["width_lo"], local["width_hi"], strict=True)],
        text=[f"{s:+.2f}" + (f" ± {h:.2f}" if math.isfinite(h) else "") + ("*" if f else "")
              for s, h, f in zip(local["slope"], local["ci_half"], local["in_fit"], strict=True)])
    pairs = list(dict.fromkeys(cell.sort_values("width_lo")["pair"]))
    table = cell.pivot_table(index=["setting", "metric"], columns="pair", values="text", aggfunc="first",
                             observed=True, sort=False)
    return markdown_table(table.reindex(columns=pairs).reset_index())


def deviation_markdown(dev: pd.DataFrame) -> str:
    """The deviation-vs-correlation table as markdown, with theory and verdict."""
    rows = [{"setting": r.setting, "deviation (final)": r.deviation.split("/", 1)[1],
             "correlation (init)": r.correlation.split("/", 1)[1],
             "asymptotic slope ± 95% CI (t)": _slope_text(r), "widths fitted": _range_text(r),
             "R²": f"{r.r2:.3f}" if r.result == "fit" else "",
             "all widths (not judged)": _slope_text(r, "_all"), "theory": r.theory, "verdict": r.verdict,
             "note": r.note}
            for r in dev.itertuples(index=False)]
    return markdown_table(pd.DataFrame(rows))


def theory_markdown(slopes: pd.DataFrame) -> str:
    """One line per metric and reason of the slope table's theory entries, with each setting's value."""
    lines = []
    for (metric, kind, reason), g in slopes[slopes["theory_reason"] != ""].groupby(
            ["metric", "theory_kind", "theory_reason"], sort=False):
        values = "; ".join(f"{r.setting}: {r.theory}" for r in g.itertuples(index=False))
        lines.append(f"- `{metric}`, {kind}: {reason} ({values})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots

FADED = 0.3   # alpha of the widths left out of the asymptotic fit


def _setting_colors(runs: pd.DataFrame) -> dict[str, str]:
    return {s: f"C{i % 10}" for i, s in enumerate(runs["setting"].cat.categories)}


def _tick_text(x: float, _pos=None) -> str:
    """Compact tick label: 0.05, 300, 2·10⁻⁴ (mathtext) outside 1e-3 … 1e4."""
    if x <= 0:
        return ""
    if 1e-3 <= x < 1e4:
        return f"{x:g}"
    mantissa, exponent = f"{x:.0e}".split("e")
    power = f"10^{{{int(exponent)}}}"
    return f"${power}$" if mantissa == "1" else rf"${mantissa}\cdot{power}$"


def tidy_log_axis(axis, fontsize: float) -> None:
    """Readable ticks on a log axis (ax.xaxis or ax.yaxis) whatever its span: major ticks at
    1·10^k (many decades), 1, 2, 5·10^k (a few) or 1, 2, 3, 5·10^k (under one), labelled
    compactly; minor ticks never labelled. Base-2 axes (powers-of-two widths) get every power
    of two, or every other one when there are more than 8."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax = axis.axes
    ax.autoscale_view()
    lo, hi = ax.get_xlim() if axis is ax.xaxis else ax.get_ylim()
    lo, hi = sorted((max(lo, 1e-300), max(hi, 1e-300)))
    if axis.get_scale() == "log" and getattr(axis.get_transform(), "base", 10) == 2:
        n = math.floor(math.log2(hi)) - math.ceil(math.log2(lo)) + 1
        step = 1 if n <= 8 else 2
        first = math.ceil(math.log2(lo))
        axis.set_ticks([2.0 ** k for k in range(first, math.floor(math.log2(hi)) + 1, step)])
        axis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    else:
        decades = math.log10(hi / lo)
        subs = (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 0.9 else (1.0, 2.0, 3.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
        axis.set_major_formatter(FuncFormatter(_tick_text))
    axis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x" if axis is ax.xaxis else "y", which="both", labelsize=fontsize)


def _set_width_axis(ax, widths) -> None:
    powers_of_two = all(w > 0 and float(w).is_integer() and (int(w) & (int(w) - 1)) == 0 for w in widths)
    ax.set_xscale("log", base=2 if powers_of_two else 10)


def _empty_panel(ax, fontsize: float, text: str = "no positive values to plot") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center",
            transform=ax.transAxes, fontsize=fontsize + 1, color="0.4")


def _fit_label(r) -> str:
    """"n ≥ 64: −0.52 ± 0.04 · all: −0.41 ± 0.04 · theory ≤ −0.5"."""
    asym = (f"n ≥ {_fmt(r.n_min)}: {_slope_text(r)}" if r.result == "fit"
            else r.result if r.result == "exactly 0" else "no asymptotic fit")
    every = f" · all: {_slope_text(r, '_all')}" if r.result_all == "fit" else ""
    theory = "" if r.theory_kind == "none" else f" · theory {r.theory}"
    return f"{asym}{every}{theory}"


def draw_width_scaling(ax, metric: str, slopes: pd.DataFrame, per_width: pd.DataFrame,
                       colors: dict[str, str], fontsize: float = 8) -> None:
    """Metric vs width on log-log axes, per setting: mean ± s.e. over seeds (error bars; widths
    below n_min faded), the asymptotic fit (solid, over its own width range only), the theory's
    slope anchored at the widest width (dashed: prediction, dash-dot: bound)."""
    all_widths = []
    rows = slopes[slopes["metric"] == metric]
    for r in rows.itertuples(index=False):
        color = colors[r.setting]
        pw = per_width[(per_width["setting"] == r.setting) & (per_width["metric"] == metric)
                       & (per_width["mean"] > 0)].sort_values("width")
        label = f"{r.setting}: {_fit_label(r)}" if len(rows) > 1 else _fit_label(r)
        if pw.empty:
            ax.plot([], [], " ", label=label)
            continue
        w, m = pw["width"].to_numpy(), pw["mean"].to_numpy()
        se = np.nan_to_num(pw["se"].to_numpy())
        inside = pw["in_fit"].to_numpy(bool) if r.result == "fit" else np.ones(len(w), bool)
        all_widths.extend(w)
        ax.plot(w, m, "-", color=color, lw=0.8, alpha=0.5)
        for part, alpha in ((inside, 1.0), (~inside, FADED)):
            if part.any():
                ax.errorbar(w[part], m[part], yerr=[np.minimum(se[part], 0.999 * m[part]), se[part]], fmt="o",
                            color=color, ms=4, capsize=3, alpha=alpha,
                            label=label if alpha == 1.0 else None)
        if r.result == "fit":
            tail = np.geomspace(r.n_min, w.max(), 50)
            corr = 0.0 if pd.isna(getattr(r, "correction", 0.0)) else r.correction
            ax.plot(tail, np.exp(r.intercept + corr * tail ** -CORRECTION_EXPONENT) * tail ** r.slope, "-",
                    color=color, lw=1.6, alpha=0.8)
        if r.theory_kind in ("prediction", "bound") and len(w) > 1:
            grid = np.geomspace(w.min(), w.max(), 50)
            style = "--" if r.theory_kind == "prediction" else "-."
            ax.plot(grid, m[-1] * (grid / w[-1]) ** r.theory_slope, style, color="0.35", lw=0.9)
    if all_widths:
        _set_width_axis(ax, all_widths)
        ax.set_yscale("log")
        tidy_log_axis(ax.xaxis, fontsize)
        tidy_log_axis(ax.yaxis, fontsize)
    else:   # every setting exactly 0 (or n/a): nothing to draw on log axes
        _empty_panel(ax, fontsize)
    stage, name = metric.split("/", 1)
    ax.set_title(f"{name} ({'at init' if stage == 'init' else 'final'}) vs width", fontsize=fontsize + 2)
    ax.set_xlabel("width n", fontsize=fontsize + 1)
    ax.set_ylabel(name, fontsize=fontsize + 1)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(fontsize=fontsize - 1, loc="best")


def draw_local_slopes(ax, metric: str, slopes: pd.DataFrame, local: pd.DataFrame,
                      colors: dict[str, str], fontsize: float = 8) -> None:
    """Local slope between adjacent widths vs width (at the pair's geometric mean; ± 95 % across
    seeds; pairs outside the asymptotic fit faded), each setting's theory as a horizontal line
    (dashed: prediction, dash-dot: bound)."""
    rows = slopes[slopes["metric"] == metric]
    widths = []
    for i, r in enumerate(rows.itertuples(index=False)):
        color = colors[r.setting]
        loc = local[(local["setting"] == r.setting) & (local["metric"] == metric)]
        if r.theory_kind in ("prediction", "bound"):
            ax.axhline(r.theory_slope, color=color if len(rows) > 1 else "0.35", lw=0.9,
                       ls="--" if r.theory_kind == "prediction" else "-.")
        if loc.empty:
            continue
        x = np.sqrt(loc["width_lo"] * loc["width_hi"]).to_numpy() * 2 ** (0.06 * (i - (len(rows) - 1) / 2))
        y, h = loc["slope"].to_numpy(), np.nan_to_num(loc["ci_half"].to_numpy())
        inside = loc["in_fit"].to_numpy(bool) if r.result == "fit" else np.ones(len(x), bool)
        widths += list(loc["width_lo"]) + list(loc["width_hi"])
        for part, alpha in ((inside, 1.0), (~inside, FADED)):
            if part.any():
                ax.errorbar(x[part], y[part], yerr=h[part], fmt="s", ms=3, capsize=2, color=color,
                            alpha=alpha)
    if widths:
        _set_width_axis(ax, widths)
        ax.set_xlim(min(widths) / 1.15, max(widths) * 1.15)
        tidy_log_axis(ax.xaxis, fontsize)
        ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
    else:
        _empty_panel(ax, fontsize, "no local slopes (no positive values at 2 widths)")
    ax.set_xlabel("width n (between adjacent widths)", fontsize=fontsize + 1)
    ax.set_ylabel("local slope", fontsize=fontsize + 1)
    ax.tick_params(which="both", labelsize=fontsize)
    ax.grid(True, which="major", alpha=0.25)


def width_figures(runs: pd.DataFrame, slopes: pd.DataFrame, per_width: pd.DataFrame,
                  local: pd.DataFrame, metrics: Sequence[str]) -> dict[str, Figure]:
    """One figure per metric ("width_<metric>": the metric above, its local slopes below), a
    grid of the metrics ("width_all") and a grid of their local slopes ("local_slopes_all")."""
    colors = _setting_colors(runs)
    metrics = [metric_column(m) for m in metrics]
    figs = {}
    for metric in metrics:
        fig = Figure(figsize=(6.4, 6.6), layout="constrained")
        top, bottom = fig.subplots(2, 1, height_ratios=[2.4, 1])
        draw_width_scaling(top, metric, slopes, per_width, colors)
        draw_local_slopes(bottom, metric, slopes, local, colors)
        figs["width_" + re.sub(r"[^A-Za-z0-9]+", "_", metric)] = fig
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    for name, title, draw, data in (
            ("width_all", "width scaling (mean ± s.e. over seeds; solid: asymptotic fit with its n^-1/2 "
             "correction, over its widths; faded: widths below n_min; dashed: predicted slope; "
             "dash-dot: bound)", draw_width_scaling, per_width),
            ("local_slopes_all", "local slopes between adjacent widths (± 95 % across seeds; faded: below "
             "n_min; horizontal: theory)", draw_local_slopes, local)):
        grid = Figure(figsize=(5.4 * ncols, 4.0 * nrows), layout="constrained")
        for i, metric in enumerate(metrics):
            ax = grid.add_subplot(nrows, ncols, i + 1)
            draw(ax, metric, slopes, data, colors, fontsize=7)
            if draw is draw_local_slopes:
                stage, short = metric.split("/", 1)
                ax.set_title(f"{short} ({'at init' if stage == 'init' else 'final'})", fontsize=9)
        grid.suptitle(title, fontsize=10)
        figs[name] = grid
    return figs


def plot_deviation_vs_correlation(runs: pd.DataFrame, dev: pd.DataFrame) -> Figure:
    """Final deviation vs initial correlation on log-log axes: every ok (width, seed) point,
    colored by setting, marker size growing with width, faded below the fit's n_min; the
    asymptotic fit over its own range (solid) and the theory's slope anchored at the widest
    width's mean point (dashed: prediction, dash-dot: bound or lower bound)."""
    colors = _setting_colors(runs)
    ok = runs[runs["status"] == "ok"]
    devs, corrs = list(dict.fromkeys(dev["deviation"])), list(dict.fromkeys(dev["correlation"]))
    fig = Figure(figsize=(5.6 * len(corrs), 4.4 * len(devs)), layout="constrained")
    axes = fig.subplots(len(devs), len(corrs), squeeze=False)
    widths = np.log2(ok["width"].astype(float)) if len(ok) else pd.Series(dtype=float)
    size = 12 + 10 * (widths - widths.min()) if len(ok) else widths
    for (i, d), (j, c) in ((a, b) for a in enumerate(devs) for b in enumerate(corrs)):
        ax, drawn = axes[i][j], False
        pairs = dev[(dev["deviation"] == d) & (dev["correlation"] == c)]
        for r in pairs.itertuples(index=False):
            g = ok[ok["setting"] == r.setting]
            if d not in g or c not in g:
                continue
            x, y = g[c].astype(float).to_numpy(), g[d].astype(float).to_numpy()
            w = g["width"].astype(float).to_numpy()
            keep = np.isfinite(x) & np.isfinite(y) & (x > ZERO_TOL) & (y > ZERO_TOL)
            if not keep.any():
                continue
            drawn = True
            inside = keep & (w >= r.n_min) if r.result == "fit" else keep
            label = f"{r.setting}: {_fit_label(r)}" if len(pairs) > 1 else _fit_label(r)
            for part, alpha, lab in ((inside, 0.8, label), (keep & ~inside, FADED, None)):
                if part.any():
                    ax.scatter(x[part], y[part], s=size.loc[g.index].to_numpy()[part],
                               color=colors[r.setting], alpha=alpha, label=lab)
            if r.result == "fit":
                tail = np.geomspace(x[inside].min(), x[inside].max(), 50)
                ax.plot(tail, np.exp(r.intercept) * tail ** r.slope, "-", color=colors[r.setting], lw=1.4)
            if r.theory_kind in ("prediction", "bound", "lower bound"):
                widest = keep & (w == w[keep].max())
                x0, y0 = np.exp(np.log(x[widest]).mean()), np.exp(np.log(y[widest]).mean())
                grid = np.geomspace(x[keep].min(), x[keep].max(), 50)
                ax.plot(grid, y0 * (grid / x0) ** r.theory_slope,
                        "--" if r.theory_kind == "prediction" else "-.", color="0.35", lw=0.9)
        if drawn:
            ax.set_xscale("log")
            ax.set_yscale("log")
            tidy_log_axis(ax.xaxis, 8)
            tidy_log_axis(ax.yaxis, 8)
            ax.legend(fontsize=7, loc="best")
        else:
            _empty_panel(ax, 8)
        ax.set_xlabel(f"{c.split('/', 1)[1]} at init", fontsize=9)
        ax.set_ylabel(f"{d.split('/', 1)[1]} (final)", fontsize=9)
        ax.grid(True, which="major", alpha=0.25)
    fig.suptitle("final linearity deviation vs initial correlation (one point per width and seed; larger "
                 "marker = wider; faded: below n_min; solid: asymptotic fit; dashed/dash-dot: theory)",
                 fontsize=9)
    return fig


def plot_deviation_trajectories(runs: pd.DataFrame, sweep_dir, metrics: Sequence[str] = DEVIATIONS
                                ) -> Figure | None:
    """Each deviation vs step, one line per width (mean over the ok seeds that have a metrics.csv),
    one row per setting; None when no ok job has a metrics.csv."""
    root = Path(sweep_dir)
    names = [metric_column(m).split("/", 1)[1] for m in metrics]
    ok = runs[(runs["status"] == "ok") & runs["job_dir"].map(lambda d: (root / d / "metrics.csv").is_file())]
    settings = [s for s in runs["setting"].cat.categories if (ok["setting"] == s).any()]
    if not settings:
        return None
    widths = sorted(ok["width"].astype(float).unique())
    cmap = {w: c for w, c in zip(widths, _viridis(len(widths)), strict=False)}
    fig = Figure(figsize=(5.2 * len(names) + 1.4, 3.3 * len(settings) + 0.6), layout="constrained")
    axes = fig.subplots(len(settings), len(names), squeeze=False)
    for row, setting in zip(axes, settings, strict=False):
        jobs = ok[ok["setting"] == setting]
        curves = {w: [pd.read_csv(root / d / "metrics.csv") for d in jobs.loc[jobs["width"] == w, "job_dir"]]
                  for w in sorted(jobs["width"].astype(float).unique())}
        for ax, name in zip(row, names, strict=False):
            for w, frames in curves.items():
                frames = [f[["step", name]].dropna() for f in frames if name in f]
                if not frames:
                    continue
                mean = pd.concat(frames).groupby("step")[name].mean()
                mean = mean[mean > 0]
                if len(mean):
                    ax.plot(mean.index, mean.to_numpy(), "-", color=cmap[w], lw=1.3,
                            label=f"width {_fmt(w)} ({len(frames)} seed{'s' if len(frames) > 1 else ''})")
            if ax.lines:
                ax.set_yscale("log")
                tidy_log_axis(ax.yaxis, 8)
                if ax is row[-1]:   # one legend per row, outside the curves
                    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
            ax.set_title(f"{name} — {setting}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            ax.grid(True, which="major", alpha=0.25)
    fig.suptitle("linearity deviation during training, per width (mean over seeds)")
    return fig


def _viridis(n: int) -> list:
    from matplotlib import colormaps
    return [colormaps["viridis"](t) for t in np.linspace(0.0, 0.9, max(n, 1))][:n]


def curve_jobs(runs: pd.DataFrame, sweep_dir, width: float | None = None) -> tuple[float, pd.DataFrame]:
    """(width, one job per setting) for the loss curves: the given width (default: the largest
    width of an ok job, else of any job), first seed, ok jobs preferred, metrics.csv required."""
    root = Path(sweep_dir)
    ok = runs[runs["status"] == "ok"]
    if width is None:
        width = (ok if ok["width"].notna().any() else runs)["width"].max()
    cand = runs[(runs["width"] == width)
                & runs["job_dir"].map(lambda d: (root / d / "metrics.csv").is_file())]
    cand = cand.assign(_bad=cand["status"] != "ok").sort_values(["_bad", "seed", "job_dir"])
    return width, cand.drop_duplicates("setting").sort_values("setting").drop(columns="_bad")


def plot_loss_curves(runs: pd.DataFrame, sweep_dir, width: float | None = None) -> Figure | None:
    """Network vs linearized twin loss vs step (train | test panels, one row per setting), read
    from the metrics.csv of the `curve_jobs`; None when no such job has a metrics.csv."""
    width, jobs = curve_jobs(runs, sweep_dir, width)
    if jobs.empty:
        return None
    fig = Figure(figsize=(10, 3.2 * len(jobs) + 0.6), layout="constrained")
    axes = fig.subplots(len(jobs), 2, squeeze=False)
    for (_, job), row in zip(jobs.iterrows(), axes, strict=False):
        curves = pd.read_csv(Path(sweep_dir) / job["job_dir"] / "metrics.csv")
        for ax, (split, net, twin) in zip(row, LOSS_CURVES, strict=False):
            positive = True
            for col, style, who in ((net, "-", "network"), (twin, "--", "linearized twin")):
                if col in curves:
                    c = curves[["step", col]].dropna()
                    ax.plot(c["step"], c[col], style, lw=1.4, label=f"{who} ({col})")
                    positive &= bool((c[col] > 0).all())
            if positive and ax.lines:
                ax.set_yscale("log")
                tidy_log_axis(ax.yaxis, 8)
            status = "" if job["status"] == "ok" else f" [{job['status']}]"
            ax.set_title(f"{job['setting']} — seed {_fmt(job['seed'])}, {split}{status}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel(f"{split} loss")
            ax.grid(True, which="major", alpha=0.25)
            ax.legend(fontsize=7)
    fig.suptitle(f"network vs linearized twin, width {_fmt(width)}")
    return fig


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write fig as stem.<fmt> for each format; returns the paths."""
    paths = [stem.with_suffix("." + fmt) for fmt in formats]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths


# ----------------------------------------------------------------------------- wandb

def _hydra_wandb_section(runs: pd.DataFrame, sweep_dir) -> dict:
    """The `wandb` section of the first job's .hydra/config.yaml that has one ({} if none)."""
    import yaml
    for d in runs["job_dir"]:
        path = Path(sweep_dir) / d / ".hydra" / "config.yaml"
        if path.is_file():
            try:
                section = (yaml.safe_load(path.read_text()) or {}).get("wandb")
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            if isinstance(section, dict):
                return section
    return {}


def wandb_group(runs: pd.DataFrame, sweep_dir) -> str:
    """wandb.group from the jobs' .hydra/config.yaml (unless an unresolved ${...}), else the sweep
    dir name."""
    group = _hydra_wandb_section(runs, sweep_dir).get("group")
    if isinstance(group, str) and group and "${" not in group:
        return group
    return Path(sweep_dir).resolve().name


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
        section = _hydra_wandb_section(result["runs"], sweep_dir)
        project = section.get("project")
        entity = section.get("entity")
        tables = {name: _wandb_ready(result[key]) for name, key in
                  (("slopes", "slopes"), ("local_slopes", "local"),
                   ("deviation_vs_correlation", "deviation"))}
        with wandb.init(project=project if isinstance(project, str) and "${" not in project else "wcntk",
                        entity=entity if isinstance(entity, str) and "${" not in entity else None,
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


# ----------------------------------------------------------------------------- report

def _theory_link(out: Path) -> str:
    """docs/theory.md as a link relative to a report dir inside the repository, else plain text."""
    repo = THEORY_DOC.parents[1]
    if THEORY_DOC.is_file() and out.resolve().is_relative_to(repo):
        return f"[docs/theory.md]({Path(os.path.relpath(THEORY_DOC, out.resolve())).as_posix()})"
    return "docs/theory.md of the wcntk repository"


def check_metrics(runs: pd.DataFrame, metrics: Sequence[str]) -> None:
    """ValueError naming the logged metrics when one of `metrics` is logged by no job."""
    logged = [c for c in runs.columns if c.startswith(("init/", "final/"))]
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
    """Jobs whose metrics.csv or offline W&B run file is damaged (truncated, NUL bytes)."""
    bad = runs[runs["record_problems"].fillna("") != ""]
    return bad[["setting", "width", "seed", "status", "record_problems", "job_dir"]].reset_index(drop=True)


def make_report(sweep_dir, out_dir=None, metrics: Sequence[str] | None = None,
                curve_width: float | None = None, formats: Sequence[str] = ("png", "pdf"),
                wandb: bool = False, wandb_mode: str = "offline", min_width: float | None = None) -> dict:
    """Collect, fit, tabulate and plot a sweep; write everything to out_dir (default
    sweep_dir/report). `metrics` None: DEFAULT_METRICS (those no job logged are "not logged");
    given metrics must be logged by some job, and `curve_width` must be a width of the sweep
    (ValueError otherwise, before anything is written). `min_width` replaces the automatic
    n_min of every asymptotic fit. Returns {"runs", "slopes", "per_width", "local",
    "deviation", "failures", "counts", "problems": DataFrames, "slopes_md", "local_md",
    "deviation_md", "failures_md": str, "out_dir": Path, "files": {name: Path | [Path]},
    "wandb_dir"}."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    runs = with_settings(collect(sweep_dir))
    if metrics is None:
        metrics = DEFAULT_METRICS
    else:
        check_metrics(runs, metrics)
    if curve_width is not None:
        check_curve_width(runs, curve_width)
    slopes, per_width, local = fit_slopes(runs, metrics, min_width)
    dev = fit_deviation_vs_correlation(runs, min_width=min_width)
    fails, counts, problems = failures(runs), status_counts(runs), record_problems(runs)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {name: out / name for name in (
        "runs.csv", "per_width.csv", "slopes.md", "slopes.csv", "local_slopes.md", "local_slopes.csv",
        "deviation_vs_correlation.md", "deviation_vs_correlation.csv", "failures.md", "failures.csv",
        "report.md")}
    files = {k.replace(".", "_"): v for k, v in files.items()}
    runs.to_csv(files["runs_csv"], index=False)
    if find_spec("pyarrow") is not None:
        try:
            runs.to_parquet(out / "runs.parquet", index=False)
            files["runs_parquet"] = out / "runs.parquet"
        except Exception as e:  # noqa: BLE001 — mixed-type config columns; the CSV has everything
            warnings.warn(f"runs.parquet not written: {type(e).__name__}: {e}", stacklevel=2)
    per_width.to_csv(files["per_width_csv"], index=False)
    slopes.to_csv(files["slopes_csv"], index=False)
    local.to_csv(files["local_slopes_csv"], index=False)
    dev.to_csv(files["deviation_vs_correlation_csv"], index=False)
    fails.to_csv(files["failures_csv"], index=False)

    slopes_md, local_md = slopes_markdown(slopes), local_markdown(local)
    deviation_md = deviation_markdown(dev)
    files["slopes_md"].write_text(f"{SLOPES_HEADER}\n\n{slopes_md}\n")
    files["local_slopes_md"].write_text(f"{LOCAL_HEADER}\n\n{local_md}\n")
    files["deviation_vs_correlation_md"].write_text(f"{DEVIATION_HEADER}\n\n{deviation_md}\n")
    failures_md = (f"Jobs per setting and status:\n\n{markdown_table(counts)}\n\n"
                   + (f"Jobs not fitted (status ≠ ok):\n\n{markdown_table(fails)}\n"
                      if len(fails) else "All jobs ok.\n")
                   + (f"\nDamaged records (metrics.csv or W&B run file; the summary.json values are "
                      f"still used):\n\n{markdown_table(problems)}\n" if len(problems) else ""))
    files["failures_md"].write_text(failures_md)

    plots: list[Path] = []
    for name, fig in width_figures(runs, slopes, per_width, local, metrics).items():
        plots += save_figure(fig, out / "plots" / name, formats)
    plots += save_figure(plot_deviation_vs_correlation(runs, dev), out / "plots" / "deviation_vs_correlation",
                         formats)
    trajectories = plot_deviation_trajectories(runs, sweep_dir)
    if trajectories is not None:
        plots += save_figure(trajectories, out / "plots" / "deviation_vs_step", formats)
    width, _ = curve_jobs(runs, sweep_dir, curve_width)
    curves = plot_loss_curves(runs, sweep_dir, width)
    if curves is not None:
        plots += save_figure(curves, out / "plots" / f"loss_curves_w{_fmt(width)}", formats)
    files["plots"] = plots

    pngs = [p for p in plots if p.suffix == ".png"]
    files["report_md"].write_text(
        f"# wcntk sweep report: {sweep_dir}\n\n{len(runs)} jobs, settings by: "
        f"{', '.join(setting_columns(runs)) or '(single setting)'}. Theory and definitions: "
        f"{_theory_link(out)}.\n\n"
        f"## Width-scaling slopes\n\n{SLOPES_HEADER}\n\n{slopes_md}\n\n"
        f"Reasons for the theory entries:\n\n{theory_markdown(slopes)}\n\n"
        f"### Local slopes\n\n{LOCAL_HEADER}\n\n{local_md}\n\n"
        f"## Deviation vs correlation\n\n{DEVIATION_HEADER}\n\n{deviation_md}\n\n"
        f"## Job status\n\n{failures_md}\n## Plots\n\n"
        + "".join(f"![{p.stem}](plots/{p.name})\n\n" for p in pngs)
        + ("" if curves is not None else "No metrics.csv found for the loss curves.\n"))

    result = {"runs": runs, "slopes": slopes, "per_width": per_width, "local": local, "deviation": dev,
              "failures": fails, "counts": counts, "problems": problems, "slopes_md": slopes_md,
              "local_md": local_md, "deviation_md": deviation_md, "failures_md": failures_md, "out_dir": out,
              "files": files, "wandb_dir": None}
    if wandb:
        result["wandb_dir"] = log_to_wandb(result, sweep_dir, wandb_mode)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m wcntk.analysis.report SWEEP_DIR [options]; prints the tables, writes the report.
    Exit 2 with one line for a missing or empty sweep dir, a metric no job logged, or a
    --curve-width that is not a width of the sweep."""
    p = argparse.ArgumentParser(prog="python -m wcntk.analysis.report", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, help="directory tree containing the jobs' summary.json")
    p.add_argument("--out", type=Path, default=None, help="output directory (default SWEEP_DIR/report)")
    p.add_argument("--width-metric", "--metrics", dest="metrics", nargs="+", default=None,
                   metavar="METRIC", help="metrics to fit against width: final/<name>, init/<name> or a "
                   f"bare name (corr/* → init/, else final/); default: {' '.join(DEFAULT_METRICS)}")
    p.add_argument("--curve-width", type=float, default=None,
                   help="width of the loss-curve plot (default: the largest width)")
    p.add_argument("--min-width", type=float, default=None, metavar="N",
                   help="fit the asymptotic regime over widths ≥ N instead of the automatic n_min "
                        "(docs/theory.md §7)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="plot file formats")
    p.add_argument("--wandb", action="store_true", help="also log the slope table and plots to W&B")
    p.add_argument("--wandb-mode", default="offline", choices=["offline", "online", "disabled"])
    args = p.parse_args(argv)
    if not args.sweep_dir.is_dir():
        p.error(f"not a directory: {args.sweep_dir}")
    try:
        result = make_report(args.sweep_dir, args.out, args.metrics, args.curve_width, args.formats,
                             args.wandb, args.wandb_mode, args.min_width)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    print(f"{SLOPES_HEADER}\n\n{result['slopes_md']}\n\n{LOCAL_HEADER}\n\n{result['local_md']}\n\n"
          f"{DEVIATION_HEADER}\n\n{result['deviation_md']}\n\n{result['failures_md']}")
    print(f"report written to {result['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sweep report: width-scaling power laws of linearity deviation and derivative correlations.

Usage::

    python -m wcntk.report SWEEP_DIR [--out DIR] [--width-metric M [M ...]] [--curve-width N]
                           [--formats png pdf] [--wandb] [--wandb-mode offline|online|disabled]

or, from a notebook, ``make_report(sweep_dir)`` (returns the tables and the written paths).

Input: every ``summary.json`` below SWEEP_DIR (one per job, as the runner writes it) and, for
the loss curves, the ``metrics.csv`` next to it. Output (default ``SWEEP_DIR/report/``):
``runs.csv`` (+ ``runs.parquet`` when pyarrow imports), ``per_width.csv``, ``slopes.md`` /
``slopes.csv``, ``failures.md`` / ``failures.csv``, ``report.md`` and ``plots/*.png|pdf``.

Setting. A job's setting is the tuple of config values that vary across the sweep, except
width, seed, n_params, data_source, device and effective_lr (= lr·(width/width_ref)^lr_width_exponent, which varies
with width by construction; ``lr`` is the base rate η₀ and stays a setting key). Only jobs with
status "ok" are fitted; every other job is listed in the failures table, never dropped silently.

Metrics are named ``final/<name>`` (value at the last logged step) or ``init/<name>`` (at θ₀).
A bare name means ``init/`` for ``corr/*`` (the headline correlations are at θ₀), else ``final/``.

Per width (setting s, metric M, width n, seeds i = 1..k, finite values only)::

    mean = (1/k) Σ_i M_i,        s.e. = std_{ddof=1}(M_i) / √k

Power law, fitted on all N (width, seed) points j of a setting, not on the per-width means::

    x_j = ln n_j,   y_j = ln M_j,   y = a + b·x + ε              (ordinary least squares)
    b = S_xy / S_xx,   a = ȳ − b·x̄,   R² = 1 − Σ_j r_j² / Σ_j (y_j − ȳ)²
    s² = Σ_j r_j² / (N − 2),   SE(b) = s / √S_xx
    95 % CI of b:  b ± t_{0.975, N−2} · SE(b)

The CI is the regression-standard-error interval with Student-t quantiles (i.i.d. normal
residuals in log space, the (width, seed) points treated as independent). The t quantile is
computed here without scipy, exactly for integer degrees of freedom: the closed-form t CDF of
Abramowitz & Stegun 26.7.3-4 in θ = atan(t/√ν), inverted by bisection (`t_quantile`).

Special cases: |M| ≤ 1e-30 in every ok run of the setting → "exactly 0", not fitted (e.g.
corr/C03 of a 1-hidden-layer ReLU net); fewer than 2 distinct widths → "n/a"; N = 2 → slope
without CI. Single non-finite or ≤ 1e-30 values are left out of the fit and counted in "note".

Theory (DESIGN.md §3-4, NTK parameterization at fixed learning rate; printed as "theory (ntk)"):
func_rmse, taylor_rmse, ntk_rel_change: −1 … −0.5; func_mse: −2 … −1; param_rel_change: −0.5;
C02, C03, step_ratio_d: −1; C11: −0.5; loss_gap: none. ``*_max`` variants share their slope.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ZERO_TOL = 1e-30
CONFIDENCE = 0.95
NON_SETTING = ("width", "seed", "n_params", "effective_lr", "data_source", "device")
JOB_COLUMNS = ("job_dir", "status", "message", "diverged_step")
DEFAULT_METRICS = (
    "final/lin/func_rmse_test", "final/lin/func_mse_test", "final/lin/taylor_rmse_test",
    "final/lin/param_rel_change", "final/lin/ntk_rel_change", "final/lin/loss_gap_test",
    "init/corr/C02", "init/corr/C03", "init/corr/C11", "init/corr/step_ratio_2",
    "init/corr/step_ratio_3",
)
LOSS_CURVES = (("train", "net/train_loss", "twin/train_loss"), ("test", "net/test_loss", "twin/test_loss"))
# Expected log-log slope ranges (low, high) vs width, NTK parameterization (DESIGN.md §3-4).
THEORY: Dict[str, Optional[Tuple[float, float]]] = {
    "lin/func_rmse": (-1.0, -0.5),
    "lin/func_mse": (-2.0, -1.0),
    "lin/taylor_rmse": (-1.0, -0.5),
    "lin/param_rel_change": (-0.5, -0.5),
    "lin/ntk_rel_change": (-1.0, -0.5),
    "lin/loss_gap": None,
    "corr/C02": (-1.0, -1.0),
    "corr/C03": (-1.0, -1.0),
    "corr/C11": (-0.5, -0.5),
    "corr/step_ratio": (-1.0, -1.0),
}


# ----------------------------------------------------------------------------- statistics

def _t_central(theta: float, df: int) -> float:
    """P(|T| < √df·tan θ) for Student's t with integer df (Abramowitz & Stegun 26.7.3-4)."""
    c2, total, term = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2:
        if df == 1:
            return 2.0 * theta / math.pi
        for k in range(1, (df - 1) // 2):
            term *= 2 * k / (2 * k + 1) * c2
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """p-quantile of Student's t with integer df ≥ 1 (bisection on the exact CDF, no scipy)."""
    if df < 1 or int(df) != df or not 0.0 < p < 1.0:
        raise ValueError(f"need integer df >= 1 and 0 < p < 1, got df={df}, p={p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target, lo, hi = 2.0 * p - 1.0, 0.0, math.pi / 2
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_central(mid, int(df)) < target else (lo, mid)
    return math.sqrt(df) * math.tan(0.5 * (lo + hi))


def fit_power_law(width: Sequence[float], value: Sequence[float]) -> Dict[str, float]:
    """OLS of ln(value) on ln(width): slope b, intercept a, SE(b), 95 % t-CI half-width, R², N."""
    x, y = np.log(np.asarray(width, float)), np.log(np.asarray(value, float))
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum())
    b = float(((x - x.mean()) * (y - y.mean())).sum()) / sxx
    a = float(y.mean() - b * x.mean())
    ssr = float(((y - a - b * x) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    se = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else math.nan
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 2) * se if n > 2 else math.nan
    return {"slope": b, "intercept": a, "stderr": se, "ci_half": half,
            "r2": 1.0 - ssr / sst if sst > 0 else math.nan, "n_points": n}


def theory_slope(metric: str) -> Optional[Tuple[float, float]]:
    """Theoretical slope range for a metric name (prefix init/ or final/ optional), or None."""
    name = re.sub(r"^(init|final)/", "", metric)
    while name not in THEORY:
        stripped = re.sub(r"_(train|test|max|\d+)$", "", name)
        if stripped == name:
            return None
        name = stripped
    return THEORY[name]


# ----------------------------------------------------------------------------- collection

def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _read_summary(path: Path, root: Path) -> dict:
    row = {"job_dir": path.parent.relative_to(root).as_posix()}
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {**row, "status": "unreadable", "message": f"{type(e).__name__}: {e}"}
    row.update(status=s.get("status") or "unknown", message=s.get("message"),
               diverged_step=s.get("diverged_step"))
    for k, v in (s.get("config") or {}).items():
        row[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
    row["wall_time_s"] = _number(s.get("wall_time_s"))
    row.update({f"init/{k}": _number(v) for k, v in (s.get("initial") or {}).items()})
    row.update({f"final/{k}": _number(v) for k, v in (s.get("final") or {}).items()})
    return row


def config_columns(runs: pd.DataFrame) -> List[str]:
    """The config keys among the columns of a `collect` table."""
    return [c for c in runs.columns if c not in JOB_COLUMNS + ("wall_time_s", "setting")
            and not c.startswith(("init/", "final/"))]


def collect(sweep_dir) -> pd.DataFrame:
    """One row per job below sweep_dir: job_dir (relative), status, message, diverged_step,
    every config key, wall_time_s, init/<metric>, final/<metric>. Unparsable summary.json files
    become rows with status "unreadable"."""
    root = Path(sweep_dir)
    paths = sorted(root.rglob("summary.json"),
                   key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.as_posix())])
    rows = [_read_summary(p, root) for p in paths]
    if not rows:
        raise FileNotFoundError(f"no summary.json below {root}")
    runs = pd.DataFrame(rows)
    for c in JOB_COLUMNS:
        if c not in runs:
            runs[c] = None
    runs["diverged_step"] = pd.to_numeric(runs["diverged_step"], errors="coerce").astype("Int64")
    cols = list(runs.columns)
    metrics = [c for c in cols if c.startswith("init/")] + [c for c in cols if c.startswith("final/")]
    ordered = list(JOB_COLUMNS) + config_columns(runs) + ["wall_time_s"] + metrics
    return runs[[c for c in ordered if c in runs]]


def _fmt(v) -> str:
    if pd.isna(v):
        return "none"
    return f"{v:.10g}" if isinstance(v, (float, np.floating)) else str(v)


def _sort_key(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def setting_columns(runs: pd.DataFrame) -> List[str]:
    """Config columns (other than NON_SETTING) that vary across the sweep."""
    readable = runs[runs["status"] != "unreadable"]
    return [c for c in config_columns(runs)
            if c not in NON_SETTING and readable[c].nunique(dropna=False) > 1]


def with_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy of runs with an ordered categorical "setting" label ("activation=relu, ..." or "all")."""
    cols = setting_columns(runs)

    def label(row) -> str:
        if row["status"] == "unreadable":
            return "(unreadable)"
        return ", ".join(f"{c}={_fmt(row[c])}" for c in cols) or "all"

    out = runs.copy()
    labels = [label(r) for _, r in out.iterrows()]
    first = {}
    for lab, (_, r) in zip(labels, out.iterrows()):
        first.setdefault(lab, tuple(_sort_key(r[c]) for c in cols) if lab != "(unreadable)" else ((3,),))
    order = sorted(first, key=first.get)
    out.insert(1, "setting", pd.Categorical(labels, categories=order, ordered=True))
    return out


def metric_column(spec: str) -> str:
    """'final/…' or 'init/…' as given; a bare name → init/ for corr/*, else final/."""
    if spec.startswith(("final/", "init/")):
        return spec
    return ("init/" if spec.startswith("corr/") else "final/") + spec


# ----------------------------------------------------------------------------- fitting

def fit_slopes(runs: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS
               ) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(slopes, per_width) for every setting × metric, from the status-ok rows of a
    `with_settings` table. slopes.result is "fit", "exactly 0" or "n/a"."""
    cols = setting_columns(runs)
    ok = runs[runs["status"] == "ok"]
    slope_rows, width_rows = [], []
    for setting in runs["setting"].cat.categories:
        if setting == "(unreadable)":
            continue
        g = ok[ok["setting"] == setting]
        keys = runs.loc[runs["setting"] == setting, cols].iloc[0].to_dict()
        for metric in map(metric_column, metrics):
            theory = theory_slope(metric)
            row = {"setting": setting, **keys, "metric": metric, "result": "n/a", "note": "",
                   "n_points": 0, "n_widths": 0,
                   "theory_low": theory[0] if theory else math.nan,
                   "theory_high": theory[1] if theory else math.nan}
            slope_rows.append(row)
            if g.empty:
                row["note"] = "no ok jobs"
                continue
            if metric not in g:
                row["note"] = "not logged"
                continue
            w = g["width"].astype(float).to_numpy()
            v = g[metric].astype(float).to_numpy()
            finite = np.isfinite(v) & np.isfinite(w) & (w > 0)
            for width in np.unique(w[finite]):
                vals = v[finite & (w == width)]
                width_rows.append({"setting": setting, "metric": metric, "width": width,
                                   "n": len(vals), "mean": vals.mean(),
                                   "se": vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan})
            if not finite.any():
                row["note"] = "no finite values"
                continue
            if (np.abs(v[finite]) <= ZERO_TOL).all():
                row.update(result="exactly 0", n_points=int(finite.sum()),
                           n_widths=len(np.unique(w[finite])))
                continue
            use = finite & (v > ZERO_TOL)
            dropped = len(v) - int(use.sum())
            row.update(n_points=int(use.sum()), n_widths=len(np.unique(w[use])),
                       note=f"{dropped} non-finite/≤0 value(s) left out" if dropped else "")
            if row["n_widths"] < 2:
                row["note"] = "; ".join(filter(None, ["fewer than 2 widths", row["note"]]))
                continue
            row.update(fit_power_law(w[use], v[use]), result="fit")
    slopes = pd.DataFrame(slope_rows)
    for c in ("slope", "intercept", "stderr", "ci_half", "r2"):
        if c not in slopes:
            slopes[c] = math.nan
    slopes["ci_low"] = slopes["slope"] - slopes["ci_half"]
    slopes["ci_high"] = slopes["slope"] + slopes["ci_half"]
    per_width = pd.DataFrame(width_rows, columns=["setting", "metric", "width", "n", "mean", "se"])
    return slopes, per_width


def failures(runs: pd.DataFrame) -> pd.DataFrame:
    """Every job whose status is not "ok", with its setting, width, seed and message."""
    bad = runs[runs["status"] != "ok"]
    cols = ["setting", "width", "seed", "status", "diverged_step", "message", "job_dir"]
    return bad[[c for c in cols if c in bad]].sort_values(["setting", "job_dir"]).reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Jobs per setting and status, with a total column."""
    counts = pd.crosstab(runs["setting"], runs["status"])
    counts = counts[sorted(counts.columns, key=lambda s: (s != "ok", s))]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


# ----------------------------------------------------------------------------- markdown

def _theory_text(low: float, high: float) -> str:
    if math.isnan(low):
        return "—"
    return f"{low:g}" if low == high else f"{low:g} … {high:g}"


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub markdown table of df (cells stringified, '|' escaped, NaN → empty)."""
    def cell(v) -> str:
        return "" if pd.isna(v) else _fmt(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


SLOPES_HEADER = ("Slope b of ln(metric) = a + b·ln(width): ordinary least squares on all (width, seed) "
                 "points of the status-ok jobs of each setting; ± is the 95 % CI half-width "
                 "t_{0.975, N−2}·SE(b) from the regression standard error (Student t). "
                 "\"theory (ntk)\" is the expected range (DESIGN.md §3-4), valid for the ntk "
                 "parameterization at fixed learning rate.")


def slopes_markdown(slopes: pd.DataFrame) -> str:
    """The slope table as markdown (one row per setting × metric)."""
    rows = []
    for r in slopes.itertuples(index=False):
        if r.result == "fit":
            slope = f"{r.slope:+.3f} ± {r.ci_half:.3f}" if not math.isnan(r.ci_half) else f"{r.slope:+.3f} (no CI)"
            agree = "" if math.isnan(r.theory_low) or math.isnan(r.ci_half) else \
                ("yes" if r.ci_low <= r.theory_high and r.ci_high >= r.theory_low else "no")
            r2 = f"{r.r2:.3f}"
        else:
            slope, agree, r2 = r.result, "", ""
        rows.append({"setting": r.setting, "metric": r.metric, "slope ± 95% CI (t)": slope, "R²": r2,
                     "n points": r.n_points, "widths": r.n_widths,
                     "theory (ntk)": _theory_text(r.theory_low, r.theory_high),
                     "CI meets theory": agree, "note": r.note})
    return markdown_table(pd.DataFrame(rows))


# ----------------------------------------------------------------------------- plots

def _setting_colors(runs: pd.DataFrame) -> Dict[str, str]:
    return {s: f"C{i % 10}" for i, s in enumerate(runs["setting"].cat.categories)}


def _set_width_axis(ax, widths) -> None:
    powers_of_two = all(w > 0 and float(w).is_integer() and (int(w) & (int(w) - 1)) == 0 for w in widths)
    ax.set_xscale("log", base=2 if powers_of_two else 10)


def draw_width_scaling(ax, metric: str, slopes: pd.DataFrame, per_width: pd.DataFrame,
                       colors: Dict[str, str], fontsize: float = 8) -> None:
    """Metric vs width on log-log axes: per-setting mean ± s.e. (error bars), fitted power law
    (dotted), theoretical slope(s) as dashed guides anchored at the smallest width."""
    theory = theory_slope(metric)
    guides = False
    all_widths = []
    for r in slopes[slopes["metric"] == metric].itertuples(index=False):
        color = colors[r.setting]
        pw = per_width[(per_width["setting"] == r.setting) & (per_width["metric"] == metric)
                       & (per_width["mean"] > 0)].sort_values("width")
        if r.result == "fit":
            ci = f" ± {r.ci_half:.2f}" if not math.isnan(r.ci_half) else ""
            label = f"{r.setting}: slope {r.slope:+.2f}{ci}"
        else:
            label = f"{r.setting}: {r.result}"
        if pw.empty:
            ax.plot([], [], " ", label=label)
            continue
        w, m = pw["width"].to_numpy(), pw["mean"].to_numpy()
        se = np.nan_to_num(pw["se"].to_numpy())
        all_widths.extend(w)
        ax.errorbar(w, m, yerr=[np.minimum(se, 0.999 * m), se], fmt="o-", color=color, ms=4,
                    lw=1.2, capsize=3, label=label)
        grid = np.geomspace(w.min(), w.max(), 50)
        if r.result == "fit":
            ax.plot(grid, np.exp(r.intercept) * grid ** r.slope, ":", color=color, lw=1)
        if theory and len(w) > 1:
            guides = True
            lines = [m[0] * (grid / w[0]) ** s for s in sorted(set(theory))]
            for line in lines:
                ax.plot(grid, line, "--", color=color, lw=0.8, alpha=0.6)
            if len(lines) == 2:
                ax.fill_between(grid, lines[0], lines[1], color=color, alpha=0.08, lw=0)
    if guides:
        ax.plot([], [], "--", color="0.5", label=f"theory (ntk): slope {_theory_text(*theory)}")
    if all_widths:
        _set_width_axis(ax, all_widths)
        ax.set_yscale("log")
    else:   # every setting exactly 0 (or n/a): nothing to draw on log axes
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no positive values to plot", ha="center", va="center",
                transform=ax.transAxes, fontsize=fontsize + 1, color="0.4")
    stage, name = metric.split("/", 1)
    ax.set_title(f"{name} ({'at init' if stage == 'init' else 'final'}) vs width", fontsize=fontsize + 2)
    ax.set_xlabel("width n", fontsize=fontsize + 1)
    ax.set_ylabel(name, fontsize=fontsize + 1)
    ax.tick_params(which="both", labelsize=fontsize)
    ax.grid(True, which="major", alpha=0.25)
    ax.legend(fontsize=fontsize, loc="best")


def width_figures(runs: pd.DataFrame, slopes: pd.DataFrame, per_width: pd.DataFrame,
                  metrics: Sequence[str]) -> Dict[str, Figure]:
    """One figure per metric ("width_<metric>") plus a grid of all of them ("width_all")."""
    colors = _setting_colors(runs)
    metrics = [metric_column(m) for m in metrics]
    figs = {}
    for metric in metrics:
        fig = Figure(figsize=(6.4, 4.6), layout="constrained")
        draw_width_scaling(fig.add_subplot(), metric, slopes, per_width, colors)
        figs["width_" + re.sub(r"[^A-Za-z0-9]+", "_", metric)] = fig
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    grid = Figure(figsize=(4.6 * ncols, 3.8 * nrows), layout="constrained")
    for i, metric in enumerate(metrics):
        draw_width_scaling(grid.add_subplot(nrows, ncols, i + 1), metric, slopes, per_width, colors,
                           fontsize=6)
    grid.suptitle("width scaling (mean ± s.e. over seeds; dotted: fit; dashed: theory, ntk)")
    figs["width_all"] = grid
    return figs


def curve_jobs(runs: pd.DataFrame, sweep_dir, width: Optional[float] = None) -> Tuple[float, pd.DataFrame]:
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


def plot_loss_curves(runs: pd.DataFrame, sweep_dir, width: Optional[float] = None) -> Optional[Figure]:
    """Network vs linearized twin loss vs step (train | test panels, one row per setting), read
    from the metrics.csv of the `curve_jobs`; None when no such job has a metrics.csv."""
    width, jobs = curve_jobs(runs, sweep_dir, width)
    if jobs.empty:
        return None
    fig = Figure(figsize=(10, 3.2 * len(jobs) + 0.6), layout="constrained")
    axes = fig.subplots(len(jobs), 2, squeeze=False)
    for (_, job), row in zip(jobs.iterrows(), axes):
        curves = pd.read_csv(Path(sweep_dir) / job["job_dir"] / "metrics.csv")
        for ax, (split, net, twin) in zip(row, LOSS_CURVES):
            positive = True
            for col, style, who in ((net, "-", "network"), (twin, "--", "linearized twin")):
                if col in curves:
                    c = curves[["step", col]].dropna()
                    ax.plot(c["step"], c[col], style, lw=1.4, label=f"{who} ({col})")
                    positive &= bool((c[col] > 0).all())
            if positive and ax.lines:
                ax.set_yscale("log")
            status = "" if job["status"] == "ok" else f" [{job['status']}]"
            ax.set_title(f"{job['setting']} — seed {_fmt(job['seed'])}, {split}{status}", fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel(f"{split} loss")
            ax.grid(True, which="major", alpha=0.25)
            ax.legend(fontsize=7)
    fig.suptitle(f"network vs linearized twin, width {_fmt(width)}")
    return fig


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> List[Path]:
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
    """wandb.group from the jobs' .hydra/config.yaml (unless an unresolved ${...}), else the sweep dir name."""
    group = _hydra_wandb_section(runs, sweep_dir).get("group")
    if isinstance(group, str) and group and "${" not in group:
        return group
    return Path(sweep_dir).resolve().name


def log_to_wandb(result: dict, sweep_dir, mode: str = "offline") -> Optional[str]:
    """Log the slope table and the PNG plots as one W&B run "report" in the sweep's group.
    Returns the run directory, or None (with a warning) if anything in wandb fails."""
    try:
        import wandb
        section = _hydra_wandb_section(result["runs"], sweep_dir)
        project = section.get("project")
        entity = section.get("entity")
        slopes = result["slopes"].copy()
        for c in slopes.columns:
            if not pd.api.types.is_numeric_dtype(slopes[c]):
                slopes[c] = slopes[c].astype(str)
        with wandb.init(project=project if isinstance(project, str) and "${" not in project else "wcntk",
                        entity=entity if isinstance(entity, str) and "${" not in entity else None,
                        group=wandb_group(result["runs"], sweep_dir), name="report", job_type="report",
                        mode=mode, dir=str(result["out_dir"]),
                        config={"sweep_dir": str(sweep_dir), "n_jobs": len(result["runs"])}) as run:
            images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in result["files"]["plots"]
                      if p.suffix == ".png"}
            run.log({"slopes": wandb.Table(dataframe=slopes), **images})
            return getattr(run, "dir", None)
    except Exception as e:  # noqa: BLE001 — wandb must never break the report
        warnings.warn(f"wandb logging failed, report written without it: {type(e).__name__}: {e}")
        return None


# ----------------------------------------------------------------------------- report

def make_report(sweep_dir, out_dir=None, metrics: Sequence[str] = DEFAULT_METRICS,
                curve_width: Optional[float] = None, formats: Sequence[str] = ("png", "pdf"),
                wandb: bool = False, wandb_mode: str = "offline") -> dict:
    """Collect, fit, tabulate and plot a sweep; write everything to out_dir (default
    sweep_dir/report). Returns {"runs", "slopes", "per_width", "failures", "counts": DataFrames,
    "slopes_md", "failures_md": str, "out_dir": Path, "files": {name: Path | [Path]}, "wandb_dir"}."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    (out / "plots").mkdir(parents=True, exist_ok=True)
    runs = with_settings(collect(sweep_dir))
    slopes, per_width = fit_slopes(runs, metrics)
    fails, counts = failures(runs), status_counts(runs)
    files: Dict[str, object] = {"runs_csv": out / "runs.csv", "per_width_csv": out / "per_width.csv",
                                "slopes_md": out / "slopes.md", "slopes_csv": out / "slopes.csv",
                                "failures_md": out / "failures.md", "failures_csv": out / "failures.csv",
                                "report_md": out / "report.md"}
    runs.to_csv(files["runs_csv"], index=False)
    if find_spec("pyarrow") is not None:
        try:
            runs.to_parquet(out / "runs.parquet", index=False)
            files["runs_parquet"] = out / "runs.parquet"
        except Exception as e:  # noqa: BLE001 — mixed-type config columns; the CSV has everything
            warnings.warn(f"runs.parquet not written: {type(e).__name__}: {e}")
    per_width.to_csv(files["per_width_csv"], index=False)
    slopes.to_csv(files["slopes_csv"], index=False)
    fails.to_csv(files["failures_csv"], index=False)

    slopes_md = slopes_markdown(slopes)
    files["slopes_md"].write_text(f"{SLOPES_HEADER}\n\n{slopes_md}\n")
    failures_md = (f"Jobs per setting and status:\n\n{markdown_table(counts)}\n\n"
                   + (f"Jobs not fitted (status ≠ ok):\n\n{markdown_table(fails)}\n"
                      if len(fails) else "All jobs ok.\n"))
    files["failures_md"].write_text(failures_md)

    plots: List[Path] = []
    for name, fig in width_figures(runs, slopes, per_width, metrics).items():
        plots += save_figure(fig, out / "plots" / name, formats)
    width, _ = curve_jobs(runs, sweep_dir, curve_width)
    curves = plot_loss_curves(runs, sweep_dir, width)
    if curves is not None:
        plots += save_figure(curves, out / "plots" / f"loss_curves_w{_fmt(width)}", formats)
    files["plots"] = plots

    pngs = [p for p in plots if p.suffix == ".png"]
    files["report_md"].write_text(
        f"# wcntk sweep report: {sweep_dir}\n\n{len(runs)} jobs, settings by: "
        f"{', '.join(setting_columns(runs)) or '(single setting)'}.\n\n"
        f"## Width-scaling slopes\n\n{SLOPES_HEADER}\n\n{slopes_md}\n\n"
        f"## Job status\n\n{failures_md}\n## Plots\n\n"
        + "".join(f"![{p.stem}](plots/{p.name})\n\n" for p in pngs)
        + ("" if curves is not None else "No metrics.csv found for the loss curves.\n"))

    result = {"runs": runs, "slopes": slopes, "per_width": per_width, "failures": fails,
              "counts": counts, "slopes_md": slopes_md, "failures_md": failures_md,
              "out_dir": out, "files": files, "wandb_dir": None}
    if wandb:
        result["wandb_dir"] = log_to_wandb(result, sweep_dir, wandb_mode)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: python -m wcntk.report SWEEP_DIR [options]; prints the tables, writes the report."""
    p = argparse.ArgumentParser(prog="python -m wcntk.report", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, help="directory tree containing the jobs' summary.json")
    p.add_argument("--out", type=Path, default=None, help="output directory (default SWEEP_DIR/report)")
    p.add_argument("--width-metric", "--metrics", dest="metrics", nargs="+", default=list(DEFAULT_METRICS),
                   metavar="METRIC", help="metrics to fit against width: final/<name>, init/<name> or a "
                   "bare name (corr/* → init/, else final/); default: %(default)s")
    p.add_argument("--curve-width", type=float, default=None,
                   help="width of the loss-curve plot (default: the largest width)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="plot file formats")
    p.add_argument("--wandb", action="store_true", help="also log the slope table and plots to W&B")
    p.add_argument("--wandb-mode", default="offline", choices=["offline", "online", "disabled"])
    args = p.parse_args(argv)
    if not args.sweep_dir.is_dir():
        p.error(f"not a directory: {args.sweep_dir}")
    try:
        result = make_report(args.sweep_dir, args.out, args.metrics, args.curve_width, args.formats,
                             args.wandb, args.wandb_mode)
    except FileNotFoundError as e:
        p.error(str(e))
    print(f"{SLOPES_HEADER}\n\n{result['slopes_md']}\n\n{result['failures_md']}")
    print(f"report written to {result['out_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

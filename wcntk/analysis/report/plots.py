"""The report's plots: metric vs width with its fits and local slopes, deviation vs
correlation, deviation vs step, and the network against its linearized twin."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...core.metric_registry import DEVIATIONS, LOSS_CURVES
from ...core.status import Status
from ..powerlaw import CORRECTION_EXPONENT
from .collect import _fmt, has_curves, metric_column
from .fit import ZERO_TOL
from .tables import _slope_text

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


def finish_log_panel(ax, drawn: bool, size: float) -> None:
    """A panel's log-log axes, tidy ticks and legend once something was drawn on it; else the
    empty-panel text (the x scale is set by the caller: a width axis or a plain log one)."""
    if not drawn:
        _empty_panel(ax, size)
        return
    ax.set_yscale("log")
    tidy_log_axis(ax.xaxis, size)
    tidy_log_axis(ax.yaxis, size)
    ax.legend(fontsize=size - 1, loc="best")


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
            fitted = np.exp(r.intercept + r.correction * tail ** -CORRECTION_EXPONENT) * tail ** r.slope
            ax.plot(tail, fitted, "-", color=color, lw=1.6, alpha=0.8)
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
    ax.set_title(f"{name} ({'at init' if stage == 'initial' else 'final'}) vs width", fontsize=fontsize + 2)
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
            ("width_all", "width scaling (mean ± s.e. over seeds; solid: asymptotic fit (with its n^-1/2 "
             "correction on 5 or more widths), over its widths; faded: widths below n_min; dashed: "
             "predicted slope; dash-dot: bound)", draw_width_scaling, per_width),
            ("local_slopes_all", "local slopes between adjacent widths (± 95 % across seeds; faded: below "
             "n_min; horizontal: theory)", draw_local_slopes, local)):
        grid = Figure(figsize=(5.4 * ncols, 4.0 * nrows), layout="constrained")
        for i, metric in enumerate(metrics):
            ax = grid.add_subplot(nrows, ncols, i + 1)
            draw(ax, metric, slopes, data, colors, fontsize=7)
            if draw is draw_local_slopes:
                stage, short = metric.split("/", 1)
                ax.set_title(f"{short} ({'at init' if stage == 'initial' else 'final'})", fontsize=9)
        grid.suptitle(title, fontsize=10)
        figs[name] = grid
    return figs


def positive_points(jobs: pd.DataFrame, corr: str, dev: str) -> tuple[np.ndarray, ...]:
    """(x, y, widths, keep) of a deviation-vs-correlation panel: the jobs' `corr` and `dev` values
    and widths as arrays, and which points a log-log panel can show (finite, > ZERO_TOL)."""
    x, y = jobs[corr].astype(float).to_numpy(), jobs[dev].astype(float).to_numpy()
    keep = np.isfinite(x) & np.isfinite(y) & (x > ZERO_TOL) & (y > ZERO_TOL)
    return x, y, jobs["width"].astype(float).to_numpy(), keep


def theory_line(x, y, w, keep, slope: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """y ∝ x^slope through the geometric mean of the widest width's points, over the kept x range."""
    widest = keep & (w == w[keep].max())
    x0, y0 = np.exp(np.log(x[widest]).mean()), np.exp(np.log(y[widest]).mean())
    grid = np.geomspace(x[keep].min(), x[keep].max(), n)
    return grid, y0 * (grid / x0) ** slope


def plot_deviation_vs_correlation(runs: pd.DataFrame, dev: pd.DataFrame) -> Figure:
    """Final deviation vs initial correlation on log-log axes: every ok (width, seed) point,
    colored by setting, marker size growing with width, faded below the fit's n_min; the
    asymptotic fit over its own range (solid) and the theory's slope anchored at the widest
    width's mean point (dashed: prediction, dash-dot: bound or lower bound)."""
    colors = _setting_colors(runs)
    ok = runs[runs["status"] == Status.OK]
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
            x, y, w, keep = positive_points(g, c, d)
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
                ax.plot(*theory_line(x, y, w, keep, r.theory_slope, 50),
                        "--" if r.theory_kind == "prediction" else "-.", color="0.35", lw=0.9)
        if drawn:
            ax.set_xscale("log")
        finish_log_panel(ax, drawn, 8)
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
    ok = runs[(runs["status"] == Status.OK) & runs["job_dir"].map(lambda d: has_curves(root / d))]
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
    ok = runs[runs["status"] == Status.OK]
    if width is None:
        width = (ok if ok["width"].notna().any() else runs)["width"].max()
    cand = runs[(runs["width"] == width)
                & runs["job_dir"].map(lambda d: has_curves(root / d))]
    cand = cand.assign(_bad=cand["status"] != Status.OK).sort_values(["_bad", "seed", "job_dir"])
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
            status = "" if job["status"] == Status.OK else f" [{job['status']}]"
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

"""The claim, per network: does the final deviation from linearity fall with the initial weak
correlations? One table (claim.csv, a section of report.md) and one figure (plots/claim.png).

Table: one row per network × deviation × correlation, from the deviation-vs-correlation fit
(:func:`wcntk.analysis.report.fit.fit_deviation_vs_correlation`: pooled OLS of ln deviation on ln
correlation over the network's asymptotic tail), judged against the claim's bound for any
network (:func:`wcntk.analysis.theory.claim_bound`: at α = 0, slope ≥ +1 against C11, ≥ +1/2
against C02; docs/theory.md §6). The bound assumes correlations that vanish with width: a
network whose correlation's width slope is not below 0 beyond its interval gets no verdict.

Figure, top: initial C02, initial C11 and the final deviation against width, one colour per
network (mean ± s.e. over seeds, the asymptotic fit solid, widths below n_min faded), each
network's width exponent dashed where derived (docs/theory.md §5), dotted where not derived
(the MLP-type line, for reference); their local slopes below them. Bottom: the final deviation
against initial C02 and C11, every (width, seed), the fit solid and the claim's bound
(dash-dot, anchored at the network's widest point).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...core.metric_registry import correlation, deviation, stage_column
from ...core.status import Status
from ..powerlaw import CORRECTION_EXPONENT
from ..theory import reference
from .collect import _fmt, setting_config
from .plots import FADED, _set_width_axis, draw_local_slopes, finish_log_panel, positive_points, theory_line
from .tables import _slope_text, markdown_table

CLAIM_DEVIATION = stage_column(deviation("func_rmse", "test"))
CLAIM_CORRELATIONS = (stage_column(correlation("C02")), stage_column(correlation("C11")))
CLAIM_METRICS = (*CLAIM_CORRELATIONS, CLAIM_DEVIATION)
CLAIM_COLUMNS = ("network", "deviation", "correlation", "slope", "ci", "bound", "verdict", "widths", "note")
CLAIM_HEADER = ("Per network: slope of ln(final deviation) against ln(initial correlation) over the "
                "network's asymptotic widths (pooled least squares, ± 95 % t), judged against the claim's "
                "bound for any network whose correlations vanish with width (docs/theory.md §6: at α = 0 the "
                "deviation is O(C11) and O(√C02), so the slope is ≥ +1 against C11 and ≥ +1/2 against C02; "
                "\"consistent\" when slope + CI reaches the bound, \"below bound\" otherwise, "
                "\"inconclusive\" when the CI is as wide as the bound).")


def network_names(runs: pd.DataFrame) -> dict[str, str]:
    """Setting → network name: the setting itself where settings are networks, else the model
    kind with the setting in parentheses ("mlp (depth=2)"; "mlp" for a single setting)."""
    names = {}
    for setting in runs["setting"].cat.categories:
        if setting == "(unreadable)":
            continue
        kind = str(setting_config(runs, setting).get("model.kind", "mlp"))
        names[setting] = (setting if setting.split(" ")[0].split(":")[0] == kind
                          else kind if setting == "all" else f"{kind} ({setting})")
    return names


def _widths_text(runs: pd.DataFrame, setting: str, n_min: float) -> str:
    ok = runs[(runs["status"] == Status.OK) & (runs["setting"] == setting)]
    widths = sorted(pd.to_numeric(ok["width"], errors="coerce").dropna().unique())
    used = [w for w in widths if not math.isfinite(n_min) or w >= n_min]
    return " ".join(_fmt(float(w)) for w in used)


def _vanishes(fit: pd.Series) -> bool:
    """A correlation is shown to vanish with width when the upper end of its slope's interval is
    below 0: the judged fit's, or that of the plain power law on the same tail (whether it falls is
    a sign, which an unresolved n^-1/2 correction's wide interval must not hide). No interval (one
    seed): the slope itself."""
    pairs = ((fit["slope"], fit["ci_half"]),
             (fit.get("slope_plain", math.nan), fit.get("ci_half_plain", math.nan)))
    return any(math.isfinite(b) and b + (h if math.isfinite(h) else 0.0) < 0 for b, h in pairs)


def claim_table(runs: pd.DataFrame, slopes: pd.DataFrame, dev: pd.DataFrame) -> pd.DataFrame:
    """One row per network × deviation × correlation (CLAIM_COLUMNS) from the deviation-vs-
    correlation fits `dev` and the width fits `slopes` (whether the correlation vanishes)."""
    names = network_names(runs)
    rows = []
    for r in dev[(dev["deviation"] == CLAIM_DEVIATION) & dev["correlation"].isin(CLAIM_CORRELATIONS)
                 ].itertuples(index=False):
        verdict, notes = r.verdict, [r.note] if r.note else []
        corr = slopes[(slopes["setting"] == r.setting) & (slopes["metric"] == r.correlation)]
        if len(corr) and corr.iloc[0]["result"] == "fit" and r.theory_kind != "none":
            c = corr.iloc[0]
            if not _vanishes(c):
                verdict = ""
                notes.append(f"{r.correlation.split('/', 1)[1]} not shown to vanish with width "
                             f"(width slope {_slope_text(c)}): the bound does not apply")
        if r.theory_kind == "none" and r.theory_reason:
            notes.append(r.theory_reason)
        rows.append({"network": names.get(r.setting, r.setting), "deviation": r.deviation.split("/", 1)[1],
                     "correlation": r.correlation.split("/", 1)[1],
                     "slope": r.slope if r.result == "fit" else math.nan,
                     "ci": r.ci_half if r.result == "fit" else math.nan, "bound": r.theory,
                     "verdict": verdict, "widths": _widths_text(runs, r.setting, r.n_min),
                     "note": "; ".join(filter(None, notes))})
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def claim_markdown(table: pd.DataFrame) -> str:
    """The claim table as markdown: slope ± CI in one cell."""
    if table.empty:
        return "No network logged the deviation and the correlations."
    cells = table.assign(slope=[f"{s:+.3f} ± {c:.3f}" if math.isfinite(c) else
                                f"{s:+.3f} (no CI)" if math.isfinite(s) else "n/a"
                                for s, c in zip(table["slope"], table["ci"], strict=True)])
    return markdown_table(cells.drop(columns="ci").rename(columns={"slope": "slope ± 95% CI"}))


def _colors(names: dict[str, str]) -> dict[str, str]:
    return {s: f"C{i % 10}" for i, s in enumerate(names)}


def _draw_width(ax, metric: str, runs, slopes, per_width, names, colors) -> None:
    """One claim panel of `metric` against width: every network, its fit and its exponent."""
    drawn = []
    for setting, name in names.items():
        r = slopes[(slopes["setting"] == setting) & (slopes["metric"] == metric)]
        pw = per_width[(per_width["setting"] == setting) & (per_width["metric"] == metric)
                       & (per_width["mean"] > 0)].sort_values("width")
        if r.empty or pw.empty:
            continue
        r = r.iloc[0]
        color = colors[setting]
        w, m = pw["width"].to_numpy(float), pw["mean"].to_numpy(float)
        se = np.nan_to_num(pw["se"].to_numpy(float))
        inside = pw["in_fit"].to_numpy(bool) if r["result"] == "fit" else np.ones(len(w), bool)
        ax.plot(w, m, "-", color=color, lw=0.7, alpha=0.5)
        for part, alpha in ((inside, 1.0), (~inside, FADED)):
            if part.any():
                ax.errorbar(w[part], m[part], yerr=[np.minimum(se[part], 0.999 * m[part]), se[part]],
                            fmt="o", ms=3.5, capsize=2, color=color, alpha=alpha)
        fit = f"{_slope_text(r)} (n ≥ {_fmt(r['n_min'])})" if r["result"] == "fit" else r["result"]
        if r["result"] == "fit":
            tail = np.geomspace(r["n_min"], w.max(), 40)
            ax.plot(tail, np.exp(r["intercept"] + r["correction"] * tail ** -CORRECTION_EXPONENT)
                    * tail ** r["slope"], "-", color=color, lw=1.6)
        theory, derived = reference(metric, setting_config(runs, setting))
        label = f"{name}: {fit}"
        if theory.kind in ("prediction", "bound") and len(w) > 1:
            grid = np.geomspace(w.min(), w.max(), 40)
            ax.plot(grid, m[-1] * (grid / w[-1]) ** theory.slope, "--" if derived else ":", color=color,
                    lw=0.9)
            label += (f"; theory {theory.text()}" if derived
                      else f"; not derived (dotted: mlp-type {theory.text()})")
        ax.plot([], [], "o-", color=color, ms=3.5, label=label)
        drawn += list(w)
    stage, short = metric.split("/", 1)
    ax.set_title(f"{short} ({'at init' if stage == 'initial' else 'final'}) vs width", fontsize=9)
    if drawn:
        _set_width_axis(ax, drawn)
    finish_log_panel(ax, bool(drawn), 7)
    ax.set_xlabel("width n", fontsize=8)
    ax.grid(True, which="major", alpha=0.25)


def _draw_claim(ax, corr: str, runs, dev, table, names, colors) -> None:
    """Final deviation against an initial correlation: every network's points, fit and bound."""
    ok = runs[runs["status"] == Status.OK]
    drawn = False
    for setting, name in names.items():
        r = dev[(dev["setting"] == setting) & (dev["deviation"] == CLAIM_DEVIATION)
                & (dev["correlation"] == corr)]
        g = ok[ok["setting"] == setting]
        if r.empty or CLAIM_DEVIATION not in g or corr not in g:
            continue
        r = r.iloc[0]
        x, y, w, keep = positive_points(g, corr, CLAIM_DEVIATION)
        if not keep.any():
            continue
        drawn = True
        color = colors[setting]
        inside = keep & (w >= r["n_min"]) if r["result"] == "fit" else keep
        for part, alpha in ((inside, 0.85), (keep & ~inside, FADED)):
            if part.any():
                ax.scatter(x[part], y[part], s=10, color=color, alpha=alpha)
        row = table[(table["network"] == name) & (table["correlation"] == corr.split("/", 1)[1])]
        verdict = row.iloc[0]["verdict"] if len(row) else ""
        label = f"{name}: {_slope_text(r) if r['result'] == 'fit' else r['result']}"
        if r["result"] == "fit":
            tail = np.geomspace(x[inside].min(), x[inside].max(), 40)
            ax.plot(tail, np.exp(r["intercept"]) * tail ** r["slope"], "-", color=color, lw=1.5)
        if r["theory_kind"] in ("lower bound", "bound", "prediction"):
            ax.plot(*theory_line(x, y, w, keep, r["theory_slope"], 40), "-.", color=color, lw=0.9, alpha=0.8)
            label += f" vs {r['theory']}" + (f": {verdict}" if verdict else "")
        ax.plot([], [], "o-", color=color, ms=3.5, label=label)
    if drawn:
        ax.set_xscale("log")
    finish_log_panel(ax, drawn, 7)
    ax.set_xlabel(f"{corr.split('/', 1)[1]} at init", fontsize=8)
    ax.set_ylabel(f"{CLAIM_DEVIATION.split('/', 1)[1]} (final)", fontsize=8)
    ax.set_title(f"final deviation vs initial {corr.split('/')[-1]} (dash-dot: the claim's bound)",
                 fontsize=9)
    ax.grid(True, which="major", alpha=0.25)


def plot_claim(runs: pd.DataFrame, slopes: pd.DataFrame, per_width: pd.DataFrame, local: pd.DataFrame,
               dev: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """plots/claim.png (module docstring)."""
    names = network_names(runs)
    colors = _colors(names)
    fig = Figure(figsize=(16, 12), layout="constrained")
    grid = fig.add_gridspec(3, 6, height_ratios=[2.2, 1.0, 2.4])
    for i, metric in enumerate(CLAIM_METRICS):
        _draw_width(fig.add_subplot(grid[0, 2 * i:2 * i + 2]), metric, runs, slopes, per_width, names, colors)
        ax = fig.add_subplot(grid[1, 2 * i:2 * i + 2])
        draw_local_slopes(ax, metric, slopes[slopes["setting"].isin(list(names))], local, colors, fontsize=7)
        ax.set_title(f"local slopes of {metric.split('/')[-1]} (± 95 % across seeds)", fontsize=8)
    for j, corr in enumerate(CLAIM_CORRELATIONS):
        _draw_claim(fig.add_subplot(grid[2, 3 * j:3 * j + 3]), corr, runs, dev, table, names, colors)
    fig.suptitle("The claim per network: the weak correlations at init and the final deviation from "
                 "linearity vs width (top; faded: below n_min), and the deviation against the correlations "
                 "(bottom)",
                 fontsize=10)
    return fig

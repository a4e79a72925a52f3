"""The report's tables as GitHub markdown, with the headers that explain them."""
from __future__ import annotations

import math

import pandas as pd

from .collect import _fmt, _missing


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub markdown table of df (cells stringified, '|' escaped, NaN → empty)."""
    def cell(v) -> str:
        return "" if _missing(v) else _fmt(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


SLOPES_HEADER = ("Width exponent b, judged on the asymptotic regime: per seed, least squares of "
                 "ln(metric) = a + b·ln(width) + c·width^(−1/2) (the leading finite-width correction) on "
                 "the status-ok jobs of each setting with width ≥ n_min, when at least 5 widths are ≥ n_min; "
                 "on 3 or 4 widths the plain ln(metric) = a + b·ln(width) per seed (the note says so: the "
                 "correction would leave too few residual degrees of freedom); the slope is the mean of the "
                 "seeds' b and ± the 95 % Student-t half-width t_{0.975, S−1}·sd(b)/√S across the S seeds "
                 "(a seed's points are correlated across widths: seeds are the replicates; one seed: "
                 "no interval and no verdict). n_min is "
                 "the smallest width from which the points pass the 5 % lack-of-fit F test of one power "
                 "law (seed scatter against the bend of the width means; \"auto\", at least 3 widths), "
                 "or --min-width; a plain power law over all widths (same per-seed interval) is shown "
                 "beside it and never judged. "
                 "\"theory\" is the setting's expected slope: a prediction (verdict "
                 "yes/no: does the CI cover it), a bound \"≤ b\" (verdict consistent when slope − CI ≤ b), "
                 "\"0 exactly\", or \"—\" where no result applies; \"inconclusive\" when the CI half-width "
                 "is at least |b| (such data cannot tell n^b from no width dependence); the regime rule, "
                 "the reasons and the "
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


def _fit_cells(r) -> dict[str, str]:
    """The cells every fit table shares: asymptotic fit (judged), its range and R², the
    all-widths fit (shown), theory, verdict, note."""
    return {"asymptotic slope ± 95% CI (t)": _slope_text(r), "widths fitted": _range_text(r),
            "R²": f"{r.r2:.3f}" if r.result == "fit" else "",
            "all widths (not judged)": _slope_text(r, "_all"), "theory": r.theory, "verdict": r.verdict,
            "note": r.note}


def slopes_markdown(slopes: pd.DataFrame) -> str:
    """The slope table as markdown (one row per setting × metric): asymptotic fit (judged) and
    all-widths fit (shown)."""
    rows = [{"setting": r.setting, "metric": r.metric, **_fit_cells(r)}
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
             "correlation (init)": r.correlation.split("/", 1)[1], **_fit_cells(r)}
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


def failures_markdown(counts: pd.DataFrame, fails: pd.DataFrame, problems: pd.DataFrame) -> str:
    """Jobs per setting and status, the jobs not fitted, and the damaged records."""
    return (f"Jobs per setting and status:\n\n{markdown_table(counts)}\n\n"
            + (f"Jobs not fitted (status ≠ ok):\n\n{markdown_table(fails)}\n"
               if len(fails) else "All jobs ok.\n")
            + (f"\nDamaged records (metrics.csv or W&B run file; the summary.json values are "
               f"still used):\n\n{markdown_table(problems)}\n" if len(problems) else ""))

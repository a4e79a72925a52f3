"""Fitting the runs table: width-scaling slopes, per-width aggregates, local slopes, and the
deviation against the correlations.

Metrics are named ``final/<name>`` (value at the last logged step) or ``initial/<name>`` (at θ₀).
A bare name means ``initial/`` for ``corr/*`` (the headline correlations are at θ₀), else ``final/``.

Per width (setting s, metric M, width n, seeds i = 1..k, finite values only)::

    mean = (1/k) Σ_i M_i,        s.e. = std_{ddof=1}(M_i) / √k

Slopes: :func:`wcntk.analysis.powerlaw.fit_power_law_by_seed` of M against n, per seed of a setting,
95 % Student-t CI across the seeds' slopes (t on S − 1 dof; docs/theory.md §8). Two fits:

    asymptotic   widths ≥ n_min (:func:`wcntk.analysis.asymptotic.choose_n_min`, the lack-of-fit rule of
                 docs/theory.md §7, or --min-width), ln M = a + b ln n + c n^{-1/2} per seed
                 when at least MIN_CORRECTION_WIDTHS = 5 widths are ≥ n_min (fit_form
                 "corrected"), else the plain ln M = a + b ln n per seed (fit_form "plain": on
                 3 or 4 widths the correction would leave a seed's fit with no or one residual
                 degree of freedom, and its slope would be whatever 3 points dictate):
                 columns slope, ci_half, intercept, correction (mean c; 0 when plain), …; the
                 verdict. One seed: its slope without CI, and no verdict. slope_plain,
                 ci_half_plain: the plain law on the same widths (the corrected fit's check)
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
for a bound, "consistent"/"below bound" for a lower bound, and "inconclusive" for any of them
when the CI half-width is at least the exponent's size.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ...core.metric_registry import CORRELATIONS, DEVIATIONS, REPORT_METRICS
from ...core.status import Status
from ..asymptotic import MIN_TAIL_WIDTHS, choose_n_min, local_slopes
from ..powerlaw import fit_power_law, fit_power_law_by_seed
from ..theory import Expectation, expected, expected_ratio
from .collect import _fmt, _setting_rows, _settings, metric_column, setting_columns, setting_config

ZERO_TOL = 1e-30
MIN_CORRECTION_WIDTHS = 5   # the n^{-1/2} term is fitted on tails of at least this many widths
DEFAULT_METRICS = REPORT_METRICS
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


MinWidth = float | Mapping[str, float | None] | None   # one for every setting, or per setting


def min_width_of(min_width: MinWidth, setting: str) -> float | None:
    """The --min-width of a setting: the one value, or the setting's entry of a mapping."""
    return min_width.get(setting) if isinstance(min_width, Mapping) else min_width


def regime(w: np.ndarray, v: np.ndarray, min_width: float | None = None) -> tuple[float, str]:
    """(n_min, rule) of metric values v at widths w: `min_width` as given ("--min-width"), else
    :func:`wcntk.analysis.asymptotic.choose_n_min` on the finite positive points."""
    if min_width is not None:
        return float(min_width), "--min-width"
    use = _usable(w, v)
    return choose_n_min(w[use], v[use])


WIDEN_FACTOR = 3.0   # a corrected interval over this many times the plain one on the same widths: noted


def _widening_note(corrected: dict, plain: dict) -> str:
    """The note when the corrected fit's interval is over WIDEN_FACTOR × the plain law's on the
    same widths while the seeds do not resolve the correction c (its 95 % interval covers 0; ""
    otherwise): by how much, why, and the plain law's slope. The corrected fit stays the judged
    one: dropping a real but unresolved correction would leave the plain law's window bias with
    a narrow interval (docs/theory.md §8)."""
    ratio = corrected["ci_half"] / plain["ci_half"] if plain.get("ci_half", 0) > 0 else math.nan
    if not ratio > WIDEN_FACTOR:
        return ""
    c, c_half = corrected["correction"], corrected.get("correction_ci_half", math.nan)
    if abs(c) > c_half:
        return ""
    return (f"the n^-1/2 correction (c = {c:+.3g} ± {c_half:.3g}, not resolved by these seeds) widens "
            f"the interval {ratio:.1f}× over the plain law on the same widths ({_fmt_fit(plain)}): more "
            f"seeds or widths narrow it")


def _fmt_fit(fit: dict) -> str:
    return f"{fit['slope']:+.3f} ± {fit['ci_half']:.3f}"


def _outside_local_slopes(w: np.ndarray, v: np.ndarray, slope: float) -> str:
    """The note when a corrected slope lies outside the range of the local slopes between the
    tail's adjacent widths ("" when inside): the correction term extrapolates beyond the data."""
    local = [r["slope"] for r in local_slopes(w, v)]
    if not local or min(local) <= slope <= max(local):
        return ""
    return (f"corrected slope {slope:+.3f} lies outside the tail's local slopes ({min(local):+.3f} … "
            f"{max(local):+.3f}): extrapolated by the n^-1/2 term")


def _judged_fit(x: np.ndarray, v: np.ndarray, w: np.ndarray, row: dict, n_min: float, rule: str,
                x_name: str, seeds: np.ndarray | None = None) -> dict:
    """All-points fit (columns *_all) and the asymptotic fit over points with width ≥ n_min
    (the plain columns, and the result the verdict reads). Fewer than MIN_TAIL_WIDTHS widths
    ≥ n_min: result "n/a", no verdict. With `seeds` (width fits): the asymptotic fit is the
    per-seed corrections-to-scaling fit on a tail of at least MIN_CORRECTION_WIDTHS widths, the
    plain per-seed power law on a shorter one (fit_form "corrected" / "plain", and the note says
    why), the all-widths fit a plain power law with the same per-seed interval (docs/theory.md
    §8); without (deviation vs correlation): pooled OLS (fit_form "pooled")."""
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
    corrections = seeds is not None and n_tail >= MIN_CORRECTION_WIDTHS
    fit = _fit_row(x[tail], v[tail], row, x_name, None if seeds is None else seeds[tail], corrections)
    fit.setdefault("correction", 0.0)
    notes = [out["note"], rule if rule.startswith("auto (") else ""]
    flags: list[str] = []
    plain = _fit_row(x[tail], v[tail], row, x_name, seeds[tail], False) if corrections else fit
    if corrections:
        widened = _widening_note(fit, plain)
        if widened:
            notes.append(widened)
            flags.append("correction widens CI")
        outside = _outside_local_slopes(w[tail], v[tail], fit["slope"])
        if outside:
            notes.append(outside)
            flags.append("outside local slopes")
    elif seeds is not None:
        notes.append(f"plain power law: {n_tail} widths ≥ n_min, the n^-1/2 correction needs "
                     f"{MIN_CORRECTION_WIDTHS}")
    if rule.startswith("auto (still steepening"):
        flags.append("steepening widths left out")
    if seeds is not None and fit.get("n_seeds") == 1:
        notes.append("one seed: slope without interval, no verdict")
    elif seeds is not None and fit.get("n_seeds") == 0:
        notes.append("no seed spans enough widths: pooled fit without interval, no verdict")
    return {**out, **{k: fit[k] for k in (*FIT_COLUMNS, "correction", "result", "n_points", f"n_{x_name}")},
            "slope_plain": plain.get("slope", math.nan), "ci_half_plain": plain.get("ci_half", math.nan),
            "n_widths_fit": n_tail, "note": "; ".join(filter(None, notes)), "flags": "; ".join(flags),
            "fit_form": "pooled" if seeds is None else "corrected" if corrections else "plain"}


def _theory_columns(e: Expectation, row: dict) -> dict:
    return {"theory": e.text(), "theory_kind": e.kind, "theory_slope": e.slope, "theory_reason": e.reason,
            "verdict": e.verdict(row["result"], row.get("slope", math.nan), row.get("ci_half", math.nan))}


def _finish(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in (*FIT_COLUMNS, *(f"{k}_all" for k in FIT_COLUMNS), "n_min", "correction", "slope_plain",
              "ci_half_plain"):
        if c not in df:
            df[c] = math.nan
    if "n_widths_fit" not in df:
        df["n_widths_fit"] = 0
    for c in ("n_min_rule", "result_all", "fit_form", "flags"):
        if c not in df:
            df[c] = ""
    df["ci_low"] = df["slope"] - df["ci_half"]
    df["ci_high"] = df["slope"] + df["ci_half"]
    return df


def _metric_points(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return g["width"].astype(float).to_numpy(), g[metric].astype(float).to_numpy()


def _per_width(w: np.ndarray, v: np.ndarray) -> pd.DataFrame:
    """width, n, mean and se (standard error over seeds; nan for one seed) of the finite values
    at each positive width."""
    finite = np.isfinite(v) & np.isfinite(w) & (w > 0)
    return (pd.DataFrame({"width": w[finite], "value": v[finite]}).groupby("width")["value"]
            .agg(n="size", mean="mean", se="sem").reset_index())


def fit_slopes(runs: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, min_width: MinWidth = None
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
    ok = runs[runs["status"] == Status.OK]
    slope_rows, per_width_parts, local_rows = [], [], []
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
                n_min, rule = regime(w, v, min_width_of(min_width, setting))
                per_width_parts.append(_per_width(w, v).assign(setting=setting, metric=metric,
                                                               in_fit=lambda d, n=n_min: d["width"] >= n))
                local_rows += [{"setting": setting, "metric": metric, **r,
                                "in_fit": bool(r["width_lo"] >= n_min)} for r in local_slopes(w, v)]
                seeds = g["seed"].to_numpy() if "seed" in g else np.zeros(len(g))
                row = _judged_fit(w, v, w, row, n_min, rule, "widths", seeds)
            slope_rows.append({**row, **_theory_columns(expected(metric, config), row)})
    columns = ["setting", "metric", "width", "n", "mean", "se", "in_fit"]
    per_width = (pd.concat(per_width_parts, ignore_index=True)[columns] if per_width_parts
                 else pd.DataFrame(columns=columns))
    local = pd.DataFrame(local_rows, columns=["setting", "metric", "width_lo", "width_hi", "slope", "stderr",
                                              "df", "ci_half", "n_lo", "n_hi", "in_fit"])
    return _finish(slope_rows), per_width, local


def fit_deviation_vs_correlation(runs: pd.DataFrame, deviations: Sequence[str] = DEVIATIONS,
                                 correlations: Sequence[str] = CORRELATIONS,
                                 min_width: MinWidth = None) -> pd.DataFrame:
    """Per setting, deviation ∝ correlation^b: one row per setting × deviation × correlation.
    Asymptotic fit (plain columns, the verdict's) over the ok jobs of width ≥ n_min, where n_min
    is the larger of the two metrics' :func:`regime` (both must be asymptotic for b = β/γ), or
    `min_width`; the fit over all ok jobs beside it (*_all). theory from
    :func:`wcntk.analysis.theory.expected_ratio`."""
    ok = runs[runs["status"] == Status.OK]
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
                    own = min_width_of(min_width, setting)
                    (n_dev, r_dev), (n_corr, r_corr) = regime(w, y, own), regime(w, x, own)
                    n_min = max(n_dev, n_corr)
                    rule = r_dev if n_dev >= n_corr else r_corr
                    row = _judged_fit(x, y, w, row, n_min, rule, "values")
                rows.append({**row, **_theory_columns(expected_ratio(dev, corr, config), row)})
    return _finish(rows)

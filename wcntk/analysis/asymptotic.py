"""The asymptotic regime of a width sweep: local slopes between adjacent widths, and the
smallest width n_min from which the data follow one power law (the report fits widths ≥ n_min).

Every width exponent of the theory holds as n → ∞; small widths sit in a pre-asymptotic regime
(docs/theory.md §7). On points (n_j, y_j), y > 0, with k_w seeds at width w:

Local slope between adjacent widths w < w' (unpaired seeds, Welch)::

    m_w = mean_i ln y_{w,i},   s_w² = var_{ddof=1}(ln y_{w,i}),   Δ = ln w' − ln w
    ℓ = (m_w' − m_w) / Δ,      SE(ℓ) = √(s_w²/k_w + s_w'²/k_w') / Δ
    df = (a + a')² / (a²/(k_w − 1) + a'²/(k_w' − 1)),   a = s_w²/k_w    (Welch–Satterthwaite)
    95 % interval: ℓ ± t_{0.975, df}·SE(ℓ)           (no interval with one seed at either width)

Rule for n_min (automatic): the smallest width n_j such that

    (a) at least MIN_TAIL_WIDTHS = 3 widths are ≥ n_j, and
    (b) the points with width ≥ n_j pass the lack-of-fit F test of one power law at level
        LACK_OF_FIT_LEVEL = 0.05: with y = ln metric, ŷ the OLS line over those points
        (W widths, N points, k_w seeds at width w, ȳ_w the mean of y at w),

            SS_lof = Σ_w k_w (ȳ_w − ŷ(w))²       (how far the width means stray from the line)
            SS_pe  = Σ_w Σ_i (y_wi − ȳ_w)²        (pure error: seed-to-seed scatter)
            F = [SS_lof / (W − 2)] / [SS_pe / (N − W)],   pass when P(F_{W−2, N−W} ≥ F) ≥ 0.05

(b) asks whether the bend in the width means is larger than the seeds' scatter explains.
Its pure error pools every width of the tail, so it detects a crossover that no single local
slope (3 seeds each) can. A pure power law keeps every width (n_min = the smallest width,
with probability 0.95 under the noise model); a flat-then-power-law sweep starts at the
crossover. If no width passes, or there is one seed per width (no pure error), n_min is the
third-widest width (the shortest tail with a CI) and the rule says so. Fewer than 3 widths:
no asymptotic fit. `min_width` in the report overrides the rule.

    (c) still steepening: while more than 3 widths are ≥ n_min and the tail's first local slope
        ℓ₁ (n_min → next width) is shallower than a later local slope ℓ_j of the tail beyond both
        intervals (|ℓ_j| − |ℓ₁| > h₁ + h_j, h the 95 % Welch half-widths), n_min moves up one
        width: a tail whose slope is still steepening is not yet asymptotic, however well the
        F test's pooled scatter hides the bend (one seed per width: no intervals, no move).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .powerlaw import CONFIDENCE, fit_power_law

MIN_TAIL_WIDTHS = 3
LACK_OF_FIT_LEVEL = 0.05


def local_slopes(widths, values, confidence: float = CONFIDENCE) -> list[dict]:
    """One dict per pair of adjacent widths (values > 0 and finite only): width_lo, width_hi,
    slope, stderr, df, ci_half (nan with one seed at either width), n_lo, n_hi."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    keep = np.isfinite(w) & np.isfinite(v) & (w > 0) & (v > 0)
    w, u = w[keep], np.log(v[keep])
    levels = np.unique(w)
    out = []
    for lo, hi in zip(levels[:-1], levels[1:], strict=True):
        a, b = u[w == lo], u[w == hi]
        delta = math.log(hi / lo)
        row = {"width_lo": float(lo), "width_hi": float(hi), "slope": (b.mean() - a.mean()) / delta,
               "stderr": math.nan, "df": math.nan, "ci_half": math.nan, "n_lo": len(a), "n_hi": len(b)}
        if len(a) > 1 and len(b) > 1:
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            se = math.sqrt(va + vb) / delta
            df = ((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
                  if va + vb > 0 else math.inf)
            row.update(stderr=se, df=df, ci_half=float(stats.t.ppf(0.5 + confidence / 2, df)) * se)
        out.append(row)
    return out


def lack_of_fit_p(widths, values) -> float:
    """p-value of the lack-of-fit F test of one power law (module docstring); nan without
    replicates (one point per width) or with fewer than 3 widths."""
    w = np.asarray(widths, float)
    y = np.log(np.asarray(values, float))
    levels = np.unique(w)
    n_lof, n_pe = len(levels) - 2, len(y) - len(levels)
    if n_lof < 1 or n_pe < 1:
        return math.nan
    fit = fit_power_law(w, np.exp(y))
    means = np.array([y[w == lv].mean() for lv in levels])
    counts = np.array([(w == lv).sum() for lv in levels])
    ss_lof = float((counts * (means - fit["intercept"] - fit["slope"] * np.log(levels)) ** 2).sum())
    ss_pe = float(sum(((y[w == lv] - m) ** 2).sum() for lv, m in zip(levels, means, strict=True)))
    if ss_pe <= 0:   # identical seeds: only an exact power law passes
        return 1.0 if ss_lof <= 1e-20 * max(1.0, float((y ** 2).sum())) else 0.0
    return float(stats.f.sf((ss_lof / n_lof) / (ss_pe / n_pe), n_lof, n_pe))


def steepening_start(widths, values, n_min: float) -> tuple[float, str]:
    """(c) of the module docstring: n_min moved past the widths whose local slopes are still
    steepening beyond their intervals, and "" or the note that says so."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    moved = []
    while len(np.unique(w[w >= n_min])) > MIN_TAIL_WIDTHS:
        tail = local_slopes(w[w >= n_min], v[w >= n_min])
        first = tail[0]
        gap = first["ci_half"]
        later = [r for r in tail[1:] if abs(r["slope"]) - abs(first["slope"]) > gap + r["ci_half"]]
        if not later:   # nan intervals (one seed) compare False: no move
            break
        moved.append((first, later[0]))
        n_min = first["width_hi"]
    if not moved:
        return n_min, ""
    first, later = moved[0]
    def text(r: dict) -> str:
        return f"{r['slope']:+.2f} ± {r['ci_half']:.2f} at {r['width_lo']:g}→{r['width_hi']:g}"
    return n_min, f"still steepening below {n_min:g}: local slope {text(first)}, {text(later)}"


def choose_n_min(widths, values) -> tuple[float, str]:
    """(n_min, rule) by the rule of the module docstring; rule is "auto", or says why the
    widest 3 widths were taken or why n_min moved past still-steepening widths (c); (nan,
    "fewer than 3 widths") when there is no tail."""
    w, v = np.asarray(widths, float), np.asarray(values, float)
    keep = np.isfinite(w) & np.isfinite(v) & (w > 0) & (v > 0)
    w, v = w[keep], v[keep]
    levels = np.unique(w)
    if len(levels) < MIN_TAIL_WIDTHS:
        return math.nan, f"fewer than {MIN_TAIL_WIDTHS} widths"
    widest = float(levels[-MIN_TAIL_WIDTHS])
    if len(w) == len(levels):
        return widest, f"auto (one seed per width, no lack-of-fit test: widest {MIN_TAIL_WIDTHS})"
    for lv in levels[:len(levels) - MIN_TAIL_WIDTHS + 1]:
        p = lack_of_fit_p(w[w >= lv], v[w >= lv])
        if math.isfinite(p) and p >= LACK_OF_FIT_LEVEL:
            n_min, why = steepening_start(w, v, float(lv))
            return n_min, f"auto ({why})" if why else "auto"
    return widest, f"auto (no tail passes the lack-of-fit test: widest {MIN_TAIL_WIDTHS})"

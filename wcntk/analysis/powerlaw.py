"""Power-law fits y = e^a · x^b on log-log axes, with a Student-t confidence interval.

On N points (x_j, y_j), x_j, y_j > 0 (e.g. x = width, y = a metric; the (width, seed)
points are treated as independent)::

    u_j = ln x_j,   v_j = ln y_j,   v = a + b·u + ε      (ordinary least squares: scipy.stats.linregress)
    b = S_uv / S_uu,   a = v̄ − b·ū,   R² = r²,   SE(b) = √(Σ_j r_j² / (N − 2) / S_uu)
    95 % CI of b:  b ± t_{0.975, N−2} · SE(b)        (t quantile: scipy.stats.t.ppf)

N = 2 gives the slope without a CI (SE and CI half-width nan).

The report judges width exponents with :func:`fit_power_law_by_seed` instead (per seed, with
an n^{-1/2} correction term when the tail has enough widths, t interval across seeds;
docs/theory.md §8); the pooled fit above serves the deviation vs correlation table.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def fit_power_law(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """OLS of ln y on ln x: slope, intercept, stderr (SE of the slope), ci_half (t-CI
    half-width at `confidence`), r2, n_points."""
    u, v = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    n = len(u)
    fit = stats.linregress(u, v)
    sst = float(((v - v.mean()) ** 2).sum())
    se = float(fit.stderr) if n > 2 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * se if n > 2 else math.nan
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "stderr": se, "ci_half": half,
            "r2": float(fit.rvalue) ** 2 if sst > 0 else math.nan, "n_points": n}


CORRECTION_EXPONENT = 0.5   # leading finite-width correction: relative O(n^{-1/2}) (docs/theory.md §8)


def fit_power_law_by_seed(x: Sequence[float], y: Sequence[float], seeds: Sequence, corrections: bool = True,
                          confidence: float = CONFIDENCE) -> dict[str, float]:
    """The judged width fit (docs/theory.md §8): per seed s, OLS of ln y on ln x (and, with
    `corrections`, on x^{-1/2}: ln y = a_s + b_s ln x + c_s x^{-1/2}); slope = mean of the b_s,
    95 % CI  b̄ ± t_{0.975, S−1} · sd(b_s)/√S  over the S usable seeds: with `corrections`,
    those with more distinct widths than the 3 parameters (a seed's fit keeps a residual
    degree of freedom, never 3 parameters through 3 points), plain, those with at least 2.
    intercept, correction: means of a_s, c_s (0 without corrections), correction_ci_half: the
    same t half-width for c (nan without corrections or with one seed); r2 of that mean curve on
    every point; n_points, n_seeds. One usable seed: its slope without a CI. No usable seed: the
    pooled OLS (:func:`fit_power_law`) of the plain power law, without a CI (n_seeds 0)."""
    u, v = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    s = np.asarray(seeds)
    min_widths = 4 if corrections else 2
    coefs = []
    for seed in dict.fromkeys(s.tolist()):
        q = s == seed
        if len(np.unique(u[q])) < min_widths:
            continue
        cols = [np.ones(int(q.sum())), u[q]] + ([np.exp(-CORRECTION_EXPONENT * u[q])] if corrections else [])
        coefs.append(np.linalg.lstsq(np.column_stack(cols), v[q], rcond=None)[0])
    if not coefs:
        fit = fit_power_law(x, y, confidence)
        return {**fit, "stderr": math.nan, "ci_half": math.nan, "correction": 0.0,
                "correction_ci_half": math.nan, "n_seeds": 0}
    c = np.array(coefs)
    k = len(c)
    a, b = float(c[:, 0].mean()), float(c[:, 1].mean())
    corr = float(c[:, 2].mean()) if corrections else 0.0
    se = float(c[:, 1].std(ddof=1)) / math.sqrt(k) if k > 1 else math.nan
    t = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) if k > 1 else math.nan
    half = t * se
    c_half = t * float(c[:, 2].std(ddof=1)) / math.sqrt(k) if corrections and k > 1 else math.nan
    resid = v - a - b * u - corr * np.exp(-CORRECTION_EXPONENT * u)
    sst = float(((v - v.mean()) ** 2).sum())
    return {"slope": b, "intercept": a, "correction": corr, "correction_ci_half": c_half, "stderr": se,
            "ci_half": half,
            "r2": 1.0 - float((resid ** 2).sum()) / sst if sst > 0 else math.nan, "n_points": len(u),
            "n_seeds": k}

"""Power-law fits y = e^a · x^b on log-log axes, with a Student-t confidence interval.

On N points (x_j, y_j), x_j, y_j > 0 (e.g. x = width, y = a metric; the (width, seed)
points are treated as independent)::

    u_j = ln x_j,   v_j = ln y_j,   v = a + b·u + ε              (ordinary least squares)
    b = S_uv / S_uu,   a = v̄ − b·ū,   R² = 1 − Σ_j r_j² / Σ_j (v_j − v̄)²
    s² = Σ_j r_j² / (N − 2),   SE(b) = s / √S_uu
    95 % CI of b:  b ± t_{0.975, N−2} · SE(b)        (t quantile: scipy.stats.t.ppf)

N = 2 gives the slope without a CI (SE and CI half-width nan).
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
    suu = float(((u - u.mean()) ** 2).sum())
    b = float(((u - u.mean()) * (v - v.mean())).sum()) / suu
    a = float(v.mean() - b * u.mean())
    ssr = float(((v - a - b * u) ** 2).sum())
    sst = float(((v - v.mean()) ** 2).sum())
    se = math.sqrt(ssr / (n - 2) / suu) if n > 2 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * se if n > 2 else math.nan
    return {"slope": b, "intercept": a, "stderr": se, "ci_half": half,
            "r2": 1.0 - ssr / sst if sst > 0 else math.nan, "n_points": n}

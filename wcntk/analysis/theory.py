"""Expected width exponents of every reported metric, as a function of the setting.

A metric M that scales as M ∝ n^b with the width n has log-log slope b. For a setting
(the flattened config of a job: dotted keys such as ``optimizer.lr_width_exponent``)
:func:`expected` returns an :class:`Expectation`:

    prediction   the slope the theory gives (verdict "yes" when the fit's 95 % CI covers it)
    bound        an upper bound on the slope, from an O(n^b) result (verdict "consistent"
                 when slope − CI half-width ≤ b, else "above bound")
    lower bound  slope ≥ b (verdict "consistent" when slope + CI half-width ≥ b, else
                 "below bound"); arises in :func:`expected_ratio` from an upper bound divided
                 by a negative exponent
    exact 0      the metric vanishes identically in this setting (verdict "yes" when every
                 run measured 0)
    none         no result applies ("—"): no verdict

A prediction or bound b is judged only when the 95 % CI half-width is below |b|; a wider interval
cannot tell n^b from no width dependence at all, and the verdict is "inconclusive".

With α = ``optimizer.lr_width_exponent`` (η = lr·(n/n_ref)^α), NTK parameterization, and the
correlations C_{D,d} = η^{D/2+d}/(D! d!)·∇^{D+d}f·(∇f)^{⊗d} at θ₀:

    corr/C02            −1 + 2α            D²f[g,g] = O(1/n), times η²
    corr/C11            −1/2 + 3α/2        ‖∇²f g‖ = O(1/√n), times η^{3/2}
    corr/C03            −1 + 3α            smooth σ (the σ''' self-term of each unit)
                        −2 + 3α            piecewise-linear σ (relu, leaky_relu, identity), depth ≥ 2
                        exact 0            piecewise-linear σ, depth 1 (f is bilinear a.e.)
    corr/step_ratio_d   e_d + (d−1)α       e_2 = −1; e_3 as C03 at α = 0 (u = −η∇L(θ₀), any optimizer)
    lin/param_rel_change  −1/2 (prediction: depth 1, α = 0), else bound −1/2 (α ≤ 0)
    lin/func_rmse, lin/taylor_rmse, lin/ntk_rel_change   bound −1/2 (α ≤ 0, gd/sgd/momentum, mse)
    lin/func_mse        bound −1 (its square)
    lin/loss_gap        none

Deviation against correlation (:func:`expected_ratio`). For any network at α = 0 (gradient
descent on the MSE, ntk parameterization), the claim's bound (:func:`claim_bound`, docs/theory.md
§6.1): func_rmse = O(C11) = O(√C02), so its slope is ≥ +1 against C11 and ≥ +1/2 against C02
(func_mse: ≥ +2, ≥ +1), whatever the network's width exponents. Otherwise: if a deviation D ∝ n^β and a
correlation C ∝ n^γ (γ ≠ 0), then D ∝ C^{β/γ}: the slope of ln D on ln C is β/γ. A
prediction β gives the prediction β/γ; an upper bound (true β' ≤ β) gives β'/γ ≥ β/γ when
γ < 0 (dividing by a negative number turns the inequality), a lower bound, and ≤ β/γ when
γ > 0. E.g. α = 0: func_rmse (≤ −1/2) against C02 (−1): ≥ +1/2; against C11 (−1/2): ≥ +1.

Everything else ("standard" and "mean_field" parameterizations, adam, xent for lin/*,
α > 0 for lin/*) is "none". docs/theory.md derives each entry. The entries are derived for the
MLP and the CNN; the resnet keeps the corr/* ones (C03 and step_ratio_3 as at depth ≥ 2: it
always has several weight layers), every other metric of the resnet and every metric of the
transformer and of a custom network is "none" (docs/theory.md, "Other networks"); :func:`reference`
gives the MLP's entry for them, drawn for reference in the claim figure.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.metric_registry import FINAL, INITIAL, correlation, deviation, fitted_names

SLOPE_TOL = 1e-9   # added to every CI half-width in a verdict: floating-point rounding of exact data

PIECEWISE_LINEAR = ("relu", "leaky_relu", "identity")
SMOOTH = ("erf", "tanh", "sigmoid", "gelu")
GRADIENT_DESCENT = ("gd", "sgd", "momentum")
DERIVED_KINDS = ("mlp", "cnn")
TRAINING_DEVIATIONS = tuple(map(deviation, ("func_rmse", "func_mse", "taylor_rmse", "ntk_rel_change",
                                            "param_rel_change")))   # the lin/* entries (_training)
RESNET_METRICS = fitted_names(family="correlation")   # the corr/* entries hold for the resnet too


@dataclass(frozen=True)
class Expectation:
    """What the theory says about one metric's width exponent in one setting."""

    kind: str                  # prediction | bound | lower bound | exact 0 | none
    slope: float = math.nan    # the predicted slope or the bound (nan for "exact 0" / "none")
    reason: str = ""

    def text(self) -> str:
        """Short cell text: "−1", "≤ −0.5", "≥ +0.5", "0 exactly", "—"."""
        if self.kind == "prediction":
            return f"{self.slope:+.3g}"
        if self.kind == "bound":
            return f"≤ {self.slope:+.3g}"
        if self.kind == "lower bound":
            return f"≥ {self.slope:+.3g}"
        return "0 exactly" if self.kind == "exact 0" else "—"

    def verdict(self, result: str, slope: float = math.nan, ci_half: float = math.nan) -> str:
        """"yes"/"no" (prediction, exact 0), "consistent"/"above bound" (bound),
        "consistent"/"below bound" (lower bound), "" (no verdict), and "inconclusive" when the
        interval is at least as wide as the exponent it judges (ci_half ≥ |b|): such data cannot
        tell n^b from no width dependence, so no verdict either way.
        `result` is the fit's result ("fit", "exactly 0", "n/a")."""
        if self.kind == "exact 0":
            return {"exactly 0": "yes", "fit": "no"}.get(result, "")
        if self.kind == "none" or result != "fit" or not math.isfinite(ci_half):
            return ""
        if ci_half >= abs(self.slope):
            return "inconclusive"
        ci_half += SLOPE_TOL   # exact data: identical seeds give ci_half 0 and rounding-level slopes
        if self.kind == "prediction":
            return "yes" if abs(slope - self.slope) <= ci_half else "no"
        if self.kind == "lower bound":
            return "consistent" if slope + ci_half >= self.slope else "below bound"
        return "consistent" if slope - ci_half <= self.slope else "above bound"


NONE = Expectation("none")


def lookup(config: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """config[name], else the value of the one dotted key ending in "." + name, else default."""
    if name in config:
        return config[name]
    hits = [v for k, v in config.items() if k.endswith("." + name)]
    return hits[0] if len(hits) == 1 else default


def optimizer_name(config: Mapping[str, Any]) -> str:
    """`optimizer.name` of a flattened config (gd when absent)."""
    name = config.get("optimizer.name")
    return str(name) if name is not None else "gd"


def base_metric(metric: str) -> str:
    """'final/lin/func_rmse_test' → 'lin/func_rmse', 'initial/corr/C02_max' → 'corr/C02';
    step_ratio_<d> keeps its order."""
    name = metric.removeprefix(INITIAL).removeprefix(FINAL)
    name = re.sub(r"_(train|test)$", "", name)
    return re.sub(r"_max$", "", name)


def _number(v: Any, default: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def expected(metric: str, config: Mapping[str, Any]) -> Expectation:
    """The theory entry for `metric` (any of initial/, final/, _train/_test/_max forms) in the
    setting described by the flattened `config`."""
    name = base_metric(metric)
    param = str(lookup(config, "parameterization", "ntk"))
    alpha = _number(lookup(config, "lr_width_exponent", 0.0), math.nan)
    if param == "mean_field":
        return Expectation("none", reason="mean_field is the control: the weak-correlation scaling "
                                          "is derived for the ntk parameterization")
    if param != "ntk":
        return Expectation("none", reason=f"{param} parameterization: layer-wise effective learning "
                                          "rates mix width exponents; no single law")
    if not math.isfinite(alpha):
        return NONE
    kind = str(lookup(config, "kind", "mlp"))
    if kind not in DERIVED_KINDS and not (kind == "resnet" and name in RESNET_METRICS):
        return Expectation("none", reason=f"model={kind}: no width exponent derived for {name}")
    activation = str(lookup(config, "activation", ""))
    depth = int(_number(lookup(config, "depth", 1), 1)) if kind != "resnet" else 2
    pl = activation in PIECEWISE_LINEAR
    if not pl and activation not in SMOOTH and name in (correlation("C03"), correlation("step_ratio_3")):
        return Expectation("none", reason=f"activation {activation!r} not classified")
    if name == correlation("C02"):
        return Expectation("prediction", -1 + 2 * alpha,
                           "C02 = η²/2·D²f[g,g]; D²f[g,g] = O(1/n), η² ∝ n^{2α}")
    if name == correlation("C11"):
        return Expectation("prediction", -0.5 + 1.5 * alpha,
                           "C11 = η^{3/2}‖∇²f g‖; ‖∇²f g‖ = O(1/√n), η^{3/2} ∝ n^{3α/2}")
    third = _third_order(pl, depth)
    if name == correlation("C03"):
        return third if third.kind == "exact 0" else Expectation(
            "prediction", third.slope + 3 * alpha, third.reason + "; η³ ∝ n^{3α}")
    step = re.fullmatch(re.escape(correlation("step_ratio_")) + r"(\d+)", name)
    if step:
        d = int(step.group(1))
        if d == 2:
            return Expectation("prediction", -1 + alpha, "u = −η∇L(θ₀): ratio ∝ η·D²f[g,g]/Θ = O(1/n)·η")
        if d == 3:
            return third if third.kind == "exact 0" else Expectation(
                "prediction", third.slope + 2 * alpha, third.reason + "; ratio ∝ η²·D³f[g,g,g]/Θ")
        return NONE
    return _training(name, config, alpha, depth)


def _third_order(piecewise_linear: bool, depth: int) -> Expectation:
    """Width exponent of D³f[g,g,g] at α = 0 (the C03 entry without its η³)."""
    if not piecewise_linear:
        return Expectation("prediction", -1.0, "smooth σ: the σ''' self-term is O(1/n)")
    if depth <= 1:
        return Expectation("exact 0", reason="piecewise-linear σ, 1 hidden layer: f is bilinear "
                                             "in (W₁, W₂) a.e., D³f = 0")
    return Expectation("prediction", -2.0, "piecewise-linear σ: σ'' = 0 a.e., only cross-layer "
                                           "terms, each O(1/n)")


def _training(name: str, config: Mapping[str, Any], alpha: float, depth: int) -> Expectation:
    """lin/* after training: bounds (and one prediction) for gradient descent on the MSE."""
    if name not in TRAINING_DEVIATIONS:
        return NONE
    opt, loss = optimizer_name(config), str(lookup(config, "loss", "mse"))
    if opt not in GRADIENT_DESCENT:
        return Expectation("none", reason=f"{opt}: per-coordinate step sizes do not shrink with width")
    if loss != "mse":
        return Expectation("none", reason=f"{loss}: no convergence, outputs keep growing")
    if alpha > 0:
        return Expectation("none", reason="α > 0: the learning rate outgrows the lazy regime")
    if name == deviation("param_rel_change"):
        if depth == 1 and alpha == 0:
            return Expectation("prediction", -0.5, "‖θ_t − θ₀‖ → O(1) at fixed ηt; ‖θ₀‖ ∝ √P ∝ √n")
        return Expectation("bound", -0.5, "‖θ_t − θ₀‖ does not grow for α ≤ 0; ‖θ₀‖ grows ≥ √n")
    if name == deviation("func_mse"):
        return Expectation("bound", -1.0, "square of func_rmse")
    return Expectation("bound", -0.5, "O(1/√n) deviation from linear dynamics (α ≤ 0)")


CLAIM_DEVIATIONS = {deviation("func_rmse"): 1.0, deviation("func_mse"): 2.0}   # deviation ∝ ε^power
CLAIM_CORRELATIONS = {correlation("C11"): 1.0, correlation("C02"): 2.0}         # correlation ∝ ε^power


def claim_bound(deviation_metric: str, correlation_metric: str, config: Mapping[str, Any]) -> Expectation:
    """The paper's claim as a slope against a correlation, for any network whose correlations
    vanish with width (docs/theory.md §6): over a fixed training duration (α = 0), gradient
    descent on the MSE in the ntk parameterization, the deviation is O(ε) with C11 ≍ ε and
    C02 ≍ ε², so ln(func_rmse) against ln(C11) has slope ≥ 1 and against ln(C02) slope ≥ 1/2
    (func_mse: twice these). "none" where a condition fails or the pair is not one of these."""
    dev, corr = base_metric(deviation_metric), base_metric(correlation_metric)
    if dev not in CLAIM_DEVIATIONS or corr not in CLAIM_CORRELATIONS:
        return NONE
    param = str(lookup(config, "parameterization", "ntk"))
    alpha = _number(lookup(config, "lr_width_exponent", 0.0), math.nan)
    opt, loss = optimizer_name(config), str(lookup(config, "loss", "mse"))
    why = ("ntk parameterization" if param != "ntk" else "α = 0 (a training duration fixed in width)"
           if alpha != 0 else "gradient descent (gd, sgd, momentum)" if opt not in GRADIENT_DESCENT
           else "the MSE loss" if loss != "mse" else "")
    if why:
        return Expectation("none", reason=f"the claim's bound is stated for {why}")
    slope = CLAIM_DEVIATIONS[dev] / CLAIM_CORRELATIONS[corr]
    return Expectation("lower bound", slope,
                       f"the claim, any network: {dev} = O(ε^{CLAIM_DEVIATIONS[dev]:g}), "
                       f"{corr} ≍ ε^{CLAIM_CORRELATIONS[corr]:g} → slope ≥ {slope:g} (docs/theory.md §6)")


def expected_ratio(deviation: str, correlation: str, config: Mapping[str, Any]) -> Expectation:
    """The expected slope of ln(deviation) against ln(correlation) across widths. At α = 0 for
    func_rmse / func_mse against C02 / C11: the claim's bound for any network (claim_bound).
    Otherwise β/γ from the width exponents β (deviation) and γ (correlation) of :func:`expected`.
    A prediction over a prediction is a prediction; an upper bound β over a prediction γ < 0 is
    the lower bound ≥ β/γ (γ > 0: the bound ≤ β/γ); anything else (no entry, exact 0, γ = 0) is
    "none"."""
    claim = claim_bound(deviation, correlation, config)
    if claim.kind != "none":
        return claim
    d, c = expected(deviation, config), expected(correlation, config)
    if d.kind not in ("prediction", "bound") or c.kind != "prediction" or c.slope == 0:
        return Expectation("none", reason=claim.reason or "needs a width exponent for both (deviation: "
                                          f"{d.text()}, correlation: {c.text()})")
    ratio = d.slope / c.slope
    reason = (f"deviation ∝ n^β, β {'=' if d.kind == 'prediction' else '≤'} {d.slope:+.3g}; "
              f"correlation ∝ n^γ, γ = {c.slope:+.3g}; slope β/γ")
    if d.kind == "prediction":
        return Expectation("prediction", ratio, reason)
    return Expectation("lower bound" if c.slope < 0 else "bound", ratio,
                       reason + (" (γ < 0 turns ≤ into ≥)" if c.slope < 0 else ""))


def reference(metric: str, config: Mapping[str, Any]) -> tuple[Expectation, bool]:
    """(the width exponent of `metric` in this setting, whether it is derived for this network):
    where it is not (transformer, custom, the resnet's lin/*), the MLP's entry in the same
    setting, drawn for reference and never judged."""
    own = expected(metric, config)
    kind = str(lookup(config, "kind", "mlp"))
    if own.kind != "none" or kind in DERIVED_KINDS:
        return own, True
    mlp = {k: v for k, v in config.items() if not k.endswith(".kind") and k != "kind"}
    return expected(metric, {**mlp, "model.kind": "mlp"}), False

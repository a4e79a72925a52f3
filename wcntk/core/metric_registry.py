"""Every metric a run logs, defined once: its name, family and split, when the trainer measures
it, and what the analysis does with it. The trainer names what it logs with the builders here
(model_metric, deviation, correlation) and logs :data:`METRIC_NAMES` (the columns of metrics.csv,
in this order); the report, the dashboard, the run's closing line and the theory take their
names, prefixes and lists from here.

    family    loss | accuracy | deviation (network against its linearized twin) | correlation
              (derivative correlations at the current parameters; docs/theory.md §2)
    split     train | test | none (not measured on a data split)
    cadence   log: every `log_every` steps; corr: step 0, every `corr_every` steps and the last step
    fit       the value the report fits against width: "final" (last logged step) or "initial"
              (at θ₀); None: not fitted. `rank` orders the fitted metrics in the report's tables
    compared  the deviation-vs-correlation comparison (the paper's) takes it: a deviation (final)
              on one axis, a correlation (init) on the other
    headline  in the one closing line of a run
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("loss", "accuracy", "deviation", "correlation")
SPLITS = ("train", "test", "none")

# Name prefixes: the network's and the twin's losses and accuracies, the deviations between them
# (lin/), the derivative correlations (corr/); a record's value at θ₀ and at the last logged step.
NET, TWIN, LIN, CORR = "net/", "twin/", "lin/", "corr/"
INITIAL, FINAL = "initial/", "final/"


def model_metric(model: str, split: str, kind: str) -> str:
    """`net/train_loss`: a loss or accuracy (kind "loss" | "acc") of NET or TWIN on a split."""
    return f"{model}{split}_{kind}"


def deviation(name: str, split: str | None = None) -> str:
    """`lin/func_rmse_test` (a deviation on a split) or `lin/param_rel_change` (split None)."""
    return LIN + name + (f"_{split}" if split else "")


def correlation(name: str, stat: str | None = None) -> str:
    """`corr/C02` (RMS over probes and outputs) or `corr/C02_max` (stat "max")."""
    return CORR + name + (f"_{stat}" if stat else "")


def is_correlation(name: str) -> bool:
    return name.startswith(CORR)


def stage_column(spec: str) -> str:
    """A report column: 'final/…' or 'initial/…' as given; a bare name → initial/ for a
    correlation (the headline correlations are at θ₀), else final/."""
    if spec.startswith((FINAL, INITIAL)):
        return spec
    return (INITIAL if is_correlation(spec) else FINAL) + spec


@dataclass(frozen=True)
class Metric:
    name: str
    family: str
    split: str = "none"
    cadence: str = "log"
    fit: str | None = None
    rank: int | None = None
    compared: bool = False
    headline: bool = False
    trajectory: bool = False    # drawn against the step on the dashboard

    @property
    def column(self) -> str:
        """The report's column of the fitted value: "final/<name>" or "initial/<name>"."""
        return f"{self.fit}/{self.name}"


def _split_pair(model: str) -> list[Metric]:
    return [Metric(model_metric(model, split, kind), {"loss": "loss", "acc": "accuracy"}[kind], split)
            for split in ("train", "test") for kind in ("loss", "acc")]


METRICS: tuple[Metric, ...] = (
    *_split_pair(NET),
    *_split_pair(TWIN),
    Metric(deviation("func_rmse", "train"), "deviation", "train"),
    Metric(deviation("func_rmse", "test"), "deviation", "test", fit="final", rank=0, compared=True,
           headline=True, trajectory=True),
    Metric(deviation("func_mse", "train"), "deviation", "train"),
    Metric(deviation("func_mse", "test"), "deviation", "test", fit="final", rank=1),
    Metric(deviation("taylor_rmse", "train"), "deviation", "train"),
    Metric(deviation("taylor_rmse", "test"), "deviation", "test", fit="final", rank=2, trajectory=True),
    Metric(deviation("loss_gap", "train"), "deviation", "train"),
    Metric(deviation("loss_gap", "test"), "deviation", "test", fit="final", rank=5, compared=True,
           trajectory=True),
    Metric(deviation("param_rel_change"), "deviation", fit="final", rank=3, trajectory=True),
    Metric(deviation("ntk_rel_change"), "deviation", cadence="corr", fit="final", rank=4, trajectory=True),
    Metric(correlation("C02"), "correlation", cadence="corr", fit="initial", rank=6, compared=True,
           headline=True),
    Metric(correlation("C02", "max"), "correlation", cadence="corr"),
    Metric(correlation("C03"), "correlation", cadence="corr", fit="initial", rank=7),
    Metric(correlation("C03", "max"), "correlation", cadence="corr"),
    Metric(correlation("C11"), "correlation", cadence="corr", fit="initial", rank=8, compared=True),
    Metric(correlation("C11", "max"), "correlation", cadence="corr"),
    Metric(correlation("step_ratio_2"), "correlation", cadence="corr", fit="initial", rank=9),
    Metric(correlation("step_ratio_3"), "correlation", cadence="corr", fit="initial", rank=10),
)

METRIC_NAMES: list[str] = [m.name for m in METRICS]
TRAIN_LOSSES: tuple[str, ...] = (model_metric(NET, "train", "loss"), model_metric(TWIN, "train", "loss"))
LOSS_CURVES: tuple[tuple[str, str, str], ...] = tuple(  # (split, network's loss, twin's loss)
    (split, model_metric(NET, split, "loss"), model_metric(TWIN, split, "loss"))
    for split in ("train", "test"))
TRAJECTORIES: tuple[str, ...] = tuple(m.name for m in METRICS if m.trajectory)
FITTED: tuple[Metric, ...] = tuple(sorted((m for m in METRICS if m.fit), key=lambda m: m.rank))
REPORT_METRICS: tuple[str, ...] = tuple(m.column for m in FITTED)
DEVIATIONS: tuple[str, ...] = tuple(m.column for m in FITTED if m.compared and m.family == "deviation")
CORRELATIONS: tuple[str, ...] = tuple(m.column for m in FITTED if m.compared and m.family == "correlation")
HEADLINE_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.headline)


def fitted_names(family: str | None = None, fit: str | None = None, compared: bool | None = None
                 ) -> tuple[str, ...]:
    """Bare names of the fitted metrics, in the report's order, of a family, fit stage and/or
    role in the deviation-vs-correlation comparison."""
    return tuple(m.name for m in FITTED if family in (None, m.family) and fit in (None, m.fit)
                 and compared in (None, m.compared))

"""Every metric a run logs, defined once: its name, family and split, when the trainer measures
it, and what the analysis does with it. The trainer logs :data:`METRIC_NAMES` (the columns of
metrics.csv, in this order); the report, the dashboard, the run's closing line and the theory
take their lists from here.

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

    @property
    def column(self) -> str:
        """The report's column of the fitted value: "final/<name>" or "initial/<name>"."""
        return f"{self.fit}/{self.name}"


def _split_pair(model: str) -> list[Metric]:
    return [Metric(f"{model}/{split}_{kind}", {"loss": "loss", "acc": "accuracy"}[kind], split)
            for split in ("train", "test") for kind in ("loss", "acc")]


METRICS: tuple[Metric, ...] = (
    *_split_pair("net"),
    *_split_pair("twin"),
    Metric("lin/func_rmse_train", "deviation", "train"),
    Metric("lin/func_rmse_test", "deviation", "test", fit="final", rank=0, compared=True, headline=True),
    Metric("lin/func_mse_train", "deviation", "train"),
    Metric("lin/func_mse_test", "deviation", "test", fit="final", rank=1),
    Metric("lin/taylor_rmse_train", "deviation", "train"),
    Metric("lin/taylor_rmse_test", "deviation", "test", fit="final", rank=2),
    Metric("lin/loss_gap_train", "deviation", "train"),
    Metric("lin/loss_gap_test", "deviation", "test", fit="final", rank=5, compared=True),
    Metric("lin/param_rel_change", "deviation", fit="final", rank=3),
    Metric("lin/ntk_rel_change", "deviation", cadence="corr", fit="final", rank=4),
    Metric("corr/C02", "correlation", cadence="corr", fit="initial", rank=6, compared=True, headline=True),
    Metric("corr/C02_max", "correlation", cadence="corr"),
    Metric("corr/C03", "correlation", cadence="corr", fit="initial", rank=7),
    Metric("corr/C03_max", "correlation", cadence="corr"),
    Metric("corr/C11", "correlation", cadence="corr", fit="initial", rank=8, compared=True),
    Metric("corr/C11_max", "correlation", cadence="corr"),
    Metric("corr/step_ratio_2", "correlation", cadence="corr", fit="initial", rank=9),
    Metric("corr/step_ratio_3", "correlation", cadence="corr", fit="initial", rank=10),
)

METRIC_NAMES: list[str] = [m.name for m in METRICS]
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

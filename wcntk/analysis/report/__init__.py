"""Sweep report: width-scaling power laws of linearity deviation and derivative correlations,
each slope judged against the theory of its own setting, and the deviation against the
correlations (the paper's comparison).

Usage::

    python -m wcntk.analysis.report SWEEP_DIR [--out DIR] [--width-metric M [M ...]] [--curve-width N]
                           [--min-width N] [--formats png pdf] [--wandb]
                           [--wandb-mode offline|online|disabled]

or, from a notebook, ``make_report(sweep_dir)`` (returns the tables and the written paths).

Input: every ``summary.json`` below SWEEP_DIR (layout: :mod:`wcntk.run.record`) and, for the
curves, the ``metrics.csv`` next to it. Output (default ``SWEEP_DIR/report/``, written only
once the inputs are checked): ``runs.csv`` (+ ``runs.parquet`` when pyarrow imports),
``per_width.csv``, ``slopes.md`` / ``slopes.csv``, ``local_slopes.md`` / ``.csv``,
``deviation_vs_correlation.md`` / ``.csv``, ``failures.md`` / ``failures.csv``, ``report.md``
and ``plots/*.png|pdf``.

Bad input is one line, never a traceback: a summary.json that is not a record (not a JSON
object, a non-dict section, a non-numeric width or seed) is a job with status "unreadable";
a damaged metrics.csv (last line cut off, NUL bytes) or offline W&B run file (no exit record)
is listed under "Damaged records" of the job-status table; a metric named explicitly that no
job logged, or a --curve-width that is not a width of the sweep, is an error (exit 2) that
names the valid ones.

The package: :mod:`.collect` (records → the runs table, settings, job status), :mod:`.fit`
(slopes, per-width aggregates, local slopes, deviation vs correlation), :mod:`.tables`
(markdown), :mod:`.plots`, :mod:`.wandb_upload`, :mod:`.make` (:func:`make_report`) and
:mod:`.cli` (``main``).
"""
from ..theory import expected
from .cli import main
from .collect import (
    JOB_COLUMNS,
    check_curve_width,
    check_metrics,
    collect,
    config_columns,
    failures,
    is_setting_key,
    metric_column,
    metrics_csv_problem,
    record_problems,
    setting_columns,
    setting_config,
    setting_labels,
    status_counts,
    validated,
    wandb_file_problem,
    with_settings,
)
from .fit import (
    CORRELATIONS,
    DEFAULT_METRICS,
    DEVIATIONS,
    FIT_COLUMNS,
    ZERO_TOL,
    fit_deviation_vs_correlation,
    fit_slopes,
    regime,
)
from .make import THEORY_DOC, make_report
from .make import _theory_link as _theory_link
from .plots import (
    FADED,
    curve_jobs,
    draw_local_slopes,
    draw_width_scaling,
    plot_deviation_trajectories,
    plot_deviation_vs_correlation,
    plot_loss_curves,
    save_figure,
    tidy_log_axis,
    width_figures,
)
from .tables import (
    DEVIATION_HEADER,
    LOCAL_HEADER,
    SLOPES_HEADER,
    deviation_markdown,
    failures_markdown,
    local_markdown,
    markdown_table,
    slopes_markdown,
    theory_markdown,
)
from .wandb_upload import log_to_wandb, wandb_group

__all__ = [
    "CORRELATIONS", "DEFAULT_METRICS", "DEVIATIONS", "DEVIATION_HEADER", "FADED", "FIT_COLUMNS",
    "JOB_COLUMNS", "LOCAL_HEADER", "SLOPES_HEADER", "THEORY_DOC", "ZERO_TOL", "check_curve_width",
    "check_metrics", "collect", "config_columns", "curve_jobs", "deviation_markdown",
    "draw_local_slopes", "draw_width_scaling", "expected", "failures", "failures_markdown",
    "fit_deviation_vs_correlation", "fit_slopes", "is_setting_key", "local_markdown", "log_to_wandb",
    "main", "make_report", "markdown_table", "metric_column", "metrics_csv_problem",
    "plot_deviation_trajectories", "plot_deviation_vs_correlation", "plot_loss_curves",
    "record_problems", "regime", "save_figure", "setting_columns", "setting_config", "setting_labels",
    "slopes_markdown", "status_counts", "theory_markdown", "tidy_log_axis", "validated",
    "wandb_file_problem", "wandb_group", "width_figures", "with_settings",
]

"""Sweep report: width-scaling power laws of linearity deviation and derivative correlations,
each slope judged against the theory of its own setting, and the deviation against the
correlations (the paper's comparison).

Usage::

    python -m wcntk.analysis.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--width-metric M [M ...]]
                           [--curve-width N] [--min-width [NETWORK=]N ...] [--formats png pdf]
                           [--wandb] [--wandb-mode offline|online|disabled]

or, from a notebook, ``make_report(sweep_dir)`` (returns the tables and the written paths).

Input: every ``summary.json`` below SWEEP_DIR (layout: :mod:`wcntk.run.record`) and, for the
curves, the ``metrics.csv`` next to it. Output (default ``SWEEP_DIR/report/``, written only
once the inputs are checked): ``runs.csv`` (+ ``runs.parquet`` when pyarrow imports),
``per_width.csv``, ``slopes.md`` / ``slopes.csv``, ``local_slopes.md`` / ``.csv``,
``deviation_vs_correlation.md`` / ``.csv``, ``claim.md`` / ``claim.csv`` (the claim per network),
``failures.md`` / ``failures.csv``, ``report.md`` and ``plots/*.png|pdf`` (``plots/claim.png``
first). Several sweep dirs are read together (their jobs relative to the common folder; --out
required); where the network varies, settings are named by network.

Bad input is one line, never a traceback: a summary.json that is not a record (not a JSON
object, a non-dict section, a non-numeric width or seed) is a job with status "unreadable";
a damaged metrics.csv (empty, last line cut off, NUL bytes) or offline W&B run file (no exit record)
is listed under "Damaged records" of the job-status table; a metric named explicitly that no
job logged, or a --curve-width that is not a width of the sweep, is an error (exit 2) that
names the valid ones.

The package: :mod:`.collect` (records → the runs table, settings, job status), :mod:`.fit`
(slopes, per-width aggregates, local slopes, deviation vs correlation), :mod:`.claim` (the
claim per network: its table and figure), :mod:`.tables`
(markdown), :mod:`.plots`, :mod:`.wandb_upload`, :mod:`.make` (:func:`make_report`) and
:mod:`.cli` (``main``).
"""
from ..theory import expected
from .cli import main
from .collect import (
    collect,
    failures,
    is_setting_key,
    metric_column,
    setting_columns,
    setting_config,
    setting_labels,
    with_settings,
)
from .fit import CORRELATIONS, DEFAULT_METRICS, DEVIATIONS, fit_deviation_vs_correlation, fit_slopes
from .make import _theory_link as _theory_link  # the test of its repository-relative link
from .make import make_report
from .plots import FADED, curve_jobs, plot_deviation_trajectories, plot_loss_curves, width_figures
from .tables import slopes_markdown
from .wandb_upload import wandb_group

__all__ = [
    "CORRELATIONS", "DEFAULT_METRICS", "DEVIATIONS", "FADED", "collect", "curve_jobs", "expected",
    "failures", "fit_deviation_vs_correlation", "fit_slopes", "is_setting_key", "main", "make_report",
    "metric_column", "plot_deviation_trajectories", "plot_loss_curves", "setting_columns",
    "setting_config", "setting_labels", "slopes_markdown", "wandb_group", "width_figures", "with_settings",
]

"""W&B dashboard of a sweep's group, as code (the `wandb-workspaces` package).

Usage::

    python -m wcntk.analysis.dashboard --entity E --project P --group G [--report DIR] [--name NAME]

builds a saved W&B workspace view of the runs of group G, grouped by network
(``config.model.kind``: one colour per network in every panel, as in the report's claim figure):

- "the claim, by network": initial ``corr/C02`` and ``corr/C11`` and the final
  ``lin/func_rmse_test`` against width, and that deviation against each correlation, log-log;
- "width scaling: at init" / "width scaling: final": one scatter panel per metric, x = the
  run config's width, y = the run summary's ``initial/<metric>`` (init values, logged by the
  runner at step 0) or ``<metric>`` (final values), both axes logarithmic;
- "deviation vs correlation": final ``lin/func_rmse_test`` and ``lin/loss_gap_test`` against
  ``initial/corr/C02`` and ``initial/corr/C11``, log-log;
- "deviation vs step": line panels of the deviations against the logged training step
  (the runs' `step` metric), grouped by width;
- "slopes": a markdown panel with the claim table (claim.md) and the slope tables of a local
  report dir (``--report``, the output of ``python -m wcntk.analysis.report``), or how to make one.

:func:`build_workspace` builds the specification without touching the network; :func:`save`
uploads it and needs a W&B login (``wandb login`` or WANDB_API_KEY). Without one the command
prints one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from ..core.metric_registry import INITIAL, TRAJECTORIES, fitted_names

INIT_METRICS = fitted_names(fit="initial")
FINAL_METRICS = fitted_names(fit="final")
DEVIATIONS = fitted_names(family="deviation", compared=True)
CORRELATIONS = fitted_names(family="correlation", compared=True)
CLAIM_DEVIATIONS = DEVIATIONS[:1]   # lin/func_rmse_test: the deviation the claim bounds
NETWORK_KEY = "model.kind"         # runs are grouped by network
MAX_RUNS = 500


def init_key(metric: str) -> str:
    """Run-summary key of a metric's value at step 0."""
    return INITIAL + metric


def slope_markdown(report_dir: Path | None) -> str:
    """The slope and deviation-vs-correlation tables of a `wcntk.analysis.report` output dir, as markdown."""
    if report_dir is None:
        return ("No slope table given: run `python -m wcntk.analysis.report SWEEP_DIR` and rebuild this "
                "dashboard with `--report SWEEP_DIR/report`.")
    parts = [f"### {title}\n\n{(Path(report_dir) / name).read_text()}"
             for title, name in (("The claim, per network", "claim.md"),
                                 ("Width-scaling slopes", "slopes.md"),
                                 ("Deviation vs correlation", "deviation_vs_correlation.md"))
             if (Path(report_dir) / name).is_file()]
    if not parts:
        raise FileNotFoundError(f"no slopes.md in {report_dir} "
                                f"(make it with python -m wcntk.analysis.report)")
    return "\n\n".join(parts) + "\n\nTheory and definitions: docs/theory.md of the wcntk repository."


def _scatter(x, y, title: str) -> wr.ScatterPlot:
    return wr.ScatterPlot(title=title, x=x, y=y, log_x=True, log_y=True)


def build_workspace(entity: str, project: str, group: str, slopes_md: str, width_key: str = "width",
                    name: str | None = None) -> ws.Workspace:
    """The workspace specification (nothing is sent anywhere): sections of log-log panels
    filtered to the runs of `group`; `width_key` is the config key of the width."""
    width = wr.Config(width_key)
    init = [_scatter(width, wr.SummaryMetric(init_key(m)), f"{m} at init vs width") for m in INIT_METRICS]
    final = [_scatter(width, wr.SummaryMetric(m), f"{m} (final) vs width") for m in FINAL_METRICS]
    dev_corr = [_scatter(wr.SummaryMetric(init_key(c)), wr.SummaryMetric(d), f"{d} (final) vs {c} at init")
                for d in DEVIATIONS for c in CORRELATIONS]
    claim = [_scatter(width, wr.SummaryMetric(init_key(c)), f"{c} at init vs width, by network")
             for c in CORRELATIONS]
    claim += [_scatter(width, wr.SummaryMetric(d), f"{d} (final) vs width, by network")
              for d in CLAIM_DEVIATIONS]
    claim += [_scatter(wr.SummaryMetric(init_key(c)), wr.SummaryMetric(d), f"{d} (final) vs {c} at init, "
                       "by network") for d in CLAIM_DEVIATIONS for c in CORRELATIONS]
    steps = [wr.LinePlot(title=f"{m} vs step, by width", x="step", y=[m], groupby=width, log_y=True)
             for m in TRAJECTORIES]
    sections = [ws.Section(name=title, panels=panels, is_open=True)
                for title, panels in (("the claim, by network", claim),
                                      ("width scaling: at init", init), ("width scaling: final", final),
                                      ("deviation vs correlation", dev_corr), ("deviation vs step", steps),
                                      ("slopes", [wr.MarkdownPanel(markdown=slopes_md)]))]
    return ws.Workspace(entity=entity, project=project, name=name or f"wcntk {group}", sections=sections,
                        settings=ws.WorkspaceSettings(max_runs=MAX_RUNS),
                        runset_settings=ws.RunsetSettings(filters=ws.And(ws.Metric("Group") == group),
                                                          groupby=[ws.Config(NETWORK_KEY)]))


class NotLoggedIn(RuntimeError):
    """No W&B API key: nothing can be saved."""


def save(workspace: ws.Workspace) -> str:
    """Upload the workspace view; returns its URL. Raises NotLoggedIn without a W&B API key."""
    import wandb
    try:
        wandb.Api()
    except wandb.errors.UsageError as e:
        raise NotLoggedIn(str(e)) from e
    return workspace.save().url


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build the dashboard of a group and save it to W&B; exit 2 when not logged in."""
    p = argparse.ArgumentParser(prog="python -m wcntk.analysis.dashboard",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--entity", required=True, help="W&B entity (user or team)")
    p.add_argument("--project", required=True, help="W&B project of the runs")
    p.add_argument("--group", required=True, help="W&B group of the sweep's runs (wandb.group)")
    p.add_argument("--report", type=Path, default=None,
                   help="output dir of python -m wcntk.analysis.report for the slope table")
    p.add_argument("--width-key", default="width", help="config key of the width (default: width)")
    p.add_argument("--name", default=None, help="name of the saved view (default: 'wcntk GROUP')")
    args = p.parse_args(argv)
    try:
        slopes_md = slope_markdown(args.report)
    except (FileNotFoundError, OSError) as e:
        p.error(str(e))
    workspace = build_workspace(args.entity, args.project, args.group, slopes_md, args.width_key, args.name)
    try:
        url = save(workspace)
    except NotLoggedIn:
        print("wcntk.analysis.dashboard: not logged in to W&B (no API key): run `wandb login` or set "
              "WANDB_API_KEY, "
              "then run this command again; nothing was saved", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 — network or server errors: one line, not a traceback
        print(f"wcntk.analysis.dashboard: saving to W&B failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"dashboard saved: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

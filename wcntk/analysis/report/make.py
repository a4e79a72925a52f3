"""make_report: collect, fit, tabulate and plot a sweep, and write the report directory."""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from ...run.provenance import checkout_root
from .collect import (
    _fmt,
    check_curve_width,
    check_metrics,
    collect,
    failures,
    record_problems,
    setting_columns,
    status_counts,
    with_settings,
)
from .fit import DEFAULT_METRICS, fit_deviation_vs_correlation, fit_slopes
from .plots import (
    curve_jobs,
    plot_deviation_trajectories,
    plot_deviation_vs_correlation,
    plot_loss_curves,
    save_figure,
    width_figures,
)
from .tables import (
    DEVIATION_HEADER,
    LOCAL_HEADER,
    SLOPES_HEADER,
    deviation_markdown,
    failures_markdown,
    local_markdown,
    slopes_markdown,
    theory_markdown,
)
from .wandb_upload import log_to_wandb

THEORY_DOC = "docs/theory.md"


def _theory_link(out: Path) -> str:
    """docs/theory.md as a link relative to a report dir inside wcntk's checkout, else plain text."""
    repo = checkout_root()
    doc = repo / THEORY_DOC if repo is not None else None
    if doc is not None and doc.is_file() and out.resolve().is_relative_to(repo.resolve()):
        return f"[{THEORY_DOC}]({Path(os.path.relpath(doc, out.resolve())).as_posix()})"
    return f"{THEORY_DOC} of the wcntk repository"


def make_report(sweep_dir, out_dir=None, metrics: Sequence[str] | None = None,
                curve_width: float | None = None, formats: Sequence[str] = ("png", "pdf"),
                wandb: bool = False, wandb_mode: str = "offline", min_width: float | None = None) -> dict:
    """Collect, fit, tabulate and plot a sweep; write everything to out_dir (default
    sweep_dir/report). `metrics` None: DEFAULT_METRICS (those no job logged are "not logged");
    given metrics must be logged by some job, and `curve_width` must be a width of the sweep
    (ValueError otherwise, before anything is written). `min_width` replaces the automatic
    n_min of every asymptotic fit. Returns {"runs", "slopes", "per_width", "local",
    "deviation", "failures", "counts", "problems": DataFrames, "slopes_md", "local_md",
    "deviation_md", "failures_md": str, "out_dir": Path, "files": {name: Path | [Path]},
    "wandb_dir"}."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    runs = with_settings(collect(sweep_dir))
    if metrics is None:
        metrics = DEFAULT_METRICS
    else:
        check_metrics(runs, metrics)
    if curve_width is not None:
        check_curve_width(runs, curve_width)
    slopes, per_width, local = fit_slopes(runs, metrics, min_width)
    dev = fit_deviation_vs_correlation(runs, min_width=min_width)
    fails, counts, problems = failures(runs), status_counts(runs), record_problems(runs)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {name: out / name for name in (
        "runs.csv", "per_width.csv", "slopes.md", "slopes.csv", "local_slopes.md", "local_slopes.csv",
        "deviation_vs_correlation.md", "deviation_vs_correlation.csv", "failures.md", "failures.csv",
        "report.md")}
    files = {k.replace(".", "_"): v for k, v in files.items()}
    runs.to_csv(files["runs_csv"], index=False)
    if find_spec("pyarrow") is not None:
        try:
            runs.to_parquet(out / "runs.parquet", index=False)
            files["runs_parquet"] = out / "runs.parquet"
        except Exception as e:  # noqa: BLE001 — mixed-type config columns; the CSV has everything
            warnings.warn(f"runs.parquet not written: {type(e).__name__}: {e}", stacklevel=2)
    per_width.to_csv(files["per_width_csv"], index=False)
    slopes.to_csv(files["slopes_csv"], index=False)
    local.to_csv(files["local_slopes_csv"], index=False)
    dev.to_csv(files["deviation_vs_correlation_csv"], index=False)
    fails.to_csv(files["failures_csv"], index=False)

    slopes_md, local_md = slopes_markdown(slopes), local_markdown(local)
    deviation_md = deviation_markdown(dev)
    files["slopes_md"].write_text(f"{SLOPES_HEADER}\n\n{slopes_md}\n")
    files["local_slopes_md"].write_text(f"{LOCAL_HEADER}\n\n{local_md}\n")
    files["deviation_vs_correlation_md"].write_text(f"{DEVIATION_HEADER}\n\n{deviation_md}\n")
    failures_md = failures_markdown(counts, fails, problems)
    files["failures_md"].write_text(failures_md)

    plots: list[Path] = []
    for name, fig in width_figures(runs, slopes, per_width, local, metrics).items():
        plots += save_figure(fig, out / "plots" / name, formats)
    plots += save_figure(plot_deviation_vs_correlation(runs, dev), out / "plots" / "deviation_vs_correlation",
                         formats)
    trajectories = plot_deviation_trajectories(runs, sweep_dir)
    if trajectories is not None:
        plots += save_figure(trajectories, out / "plots" / "deviation_vs_step", formats)
    width, _ = curve_jobs(runs, sweep_dir, curve_width)
    curves = plot_loss_curves(runs, sweep_dir, width)
    if curves is not None:
        plots += save_figure(curves, out / "plots" / f"loss_curves_w{_fmt(width)}", formats)
    files["plots"] = plots

    pngs = [p for p in plots if p.suffix == ".png"]
    files["report_md"].write_text(
        f"# wcntk sweep report: {sweep_dir}\n\n{len(runs)} jobs, settings by: "
        f"{', '.join(setting_columns(runs)) or '(single setting)'}. Theory and definitions: "
        f"{_theory_link(out)}.\n\n"
        f"## Width-scaling slopes\n\n{SLOPES_HEADER}\n\n{slopes_md}\n\n"
        f"Reasons for the theory entries:\n\n{theory_markdown(slopes)}\n\n"
        f"### Local slopes\n\n{LOCAL_HEADER}\n\n{local_md}\n\n"
        f"## Deviation vs correlation\n\n{DEVIATION_HEADER}\n\n{deviation_md}\n\n"
        f"## Job status\n\n{failures_md}\n## Plots\n\n"
        + "".join(f"![{p.stem}](plots/{p.name})\n\n" for p in pngs)
        + ("" if curves is not None else "No metrics.csv found for the loss curves.\n"))

    result = {"runs": runs, "slopes": slopes, "per_width": per_width, "local": local, "deviation": dev,
              "failures": fails, "counts": counts, "problems": problems, "slopes_md": slopes_md,
              "local_md": local_md, "deviation_md": deviation_md, "failures_md": failures_md, "out_dir": out,
              "files": files, "wandb_dir": None}
    if wandb:
        result["wandb_dir"] = log_to_wandb(result, sweep_dir, wandb_mode)
    return result

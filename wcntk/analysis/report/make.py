"""make_report: collect, fit, tabulate and plot a sweep, and write the report directory."""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path

from ...run.provenance import checkout_root
from .claim import CLAIM_HEADER, claim_markdown, claim_table, network_names, plot_claim
from .collect import (
    _fmt,
    check_curve_width,
    check_metrics,
    collect,
    failures,
    record_problems,
    setting_columns,
    status_counts,
    sweep_root,
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


def resolve_min_width(spec, runs) -> float | dict[str, float | None] | None:
    """--min-width as the fits take it: None, one width for every setting, or per setting from
    {network or setting name: width} (a None key: the width of every setting not named).
    ValueError naming the networks for a name that is none of them."""
    if spec is None or not isinstance(spec, Mapping):
        return None if spec is None else float(spec)
    names = network_names(runs)
    unknown = [k for k in spec if k is not None and k not in names and k not in names.values()]
    if unknown:
        raise ValueError(f"--min-width {unknown[0]}=…: no such network or setting; networks: "
                         f"{', '.join(names.values())}")
    by_name = {k: v for k, v in spec.items() if k is not None}
    default = spec.get(None)
    return {s: float(by_name.get(s, by_name.get(n, default))) if by_name.get(s, by_name.get(n, default))
            is not None else None for s, n in names.items()}


def draw_plots(runs, root: Path, plots_dir: Path, slopes, per_width, local, dev, claim,
               metrics: Sequence[str], curve_width: float | None,
               formats: Sequence[str]) -> tuple[list[Path], list[Path], bool]:
    """Draw and save the report's figures as plots_dir/<name>.<fmt> for each format (none drawn
    without formats): (the claim figure's files, every file, whether a loss-curve figure was
    drawn: not when no job has a metrics.csv)."""
    if not formats:
        return [], [], False
    claim_plots = save_figure(plot_claim(runs, slopes, per_width, local, dev, claim), plots_dir / "claim",
                              formats)
    plots: list[Path] = list(claim_plots)
    for name, fig in width_figures(runs, slopes, per_width, local, metrics).items():
        plots += save_figure(fig, plots_dir / name, formats)
    plots += save_figure(plot_deviation_vs_correlation(runs, dev), plots_dir / "deviation_vs_correlation",
                         formats)
    trajectories = plot_deviation_trajectories(runs, root)
    if trajectories is not None:
        plots += save_figure(trajectories, plots_dir / "deviation_vs_step", formats)
    width, _ = curve_jobs(runs, root, curve_width)
    curves = plot_loss_curves(runs, root, width)
    if curves is not None:
        plots += save_figure(curves, plots_dir / f"loss_curves_w{_fmt(width)}", formats)
    return claim_plots, plots, curves is not None


def make_report(sweep_dir, out_dir=None, metrics: Sequence[str] | None = None,
                curve_width: float | None = None, formats: Sequence[str] = ("png", "pdf"),
                wandb: bool = False, wandb_mode: str = "offline",
                min_width: float | Mapping[str | None, float] | None = None) -> dict:
    """Collect, fit, tabulate and plot a sweep (a folder, or several read together: then
    `out_dir` is required); write everything to out_dir (default sweep_dir/report). `metrics`
    None: DEFAULT_METRICS (those no job logged are "not logged"); given metrics must be logged
    by some job, and `curve_width` must be a width of the sweep (ValueError otherwise, before
    anything is written). `min_width` replaces the automatic n_min of every asymptotic fit: one
    width, or {network: width} (resolve_min_width). Returns {"runs", "slopes", "per_width",
    "local", "deviation", "claim", "failures", "counts", "problems": DataFrames, "slopes_md",
    "local_md", "deviation_md", "claim_md", "failures_md": str, "out_dir": Path, "files":
    {name: Path | [Path]}, "wandb_dir"}."""
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else [Path(d) for d in sweep_dir]
    if len(dirs) > 1 and out_dir is None:
        raise ValueError(f"{len(dirs)} sweep dirs given: say where the report goes with --out DIR")
    root = sweep_root(dirs)
    sweep_dir = dirs[0] if len(dirs) == 1 else root
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    runs = with_settings(collect(dirs))
    min_width = resolve_min_width(min_width, runs)
    if metrics is None:
        metrics = DEFAULT_METRICS
    else:
        check_metrics(runs, metrics)
    if curve_width is not None:
        check_curve_width(runs, curve_width)
    slopes, per_width, local = fit_slopes(runs, metrics, min_width)
    dev = fit_deviation_vs_correlation(runs, min_width=min_width)
    claim = claim_table(runs, slopes, dev)
    fails, counts, problems = failures(runs), status_counts(runs), record_problems(runs)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {name: out / name for name in (
        "runs.csv", "per_width.csv", "slopes.md", "slopes.csv", "local_slopes.md", "local_slopes.csv",
        "deviation_vs_correlation.md", "deviation_vs_correlation.csv", "claim.md", "claim.csv", "failures.md",
        "failures.csv", "report.md")}
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
    claim.to_csv(files["claim_csv"], index=False)
    fails.to_csv(files["failures_csv"], index=False)

    slopes_md, local_md = slopes_markdown(slopes), local_markdown(local)
    deviation_md, claim_md = deviation_markdown(dev), claim_markdown(claim)
    files["slopes_md"].write_text(f"{SLOPES_HEADER}\n\n{slopes_md}\n")
    files["local_slopes_md"].write_text(f"{LOCAL_HEADER}\n\n{local_md}\n")
    files["deviation_vs_correlation_md"].write_text(f"{DEVIATION_HEADER}\n\n{deviation_md}\n")
    files["claim_md"].write_text(f"{CLAIM_HEADER}\n\n{claim_md}\n")
    failures_md = failures_markdown(counts, fails, problems)
    files["failures_md"].write_text(failures_md)

    claim_plots, plots, curves = draw_plots(runs, root, out / "plots", slopes, per_width, local, dev, claim,
                                            metrics, curve_width, formats)
    files["plots"] = plots

    pngs = [p for p in plots if p.suffix == ".png" and p not in claim_plots]
    claim_png = "".join(f"![claim](plots/{p.name})\n\n" for p in claim_plots if p.suffix == ".png")
    files["report_md"].write_text(
        f"# wcntk sweep report: {', '.join(map(str, dirs))}\n\n{len(runs)} jobs, settings by: "
        f"{', '.join(setting_columns(runs)) or '(single setting)'}. Theory and definitions: "
        f"{_theory_link(out)}.\n\n"
        f"## The claim, per network\n\n{CLAIM_HEADER}\n\n{claim_md}\n\n{claim_png}"
        f"## Width-scaling slopes\n\n{SLOPES_HEADER}\n\n{slopes_md}\n\n"
        f"Reasons for the theory entries:\n\n{theory_markdown(slopes)}\n\n"
        f"### Local slopes\n\n{LOCAL_HEADER}\n\n{local_md}\n\n"
        f"## Deviation vs correlation\n\n{DEVIATION_HEADER}\n\n{deviation_md}\n\n"
        f"## Job status\n\n{failures_md}\n## Plots\n\n"
        + "".join(f"![{p.stem}](plots/{p.name})\n\n" for p in pngs)
        + ("No figures drawn (tables only).\n" if not formats else
           "" if curves else "No metrics.csv found for the loss curves.\n"))

    result = {"runs": runs, "slopes": slopes, "per_width": per_width, "local": local, "deviation": dev,
              "claim": claim, "claim_md": claim_md, "failures": fails, "counts": counts, "problems": problems,
              "slopes_md": slopes_md,
              "local_md": local_md, "deviation_md": deviation_md, "failures_md": failures_md, "out_dir": out,
              "files": files, "wandb_dir": None}
    if wandb:
        result["wandb_dir"] = log_to_wandb(result, sweep_dir, wandb_mode)
    return result

"""The report's command line: python -m wcntk.analysis.report SWEEP_DIR [options]
(console script wcntk-report)."""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from .claim import CLAIM_HEADER
from .fit import DEFAULT_METRICS
from .make import make_report
from .tables import DEVIATION_HEADER, LOCAL_HEADER, SLOPES_HEADER


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m wcntk.analysis.report SWEEP_DIR [options]; prints the tables, writes the report.
    Exit 2 with one line for a missing or empty sweep dir, a metric no job logged, or a
    --curve-width that is not a width of the sweep."""
    p = argparse.ArgumentParser(prog="python -m wcntk.analysis.report",
                                description=_package_doc().split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, nargs="+",
                   help="directory tree containing the jobs' summary.json; several are read together")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default SWEEP_DIR/report; required for several sweep dirs)")
    p.add_argument("--width-metric", "--metrics", dest="metrics", nargs="+", default=None,
                   metavar="METRIC", help="metrics to fit against width: final/<name>, initial/<name> or a "
                   f"bare name (corr/* → initial/, else final/); default: {' '.join(DEFAULT_METRICS)}")
    p.add_argument("--curve-width", type=float, default=None,
                   help="width of the loss-curve plot (default: the largest width)")
    p.add_argument("--min-width", nargs="+", default=None, metavar="[NETWORK=]N",
                   help="fit the asymptotic regime over widths ≥ N instead of the automatic n_min "
                        "(docs/theory.md §7): N for every network, NETWORK=N for one (mlp=128 cnn=32)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="plot file formats")
    p.add_argument("--no-plots", action="store_true",
                   help="tables only: draw no figures (a figure takes 0.1-1.5 s to draw)")
    p.add_argument("--wandb", action="store_true", help="also log the slope table and plots to W&B")
    p.add_argument("--wandb-mode", default="offline", choices=["offline", "online", "disabled"])
    args = p.parse_args(argv)
    for d in args.sweep_dir:
        if not d.is_dir():
            p.error(f"not a directory: {d}")
    try:
        min_width = min_widths(args.min_width)
    except ValueError as e:
        p.error(str(e))
    try:
        result = make_report(args.sweep_dir, args.out, args.metrics, args.curve_width,
                             () if args.no_plots else args.formats,
                             args.wandb, args.wandb_mode, min_width)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    print(f"{CLAIM_HEADER}\n\n{result['claim_md']}\n\n{SLOPES_HEADER}\n\n{result['slopes_md']}\n\n{LOCAL_HEADER}\n\n{result['local_md']}\n\n"
          f"{DEVIATION_HEADER}\n\n{result['deviation_md']}\n\n{result['failures_md']}")
    print(f"report written to {result['out_dir']}")
    return 0


def min_widths(values: Sequence[str] | None) -> dict[str | None, float] | None:
    """--min-width's values: "128" (every network) and "mlp=128" (one) as {None: 128, "mlp": 128}."""
    if not values:
        return None
    out: dict[str | None, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            width = float(number)
        except ValueError:
            raise ValueError(f"--min-width {value}: give N or NETWORK=N, N a width") from None
        if (name or None) in out:
            raise ValueError(f"--min-width {value}: {name or 'the default'} is given twice")
        out[name or None] = width
    return out


def _package_doc() -> str:
    return importlib.import_module(__package__).__doc__ or ""

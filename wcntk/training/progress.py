"""A run's progress on stderr: tqdm's bar on a terminal; anywhere else (SLURM log files, CI,
`2>log`) one short line at every 10 % of the steps instead of carriage-return updates."""
from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm


def say(message: str, label: str | None = None, stdout: bool = False) -> None:
    """One line on stderr (stdout: a result), naming the job (its override dirname) when there is one."""
    stream = sys.stdout if stdout else sys.stderr
    stream.write(f"wcntk: [{label}] {message}\n" if label else f"wcntk: {message}\n")
    stream.flush()  # one write: lines of parallel jobs never interleave


class LineProgress:
    """tqdm's update / set_postfix / close, printing `step t/T (p %, s) postfix` at each 10 %.
    The postfix holds the values of the last logged step; `set_postfix(at_step=s, …)` names that
    step (`… at step 40: net 0.31 …`), since it is usually not the step the line is printed at."""

    def __init__(self, total: int, label: str | None = None):
        self.total, self.label = total, label
        self.n, self.tenths, self.postfix = 0, 0, ""
        self.start = time.perf_counter()

    def set_postfix(self, refresh: bool = True, at_step: int | None = None, **values: Any) -> None:
        text = " ".join(f"{key} {value}" for key, value in values.items())
        self.postfix = f"at step {at_step}: {text}" if at_step is not None else text

    def update(self, n: int = 1) -> None:
        self.n += n
        tenths = min(10, 10 * self.n // self.total) if self.total else 0
        if tenths > self.tenths:
            self.tenths = tenths
            elapsed = time.perf_counter() - self.start
            say(f"step {self.n}/{self.total} ({10 * tenths} %, {elapsed:.0f} s) {self.postfix}".rstrip(),
                self.label)

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, label: str | None = None) -> tqdm | LineProgress:
    """tqdm on a terminal, LineProgress elsewhere; a silent tqdm when not enabled."""
    if enabled and not sys.stderr.isatty():
        return LineProgress(total, label)
    return tqdm(total=total, disable=not enabled, dynamic_ncols=True, leave=False, desc=label)

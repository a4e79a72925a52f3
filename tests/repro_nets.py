"""User factories that would break a resume or keep a signal waiting: θ₀ drawn from numpy's global
RNG or shifted by the environment, and a forward that sleeps on demand. Each builds the tanh
net of tests/odd_nets.py (seeded by torch's generator, which the runner seeds)."""
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from tests.odd_nets import Tanh2

SHIFT_ENV = "REPRO_NETS_SHIFT"       # added to W2: another value, another θ₀
SLOW_ENV = "REPRO_NETS_SLOW"         # a path: while it exists, every forward sleeps SLEEP_S
SLOW_AFTER_ENV = "REPRO_NETS_SLOW_AFTER"   # a run's metrics.csv: slow once it holds rows 0, 1, 2
SLEEP_S = 2.0


def numpy_drawn(input_shape, out_features, width):
    """W1 from numpy's global RNG: another θ₀ at every call."""
    net = Tanh2(math.prod(input_shape), width, out_features)
    with torch.no_grad():
        net.w1.copy_(torch.from_numpy(np.random.standard_normal(tuple(net.w1.shape))))
    return net


def shifted_by_env(input_shape, out_features, width):
    """θ₀ shifted by $REPRO_NETS_SHIFT: the same within a process, another one in a process
    with another value (as a factory reading a file or the clock would)."""
    net = Tanh2(math.prod(input_shape), width, out_features)
    with torch.no_grad():
        net.w2.add_(float(os.environ.get(SHIFT_ENV, "0")))
    return net


def _slow(flag: str | None) -> bool:
    """$REPRO_NETS_SLOW exists, or the metrics.csv $REPRO_NETS_SLOW_AFTER names holds three rows
    (its writes are unbuffered: the first forward after row 2 is logged is slow, whatever the load)."""
    if not flag:
        return False
    after = os.environ.get(SLOW_AFTER_ENV)
    return Path(flag).exists() or (bool(after) and Path(after).is_file()
                                   and len(Path(after).read_text().splitlines()) > 3)


class Sleepy(Tanh2):
    """Tanh2 whose forward, while _slow, sleeps SLEEP_S seconds and appends a line to
    `$REPRO_NETS_SLOW.calls` first (the same numbers, slowly)."""

    def forward(self, x):
        flag = os.environ.get(SLOW_ENV)
        if _slow(flag):
            with open(flag + ".calls", "a") as fh:
                fh.write(f"{time.monotonic()}\n")
            time.sleep(SLEEP_S)
        return super().forward(x)


def sleepy(input_shape, out_features, width):
    return Sleepy(math.prod(input_shape), width, out_features)

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


class Sleepy(Tanh2):
    """Tanh2 whose forward, while the file $REPRO_NETS_SLOW exists, sleeps SLEEP_S seconds and
    appends a line to `<that file>.calls` first (the same numbers, slowly)."""

    def forward(self, x):
        flag = os.environ.get(SLOW_ENV)
        if flag and Path(flag).exists():
            with open(flag + ".calls", "a") as fh:
                fh.write(f"{time.monotonic()}\n")
            time.sleep(SLEEP_S)
        return super().forward(x)


def sleepy(input_shape, out_features, width):
    return Sleepy(math.prod(input_shape), width, out_features)

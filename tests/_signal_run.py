"""`python tests/_signal_run.py SIGNAL N run.py-args…`: run.py in this process, sending SIGNAL
(a number; 9 = SIGKILL) to itself inside the N-th training step, between the network's update
and the twin's, so that a signal that splits a step is tested deterministically."""
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wcntk.training.trainer import Trainer  # noqa: E402

signum, at = int(sys.argv[1]), int(sys.argv[2])
sys.argv = [str(ROOT / "run.py"), *sys.argv[3:]]
body, count = Trainer.step_body, [0]


def step_body(self: Trainer) -> None:
    count[0] += 1
    if count[0] == at:
        opt = self.net_opt
        real = opt.step

        def step_then_signal(*args, **kwargs):
            del opt.step                     # back to the class's step
            out = real(*args, **kwargs)
            os.kill(os.getpid(), signum)     # the network is updated, the twin not yet
            return out
        opt.step = step_then_signal
    body(self)


Trainer.step_body = step_body
runpy.run_path(sys.argv[0], run_name="__main__")

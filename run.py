"""Train a network and its linearized twin side by side: `python run.py width=4096`.

The thin entry of a checkout: the same as `python -m wcntk` (wcntk/__main__.py, the Hydra entry
point; the run itself lives in wcntk.run.entry), with this checkout first on the path of every
job process the launchers start.
"""
import os
import signal
import sys


def _while_starting(signum: int, _frame) -> None:
    """SIGINT or SIGTERM while Python imports torch, Hydra and wcntk (seconds): one line and
    128 + signal, no KeyboardInterrupt traceback; wcntk.run.lifecycle takes over from there."""
    sys.stderr.write(f"wcntk: interrupted by {signal.Signals(signum).name} while starting: nothing was run\n")
    os._exit(128 + signum)


_STARTING = {}
if __name__ == "__main__":   # (a signal ignored by the shell, e.g. SIGINT of a `&` job, stays ignored)
    _STARTING = {sig: signal.signal(sig, _while_starting) for sig in (signal.SIGINT, signal.SIGTERM)
                 if signal.getsignal(sig) is not signal.SIG_IGN}

# The launchers' job processes (joblib workers, submitit, SLURM jobs, which start
# `python -m submitit.core._submit` in the submitting shell's environment) import wcntk by name:
# this checkout goes first on their path, so they run the code this command runs, wherever it was
# started from and whichever checkout an editable install points at.
_checkout = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != _checkout:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_checkout, os.environ.get("PYTHONPATH")]))

from wcntk.__main__ import cli  # noqa: E402

if __name__ == "__main__":
    for _sig, _handler in _STARTING.items():
        signal.signal(_sig, _handler)
    cli()

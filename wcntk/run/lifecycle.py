"""Ending a run on a signal. SIGINT (Ctrl-C), SIGTERM (`kill`, SLURM at the time limit) and
SIGUSR1/SIGUSR2 (SLURM's `--signal` warning before the limit) raise `Interrupted` in the main
thread, so the run records what it has logged (status `interrupted`) and exits 128 + signal."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .record import Record, Status

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                if hasattr(signal, name))

_installed = False          # interruptible()'s handlers are in place
_deferring = False          # inside deferred_signals(): the handler only notes the signal
_pending: list[int] = []    # signals noted there, raised as the block ends


class Interrupted(BaseException):
    """A termination signal arrived. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way swallows it. `record`: the run's Record
    (wcntk.run.record), set by the RunRecorder it ended; None when it ended none."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.record: Record | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + signal number: 130 for SIGINT, 143 for SIGTERM (the shell's convention)."""
        return 128 + self.signum

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}"


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block the first of SIGNALS raises Interrupted; a second one gets the default
    action (the process ends at once: "press Ctrl-C again to force").

    Handlers are installed only in the main thread (the only one allowed to; a job run in a
    worker thread keeps the process's handlers) and not again in a nested block, and are
    restored on exit. Leaving by Interrupted then calls the signal's previous Python handler,
    if any (e.g. submitit's requeue on SIGUSR2), once the run has been recorded.
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if fired:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        fired.append(signum)
        if _deferring:
            _pending.append(signum)
            return
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    _installed = True
    _pending.clear()

    def restore() -> None:
        global _installed
        _installed = False
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)

    try:
        yield
    except Interrupted as err:
        restore()
        old = previous.get(err.signum)
        if callable(old) and old is not signal.default_int_handler:
            old(err.signum, None)
        raise
    finally:
        if _installed:
            restore()


@contextmanager
def deferred_signals() -> Iterator[None]:
    """A signal that arrives within the block raises Interrupted only as the block ends, so
    that what the block writes together (a CSV row and the record of it) is never split."""
    global _deferring
    outer, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = outer
    if not outer and _pending:
        raise Interrupted(_pending.pop())


def take_pending() -> int | None:
    """The signal that arrived within deferred_signals() and is still to be handled (None if
    none), now the caller's: a training loop polls it between steps, checkpoints and raises
    Interrupted there (wcntk.run.checkpoint), so no signal ever splits a step."""
    return _pending.pop() if _pending else None


def signal_pending() -> bool:
    """Whether a signal arrived within deferred_signals() and is still to be handled: a long
    measurement asks it to stop early (wcntk.training.trainer.stoppable); take_pending takes it."""
    return bool(_pending)


def exit_code(status: Status | None, err: BaseException | None = None) -> int:
    """The one map from how a run ended to its process's (and its W&B run's) exit code: 128 +
    signal for a signal (Interrupted; 130 for a bare KeyboardInterrupt), 0 for `ok`, else 1."""
    if isinstance(err, Interrupted):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 0 if status == Status.OK and err is None else 1


def ended_status(err: BaseException) -> Status:
    """The status of a run that an exception ended: `interrupted` for a signal, else `failed`."""
    return Status.INTERRUPTED if isinstance(err, Interrupted | KeyboardInterrupt) else Status.FAILED

"""Signals during training: each asks the loop to save at the next step all ranks agree on.

SIGTERM (a scheduler's preemption or time limit, torchrun stopping its workers) and Ctrl-C: save,
then stop (torchrun gives its workers 30 s after SIGTERM; Slurm its KillWait). SIGUSR1 is
Slurm's warning (`#SBATCH --signal=B:USR1@120`): save, then requeue the job when it may be
requeued (trainer/requeue.py). A second Ctrl-C stops at once.
"""
import signal
from typing import Optional

# what a rank contributes to the agreed stop, largest first: a stop outranks a warning
NONE, WARNING, STOP, LEASE_LOST = 0, 1, 2, 3
REASONS = {WARNING: "warning", STOP: "signal", LEASE_LOST: "lease-lost"}

_early: list = []  # SIGUSR1s that came before a StopRequest existed


def catch_warning_early() -> None:
    """Keep a SIGUSR1 that arrives while the process is still importing (seconds: torch, DALI):
    its default action would end the process, and with it the requeue. The CLI calls this
    first thing; the StopRequest the run makes later takes it over."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: _early.append(signum))


class StopRequest:
    """Catches SIGTERM, SIGINT and SIGUSR1 from creation until restore(); `code` says what came.
    Before the loop starts (`looping` False) there is nothing to save: SIGTERM and Ctrl-C stop
    at once (KeyboardInterrupt, as everywhere in the CLI), while the warning is kept."""

    def __init__(self):
        self.signal: Optional[int] = signal.SIGUSR1 if _early else None
        _early.clear()
        self.looping = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}

    def _handle(self, signum, frame):
        if signum != signal.SIGUSR1 and (not self.looping or (self.signal is not None and signum == signal.SIGINT)):
            raise KeyboardInterrupt
        if self.signal in (None, signal.SIGUSR1):  # a stop after the warning is a stop
            self.signal = signum

    @property
    def code(self) -> int:
        if self.signal is None:
            return NONE
        return WARNING if self.signal == signal.SIGUSR1 else STOP

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)

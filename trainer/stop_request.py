"""Ctrl-C and SIGTERM during training: save at the next step, then stop (torchrun gives its
workers 30 s after SIGTERM)."""
import signal
from typing import Optional


class StopRequest:
    """SIGTERM/SIGINT ask the loop to save and stop at the next step; a second SIGINT stops now."""

    def __init__(self):
        self.signal: Optional[int] = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)

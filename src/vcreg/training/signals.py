"""SIGINT/SIGTERM handling of the trainer: a stop request ends the run cleanly at a step boundary.

The first signal sets a flag (the trainer checkpoints and returns "interrupted"); a second
SIGINT raises ``KeyboardInterrupt`` at once. Handlers are installed only in the main thread and
restored on exit.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopFlag"]


class StopFlag:
    """Context manager: ``requested`` becomes True on SIGINT/SIGTERM; ``signal_name`` says which."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

"""Stopping a run cleanly from outside: the first Ctrl-C or SIGTERM lets the current step finish, then the run
checkpoints, exports and exits 0; a second Ctrl-C aborts."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class StopSignals:
    """``with StopSignals() as stop:`` — ``stop.name`` is the signal's name once one came, else None. Handlers are
    installed only in the main thread (signals cannot be caught elsewhere) and restored on exit."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.name and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name
        print(f"\n{self.name}: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)

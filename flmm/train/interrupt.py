"""Turn SIGINT / SIGTERM into a polite "stop at the next step boundary" request.

Stopping between optimizer steps (instead of raising inside ``backward`` or ``optimizer.step``)
means the checkpoint written on the way out is a consistent state, so an interrupted run loses at
most the step in flight. A second Ctrl-C raises ``KeyboardInterrupt`` at once, for a stuck run.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopRequest:
    """Context manager that installs the handlers (main thread only) and exposes ``requested``."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""
        self._previous: dict[int, object] = {}

    def request(self, reason: str = "requested") -> None:
        """Ask the loop to checkpoint and stop after the current step (also callable from code)."""
        self.requested = True
        self.reason = self.reason or reason

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.request(signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # whatever was installed before
        self._previous.clear()

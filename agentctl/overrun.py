"""The backstop for handlers that ignore their timeout.

A synchronous Python handler cannot be interrupted, and an `async def` one that blocks its event
loop cannot be cancelled. The worker arms an OverrunGuard for every handler call; if the call is
still running a grace period after its timeout, the guard's thread records why in
`<agent>/interrupted.json` and ends the process (the supervisor restarts it at once), and the
next worker fails that message as a timeout instead of a crash.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentctl.message import AgentMessage


class OverrunGuard:
    """Calls `on_overrun(name, message, limit_s)` from its own thread if a handler runs past
    `limit_s`: the backstop for handlers that ignore their timeout (a synchronous Python
    handler, an `async def` that blocks its event loop)."""

    def __init__(self, on_overrun: Callable[[str, AgentMessage, float], None]) -> None:
        self._on_overrun = on_overrun
        self._cond = threading.Condition()
        self._armed: tuple[float, float, str, AgentMessage] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="overrun", daemon=True)
        self._thread.start()

    def arm(self, limit_s: float, name: str, message: AgentMessage) -> None:
        """Start the clock for one handler call."""
        with self._cond:
            self._armed = (time.monotonic() + limit_s, limit_s, name, message)
            self._cond.notify()

    def disarm(self) -> None:
        """The handler returned (or raised) in time."""
        with self._cond:
            self._armed = None

    def close(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._closed = True
            self._armed = None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                armed = self._armed
                if armed is None:
                    self._cond.wait()
                    continue
                remaining_s = armed[0] - time.monotonic()
                if remaining_s > 0:
                    self._cond.wait(remaining_s)
                    continue
                if self._armed is armed:
                    _, limit_s, name, message = armed
                    self._on_overrun(name, message, limit_s)
                    return


def take_note(path: Path) -> dict[str, Any] | None:
    """Read and remove the note a worker left when it gave up on an overrunning handler."""
    try:
        note = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return note if isinstance(note, dict) else None

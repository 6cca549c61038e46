"""The backstop for handlers that ignore their timeout.

A synchronous Python handler cannot be interrupted, and an `async def` one that blocks its event
loop cannot be cancelled. The worker arms an OverrunGuard for every handler call; if the call is
still running a grace period after its timeout, the guard's thread records why in
`<agent>/interrupted.json` and ends the process (the supervisor restarts it at once), and the
next worker fails that message as a timeout instead of a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentctl.model.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from agentctl.backends.transport import Delivery
    from agentctl.model.message import AgentMessage


class OverrunGuard:
    """Calls `on_overrun(delivery, message, limit_s)` from its own thread if a handler runs past
    `limit_s`: the backstop for handlers that ignore their timeout (a synchronous Python
    handler, an `async def` that blocks its event loop).

    arm() and disarm() only set an attribute: no lock, no wake-up of the guard's thread, which
    would otherwise compete with the handler for the GIL at the start of every message. The
    thread looks a few times a second instead; being late by that much is fine for a backstop
    that already allows a grace period.
    """

    def __init__(
        self,
        on_overrun: Callable[[Delivery, AgentMessage, float], None],
        *,
        check_interval_s: float = 0.25,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._on_overrun = on_overrun
        self._clock = clock
        self._check_interval_s = check_interval_s
        self._armed: tuple[float, float, Delivery, AgentMessage] | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overrun", daemon=True)
        self._thread.start()

    def arm(self, limit_s: float, delivery: Delivery, message: AgentMessage) -> None:
        """Start the clock for one handler call."""
        self._armed = (self._clock.monotonic() + limit_s, limit_s, delivery, message)

    @property
    def armed(self) -> bool:
        """Whether a handler call is being timed."""
        return self._armed is not None

    def disarm(self) -> None:
        """The handler returned (or raised) in time."""
        self._armed = None

    def close(self) -> None:
        """Stop the thread."""
        self._armed = None
        self._closed.set()

    def _run(self) -> None:
        while not self._closed.wait(self._check_interval_s):
            armed = self._armed  # one read: arm/disarm replace the tuple, never change it
            if armed is not None and self._clock.monotonic() >= armed[0]:
                _, limit_s, delivery, message = armed
                self._on_overrun(delivery, message, limit_s)
                return

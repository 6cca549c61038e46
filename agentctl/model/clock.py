"""The clock seam: every runtime timer reads time through a Clock, so tests can fake it.

The supervisor (restart backoff, cool-downs, the stuck check, the stop grace), the worker
(handler durations, a retry's `not_before`), the file inbox (retry delays), the overrun guard
and the conductor's and LLM handlers' budgets take a Clock. Production code passes
SYSTEM_CLOCK; a test passes a FakeClock and moves it with advance(), replaying a table of
events instead of sleeping through them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the runtime reads the time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for intervals and deadlines."""

    def now(self) -> datetime:
        """The wall time (UTC, aware): for times written to disk and read back."""

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""


class SystemClock:
    """The real time."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def now(self) -> datetime:
        """datetime.now(UTC)."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """Time that moves only when the test says so; its wall time starts at `start`."""

    def __init__(self, start: datetime | None = None, *, monotonic_s: float = 1000.0) -> None:
        self._start = start if start is not None else datetime.now(UTC)
        self._start_s = monotonic_s
        self.now_s = monotonic_s  # the monotonic reading; wall time moves with it

    def monotonic(self) -> float:
        """The fake monotonic reading."""
        return self.now_s

    def now(self) -> datetime:
        """The fake wall time."""
        return self._start + timedelta(seconds=self.now_s - self._start_s)

    def sleep(self, seconds: float) -> None:
        """Return at once, the time having moved on by `seconds`."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both readings on by `seconds`."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self.now_s += seconds

    def advance_to(self, monotonic_s: float) -> None:
        """Move on until the monotonic reading is `monotonic_s`."""
        self.advance(monotonic_s - self.now_s)

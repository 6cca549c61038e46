"""Message priority: its own module so the CLI can offer it without importing pydantic."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """Delivery priority; the value is the string stored on disk."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Sort key in file names: lower ranks are handled first."""
        return _RANK[self]


_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}

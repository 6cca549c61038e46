"""Small readers of journal records, and the bounded memory, that the span assemblers share."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any, TypeVar

MAX_REMEMBERED = 10_000  # open attempts, runs and sends a long-lived assembler keeps
_V = TypeVar("_V")


class Bounded(OrderedDict[str, _V]):
    """A dict that forgets its oldest entries past MAX_REMEMBERED (a supervisor runs for
    months; what it forgets only costs a span, never a wrong one)."""

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        if len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


def earlier(ts: str, duration_ms: Any) -> str:
    """The ISO time `duration_ms` before `ts` (`ts` itself when either is unreadable)."""
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return (moment - timedelta(milliseconds=float(duration_ms))).isoformat()
    except (TypeError, ValueError, OverflowError):
        return ts


def as_int(value: Any) -> int:
    """`value` if it is an int (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def kept(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The fields `keys` of `record` that are set."""
    return {key: record[key] for key in keys if record.get(key) is not None}


def prefixed(attributes: dict[str, Any]) -> dict[str, Any]:
    """`attributes` under agentctl's own namespace (`agentctl.<key>`)."""
    return {f"agentctl.{key}": value for key, value in attributes.items()}

"""The on-disk vocabularies: each enum's values are exactly the strings PROTOCOL.md documents."""

from __future__ import annotations

import re

from agentctl.model.vocab import ErrorKind, Event, RunStatus
from tests.conftest import REPO

PROTOCOL = (REPO / "docs" / "PROTOCOL.md").read_text()


def _quoted_after(start: str, end: str) -> set[str]:
    section = PROTOCOL[PROTOCOL.index(start) :]
    return set(re.findall(r"`([a-z_]+)`", section[: section.index(end)]))


def test_every_documented_event_and_error_kind_is_a_member_with_the_stored_string() -> None:
    # The routed event's own fields, and a setting it names, are quoted there too.
    fields = {"mode", "keywords", "threshold", "candidates", "chosen", "max_message_bytes"}
    events = _quoted_after("Events: `sent`", "**Size.**") - fields
    assert events <= {e.value for e in Event}, events - {e.value for e in Event}
    kinds = _quoted_after("| `error_kind` | string |", "\n")
    assert kinds - {"error_kind", "attempt", "max_attempts"} == {k.value for k in ErrorKind}
    # Stored strings never change: a workspace written before the enums reads the same.
    assert Event("sent") is Event.SENT and str(Event.RUN_ENDED) == "run_ended"
    assert f"{RunStatus.HALTED}" == "halted" and ErrorKind.BAD_MESSAGE == "bad_message"

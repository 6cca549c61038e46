"""`replay` and `verify` on NATS: a thread's events and messages, read from the stream
(the counterpart of backends/file/history.py and backends/file/verify.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats.reader import StoredMessage, StreamReader
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport


class StreamHistory:
    """`replay` on NATS: events from `agents.*.events`, messages from the inbox subjects."""

    def __init__(self, transport: NatsTransport) -> None:
        self.reader = StreamReader(transport)
        self.where = f"stream {transport.stream}"
        self._envelopes: dict[str, dict[str, Any]] | None = None

    def find_events(self, ident: str) -> tuple[list[dict[str, Any]], int]:
        """Every event about `ident` (one pass over the event subjects)."""
        found = [
            record
            for record in self.reader.events()
            if ident in (record.get("thread_id"), record.get("message_id"))
        ]
        return found, 0

    def envelope(self, trace: Any) -> dict[str, Any] | None:
        """The message as stored on its inbox subject (one pass, on first use)."""
        if self._envelopes is None:
            self._envelopes = {}
            for stored in self.reader.inbox_messages():
                message_id = stored.headers.get("Nats-Msg-Id")
                if not message_id:
                    continue
                try:
                    data = json.loads(stored.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    self._envelopes[message_id] = data
        return self._envelopes.get(trace.id)

    def file_state(self, trace: Any) -> str | None:
        """None: the stream keeps every message, so the journal's events are the state."""
        return None

    def unjournaled_replies(self, trace: Any) -> list[dict[str, Any]]:
        """None: on NATS every delivery, a foreign worker's included, goes through the stream."""
        return []


@dataclass
class StreamReport:
    """What `verify` found in the stream."""

    events: int = 0
    messages: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def verify_stream(transport: NatsTransport) -> StreamReport:
    """`verify` on NATS: every message the journal says was sent is still in the stream, with
    the SHA-256 it recorded, and every message in the inbox subjects was journaled.

    JetStream does not let a stored message change, but it can be deleted (or published around
    agentctl): this is what finds either. A `sent` followed by a `discarded` for the same
    message id is a duplicate the server refused, so no copy of it is expected.
    """
    from agentctl.protocol.journal import content_digest

    reader = StreamReader(transport)
    report = StreamReport()
    expected: dict[str, list[str]] = {}  # message id -> digests of its accepted sends
    for record in reader.events():
        report.events += 1
        message_id, event = record.get("message_id"), record.get("event")
        if not message_id:
            continue
        # A requeue publishes the message again, with the digest it journals.
        if event in (Event.SENT, Event.REQUEUED) and record.get("sha256"):
            expected.setdefault(str(message_id), []).append(str(record["sha256"]))
        elif event == Event.DISCARDED and expected.get(str(message_id)):
            expected[str(message_id)].pop()
    for stored in reader.inbox_messages():
        report.messages += 1
        message_id = _message_id_of(stored)
        digest = content_digest(stored.data)
        digests = expected.get(message_id, [])
        if digest in digests:
            digests.remove(digest)
        else:
            report.problems.append(
                f"{transport.stream}:{stored.seq} ({stored.subject}, {message_id or 'no id'}): "
                "stored but never journaled as sent (published around agentctl?)"
            )
    for message_id, digests in expected.items():
        for digest in digests:
            report.problems.append(
                f"{message_id}: journaled as sent (sha256 {digest[:12]}...) but not in the "
                "stream (deleted?)"
            )
    return report


def _message_id_of(stored: StoredMessage) -> str:
    # From the message itself: the Nats-Msg-Id of a requeued copy carries a suffix.
    try:
        data = json.loads(stored.data)
    except ValueError:
        return ""
    return str(data.get("id", "")) if isinstance(data, dict) else ""

"""The journal on NATS: each event published to `agents.<agent>.events` of the stream.

An event is handed to the connection's loop without waiting for the server, and confirmed in
bulk before anything is settled (see StreamJournal.append): the stream keeps the order in
which events leave this connection, so no message settles before the events that led to it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats.client import CALL_TIMEOUT_S, EVENTS_SUBJECT
from agentctl.model.ids import new_id
from agentctl.model.names import validate_agent_name
from agentctl.protocol.eventlimits import ENCODER, cut_long_text, fit_record
from agentctl.protocol.status import iso_now

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport

log = logging.getLogger(__name__)

MAX_UNCONFIRMED_EVENTS = 256  # then wait for them (bounds memory, e.g. in the supervisor)


class StreamJournal:
    """Where a NATS transport's events go: the stream, confirmed before the next settle."""

    def __init__(self, transport: NatsTransport) -> None:
        self.transport = transport
        # Events handed to the loop thread, not yet confirmed by the server (see append()).
        self._unconfirmed: list[tuple[concurrent.futures.Future[Any], str, bytes, Any]] = []
        self._unconfirmed_lock = threading.Lock()

    def append(
        self,
        event: str,
        *,
        agent: str | None,
        message_id: str | None = None,
        thread_id: str | None = None,
        **fields: Any,
    ) -> None:
        """Publish one event to `agents.<agent>.events`, confirmed before the next settle.

        The publish is handed to the loop thread without waiting: waiting for each of a
        message's three events (a thread hop and a server round trip each) was half of its
        cost. Publishes leave this connection in order, and `confirm()` waits for them
        before anything is acked, so no message settles before the events that led to it.
        """
        record: dict[str, Any] = {
            "ts": iso_now(),
            "event": event,
            "agent": agent,
            "message_id": message_id,
            "thread_id": thread_id,
        }
        for key, value in fields.items():
            if value is not None:
                cut_long_text(record, key, value)
        subject = EVENTS_SUBJECT.format(agent=validate_agent_name(agent or "agentctl"))
        # The file journal's limits, so an event is never refused for its size (max_payload).
        data = ENCODER.encode(fit_record(record)).encode()
        # An id of its own, so a publish retried after a lost confirmation is stored once.
        headers = {"Nats-Msg-Id": f"event.{new_id()}"}
        future = self.transport.loop.spawn(
            self.transport.js.publish(subject, data, headers=headers)
        )
        with self._unconfirmed_lock:
            self._unconfirmed.append((future, subject, data, headers))
            full = len(self._unconfirmed) >= MAX_UNCONFIRMED_EVENTS
        if full:
            self.confirm()

    def confirm(self) -> None:
        """Wait until every event published so far is stored; publish again any that was
        not (its Nats-Msg-Id keeps a second copy out)."""
        with self._unconfirmed_lock:
            pending, self._unconfirmed = self._unconfirmed, []
        for future, subject, data, headers in pending:
            try:
                future.result(CALL_TIMEOUT_S)  # usually done already: no wait, no thread hop
                continue
            except Exception as exc:  # timed out, or the connection dropped meanwhile
                future.cancel()
                log.debug("event not confirmed (%s); publishing it again", exc)
            again = functools.partial(self.transport.js.publish, subject, data, headers=headers)
            self.transport.call(again, "journal (again)")

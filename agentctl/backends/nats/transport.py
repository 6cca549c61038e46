"""NatsTransport: the Transport protocol on NATS JetStream (docs/NATS.md).

- deliver: publish to `agents.<to>.inbox` with `Nats-Msg-Id` = the message id, so a reply
  re-sent after a crash is stored once (the file transport's `dedupe`);
- an agent's inbox is a durable pull consumer `agent-<name>` with explicit acks, shared by all
  its workers (`replicas: N`, on any machine); `ack_wait` follows the agent's `timeout_s` and a
  running handler sends in-progress acks, so a dead worker's message comes back quickly and a
  slow one is not taken from it; `max_deliver` is `max_attempts` + 1: the extra delivery, after
  a worker died during the last attempt, settles the message in dead letters;
- retries are naks with the retry policy's delay; the server counts the attempts;
- dead letters: published to `agents.<name>.dead` (the message, the reason in headers), then
  the delivery is terminated;
- events: published to `agents.<agent>.events`; the stream is the journal (events.py);
- status: each worker's status in the key-value bucket `<STREAM>_status`, the halt record too.

Nothing here buffers: a publish or an ack is confirmed by the server before it counts, and
while the server is unreachable a worker waits (showing `disconnected`) instead of failing.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

from agentctl.backends.nats.client import (
    CALL_TIMEOUT_S,
    INBOX_SUBJECT,
    STATUS_TTL_S,
    BusError,
    LoopThread,
    control_bucket,
    ensure_bucket,
    ensure_stream,
    open_connection,
    status_bucket,
    status_key,
)
from agentctl.backends.nats.control import ControlRecords
from agentctl.backends.nats.events import StreamJournal
from agentctl.model.clock import SYSTEM_CLOCK, Clock
from agentctl.model.errors import AgentctlError, BadMessageError
from agentctl.model.names import validate_agent_name
from agentctl.model.vocab import Event

try:
    from nats.errors import MsgAlreadyAckdError
except ImportError:  # without the nats extra, NatsTransport.connect says which to install

    class MsgAlreadyAckdError(Exception):  # type: ignore[no-redef]
        """Stands in for nats-py's error so this module imports without it."""


if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.backends.nats.inbox import NatsInbox
    from agentctl.config.agentspec import AgentSpec
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.status import AgentStatus

log = logging.getLogger(__name__)

COMMAND_PATIENCE_S = 20.0  # how long a command retries before it gives up with one line


class NatsTransport:
    """Messages, events, status and the halt record on one JetStream stream."""

    kind = "nats"

    def __init__(
        self,
        workspace: Workspace,
        loop: LoopThread,
        nc: Any,
        js: Any,
        kv: Any,
        control: Any,
        *,
        stream: str,
        servers: list[str],
        patient: bool,
    ) -> None:
        self.workspace = workspace
        self.fsync = workspace.fsync
        self.max_message_bytes = workspace.max_message_bytes
        self.loop = loop
        self.nc = nc
        self.js = js
        self.kv = kv  # workers' status, by key status.<agent>.<host>.<replica>
        self.control = control  # the halt record
        self.stream = stream
        self.servers = servers
        self.patient = patient  # a worker waits out outages; a command gives up
        self.connected = True
        self._listeners: list[Callable[[bool], None]] = []
        self.records = ControlRecords(self)
        self._known_ids: dict[str, set[str]] = {}
        self._closing = False
        self.events = StreamJournal(self)

    @classmethod
    def connect(
        cls,
        workspace: Workspace,
        servers: list[str],
        *,
        stream: str,
        replicas: int,
        client_name: str = "agentctl",
        patient: bool = False,
    ) -> Self:
        """Connect, and create the stream and the status bucket if they do not exist."""
        loop = LoopThread(f"nats-{client_name}")
        holder: list[Self] = []

        def on_change(connected: bool) -> None:
            if holder:
                holder[0]._connection_changed(connected)

        async def setup() -> tuple[Any, Any, Any, Any]:
            nc = await open_connection(
                servers, name=client_name, on_change=on_change, patient=patient
            )
            js = nc.jetstream(timeout=CALL_TIMEOUT_S)
            try:
                await ensure_stream(js, stream, replicas)
                kv = await ensure_bucket(js, status_bucket(stream), replicas, ttl_s=STATUS_TTL_S)
                control = await ensure_bucket(js, control_bucket(stream), replicas)
            except BaseException:
                await nc.close()
                raise
            return nc, js, kv, control

        try:
            nc, js, kv, control = loop.call(setup())
        except BaseException:
            loop.close()
            raise
        transport = cls(
            workspace, loop, nc, js, kv, control, stream=stream, servers=servers, patient=patient
        )
        holder.append(transport)
        return transport

    # -- connection -------------------------------------------------------------------------

    def watch_connection(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(connected)` when the connection is lost or back."""
        self._listeners.append(listener)

    def _connection_changed(self, connected: bool) -> None:
        if self._closing:
            return  # our own close() disconnects: nothing to report
        log.warning("reconnected to NATS" if connected else "disconnected from NATS; reconnecting")
        self.connected = connected
        for listener in self._listeners:
            listener(connected)

    def call(self, make: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Run a request on the connection, retrying while the server is unreachable.

        A worker (patient) retries until it succeeds: what it holds is not lost, and it must not
        give up on a message because a node is restarting. A command gives up after
        COMMAND_PATIENCE_S with one clear line.
        """
        deadline = time.monotonic() + COMMAND_PATIENCE_S
        delay_s = 0.1
        while True:
            try:
                return self.loop.call(_awaited(make), CALL_TIMEOUT_S + 1)
            except AgentctlError:
                raise
            except MsgAlreadyAckdError:
                # A retried settle whose first try did reach the server (it timed out here,
                # under load): settled once, which is what we wanted.
                return None
            except Exception as exc:
                gave_up = not self.patient and time.monotonic() > deadline
                if gave_up or not _transient(exc):
                    where = ", ".join(self.servers)
                    raise BusError(f"{where}: {what} failed: {exc or type(exc).__name__}") from None
                log.warning("%s failed (%s); retrying", what, exc or type(exc).__name__)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    # -- the Transport protocol -------------------------------------------------------------

    @property
    def local(self) -> Workspace:
        """This machine's workspace: logs, locks, pipeline runs, local status files."""
        return self.workspace

    @property
    def journal(self) -> StreamJournal:
        """Events go to the stream (see StreamJournal)."""
        return self.events

    def confirm_events(self) -> None:
        """Wait until every event published so far is stored (see StreamJournal.confirm)."""
        self.events.confirm()

    def record(self, event: str, message: AgentMessage | None, agent: str, **fields: Any) -> None:
        """Journal `event` by `agent` about `message`."""
        self.events.append(
            event,
            agent=agent,
            message_id=message.id if message else None,
            thread_id=message.thread_id if message else None,
            **fields,
        )

    def deliver(
        self, message: AgentMessage, *, dedupe: bool = False, by: Actor | None = None
    ) -> str | None:
        """Publish `message` to its recipient's inbox subject; `STREAM:SEQ`, or None when
        `dedupe` and the server already holds this message id."""
        from agentctl.backends.records import sent_fields

        validate_agent_name(message.to_agent)
        validate_agent_name(message.from_agent)
        data = message.to_json_bytes()
        if len(data) > self.max_message_bytes:
            raise BadMessageError(
                f"message {message.id} to {message.to_agent} is {len(data)} bytes, over the "
                f"limit of {self.max_message_bytes} (max_message_bytes)"
            )
        # Journaled before it can be claimed, as on files, so `sent` precedes `claimed`.
        self.record(
            Event.SENT,
            message,
            message.from_agent,
            **sent_fields(message, data),
            **(by.fields() if by else {}),
        )
        try:
            ack = self.publish_message(message, data)
        except Exception as exc:  # as on files: the sender's journal says it did not go
            error = str(exc)
            self.record(
                Event.DISCARDED, message, message.from_agent, to=message.to_agent, error=error
            )
            raise
        if ack.duplicate:
            self.record(
                Event.DISCARDED,
                message,
                message.from_agent,
                to=message.to_agent,
                error="already in the recipient's inbox",
            )
            if not dedupe:
                raise AgentctlError(f"message {message.id} was already sent; nothing sent")
            return None
        return f"{self.stream}:{ack.seq}"

    def publish_message(self, message: AgentMessage, data: bytes) -> Any:
        """Store `data` (`message`'s bytes) on its recipient's inbox subject; the server's ack."""
        subject = INBOX_SUBJECT.format(agent=validate_agent_name(message.to_agent))
        # A requeued message is a new delivery of the same id: it must not be deduplicated.
        msg_id = f"{message.id}.r{message.requeued}" if message.requeued else message.id
        headers = {"Nats-Msg-Id": msg_id}
        return self.call(
            lambda: self.js.publish(subject, data, headers=headers), f"send {message.id}"
        )

    def inbox(
        self, spec: AgentSpec, *, poll_interval_s: float, clock: Clock = SYSTEM_CLOCK
    ) -> NatsInbox:
        """The agent's durable consumer (the server keeps its redelivery times: no clock)."""
        from agentctl.backends.nats.inbox import NatsInbox

        return NatsInbox(self, spec, poll_interval_s=poll_interval_s)

    def publish_status(self, status: AgentStatus) -> None:
        """Put the worker's status in the bucket; skipped while disconnected (never raises)."""
        if not self.connected:
            return
        key = status_key(status.agent, socket.gethostname(), status.replica)
        status.host = status.host or socket.gethostname()
        try:
            self.loop.call(self.kv.put(key, status.to_json_bytes()), 2.0)
        except Exception as exc:  # the next heartbeat tries again
            log.debug("cannot publish status: %s", exc)

    def is_halted(self) -> bool:
        """The halt record's presence (looked up at most every HALT_CHECK_INTERVAL_S)."""
        return self.records.is_halted()

    def halt_state(self) -> dict[str, Any] | None:
        """The halt record, or None."""
        return self.records.halt_state()

    def write_halt(self, record: dict[str, Any]) -> None:
        """Put the halt record: every worker on every machine stops claiming."""
        self.records.write_halt(record)

    def clear_halt(self) -> None:
        """Delete the halt record."""
        self.records.clear_halt()

    def claim_conductor(self) -> None:
        """Take the cluster's conductor lease, or refuse while another conductor is alive."""
        self.records.claim_conductor()

    def has_reply(self, agent: str, reply_id: str, priority: str) -> bool:
        """Whether `reply_id` is in `agent`'s inbox subject (one scan per agent, then cached)."""
        known = self._known_ids.get(agent)
        if known is None:
            from agentctl.backends.nats.reader import StreamReader

            reader = StreamReader(self)
            known = {
                str(m.headers.get("Nats-Msg-Id"))
                for m in reader.messages(INBOX_SUBJECT.format(agent=agent), headers_only=True)
                if m.headers
            }
            self._known_ids[agent] = known
        return reply_id in known

    def release_in_hand(self, agent: str) -> list[str]:
        """Nothing to do: the server redelivers what a killed worker held after ack_wait."""
        return []

    def close(self) -> None:
        """Close the connection (unacked deliveries are redelivered by the server)."""
        try:
            self.confirm_events()
        except AgentctlError as exc:
            log.error("events not confirmed before closing: %s", exc)
        self._closing = True
        try:
            self.loop.call(self.nc.close(), 5.0)
        except Exception as exc:
            log.debug("closing the NATS connection: %s", exc)
        self.loop.close()


def _transient(exc: Exception) -> bool:
    """Whether retrying may help: the connection or the cluster is away for a while (a
    restart, a leader election), as opposed to a refusal (a payload over the server's limit,
    a bad request) that would be refused again, for ever."""
    import nats.errors
    import nats.js.errors

    transient = (
        TimeoutError,
        OSError,  # the socket, while the client reconnects
        nats.errors.TimeoutError,
        nats.errors.NoRespondersError,
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.OutboundBufferLimitError,
        nats.errors.StaleConnectionError,
        nats.errors.FlushTimeoutError,
        nats.errors.NoServersError,
        nats.js.errors.NoStreamResponseError,
        nats.js.errors.ServiceUnavailableError,
        nats.js.errors.ServerError,
    )
    return isinstance(exc, transient)


async def _awaited(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()

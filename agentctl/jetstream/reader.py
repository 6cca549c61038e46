"""Reading the stream back: events for `tail` and `replay`, dead letters, status and depth.

Every read is an ephemeral, unacknowledged pull consumer over one subject filter: it reads
what the stream holds in order, in batches, and is gone when the reader is (the durable
consumers that workers share are never touched by a reader).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentctl.errors import AgentctlError
from agentctl.jetstream.client import DEAD_SUBJECT, EVENTS_SUBJECT, INBOX_SUBJECT
from agentctl.status import AgentStatus

if TYPE_CHECKING:
    from agentctl.deadletters import DeadLetter
    from agentctl.escalation import Escalation
    from agentctl.jetstream.transport import NatsTransport
    from agentctl.message import AgentMessage

log = logging.getLogger(__name__)

FETCH_BATCH = 500


@dataclass(frozen=True)
class StoredMessage:
    """One message of the stream."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Depth:
    """An agent's consumer: waiting, in a worker's hands, and dead letters."""

    new: int
    processing: int
    dead: int


class StreamReader:
    """Reads the stream of one NatsTransport."""

    def __init__(self, transport: NatsTransport) -> None:
        self.transport = transport

    def messages(
        self,
        subject: str,
        *,
        headers_only: bool = False,
        start_seq: int | None = None,
        follow_s: float = 0.0,
    ) -> Iterator[StoredMessage]:
        """Every stored message on `subject` (wildcards allowed), oldest first; with
        `follow_s`, then the new ones as they are stored, for that long."""
        sub = self.transport.call(
            lambda: self._ephemeral(subject, headers_only, start_seq), f"read {subject}"
        )
        deadline = time.monotonic() + follow_s
        try:
            while True:
                wait_s = min(max(deadline - time.monotonic(), 0.0), 1.0) if follow_s else 0.5
                batch, pending = self.transport.call(
                    functools.partial(self._fetch, sub, wait_s), f"read {subject}"
                )
                yield from batch
                if follow_s:
                    if time.monotonic() >= deadline:
                        return
                elif not batch or pending == 0:
                    return
        finally:
            try:
                self.transport.loop.call(sub.unsubscribe(), 2.0)
            except Exception as exc:
                log.debug("unsubscribe: %s", exc)

    async def _ephemeral(self, subject: str, headers_only: bool, start_seq: int | None) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq,
            headers_only=headers_only or None,
            inactive_threshold=5.0,  # unsubscribe does not delete it: the server will
            mem_storage=True,
        )
        return await self.transport.js.pull_subscribe(
            subject, stream=self.transport.stream, config=config
        )

    async def _fetch(self, sub: Any, wait_s: float) -> tuple[list[StoredMessage], int]:
        from nats.errors import TimeoutError as FetchTimeout

        try:
            msgs = await sub.fetch(FETCH_BATCH, timeout=max(wait_s, 0.05))
        except (TimeoutError, FetchTimeout):
            return [], 0
        out = [
            StoredMessage(
                seq=int(m.metadata.sequence.stream),
                subject=m.subject,
                data=bytes(m.data),
                headers=dict(m.headers or {}),
            )
            for m in msgs
        ]
        pending = int(msgs[-1].metadata.num_pending) if msgs else 0
        return out, pending

    def events(
        self, agent: str = "*", *, start_seq: int | None = None, follow_s: float = 0.0
    ) -> Iterator[dict[str, Any]]:
        """Journal records (as the file journal writes them, `seq` the stream sequence); with
        `follow_s`, new ones as they come, for that long (`math.inf`: until interrupted)."""
        subject = EVENTS_SUBJECT.format(agent=agent)
        for stored in self.messages(subject, start_seq=start_seq, follow_s=follow_s):
            try:
                record = json.loads(stored.data)
            except ValueError:
                continue  # not ours: someone published junk on an events subject
            if isinstance(record, dict):
                record["seq"] = stored.seq
                yield record

    def inbox_messages(self, agent: str = "*") -> Iterator[StoredMessage]:
        """The messages sent to `agent` (every agent with "*")."""
        return self.messages(INBOX_SUBJECT.format(agent=agent))

    def dead_letters(self, agent: str = "*") -> Iterator[StoredMessage]:
        """The dead letters of `agent` (every agent with "*")."""
        return self.messages(DEAD_SUBJECT.format(agent=agent))

    def statuses(self) -> list[AgentStatus]:
        """Every worker's last published status."""
        return list(self.transport.call(self._statuses, "read the status bucket"))

    async def _statuses(self) -> list[AgentStatus]:
        from nats.js.errors import NoKeysError

        kv = self.transport.kv
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        found = []
        for key in keys:
            if not key.startswith("status."):
                continue
            try:
                entry = await kv.get(key)
                found.append(AgentStatus.from_dict(json.loads(entry.value)))
            except Exception as exc:  # deleted meanwhile, or not a status: skip it
                log.debug("status %s: %s", key, exc)
        return found

    def depth(self, agents: list[str]) -> dict[str, Depth]:
        """Per agent: messages waiting for its consumer, held by workers, and dead."""
        return dict(self.transport.call(lambda: self._depth(agents), "read consumer state"))

    async def _depth(self, agents: list[str]) -> dict[str, Depth]:
        from nats.js.errors import NotFoundError

        js, stream = self.transport.js, self.transport.stream
        info = await js.stream_info(stream, subjects_filter=DEAD_SUBJECT.format(agent="*"))
        dead_counts = info.state.subjects or {}
        inbox_info = await js.stream_info(stream, subjects_filter=INBOX_SUBJECT.format(agent="*"))
        inbox_counts = inbox_info.state.subjects or {}
        depths = {}
        for agent in agents:
            dead = int(dead_counts.get(DEAD_SUBJECT.format(agent=agent), 0))
            try:
                consumer = await js.consumer_info(stream, f"agent-{agent}")
                new, processing = int(consumer.num_pending), int(consumer.num_ack_pending)
            except NotFoundError:  # no worker ever ran: everything sent is waiting
                new, processing = int(inbox_counts.get(INBOX_SUBJECT.format(agent=agent), 0)), 0
            depths[agent] = Depth(new=new, processing=processing, dead=dead)
        return depths


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


class StreamRouter:
    """`send` and `send --wait` on NATS: WorkspaceRouter's send/wait_for_reply on the stream."""

    def __init__(self, transport: NatsTransport) -> None:
        self.transport = transport
        self.reader = StreamReader(transport)
        # request id -> its stream sequence: its reply can only be stored after it, so the
        # wait reads from there instead of every reply the sender ever got.
        self._sent_seq: dict[str, int] = {}

    def send(self, message: AgentMessage) -> str:
        """Publish `message` to its recipient's inbox subject; `STREAM:SEQ`."""
        where = self.transport.deliver(message)
        assert where is not None  # deliver without dedupe raises instead of returning None
        self._sent_seq[message.id] = int(str(where).rpartition(":")[2])
        return str(where)

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """Wait for the one reply to `request` on its sender's inbox subject, and return it.

        The reply stays in the stream (the audit trail); nothing consumes the sender's subject.
        """
        from agentctl.errors import WaitTimeoutError
        from agentctl.ids import reply_id
        from agentctl.message import parse_message

        wanted = reply_id(request.id, request.requeued)
        for stored in self.reader.messages(
            INBOX_SUBJECT.format(agent=request.from_agent),
            start_seq=self._sent_seq.get(request.id, 1),
            follow_s=timeout_s,  # a fetch waits for the next message: no polling
        ):
            if stored.headers.get("Nats-Msg-Id") == wanted:
                return parse_message(stored.data)
        raise WaitTimeoutError(
            f"no reply to {request.id} within {timeout_s:g} s "
            f"(the request is still queued for {request.to_agent})"
        )


def list_stream_dead(transport: NatsTransport, agents: list[str]) -> list[DeadLetter]:
    """`dead list` on NATS: the dead-letter subjects of `agents`, oldest first."""
    from agentctl.deadletters import DeadLetter

    reader = StreamReader(transport)
    letters = []
    for agent in agents:
        for stored in reader.dead_letters(agent):
            try:
                error = json.loads(stored.headers.get("Agentctl-Error") or "{}")
            except ValueError:
                error = {"error": stored.headers.get("Agentctl-Error")}
            letters.append(
                DeadLetter(
                    agent=agent,
                    file=f"{transport.stream}:{stored.seq}",
                    message_id=error.get("message_id"),
                    attempts=error.get("attempts"),
                    error_kind=error.get("error_kind"),
                    error=error.get("error"),
                    dead_at=error.get("dead_at"),
                )
            )
    return letters


def requeue_stream_dead(transport: NatsTransport, letter: DeadLetter) -> str:
    """`dead requeue` on NATS: publish the message again with its attempts reset, then remove
    the dead letter (the journal keeps its `dead` and `requeued` events)."""
    from agentctl.deadletters import DeadLetterError, revive
    from agentctl.errors import BadMessageError
    from agentctl.message import parse_message

    seq = int(letter.file.rpartition(":")[2])
    stream = transport.stream
    try:
        raw = transport.call(lambda: transport.js.get_msg(stream, seq), f"read dead letter {seq}")
        message = parse_message(bytes(raw.data or b""))
    except BadMessageError as exc:
        raise DeadLetterError(
            f"{letter.agent}/{letter.file}: not a valid message, cannot requeue ({exc})"
        ) from None
    except AgentctlError as exc:
        raise DeadLetterError(f"{letter.agent}/{letter.file}: no longer dead ({exc})") from None
    revived = revive(message)
    transport.record(
        "requeued",
        revived,
        letter.agent,
        file=letter.file,
        previous_error=letter.error,
        previous_attempts=letter.attempts,
    )
    transport.deliver(revived)
    transport.call(lambda: transport.js.delete_msg(stream, seq), f"remove dead letter {seq}")
    return revived.id


def stream_escalations(transport: NatsTransport, overdue_after_s: float) -> list[Escalation]:
    """`escalations` on NATS: messages on `agents.human.inbox` whose reply is not stored yet."""
    from datetime import UTC, datetime

    from agentctl.constants import HUMAN_AGENT
    from agentctl.errors import BadMessageError
    from agentctl.escalation import escalation_of
    from agentctl.ids import reply_id
    from agentctl.message import parse_message

    reader = StreamReader(transport)
    asked = []
    for stored in reader.messages(INBOX_SUBJECT.format(agent=HUMAN_AGENT)):
        try:
            asked.append((stored.seq, parse_message(stored.data)))
        except BadMessageError:
            continue  # not an escalation: not ours to judge here
    if not asked:
        return []
    # Escalations come from the conductor: their answers are stored on its inbox subject.
    answered = {
        m.headers.get("Nats-Msg-Id")
        for requester in {message.from_agent for _, message in asked}
        for m in reader.messages(INBOX_SUBJECT.format(agent=requester), headers_only=True)
    }
    now = datetime.now(UTC)
    return [
        escalation_of(message, f"{transport.stream}:{seq}", now, overdue_after_s)
        for seq, message in asked
        if reply_id(message.id) not in answered
    ]


def resolve_stream_escalation(
    transport: NatsTransport, ident: str, verdict: str, note: str | None
) -> Escalation:
    """`resolve` on NATS: publish the person's verdict as the escalation's reply (stored once,
    by its derived id, however many people answer at the same time)."""
    from agentctl.escalation import answer, pick_escalation
    from agentctl.message import parse_message

    escalation = pick_escalation(
        stream_escalations(transport, transport.workspace.escalation_overdue_s), ident
    )
    seq = int(escalation.file.rpartition(":")[2])
    stream = transport.stream
    raw = transport.call(lambda: transport.js.get_msg(stream, seq), f"read escalation {seq}")
    answer(transport, parse_message(bytes(raw.data or b"")), escalation, verdict, note)
    return escalation


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
    from agentctl.journal import content_digest

    reader = StreamReader(transport)
    report = StreamReport()
    expected: dict[str, list[str]] = {}  # message id -> digests of its accepted sends
    for record in reader.events():
        report.events += 1
        message_id, event = record.get("message_id"), record.get("event")
        if not message_id:
            continue
        if event == "sent" and record.get("sha256"):
            expected.setdefault(str(message_id), []).append(str(record["sha256"]))
        elif event == "discarded" and expected.get(str(message_id)):
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

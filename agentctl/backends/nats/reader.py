"""Reading the stream back: messages and events, workers' status, consumers' depth.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats.client import DEAD_SUBJECT, EVENTS_SUBJECT, INBOX_SUBJECT
from agentctl.protocol.mailbox import Depth
from agentctl.protocol.status import AgentStatus

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport

log = logging.getLogger(__name__)

FETCH_BATCH = 500


@dataclass(frozen=True)
class StoredMessage:
    """One message of the stream."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


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

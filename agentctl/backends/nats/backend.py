"""NatsBackend: the Backend protocol on NATS JetStream (the transport, plus reading back)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats import deadletters
from agentctl.backends.nats.reader import StreamReader
from agentctl.backends.nats.transport import NatsTransport

if TYPE_CHECKING:
    from agentctl.backends.nats.history import StreamHistory
    from agentctl.backends.records import AgentRow, DeadLetter, Verification
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.mailbox import Depth

FOLLOW_FETCH_S = 0.5  # a follower looks at its stop event this often


class NatsBackend(NatsTransport):
    """Messages, events, status and the halt record on one stream, and reading them back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # request id -> its stream sequence: its reply can only be stored after it, so a wait
        # reads from there instead of every reply the sender ever got.
        self._sent_seq: dict[str, int] = {}
        # Workers the roster runs of each agent (`replicas: N`; 1 if not named): `status`
        # hides the cleanly stopped records of replicas beyond them.
        self.agent_replicas: dict[str, int] = {}

    def deliver(
        self, message: AgentMessage, *, dedupe: bool = False, by: Actor | None = None
    ) -> str | None:
        """Publish `message` (see NatsTransport.deliver), remembering where it went."""
        where = super().deliver(message, dedupe=dedupe, by=by)
        if where is not None:
            self._sent_seq[message.id] = int(where.rpartition(":")[2])
        return where

    def read_events(
        self,
        last_n: int,
        keep: Callable[[dict[str, Any]], bool],
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The last `last_n` events of the stream that `keep` accepts, oldest first."""
        last: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(last_n, 1))
        for record in StreamReader(self).events():
            if keep(record):
                last.append(record)
        return list(last)[-last_n:] if last_n else []

    def follow_events(
        self,
        keep: Callable[[dict[str, Any]], bool],
        stop: threading.Event,
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events stored from this call on that `keep` accepts, until `stop` is set."""
        next_seq = self.call(self._last_seq, "read the stream's state") + 1  # taken now
        return self._follow_from(next_seq, keep, stop)

    def _follow_from(
        self, next_seq: int, keep: Callable[[dict[str, Any]], bool], stop: threading.Event
    ) -> Iterator[dict[str, Any]]:
        reader = StreamReader(self)
        while not stop.is_set():
            for record in reader.events(start_seq=next_seq, follow_s=FOLLOW_FETCH_S):
                next_seq = int(record["seq"]) + 1
                if keep(record):
                    yield record
                if stop.is_set():
                    return

    async def _last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    def history(self) -> StreamHistory:
        """The stream's events and messages."""
        from agentctl.backends.nats.history import StreamHistory

        return StreamHistory(self)

    def dead_letters(self, agents: list[str] | None = None) -> list[DeadLetter]:
        """The agents' dead-letter subjects."""
        return deadletters.list_stream_dead(self, agents)

    def read_dead(self, letter: DeadLetter) -> AgentMessage:
        """The stored dead letter's message."""
        return deadletters.read_stream_dead(self, letter)

    def restore_dead(self, letter: DeadLetter, message: AgentMessage) -> None:
        """Publish `message` again, then delete the dead letter."""
        deadletters.restore_stream_dead(self, letter, message)

    def escalation_requests(self) -> list[tuple[str, AgentMessage]]:
        """Messages on the human inbox subject without a stored reply."""
        return deadletters.stream_escalation_requests(self)

    def settle_escalation(self, where: str, reply: AgentMessage) -> None:
        """Publish the reply: stored once, by its derived id, however many people answer."""
        self.deliver(reply, dedupe=True)

    def depth(self, agents: list[str]) -> dict[str, Depth]:
        """Per agent: pending on its consumer, held by workers, dead."""
        return StreamReader(self).depth(agents)

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """The reply on the sender's inbox subject; it stays in the stream (the audit trail)."""
        from agentctl.backends.nats.client import INBOX_SUBJECT
        from agentctl.model.errors import WaitTimeoutError
        from agentctl.model.ids import reply_id
        from agentctl.model.message import parse_message

        wanted = reply_id(request.id, request.requeued)
        for stored in StreamReader(self).messages(
            INBOX_SUBJECT.format(agent=request.from_agent),
            start_seq=self._sent_seq.get(request.id, 1),
            follow_s=timeout_s,  # a fetch waits for the next message: no polling
        ):
            if stored.headers.get("Nats-Msg-Id") == wanted:
                return parse_message(stored.data)
        raise WaitTimeoutError(f"no reply to {request.id} within {timeout_s:g} s")

    def worker_rows(self, names: list[str], now: datetime) -> list[AgentRow]:
        """From the status bucket, alive by heartbeat; depth from the consumers."""
        from agentctl.backends.nats.overview import worker_rows

        return worker_rows(self, names, self.agent_replicas, now)

    def describe(self) -> dict[str, Any]:
        """The cluster's servers, reached."""
        return {"kind": self.kind, "servers": self.servers, "reachable": True}

    def verify(self) -> Verification:
        """Every journaled message in the stream with its digest, and nothing else there."""
        from agentctl.backends.nats.history import verify_stream
        from agentctl.backends.records import Verification

        stream = verify_stream(self)
        return Verification(
            stream.problems,
            [],
            f"{stream.events} events, {stream.messages} messages in stream {self.stream}, "
            "each sent message stored with the digest the journal recorded",
            {**asdict(stream), "ok": stream.ok},
        )

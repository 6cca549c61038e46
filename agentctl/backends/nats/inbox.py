"""NatsInbox: one worker's end of an agent's durable pull consumer (see transport.py).

One message per fetch, so the workers sharing the consumer (`replicas: N`) share the work
fairly; while a handler runs, in-progress acks keep the message from being redelivered; every
settle (ack, nak, term) waits for the server's confirmation, after the message's events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agentctl.backends.nats.client import CALL_TIMEOUT_S, DEAD_SUBJECT, INBOX_SUBJECT
from agentctl.backends.nats.transport import NatsTransport
from agentctl.backends.transport import Delivery
from agentctl.model.constants import HANDLER_OVERRUN_GRACE_S, REWRITE_HEADROOM_BYTES
from agentctl.model.errors import BadMessageError
from agentctl.model.names import validate_agent_name
from agentctl.protocol.overrunnote import take_note

if TYPE_CHECKING:
    from agentctl.config.agentspec import AgentSpec
    from agentctl.model.message import AgentMessage

log = logging.getLogger(__name__)

MAX_ACK_WAIT_S = 30.0  # a dead worker's message is redelivered within this (plus the grace)


def ack_wait_s(spec: AgentSpec) -> float:
    """How long the server waits for a settle (or an in-progress ack) before redelivering."""
    return min(spec.timeout_s, MAX_ACK_WAIT_S) + HANDLER_OVERRUN_GRACE_S


class NatsInbox:
    """One worker's end of an agent's durable pull consumer."""

    def __init__(self, transport: NatsTransport, spec: AgentSpec, *, poll_interval_s: float):
        self.transport = transport
        self.spec = spec
        self.agent = validate_agent_name(spec.name)
        self.ack_wait_s = ack_wait_s(spec)
        # A fetch is the wait: short enough that stop and halt are noticed promptly.
        self.fetch_timeout_s = min(max(poll_interval_s, 0.1), 1.0)
        self._sub: Any = None
        self._wake = threading.Event()
        self._fetch_waited = False
        self._tickers: dict[str, concurrent.futures.Future[None]] = {}
        # Why the last worker here gave up on a message (a handler overran its timeout).
        self._note: dict[str, Any] | None = None

    def open(self) -> None:
        """Take the last worker's note, if any; create (or update) the agent's durable
        consumer and bind to it."""
        self._note = take_note(self.transport.local.agent_dir(self.agent))
        self._sub = self.transport.call(self._subscribe, f"consumer agent-{self.agent}")

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js, stream = self.transport.js, self.transport.stream
        durable = f"agent-{self.agent}"
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=INBOX_SUBJECT.format(agent=self.agent),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.spec.max_attempts + 1,
            max_ack_pending=1000,
        )
        await js.add_consumer(stream, config)  # creates, or updates the settings
        return await js.pull_subscribe_bind(durable, stream=stream)

    def close(self) -> None:
        """Unsubscribe; anything unsettled is redelivered by the server."""
        for future in self._tickers.values():
            future.cancel()
        self._tickers.clear()
        if self._sub is not None:
            try:
                self.transport.loop.call(self._sub.unsubscribe(), 2.0)
            except Exception as exc:
                log.debug("unsubscribe: %s", exc)
            self._sub = None

    def recover(self) -> list[Delivery]:
        """Nothing to recover by hand: the server redelivers a dead worker's messages (and
        `claim` marks the one the last worker left a note about)."""
        return []

    def claim(self, may_claim: Callable[[], bool]) -> Iterator[Delivery]:
        """Fetch one message at a time (fair among replicas), until none comes in time."""
        self._fetch_waited = False
        while may_claim():
            msg = self._fetch_one()
            if msg is None:
                return
            meta = msg.metadata
            delivery = Delivery(
                key=str(meta.sequence.stream),
                redeliveries=max(0, int(meta.num_delivered) - 1),
                handle=msg,
            )
            if self._note is not None and self._note.get("file") == delivery.key:
                # Redelivered after its handler overran: settle it as the note says (a
                # timeout), as the file inbox's recover() does, instead of running it again.
                delivery.interrupted, delivery.reason, self._note = True, self._note, None
            self._tickers[delivery.key] = self.transport.loop.spawn(self._in_progress(msg))
            yield delivery

    def _fetch_one(self) -> Any:
        from nats.errors import TimeoutError as FetchTimeout

        try:
            batch = self.transport.loop.call(
                self._sub.fetch(1, timeout=self.fetch_timeout_s), self.fetch_timeout_s + 5
            )
        except (FetchTimeout, TimeoutError):
            self._fetch_waited = True
            return None
        except Exception as exc:  # disconnected: back off in wait()
            log.debug("fetch: %s", exc)
            return None
        return batch[0] if batch else None

    async def _in_progress(self, msg: Any) -> None:
        # While the handler runs, tell the server the message is not abandoned.
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            try:
                await msg.in_progress()
            except Exception as exc:
                log.debug("in-progress ack: %s", exc)

    def _settled(self, delivery: Delivery) -> Any:
        ticker = self._tickers.pop(delivery.key, None)
        if ticker is not None:
            ticker.cancel()
        # The message's events (claimed, the reply's sent, ...) are stored before it settles.
        self.transport.confirm_events()
        return delivery.handle

    def wait(self, timeout_s: float) -> None:
        """The fetch already waited, unless claiming was refused (halted) or failed."""
        if not self._fetch_waited:
            self._wake.wait(timeout_s)
            self._wake.clear()

    def wake(self) -> None:
        """End a wait now."""
        self._wake.set()

    def read(self, delivery: Delivery) -> bytes:
        """The message's bytes (size-limited like a file)."""
        data = bytes(delivery.handle.data)
        if len(data) > self.transport.max_message_bytes + REWRITE_HEADROOM_BYTES:
            raise BadMessageError(
                f"{len(data)} bytes, over the limit of {self.transport.max_message_bytes}"
            )
        return data

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge, and wait for the server to confirm it."""
        msg = self._settled(delivery)
        self.transport.call(lambda: msg.ack_sync(timeout=CALL_TIMEOUT_S), f"ack {delivery.key}")

    def release(self, delivery: Delivery, wait_s: float) -> None:
        """Give it back for later (a nak; the server counts it as a delivery)."""
        msg = self._settled(delivery)
        self.transport.call(lambda: msg.nak(delay=wait_s or None), f"nak {delivery.key}")

    def retry(self, delivery: Delivery, message: AgentMessage, delay_s: float) -> None:
        """Nak with the retry delay: the server redelivers it (and counts the attempt)."""
        self.release(delivery, delay_s)

    def bury(
        self, delivery: Delivery, error: dict[str, Any], message: AgentMessage | None
    ) -> bytes:
        """Publish to `agents.<name>.dead` (once per stream message), then terminate it."""
        msg = self._settled(delivery)
        data = message.to_json_bytes() if message is not None else bytes(msg.data)
        headers = {
            "Nats-Msg-Id": f"dead.{delivery.key}",
            "Agentctl-Error": json.dumps(error, default=str)[:4000],
            "Agentctl-Seq": delivery.key,
        }
        subject = DEAD_SUBJECT.format(agent=self.agent)
        transport = self.transport
        transport.call(
            lambda: transport.js.publish(subject, data, headers=headers), f"bury {delivery.key}"
        )
        transport.call(msg.term, f"term {delivery.key}")
        return data

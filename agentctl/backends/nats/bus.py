"""MessageBusRouter: the seed's NATS router, on JetStream so that nothing is lost.

The seed publishes to `agents.<name>.inbox` with core NATS, where a message sent while nobody
listens is gone. Here the subjects belong to a JetStream stream that keeps every message (the
audit trail), each agent reads through a durable pull consumer with explicit acks, a message is
redelivered until `max_deliver` attempts are spent and then published to `agents.<name>.dead`,
and a message id sent twice is stored once (JetStream's `Nats-Msg-Id` de-duplication).

    router = MessageBusRouter()
    await router.connect("nats://localhost:4222")
    await router.send("reviewer", AgentMessage(from_agent="user", to_agent="reviewer", ...))
    await router.subscribe("reviewer", handler)   # handler(msg): msg.data is the JSON

`nats-py` is the `nats` extra; without it, connect() says which extra to install. It shares
the stream and subjects of the NATS transport (agentctl/backends/nats/, docs/NATS.md), so a seed
program and `agentctl run` agents can talk to each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agentctl.backends.nats.client import (
    CONNECT_TIMEOUT_S,
    DEAD_SUBJECT,
    INBOX_SUBJECT,
    MISSING_EXTRA,
    STREAM,
    BusError,
    ensure_stream,
    open_connection,
)
from agentctl.model.errors import NonRetryableError
from agentctl.model.names import validate_agent_name

__all__ = ["CONNECT_TIMEOUT_S", "MISSING_EXTRA", "BusError", "MessageBusRouter"]

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]


class MessageBusRouter:
    """Send to and consume agents' inboxes on a NATS JetStream server (the seed's API)."""

    def __init__(
        self,
        *,
        stream: str = STREAM,
        max_deliver: int = 3,
        ack_wait_s: float = 30.0,
        fetch_batch: int = 10,
    ) -> None:
        self.stream = stream
        self.max_deliver = max_deliver
        self.ack_wait_s = ack_wait_s
        self.fetch_batch = fetch_batch
        self.nc: Any = None
        self.js: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, url: str = "nats://localhost:4222") -> None:
        """Connect, and create the stream if it does not exist yet (the same stream, subjects
        and settings as `transport: {kind: nats}` in a roster: the two share their agents)."""
        self.nc = await open_connection([url], name="agentctl-bus")
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.stream, replicas=1)

    async def send(self, to_agent: str, message: Any) -> int:
        """Publish `message` (an AgentMessage or a JSON-able dict) to the agent's inbox; the
        stream sequence it was stored under. The same message id sent twice is stored once."""
        subject = INBOX_SUBJECT.format(agent=validate_agent_name(to_agent))
        payload, message_id = _payload(message)
        headers = {"Nats-Msg-Id": message_id} if message_id else None
        ack = await self._js().publish(subject, payload, headers=headers)
        return int(ack.seq)

    async def subscribe(self, agent_name: str, handler: Handler) -> asyncio.Task[None]:
        """Consume the agent's inbox: `handler(msg)` for each message, acked when it returns.

        A handler that raises gets the message again (up to `max_deliver` deliveries, then it
        goes to `agents.<name>.dead`); a NonRetryableError sends it there at once. Several
        subscribers of one agent share its durable consumer: each message goes to one of them.
        """
        agent = validate_agent_name(agent_name)
        from nats.js.api import AckPolicy, ConsumerConfig

        subscription = await self._js().pull_subscribe(
            INBOX_SUBJECT.format(agent=agent),
            durable=f"agent-{agent}",
            stream=self.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                max_deliver=self.max_deliver,
                ack_wait=self.ack_wait_s,
            ),
        )
        task = asyncio.get_running_loop().create_task(self._consume(agent, subscription, handler))
        self._tasks.append(task)
        return task

    async def _consume(self, agent: str, subscription: Any, handler: Handler) -> None:
        from nats.errors import TimeoutError as FetchTimeout

        while True:
            try:
                batch = await subscription.fetch(self.fetch_batch, timeout=1.0)
            except FetchTimeout:
                continue
            for msg in batch:
                await self._handle(agent, msg, handler)

    async def _handle(self, agent: str, msg: Any, handler: Handler) -> None:
        try:
            await handler(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            deliveries = int(getattr(msg.metadata, "num_delivered", 1) or 1)
            final = isinstance(exc, NonRetryableError) or deliveries >= self.max_deliver
            log.warning("%s: delivery %d failed: %s", agent, deliveries, exc)
            if final:
                await self._bury(agent, msg, f"{type(exc).__name__}: {exc}", deliveries)
                await msg.term()
            else:
                await msg.nak()
            return
        await msg.ack()

    async def _bury(self, agent: str, msg: Any, error: str, deliveries: int) -> None:
        headers = {"Agentctl-Error": error[:500], "Agentctl-Deliveries": str(deliveries)}
        message_id = (msg.headers or {}).get("Nats-Msg-Id")
        if message_id:
            headers["Nats-Msg-Id"] = f"{message_id}.dead"
        await self._js().publish(DEAD_SUBJECT.format(agent=agent), msg.data, headers=headers)

    async def dead_letters(self, agent_name: str) -> list[dict[str, Any]]:
        """The messages given up on for `agent_name`, with their errors (oldest first)."""
        from nats.errors import TimeoutError as NothingMoreError

        subject = DEAD_SUBJECT.format(agent=validate_agent_name(agent_name))
        subscription = await self._js().subscribe(subject, ordered_consumer=True)
        letters = []
        try:
            while True:
                try:
                    msg = await subscription.next_msg(timeout=0.5)
                except NothingMoreError:  # nothing more stored; any other error is a real one
                    break
                letters.append(
                    {
                        "data": json.loads(msg.data),
                        "error": (msg.headers or {}).get("Agentctl-Error"),
                        "deliveries": int((msg.headers or {}).get("Agentctl-Deliveries", 0)),
                    }
                )
        finally:
            await subscription.unsubscribe()
        return letters

    async def close(self) -> None:
        """Stop the consumers and close the connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # cancelled: nothing to report
        self._tasks.clear()
        if self.nc is not None:
            # close, not drain: every message is acked explicitly, so nothing in flight is
            # lost, and drain would wait out the pull requests of the cancelled consumers.
            await self.nc.close()
            self.nc = None

    def _js(self) -> Any:
        if self.js is None:
            raise BusError("not connected: call connect(url) first")
        return self.js


def _payload(message: Any) -> tuple[bytes, str | None]:
    if hasattr(message, "to_json_bytes") and hasattr(message, "id"):
        return message.to_json_bytes(), str(message.id)
    try:
        data = json.dumps(message, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise BusError(f"message is not JSON: {exc}") from None
    message_id = message.get("id") if isinstance(message, dict) else None
    return data, str(message_id) if message_id else None

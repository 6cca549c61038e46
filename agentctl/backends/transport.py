"""The transport: how messages move between agents, and where their history is kept.

Two implement it: the file workspace (`Workspace` with `FileInbox`, the default) and NATS
JetStream (`agentctl.backends.nats`, `transport: {kind: nats}` in the roster). The worker, the
conductor and the commands are written against these protocols only, so an agent, a pipeline
and `send`/`status`/`tail`/`replay` behave the same on both.

A transport delivers messages and records events; an `Inbox` is one agent's consuming end:
claim the next message, then settle it exactly once (ack, retry, release or bury).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentctl.model.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.agentspec import AgentSpec
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.status import AgentStatus


@dataclass
class Delivery:
    """One claimed message, until it is settled."""

    key: str  # the file name, or the stream sequence: how logs and the journal name it
    interrupted: bool = False  # left in hand by a worker that died (file transport)
    reason: dict[str, Any] | None = None  # why it was interrupted, if the worker said so
    redeliveries: int = 0  # attempts the transport counted but the message does not carry
    handle: Any = None  # the transport's own reference (a path, a NATS message)


class EventLog(Protocol):
    """Where events are appended (the file journal, or the JetStream stream)."""

    def append(
        self,
        event: str,
        *,
        agent: str | None,
        message_id: str | None = None,
        thread_id: str | None = None,
        **fields: Any,
    ) -> object: ...


class Inbox(Protocol):
    """One agent's consuming end. Every claimed delivery is settled exactly once."""

    def open(self) -> None:
        """Prepare to consume (lock, clean up, start watching)."""

    def close(self) -> None:
        """Stop consuming; unsettled deliveries come back to the transport."""

    def recover(self) -> list[Delivery]:
        """Deliveries a dead worker left in hand, to be failed as interrupted."""

    def claim(self, may_claim: Callable[[], bool]) -> Iterator[Delivery]:
        """Claim waiting messages one at a time, in order; ask `may_claim` before each."""

    def wait(self, timeout_s: float) -> None:
        """Block until a message may be waiting, or `timeout_s` at most."""

    def wake(self) -> None:
        """End a `wait` early (on stop)."""

    def read(self, delivery: Delivery) -> bytes:
        """The bytes of a claimed message (BadMessageError or OSError if unreadable)."""

    def ack(self, delivery: Delivery) -> None:
        """Handled: into done/ (or acked on the stream)."""

    def release(self, delivery: Delivery, wait_s: float) -> None:
        """Put it back without counting an attempt; not to be claimed for `wait_s`."""

    def retry(self, delivery: Delivery, message: AgentMessage, delay_s: float) -> bytes | None:
        """Put a failed attempt back for another, after `delay_s`; the bytes rewritten."""

    def bury(
        self, delivery: Delivery, error: dict[str, Any], message: AgentMessage | None
    ) -> bytes | None:
        """Give up: into dead/ with `error` beside it; the bytes written when rewritten."""


class Transport(Protocol):
    """Delivery, events, status and the halted state, for one workspace or cluster."""

    kind: str  # "file" or "nats"
    fsync: bool

    @property
    def local(self) -> Workspace:
        """This machine's workspace directory: logs, locks, pipeline runs, status files."""

    @property
    def journal(self) -> EventLog:
        """Where events go."""

    def deliver(
        self, message: AgentMessage, *, dedupe: bool = False, by: Actor | None = None
    ) -> Path | str | None:
        """Send `message`; where it went (None when `dedupe` found it already sent). `by` is
        journaled with the `sent` event when a person or a program asked for the send."""

    def record(self, event: str, message: AgentMessage | None, agent: str, **fields: Any) -> None:
        """Journal `event` by `agent` about `message`."""

    def inbox(
        self, spec: AgentSpec, *, poll_interval_s: float, clock: Clock = SYSTEM_CLOCK
    ) -> Inbox:
        """The consuming end of agent `spec.name`."""

    def publish_status(self, status: AgentStatus) -> None:
        """Make a worker's status visible to `agentctl status` (beyond its local file)."""

    def watch_connection(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(connected)` when the connection to the transport is lost or back."""

    def is_halted(self) -> bool:
        """Whether agents must not claim new work (the HALT verdict)."""

    def halt_state(self) -> dict[str, Any] | None:
        """Why and since when work is halted, or None."""

    def write_halt(self, record: dict[str, Any]) -> None:
        """Enter the halted state with `record`."""

    def clear_halt(self) -> None:
        """Leave the halted state."""

    def claim_conductor(self) -> None:
        """Make sure this is the only conductor of pipeline runs (AgentctlError if not)."""

    def has_reply(self, agent: str, reply_id: str, priority: str) -> bool:
        """Whether `reply_id` was already delivered to `agent` (runs answered before a crash)."""

    def release_in_hand(self, agent: str) -> list[str]:
        """After a worker was killed on shutdown: return what it held, uncounted."""

    def close(self) -> None:
        """Release connections."""

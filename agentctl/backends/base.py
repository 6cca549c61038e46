"""Backend: everything a command, the worker, the conductor or a future surface (an MCP
server, a web dashboard) needs from a workspace, on files or on NATS JetStream alike.

`agentctl.backends.open_backend` is the one place that chooses an implementation: the file
workspace (`backends/file/`) or NATS JetStream (`backends/nats/`). Nothing else knows which one
it has. The backends implement primitives (deliver, claim, list, read, restore); what is the
same on both (journaling a requeue, answering an escalation, building the overview) is written
once above them, in flow/ and audit/, against this protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from agentctl.backends.transport import Transport

if TYPE_CHECKING:
    from agentctl.backends.records import AgentRow, DeadLetter, Verification
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.mailbox import Depth

Record = dict[str, Any]  # one journal event, as the file journal writes it


class History(Protocol):
    """Where a thread's events and messages are read from (files, or the NATS stream).

    A `trace` is an `agentctl.audit.history.MessageTrace`: its `id`, `kind`, `file`,
    `from_agent` and `to_agent` are read.
    """

    where: str  # named in "not found" errors

    def find_events(self, ident: str) -> tuple[list[Record], int]:
        """Records whose thread or message id is `ident`, and how many damaged ones were seen."""

    def envelope(self, trace: Any) -> dict[str, Any] | None:
        """The JSON of a traced message, or None if it is gone."""

    def file_state(self, trace: Any) -> str | None:
        """Where the message's file is (waiting, in hand, done, dead), when that is known."""

    def unjournaled_replies(self, trace: Any) -> list[dict[str, Any]]:
        """Replies to a traced task that exist but were never journaled (a foreign agent's)."""


class Backend(Transport, Protocol):
    """A workspace's messages, journal, dead letters, escalations and state (see module)."""

    # -- the journal ------------------------------------------------------------------------

    def read_events(
        self,
        last_n: int,
        keep: Callable[[Record], bool],
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> list[Record]:
        """The last `last_n` events that `keep` accepts, oldest first; a damaged line is
        skipped and described to `on_damaged`."""

    def follow_events(
        self,
        keep: Callable[[Record], bool],
        stop: threading.Event,
        *,
        on_damaged: Callable[[str], None] | None = None,
    ) -> Iterator[Record]:
        """Events appended from this call on that `keep` accepts, until `stop` is set (the
        starting point is taken by the call, not by the first iteration)."""

    def history(self) -> History:
        """Where the history of a thread is read from."""

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self, agents: list[str] | None = None) -> list[DeadLetter]:
        """The dead letters of `agents` (every agent's with None), by agent, oldest first."""

    def read_dead(self, letter: DeadLetter) -> AgentMessage:
        """The message of a dead letter (DeadLetterError if gone or not a valid message)."""

    def restore_dead(self, letter: DeadLetter, message: AgentMessage) -> None:
        """Put `message` (the letter's, revived) back in its inbox; the letter is gone."""

    # -- escalations ------------------------------------------------------------------------

    def escalation_requests(self) -> list[tuple[str, AgentMessage]]:
        """Messages waiting for a person in the `human` inbox, unanswered, with where each is."""

    def settle_escalation(self, where: str, reply: AgentMessage) -> None:
        """Deliver a person's `reply` to the escalation at `where`, once (EscalationError if
        someone else is answering it right now)."""

    # -- state ------------------------------------------------------------------------------

    def depth(self, agents: list[str]) -> dict[str, Depth]:
        """Per agent: messages waiting, in hand and dead."""

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """The one reply to `request` (WaitTimeoutError after `timeout_s`)."""

    def worker_rows(self, names: list[str], now: datetime) -> list[AgentRow]:
        """One row per worker of each agent in `names` (an `absent` one for an agent that
        never ran), by agent: its recorded status, judged alive as this backend can tell (by
        pid on this machine, by heartbeat across a cluster), and its agent's inbox depth."""

    def describe(self) -> dict[str, Any]:
        """What `status --json` says of the backend: `{"kind": ...}`, with `servers` and
        `reachable` for one reached over the network."""

    # -- the audit trail --------------------------------------------------------------------

    def verify(self) -> Verification:
        """Whether the audit trail is intact: the journal, and the messages it recorded."""

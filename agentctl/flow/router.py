"""WorkspaceRouter: the seed article's file router, on top of the safe mailbox protocol.

The seed's version wrote straight into the inbox (a reader could see half a file), named files
by timestamp and sender (two sends in one microsecond overwrote each other) and deleted what it
read (a crash lost it). This one publishes atomically, never overwrites, and moves what it
reads to done/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import DEAD, DEFAULT_MAX_MESSAGE_BYTES, DONE, PROCESSING, USER_AGENT
from agentctl.model.errors import BadMessageError, ReplyTakenError, WaitTimeoutError
from agentctl.model.ids import reply_id
from agentctl.model.message import AgentMessage, message_file_name, new_message, parse_message
from agentctl.model.vocab import ErrorKind, Event
from agentctl.protocol.journal import content_digest
from agentctl.protocol.status import error_record

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport


class Router(Protocol):
    """What `send` needs of a transport: WorkspaceRouter on files, StreamRouter on NATS."""

    def send(self, message: AgentMessage) -> Path | str:
        """Deliver `message`; where it went."""

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """The one reply to `request` (WaitTimeoutError after `timeout_s`)."""


def router_for(ws: Workspace, nats: NatsTransport | None) -> Router:
    """The router of the roster's transport."""
    if nats is None:
        return WorkspaceRouter.of(ws)
    from agentctl.backends.nats.router import StreamRouter

    return StreamRouter(nats)


class WorkspaceRouter:
    """Send and receive AgentMessages through a workspace directory.

    router = WorkspaceRouter("workspace")
    router.send(AgentMessage(from_agent="user", to_agent="echo", content="hi"))
    for message in router.receive("user"):
        print(message.content)
    """

    def __init__(
        self,
        base_path: str | Path = "workspace",
        *,
        fsync: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.base = Path(base_path)
        self.workspace = Workspace(self.base, fsync=fsync, max_message_bytes=max_message_bytes)

    @classmethod
    def of(cls, workspace: Workspace) -> WorkspaceRouter:
        """A router over an already configured workspace (the CLI's)."""
        router = cls.__new__(cls)
        router.base = workspace.root
        router.workspace = workspace
        return router

    def send(self, message: AgentMessage) -> Path:
        """Deliver `message` to its recipient's inbox (and the sender's outbox); its path."""
        path = self.workspace.deliver(message)
        assert path is not None  # deliver without dedupe raises instead of returning None
        return path

    def receive(self, agent_name: str) -> list[AgentMessage]:
        """Claim and return every waiting message of `agent_name`, in processing order.

        Each is moved to done/ (not deleted). A file that is not a valid message goes to dead/
        with its reason. Messages another process is still writing are not visible yet (they
        are in tmp/), so none is lost.
        """
        inbox = self.workspace.ensure_agent(agent_name)
        messages = []
        for name in inbox.list_new():
            path = inbox.claim(name)
            if path is None:
                continue  # another receiver took it
            try:
                messages.append(self._take(agent_name, name, path))
            except BadMessageError:
                continue  # buried in dead/ with its reason
        return messages

    def _take(self, agent_name: str, name: str, path: Path) -> AgentMessage:
        # Claimed by us: read, ack into done/, and journal what was received. A bad file goes
        # to dead/ with its reason (never left claimed), and BadMessageError names it.
        inbox = self.workspace.mailbox(agent_name)
        try:
            data = inbox.read(path)
            message = parse_message(data)
        except BadMessageError as exc:
            error = f"{name}: {exc}"
            inbox.bury(name, error_record(None, error, ErrorKind.BAD_MESSAGE, 0))
            self.workspace.record(
                Event.DEAD,
                None,
                agent_name,
                file=name,
                error=error,
                error_kind=ErrorKind.BAD_MESSAGE,
            )
            raise BadMessageError(f"{inbox.dead / name}: {exc}") from None
        inbox.ack(name)
        self.workspace.record(
            Event.RECEIVED, message, agent_name, file=name, sha256=content_digest(data)
        )
        return message

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """Wait for the one reply to `request` in its sender's inbox; claim, ack and return it."""
        from agentctl.protocol.watcher import DirectoryWatcher  # only waiting pays for watchdog

        inbox = self.workspace.ensure_agent(request.from_agent)
        name = message_file_name(request.priority, reply_id(request.id, request.requeued))
        deadline = time.monotonic() + timeout_s
        with DirectoryWatcher(inbox.new) as watcher:
            while True:
                watcher.clear()
                path = inbox.claim(name)
                if path is not None:
                    return self._take(request.from_agent, name, path)
                where = inbox.locate(name)
                if where in (PROCESSING, DONE):  # another waiter claimed it: it never comes back
                    raise ReplyTakenError(
                        f"the reply to {request.id} arrived and was taken by another receiver: "
                        f"{inbox.done / name}"
                    )
                if where == DEAD:
                    raise ReplyTakenError(
                        f"the reply to {request.id} arrived, but another receiver found it "
                        f"unreadable: {inbox.dead / name}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeoutError(
                        f"no reply to {request.id} within {timeout_s:g} s "
                        f"(the request is still queued for {request.to_agent})"
                    )
                watcher.wait(min(remaining, 0.5))


def ensure_deliverable(message: AgentMessage, max_message_bytes: int) -> None:
    """BadMessageError if `message` is over `max_message_bytes`, as a delivery would be.

    For what must be journaled only when the delivery goes (a routing decision).
    """
    size = len(message.to_json_bytes())
    if size > max_message_bytes:
        raise BadMessageError(
            f"message {message.id} to {message.to_agent} is {size} bytes, over the limit of "
            f"{max_message_bytes} (max_message_bytes)"
        )


def user_message(to_agent: str, content: object, **fields: object) -> AgentMessage:
    """A message from the command-line pseudo-agent `user`; BadMessageError if a field is bad."""
    return new_message(from_agent=USER_AGENT, to_agent=to_agent, content=content, **fields)

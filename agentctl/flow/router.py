"""WorkspaceRouter: the seed article's file router, on top of the safe mailbox protocol.

The seed's version wrote straight into the inbox (a reader could see half a file), named files
by timestamp and sender (two sends in one microsecond overwrote each other) and deleted what it
read (a crash lost it). This one publishes atomically, never overwrites, and moves what it
reads to done/.
"""

from __future__ import annotations

from pathlib import Path

from agentctl.backends.file.replies import take
from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import DEFAULT_MAX_MESSAGE_BYTES, USER_AGENT
from agentctl.model.errors import BadMessageError
from agentctl.model.message import AgentMessage, new_message
from agentctl.model.tracecontext import root_context


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
        return take(self.workspace, agent_name, name, path)

    def wait_for_reply(self, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
        """Wait for the one reply to `request` in its sender's inbox; claim, ack and return it."""
        return self.workspace.wait_for_reply(request, timeout_s=timeout_s)


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
    """A message from the command-line pseudo-agent `user`, the root of a trace (see
    model/tracecontext.py); BadMessageError if a field is bad."""
    return root_context(
        new_message(from_agent=USER_AGENT, to_agent=to_agent, content=content, **fields)
    )

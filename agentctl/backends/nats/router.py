"""StreamRouter: `send` and `send --wait` on NATS (WorkspaceRouter's counterpart)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentctl.backends.nats.client import INBOX_SUBJECT
from agentctl.backends.nats.reader import StreamReader

if TYPE_CHECKING:
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.model.message import AgentMessage


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
        from agentctl.model.errors import WaitTimeoutError
        from agentctl.model.ids import reply_id
        from agentctl.model.message import parse_message

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

"""Taking messages out of an inbox by hand, outside a worker: `receive` and waiting for the
reply to a request (`send --wait`, `replay --resend --wait`) on the file workspace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from agentctl.model.constants import DEAD, DONE, PROCESSING
from agentctl.model.errors import BadMessageError, ReplyTakenError, WaitTimeoutError
from agentctl.model.ids import reply_id
from agentctl.model.message import AgentMessage, message_file_name, parse_message
from agentctl.model.vocab import ErrorKind, Event
from agentctl.protocol.journal import content_digest
from agentctl.protocol.status import error_record

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace


def take(ws: Workspace, agent_name: str, name: str, path: Path) -> AgentMessage:
    """Read a message claimed by hand, ack it into done/ and journal that it was received.

    A bad file goes to dead/ with its reason (never left claimed), and BadMessageError names it.
    """
    inbox = ws.mailbox(agent_name)
    try:
        data = inbox.read(path)
        message = parse_message(data)
    except BadMessageError as exc:
        error = f"{name}: {exc}"
        inbox.bury(name, error_record(None, error, "bad_message", 0))
        ws.record(
            Event.DEAD, None, agent_name, file=name, error=error, error_kind=ErrorKind.BAD_MESSAGE
        )
        raise BadMessageError(f"{inbox.dead / name}: {exc}") from None
    inbox.ack(name)
    ws.record(Event.RECEIVED, message, agent_name, file=name, sha256=content_digest(data))
    return message


def wait_for_reply(ws: Workspace, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
    """Wait for the one reply to `request` in its sender's inbox; claim, ack and return it."""
    from agentctl.protocol.watcher import DirectoryWatcher  # only waiting pays for watchdog

    inbox = ws.ensure_agent(request.from_agent)
    name = message_file_name(request.priority, reply_id(request.id, request.requeued))
    deadline = time.monotonic() + timeout_s
    with DirectoryWatcher(inbox.new) as watcher:
        while True:
            watcher.clear()
            path = inbox.claim(name)
            if path is not None:
                return take(ws, request.from_agent, name, path)
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
                raise WaitTimeoutError(f"no reply to {request.id} within {timeout_s:g} s")
            watcher.wait(min(remaining, 0.5))

"""`replay --resend`: deliver a recorded task again, as a new message, on any backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import NOT_BEFORE_HEADER, REQUEUED_HEADER
from agentctl.model.errors import AgentctlError
from agentctl.model.message import MessageKind

if TYPE_CHECKING:
    from agentctl.audit.history import MessageTrace, Thread
    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage


def resend(
    backend: Backend, roster: Roster, ident: str, *, to: str | None = None, by: Actor | None = None
) -> tuple[MessageTrace, AgentMessage, Thread]:
    """Deliver again the task `ident` (or the first task of thread `ident`), to `to` or to its
    recipient: the recorded message, the new one, and the thread it was found in."""
    from agentctl.audit.history import load_thread
    from agentctl.flow.router import user_message

    thread = load_thread(backend.history(), ident)
    original = thread.messages.get(ident) or next(
        (m for m in thread.roots() if m.kind == MessageKind.TASK), None
    )
    if original is None:
        raise AgentctlError(f"{ident}: no task in this thread to resend")
    envelope = backend.history().envelope(original)
    if envelope is None:
        raise AgentctlError(f"{original.id}: its message file is gone; cannot resend it")
    target = to or original.to_agent or ""
    roster.agent(target)  # a clear error for an unknown agent
    headers = dict(envelope.get("headers") or {})
    # The copy starts a life of its own: no retry delay or requeue count carried over.
    for internal in (REQUEUED_HEADER, NOT_BEFORE_HEADER):
        headers.pop(internal, None)
    headers["resent_from"] = original.id
    message = user_message(
        target,
        envelope.get("content"),
        keywords=envelope.get("keywords") or [],
        priority=envelope.get("priority") or "normal",
        headers=headers,
    )
    backend.deliver(message, by=by)
    return original, message, thread


@dataclass(frozen=True)
class Resent:
    """A task sent again: the recorded one, the new one, and (when waited for) both results."""

    original_id: str
    id: str
    to: str
    waited: bool
    recorded: Any = None  # the recorded reply's content, if the thread has one
    result: Any = None  # the new reply's content

    def to_json(self) -> dict[str, Any]:
        """The stable form of `replay --resend --json`."""
        data: dict[str, Any] = {"original": self.original_id, "id": self.id, "to": self.to}
        if self.waited:
            data |= {"recorded": self.recorded, "result": self.result}
        return data


def resend_and_compare(
    backend: Backend,
    roster: Roster,
    ident: str,
    *,
    to: str | None,
    wait_s: float | None,
    by: Actor | None = None,
) -> Resent:
    """Resend the task `ident`; with `wait_s`, wait that long for the new reply and put it beside
    the recorded one."""
    from agentctl.flow.diagnose import wait_for_reply
    from agentctl.model.ids import reply_id

    original, message, thread = resend(backend, roster, ident, to=to, by=by)
    resent = Resent(original.id, message.id, message.to_agent, waited=wait_s is not None)
    if wait_s is None:
        return resent
    reply = wait_for_reply(backend, message, timeout_s=wait_s)  # says what holds it
    recorded = thread.messages.get(reply_id(original.id))
    return Resent(
        original.id,
        message.id,
        message.to_agent,
        waited=True,
        recorded=recorded.content if recorded else None,
        result=reply.content,
    )

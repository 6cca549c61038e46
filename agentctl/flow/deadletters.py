"""Dead letters: list what was given up on, and bring it back (`agentctl dead`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import MESSAGE_SUFFIX, NOT_BEFORE_HEADER, REQUEUED_HEADER
from agentctl.model.errors import AgentctlError, BadMessageError
from agentctl.model.message import AgentMessage, parse_message
from agentctl.model.vocab import Event
from agentctl.protocol.journal import content_digest


class DeadLetterError(AgentctlError):
    """A dead letter that cannot be found or requeued."""


@dataclass(frozen=True)
class DeadLetter:
    """One message in an agent's dead/, with the reason beside it."""

    agent: str
    file: str
    message_id: str | None
    attempts: int | None
    error_kind: str | None
    error: str | None
    dead_at: str | None

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form of `dead list --json`."""
        return {
            "agent": self.agent,
            "file": self.file,
            "message_id": self.message_id,
            "attempts": self.attempts,
            "error_kind": self.error_kind,
            "error": self.error,
            "dead_at": self.dead_at,
        }


def list_dead(ws: Workspace, agents: list[str]) -> list[DeadLetter]:
    """Every dead letter of `agents`, by agent, oldest first."""
    letters = []
    for agent in agents:
        if not ws.has_agent(agent):
            continue
        mailbox = ws.mailbox(agent)
        for name in mailbox.dead_names():
            letters.append(_letter(ws, agent, name))
    return letters


def _letter(ws: Workspace, agent: str, name: str) -> DeadLetter:
    stem = name[: -len(MESSAGE_SUFFIX)] if name.endswith(MESSAGE_SUFFIX) else name
    error = ws.mailbox(agent).read_error(name) or {}
    message_id = error.get("message_id")
    if message_id is None and "-" in stem:
        message_id = stem.split("-", 1)[1]  # `<rank>-<id>`
    return DeadLetter(
        agent=agent,
        file=name,
        message_id=message_id,
        attempts=error.get("attempts"),
        error_kind=error.get("error_kind"),
        error=error.get("error"),
        dead_at=error.get("dead_at"),
    )


def find_dead(ws: Workspace, agents: list[str], ident: str) -> DeadLetter:
    """The dead letter whose message id or file name is `ident`."""
    return pick_dead(list_dead(ws, agents), ident)


def pick_dead(letters: list[DeadLetter], ident: str) -> DeadLetter:
    """The one letter whose message id or file name is `ident` (DeadLetterError otherwise)."""
    matches = [letter for letter in letters if ident in (letter.message_id, letter.file)]
    if not matches:
        raise DeadLetterError(f"{ident}: no dead letter with this id (see `agentctl dead list`)")
    if len(matches) > 1:
        where = ", ".join(m.agent for m in matches)
        raise DeadLetterError(f"{ident}: dead in several inboxes ({where}); pass --agent")
    return matches[0]


def requeue(ws: Workspace, letter: DeadLetter) -> str:
    """Put a dead letter back in its inbox's new/ with its attempts reset; its message id.

    A file that is not a valid message cannot be requeued: it would only die again.
    """
    mailbox = ws.mailbox(letter.agent)
    try:
        message = parse_message(mailbox.read(mailbox.dead / letter.file))
    except FileNotFoundError:
        raise DeadLetterError(f"{letter.agent}/{letter.file}: no longer in dead/") from None
    except BadMessageError as exc:
        raise DeadLetterError(
            f"{letter.agent}/{letter.file}: not a valid message, cannot requeue ({exc}); "
            "fix it or remove it by hand"
        ) from None
    revived = revive(message)
    # Journaled before it becomes claimable, as a send is, so `requeued` precedes `claimed`.
    ws.record(
        Event.REQUEUED,
        revived,
        letter.agent,
        file=letter.file,
        sha256=content_digest(revived.to_json_bytes()),
        previous_error=letter.error,
        previous_attempts=letter.attempts,
    )
    mailbox.revive(letter.file, revived)
    return revived.id


def revive(message: AgentMessage) -> AgentMessage:
    """A dead message as it is requeued: attempts reset, requeue count up, no retry delay."""
    headers = {k: v for k, v in message.headers.items() if k != NOT_BEFORE_HEADER}
    headers[REQUEUED_HEADER] = str(message.requeued + 1)
    return message.model_copy(update={"attempt": 0, "headers": headers})

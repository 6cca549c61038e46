"""Dead letters and escalations on the file workspace: dead/ beside each inbox, and the
`human` inbox's new/."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentctl.backends.records import DeadLetter, DeadLetterError, EscalationError
from agentctl.model.constants import HUMAN_AGENT, MESSAGE_SUFFIX
from agentctl.model.errors import BadMessageError

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.model.message import AgentMessage


def list_dead(ws: Workspace, agents: list[str] | None = None) -> list[DeadLetter]:
    """Every dead letter of `agents` (every agent's with None), by agent, oldest first."""
    letters = []
    for agent in ws.agent_names() if agents is None else agents:
        if not ws.has_agent(agent):
            continue
        mailbox = ws.mailbox(agent)
        for name in mailbox.dead_names():
            stem = name[: -len(MESSAGE_SUFFIX)] if name.endswith(MESSAGE_SUFFIX) else name
            # `<rank>-<id>`: the id, when the error record does not say it.
            named_id = stem.split("-", 1)[1] if "-" in stem else None
            letters.append(DeadLetter.of(agent, name, mailbox.read_error(name) or {}, named_id))
    return letters


def read_dead(ws: Workspace, letter: DeadLetter) -> AgentMessage:
    """The message in dead/ (DeadLetterError if gone or not a valid message)."""
    from agentctl.model.message import parse_message

    mailbox = ws.mailbox(letter.agent)
    try:
        return parse_message(mailbox.read(mailbox.dead / letter.file))
    except FileNotFoundError:
        raise DeadLetterError(f"{letter.agent}/{letter.file}: no longer in dead/") from None
    except BadMessageError as exc:
        raise DeadLetterError(
            f"{letter.agent}/{letter.file}: not a valid message, cannot requeue ({exc}); "
            "fix it or remove it by hand"
        ) from None


def escalation_requests(ws: Workspace) -> list[tuple[str, AgentMessage]]:
    """The messages in the human inbox's new/, with their file names."""
    if not ws.has_agent(HUMAN_AGENT):
        return []
    mailbox = ws.mailbox(HUMAN_AGENT)
    names = mailbox.list_new()
    if not names:
        return []  # the usual case: `status` then never pays for pydantic
    from agentctl.model.message import parse_message

    found = []
    for name in names:
        try:
            found.append((name, parse_message(mailbox.read(mailbox.new / name))))
        except (BadMessageError, OSError):
            continue  # claimed meanwhile, or not an escalation: not ours to judge here
    return found


def settle_escalation(ws: Workspace, where: str, reply: AgentMessage) -> None:
    """Claim the escalation's file (one person answers it), deliver `reply`, then ack it."""
    mailbox = ws.mailbox(HUMAN_AGENT)
    if mailbox.claim(where) is None:
        raise EscalationError(f"{where}: someone else is resolving it right now")
    try:
        ws.deliver(reply, dedupe=True)
    except BaseException:
        mailbox.release(where)
        raise
    mailbox.ack(where)

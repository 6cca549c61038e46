"""Escalations: messages in the `human` inbox that wait for a person's verdict.

A pipeline stage whose verdict is ESCALATE parks its run and delivers an escalation (a task
from `pipeline` to `human`, content: run, pipeline, stage, agents, reason, evidence). A person
lists them with `agentctl escalations` and answers with `agentctl resolve ID --verdict ...`:
the answer is the escalation's reply, which the conductor applies to the parked run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import DEFAULT_ESCALATION_OVERDUE_S, HUMAN_AGENT
from agentctl.model.errors import AgentctlError, BadMessageError
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.transport import Transport
    from agentctl.model.message import AgentMessage


class EscalationError(AgentctlError):
    """An escalation that cannot be found or answered."""


@dataclass(frozen=True)
class Escalation:
    """One open escalation."""

    id: str
    file: str
    run: str | None
    pipeline: str | None
    stage: int | None
    agents: list[str]
    reason: str | None
    created_at: str
    age_s: float
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form of `escalations --json`."""
        return {
            "id": self.id,
            "run": self.run,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "agents": self.agents,
            "reason": self.reason,
            "created_at": self.created_at,
            "age_s": round(self.age_s, 1),
            "overdue": self.overdue,
        }


def open_escalations(
    ws: Workspace, *, overdue_after_s: float = DEFAULT_ESCALATION_OVERDUE_S
) -> list[Escalation]:
    """Escalations waiting in the human inbox, oldest first."""
    if not ws.has_agent(HUMAN_AGENT):
        return []
    mailbox = ws.mailbox(HUMAN_AGENT)
    names = mailbox.list_new()
    if not names:
        return []  # the usual case: `status` then never pays for pydantic
    from agentctl.model.message import parse_message

    now = datetime.now(UTC)
    found = []
    for name in names:
        try:
            message = parse_message(mailbox.read(mailbox.new / name))
        except (BadMessageError, OSError):
            continue  # claimed meanwhile, or not an escalation: not ours to judge here
        found.append(escalation_of(message, name, now, overdue_after_s))
    return found


def escalation_of(
    message: AgentMessage, where: str, now: datetime, overdue_after_s: float
) -> Escalation:
    """What an escalation message says (on any transport; `where` is its file or sequence)."""
    content: dict[str, Any] = message.content if isinstance(message.content, dict) else {}
    age_s = (now - message.timestamp).total_seconds()
    return Escalation(
        id=message.id,
        file=where,
        run=_str(content.get("run")),
        pipeline=_str(content.get("pipeline")),
        stage=content.get("stage") if isinstance(content.get("stage"), int) else None,
        agents=[str(a) for a in content.get("agents") or [] if isinstance(a, str)],
        reason=_str(content.get("reason")),
        created_at=message.timestamp.isoformat().replace("+00:00", "Z"),
        age_s=age_s,
        overdue=age_s > overdue_after_s,
    )


def pick_escalation(found: list[Escalation], ident: str) -> Escalation:
    """The open escalation whose id (or run id) is `ident`."""
    matches = [e for e in found if ident in (e.id, e.run)]
    if not matches:
        raise EscalationError(
            f"{ident}: no open escalation with this id (see `agentctl escalations`)"
        )
    return matches[0]


def answer(
    transport: Transport,
    request: AgentMessage,
    escalation: Escalation,
    verdict: str,
    note: str | None,
) -> None:
    """Deliver a person's verdict as the escalation's reply, and journal it."""
    reply_content: dict[str, Any] = {"verdict": verdict, "note": note, "by": _who()}
    transport.deliver(request.reply(reply_content), dedupe=True)
    transport.record(
        Event.RESOLVED,
        request,
        HUMAN_AGENT,
        verdict=verdict,
        note=note,
        by=reply_content["by"],
        run=escalation.run,
    )


def resolve_escalation(ws: Workspace, ident: str, verdict: str, note: str | None) -> Escalation:
    """Answer the escalation `ident` (its id, or its run's id) with a person's verdict."""
    escalation = pick_escalation(open_escalations(ws), ident)
    from agentctl.model.message import parse_message

    mailbox = ws.mailbox(HUMAN_AGENT)
    path = mailbox.claim(escalation.file)
    if path is None:
        raise EscalationError(f"{escalation.id}: someone else is resolving it right now")
    try:
        request = parse_message(mailbox.read(path))
    except BadMessageError as exc:
        mailbox.release(escalation.file)
        raise EscalationError(f"{escalation.id}: cannot read it: {exc}") from None
    answer(ws, request, escalation, verdict, note)
    mailbox.ack(escalation.file)
    return escalation


def _who() -> str:
    import getpass  # only answering needs it: `status` imports this module and starts fast

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "human"


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)

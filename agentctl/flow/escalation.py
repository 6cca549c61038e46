"""Escalations: messages in the `human` inbox that wait for a person's verdict.

A pipeline stage whose verdict is ESCALATE parks its run and delivers an escalation (a task
from `pipeline` to `human`, content: run, pipeline, stage, agents, reason, evidence). A person
lists them with `agentctl escalations` and answers with `agentctl resolve ID --verdict ...`:
the answer is the escalation's reply, which the conductor applies to the parked run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentctl.backends.records import Escalation, EscalationError, escalation_of
from agentctl.model.actor import Actor, cli_actor
from agentctl.model.constants import DEFAULT_ESCALATION_OVERDUE_S, HUMAN_AGENT
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.base import Backend


def open_escalations(
    backend: Backend, *, overdue_after_s: float = DEFAULT_ESCALATION_OVERDUE_S
) -> list[Escalation]:
    """Escalations waiting for a person's verdict, oldest first."""
    requests = backend.escalation_requests()
    if not requests:
        return []
    now = datetime.now(UTC)
    return [escalation_of(message, where, now, overdue_after_s) for where, message in requests]


def pick_escalation(found: list[Escalation], ident: str) -> Escalation:
    """The open escalation whose id (or run id) is `ident`."""
    matches = [e for e in found if ident in (e.id, e.run)]
    if not matches:
        raise EscalationError(
            f"{ident}: no open escalation with this id (see `agentctl escalations`)"
        )
    return matches[0]


def resolve_escalation(
    backend: Backend, ident: str, verdict: str, note: str | None, *, by: Actor | None = None
) -> Escalation:
    """Answer the escalation `ident` (its id, or its run's id) with a person's verdict: its
    reply is delivered once, and the answer journaled with who gave it (`by`, the person at
    this terminal when None)."""
    actor = by or cli_actor()
    requests = dict(backend.escalation_requests())
    now = datetime.now(UTC)
    found = [
        escalation_of(m, where, now, backend.local.escalation_overdue_s)
        for where, m in requests.items()
    ]
    escalation = pick_escalation(found, ident)
    request = requests[escalation.file]
    reply_content: dict[str, Any] = {"verdict": verdict, "note": note, "by": actor.label}
    backend.settle_escalation(escalation.file, request.reply(reply_content))
    backend.record(
        Event.RESOLVED,
        request,
        HUMAN_AGENT,
        verdict=verdict,
        note=note,
        run=escalation.run,
        **actor.fields(),
    )
    return escalation

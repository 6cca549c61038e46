"""What a backend hands back, the same on files and on NATS: dead letters and escalations.

Backend-neutral records live here, below flow/ and audit/, so that both backends build them
and the coordination code above reads them without knowing which backend it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.model.errors import AgentctlError

if TYPE_CHECKING:
    from agentctl.model.message import AgentMessage


class DeadLetterError(AgentctlError):
    """A dead letter that cannot be found or requeued."""


class EscalationError(AgentctlError):
    """An escalation that cannot be found or answered."""


@dataclass(frozen=True)
class DeadLetter:
    """One message given up on, with the reason stored beside it."""

    agent: str
    file: str  # the file name in dead/, or `STREAM:SEQ` on NATS
    message_id: str | None
    attempts: int | None
    error_kind: str | None
    error: str | None
    dead_at: str | None

    @classmethod
    def of(cls, agent: str, file: str, error: dict[str, Any], message_id: str | None) -> DeadLetter:
        """The letter of `file`, described by its stored error record."""
        return cls(
            agent=agent,
            file=file,
            message_id=error.get("message_id") or message_id,
            attempts=error.get("attempts"),
            error_kind=error.get("error_kind"),
            error=error.get("error"),
            dead_at=error.get("dead_at"),
        )

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


@dataclass(frozen=True)
class Escalation:
    """One open escalation."""

    id: str
    file: str  # the file name in the human inbox, or `STREAM:SEQ` on NATS
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


def escalation_of(
    message: AgentMessage, where: str, now: datetime, overdue_after_s: float
) -> Escalation:
    """What an escalation message says (on any backend; `where` is its file or sequence)."""
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


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)

"""What a backend hands back, the same on files and on NATS: dead letters, escalations, the
rows of `agentctl status`, what `verify` found, and what a `sent` event records.

Backend-neutral records live here, below flow/ and audit/, so that both backends build them
and the coordination code above reads them without knowing which backend it has.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentctl.model.errors import AgentctlError
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.status import AgentStatus

SUMMARY_CHARS = 80
_SUMMARY_PREFIX_CHARS = 4 * SUMMARY_CHARS
# json.dumps(content, ensure_ascii=False), without building a new encoder for every message.
_SUMMARY_ENCODER = json.JSONEncoder(ensure_ascii=False)

# What each event says about where the message file now is (for replay and verify).
STATE_AFTER = {
    Event.SENT: "waiting",
    Event.RETRIED: "waiting",
    Event.REQUEUED: "waiting",
    Event.CLAIMED: "in hand",
    Event.HANDLED: "done",
    Event.RECEIVED: "done",
    Event.DEAD: Event.DEAD,
}


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


@dataclass(frozen=True)
class AgentRow:
    """One line of `agentctl status`: one worker of an agent."""

    name: str
    state: str  # as the agent last wrote it, or "absent" if it never ran
    pid: int | None
    alive: bool  # checked by pid and start time (files) or heartbeat (NATS), never trusted
    heartbeat_age_s: float | None
    started_at: str | None
    current_message_id: str | None
    new: int
    processing: int
    dead_letters: int
    handled: int
    failed: int
    last_error: str | None
    log_tail: list[str]
    replica: int = 0  # which worker of the agent (`replicas: N`)
    host: str | None = None  # NATS: the machine the worker runs on
    # Why it does not progress while alive: a write the disk refuses (`disk full: ...`).
    write_error: str | None = None
    next_try_at: str | None = None  # fatal: when the running supervisor tries it again

    def to_json(self) -> dict[str, Any]:
        """The documented `status --json` form of an agent."""
        data = asdict(self)
        data["inbox"] = {
            "new": data.pop("new"),
            "processing": data.pop("processing"),
            "dead": data.pop("dead_letters"),
        }
        return data


def row_of(
    status: AgentStatus,
    state: str,
    alive: bool,
    age_s: float | None,
    depth: tuple[int, int, int],
    replica: int,
) -> AgentRow:
    """A row from a worker's status, its judged state and liveness, and its inbox depth
    (new, processing, dead): the same on every backend."""
    from agentctl.protocol.status import AgentState

    return AgentRow(
        name=status.agent,
        state=state,
        pid=status.pid or None,
        alive=alive,
        heartbeat_age_s=round(age_s, 3) if age_s is not None else None,
        started_at=status.started_at or None,
        current_message_id=status.current_message_id,
        new=depth[0],
        processing=depth[1],
        dead_letters=depth[2],
        handled=status.handled,
        failed=status.failed,
        last_error=status.last_error,
        log_tail=list(status.log_tail),
        replica=replica,
        host=status.host or None,
        write_error=status.write_error if alive else None,
        next_try_at=status.next_try_at if state == AgentState.FATAL else None,
    )


@dataclass(frozen=True)
class Verification:
    """What `verify` found, on any backend: problems, warnings, a summary, the JSON form."""

    problems: list[str]
    warnings: list[str]
    summary: str
    doc: dict[str, Any]  # the documented `verify --json` document

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def sent_fields(message: AgentMessage, data: bytes) -> dict[str, Any]:
    """What a `sent` (or `requeued`) event records about a message, on any backend."""
    from agentctl.protocol.journal import content_digest

    return {
        "to": message.to_agent,
        "kind": message.kind.value,
        "priority": message.priority.value,
        "in_reply_to": message.in_reply_to or None,
        "resent_from": message.headers.get("resent_from"),
        "sha256": content_digest(data),
        "summary": summarize(message.content),
    }


def summarize(content: object) -> str:
    """A one-line preview of a message's content for the journal and `tail`."""
    text = content if isinstance(content, str) else _SUMMARY_ENCODER.encode(content)
    if len(text) > _SUMMARY_PREFIX_CHARS:
        # Collapsing whitespace works left to right, so the collapsed form of a prefix is a
        # prefix of the collapsed whole: when it is already longer than the summary, the
        # summary is the same, without splitting a long text entirely.
        head = " ".join(text[:_SUMMARY_PREFIX_CHARS].split())
        if len(head) > SUMMARY_CHARS:
            return head[: SUMMARY_CHARS - 1] + "…"
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"

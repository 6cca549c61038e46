"""Why no reply came: what `send --wait` says when it gives up, from the facts, not a guess.

A request's reply can be held by the workspace (halted), by its agent (fatal, not running, not
run by the running supervisor, busy with it), by a person (a pipeline run's open escalation),
or by nobody any more (the request is already in done/ or dead/ and the reply went elsewhere or
never will come). Written once against the Backend: the halt record, the workers' status,
escalations and dead letters exist on every backend; where the request's file is, and whether a
supervisor runs here, only on files (the file history says None on NATS).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.errors import WaitTimeoutError
from agentctl.model.message import message_file_name
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.backends.records import AgentRow
    from agentctl.model.message import AgentMessage


@dataclass(frozen=True)
class _Trace:
    """The fields of a traced message that History.file_state reads."""

    file: str
    to_agent: str
    id: str
    kind: str = "task"
    from_agent: str | None = None


def wait_for_reply(backend: Backend, request: AgentMessage, *, timeout_s: float) -> AgentMessage:
    """The one reply to `request`; on timeout, a WaitTimeoutError saying what holds it."""
    try:
        return backend.wait_for_reply(request, timeout_s=timeout_s)
    except WaitTimeoutError as exc:
        raise WaitTimeoutError(f"{exc}: {explain_wait(backend, request)}") from None


def explain_wait(backend: Backend, request: AgentMessage) -> str:
    """What holds the reply to `request`, in one line of `;`-separated facts."""
    to = request.to_agent
    trace = _Trace(message_file_name(request.priority, request.id), to, request.id)
    place = backend.history().file_state(trace)  # None: not known (NATS) or gone
    # One listing of the dead letters, only where it can tell something.
    reason = _dead_reason(backend, request) if place in ("dead", None) else None
    if place == "dead" or reason is not None:
        return (
            f"the request is in {to}'s dead/ ({reason or 'no reason recorded'}); "
            f"see `agentctl dead list {to}`"
        )
    facts: list[str] = []
    if to == PIPELINE_AGENT:  # its start message is acked once the run has started
        facts += _pipeline_facts(backend, request, place)
    elif place == "done":
        return (
            f"{to} acked the request into done/ but no reply came to {request.from_agent}'s "
            "inbox (an agent that answers elsewhere, or not at all)"
        )
    halted = backend.halt_state()
    if halted is not None:
        facts.append(
            f"the workspace is halted since {halted.get('halted_at') or '?'} "
            f"({halted.get('reason') or 'no reason given'}); `agentctl resume` lifts it"
        )
    facts += _agent_facts(backend, request, place)
    if not (to == PIPELINE_AGENT and place == "done"):
        facts.append(_where(to, place))
    return "; ".join(fact for fact in facts if fact)


def _dead_reason(backend: Backend, request: AgentMessage) -> str | None:
    for letter in backend.dead_letters([request.to_agent]):
        if letter.message_id == request.id:
            return letter.error or letter.error_kind or "no reason recorded"
    return None


def _pipeline_facts(backend: Backend, request: AgentMessage, place: str | None) -> list[str]:
    from agentctl.flow.escalation import open_escalations
    from agentctl.flow.pipeline import run_id_for

    run = run_id_for(request.id)
    waiting = [e for e in open_escalations(backend) if e.run == run]
    if waiting:
        why = f" ({waiting[0].reason})" if waiting[0].reason else ""
        return [
            f"run {run} waits for a person: escalation {waiting[0].id}{why}; "
            "see `agentctl escalations`"
        ]
    if place == "done":
        return [f"run {run} is under way (`agentctl replay {run}` shows how far it got)"]
    return []


def _agent_facts(backend: Backend, request: AgentMessage, place: str | None) -> list[str]:
    to = request.to_agent
    rows = backend.worker_rows([to], datetime.now(UTC))
    if any(row.alive for row in rows):
        held = [row for row in rows if row.current_message_id == request.id]
        if place == "in hand" or held:
            since = _since(backend, Event.CLAIMED, to, request.id)
            return [f"{to} has the request in hand{_pids(held)}{since}"]
        return []
    fatal = [row for row in rows if row.state == "fatal"]
    if fatal:
        return [_fatal(backend, fatal[0])]
    local = backend.describe().get("kind") == "file"  # a supervisor elsewhere is not seen here
    if local:
        from agentctl.protocol.control import supervisor_info

        supervisor = supervisor_info(backend.local)
        if not supervisor.running:
            return ["no supervisor is running (start one with `agentctl run`)"]
        state = rows[0].state if rows else "absent"
        if state in ("absent", "stopped", "disabled"):
            return [
                f"the running supervisor (pid {supervisor.pid}, started "
                f"{supervisor.started_at or '?'}) does not run {to} ({state}; added to the "
                "roster after it started?)"
            ]
    state = rows[0].state if rows else "absent"
    error = f", {rows[0].last_error}" if rows and rows[0].last_error else ""
    return [f"{to} is not running ({state}{error})"]


def _fatal(backend: Backend, row: AgentRow) -> str:
    since = _since(backend, Event.FATAL, row.name, None).removeprefix(" since ") or "?"
    next_try = f"next try at {row.next_try_at}" if row.next_try_at else "no next try"
    error = row.last_error or "no error recorded"
    return (
        f"{row.name} is fatal since {since} ({error}); {next_try}, or `agentctl restart {row.name}`"
    )


def _pids(rows: list[AgentRow]) -> str:
    pids = [str(row.pid) for row in rows if row.pid]
    return f" (pid {', '.join(pids)})" if pids else ""


def _since(backend: Backend, event: str, agent: str, message_id: str | None) -> str:
    def keep(record: dict[str, Any]) -> bool:
        return (
            record.get("event") == event
            and record.get("agent") == agent
            and (message_id is None or record.get("message_id") == message_id)
        )

    found = backend.read_events(1, keep)  # the latest one
    return f" since {found[-1].get('ts')}" if found and found[-1].get("ts") else ""


def _where(to: str, place: str | None) -> str:
    if place == "waiting":
        return f"the request waits in {to}'s new/"
    if place == "in hand":
        return f"the request is in {to}'s processing/"
    if place == "done":
        return f"the request is in {to}'s done/"
    return ""

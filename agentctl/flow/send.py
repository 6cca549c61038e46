"""Sending as the `user` pseudo-agent: to one agent, by routing, or to start a pipeline run.

The one place a send is decided and journaled; the CLI, and the MCP server and the dashboard
after it, only say what to send and show what came back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.flow.router import ensure_deliverable, user_message
from agentctl.model.constants import (
    NOT_BEFORE_HEADER,
    PIPELINE_AGENT,
    PIPELINE_HEADER,
    REQUEUED_HEADER,
    STAGE_HEADER,
    USER_AGENT,
)
from agentctl.model.errors import AgentctlError, ConfigError
from agentctl.model.ids import new_id
from agentctl.model.names import validate_agent_name
from agentctl.model.priority import Priority
from agentctl.model.tracecontext import TRACE_HEADERS
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.config.roster import Roster
    from agentctl.model.actor import Actor
    from agentctl.model.message import AgentMessage

PIPELINE_PREFIX = "pipeline:"  # `send pipeline:NAME` starts a run of NAME

# Headers agentctl writes itself, for attempts, requeues, resends, pipelines and traces: a
# sender who set one would change how the message is retried or routed, or splice the thread
# into another trace (trace ids derive from thread ids: docs/TRACING.md), so `send --header`
# refuses them.
INTERNAL_HEADERS = frozenset(
    {PIPELINE_HEADER, STAGE_HEADER, NOT_BEFORE_HEADER, REQUEUED_HEADER, "resent_from"}
    | TRACE_HEADERS
)
HEADER_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
TIMEOUT_HEADER = "timeout_s"  # the worker's timeout for this one message


@dataclass(frozen=True)
class SendRequest:
    """What to send: `to` an agent (or `pipeline:NAME`), or routed when `to` is None."""

    content: Any
    to: str | None = None
    keywords: list[str] = field(default_factory=list)
    priority: Priority = Priority.NORMAL
    thread_id: str | None = None
    fanout: bool = False  # with `to` None: to every agent scoring `threshold`, else the best
    threshold: float = 0.5
    floor: float = 0.3
    headers: dict[str, str] = field(default_factory=dict)  # see parse_headers
    by: Actor | None = None  # who asked, journaled with the send (the CLI, MCP, the dashboard)

    def __post_init__(self) -> None:
        # Refused before anything is opened: a bad name must not become a directory.
        if self.to is not None and not self.to.startswith(PIPELINE_PREFIX):
            validate_agent_name(self.to)

    @property
    def pipeline(self) -> str | None:
        """The pipeline this request starts a run of, if it does."""
        if self.to is None or not self.to.startswith(PIPELINE_PREFIX):
            return None
        return self.to.removeprefix(PIPELINE_PREFIX)

    def fields(self) -> dict[str, Any]:
        """The message fields every message of this request gets."""
        fields: dict[str, Any] = {"priority": self.priority, "keywords": list(self.keywords)}
        if self.thread_id:
            fields["thread_id"] = self.thread_id
        if self.headers:
            fields["headers"] = dict(self.headers)
        return fields


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as message headers: KEY a lower-case name that is not one of
    agentctl's own (INTERNAL_HEADERS); VALUE kept as the string given (headers are strings);
    `timeout_s` a positive number of seconds. AgentctlError names the first bad pair."""
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise AgentctlError(f"--header {pair!r}: expected KEY=VALUE; nothing sent")
        if not HEADER_KEY_RE.fullmatch(key):
            raise AgentctlError(
                f"--header {pair!r}: KEY must be a lower-case letter, then lower-case letters, "
                "digits or '_' (at most 64); nothing sent"
            )
        if key in INTERNAL_HEADERS:
            raise AgentctlError(
                f"--header {key}: an internal header agentctl sets itself "
                f"({', '.join(sorted(INTERNAL_HEADERS))}); nothing sent"
            )
        if key == TIMEOUT_HEADER and not _positive_number(value):
            raise AgentctlError(
                f"--header {pair!r}: timeout_s must be a positive number of seconds; nothing sent"
            )
        headers[key] = value
    return headers


def _positive_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class SendResult:
    """The messages sent, where each went, and what a person should know about them."""

    messages: list[AgentMessage]
    places: list[Path | str | None]  # a file path on files, a stream position on NATS
    run: str | None = None  # the pipeline whose run the one message starts
    fanout: bool = False
    waiting_in: Path | None = None  # set when no supervisor runs to take them

    def to_json(self) -> list[dict[str, Any]]:
        """One `{id, to, thread_id, path}` per message, as `send --json` prints them."""
        return [
            {"id": m.id, "to": m.to_agent, "thread_id": m.thread_id, "path": str(p)}
            for m, p in zip(self.messages, self.places, strict=True)
        ]


def send_message(backend: Backend, roster: Roster | None, request: SendRequest) -> SendResult:
    """Send `request`: start a pipeline run, route it, or deliver it to its agent."""
    pipeline = request.pipeline
    if pipeline is not None:
        return start_pipeline_run(backend, _needed(roster), pipeline, request)
    if request.to is None:
        return route_and_send(backend, _needed(roster), request)
    _check_recipient(backend, roster, request.to)
    return _delivered(
        backend, [user_message(request.to, request.content, **request.fields())], request.by
    )


def start_pipeline_run(
    backend: Backend, roster: Roster, pipeline: str, request: SendRequest
) -> SendResult:
    """Send the message that starts a run of `pipeline` (ConfigError if an agent it needs
    cannot run here)."""
    stages = roster.stages(pipeline)  # a clear error for an unknown pipeline, before sending
    final = roster.final_agent(pipeline)
    disabled = roster.disabled_agents()
    needed = [*(a for stage in stages for a in stage), *([final] if final else [])]
    off = [a for a in dict.fromkeys(needed) if a in disabled]
    if off:
        reasons = "; ".join(f"{a}: {disabled[a]}" for a in off)
        raise ConfigError(f"pipeline {pipeline!r} needs agents that cannot run here ({reasons})")
    fields = request.fields()
    headers = {**fields.pop("headers", {}), PIPELINE_HEADER: pipeline}
    message = user_message(PIPELINE_AGENT, request.content, headers=headers, **fields)
    result = _delivered(backend, [message], request.by)
    return SendResult(result.messages, result.places, run=pipeline, waiting_in=result.waiting_in)


def route_and_send(backend: Backend, roster: Roster, request: SendRequest) -> SendResult:
    """Send to the agent scoring the request's keywords best (or, with `fanout`, to every agent
    scoring `threshold`); the decision, every score with it, is journaled as `routed`."""
    from agentctl.flow.routing import explain_route
    from agentctl.model.task import task_of

    if not request.keywords:
        raise AgentctlError(
            "no keywords to route by: routing scores each agent's expertise against the "
            "task's keywords (give them with -k); nothing sent"
        )
    fields = {**request.fields(), "thread_id": request.thread_id or new_id()}
    # Score the task exactly as an agent will see it (content fields plus keywords).
    task = task_of(user_message(roster.agents[0].name, request.content, **fields))
    explained = explain_route(roster, task, floor=request.floor, threshold=request.threshold)
    candidates = explained.candidates
    bar = request.threshold if request.fanout else request.floor
    route = [explained.route] if explained.route is not None else []
    chosen = explained.fanout if request.fanout else route
    if not chosen:
        best = f" (best: {candidates[0].name} at {candidates[0].score:.2f})" if candidates else ""
        raise AgentctlError(
            f"no agent scores {bar:g} or more for keywords {task.get('keywords')}{best}; "
            "nothing sent (see `agentctl route`)"
        )
    messages = [user_message(to, request.content, **fields) for to in chosen]
    for message in messages:  # journaled only with the sends it decided: refused first if not
        ensure_deliverable(message, backend.local.max_message_bytes)
    backend.journal.append(
        Event.ROUTED,
        agent=USER_AGENT,
        thread_id=fields["thread_id"],
        mode="fanout" if request.fanout else "route",
        keywords=task.get("keywords"),
        threshold=bar,
        candidates=[c.to_json() for c in candidates],
        chosen=chosen,
        **(request.by.fields() if request.by else {}),
    )
    result = _delivered(backend, messages, request.by)
    return SendResult(result.messages, result.places, fanout=request.fanout,
                      waiting_in=result.waiting_in)  # fmt: skip


def await_replies(backend: Backend, result: SendResult, *, timeout_s: float) -> list[AgentMessage]:
    """The one reply to each message sent, in order (an error after `timeout_s` each, saying
    what holds the reply)."""
    from agentctl.flow.diagnose import wait_for_reply

    return [wait_for_reply(backend, m, timeout_s=timeout_s) for m in result.messages]


def _needed(roster: Roster | None) -> Roster:
    if roster is None:
        raise ConfigError("routing and pipelines need a roster (agents.yaml); nothing sent")
    return roster


def _check_recipient(backend: Backend, roster: Roster | None, to: str) -> None:
    if roster is not None:
        roster.agent(to)  # a clear error for an unknown agent
        why = roster.disabled_agents().get(to)
        if why:
            raise AgentctlError(f"{to}: {why}; nothing sent")
    elif to == USER_AGENT or to not in backend.local.agent_names():
        raise AgentctlError(
            f"{backend.local.root}: no agent named {to!r} (and no roster to say so)"
        )


def _delivered(
    backend: Backend, messages: list[AgentMessage], by: Actor | None = None
) -> SendResult:
    from agentctl.protocol.control import supervisor_is_running

    places = [backend.deliver(message, by=by) for message in messages]
    first = places[0]
    idle = isinstance(first, Path) and not supervisor_is_running(backend.local)
    return SendResult(
        messages, places, waiting_in=first.parent if isinstance(first, Path) and idle else None
    )

"""The tools that only look: status, tail, replay, verify, route, dead letters, escalations,
pipeline runs. `--read-only` serves these and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from agentctl.mcpserver.surface import (
    MAX_EVENTS,
    Served,
    checked_id,
    checked_keywords,
    in_thread,
)

LOOKS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                        open_world_hint=False)  # fmt: skip

AgentName = Annotated[
    str | None, Field(description="Only events by or to this agent (an agent name).")
]


class StatusResult(BaseModel):
    """The workspace as `agentctl status --json` shows it."""

    workspace: str
    transport: dict[str, Any] = Field(description="The backend: kind, and servers for NATS.")
    supervisor: dict[str, Any] = Field(description="Whether `agentctl run` is running, its pid.")
    halted: dict[str, Any] | None = Field(description="Why no agent claims work, if halted.")
    escalations: dict[str, int] = Field(description="Open and overdue escalations.")
    pipelines: dict[str, Any] = Field(description="Pipeline runs by status; flagged runs.")
    agents: list[dict[str, Any]] = Field(description="One row per worker: state, inbox depth.")


class TailResult(BaseModel):
    """Journal events, oldest first."""

    events: list[dict[str, Any]]
    damaged_lines: int = Field(description="Damaged journal lines skipped (run verify).")


class ReplayResult(BaseModel):
    """One thread, reconstructed from the journal and the message files."""

    thread_id: str
    format: str
    thread: dict[str, Any] | None = Field(
        None, description="With format json: messages (content, state, verdict) and events."
    )
    mermaid: str | None = Field(None, description="With format mermaid: a sequence diagram.")
    damaged_lines: int = 0


class VerifyResult(BaseModel):
    """Whether the audit trail is intact."""

    ok: bool
    problems: list[str]
    warnings: list[str]
    summary: str
    report: dict[str, Any] = Field(description="The `verify --json` document.")


class RouteResult(BaseModel):
    """Every agent's score for the keywords, and whom routing would pick."""

    keywords: list[str]
    candidates: list[dict[str, Any]]
    route: str | None = Field(description="The agent a routed send goes to (None: nobody).")
    fanout: list[str] = Field(description="The agents a fan-out send goes to.")
    excluded: dict[str, str] = Field(description="Agents left out, with why.")


class DeadLettersResult(BaseModel):
    """Messages given up on after their last attempt."""

    dead_letters: list[dict[str, Any]]


class EscalationsResult(BaseModel):
    """Pipeline stages waiting for a person's (or your) verdict."""

    escalations: list[dict[str, Any]]


class RunsResult(BaseModel):
    """Pipeline runs, oldest first."""

    runs: list[dict[str, Any]]


def register_read_tools(server: MCPServer[Any], served: Served) -> None:
    """Add the read-only tools, each acting on `served`."""
    backend = served.backend

    async def status() -> StatusResult:
        from agentctl.audit.overview import collect_overview

        overview = await in_thread(lambda: collect_overview(backend, served.agent_names()))
        return StatusResult(**overview.to_json())

    async def tail(
        lines: Annotated[int, Field(ge=1, le=MAX_EVENTS, description="How many events.")] = 50,
        agent: AgentName = None,
        thread_id: Annotated[str | None, Field(description="Only this thread.")] = None,
        kinds: Annotated[
            list[str] | None,
            Field(description="Only these events: sent, claimed, handled, failed, dead, ..."),
        ] = None,
        since: Annotated[
            str | None, Field(description="From this time: ISO 8601 (UTC) or ago, like 10m.")
        ] = None,
        until: Annotated[
            str | None, Field(description="Up to this time: ISO 8601 (UTC) or ago, like 5m.")
        ] = None,
    ) -> TailResult:
        from agentctl.audit.history import event_filter, parse_when

        thread = checked_id(thread_id, "thread_id") if thread_id else None
        damaged: list[str] = []

        def read() -> list[dict[str, Any]]:
            keep = event_filter(
                agent=agent, thread=thread, kinds=kinds or [], agents=served.agent_names(),
                since=parse_when(since) if since else None,
                until=parse_when(until, option="--until") if until else None,
            )  # fmt: skip
            return backend.read_events(lines, keep, on_damaged=damaged.append)

        return TailResult(events=await in_thread(read), damaged_lines=len(damaged))

    async def replay(
        id: Annotated[str, Field(description="A thread id, or any message id in it.")],
        format: Annotated[
            Literal["json", "mermaid"],
            Field(description="json: every message and event; mermaid: a sequence diagram."),
        ] = "json",
        agent: AgentName = None,
    ) -> ReplayResult:
        from agentctl.audit.diagram import mermaid
        from agentctl.audit.history import replay_thread

        ident = checked_id(id, "id")
        thread = await in_thread(lambda: replay_thread(backend.history(), ident, agent=agent))
        return ReplayResult(
            thread_id=thread.thread_id,
            format=format,
            thread=thread.to_json() if format == "json" else None,
            mermaid=mermaid(thread) if format == "mermaid" else None,
            damaged_lines=thread.torn_lines,
        )

    async def verify() -> VerifyResult:
        found = await in_thread(backend.verify)
        return VerifyResult(ok=found.ok, problems=found.problems, warnings=found.warnings,
                            summary=found.summary, report=found.doc)  # fmt: skip

    async def route(
        keywords: Annotated[list[str], Field(description="The task's keywords, e.g. [auth].")],
        floor: Annotated[float, Field(ge=0, le=1, description="Lowest score to win.")] = 0.3,
        threshold: Annotated[float, Field(ge=0, le=1, description="Fan-out bar.")] = 0.5,
    ) -> RouteResult:
        from agentctl.flow.routing import explain_route

        roster = served.roster
        if roster is None:
            raise ToolError("routing needs a roster (agents.yaml); none is served")
        task = {"keywords": checked_keywords(keywords)}
        if not task["keywords"]:
            raise ToolError("no keywords to route by")
        explained = await in_thread(
            lambda: explain_route(roster, task, floor=floor, threshold=threshold)
        )
        data = explained.to_json()
        return RouteResult(keywords=explained.keywords, candidates=data["candidates"],
                           route=explained.route, fanout=explained.fanout,
                           excluded=explained.excluded)  # fmt: skip

    async def dead_letters(
        agent: Annotated[str | None, Field(description="Only this agent's inbox.")] = None,
    ) -> DeadLettersResult:
        from agentctl.flow.deadletters import list_dead
        from agentctl.model.names import validate_agent_name

        letters = await in_thread(
            lambda: list_dead(backend, [validate_agent_name(agent)] if agent else None)
        )
        return DeadLettersResult(dead_letters=[letter.to_json() for letter in letters])

    async def escalations() -> EscalationsResult:
        from agentctl.flow.escalation import open_escalations

        overdue_s = backend.local.escalation_overdue_s
        found = await in_thread(lambda: open_escalations(backend, overdue_after_s=overdue_s))
        return EscalationsResult(escalations=[e.to_json() for e in found])

    async def pipeline_runs() -> RunsResult:
        from agentctl.mcpserver.resources import run_summaries

        return RunsResult(runs=await in_thread(lambda: run_summaries(backend.local)))

    tools: dict[Callable[..., Any], str] = {
        status: "The team at a glance: each agent's state and inbox depth (waiting, in hand, "
        "dead), whether `agentctl run` is running, whether the workspace is halted, open "
        "escalations and pipeline runs by status. Call this first.",
        tail: "The last journal events (what every agent did: sent, claimed, handled, failed, "
        "dead, escalated, resolved, ...), oldest first, filtered by agent, thread, event kind "
        "and time.",
        replay: "Reconstruct one thread (`id`: a thread id, or any message id in it): every "
        "message with its content, state, verdict and attempts, and every event; or the "
        "thread as a Mermaid sequence diagram.",
        verify: "Check the audit trail: the journal's hash chain and that every delivered "
        "message is accounted for (done or dead, once). ok is true when nothing is wrong.",
        route: "Explain routing without sending: every agent's score for these keywords "
        "(overlap with its expertise), whom a routed send would pick, and a fan-out's agents.",
        dead_letters: "Messages given up on after their last attempt, with the error; "
        "requeue_dead puts one back.",
        escalations: "Open escalations: pipeline stages waiting for a person's verdict "
        "(id, run, pipeline, stage, agents, reason, age). resolve_escalation answers one.",
        pipeline_runs: "Every pipeline run: pipeline, status (running, escalated, done, "
        "blocked, ...), stage reached, verdict so far. Read agentctl://run/{id} for one.",
    }
    for fn, description in tools.items():
        server.add_tool(fn, description=description, annotations=LOOKS, structured_output=True)

"""The tools that act: send, start a pipeline run, requeue a dead letter, resolve an
escalation, halt, resume. Each calls the core function the CLI calls, with an Actor that says
the MCP client did it (`by: mcp`, `client: <its name>`), so the journal tells them apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema

from agentctl.mcpserver.surface import (
    MAX_WAIT_S,
    Served,
    actor_of,
    checked_content,
    checked_id,
    checked_keywords,
    checked_note,
    in_thread,
)

if TYPE_CHECKING:
    from agentctl.flow.send import SendRequest, SendResult

# Sending adds messages; nothing is overwritten or removed.
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                       open_world_hint=False)  # fmt: skip
# Resolving with block ends a run for good; halting stops the whole team.
ENDS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                       open_world_hint=False)  # fmt: skip
HALTS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                        open_world_hint=False)  # fmt: skip
RESUMES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                          open_world_hint=False)  # fmt: skip

# Checked in the tool (checked_content), not by pydantic: a union's refusal would name each
# of its members; one line says what content may be.
Content = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}]}),
    Field(description="The task: text, or a JSON object or array."),
]
Keywords = Annotated[
    list[str] | None,
    Field(description="Keywords describing the task (routing scores agents by them)."),
]
Wait = Annotated[bool, Field(description="Wait for the reply (or the run's outcome).")]
TimeoutS = Annotated[
    float, Field(gt=0, le=MAX_WAIT_S, description=f"How long to wait, at most {MAX_WAIT_S:g} s.")
]


class SendResultModel(BaseModel):
    """The messages sent and, when waited for, their replies."""

    sent: list[dict[str, Any]] = Field(description="One {id, to, thread_id, path} a message.")
    run: str | None = Field(None, description="The pipeline run's id, when one was started.")
    replies: list[dict[str, Any]] | None = Field(
        None, description="With wait: each reply (from, content, verdict when it has one)."
    )
    outcome: dict[str, Any] | None = Field(
        None, description="With wait on a pipeline run: its outcome, stage by stage."
    )
    note: str | None = Field(None, description="Why nothing will take the message yet, if so.")


class ResolvedResult(BaseModel):
    """The escalation answered."""

    escalation: str
    run: str
    verdict: str
    effect: str


class RequeuedResult(BaseModel):
    """The message ids put back in their inbox."""

    requeued: list[str]
    failures: list[str]


class ResumeResult(BaseModel):
    """The workspace is not halted after the call; what the call lifted, if anything."""

    halted: bool = False
    changed: bool = Field(description="Whether this call lifted a halt.")
    lifted: dict[str, Any] | None = Field(
        description="The halt lifted: reason, by, run, halted_at; null if there was none."
    )


class HaltResult(BaseModel):
    """The workspace's halted state after the call."""

    halted: bool
    changed: bool = Field(description="Whether this call changed it.")
    state: dict[str, Any] | None = Field(description="Why, by whom, since when.")


def register_action_tools(server: MCPServer[Any], served: Served) -> None:
    """Add the tools that change the workspace, each acting on `served`."""
    backend = served.backend

    async def send(
        ctx: Context,
        content: Content,
        to: Annotated[
            str | None,
            Field(description="The agent to send to; omit to route by keywords."),
        ] = None,
        keywords: Keywords = None,
        fanout: Annotated[
            bool,
            Field(description="Instead of `to`: send to every agent scoring 0.5 or more."),
        ] = False,
        priority: Literal["high", "normal", "low"] = "normal",
        thread_id: Annotated[str | None, Field(description="Join this thread.")] = None,
        headers: Annotated[
            dict[str, str] | None, Field(description="Message headers, e.g. {timeout_s: '5'}.")
        ] = None,
        wait: Wait = False,
        timeout_s: TimeoutS = 60.0,
    ) -> SendResultModel:
        from agentctl.flow.send import PIPELINE_PREFIX, SendRequest, parse_headers
        from agentctl.model.priority import Priority

        if to is not None and to.startswith(PIPELINE_PREFIX):
            raise ToolError("to start a pipeline run, use start_pipeline")
        if to is not None and fanout:  # as `agentctl send --fanout` takes no TO
            raise ToolError(
                "give `to` or `fanout`, not both: `to` sends to that agent; fanout (without "
                "`to`) to every agent scoring 0.5 or more on the keywords"
            )
        request = await in_thread(lambda: SendRequest(
            checked_content(content), to=to, keywords=checked_keywords(keywords or []),
            priority=Priority(priority), fanout=fanout,
            thread_id=checked_id(thread_id, "thread_id") if thread_id else None,
            headers=parse_headers([f"{k}={v}" for k, v in (headers or {}).items()]),
            by=actor_of(ctx),
        ))  # fmt: skip
        return await _sent(request, wait=wait, timeout_s=timeout_s)

    async def start_pipeline(
        ctx: Context,
        pipeline: Annotated[str, Field(description="The pipeline's name in agents.yaml.")],
        content: Content,
        keywords: Keywords = None,
        wait: Wait = False,
        timeout_s: TimeoutS = 120.0,
    ) -> SendResultModel:
        from agentctl.flow.send import PIPELINE_PREFIX, SendRequest

        if served.roster is None:
            raise ToolError("pipelines need a roster (agents.yaml); none is served")
        request = SendRequest(
            checked_content(content), to=PIPELINE_PREFIX + checked_id(pipeline, "pipeline"),
            keywords=checked_keywords(keywords or []), by=actor_of(ctx),
        )  # fmt: skip
        return await _sent(request, wait=wait, timeout_s=timeout_s)

    async def _sent(request: SendRequest, *, wait: bool, timeout_s: float) -> SendResultModel:
        from agentctl.flow.pipeline import run_id_for
        from agentctl.flow.send import await_replies, send_message

        result: SendResult = await in_thread(
            lambda: send_message(backend, served.roster, request)
        )
        note = None
        if result.waiting_in is not None:
            note = f"no supervisor is running; the message waits in {result.waiting_in}"
        run = run_id_for(result.messages[0].id) if result.run else None
        sent = SendResultModel(sent=result.to_json(), note=note, replies=None, outcome=None,
                               run=run)  # fmt: skip
        if not wait:
            return sent
        try:
            replies = await in_thread(
                lambda: await_replies(backend, result, timeout_s=timeout_s)
            )
        except ToolError as exc:  # sent all the same: say so, and how to find the reply later
            ids = ", ".join(m.id for m in result.messages)
            raise ToolError(f"{exc} (sent: {ids}; replay it later for the reply)") from None
        if result.run:
            content = replies[0].content
            sent.outcome = content if isinstance(content, dict) else {"outcome": content}
        else:
            sent.replies = [
                {"id": r.id, "from": r.from_agent, "content": r.content} for r in replies
            ]
        return sent

    async def resolve_escalation(
        ctx: Context,
        escalation_id: Annotated[
            str, Field(description="The escalation's id (or its run's id), from escalations.")
        ],
        verdict: Annotated[
            Literal["pass", "flag", "block"],
            Field(description="pass: the run goes on; flag: goes on, noted; block: it ends."),
        ],
        note: Annotated[str | None, Field(description="Why, for the record.")] = None,
    ) -> ResolvedResult:
        from agentctl.flow.escalation import resolve_escalation as resolve

        ident = checked_id(escalation_id, "escalation_id")
        by = actor_of(ctx)
        escalation = await in_thread(
            lambda: resolve(backend, ident, verdict, checked_note(note), by=by)
        )
        effect = "the run ends blocked" if verdict == "block" else "the run goes on"
        return ResolvedResult(escalation=escalation.id, run=escalation.run or "",
                              verdict=verdict, effect=effect)  # fmt: skip

    async def requeue_dead(
        ctx: Context,
        message_id: Annotated[str, Field(description="The dead message's id, from dead_letters.")],
        agent: Annotated[str | None, Field(description="Its agent, if several have it.")] = None,
    ) -> RequeuedResult:
        from agentctl.flow.deadletters import requeue_dead as requeue
        from agentctl.model.names import validate_agent_name

        ident = checked_id(message_id, "message_id")
        by = actor_of(ctx)
        requeued, failures = await in_thread(lambda: requeue(
            backend, ident, [validate_agent_name(agent)] if agent else None, by=by
        ))  # fmt: skip
        if failures and not requeued:
            raise ToolError("; ".join(failures))
        return RequeuedResult(requeued=requeued, failures=failures)

    async def halt(
        ctx: Context,
        reason: Annotated[str, Field(min_length=1, description="Why everything stops.")],
    ) -> HaltResult:
        from agentctl.flow.halt import halt as enter_halt
        from agentctl.flow.halt import halted_state

        by = actor_of(ctx)
        already = await in_thread(lambda: enter_halt(backend, checked_note(reason) or "", by=by))
        state = already if already is not None else await in_thread(
            lambda: halted_state(backend)
        )  # fmt: skip
        return HaltResult(halted=True, changed=already is None, state=state)

    async def resume(ctx: Context) -> ResumeResult:
        from agentctl.flow.halt import resume as leave_halt

        by = actor_of(ctx)
        lifted = await in_thread(lambda: leave_halt(backend, by=by))
        return ResumeResult(changed=lifted is not None, lifted=lifted)

    tools: dict[Callable[..., Any], tuple[ToolAnnotations, str]] = {
        send: (ADDS, "Send a task to an agent (or, without `to`, to the agent whose expertise "
               "best matches the keywords) and optionally wait for its reply. The reply's "
               "content is the agent's answer; a reply with verdict escalate means it failed."),
        start_pipeline: (ADDS, "Start a run of a pipeline declared in agents.yaml (stages of "
                         "agents, each stage's verdict deciding whether the run goes on) and "
                         "optionally wait for its outcome. A stage may escalate: the run then "
                         "waits until resolve_escalation answers."),
        resolve_escalation: (ENDS, "Answer an open escalation with a verdict: pass or flag "
                             "and its run goes on, block and the run ends. Journaled with "
                             "your client's name."),
        requeue_dead: (ADDS, "Put a dead letter back in its agent's inbox with its attempts "
                       "reset, so the agent tries it again."),
        halt: (HALTS, "Stop every agent from claiming new work until resume (messages in "
               "hand finish, waiting ones wait). Use when something is going wrong."),
        resume: (RESUMES, "Lift the halted state: agents claim new work again."),
    }
    for fn, (hints, description) in tools.items():
        server.add_tool(fn, description=description, annotations=hints,
                        structured_output=True)  # fmt: skip

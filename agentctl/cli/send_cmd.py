"""`agentctl send`: a message from the `user` pseudo-agent; optionally wait for its reply."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt
from agentctl.model.errors import AgentctlError
from agentctl.model.priority import Priority
from agentctl.model.vocab import Event

KeywordsOpt = Annotated[
    str | None,
    typer.Option("--keywords", "-k", help="Comma-separated keywords, e.g. auth,injection."),
]


def send(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[TO] CONTENT",
            help="The agent to send to (`pipeline:NAME` starts a pipeline run; none with "
            "--route/--fanout), then the content: text, a JSON object or array, '-' for stdin, "
            '@FILE (its text) or @FOLDER (sent as {"path": FOLDER}).',
            show_default=False,
        ),
    ],
    keywords: KeywordsOpt = None,
    priority: Annotated[Priority, typer.Option("--priority", "-p")] = Priority.NORMAL,
    thread: Annotated[str | None, typer.Option("--thread", help="Join this thread id.")] = None,
    text: Annotated[
        bool, typer.Option("--text", help="Send CONTENT as a string even if it looks like JSON.")
    ] = False,
    route: Annotated[
        bool, typer.Option("--route", help="Send to the agent that scores the keywords best.")
    ] = False,
    fanout: Annotated[
        bool, typer.Option("--fanout", help="Send to every agent scoring at least --threshold.")
    ] = False,
    threshold: Annotated[
        float, typer.Option("--threshold", help="With --fanout: the lowest score that gets it.")
    ] = 0.5,
    floor: Annotated[
        float, typer.Option("--floor", help="With --route: the lowest score that may win.")
    ] = 0.3,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the reply and print it.")] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="With --wait, give up after this long.")
    ] = 60.0,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Send CONTENT to agent TO (or route it); print the message id (or, with --wait, the reply)."""
    from agentctl.cli.options import open_full, open_light, opened_backend, read_content
    from agentctl.cli.render import print_json, print_note
    from agentctl.config.rosterfile import find_config
    from agentctl.flow.router import user_message
    from agentctl.model.names import validate_agent_name
    from agentctl.protocol.control import supervisor_is_running

    routed = route or fanout
    if route and fanout:
        raise typer.BadParameter("give --route or --fanout, not both")
    if len(args) != (1 if routed else 2):
        raise typer.BadParameter(
            "expected CONTENT only with --route/--fanout" if routed else "expected TO and CONTENT"
        )
    content = read_content(args[-1], as_text=text)
    fields: dict[str, Any] = {
        "priority": priority,
        "keywords": [k.strip() for k in keywords.split(",") if k.strip()] if keywords else [],
    }
    if thread:
        fields["thread_id"] = thread
    if not routed and args[0].startswith("pipeline:"):
        from agentctl.cli.pipeline_cmds import start_run, wait_and_show

        roster, ws = open_full(config, workspace)
        with opened_backend(config, workspace) as router:
            message, path = start_run(roster, router, args[0].partition(":")[2], content, fields)
            if isinstance(path, Path) and not supervisor_is_running(ws):
                print_note(f"no supervisor is running on {ws.root}; the run waits in {path.parent}")
            if wait:
                wait_and_show(router, message, timeout_s=timeout_s, json_out=json_out)
                return
        print_json({"id": message.id, "run": message.id}) if json_out else print(message.id)
        return
    decision: dict[str, Any] | None = None
    if routed:
        roster, ws = open_full(config, workspace)
        targets, decision = _route(
            roster, content, fields, fanout=fanout, threshold=threshold, floor=floor
        )
        fields["thread_id"] = decision["thread_id"]
    else:
        to = validate_agent_name(args[0])
        if find_config(config) is not None:
            roster, ws = open_full(config, workspace)
            roster.agent(to)
            why = roster.disabled_agents().get(to)
            if why:
                raise AgentctlError(f"{to}: {why}; nothing sent")
        else:
            ws, names = open_light(config, workspace)
            if to not in names:
                raise AgentctlError(f"{ws.root}: no agent named {to!r} (and no roster to say so)")
        targets = [to]
    messages = [user_message(to, content, **fields) for to in targets]
    with opened_backend(config, workspace) as router:
        if decision is not None:
            # Journaled only with the sends it decided: refused first if they would be.
            from agentctl.flow.router import ensure_deliverable

            for message in messages:
                ensure_deliverable(message, ws.max_message_bytes)
            router.journal.append(Event.ROUTED, **decision)
        paths = [router.deliver(message) for message in messages]
        if isinstance(paths[0], Path) and not supervisor_is_running(ws):
            where = paths[0].parent
            print_note(f"no supervisor is running on {ws.root}; the message waits in {where}")
        if not wait:
            if json_out:
                sent = [
                    {"id": m.id, "to": m.to_agent, "thread_id": m.thread_id, "path": str(p)}
                    for m, p in zip(messages, paths, strict=True)
                ]
                print_json(sent[0] if not fanout else sent)
            else:
                for message in messages:
                    print(message.id)
            return
        replies = [router.wait_for_reply(message, timeout_s=timeout_s) for message in messages]
    if fanout:
        # One answer per reviewer, keyed by agent.
        print_json(
            {r.from_agent: (r.model_dump(mode="json") if json_out else r.content) for r in replies}
        )
    elif json_out:
        print_json(replies[0].model_dump(mode="json"))
    elif isinstance(replies[0].content, str):
        print(replies[0].content)
    else:
        print_json(replies[0].content)
    if any(_is_failure(reply.content) for reply in replies):
        raise typer.Exit(1)


def _route(
    roster: Any,
    content: Any,
    fields: dict[str, Any],
    *,
    fanout: bool,
    threshold: float,
    floor: float,
) -> tuple[list[str], dict[str, Any]]:
    """Choose the recipients; the `routed` event to journal, with every candidate's score."""
    from agentctl.flow.router import user_message
    from agentctl.flow.routing import TaskRouter, explain, roster_candidates
    from agentctl.model.ids import new_id
    from agentctl.model.task import task_of

    # Score the task exactly as an agent will see it (content fields plus keywords).
    task = task_of(user_message(roster.agents[0].name, content, **fields))
    router = TaskRouter(roster_candidates(roster), floor=floor)
    candidates = explain(router, task)
    if fanout:
        chosen = [agent.name for agent in router.route_multi(task, threshold)]
        if not chosen:
            best = candidates[0] if candidates else None
            raise AgentctlError(
                f"no agent scores {threshold:g} or more for keywords {task.get('keywords')}"
                + (f" (best: {best.name} at {best.score:.2f})" if best else "")
                + "; nothing sent (see `agentctl route`)"
            )
    else:
        chosen = [router.route(task).name]
    decision = {
        "agent": "user",
        "thread_id": str(fields.get("thread_id") or new_id()),
        "mode": "fanout" if fanout else "route",
        "keywords": task.get("keywords"),
        "threshold": threshold if fanout else floor,
        "candidates": [c.to_json() for c in candidates],
        "chosen": chosen,
    }
    return chosen, decision


def _is_failure(content: Any) -> bool:
    return isinstance(content, dict) and content.get("verdict") == "escalate"

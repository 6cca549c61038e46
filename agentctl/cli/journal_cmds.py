"""`agentctl tail`, `agentctl replay` and `agentctl verify`: the audit trail, read back."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt

AgentFilter = Annotated[
    str | None, typer.Option("--agent", "-a", help="Only events by or to this agent.")
]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="From this time: ISO (UTC) or ago, like 10m.")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Up to this time: ISO (UTC) or ago, like 5m.")
]


def tail(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Events to show first.")] = 20,
    agent: AgentFilter = None,
    thread: Annotated[str | None, typer.Option("--thread", help="Only this thread.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only these events (sent, claimed, handled, failed, ...)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the journal lines as they are (for jq).")
    ] = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show the last events of the journal; with -f, follow new ones until Ctrl-C."""
    import threading

    from agentctl.audit.history import event_filter
    from agentctl.cli.options import open_light, opened_backend

    _, names = open_light(config, workspace)
    kinds = [k for value in kind or [] for k in value.split(",") if k]
    keep = event_filter(agent=agent, thread=thread, kinds=kinds, agents=names)
    show = _printer(json_out)

    def damaged(where: str) -> None:
        print(
            f"tail: skipped a damaged journal line (see `agentctl verify`): {where}",
            file=sys.stderr,
        )

    stop = threading.Event()
    with opened_backend(config, workspace) as backend:
        for record in backend.read_events(lines, keep, on_damaged=damaged):
            show(record, None)
        if not follow:
            return
        try:
            for record in backend.follow_events(keep, stop, on_damaged=damaged):
                show(record, None)
        except KeyboardInterrupt:
            stop.set()


def _printer(json_out: bool) -> Any:
    import json

    if json_out:

        def show_json(record: dict[str, Any], raw: bytes | None) -> None:
            line = raw.decode().rstrip("\n") if raw else json.dumps(record, separators=(",", ":"))
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

        return show_json
    from agentctl.cli.render import console
    from agentctl.cli.render_history import event_line

    out = console()

    def show_line(record: dict[str, Any], raw: bytes | None) -> None:
        out.print(event_line(record))

    return show_line


class ReplayFormat(StrEnum):
    """How `replay` shows a thread."""

    TREE = "tree"
    MERMAID = "mermaid"
    JSON = "json"


def replay(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A thread id or a message id.")],
    fmt: Annotated[
        ReplayFormat, typer.Option("--format", help="tree, mermaid or json.")
    ] = ReplayFormat.TREE,
    agent: AgentFilter = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    resend: Annotated[
        bool, typer.Option("--resend", help="Deliver the recorded message again (a new id).")
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="With --resend: send to this agent instead.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --resend: wait and compare with the record.")
    ] = False,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="With --wait.")] = 60.0,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Reconstruct a thread (or a message's thread) from the journal and the message files."""
    from agentctl.audit.history import event_filter, load_thread, parse_when
    from agentctl.cli.options import opened_backend

    if json_out:
        fmt = ReplayFormat.JSON
    as_of = parse_when(until, option="--until") if until else None
    keep = event_filter(
        agent=agent, since=parse_when(since, option="--since") if since else None, until=as_of
    )
    if resend:
        _resend(
            ident,
            to=to,
            wait=wait,
            timeout_s=timeout_s,
            json_out=json_out,
            config=config,
            workspace=workspace,
        )
        return
    with opened_backend(config, workspace) as backend:
        thread = load_thread(backend.history(), ident, keep=keep, as_of=as_of)
    if fmt is ReplayFormat.JSON:
        from agentctl.cli.render import print_json

        print_json(thread.to_json())
    elif fmt is ReplayFormat.MERMAID:
        from agentctl.cli.render_history import mermaid

        sys.stdout.write(mermaid(thread))
    else:
        from agentctl.cli.render import console
        from agentctl.cli.render_history import thread_tree

        console().print(thread_tree(thread))
    if thread.torn_lines:
        from agentctl.cli.render import print_note

        print_note(f"{thread.torn_lines} damaged journal line(s) skipped (run `agentctl verify`)")


def _resend(
    ident: str,
    *,
    to: str | None,
    wait: bool,
    timeout_s: float,
    json_out: bool,
    config: Any,
    workspace: Any,
) -> None:
    from agentctl.audit.resend import resend
    from agentctl.backends import open_backend
    from agentctl.cli.options import load_config
    from agentctl.cli.render import console, print_json
    from agentctl.model.ids import reply_id

    roster = load_config(config)
    backend = open_backend(roster, workspace, client_name="agentctl-cli")
    try:
        original, message, thread = resend(backend, roster, ident, to=to)
        target = message.to_agent
        reply = backend.wait_for_reply(message, timeout_s=timeout_s) if wait else None
    finally:
        backend.close()
    if not wait:
        if json_out:
            print_json({"original": original.id, "id": message.id, "to": target})
        else:
            print(message.id)
        return
    assert reply is not None
    recorded_reply = thread.messages.get(reply_id(original.id))
    recorded = recorded_reply.content if recorded_reply else None
    if json_out:
        print_json(
            {
                "original": original.id,
                "id": message.id,
                "to": target,
                "recorded": recorded,
                "result": reply.content,
            }
        )
        return
    from agentctl.cli.render_history import compare_table

    console().print(compare_table(original.id, recorded, message.id, reply.content))


def verify(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Check the journal's hash chain and the done/ and dead/ files against it."""
    from agentctl.cli.options import opened_backend

    with opened_backend(config, workspace) as backend:
        found = backend.verify()
    _print_verification(
        found.problems, found.summary, found.doc if json_out else None, found.warnings
    )


def _print_verification(
    problems: list[str],
    summary: str,
    json_doc: dict[str, Any] | None,
    warnings: list[str] | None = None,
) -> None:
    """One `problem:` line per finding, one `warning:` line per torn line, and the summary (or
    `json_doc`); exit 1 on a problem."""
    if json_doc is not None:
        from agentctl.cli.render import print_json

        print_json(json_doc)
    else:
        from rich.markup import escape

        from agentctl.cli.render import console

        out = console()
        for problem in problems:
            out.print(f"[red]problem:[/] {escape(problem)}")
        for warning in warnings or []:
            out.print(f"[yellow]warning:[/] {escape(warning)}")
        verdict = f"[red]{len(problems)} problem(s)[/]" if problems else "[green]ok[/]"
        out.print(f"{verdict}: {summary}")
    if problems:
        raise typer.Exit(1)

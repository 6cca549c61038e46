"""`agentctl tail`, `agentctl replay` and `agentctl verify`: the audit trail, read back."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt
from agentctl.model.actor import cli_actor

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
    from agentctl.cli.options import keywords_of, open_light, opened_backend, ready_for_ctrl_c

    _, names = open_light(config, workspace)
    keep = event_filter(agent=agent, thread=thread, kinds=keywords_of(kind), agents=names)
    show = _printer(json_out)
    stop = threading.Event()
    with opened_backend(config, workspace) as backend:
        if not follow:
            for record in backend.read_events(lines, keep, on_damaged=_damaged):
                show(record, None)
            return
        ready_for_ctrl_c("agentctl.protocol.watcher")
        try:
            # Following starts before the last lines are read, so that nothing appended in
            # between is missed; what both see is shown once (the journal's seq orders it).
            followed = backend.follow_events(keep, stop, on_damaged=_damaged)
            shown_seq = 0
            for record in backend.read_events(lines, keep, on_damaged=_damaged):
                show(record, None)
                shown_seq = _seq(record)
            for record in followed:
                if _seq(record) > shown_seq:
                    show(record, None)
        except KeyboardInterrupt:
            stop.set()


def _seq(record: dict[str, Any]) -> int:
    seq = record.get("seq")
    return seq if isinstance(seq, int) else 0


def _damaged(where: str) -> None:
    print(f"tail: skipped a damaged journal line (see `agentctl verify`): {where}", file=sys.stderr)


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
    from agentctl.audit.history import replay_thread
    from agentctl.cli.options import opened_backend
    from agentctl.cli.render_history import print_thread

    if resend:
        _resend(ident, to=to, wait_s=timeout_s if wait else None, json_out=json_out,
                config=config, workspace=workspace)  # fmt: skip
        return
    with opened_backend(config, workspace) as backend:
        thread = replay_thread(backend.history(), ident, agent=agent, since=since, until=until)
    print_thread(thread, "json" if json_out else fmt.value)


def _resend(
    ident: str, *, to: str | None, wait_s: float | None, json_out: bool, config: Any,
    workspace: Any,
) -> None:  # fmt: skip
    from agentctl.audit.resend import resend_and_compare
    from agentctl.cli.options import load_config, opened_backend
    from agentctl.cli.render import console, print_json

    with opened_backend(config, workspace) as backend:
        resent = resend_and_compare(
            backend, load_config(config), ident, to=to, wait_s=wait_s, by=cli_actor()
        )
    if json_out:
        print_json(resent.to_json())
    elif not resent.waited:
        print(resent.id)
    else:
        from agentctl.cli.render_history import compare_table

        console().print(compare_table(resent.original_id, resent.recorded, resent.id,
                                      resent.result))  # fmt: skip


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

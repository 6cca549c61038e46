"""`agentctl tail`, `agentctl replay` and `agentctl verify`: the audit trail, read back."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
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
    from agentctl.cli.options import open_light
    from agentctl.protocol.journalreader import follow as follow_journal
    from agentctl.protocol.journalreader import read_last

    ws, names = open_light(config, workspace)
    kinds = [k for value in kind or [] for k in value.split(",") if k]
    keep = event_filter(agent=agent, thread=thread, kinds=kinds, agents=names)
    show = _printer(json_out)
    if ws.transport_kind == "nats":
        _tail_stream(config, workspace, lines, keep, show, follow=follow)
        return

    def damaged(path: Path, raw: bytes) -> None:
        print(
            f"tail: {path.name}: skipped a damaged line (torn by a crash, or edited; "
            f"see `agentctl verify`): {raw[:60]!r}",
            file=sys.stderr,
        )

    for record in read_last(ws.journal_dir, lines, keep, on_damaged=damaged):
        show(record, None)
    if not follow:
        return
    stop = threading.Event()
    try:
        for entry in follow_journal(ws.journal_dir, stop=stop):
            if entry.record is not None and keep(entry.record):
                show(entry.record, entry.raw)
            elif entry.record is None and entry.raw.strip():
                print(f"tail: skipped a damaged journal line: {entry.raw[:80]!r}", file=sys.stderr)
    except KeyboardInterrupt:
        stop.set()


def _tail_stream(
    config: Any, workspace: Any, lines: int, keep: Any, show: Any, *, follow: bool
) -> None:
    """`tail` on NATS: the events subjects of the stream."""
    import collections
    import math

    from agentctl.backends.nats.reader import StreamReader
    from agentctl.cli.options import open_nats

    nats = open_nats(config, workspace)
    assert nats is not None
    reader = StreamReader(nats)
    last: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(lines, 1))
    next_seq = 1
    for record in reader.events():
        next_seq = int(record["seq"]) + 1
        if keep(record):
            last.append(record)
    for record in list(last)[-lines:] if lines else []:
        show(record, None)
    try:
        if follow:  # one consumer whose fetch waits for the next event
            for record in reader.events(start_seq=next_seq, follow_s=math.inf):
                if keep(record):
                    show(record, None)
    except KeyboardInterrupt:
        pass
    finally:
        nats.close()


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
    from agentctl.cli.options import open_light

    if json_out:
        fmt = ReplayFormat.JSON
    ws, _ = open_light(config, workspace)
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
    if ws.transport_kind == "nats":
        from agentctl.backends.nats.history import StreamHistory
        from agentctl.cli.options import open_nats

        nats = open_nats(config, workspace)
        assert nats is not None
        thread = load_thread(StreamHistory(nats), ident, keep=keep, as_of=as_of)
    else:
        thread = load_thread(ws, ident, keep=keep, as_of=as_of)
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
    from agentctl.audit.history import FileHistory, History, load_thread
    from agentctl.backends.nats.history import StreamHistory
    from agentctl.cli.options import open_full, open_nats
    from agentctl.cli.render import console, print_json
    from agentctl.flow.router import router_for, user_message
    from agentctl.model.constants import NOT_BEFORE_HEADER, REQUEUED_HEADER
    from agentctl.model.errors import AgentctlError
    from agentctl.model.ids import reply_id

    roster, ws = open_full(config, workspace)
    nats = open_nats(config, workspace)
    history: History = StreamHistory(nats) if nats is not None else FileHistory(ws)
    thread = load_thread(history, ident)
    original = thread.messages.get(ident) or next(
        (m for m in thread.roots() if m.kind == "task"), None
    )
    if original is None:
        raise AgentctlError(f"{ident}: no task in this thread to resend")
    envelope = history.envelope(original)
    if envelope is None:
        raise AgentctlError(f"{original.id}: its message file is gone; cannot resend it")
    target = to or original.to_agent or ""
    roster.agent(target)  # a clear error for an unknown agent
    headers = dict(envelope.get("headers") or {})
    # The copy starts a life of its own: no retry delay or requeue count carried over.
    for internal in (REQUEUED_HEADER, NOT_BEFORE_HEADER):
        headers.pop(internal, None)
    headers["resent_from"] = original.id
    message = user_message(
        target,
        envelope.get("content"),
        keywords=envelope.get("keywords") or [],
        priority=envelope.get("priority") or "normal",
        headers=headers,
    )
    router = router_for(ws, nats)
    router.send(message)
    if not wait:
        if json_out:
            print_json({"original": original.id, "id": message.id, "to": target})
        else:
            print(message.id)
        return
    reply = router.wait_for_reply(message, timeout_s=timeout_s)
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
    from agentctl.audit.verify import verify_workspace
    from agentctl.cli.options import open_light

    ws, _ = open_light(config, workspace)
    if ws.transport_kind == "nats":
        _verify_stream(config, workspace, json_out=json_out)
        return
    report = verify_workspace(ws)
    _print_verification(
        [str(problem) for problem in report.problems],
        f"{report.events} events in {report.segments} journal file(s), {report.files} message "
        f"files in done/ and dead/; head seq {report.head.seq} hash {report.head.hash or '-'}",
        report.to_json() if json_out else None,
        report.warnings,
    )


def _verify_stream(config: Any, workspace: Any, *, json_out: bool) -> None:
    """`verify` on NATS: the journal's sends against the stream's messages."""
    from dataclasses import asdict

    from agentctl.backends.nats.history import verify_stream
    from agentctl.cli.options import open_nats

    nats = open_nats(config, workspace)
    assert nats is not None
    try:
        report = verify_stream(nats)
    finally:
        nats.close()
    _print_verification(
        report.problems,
        f"{report.events} events, {report.messages} messages in stream {nats.stream}, each "
        "sent message stored with the digest the journal recorded",
        {**asdict(report), "ok": report.ok} if json_out else None,
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

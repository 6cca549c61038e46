"""How the audit trail is shown to people: event lines, thread trees, Mermaid, dead letters."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentctl.audit.diagram import describe, mermaid
from agentctl.cli.render import clip, console, escape_markup
from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from rich.table import Table
    from rich.tree import Tree

    from agentctl.audit.history import MessageTrace, Thread
    from agentctl.flow.routing import Candidate, RouteExplanation

Record = dict[str, Any]

_EVENT_STYLE: dict[str, str] = {
    Event.SENT: "cyan",
    Event.CLAIMED: "blue",
    Event.HANDLED: "green",
    Event.RECEIVED: "green",
    Event.FAILED: "yellow",
    Event.RETRIED: "yellow",
    Event.REQUEUED: "magenta",
    Event.DEAD: "bold red",
    Event.DISCARDED: "red",
    Event.STARTED: "dim",
    Event.RESTARTED: "yellow",
    Event.STOPPED: "dim",
    Event.EXITED: "dim",
    Event.CRASHED: "red",
    Event.KILLED: "red",
    Event.FATAL: "bold red",
    Event.FLAGGED: "yellow",
    Event.ESCALATED: "magenta",
    Event.RESOLVED: "green",
    Event.HALTED: "bold red",
    Event.RESUMED: "green",
    Event.TOOL_CALL: "dim",
    Event.RUN_ENDED: "bold",
}
_VERDICT_STYLE = {
    "pass": "green",
    "flag": "yellow",
    "block": "red",
    "escalate": "magenta",
    "halt": "bold red",
}


def event_line(record: Record) -> str:
    """One journal event as one coloured line: time, agent, event, message id, summary."""
    ts = str(record.get("ts", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    event = str(record.get("event", "?"))
    style = _EVENT_STYLE.get(event, "")
    shown_event = f"[{style}]{event:<9}[/]" if style else f"{event:<9}"
    agent = str(record.get("agent") or "-")
    message_id = str(record.get("message_id") or "-")
    text = escape_markup(describe(record))
    return f"[dim]{clock}[/] {agent:<12} {shown_event} {message_id:<32} {text}"


def _content_text(content: Any, limit: int = 100) -> str:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _offset(thread: Thread, record: Record) -> str:
    from agentctl.audit.history import event_time

    start, when = thread.started, event_time(record)
    if start is None or when is None:
        return "?"
    return f"+{(when - start).total_seconds():.3f}s"


def thread_tree(thread: Thread) -> Tree:
    """`replay`'s view: each message with its events, replies nested under their request."""
    from rich.tree import Tree

    started = thread.events[0]["ts"] if thread.events else "?"
    dead = sum(1 for m in thread.messages.values() if m.state == "dead")
    title = (
        f"[bold]thread {thread.thread_id}[/]  {len(thread.messages)} message(s)"
        + (f", [red]{dead} dead[/]" if dead else "")
        + f"  started {started}"
    )
    tree = Tree(title)
    shown: set[str] = set()
    for root in thread.roots():
        _add_message(tree, thread, root, shown)
    return tree


def _add_message(parent: Tree, thread: Thread, message: MessageTrace, shown: set[str]) -> None:
    if message.id in shown:
        return
    shown.add(message.id)
    first = message.events[0] if message.events else {}
    state_style = {"done": "green", "dead": "bold red"}.get(message.state, "yellow")
    label = (
        f"{_offset(thread, first)} [bold]{message.from_agent or '?'} -> "
        f"{message.to_agent or '?'}[/] {message.kind or ''} {message.id} "
        f"[{state_style}]{message.state}[/]"
    )
    if message.verdict:
        label += f" verdict [{_VERDICT_STYLE.get(message.verdict, '')}]{message.verdict}[/]"
    node = parent.add(label)
    if message.content_found:
        node.add(f"[dim]content:[/] {escape_markup(_content_text(message.content))}")
    for record in message.events:
        if record.get("event") == Event.SENT:
            continue
        event = str(record.get("event"))
        style = _EVENT_STYLE.get(event, "")
        summary = describe(record)
        node.add(
            f"{_offset(thread, record)} [{style}]{event}[/] by {record.get('agent')}"
            + (f": {escape_markup(summary)}" if summary else "")
        )
    for reply in thread.replies_to(message.id):
        _add_message(node, thread, reply, shown)


def route_table(candidates: list[Candidate], *, floor: float, threshold: float) -> Table:
    """`agentctl route`: every agent's score, best first."""
    from rich.table import Table

    table = Table(title="routing scores (keyword overlap with expertise)", title_justify="left")
    for column in ("agent", "score", f"--route (>= {floor:g})", f"--fanout (>= {threshold:g})"):
        table.add_column(column)
    for index, candidate in enumerate(candidates):
        routed = index == 0 and candidate.score >= floor
        table.add_row(
            candidate.name,
            f"{candidate.score:.2f}",
            "[green]yes[/]" if routed else "",
            "[green]yes[/]" if candidate.score >= threshold else "",
        )
    return table


def print_route(explained: RouteExplanation) -> None:
    """`agentctl route`: the scores, the agents left out and why, and what each mode picks."""
    out = console()
    out.print(route_table(explained.candidates, floor=explained.floor,
                          threshold=explained.threshold))  # fmt: skip
    for name, why in explained.excluded.items():
        out.print(f"[yellow]{name}[/]: never routed to: {escape_markup(why)}")
    if explained.route is None:
        out.print(f"[red]--route: no agent reaches the floor {explained.floor:g}; "
                  "nothing would be sent[/]")  # fmt: skip
    else:
        best = explained.candidates[0]
        out.print(f"--route: [bold]{best.name}[/] ({best.score:.2f})")
    fanout = ", ".join(explained.fanout) or "(nobody)"
    out.print(f"--fanout: {fanout} (threshold {explained.threshold:g})")


def print_thread(thread: Thread, fmt: str) -> None:
    """`agentctl replay`: the thread as a tree, a mermaid diagram or JSON."""
    import sys

    from agentctl.cli.render import print_json, print_note

    if fmt == "json":
        print_json(thread.to_json())
    elif fmt == "mermaid":
        sys.stdout.write(mermaid(thread))
    else:
        console().print(thread_tree(thread))
    if thread.torn_lines:
        print_note(f"{thread.torn_lines} damaged journal line(s) skipped (run `agentctl verify`)")


def compare_table(original_id: str, recorded: Any, resent_id: str, result: Any) -> Table:
    """`replay --resend --wait`: the recorded result beside the new one."""
    from rich.table import Table

    table = Table(title="recorded run vs. now", title_justify="left", show_lines=True)
    table.add_column(f"recorded ({original_id})", overflow="fold")
    table.add_column(f"now ({resent_id})", overflow="fold")

    def pretty(value: Any) -> str:
        if value is None:
            return "[dim](no recorded result)[/]"
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        return escape_markup(text)

    table.add_row(pretty(recorded), pretty(result))
    return table


def outcome_table(outcome: dict[str, Any]) -> Table:
    """A pipeline run's outcome: a row per stage agent with its verdict and summary, then why
    the run ended and where its report is."""
    from rich.table import Table

    verdict = str(outcome.get("verdict") or "")
    title = (
        f"run {outcome.get('run')} ({outcome.get('pipeline')}): "
        f"[bold]{outcome.get('outcome') or outcome.get('status')}[/], "
        f"verdict {_styled_verdict(verdict)}"
    )
    notes = []
    if outcome.get("reason"):
        notes.append(f"reason: {clip(str(outcome['reason']), 200)}")
    for stage in outcome.get("stages") or []:
        for result in (stage.get("results") or {}).values():
            if isinstance(result, dict) and result.get("report_path"):
                notes.append(f"report: {result['report_path']}")
    caption = escape_markup("\n".join(notes)) if notes else None
    table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for column in ("stage", "agent", "verdict", "summary"):
        table.add_column(column, overflow="fold")
    for stage in outcome.get("stages") or []:
        results = stage.get("results") or {}
        for agent in stage.get("agents") or []:
            answered = agent in results
            table.add_row(
                str(stage.get("stage")),
                agent,
                _styled_verdict(_verdict_of(results[agent])) if answered else "-",
                escape_markup(_summary_of(results[agent]))
                if answered
                else "[dim](no answer yet)[/]",
            )
    return table


def _styled_verdict(verdict: str) -> str:
    style = _VERDICT_STYLE.get(verdict)
    return f"[{style}]{verdict}[/]" if style else verdict


def _verdict_of(result: Any) -> str:
    from agentctl.flow.pipeline import stage_verdict

    return stage_verdict(result).value


def _summary_of(result: Any) -> str:
    if isinstance(result, dict):
        for key in ("summary", "reason", "error"):
            if result.get(key):
                return clip(str(result[key]), 100)
    return _content_text(result, limit=100)

"""The audit trail in plain text: a one-line summary of each event, and a thread as a Mermaid
sequence diagram. Plain strings, no terminal styling: the CLI, the MCP server and the dashboard
show the same."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentctl.model.vocab import Event

if TYPE_CHECKING:
    from agentctl.audit.history import Thread

Record = dict[str, Any]


def describe(record: Record) -> str:
    """A short plain-text summary of what an event says."""
    event = record.get("event")
    get = record.get
    if event == Event.SENT:
        return f"-> {get('to')} {get('kind')}: {get('summary', '')}"
    if event == Event.CLAIMED:
        return f"attempt {get('attempt')}"
    if event == Event.HANDLED:
        text = f"in {get('duration_ms')} ms"
        if get("result_id"):
            text += f" -> {get('result_id')}"
        if get("verdict"):
            text += f" verdict {get('verdict')}"
        return text
    if event == Event.FAILED:
        return (
            f"attempt {get('attempt')}/{get('max_attempts')}: {get('error_kind')}: {get('error')}"
        )
    if event == Event.TOOL_CALL:
        text = (f"{get('server') or '?'}/{get('tool')} in {get('duration_ms')} ms, "
                f"{get('arguments_bytes')} B in, {get('result_bytes')} B out")  # fmt: skip
        return text + (f", error: {get('error')}" if get("error") else "")
    if event == Event.RETRIED:
        return f"back to new/ after attempt {get('attempt')}"
    if event == Event.DEAD:
        return f"{get('error_kind')}: {get('error')}"
    if event == Event.REQUEUED:
        return f"from dead/ to new/ (was: {get('previous_error')})"
    if event == Event.RUN_STARTED:
        return f"run {get('run')} of {get('pipeline')}"
    if event == Event.STAGE_DONE:
        return f"stage {get('stage')} ({', '.join(get('agents') or [])}): {get('verdict')}"
    if event in (Event.FLAGGED, Event.ESCALATED):
        return f"stage {get('stage')}: {get('reason')}"
    if event == Event.RESOLVED:
        return f"run {get('run')}: {get('verdict')} by {get('by')}" + (
            f" ({get('note')})" if get("note") else ""
        )
    if event in (Event.RUN_RESUMED, Event.RUN_ENDED):
        return f"run {get('run')}: " + str(get("outcome") or get("verdict") or "")
    if event in (Event.HALTED, Event.RESUMED):
        return str(get("reason") or "")
    if event == Event.RELEASED:
        return f"{get('file')}: {get('reason')}"
    if event == Event.ROUTED:
        scores = ", ".join(f"{c['agent']} {c['score']:.2f}" for c in get("candidates") or [])
        return f"{get('mode')} to {', '.join(get('chosen') or [])} ({scores})"
    if event in (Event.STARTED, Event.RESTARTED):
        return f"pid {get('pid')}"
    if event in (Event.CRASHED, Event.EXITED, Event.STOPPED):
        return str(get("exit") or get("error") or "")
    return str(get("error") or "")


def mermaid(thread: Thread) -> str:
    """A Mermaid sequence diagram of the thread."""
    participants: list[str] = []
    lines: list[str] = []

    def who(name: str | None) -> str:
        name = name or "unknown"
        if name not in participants:
            participants.append(name)
        return name

    for record in thread.events:
        event = record.get("event")
        agent = who(record.get("agent"))
        if event == Event.SENT:
            arrow = "-->>" if record.get("kind") == "result" else "->>"
            text = f"{record.get('kind')} {record.get('message_id')}: {record.get('summary', '')}"
            lines.append(f"    {agent}{arrow}{who(record.get('to'))}: {_mermaid_text(text)}")
        elif event in (Event.FAILED, Event.DEAD, Event.HANDLED, Event.REQUEUED, Event.DISCARDED,
                       Event.TOOL_CALL):  # fmt: skip
            lines.append(f"    Note over {agent}: {_mermaid_text(f'{event}: {describe(record)}')}")
    head = ["sequenceDiagram"] + [f"    participant {p}" for p in participants]
    return "\n".join(head + lines) + "\n"


def _mermaid_text(text: str, limit: int = 120) -> str:
    # Mermaid ends a message at ';' or a newline, and '#' starts an entity.
    text = " ".join(text.split()).replace(";", ",").replace("#", "no. ")
    return text if len(text) <= limit else text[: limit - 1] + "…"

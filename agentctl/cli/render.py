"""Everything agentctl prints for people: the only module that formats with rich."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentctl.model.verdict import Verdict
from agentctl.model.vocab import RunStatus
from agentctl.protocol.status import parse_iso

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from agentctl.audit.overview import Overview
    from agentctl.backends.records import AgentRow
    from agentctl.config.roster import Roster
    from agentctl.model.message import AgentMessage
    from agentctl.runtime.supervisor import Supervisor

LAST_ERROR_CHARS = 40

_STATE_STYLE = {
    "idle": "green",
    "busy": "cyan",
    "starting": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "crashed": "red",
    "absent": "dim",
    "disabled": "dim",
    "running": "green",
    "backoff": "yellow",
    "exited": "dim",
    "fatal": "bold red",
    "stuck": "bold red",
}


def console(*, stderr: bool = False) -> Console:
    """A rich console (colour only on a terminal)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """Each line of `message` as `error: ...` in red on stderr."""
    out = console(stderr=True)
    for line in message.splitlines() or [message]:
        out.print(f"[bold red]error:[/] {escape_markup(line)}")


def print_note(message: str) -> None:
    """A yellow note on stderr (does not change the exit code)."""
    console(stderr=True).print(f"[yellow]note:[/] {escape_markup(message)}")


def print_json(data: Any) -> None:
    """JSON on stdout, indented, for people and jq alike."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def escape_markup(text: str) -> str:
    """`text` shown as it is, never read as rich markup."""
    from rich.markup import escape

    return escape(text)


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def _state_cell(row: AgentRow) -> str:
    # A fatal agent's next try, counted down: "fatal, retry in 58s".
    cell = _styled(row.state)
    when = parse_iso(row.next_try_at or "")
    if when is not None:
        in_s = (when - datetime.now(UTC)).total_seconds()
        cell += f", retry in {_age(in_s)}" if in_s > 0 else ", retry due"
    return cell


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _activity_cells(row: AgentRow) -> list[str]:
    """new, processing, dead, handled, failed, last error: the columns both tables share."""
    return [
        str(row.new),
        str(row.processing),
        f"[red]{row.dead_letters}[/]" if row.dead_letters else "0",
        str(row.handled),
        str(row.failed),
        # Cut, so a long error does not fold down the screen (`status --json` has it whole).
        escape_markup(clip(row.last_error or "", LAST_ERROR_CHARS)),
    ]


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis saying so."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _workspace_notes(overview: Overview) -> str:
    """Lines about the whole workspace (halted, pipeline runs, escalations), each ending in a
    newline; empty when there is nothing to say."""
    lines = []
    if overview.halted:
        lines.append(
            f"[bold red]HALTED[/]: {escape_markup(str(overview.halted.get('reason')))} "
            "(`agentctl resume` lifts it)"
        )
    runs = overview.pipelines.get("runs") or {}
    if runs:
        flagged = overview.pipelines.get("flagged") or []
        line = "pipeline runs: " + ", ".join(f"{n} {s}" for s, n in sorted(runs.items()))
        if flagged:
            line += f"; [yellow]{len(flagged)} flagged[/] (`agentctl pipeline show RUN`)"
        lines.append(line)
    open_count, overdue = overview.escalations["open"], overview.escalations["overdue"]
    if open_count:
        lines.append(
            f"escalations: {open_count} open"
            + (f", [red]{overdue} overdue[/]" if overdue else "")
            + " (`agentctl escalations`)"
        )
    return "".join(line + "\n" for line in lines)


COMPACT_BELOW_COLUMNS = 110  # narrower terminals get short headers and no borders


def listing_table(title: str, columns: list[tuple[str, bool]], *, width: int | None) -> Table:
    """A table of records: `columns` are (header, whole); a whole column (an id, a pid, a name,
    a time) never breaks in the middle, the others wrap. Below 110 columns it is drawn without
    side borders or padding, so ids fit in 80."""
    from rich import box
    from rich.table import Table

    narrow = (width if width is not None else console().width) < COMPACT_BELOW_COLUMNS
    table = (
        Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
        if narrow
        else Table(title=title, title_justify="left")
    )  # fmt: skip
    for header, whole in columns:
        if whole:
            table.add_column(header, no_wrap=True, overflow="ignore", min_width=len(header))
        else:
            table.add_column(header, overflow="fold", ratio=1)
    return table


def is_narrow(width: int | None = None) -> bool:
    """Whether tables are drawn for a narrow (under 110 columns) terminal."""
    return (width if width is not None else console().width) < COMPACT_BELOW_COLUMNS


def status_table(overview: Overview, *, width: int = 200) -> Table:
    """The `agentctl status` table (compact on a terminal narrower than 110 columns)."""
    from rich.table import Table

    sup = overview.supervisor
    caption = f"supervisor: running (pid {sup.pid})" if sup.running else "supervisor: not running"
    notes = _workspace_notes(overview)
    if notes:
        caption += "\n" + notes.rstrip("\n")
    if width < COMPACT_BELOW_COLUMNS:
        return _compact_status_table(overview, caption)
    table = Table(title=f"workspace {overview.where}", caption=caption, title_justify="left")
    for column in (
        "agent",
        "state",
        "pid",
        "alive",
        "heartbeat",
        "new",
        "processing",
        "dead",
        "handled",
        "failed",
        "last error",
    ):
        table.add_column(
            column,
            justify="right"
            if column in ("pid", "new", "processing", "dead", "handled", "failed")
            else "left",
            overflow="fold",
            no_wrap=column in ("agent", "state"),  # names are short; keep them whole
        )
    for name, row in zip(_worker_names(overview), overview.agents, strict=True):
        table.add_row(
            name,
            _state_cell(row),
            str(row.pid or "-"),
            "[green]yes[/]" if row.alive else "[red]no[/]" if row.pid else "-",
            _age(row.heartbeat_age_s),
            *_activity_cells(row),
        )
    return table


def _compact_status_table(overview: Overview, caption: str) -> Table:
    # The same facts in 80 columns: a dead process's pid is marked instead of an `alive`
    # column, headers are short, and errors are left to `--json` (or a wider terminal).
    from rich import box
    from rich.table import Table

    if any(row.last_error for row in overview.agents):
        caption += "\nlast errors: `agentctl status --json`, or a terminal 110 columns wide"
    table = Table(
        title=f"workspace {overview.where}",
        caption=caption,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("agent", "state", "pid", "beat", "new", "proc", "dead", "done", "fail"):
        table.add_column(
            column, justify="left" if column in ("agent", "state") else "right", no_wrap=True
        )
    for name, row in zip(_worker_names(overview), overview.agents, strict=True):
        pid = str(row.pid) if row.alive else f"[red]{row.pid}✗[/]" if row.pid else "-"
        new, processing, dead, handled, failed, _ = _activity_cells(row)
        table.add_row(name, _state_cell(row), pid, _age(row.heartbeat_age_s),
                      new, processing, dead, handled, failed)  # fmt: skip
    return table


def roster_table(roster: Roster, *, width: int | None = None) -> Table:
    """The `agentctl validate` table (names whole; handlers and keywords wrap)."""
    over = roster.transport.describe() or f"durability {roster.durability.value}"
    title = f"{roster.path}: {len(roster.agents)} agents, workspace {roster.workspace_path}, "
    narrow = is_narrow(width)
    table = listing_table(
        escape_markup(title + over),
        [("agent", True), ("kind", True), ("handler", False),
         ("time" if narrow else "timeout", True), ("tries" if narrow else "attempts", True),
         ("restart", True), ("expertise", False)],
        width=width,
    )  # fmt: skip
    for agent in roster.agents:
        kind = agent.handler_kind.value
        handler = getattr(agent, kind)
        if agent.llm is not None:
            shown = f"{agent.llm.model} at {agent.llm.base_url}"
            # On 80 columns the reason is the note under the table, not a tall cell.
            why = agent.llm.disabled_because()
            shown += (" (disabled)" if narrow else f" ({why})") if why else ""
        else:
            shown = " ".join(handler) if isinstance(handler, list) else str(handler)
        table.add_row(
            agent.name if agent.replicas == 1 else f"{agent.name} (x{agent.replicas})",
            kind,
            escape_markup(shown),
            f"{agent.timeout_s:g}s",
            str(agent.max_attempts),
            agent.restart.value,
            ", ".join(agent.expertise),
        )
    return table


def supervisor_table(
    supervisor: Supervisor, overview: Overview, *, width: int | None = None
) -> Table:
    """The live view of `agentctl run`: process state beside what each agent reports (under
    110 columns: short headers, the inbox counts merged, errors left to `status --json`)."""
    rows = {(row.name, row.replica): row for row in overview.agents}
    narrow = is_narrow(width)
    columns = (
        [("agent", True), ("proc", True), ("pid", True), ("rst", True), ("state", False),
         ("new/proc/dead", True), ("done", True), ("fail", True)]
        if narrow
        else [("agent", True), ("process", True), ("pid", True), ("restarts", True),
              ("state", False), ("new", True), ("processing", True), ("dead", True),
              ("handled", True), ("failed", True), ("last error", False)]
    )  # fmt: skip
    table = listing_table(f"agentctl run: {overview.where}", columns, width=width)
    table.caption = _workspace_notes(overview) + "Ctrl-C stops every agent cleanly"
    for name, proc in supervisor.agents.items():
        row = rows.get((proc.spec.name, proc.replica)) or rows[(proc.spec.name, 0)]
        cells = [name, _styled(proc.state.value), str(proc.pid or "-"), str(proc.restarts),
                 _state_cell(row)]  # fmt: skip
        new, processing, dead, handled, failed, last_error = _activity_cells(row)
        if narrow:
            table.add_row(*cells, f"{new}/{processing}/{dead}", handled, failed)
        else:
            table.add_row(*cells, new, processing, dead, handled, failed, last_error)
    return table


def _worker_names(overview: Overview) -> list[str]:
    # Workers of an agent with replicas: echo, echo[1], echo[2] (as `agentctl run` names them);
    # on NATS, when workers run on several machines, each name says where: echo[1]@host-b.
    several_hosts = len({row.host for row in overview.agents if row.host}) > 1
    names = []
    for row in overview.agents:
        name = f"{row.name}[{row.replica}]" if row.replica else row.name
        names.append(f"{name}@{row.host}" if several_hosts and row.host else name)
    return names


def print_replies(
    replies: list[AgentMessage], *, run: bool, json_out: bool, fanout: bool = False
) -> bool:
    """Print the replies `send --wait` got (a run's outcome as a table); whether all went well.

    A fan-out's replies print as one JSON object keyed by agent, however many there are.
    """
    if run:
        from agentctl.cli.render_history import outcome_table

        content = replies[0].content
        outcome = content if isinstance(content, dict) else {"outcome": content}
        print_json(outcome) if json_out else console().print(outcome_table(outcome))
        return bool(outcome.get("outcome") == RunStatus.DONE)
    if fanout or len(replies) > 1:
        print_json({r.from_agent: r.model_dump(mode="json") if json_out else r.content
                    for r in replies})  # fmt: skip
    elif json_out:
        print_json(replies[0].model_dump(mode="json"))
    else:
        content = replies[0].content
        print(content) if isinstance(content, str) else print_json(content)
    # An escalated reply is the agent saying it could not do the task.
    return not any(_escalated(reply.content) for reply in replies)


def _escalated(content: Any) -> bool:
    return isinstance(content, dict) and content.get("verdict") == Verdict.ESCALATE

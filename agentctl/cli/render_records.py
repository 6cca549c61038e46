"""The record tables: `dead list`, `pipeline list`, `escalations`. Ids, pids, names and times
stay whole at any width (`listing_table`); under 110 columns wide columns merge or go."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentctl.cli.render import escape_markup, is_narrow, listing_table

if TYPE_CHECKING:
    from rich.table import Table

    from agentctl.backends.records import DeadLetter, Escalation


def dead_table(letters: list[DeadLetter], *, width: int | None = None) -> Table:
    """`agentctl dead list` (under 110 columns the kind leads the error, to leave ids whole)."""
    narrow = is_narrow(width)
    table = listing_table(
        f"{len(letters)} dead letter(s)",
        [("agent", True), ("message id", True), ("tries" if narrow else "attempts", True)]
        + ([] if narrow else [("kind", True)])
        + [("dead at", True), ("error", False)],
        width=width,
    )
    for letter in letters:
        error = escape_markup(letter.error or "")
        kind = letter.error_kind or "-"
        table.add_row(
            letter.agent,
            letter.message_id or letter.file,
            str(letter.attempts if letter.attempts is not None else "-"),
            *([] if narrow else [kind]),
            _when(letter.dead_at, width),
            f"{kind}: {error}" if narrow else error,
        )
    return table


def _when(iso: str | None, width: int | None) -> str:
    # A whole ISO time is 27 characters: the date and seconds are enough, the time alone on 80.
    if not iso:
        return "-"
    return iso[11:19] if is_narrow(width) else iso[:19].replace("T", " ")


def runs_table(runs: list[dict[str, Any]], *, width: int | None = None) -> Table:
    """`agentctl pipeline list`."""
    table = listing_table(
        f"{len(runs)} pipeline run(s)",
        [("run", True), ("pipeline", True), ("status", True), ("stage", True),
         ("verdict", True), ("flags", True), ("started", True), ("reason", False)],
        width=width,
    )  # fmt: skip
    for run in runs:
        table.add_row(
            run["run"], run["pipeline"], run["status"], f"{run['stage']}/{run['stages']}",
            run["verdict"], str(run["flags"]), _when(str(run["started_at"] or ""), width),
            escape_markup(str(run["reason"] or "")),
        )  # fmt: skip
    return table


def escalations_table(escalations: list[Escalation], *, width: int | None = None) -> Table:
    """`agentctl escalations` (on a narrow terminal without the id column: `resolve` takes the
    run's id as well; the stage beside the pipeline, and `!` for overdue, so names stay whole)."""
    narrow = is_narrow(width)
    columns = (
        [("run", True), ("pipeline", True), ("agents", False), ("age", True), ("reason", False)]
        if narrow
        else [("id", True), ("run", True), ("pipeline", True), ("stage", True),
              ("agents", False), ("age", True), ("reason", False)]
    )  # fmt: skip
    table = listing_table(f"{len(escalations)} open escalation(s)", columns, width=width)
    # Agents wrap between names, never inside one.
    agents_column = table.columns[2 if narrow else 4]
    agents_column.min_width = max((len(a) for e in escalations for a in e.agents), default=6)
    for e in escalations:
        minutes = f"{e.age_s / 60:.0f}m"
        agents, reason = ", ".join(e.agents), escape_markup(e.reason or "")
        if narrow:
            age = minutes + ("[red]![/]" if e.overdue else "")
            table.add_row(e.run or "-", f"{e.pipeline or '-'} {e.stage}", agents, age, reason)
        else:
            age = minutes + (" [red]overdue[/]" if e.overdue else "")
            table.add_row(e.id, e.run or "-", e.pipeline or "-", str(e.stage), agents, age, reason)
    return table

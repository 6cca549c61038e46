"""`agentctl trace export`: a thread's OpenTelemetry spans, rebuilt from the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt

app = typer.Typer(help="OpenTelemetry traces of threads (docs/TRACING.md).", no_args_is_help=True)


@app.command("export")
def export(
    thread: Annotated[
        str | None, typer.Argument(metavar="[THREAD]", help="A thread id (or a message id in it).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Every thread active since: an ISO time, or 30m, 2h, 1d."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="OTLP/HTTP URL (default: OTEL_EXPORTER_OTLP_ENDPOINT)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write OTLP JSON here instead.")
    ] = None,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Send a thread's spans to an OTLP collector, or write them as OTLP JSON."""
    from agentctl.cli.options import opened_with_roster
    from agentctl.cli.render import console
    from agentctl.telemetry.export import export_trace

    with opened_with_roster(config, workspace) as (roster, backend):
        done = export_trace(
            backend, roster, thread=thread, since=since, endpoint=endpoint, output=output
        )
    console().print(
        f"{len(done.spans)} spans of {len(done.threads)} thread(s) -> {done.where}",
        markup=False,
        highlight=False,
    )

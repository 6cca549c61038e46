"""`agentctl status`: one row per agent, liveness checked against the kernel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt, positive_seconds

if TYPE_CHECKING:
    from agentctl.audit.overview import Overview

WatchOpt = Annotated[
    bool, typer.Option("--watch", "-w", help="Refresh the table until Ctrl-C (no `run` needed).")
]
IntervalOpt = Annotated[
    float, positive_seconds("With --watch: seconds between refreshes.", "--interval-s")
]


def status(
    json_out: JsonOpt = False,
    watch: WatchOpt = False,
    interval_s: IntervalOpt = 2.0,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show each agent's state, pid, liveness, heartbeat age, inbox depth and counters."""
    if watch:
        _watch(config, workspace, interval_s=interval_s)
        return
    overview = _overview(config, workspace)
    if json_out:
        from agentctl.cli.render import print_json

        print_json(overview.to_json())
        return
    from agentctl.cli.render import console, status_table

    out = console()
    out.print(status_table(overview, width=out.width))


def _overview(config: Path | None, workspace: Path | None) -> Overview:
    from agentctl.audit.overview import collect_overview
    from agentctl.backends import open_view
    from agentctl.cli.options import open_light
    from agentctl.config.rosterfile import find_config

    ws, names = open_light(config, workspace)
    backend = open_view(ws, find_config(config))
    try:
        return collect_overview(backend, names)
    finally:
        backend.close()


def _watch(config: Path | None, workspace: Path | None, *, interval_s: float) -> None:
    """Read the state afresh every `interval_s`, without running anything, until Ctrl-C: in
    place on a terminal (rich Live), else one table after another (a log, a pipe)."""
    import time

    from rich.live import Live

    from agentctl.cli.render import console, status_table

    out = console()
    try:
        if out.is_terminal:
            with Live(console=out, auto_refresh=False, screen=False) as live:
                while True:
                    live.update(status_table(_overview(config, workspace), width=out.width))
                    live.refresh()
                    time.sleep(interval_s)
        while True:
            out.print(status_table(_overview(config, workspace), width=out.width))
            out.file.flush()
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return  # the one way a watch ends: not a failure

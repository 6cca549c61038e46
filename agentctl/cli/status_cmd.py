"""`agentctl status`: one row per agent, liveness checked against the kernel."""

from __future__ import annotations

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt


def status(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Show each agent's state, pid, liveness, heartbeat age, inbox depth and counters."""
    from agentctl.audit.overview import collect_overview
    from agentctl.backends import open_view
    from agentctl.cli.options import open_light
    from agentctl.config.rosterfile import find_config

    ws, names = open_light(config, workspace)
    backend = open_view(ws, find_config(config))
    try:
        overview = collect_overview(backend, names)
    finally:
        backend.close()
    if json_out:
        from agentctl.cli.render import print_json

        print_json(overview.to_json())
        return
    from agentctl.cli.render import console, status_table

    out = console()
    out.print(status_table(overview, width=out.width))

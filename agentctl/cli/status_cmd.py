"""`agentctl status`: one row per agent, liveness checked against the kernel."""

from __future__ import annotations

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt


def status(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Show each agent's state, pid, liveness, heartbeat age, inbox depth and counters."""
    from agentctl.cli.options import open_light, open_nats
    from agentctl.overview import collect_overview

    ws, names = open_light(config, workspace)
    nats = open_nats(config, workspace) if ws.transport_kind == "nats" else None
    if nats is not None:
        from agentctl.jetstream.overview import collect_nats_overview

        overview = collect_nats_overview(nats, names)
        nats.close()
    else:
        overview = collect_overview(ws, names)
    if json_out:
        from agentctl.cli.render import print_json

        print_json(overview.to_json())
        return
    from agentctl.cli.render import console, status_table

    out = console()
    out.print(status_table(overview, width=out.width))

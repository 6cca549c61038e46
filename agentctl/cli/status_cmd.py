"""`agentctl status`: one row per agent, liveness checked against the kernel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt

if TYPE_CHECKING:
    from agentctl.audit.overview import Overview


def status(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Show each agent's state, pid, liveness, heartbeat age, inbox depth and counters."""
    from agentctl.audit.overview import collect_overview
    from agentctl.cli.options import open_light

    ws, names = open_light(config, workspace)
    if ws.transport_kind == "nats":
        overview = _nats_overview(config, workspace, names)
    else:
        overview = collect_overview(ws, names)
    if json_out:
        from agentctl.cli.render import print_json

        print_json(overview.to_json())
        return
    from agentctl.cli.render import console, status_table

    out = console()
    out.print(status_table(overview, width=out.width))


def _nats_overview(config: Path | None, workspace: Path | None, names: list[str]) -> Overview:
    """The cluster's view; this machine's own view (its workers' status files, which say
    `disconnected` while they reconnect) with a warning when the cluster cannot be reached."""
    import dataclasses

    from agentctl.audit.overview import collect_overview
    from agentctl.backends.nats.client import BusError, MissingExtraError
    from agentctl.backends.nats.overview import collect_nats_overview
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.cli.options import open_full, open_light
    from agentctl.cli.render import print_note

    roster, _ = open_full(config, workspace)
    try:
        nats = roster.open_transport(workspace, client_name="agentctl-cli")
        assert isinstance(nats, NatsTransport)
    except MissingExtraError:
        raise
    except BusError as exc:
        print_note(f"{exc}; showing this machine's workers from their own status files")
        ws, _ = open_light(config, workspace)
        local = collect_overview(ws, names)
        unreachable = {"kind": "nats", "servers": roster.transport.servers, "reachable": False}
        return dataclasses.replace(local, transport=unreachable)
    try:
        return collect_nats_overview(nats, {agent.name: agent.replicas for agent in roster.agents})
    finally:
        nats.close()

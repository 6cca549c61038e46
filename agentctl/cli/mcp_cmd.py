"""`agentctl mcp`: serve this workspace to MCP clients (agentctl/mcpserver)."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt
from agentctl.model.constants import ENV_MCP_TOKEN


def mcp(
    ctx: typer.Context,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[
        str, typer.Option("--host", help="With --http: the address to bind (beyond loopback "
                          "only with a token).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="With --http (0: any free port).")
    ] = 8765,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar=ENV_MCP_TOKEN, show_default=False,
                     help="With --http: require `Authorization: Bearer TOKEN` on every request."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Serve only the tools that look, none that act.")
    ] = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve this workspace to MCP clients: stdio by default, streamable HTTP with --http."""
    from agentctl.cli.options import opened_with_roster
    from agentctl.mcpserver import Transport, serve

    if not http:
        # Silently serving stdio would leave the user believing a port is open (or guarded).
        # A token from the environment is not the user's word for this run: it stays quiet.
        for name, option in (("host", "--host"), ("port", "--port"), ("token", "--token")):
            source = ctx.get_parameter_source(name)
            if source is not None and source.name == "COMMANDLINE":
                ctx.fail(f"{option} needs --http")
    transport = Transport(http=http, host=host, port=port, token=token or None)
    with opened_with_roster(config, workspace) as (roster, backend):
        serve(roster, backend, transport, read_only=read_only)

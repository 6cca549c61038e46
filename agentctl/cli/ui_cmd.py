"""`agentctl ui`: the local dashboard (agentctl/ui/), served until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt

ENV_UI_TOKEN = "AGENTCTL_UI_TOKEN"  # noqa: S105 - a variable's name, not a secret


def ui(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless --token).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="0 picks a free one.")
    ] = 8765,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar=ENV_UI_TOKEN, show_default=False,
                     help="The secret the URL carries [default: a new one per start]."),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:  # fmt: skip
    """Serve a local web dashboard of the workspace: agents, runs, threads, the journal, what
    waits for a person, cost. Prints its URL (with a secret token) and runs until Ctrl-C."""
    from agentctl.cli.options import load_config
    from agentctl.ui.server import serve

    serve(load_config(config), workspace, host=host, port=port, token=token,
          open_browser=open_browser)  # fmt: skip

"""`agentctl logs`: an agent's stdout and stderr, as `journalctl -u` or `kubectl logs` show them."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt


def logs(
    agent: Annotated[str, typer.Argument(help="The agent whose log to show.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines to show first.")] = 50,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show an agent's log (its stdout and stderr); with -f, follow it."""
    import threading

    from agentctl.cli.options import open_light, ready_for_ctrl_c
    from agentctl.model.errors import ConfigError
    from agentctl.model.names import validate_agent_name
    from agentctl.protocol.agentlog import follow_log, last_lines

    ws, names = open_light(config, workspace)
    validate_agent_name(agent)
    if agent not in names and not ws.log_path(agent).exists():
        raise ConfigError(
            f"no agent {agent!r} in {ws.root}; agents: {', '.join(sorted(names)) or 'none'}"
        )
    path = ws.log_path(agent)
    for line in last_lines(path, lines):
        print(line, flush=False)
    if not follow:
        return
    print(end="", flush=True)
    stop = threading.Event()
    ready_for_ctrl_c("agentctl.protocol.watcher")
    try:
        for line in follow_log(path, stop=stop):
            print(line, flush=True)
    except KeyboardInterrupt:
        stop.set()

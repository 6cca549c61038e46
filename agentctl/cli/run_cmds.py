"""`agentctl run`, `stop` and `restart`: the supervisor in the foreground, stopping it, and
asking it to start an agent again now."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt
from agentctl.model.constants import CONTROL_ANSWER_TIMEOUT_S, PIPELINE_AGENT

_REFRESH_S = 0.5


def run(
    agent: Annotated[
        list[str] | None, typer.Option("--agent", "-a", help="Run only this agent (repeatable).")
    ] = None,
    grace_s: Annotated[
        float, typer.Option("--grace-s", help="On stop, how long agents may finish their message.")
    ] = 10.0,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start the roster's agents and supervise them until Ctrl-C or SIGTERM."""
    from agentctl.audit.overview import collect_overview
    from agentctl.backends import open_backend
    from agentctl.cli.options import open_full
    from agentctl.cli.render import console
    from agentctl.model.constants import SUPERVISOR_TICK_S
    from agentctl.runtime.supervisor import Supervisor

    roster, ws = open_full(config, workspace)
    for name in agent or []:
        roster.agent(name)  # unknown names fail before anything starts
    # NATS: connect now, so a missing server is one clear line before anything starts.
    transport = open_backend(roster, workspace, client_name="supervisor")
    supervisor = Supervisor(roster, ws, agents=agent, transport=transport, grace_s=grace_s)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out = console()
    supervisor.start()
    names = list(dict.fromkeys(proc.spec.name for proc in supervisor.agents.values()))
    live = None
    if out.is_terminal:
        from rich.live import Live

        from agentctl.cli.render import supervisor_table

        # No auto-refresh thread: the supervisor forks children, and forking is only safe
        # from a single-threaded process.
        live = Live(console=out, auto_refresh=False, transient=False)
        live.start()
    try:
        next_refresh = 0.0
        ticks = 0
        while not stop.is_set():
            supervisor.tick()
            for event in supervisor.drain_events():
                out.print(f"[dim]{_clock()}[/] {event}")
            ticks += 1
            if live is not None and ticks * SUPERVISOR_TICK_S >= next_refresh:
                next_refresh = ticks * SUPERVISOR_TICK_S + _REFRESH_S
                live.update(supervisor_table(supervisor, collect_overview(ws, names)), refresh=True)
            stop.wait(SUPERVISOR_TICK_S)
        out.print(f"[dim]{_clock()}[/] stopping {len(names)} agents (grace {grace_s:g} s)")
    finally:
        supervisor.stop()
        for event in supervisor.drain_events():
            out.print(f"[dim]{_clock()}[/] {event}")
        if live is not None:
            live.update(supervisor_table(supervisor, collect_overview(ws, names)), refresh=True)
            live.stop()
        transport.close()
    out.print(f"[dim]{_clock()}[/] stopped")
    sys.exit(0)


def stop(
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="How long to wait for the supervisor to exit.")
    ] = 60.0,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Stop the supervisor running on this workspace (its agents finish their message)."""
    from agentctl.cli.options import open_light
    from agentctl.cli.render import console
    from agentctl.protocol.control import stop_supervisor

    ws, _ = open_light(config, workspace)
    pid = stop_supervisor(ws, timeout_s=timeout_s)
    console().print(f"stopped supervisor (pid {pid}) of {ws.root}")


def restart(
    agent: Annotated[str, typer.Argument(help="The agent to start again now.")],
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="How long to wait for the supervisor's answer.")
    ] = CONTROL_ANSWER_TIMEOUT_S,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start AGENT again now (a `fatal` one too, without waiting for its cool-down)."""
    from agentctl.cli.options import open_light
    from agentctl.cli.render import console
    from agentctl.model.errors import AgentctlError
    from agentctl.protocol.control import ControlAction, ask_supervisor

    ws, names = open_light(config, workspace)
    if agent not in names and agent != PIPELINE_AGENT:  # the conductor is no roster entry
        raise AgentctlError(f"{ws.root}: no agent named {agent!r} in the roster")
    for line in ask_supervisor(ws, ControlAction.RESTART, agent, timeout_s=timeout_s):
        console().print(line, markup=False, highlight=False)


def _clock() -> str:
    import time

    return time.strftime("%H:%M:%S")

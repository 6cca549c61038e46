"""`agentctl run`, `stop`, `start`, `restart` and `reload`: the supervisor in the foreground,
stopping it, and asking it to stop, start or restart one agent, or re-read the roster."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from agentctl.cli.options import ConfigOpt, WorkspaceOpt, positive_seconds
from agentctl.model.constants import CONTROL_ANSWER_TIMEOUT_S, PIPELINE_AGENT

if TYPE_CHECKING:
    from pathlib import Path

    from rich.live import Live

    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.roster import Roster
    from agentctl.protocol.control import ControlAction
    from agentctl.runtime.supervisor import Supervisor

_REFRESH_S = 0.5
AnswerTimeoutOpt = Annotated[
    float, typer.Option("--timeout-s", help="How long to wait for the supervisor's answer.")
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", "-d", help="Run in the background; return once all are up.")
]
UpTimeoutOpt = Annotated[
    float, positive_seconds("With --detach: how long the agents may take to come up.")
]
DETACH_UP_TIMEOUT_S = 30.0


def run(
    agent: Annotated[
        list[str] | None, typer.Option("--agent", "-a", help="Run only this agent (repeatable).")
    ] = None,
    grace_s: Annotated[
        float, typer.Option("--grace-s", help="On stop, how long agents may finish their message.")
    ] = 10.0,
    detach: DetachOpt = False,
    timeout_s: UpTimeoutOpt = DETACH_UP_TIMEOUT_S,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start the roster's agents and supervise them until Ctrl-C or SIGTERM."""
    from agentctl.backends import open_backend
    from agentctl.cli.options import open_full
    from agentctl.runtime.foreground import supervise
    from agentctl.runtime.supervisor import Supervisor

    roster, ws = open_full(config, workspace)
    for name in agent or []:
        roster.agent(name)  # unknown names fail before anything starts
    if detach:
        _detach(roster, ws, agent, grace_s=grace_s, timeout_s=timeout_s)
        return
    # NATS: connect now, so a missing server is one clear line before anything starts.
    transport = open_backend(roster, workspace, client_name="supervisor")
    supervisor = Supervisor(roster, ws, agents=agent, transport=transport, grace_s=grace_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    reload = threading.Event()
    signal.signal(signal.SIGHUP, lambda signum, frame: reload.set())  # as `agentctl reload`
    view = _LiveView(supervisor)
    from agentctl.telemetry.live import Team, start_live_export, team_of  # loads no SDK

    def team() -> Team:
        # What a reload left: list() copies the workers in one step (no Python code runs in
        # it, so the GIL is not let go), safe while the supervisor's thread adds some.
        running = list(supervisor.agents.values())
        return team_of(supervisor.roster, [proc.spec.name for proc in running])

    tracing = start_live_export(transport, team, lambda line: supervisor.events.append(line))
    try:
        supervise(
            supervisor,
            stop,
            report=view.report,
            refresh=view.refresh,
            refresh_s=_REFRESH_S,
            reload=reload,
        )
    finally:
        if tracing is not None:
            tracing.close()
        view.close()
        transport.close()
    view.report(["stopped"])
    sys.exit(0)


def _detach(
    roster: Roster, ws: Workspace, agents: list[str] | None, *, grace_s: float, timeout_s: float
) -> None:
    # `run` again as a daemon; it prints what `run` would to the workspace's run.log.
    from agentctl.cli.render import console
    from agentctl.runtime.daemon import start_detached

    daemon = start_detached(roster, ws, agents=agents, grace_s=grace_s, timeout_s=timeout_s)
    console().print(
        f"supervisor running (pid {daemon.pid}); log: {daemon.log}; stop: agentctl stop",
        markup=False,
        highlight=False,
    )


class _LiveView:
    """What `run` shows: each happening as a line, and on a terminal the live agents table."""

    def __init__(self, supervisor: Supervisor) -> None:
        from agentctl.cli.render import console

        self.supervisor = supervisor
        self.out = console()
        self.live: Live | None = None
        if self.out.is_terminal:
            from rich.live import Live

            # No auto-refresh thread: the supervisor forks children, and forking is only safe
            # from a single-threaded process.
            self.live = Live(console=self.out, auto_refresh=False, transient=False)
            self.live.start()

    def report(self, events: list[str]) -> None:
        for event in events:
            self.out.print(f"[dim]{_clock()}[/] {event}")

    def refresh(self) -> None:
        if self.live is None:
            return
        from agentctl.audit.overview import collect_overview
        from agentctl.cli.render import supervisor_table

        names = list(dict.fromkeys(proc.spec.name for proc in self.supervisor.agents.values()))
        overview = collect_overview(self.supervisor.workspace, names)
        self.live.update(supervisor_table(self.supervisor, overview), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def stop(
    agent: Annotated[
        str | None,
        typer.Argument(help="Stop only this agent (it stays down until `agentctl start`)."),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="How long to wait for the supervisor.")
    ] = 60.0,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Stop the supervisor running on this workspace, or only AGENT (they finish their message)."""
    from agentctl.cli.options import open_light
    from agentctl.cli.render import console
    from agentctl.protocol.control import ControlAction, stop_supervisor

    if agent is not None:
        _ask(ControlAction.STOP, agent, timeout_s, config, workspace)
        return
    ws, _ = open_light(config, workspace)
    pid = stop_supervisor(ws, timeout_s=timeout_s)
    console().print(f"stopped supervisor (pid {pid}) of {ws.root}")


def start(
    agent: Annotated[str, typer.Argument(help="The stopped agent to start.")],
    timeout_s: AnswerTimeoutOpt = CONTROL_ANSWER_TIMEOUT_S,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start AGENT again after `agentctl stop AGENT` (while `run` runs)."""
    from agentctl.protocol.control import ControlAction

    _ask(ControlAction.START, agent, timeout_s, config, workspace)


def restart(
    agent: Annotated[str, typer.Argument(help="The agent to stop and start again.")],
    timeout_s: AnswerTimeoutOpt = CONTROL_ANSWER_TIMEOUT_S,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Restart AGENT (while `run` runs): a running one finishes its message in hand, stops and
    starts again; a stopped or `fatal` one starts now, without waiting for its cool-down."""
    from agentctl.protocol.control import ControlAction

    _ask(ControlAction.RESTART, agent, timeout_s, config, workspace)


def reload(
    timeout_s: AnswerTimeoutOpt = CONTROL_ANSWER_TIMEOUT_S,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Re-read the roster while `run` runs: start added agents, stop removed ones, restart
    changed ones (a bad roster changes nothing). SIGHUP to `run` does the same."""
    from agentctl.protocol.control import ControlAction

    _ask(ControlAction.RELOAD, None, timeout_s, config, workspace)


def _ask(
    action: ControlAction,
    agent: str | None,
    timeout_s: float,
    config: Path | None,
    workspace: Path | None,
) -> None:
    # Ask the running supervisor to act (on `agent`, if one is named) and print its answer.
    from agentctl.cli.options import open_light
    from agentctl.cli.render import console
    from agentctl.model.errors import AgentctlError
    from agentctl.protocol.control import ask_supervisor

    ws, names = open_light(config, workspace)
    # The pipeline conductor is no roster entry, but the supervisor runs it.
    if agent is not None and agent not in names and agent != PIPELINE_AGENT:
        raise AgentctlError(f"{ws.root}: no agent named {agent!r} in the roster")
    for line in ask_supervisor(ws, action, agent, timeout_s=timeout_s):
        console().print(line, markup=False, highlight=False)


def _clock() -> str:
    import time

    return time.strftime("%H:%M:%S")

"""What a running supervisor does when a command asks it to act (`agentctl restart AGENT`).

Commands leave requests in the workspace's control directory (protocol/control.py); the
supervisor serves them on each tick, from its own loop, so an action never races a restart or
a reap. One method per ControlAction, listed in `actions()`: a new action (`stop AGENT`, `start
AGENT`, `reload`) is one more method and one more entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agentctl.model.errors import AgentctlError
from agentctl.protocol.control import ControlAction, serve_requests
from agentctl.runtime.agentprocess import AgentProcess, ProcState

if TYPE_CHECKING:
    from agentctl.runtime.supervisor import Supervisor

Action = Callable[[str], list[str]]  # an agent's name -> the lines of the answer


class Requests:
    """A supervisor's answers to control requests: each action's lines, or its refusal."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def actions(self) -> dict[ControlAction, Action]:
        """What this supervisor can be asked, and the method that does each."""
        return {ControlAction.RESTART: self.restart}

    def serve(self) -> None:
        """Act on every waiting request and answer it."""
        try:
            serve_requests(self.supervisor.workspace, self.actions())
        except OSError as exc:  # a full disk must not take the supervisor down; retried next tick
            self.supervisor.events.append(f"cannot answer a request: {exc}")

    def restart(self, name: str) -> list[str]:
        """Start every worker of agent `name` now, clearing `fatal`, backoff and cool-down; one
        line per worker. AgentctlError if this supervisor does not run that agent."""
        lines = []
        for key, proc in self._workers_of(name):
            if proc.state is ProcState.RUNNING:
                lines.append(f"{key}: already running (pid {proc.pid})")
                continue
            cause = f"agentctl restart ({proc.state.value})"
            self.supervisor.start_afresh(proc, times_fatal=0, cause=cause)
            lines.append(
                f"{key}: restarted (pid {proc.pid})"
                if proc.pid
                else f"{key}: could not start; retrying with backoff (see `agentctl tail`)"
            )
        return lines

    def _workers_of(self, name: str) -> list[tuple[str, AgentProcess]]:
        # Every replica of the agent, by its key in the live view (`name` or `name[i]`).
        workers = [(key, p) for key, p in self.supervisor.agents.items() if p.spec.name == name]
        if not workers:
            raise AgentctlError(f"{name}: not run by this supervisor (see `agentctl run --agent`)")
        return workers

"""What a running supervisor does when a command asks it to act (`agentctl restart AGENT`,
`stop AGENT`, `start AGENT`, `reload`: runtime/reload.py).

Commands leave requests in the workspace's control directory (protocol/control.py); the
supervisor serves them on each tick, from its own loop, so an action never races a restart or
a reap. One method per ControlAction, listed in `actions()`: a new action is one more method
and one more entry there.

Stopping one agent never blocks that loop: the agent gets SIGTERM and is `stopping` until it
exits (it finishes its message in hand) or its grace ends (SIGKILL, and what it had in hand
goes back to new/); each tick looks (`finish_stops`). A stopped agent stays down: the tick
restarts only agents in backoff or fatal. `restart AGENT` of a running agent is that same stop
followed by a start once the worker has exited (as `systemctl restart`), never both at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentctl.model.errors import AgentctlError
from agentctl.model.vocab import Event
from agentctl.protocol.control import ControlAction, serve_requests
from agentctl.protocol.status import AgentState, AgentStatus, read_status
from agentctl.runtime.agentprocess import AgentProcess, ProcState, describe_exit, signal_group
from agentctl.runtime.reload import Reloader

if TYPE_CHECKING:
    from agentctl.runtime.supervisor import Supervisor

Action = Callable[[str | None], list[str]]  # an agent's name (None: none named) -> answer lines


class Requests:
    """A supervisor's answers to control requests: each action's lines, or its refusal."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.reloader = Reloader(self)

    def actions(self) -> dict[ControlAction, Action]:
        """What this supervisor can be asked, and the method that does each."""
        return {
            ControlAction.RESTART: lambda agent: self.restart(_named(agent)),
            ControlAction.STOP: lambda agent: self.stop(_named(agent)),
            ControlAction.START: lambda agent: self.start(_named(agent)),
            ControlAction.RELOAD: lambda _agent: self.reloader.reload(),
        }

    def serve(self) -> None:
        """Act on every waiting request and answer it; finish the stops under way."""
        try:
            serve_requests(self.supervisor.workspace, self.actions())
        except OSError as exc:  # a full disk must not take the supervisor down; retried next tick
            self.supervisor.events.append(f"cannot answer a request: {exc}")
        self.finish_stops()
        self.reloader.finish()

    def reload_lines(self) -> list[str]:
        """Reload the roster (on SIGHUP): the lines to show, or why nothing changed."""
        try:
            return [f"reload: {line}" for line in self.reloader.reload()]
        except AgentctlError as exc:
            return [f"reload: error: {exc}"]

    def restart(self, name: str) -> list[str]:
        """Restart every worker of agent `name` as `systemctl restart` does: a running one stops
        as with `stop` (it finishes its message in hand) and starts again once it has exited; one
        that is down (fatal, in backoff, stopped, exited) starts now, its backoff and cool-down
        cleared. One line per worker. AgentctlError if this supervisor does not run that agent."""
        lines = []
        for key, proc in self._workers_of(name):
            if proc.state in (ProcState.RUNNING, ProcState.STOPPING) and not proc.retired:
                lines.append(self._stop_worker(key, proc, then_start=True))
            else:
                lines.append(self._start_worker(key, proc, "restart"))
        return lines

    def start(self, name: str) -> list[str]:
        """Start every worker of agent `name` that is down (stopped, fatal, exited); one line
        per worker."""
        return [self._start_worker(key, proc, "start") for key, proc in self._workers_of(name)]

    def stop(self, name: str) -> list[str]:
        """Stop every worker of agent `name` as the supervisor's own stop does (SIGTERM: it
        finishes its message in hand; SIGKILL after `grace_s`) and keep it down (a restart
        under way is called off); one line per worker."""
        return [self._stop_worker(key, proc) for key, proc in self._workers_of(name)]

    def _stop_worker(self, key: str, proc: AgentProcess, *, then_start: bool = False) -> str:
        supervisor = self.supervisor
        proc.restart_when_stopped = then_start  # finish_stops starts it again
        again = ", then starts again" if then_start else ""
        if proc.state is ProcState.RUNNING and proc.popen is not None:
            signal_group(proc, signal.SIGTERM)
            proc.state = ProcState.STOPPING
            proc.stop_by = supervisor.clock.monotonic() + supervisor.grace_s
            verb = "restarting" if then_start else "stopping"
            return (
                f"{key}: {verb} (pid {proc.popen.pid}); it finishes its message in hand "
                f"(grace {supervisor.grace_s:g} s){again}"
            )
        if proc.state in (ProcState.STOPPING, ProcState.STOPPED):
            return f"{key}: already {proc.state.value}{again}"
        # backoff, fatal or exited: no process to stop, only a restart to cancel
        was = proc.state.value
        proc.state = ProcState.STOPPED
        self._record_stopped(proc, None)
        supervisor.note(proc.spec.name, Event.STOPPED, f"stopped (was {was})")
        return f"{key}: stopped (was {was})"

    def finish_stops(self) -> None:
        """Mark each stopping worker that has exited stopped; kill one whose grace is over."""
        supervisor = self.supervisor
        now = supervisor.clock.monotonic()
        for proc in supervisor.agents.values():
            if proc.state is not ProcState.STOPPING or proc.popen is None:
                continue
            returncode = proc.popen.poll()
            if returncode is None and now < proc.stop_by:
                continue
            if returncode is None:
                text = f"still running after {supervisor.grace_s:g} s; killed"
                supervisor.note(proc.spec.name, Event.KILLED, text)
                signal_group(proc, signal.SIGKILL)
                returncode = proc.popen.wait()
                supervisor.release_in_hand(proc)
            signal_group(proc, signal.SIGKILL)  # anything the agent left in its group
            proc.state = ProcState.STOPPED
            self._record_stopped(proc, returncode)
            exit_text = describe_exit(returncode)
            supervisor.note(proc.spec.name, Event.STOPPED, f"stopped ({exit_text})", exit=exit_text)
            if proc.restart_when_stopped and not proc.retired:  # a reload decides a retired one
                proc.restart_when_stopped = False
                cause = "agentctl restart (running)"
                supervisor.start_afresh(proc, times_fatal=0, cause=cause)

    def _start_worker(self, key: str, proc: AgentProcess, verb: str) -> str:
        if proc.state is ProcState.RUNNING:
            return f"{key}: already running (pid {proc.pid})"
        if proc.state is ProcState.STOPPING:
            if proc.restart_when_stopped:
                return f"{key}: restarting; it starts again once stopped"
            return f"{key}: still stopping; `agentctl start {proc.spec.name}` once it stopped"
        cause = f"agentctl {verb} ({proc.state.value})"
        self.supervisor.start_afresh(proc, times_fatal=0, cause=cause)
        if proc.pid:
            return f"{key}: {verb}ed (pid {proc.pid})"
        return f"{key}: could not start; retrying with backoff (see `agentctl tail`)"

    def _record_stopped(self, proc: AgentProcess, returncode: int | None) -> None:
        # `status` shows it stopped, whatever its exit (a `command:` agent may die of SIGTERM).
        path = self.supervisor.workspace.status_path(proc.spec.name, proc.replica)
        status = read_status(path) or AgentStatus(agent=proc.spec.name, replica=proc.replica)
        status.state = AgentState.STOPPED
        status.current_message_id = None
        status.next_try_at = None
        if returncode is not None:
            status.exit_code = returncode
        self.supervisor.record_status(proc, status)

    def _workers_of(self, name: str) -> list[tuple[str, AgentProcess]]:
        # Every replica of the agent, by its key in the live view (`name` or `name[i]`).
        workers = [(key, p) for key, p in self.supervisor.agents.items() if p.spec.name == name]
        if not workers:
            raise AgentctlError(f"{name}: not run by this supervisor (see `agentctl run --agent`)")
        return workers


def _named(agent: str | None) -> str:
    # serve_requests refuses a request that names no agent for an action that needs one.
    assert agent is not None
    return agent

"""Which workers a supervisor runs from a roster, and `agentctl reload` (or SIGHUP): re-read
the roster while running and bring the workers in line with it.

A reload is all or nothing up to the point where it acts: the roster is read and validated
first, and a bad one changes nothing (the refusal says why). Then agents no longer wanted stop
gracefully and are forgotten, changed ones (their spec differs) stop gracefully and start
again from the new spec once their old workers are gone (never both at once: they share
status.json), added ones start, and unchanged ones are left alone.

The pipeline conductor reads `pipelines:` (stages, `finally`, budgets) when its worker starts,
so a reload that changes them restarts it as a changed agent is restarted, rather than have
the conductor watch the roster file: the same graceful stop, and a roster it could read is
always one the reload validated. Its runs are on disk and taken up where they were when it
starts (runtime/conductor.py, `on_start`); a run keeps the stages it started with.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from agentctl.config.agentspec import AgentSpec
from agentctl.config.roster import Roster, load_roster
from agentctl.model.constants import PIPELINE_AGENT
from agentctl.model.errors import AgentctlError
from agentctl.runtime.agentprocess import AgentProcess, ProcState

if TYPE_CHECKING:
    from agentctl.runtime.requests import Requests


def names_to_run(
    roster: Roster, only: Collection[str] | None, disabled: Collection[str]
) -> list[str]:
    """The agents a supervisor runs: `only` (`run --agent`) or the whole roster with the
    pipeline conductor when pipelines are declared, less the disabled ones."""
    if only:
        names = [name for name in only if name in roster.names or name == PIPELINE_AGENT]
    else:
        names = roster.names + ([PIPELINE_AGENT] if roster.pipelines else [])
    return [name for name in names if name not in disabled]


def _why_restart(
    name: str, spec: AgentSpec, new_spec: AgentSpec, old: Roster, new: Roster
) -> str | None:
    """Why a reload restarts a running agent, if it does: its entry changed, or (the
    conductor, whose spec is always the same) the pipelines it reads at start changed."""
    if new_spec != spec:
        return "changed"
    if name == PIPELINE_AGENT and new.pipelines != old.pipelines:
        return "pipelines changed"
    return None


def workers_of(spec: AgentSpec) -> dict[str, AgentProcess]:
    """One AgentProcess per replica, by its key in the live view (`name` or `name[i]`)."""
    return {
        spec.name if replica == 0 else f"{spec.name}[{replica}]": AgentProcess(spec, replica)
        for replica in range(spec.replicas)
    }


class Reloader:
    """A supervisor's reloads: the changes under way, finished on each tick."""

    def __init__(self, requests: Requests) -> None:
        self.requests = requests
        self.waiting: dict[str, AgentSpec] = {}  # changed agents: start once the old ones stop

    def reload(self) -> list[str]:
        """Re-read the roster and apply it; one line per agent that changes.
        AgentctlError (nothing changed) when the roster is bad or needs a new `run`."""
        supervisor = self.requests.supervisor
        path = supervisor.roster.path
        if path is None:
            raise AgentctlError("this supervisor's roster was not read from a file")
        try:
            roster = load_roster(path)
        except AgentctlError as exc:  # one line: the roster's problems, joined
            raise AgentctlError("; ".join(str(exc).splitlines()) + "; nothing changed") from None
        old = supervisor.roster
        if roster.workspace_path != old.workspace_path or roster.transport != old.transport:
            raise AgentctlError(
                f"{path}: the workspace or transport changed; nothing changed "
                "(stop and start `agentctl run` for that)"
            )
        disabled = roster.disabled_agents()
        wanted = {n: roster.agent(n) for n in names_to_run(roster, supervisor.only, disabled)}
        current = {p.spec.name: p.spec for p in supervisor.agents.values() if not p.retired}
        supervisor.roster, supervisor.disabled = roster, disabled
        lines = []
        for name, spec in current.items():
            if name not in wanted:
                lines += self._retire(name)
            elif why := _why_restart(name, spec, wanted[name], old, roster):
                self._retire(name)
                self.waiting[name] = wanted[name]
                lines.append(f"{name}: restarting ({why})")
        for name in [n for n in self.waiting if n not in wanted]:
            del self.waiting[name]  # changed, then removed before its old workers stopped
        for name, spec in wanted.items():
            if name in current:
                continue
            if any(proc.spec.name == name for proc in supervisor.agents.values()):
                self.waiting[name] = spec  # its old workers are still stopping
                lines.append(f"{name}: starts once its old workers have stopped")
            else:
                lines += self._add(spec)
        self.finish()
        return lines or ["the roster is unchanged"]

    def finish(self) -> None:
        """Forget retired workers once stopped; start the new spec of a changed agent once none
        of its old workers is left."""
        agents = self.requests.supervisor.agents
        for key, proc in list(agents.items()):
            if proc.retired and proc.state is not ProcState.STOPPING:
                if proc.log_file is not None:
                    proc.log_file.close()
                del agents[key]
        for name, spec in list(self.waiting.items()):
            if all(proc.spec.name != name for proc in agents.values()):
                del self.waiting[name]
                self._add(spec)

    def _retire(self, name: str) -> list[str]:
        lines = self.requests.stop(name)
        for proc in self.requests.supervisor.agents.values():
            if proc.spec.name == name:
                proc.retired = True
        return lines

    def _add(self, spec: AgentSpec) -> list[str]:
        supervisor = self.requests.supervisor
        lines = []
        for key, proc in workers_of(spec).items():
            supervisor.agents[key] = proc
            supervisor.launch(proc)
            started = f"started (pid {proc.pid})" if proc.pid else "could not start; retrying"
            lines.append(f"{key}: {started}")
        return lines

"""`agentctl run --detach`: the supervisor as a daemon.

The daemon is agentctl's own `run` started again as a new session, not a fork of this process:
`run` forks its agents, and forking is only safe from a single-threaded process, which a fresh
interpreter is. We return once every agent it runs is up, so a script can send work right after.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agentctl.backends.file.workspace import Workspace
from agentctl.config.roster import Roster
from agentctl.model.errors import SupervisorError
from agentctl.protocol.control import supervisor_info
from agentctl.protocol.status import AgentState, iso_now, read_status
from agentctl.runtime.reload import names_to_run, workers_of

RUN_LOG = "run.log"
_POLL_S = 0.05
# A `command:` agent shows `running` as soon as its process exists, so one that fails at once
# looks up for a moment: it counts as up once it ran this long (as pm2's `min_uptime`).
_COMMAND_SETTLE_S = 1.0


@dataclass(frozen=True)
class Detached:
    """The daemon started by `start_detached`: its pid and where it logs."""

    pid: int
    log: Path


def start_detached(
    roster: Roster,
    workspace: Workspace,
    *,
    agents: list[str] | None,
    grace_s: float,
    timeout_s: float,
) -> Detached:
    """Start `agentctl run` in the background and wait until each of its agents is up.

    Raises SupervisorError (with the daemon's own `error:` line, e.g. "already running") if it
    exits first, or, after stopping it, if some agent is not up within `timeout_s`.
    """
    log = workspace.ensure_control_dir() / RUN_LOG
    command = [sys.executable, "-m", "agentctl", "run", "--config", str(roster.path)]
    command += ["--workspace", str(workspace.root), "--grace-s", f"{grace_s:g}"]
    for name in agents or []:
        command += ["--agent", name]
    workers = _workers(roster, agents)
    since = iso_now()  # a status.json older than this is a previous run's
    with log.open("ab") as out:
        offset = out.tell()
        # A new session: the daemon outlives this shell, and Ctrl-C here does not reach it.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline_s = time.monotonic() + timeout_s
    running_since: dict[tuple[str, int, int], float] = {}  # (agent, replica, pid): first seen
    while True:
        if proc.poll() is not None:
            raise SupervisorError(_why_it_exited(log, offset, proc.returncode))
        down = _not_up(workspace, workers, since, running_since)
        if not down and supervisor_info(workspace).pid == proc.pid:
            return Detached(pid=proc.pid, log=log)
        if time.monotonic() > deadline_s:
            _stop(proc, grace_s)
            raise SupervisorError(
                f"not up within {timeout_s:g} s: {', '.join(down) or 'the supervisor'}; "
                f"stopped the supervisor (pid {proc.pid}); see {log}"
            )
        time.sleep(_POLL_S)


def _workers(roster: Roster, agents: list[str] | None) -> list[tuple[str, int]]:
    # (agent, replica) for each worker `run` starts; the conductor is no roster agent.
    names = names_to_run(roster, agents, roster.disabled_agents())
    return [
        (spec.name, proc.replica)
        for spec in roster.agents
        if spec.name in names
        for proc in workers_of(spec).values()
    ]


def _not_up(
    workspace: Workspace,
    workers: list[tuple[str, int]],
    since: str,
    running_since: dict[tuple[str, int, int], float],
) -> list[str]:
    # The workers not up yet, each with its state.
    down = []
    for name, replica in workers:
        status = read_status(workspace.status_path(name, replica))
        if status is None or status.started_at < since:  # none yet, or a previous run's
            state = "no status"
        elif status.state == AgentState.RUNNING:
            first_s = running_since.setdefault((name, replica, status.pid), time.monotonic())
            if time.monotonic() - first_s >= _COMMAND_SETTLE_S:
                continue
            state = "starting"
        elif status.state == AgentState.IDLE:
            continue
        else:
            state = status.state
        down.append(f"{name}{f'[{replica}]' if replica else ''} ({state})")
    return down


def _why_it_exited(log: Path, offset: int, returncode: int) -> str:
    # The daemon's own `error:` line says it best (a bad roster, "already running").
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    return f"the supervisor exited (code {returncode}) before its agents were up; see {log}"


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    proc.terminate()  # `run` stops its agents on SIGTERM
    try:
        proc.wait(timeout=grace_s + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

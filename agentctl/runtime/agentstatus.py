"""What the supervisor writes in an agent's status.json when the worker cannot: after it
exited, while it is fatal, and for `command` agents, which may write none of their own."""

from __future__ import annotations

from agentctl.backends.file.workspace import Workspace
from agentctl.config.agentspec import HandlerKind
from agentctl.model.constants import LOG_TAIL_LINES
from agentctl.protocol.status import (
    AgentState,
    AgentStatus,
    iso_now,
    read_status,
    recount_handled,
)
from agentctl.runtime.agentprocess import AgentProcess, describe_exit, log_tail


def recount_of(workspace: Workspace, proc: AgentProcess) -> None:
    """Recount a worker's handled messages from its done/ (one killed with SIGKILL never wrote
    its last counts); a `command` agent's inbox is its own business."""
    if proc.spec.handler_kind is not HandlerKind.COMMAND:
        path = workspace.status_path(proc.spec.name, proc.replica)
        recount_handled(path, workspace.mailbox(proc.spec.name).done)


def _recorded(workspace: Workspace, proc: AgentProcess) -> AgentStatus:
    path = workspace.status_path(proc.spec.name, proc.replica)
    return read_status(path) or AgentStatus(agent=proc.spec.name, replica=proc.replica)


def fatal_status(
    workspace: Workspace, proc: AgentProcess, reason: str, next_try_at: str | None
) -> AgentStatus:
    """The status of an agent down for its cool-down: why, until when, the end of its log."""
    status = _recorded(workspace, proc)
    status.state = AgentState.FATAL
    status.last_error = reason
    status.next_try_at = next_try_at
    status.log_tail = log_tail(workspace.log_path(proc.spec.name), LOG_TAIL_LINES)
    return status


def exit_status(workspace: Workspace, proc: AgentProcess, returncode: int) -> AgentStatus:
    """The status of an agent whose process exited with `returncode`."""
    status = _recorded(workspace, proc)
    if returncode != 0 or status.state not in (AgentState.STOPPED,):
        status.state = AgentState.CRASHED if returncode != 0 else AgentState.STOPPED
        status.current_message_id = None
    status.exit_code = returncode
    if returncode != 0:
        status.last_error = f"process {describe_exit(returncode)}"
    status.write_error = None  # it no longer writes, so it waits for nothing
    return status


def command_status(proc: AgentProcess, state: AgentState) -> AgentStatus:
    """What we know of a running `command` agent: its process, and no heartbeat (the agent
    keeps one only if it writes its own status.json, which then replaces this one)."""
    assert proc.popen is not None
    ref = proc.ref
    return AgentStatus(
        agent=proc.spec.name,
        state=state,
        pid=proc.popen.pid,
        pid_start_ticks=ref.start_ticks if ref else 0,
        started_at=iso_now(),
        heartbeat_at="",  # none: a heartbeat would be ours, not the agent's
    )

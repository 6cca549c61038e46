"""The stuck check: how long a live worker's heartbeat has been silent, past its limit."""

from __future__ import annotations

from datetime import datetime

from agentctl.backends.file.workspace import Workspace
from agentctl.config.agentspec import HandlerKind
from agentctl.protocol.status import LIVE_STATES, parse_iso, read_status
from agentctl.runtime.agentprocess import AgentProcess


def stuck_for_s(workspace: Workspace, proc: AgentProcess, now: datetime) -> float | None:
    """Seconds the worker `proc` has not beaten at `now`, when that is over its `stuck_after_s`;
    None while it beats, or when it is not ours to judge (`command` agents write no heartbeat
    of theirs; a status of another process or of a stopped worker says nothing)."""
    if proc.spec.handler_kind is HandlerKind.COMMAND or proc.popen is None:
        return None
    status = read_status(workspace.status_path(proc.spec.name, proc.replica))
    if status is None or status.pid != proc.popen.pid or status.state not in LIVE_STATES:
        return None
    heartbeat = parse_iso(status.heartbeat_at)
    if heartbeat is None:
        return None
    silent_s = (now - heartbeat).total_seconds()
    return silent_s if silent_s > status.stuck_after_s else None

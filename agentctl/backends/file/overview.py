"""What `agentctl status` shows of the file backend's workers: each one's recorded status,
checked against the kernel, and its inbox's depth.

Standard library only (plus our own modules that are): `status` must start fast.
"""

from __future__ import annotations

import os
import re
from datetime import datetime

from agentctl.backends.file.workspace import Workspace
from agentctl.backends.records import AgentRow, row_of
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import LIVE_STATES, AgentState, AgentStatus, parse_iso, read_status
from agentctl.protocol.writeretry import disk_error_label

_REPLICA_STATUS = re.compile(r"status\.([1-9][0-9]*)\.json")
STUCK = "stuck"  # shown instead of the recorded state when a live worker's heartbeat stopped


def worker_rows(workspace: Workspace, names: list[str], now: datetime) -> list[AgentRow]:
    """One row per worker of each agent in `names`, by agent then replica."""
    return [row for name in names for row in _rows(workspace, name, now)]


def _rows(workspace: Workspace, name: str, now: datetime) -> list[AgentRow]:
    # status.json, then status.N.json of the agent's other workers (`replicas: N`, NATS).
    rows = [_row(workspace, name, now)]
    try:
        files = os.listdir(workspace.agent_dir(name))
    except OSError:
        return rows
    for file_name in files:
        match = _REPLICA_STATUS.fullmatch(file_name)
        if match:
            rows.append(_row(workspace, name, now, int(match.group(1))))
    rows.sort(key=lambda row: row.replica)
    return rows


def _row(workspace: Workspace, name: str, now: datetime, replica: int = 0) -> AgentRow:
    found = read_status(workspace.status_path(name, replica))
    status = found or AgentStatus(agent=name)
    status.agent = name  # the row is the roster's agent, whatever a damaged file says
    # Anything on record counts: a worker that died before writing its own status still has
    # the supervisor's (crashed, fatal) to show.
    recorded = found is not None and (status.pid > 0 or status.state is not AgentState.STARTING)
    depth = workspace.mailbox(name).depth()
    heartbeat = parse_iso(status.heartbeat_at)
    age_s = (now - heartbeat).total_seconds() if heartbeat else None
    alive = status.pid > 0 and ProcessRef(status.pid, status.pid_start_ticks, status.pid).is_alive()
    state = status.state.value if recorded else "absent"
    if name in workspace.disabled and not alive:
        state = "disabled"  # an llm: agent whose endpoint is not set here
    live = alive and status.state in LIVE_STATES
    if live and status.write_error:
        state = disk_error_label(status.write_error)  # waiting for space, not stuck
    elif live and age_s is not None and age_s > status.stuck_after_s:
        state = STUCK  # alive, but its heartbeat stopped: wedged
    return row_of(status, state, alive, age_s, (depth.new, depth.processing, depth.dead), replica)

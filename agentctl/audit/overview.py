"""What `agentctl status` reports: each agent's recorded status, checked against the kernel.

Standard library only (plus our own modules that are): `status` must start fast.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentctl.backends.file.workspace import Workspace
from agentctl.model.constants import PIPELINE_AGENT
from agentctl.protocol.control import SupervisorInfo, supervisor_info
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import LIVE_STATES, AgentState, AgentStatus, parse_iso, read_status
from agentctl.protocol.writeretry import disk_error_label

log = logging.getLogger(__name__)

_REPLICA_STATUS = re.compile(r"status\.([1-9][0-9]*)\.json")
STUCK = "stuck"  # shown instead of the recorded state when a live worker's heartbeat stopped


@dataclass(frozen=True)
class AgentRow:
    """One line of `agentctl status`."""

    name: str
    state: str  # as the agent last wrote it, or "absent" if it never ran
    pid: int | None
    alive: bool  # checked by pid and start time, not trusted from the file
    heartbeat_age_s: float | None
    started_at: str | None
    current_message_id: str | None
    new: int
    processing: int
    dead_letters: int
    handled: int
    failed: int
    last_error: str | None
    log_tail: list[str]
    replica: int = 0  # which worker of the agent (`replicas: N`)
    host: str | None = None  # NATS: the machine the worker runs on
    # Why it does not progress while alive: a write the disk refuses (`disk full: ...`).
    write_error: str | None = None
    next_try_at: str | None = None  # fatal: when the running supervisor tries it again

    def to_json(self) -> dict[str, Any]:
        """The documented `status --json` form of an agent."""
        data = asdict(self)
        data["inbox"] = {
            "new": data.pop("new"),
            "processing": data.pop("processing"),
            "dead": data.pop("dead_letters"),
        }
        return data


@dataclass(frozen=True)
class Overview:
    """The workspace, its supervisor and its agents."""

    workspace: str
    supervisor: SupervisorInfo
    agents: list[AgentRow]
    halted: dict[str, Any] | None  # why no agent claims new work, while halted
    escalations: dict[str, int]  # {"open": N, "overdue": M}
    pipelines: dict[str, Any]  # run counts by status, and the flagged runs to review
    # {"kind": "file"}, or {"kind": "nats", "servers": [...], "reachable": bool}: when the
    # cluster cannot be reached, the rows are this machine's workers' own status files.
    transport: dict[str, Any] = field(default_factory=lambda: {"kind": "file"})

    @property
    def where(self) -> str:
        """The workspace, and the cluster when the transport is NATS."""
        if self.transport.get("kind") != "nats":
            return self.workspace
        servers = ", ".join(self.transport.get("servers") or [])
        seen = "" if self.transport.get("reachable") else "; unreachable: this machine's view"
        return f"{self.workspace} (nats: {servers}{seen})"

    def to_json(self) -> dict[str, Any]:
        """The documented `status --json` document."""
        return {
            "workspace": self.workspace,
            "transport": self.transport,
            "supervisor": asdict(self.supervisor),
            "halted": self.halted,
            "escalations": self.escalations,
            "pipelines": self.pipelines,
            "agents": [row.to_json() for row in self.agents],
        }


def collect_overview(workspace: Workspace, names: list[str]) -> Overview:
    """Read every agent's status and inbox depth."""
    from agentctl.flow.escalation import open_escalations
    from agentctl.flow.halt import halted_state

    now = datetime.now(UTC)
    if PIPELINE_AGENT not in names and workspace.has_agent(PIPELINE_AGENT):
        names = [*names, PIPELINE_AGENT]  # the conductor runs beside the roster's agents
    escalations = open_escalations(workspace, overdue_after_s=workspace.escalation_overdue_s)
    supervisor = supervisor_info(workspace)
    rows = [row for name in names for row in _rows(workspace, name, now)]
    if not supervisor.running:  # a next try that nobody will make is no next try
        rows = [replace(row, next_try_at=None) if row.next_try_at else row for row in rows]
    return Overview(
        workspace=str(workspace.root),
        supervisor=supervisor,
        agents=rows,
        halted=halted_state(workspace),
        escalations={
            "open": len(escalations),
            "overdue": sum(1 for e in escalations if e.overdue),
        },
        pipelines=pipeline_summary(workspace),
    )


def pipeline_summary(workspace: Workspace) -> dict[str, Any]:
    """How many runs are in each status, and which runs carry flags for later review."""
    if not workspace.has_agent(PIPELINE_AGENT):
        return {"runs": {}, "flagged": []}  # no conductor ever ran: `status` skips the import
    from agentctl.flow.pipeline import RunStore

    counts: dict[str, int] = {}
    flagged = []
    for run in RunStore.of(workspace).all():
        counts[run.status] = counts.get(run.status, 0) + 1
        if run.flags:
            flagged.append({"run": run.run_id, "pipeline": run.pipeline, "flags": run.flags})
    return {"runs": counts, "flagged": flagged}


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


def row_of(
    status: AgentStatus,
    state: str,
    alive: bool,
    age_s: float | None,
    depth: tuple[int, int, int],
    replica: int,
) -> AgentRow:
    """A row from a worker's status, its judged state and liveness, and its inbox depth
    (new, processing, dead): the same on every transport."""
    return AgentRow(
        name=status.agent,
        state=state,
        pid=status.pid or None,
        alive=alive,
        heartbeat_age_s=round(age_s, 3) if age_s is not None else None,
        started_at=status.started_at or None,
        current_message_id=status.current_message_id,
        new=depth[0],
        processing=depth[1],
        dead_letters=depth[2],
        handled=status.handled,
        failed=status.failed,
        last_error=status.last_error,
        log_tail=list(status.log_tail),
        replica=replica,
        host=status.host or None,
        write_error=status.write_error if alive else None,
        next_try_at=status.next_try_at if state == AgentState.FATAL else None,
    )


def collect_status(workspace: Workspace, names: list[str], config: Path | None) -> Overview:
    """`agentctl status`: the overview of the backend the roster at `config` names.

    On NATS, the cluster's view; this machine's own view (its workers' status files, which say
    `disconnected` while they reconnect) with a warning when the cluster cannot be reached.
    """
    from agentctl.config.rosterfile import peek_roster

    if config is None or peek_roster(config).transport == "file":
        return collect_overview(workspace, names)  # without pydantic: `status` starts fast
    import dataclasses

    from agentctl.backends import open_backend
    from agentctl.backends.nats.client import BusError, MissingExtraError
    from agentctl.backends.nats.overview import collect_nats_overview
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.config.roster import load_roster

    roster = load_roster(config)
    try:
        backend = open_backend(roster, workspace.root, client_name="agentctl-cli")
        assert isinstance(backend, NatsTransport)
    except MissingExtraError:
        raise
    except BusError as exc:
        log.warning("%s; showing this machine's workers from their own status files", exc)
        local = collect_overview(workspace, names)
        unreachable = {"kind": roster.transport.kind.value, "servers": roster.transport.servers}
        return dataclasses.replace(local, transport={**unreachable, "reachable": False})
    try:
        return collect_nats_overview(
            backend, {agent.name: agent.replicas for agent in roster.agents}
        )
    finally:
        backend.close()

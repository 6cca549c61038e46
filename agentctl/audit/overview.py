"""What `agentctl status` reports: the workspace, its supervisor, and each agent's workers.

Written once, against the Backend interface: each backend says what its workers recorded and
how alive they are (`Backend.worker_rows`); halted, escalations, the supervisor and pipeline
runs are read the same way on every backend. Standard library only (plus our own modules that
are) on the file backend: `status` must start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentctl.backends.records import AgentRow
from agentctl.model.constants import PIPELINE_AGENT
from agentctl.protocol.control import SupervisorInfo, supervisor_info

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.backends.file.workspace import Workspace


@dataclass(frozen=True)
class Overview:
    """The workspace, its supervisor and its agents."""

    workspace: str
    supervisor: SupervisorInfo
    agents: list[AgentRow]
    halted: dict[str, Any] | None  # why no agent claims new work, while halted
    escalations: dict[str, int]  # {"open": N, "overdue": M}
    pipelines: dict[str, Any]  # run counts by status, and the flagged runs to review
    # The backend's `describe()`: its kind, and for a cluster its `servers` and whether it
    # was `reachable` (if not, the rows are this machine's workers' own status files).
    transport: dict[str, Any] = field(default_factory=lambda: {"kind": "file"})

    @property
    def where(self) -> str:
        """The workspace, and the servers of a backend reached over the network."""
        servers = self.transport.get("servers")
        if servers is None:
            return self.workspace
        seen = "" if self.transport.get("reachable") else "; unreachable: this machine's view"
        return f"{self.workspace} ({self.transport.get('kind')}: {', '.join(servers)}{seen})"

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


def collect_overview(backend: Backend, names: list[str]) -> Overview:
    """Every agent's workers with their inbox depth, and the workspace's state, as `backend`
    sees them."""
    from agentctl.flow.escalation import open_escalations

    local = backend.local
    now = datetime.now(UTC)
    asked = names if PIPELINE_AGENT in names else [*names, PIPELINE_AGENT]
    # The conductor runs beside the roster's agents: shown once it ran or has work waiting.
    rows = [
        row
        for row in backend.worker_rows(asked, now)
        if row.name in names
        or row.state != "absent"
        or row.new
        or row.processing
        or row.dead_letters
    ]
    escalations = open_escalations(backend, overdue_after_s=local.escalation_overdue_s)
    supervisor = supervisor_info(local)
    if not supervisor.running:  # a next try that nobody will make is no next try
        rows = [replace(row, next_try_at=None) if row.next_try_at else row for row in rows]
    return Overview(
        workspace=str(local.root),
        supervisor=supervisor,
        agents=rows,
        halted=backend.halt_state(),
        escalations={
            "open": len(escalations),
            "overdue": sum(1 for e in escalations if e.overdue),
        },
        pipelines=pipeline_summary(local),
        transport=backend.describe(),
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

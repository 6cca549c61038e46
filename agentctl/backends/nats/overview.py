"""What `agentctl status` shows of the NATS backend's workers: each one's status from the
bucket, its agent's depth from the consumers.

It works from any machine connected to the cluster. A worker's liveness is judged by its
heartbeat (pids mean nothing across machines): one older than three heartbeats is `lost`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentctl.backends.file.workspace import Workspace
from agentctl.backends.nats.reader import StreamReader
from agentctl.backends.nats.transport import NatsTransport
from agentctl.backends.records import AgentRow, row_of
from agentctl.model.constants import HEARTBEAT_INTERVAL_S
from agentctl.protocol.mailbox import Depth
from agentctl.protocol.status import LIVE_STATES, AgentState, AgentStatus, parse_iso

LOST = "lost"  # a live state whose heartbeat stopped: the worker died or cannot reach us
LOST_AFTER_S = 3 * HEARTBEAT_INTERVAL_S


def worker_rows(
    transport: NatsTransport, names: list[str], replicas: dict[str, int], now: datetime
) -> list[AgentRow]:
    """The cluster's view of the workers of every agent in `names` (`replicas`: how many
    workers the roster runs of each, 1 if not named)."""
    reader = StreamReader(transport)
    statuses = reader.statuses()
    depths = reader.depth(names)
    rows = []
    for name in names:
        workers = sorted(
            shown_workers([s for s in statuses if s.agent == name], replicas.get(name, 1)),
            key=lambda s: (s.replica, s.host),
        )
        depth = depths.get(name, Depth(0, 0, 0))
        if not workers:
            rows.append(_row(AgentStatus(agent=name), depth, now, recorded=False))
        rows.extend(_row(status, depth, now, recorded=True) for status in workers)
    return rows


def shown_workers(workers: list[AgentStatus], replicas: int) -> list[AgentStatus]:
    """The workers of one agent that `status` shows: all but the cleanly stopped ones of
    replicas the roster no longer runs.

    The bucket keeps a record for a day: without this, a roster scaled from 3 replicas to 1
    would show replicas 1 and 2 as stopped until then. A replica that stopped without saying so
    (`lost`) is shown whatever the roster says: something killed it.
    """
    return [s for s in workers if s.replica < replicas or s.state is not AgentState.STOPPED]


def _row(status: AgentStatus, depth: Depth, now: datetime, *, recorded: bool) -> AgentRow:
    heartbeat = parse_iso(status.heartbeat_at)
    age_s = (now - heartbeat).total_seconds() if heartbeat else None
    live = status.state in LIVE_STATES
    alive = recorded and live and age_s is not None and age_s <= LOST_AFTER_S
    state = status.state.value if recorded else "absent"
    if recorded and live and not alive:
        state = LOST
    counts = (depth.new, depth.processing, depth.dead)
    return row_of(status, state, alive, age_s, counts, status.replica)


class LocalView(Workspace):
    """This machine's view of a cluster it cannot reach: its workers' own status files (which
    say `disconnected` while they reconnect). For `status` only: it reads, it never sends."""

    def __init__(self, local: Workspace, servers: list[str]) -> None:
        super().__init__(
            local.root,
            fsync=local.fsync,
            max_message_bytes=local.max_message_bytes,
            journal_max_bytes=local.journal_max_bytes,
            escalation_overdue_s=local.escalation_overdue_s,
        )
        self.disabled = local.disabled
        self.servers = servers

    def describe(self) -> dict[str, Any]:
        """The cluster's servers, unreachable."""
        return {"kind": "nats", "servers": self.servers, "reachable": False}

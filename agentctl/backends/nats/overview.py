"""`agentctl status` on NATS: every worker's status from the bucket, depth from the consumers.

It works from any machine connected to the cluster: nothing is read from local files except
the supervisor and pipeline runs of the machine it runs on. A worker's liveness is judged by
its heartbeat (pids mean nothing across machines): one older than three heartbeats is `lost`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agentctl.audit.overview import AgentRow, Overview, pipeline_summary, row_of
from agentctl.backends.nats.deadletters import stream_escalation_requests
from agentctl.backends.nats.reader import StreamReader
from agentctl.backends.nats.transport import NatsTransport
from agentctl.backends.records import escalation_of
from agentctl.model.constants import HEARTBEAT_INTERVAL_S, PIPELINE_AGENT
from agentctl.protocol.control import supervisor_info
from agentctl.protocol.mailbox import Depth
from agentctl.protocol.status import LIVE_STATES, AgentState, AgentStatus, parse_iso

LOST = "lost"  # a live state whose heartbeat stopped: the worker died or cannot reach us
LOST_AFTER_S = 3 * HEARTBEAT_INTERVAL_S


def collect_nats_overview(transport: NatsTransport, replicas: dict[str, int]) -> Overview:
    """The cluster's view of the workers of every agent in `replicas` (name -> how many the
    roster runs)."""
    names = list(replicas)
    reader = StreamReader(transport)
    statuses = reader.statuses()
    if PIPELINE_AGENT not in names and any(s.agent == PIPELINE_AGENT for s in statuses):
        names = [*names, PIPELINE_AGENT]
    depths = reader.depth(names)
    now = datetime.now(UTC)
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
    ws = transport.local
    escalations = [
        escalation_of(message, where, now, ws.escalation_overdue_s)
        for where, message in stream_escalation_requests(transport)
    ]
    return Overview(
        workspace=str(ws.root),
        supervisor=supervisor_info(ws),
        agents=rows,
        halted=transport.halt_state(),
        escalations={
            "open": len(escalations),
            "overdue": sum(1 for e in escalations if e.overdue),
        },
        pipelines=pipeline_summary(ws),
        transport={"kind": "nats", "servers": transport.servers, "reachable": True},
    )


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

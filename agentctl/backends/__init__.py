"""Where messages and events live: the interface, the file workspace and NATS JetStream.

`open_backend` is the one place that chooses between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.roster import Roster


def open_backend(
    roster: Roster,
    workspace: Path | None = None,
    *,
    client_name: str = "agentctl",
    patient: bool = False,
) -> Backend:
    """The backend `roster` names: its workspace's files, or a NATS connection beside them.

    `patient`: a worker waits out an unreachable server instead of failing.
    """
    from agentctl.config.roster import TransportKind

    local = open_workspace(roster, workspace)
    if roster.transport.kind is TransportKind.FILE:
        return local
    from agentctl.backends.nats.backend import NatsBackend

    return NatsBackend.connect(
        local,
        roster.transport.resolved_servers(),
        stream=roster.transport.stream,
        replicas=roster.transport.replicas,
        client_name=client_name,
        patient=patient,
    )


def open_workspace(roster: Roster, override: Path | None = None) -> Workspace:
    """This machine's workspace as `roster` describes it (or at `override`): its files on the
    file backend; logs, locks, pipeline runs and status files beside NATS."""
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.roster import Durability

    return Workspace(
        override or roster.workspace_path,
        fsync=roster.durability is Durability.FSYNC,
        max_message_bytes=roster.max_message_bytes,
        journal_max_bytes=roster.journal_max_bytes,
        escalation_overdue_s=roster.escalation_overdue_s,
    )

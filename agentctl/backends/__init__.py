"""Where messages and events live: the interface, the file workspace and NATS JetStream.

`open_backend` is the one place that chooses between them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.roster import Roster

log = logging.getLogger(__name__)


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

    backend = NatsBackend.connect(
        local,
        roster.transport.resolved_servers(),
        stream=roster.transport.stream,
        replicas=roster.transport.replicas,
        client_name=client_name,
        patient=patient,
    )
    backend.agent_replicas = {agent.name: agent.replicas for agent in roster.agents}
    return backend


def open_view(workspace: Workspace, config: Path | None) -> Backend:
    """The backend `agentctl status` looks at: `workspace` itself when the roster at `config`
    (if any) names files, read without validating the roster so that `status` starts fast;
    else the roster's cluster, or this machine's view of it (its workers' own status files),
    with a warning, when the cluster cannot be reached. Close it when done.
    """
    from agentctl.config.rosterfile import peek_roster

    if config is None or peek_roster(config).transport == "file":
        return workspace  # without pydantic
    from agentctl.backends.nats.client import BusError, MissingExtraError
    from agentctl.config.roster import load_roster

    roster = load_roster(config)
    try:
        return open_backend(roster, workspace.root, client_name="agentctl-cli")
    except MissingExtraError:
        raise
    except BusError as exc:
        from agentctl.backends.nats.overview import LocalView

        log.warning("%s; showing this machine's workers from their own status files", exc)
        return LocalView(workspace, roster.transport.servers)


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


def require_workspace(roster: Roster | None, root: Path) -> None:
    """AgentctlError unless the workspace a server is about to serve exists on files: a typo in
    --workspace would be served as an empty team (verify "ok", 0 events) that the first action
    creates. On NATS the messages are on the cluster, and this machine's folder may come later."""
    from agentctl.config.roster import TransportKind
    from agentctl.model.errors import AgentctlError

    on_files = roster is None or roster.transport.kind is TransportKind.FILE
    if on_files and not root.is_dir():
        raise AgentctlError(
            f"no workspace at {root}: start the team with agentctl run, or give --workspace"
        )

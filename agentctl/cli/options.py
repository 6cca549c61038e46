"""Options every command shares, and the two ways a command finds its roster and workspace."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentctl.model.constants import DEFAULT_WORKSPACE_DIR, ENV_CONFIG, ENV_WORKSPACE, USER_AGENT
from agentctl.model.errors import ConfigError

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.backends.transport import Transport
    from agentctl.config.roster import Roster

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar=ENV_WORKSPACE,
        show_default=False,
        help="Workspace directory [default: the roster's `workspace`, else ./workspace].",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=ENV_CONFIG,
        show_default=False,
        help="Roster file [default: ./agents.yaml].",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable, documented).")]


def open_light(config: Path | None, workspace: Path | None) -> tuple[Workspace, list[str]]:
    """Workspace and agent names without pydantic (fast commands: status, stop)."""
    from agentctl.backends.file.workspace import Workspace
    from agentctl.config.rosterfile import find_config, peek_roster

    config_path = find_config(config)
    if config_path is not None:
        peek = peek_roster(config_path)
        ws = Workspace(workspace or peek.workspace, escalation_overdue_s=peek.escalation_overdue_s)
        ws.disabled = peek.disabled
        ws.transport_kind = peek.transport
        return ws, peek.agent_names
    ws = Workspace(workspace or Path(DEFAULT_WORKSPACE_DIR))
    if not ws.root.is_dir():
        # Without either there is nothing to show: say so, rather than an empty table or "ok".
        raise ConfigError(
            f"no roster and no workspace: ./agents.yaml and {ws.root} do not exist; pass "
            f"--config or set {ENV_CONFIG}, pass --workspace, or create both with `agentctl init`"
        )
    return ws, [n for n in ws.agent_names() if n != USER_AGENT]


def open_full(config: Path | None, workspace: Path | None) -> tuple[Roster, Workspace]:
    """The validated roster and its workspace (run, validate, send)."""
    from agentctl.config.roster import load_roster
    from agentctl.config.rosterfile import find_config

    config_path = find_config(config)
    if config_path is None:
        raise ConfigError(
            f"no roster: ./agents.yaml does not exist; pass --config or set {ENV_CONFIG}, "
            "or create one with `agentctl init`"
        )
    roster = load_roster(config_path)
    return roster, roster.open_workspace(workspace)


def open_nats(config: Path | None, workspace: Path | None) -> NatsTransport | None:
    """The NATS transport when the roster names one (None on files): commands that read or
    send go to the cluster instead of the workspace's files."""
    from agentctl.config.rosterfile import find_config, peek_roster

    config_path = find_config(config)
    if config_path is None or peek_roster(config_path).transport != "nats":
        return None
    from agentctl.backends.nats.transport import NatsTransport

    roster, _ = open_full(config, workspace)
    transport = roster.open_transport(workspace, client_name="agentctl-cli")
    assert isinstance(transport, NatsTransport)
    return transport


def open_transport(config: Path | None, workspace: Path | None) -> tuple[Workspace, Transport]:
    """The workspace, and the transport commands act on (the workspace itself on files)."""
    ws, _ = open_light(config, workspace)
    nats = open_nats(config, workspace) if ws.transport_kind == "nats" else None
    return ws, (nats if nats is not None else ws)

"""`agentctl init`, `validate` and `schema`: set up and check a project."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to create agents.yaml and workspace/.")
    ] = Path("."),
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a starter agents.yaml and workspace/; never overwrites.

    --config names the roster file to write (default DIR/agents.yaml), --workspace the
    workspace directory it points at (default workspace/ beside the roster).
    """
    from agentctl.cli.render import console
    from agentctl.config.scaffold import init_project

    for path in init_project(directory, config=config, workspace=workspace):
        console().print(f"created {path}")
    console().print(
        "next: [bold]agentctl run[/] here, then [bold]agentctl send echo hello --wait[/]"
    )


def validate(
    config: ConfigOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False
) -> None:
    """Check the roster (schema, names, handlers) and print what it found."""
    from rich.markup import escape

    from agentctl.cli.options import open_full
    from agentctl.cli.render import console, print_json, roster_table
    from agentctl.runtime.validation import check_handlers

    roster, ws = open_full(config, workspace)
    warnings = check_handlers(roster)
    if json_out:
        data = roster.model_dump(mode="json", by_alias=True)
        data["disabled"] = roster.disabled_agents()
        data["warnings"] = warnings
        data["path"], data["workspace_path"] = str(roster.path), str(ws.root)
        print_json(data)
        return
    console().print(roster_table(roster))
    for warning in warnings:
        console().print(f"[yellow]warning[/]: {escape(warning)}", highlight=False)
    for name, why in roster.disabled_agents().items():
        console().print(f"[yellow]{name}[/]: {why}; `agentctl run` leaves it out")
    console().print(f"[green]ok[/]: {roster.path} is valid")


class SchemaName(StrEnum):
    """Which schema to print."""

    MESSAGE = "message"
    STATUS = "status"
    ALL = "all"


def schema(
    name: Annotated[SchemaName, typer.Argument(help="message, status, or all.")] = SchemaName.ALL,
) -> None:
    """Print the JSON Schema of message files and status.json, for other languages."""
    from agentctl.cli.render import print_json
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.status import status_json_schema

    schemas = {"message": AgentMessage.model_json_schema(), "status": status_json_schema()}
    print_json(schemas if name is SchemaName.ALL else schemas[name.value])

"""`agentctl dead list` and `agentctl dead requeue`: the dead letters, and bringing them back."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt
from agentctl.model.actor import cli_actor

app = typer.Typer(help="List dead letters, or put them back in their inbox.", no_args_is_help=True)

AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's inbox.")]


def _agents(agent: str | None) -> list[str] | None:
    from agentctl.model.names import validate_agent_name

    return [validate_agent_name(agent)] if agent else None


@app.command("list")
def list_(
    agent: AgentOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every dead letter with its attempts and error."""
    from agentctl.cli.options import opened_backend
    from agentctl.flow.deadletters import list_dead

    with opened_backend(config, workspace) as backend:
        letters = list_dead(backend, _agents(agent))
    if json_out:
        from agentctl.cli.render import print_json

        print_json([letter.to_json() for letter in letters])
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_records import dead_table

    console().print(dead_table(letters))


@app.command("requeue")
def requeue(
    ident: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="A dead message's id or file name.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Requeue every dead letter.")] = False,
    agent: AgentOpt = None,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Put dead letters back in their inbox with their attempts reset; print each message id."""
    from agentctl.backends.records import DeadLetterError
    from agentctl.cli.options import opened_backend
    from agentctl.flow.deadletters import requeue_dead

    if (ident is None) == (not all_):
        raise DeadLetterError("give one dead message ID, or --all")
    # The roster's durability applies to the rewrite.
    with opened_backend(config, workspace) as backend:
        requeued, failures = requeue_dead(backend, ident, _agents(agent), by=cli_actor())
    for message_id in requeued:
        print(message_id)
    if failures:
        raise DeadLetterError("\n".join(failures))

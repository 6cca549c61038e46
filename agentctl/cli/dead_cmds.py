"""`agentctl dead list` and `agentctl dead requeue`: the dead letters, and bringing them back."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt

app = typer.Typer(help="List dead letters, or put them back in their inbox.", no_args_is_help=True)

AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's inbox.")]


def _agents(agent: str | None, names: list[str]) -> list[str]:
    from agentctl.names import validate_agent_name

    return [validate_agent_name(agent)] if agent else names


@app.command("list")
def list_(
    agent: AgentOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every dead letter with its attempts and error."""
    from agentctl.cli.options import open_light
    from agentctl.deadletters import list_dead

    ws, _ = open_light(config, workspace)
    letters = list_dead(ws, _agents(agent, ws.agent_names()))
    if json_out:
        from agentctl.cli.render import print_json

        print_json([letter.to_json() for letter in letters])
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_history import dead_table

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
    """Put dead letters back in new/ with their attempts reset; print each message id."""
    from agentctl.cli.options import open_full
    from agentctl.deadletters import DeadLetterError, find_dead, list_dead, requeue
    from agentctl.rosterfile import find_config

    if (ident is None) == (not all_):
        raise DeadLetterError("give one dead message ID, or --all")
    if find_config(config) is not None:
        _, ws = open_full(config, workspace)  # the roster's durability applies to the rewrite
    else:
        from agentctl.cli.options import open_light

        ws, _ = open_light(config, workspace)
    agents = _agents(agent, ws.agent_names())
    letters = list_dead(ws, agents) if all_ else [find_dead(ws, agents, str(ident))]
    failures = []
    for letter in letters:
        try:
            print(requeue(ws, letter))
        except DeadLetterError as exc:
            failures.append(str(exc))
    if failures:
        raise DeadLetterError("\n".join(failures))

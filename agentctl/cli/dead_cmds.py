"""`agentctl dead list` and `agentctl dead requeue`: the dead letters, and bringing them back."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt

app = typer.Typer(help="List dead letters, or put them back in their inbox.", no_args_is_help=True)

AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent's inbox.")]


def _agents(agent: str | None, names: list[str]) -> list[str]:
    from agentctl.model.names import validate_agent_name

    return [validate_agent_name(agent)] if agent else names


@app.command("list")
def list_(
    agent: AgentOpt = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every dead letter with its attempts and error."""
    from agentctl.cli.options import open_light, open_nats
    from agentctl.flow.deadletters import list_dead

    ws, names = open_light(config, workspace)
    nats = open_nats(config, workspace) if ws.transport_kind == "nats" else None
    if nats is not None:
        from agentctl.backends.nats.deadletters import list_stream_dead

        letters = list_stream_dead(nats, _agents(agent, names))
    else:
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
    from agentctl.config.rosterfile import find_config
    from agentctl.flow.deadletters import DeadLetterError, find_dead, list_dead, requeue

    if (ident is None) == (not all_):
        raise DeadLetterError("give one dead message ID, or --all")
    from agentctl.cli.options import open_nats

    nats = open_nats(config, workspace)
    if nats is not None:
        _requeue_on_nats(nats, ident, agent, config, workspace)
        return
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


def _requeue_on_nats(nats: Any, ident: str | None, agent: str | None, config: Any, ws: Any) -> None:
    from agentctl.backends.nats.deadletters import list_stream_dead, requeue_stream_dead
    from agentctl.cli.options import open_light
    from agentctl.flow.deadletters import pick_dead

    _, names = open_light(config, ws)
    letters = list_stream_dead(nats, _agents(agent, names))
    chosen = letters if ident is None else [pick_dead(letters, ident)]
    for letter in chosen:
        print(requeue_stream_dead(nats, letter))

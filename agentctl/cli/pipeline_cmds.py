"""`agentctl pipeline start|list|show`, `escalations`, `resolve`, `halt` and `resume`."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, KeywordsOpt, WorkspaceOpt, positive_seconds
from agentctl.model.actor import cli_actor

if TYPE_CHECKING:
    from agentctl.backends.file.workspace import Workspace

app = typer.Typer(help="Start pipeline runs and look at them.", no_args_is_help=True)

WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the run's outcome.")]
TimeoutOpt = Annotated[float, positive_seconds("With --wait, give up after this long.")]


@app.command("start")
def start(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name in agents.yaml.")],
    content: Annotated[str, typer.Argument(help="The task: text, JSON, '-' or @FILE.")],
    keywords: KeywordsOpt = None,
    wait: WaitOpt = False,
    timeout_s: TimeoutOpt = 300.0,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start a run of PIPELINE with CONTENT (the same as `send pipeline:PIPELINE CONTENT`)."""
    from agentctl.cli.options import keywords_of, opened_with_roster, read_content
    from agentctl.cli.send_cmd import print_sent, wait_and_print
    from agentctl.flow.send import PIPELINE_PREFIX, SendRequest, send_message

    task = read_content(content, as_text=False)
    request = SendRequest(
        task, to=PIPELINE_PREFIX + pipeline, keywords=keywords_of(keywords), by=cli_actor()
    )
    with opened_with_roster(config, workspace, required=True) as (roster, backend):
        result = send_message(backend, roster, request)
        if wait:
            wait_and_print(backend, result, timeout_s=timeout_s, json_out=json_out)
        else:
            print_sent(result, json_out=json_out)


@app.command("list")
def list_(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """Every run: pipeline, status, stage reached, verdict so far."""
    from agentctl.cli.options import open_light

    ws, _ = open_light(config, workspace)
    runs = _store(ws).all()
    if json_out:
        from agentctl.cli.render import print_json

        print_json([run.summary() for run in runs])
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_records import runs_table

    console().print(runs_table([run.summary() for run in runs]))


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id (`pipeline list`).")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """One run: each stage's agents, verdict and results, flags, and the outcome."""
    from agentctl.cli.options import open_light
    from agentctl.model.errors import AgentctlError
    from agentctl.model.names import validate_message_id

    ws, _ = open_light(config, workspace)
    run = _store(ws).load(validate_message_id(run_id))
    if run is None:
        raise AgentctlError(f"{run_id}: no such pipeline run (see `agentctl pipeline list`)")
    data = run.details()
    if json_out:
        from agentctl.cli.render import print_json

        print_json(data)
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_history import outcome_table

    console().print(outcome_table(data))


def _store(ws: Workspace) -> Any:
    from agentctl.flow.pipeline import RunStore

    return RunStore.of(ws)


# -- people in the loop ------------------------------------------------------------------------


def escalations(
    json_out: JsonOpt = False, config: ConfigOpt = None, workspace: WorkspaceOpt = None
) -> None:
    """The open escalations waiting for a person, oldest first."""
    from agentctl.cli.options import opened_backend
    from agentctl.flow.escalation import open_escalations

    with opened_backend(config, workspace) as backend:
        overdue_s = backend.local.escalation_overdue_s
        found = open_escalations(backend, overdue_after_s=overdue_s)
    if json_out:
        from agentctl.cli.render import print_json

        print_json([e.to_json() for e in found])
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_records import escalations_table

    console().print(escalations_table(found))


class Answer(StrEnum):
    """What a person may answer to an escalation."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FLAG = "flag"
    BLOCK = "block"


def resolve(
    ident: Annotated[str, typer.Argument(metavar="ID", help="The escalation's id (or its run).")],
    verdict: Annotated[Answer, typer.Option("--verdict", help="pass, flag or block.")],
    note: Annotated[str | None, typer.Option("--note", help="Why, for the record.")] = None,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Answer an escalation: the parked run goes on (pass, flag) or ends (block)."""
    from agentctl.cli.options import opened_backend
    from agentctl.flow.escalation import resolve_escalation

    with opened_backend(config, workspace) as backend:
        escalation = resolve_escalation(backend, ident, verdict.value, note)
    outcome = "ends blocked" if verdict is Answer.BLOCK else "goes on"
    print(f"resolved {escalation.id} ({verdict.value}); run {escalation.run} {outcome}")


def halt(
    reason: Annotated[str, typer.Option("--reason", help="Why everything stops.")],
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Stop every agent from claiming new work (as a HALT verdict does) until `resume`."""
    from agentctl.cli.options import opened_backend
    from agentctl.flow.halt import halt as enter_halt

    with opened_backend(config, workspace) as backend:
        already = enter_halt(backend, reason, by=cli_actor())
    if already is None:
        print(f"halted {backend.local.root}: {reason}")
    else:
        since = f" since {already['halted_at']}" if already.get("halted_at") else ""
        print(
            f"already halted{since} by {already.get('by', '?')}: {already.get('reason')} "
            "(kept; `agentctl resume` lifts it)"
        )


def resume(config: ConfigOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Lift the halted state: agents claim new work again."""
    from agentctl.cli.options import opened_backend
    from agentctl.flow.halt import resume as leave_halt

    with opened_backend(config, workspace) as backend:
        lifted = leave_halt(backend, by=cli_actor())
    where = backend.local.root
    print(f"resumed {where} (was halted: {lifted['reason']})" if lifted else "not halted")

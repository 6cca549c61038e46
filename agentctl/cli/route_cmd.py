"""`agentctl route`: how a task with these keywords would be routed, without sending it."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, KeywordsOpt, WorkspaceOpt


def route(
    keywords: KeywordsOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="The --fanout threshold to explain.")
    ] = 0.5,
    floor: Annotated[float, typer.Option("--floor", help="The --route confidence floor.")] = 0.3,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score every agent for these keywords: who `send --route` and `--fanout` would pick."""
    from agentctl.cli.options import keywords_of, open_full
    from agentctl.flow.routing import explain_route
    from agentctl.model.errors import AgentctlError

    task = {"keywords": keywords_of(keywords)}
    if not task["keywords"]:
        raise AgentctlError("no keywords to route by: give them with -k (e.g. -k auth,injection)")
    roster, _ = open_full(config, workspace)
    explained = explain_route(roster, task, floor=floor, threshold=threshold)
    if json_out:
        from agentctl.cli.render import print_json

        print_json(explained.to_json())
        return
    from agentctl.cli.render_history import print_route

    print_route(explained)

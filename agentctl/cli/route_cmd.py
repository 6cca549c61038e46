"""`agentctl route`: how a task with these keywords would be routed, without sending it."""

from __future__ import annotations

from typing import Annotated

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt


def route(
    keywords: Annotated[
        str, typer.Option("--keywords", "-k", help="Comma-separated keywords, e.g. auth,injection.")
    ],
    threshold: Annotated[
        float, typer.Option("--threshold", help="The --fanout threshold to explain.")
    ] = 0.5,
    floor: Annotated[float, typer.Option("--floor", help="The --route confidence floor.")] = 0.3,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score every agent for these keywords: who `send --route` and `--fanout` would pick."""
    from agentctl.cli.options import open_full
    from agentctl.flow.routing import TaskRouter, explain, roster_candidates

    roster, _ = open_full(config, workspace)
    task = {"keywords": [k.strip() for k in keywords.split(",") if k.strip()]}
    candidates = explain(TaskRouter(roster_candidates(roster), floor=floor), task)
    best = candidates[0] if candidates and candidates[0].score >= floor else None
    fanout = [c.name for c in candidates if c.score >= threshold]
    if json_out:
        from agentctl.cli.render import print_json

        print_json(
            {
                "keywords": task["keywords"],
                "candidates": [c.to_json() for c in candidates],
                "route": best.name if best else None,
                "floor": floor,
                "fanout": fanout,
                "threshold": threshold,
            }
        )
        return
    from agentctl.cli.render import console
    from agentctl.cli.render_history import route_table

    out = console()
    out.print(route_table(candidates, floor=floor, threshold=threshold))
    if best is None:
        out.print(f"[red]--route: no agent reaches the floor {floor:g}; nothing would be sent[/]")
    else:
        out.print(f"--route: [bold]{best.name}[/] ({best.score:.2f})")
    out.print(f"--fanout: {', '.join(fanout) if fanout else '(nobody)'} (threshold {threshold:g})")

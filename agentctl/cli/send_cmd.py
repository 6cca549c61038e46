"""`agentctl send`: a message from the `user` pseudo-agent; optionally wait for its reply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentctl.cli.options import ConfigOpt, JsonOpt, WorkspaceOpt
from agentctl.errors import AgentctlError
from agentctl.priority import Priority


def send(
    to: Annotated[str, typer.Argument(help="The agent to send to.")],
    content: Annotated[
        str,
        typer.Argument(help="The content: text, a JSON object or array, '-' for stdin, or @FILE."),
    ],
    keywords: Annotated[
        str | None,
        typer.Option("--keywords", "-k", help="Comma-separated keywords, e.g. auth,injection."),
    ] = None,
    priority: Annotated[Priority, typer.Option("--priority", "-p")] = Priority.NORMAL,
    thread: Annotated[str | None, typer.Option("--thread", help="Join this thread id.")] = None,
    text: Annotated[
        bool, typer.Option("--text", help="Send CONTENT as a string even if it looks like JSON.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the reply and print it.")] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="With --wait, give up after this long.")
    ] = 60.0,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Send CONTENT to agent TO; print the message id (or, with --wait, the reply)."""
    from agentctl.cli.options import open_full, open_light
    from agentctl.cli.render import print_json, print_note
    from agentctl.control import supervisor_is_running
    from agentctl.names import validate_agent_name
    from agentctl.rosterfile import find_config
    from agentctl.router import WorkspaceRouter, user_message

    validate_agent_name(to)
    if find_config(config) is not None:
        roster, ws = open_full(config, workspace)
        roster.agent(to)
    else:
        ws, names = open_light(config, workspace)
        if to not in names:
            raise AgentctlError(f"{ws.root}: no agent named {to!r} (and no roster to say so)")
    router = WorkspaceRouter.of(ws)
    message = user_message(
        to,
        _read_content(content, as_text=text),
        priority=priority,
        keywords=[k.strip() for k in keywords.split(",") if k.strip()] if keywords else [],
        **({"thread_id": thread} if thread else {}),
    )
    path = router.send(message)
    if not supervisor_is_running(ws):
        print_note(f"no supervisor is running on {ws.root}; the message waits in {path.parent}")
    if not wait:
        print_json(
            {"id": message.id, "thread_id": message.thread_id, "path": str(path)}
        ) if json_out else print(message.id)
        return
    reply = router.wait_for_reply(message, timeout_s=timeout_s)
    if json_out:
        print_json(reply.model_dump(mode="json"))
    elif isinstance(reply.content, str):
        print(reply.content)
    else:
        print_json(reply.content)
    if _is_failure(reply.content):
        raise typer.Exit(1)


def _read_content(content: str, *, as_text: bool) -> Any:
    if content == "-":
        content = sys.stdin.read()
    elif content.startswith("@"):
        path = Path(content[1:])
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentctlError(f"{path}: cannot read: {exc}") from None
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise AgentctlError("CONTENT is not valid UTF-8") from None
    if as_text or not content.lstrip().startswith(("{", "[")):
        return content
    from agentctl.errors import BadMessageError
    from agentctl.message import parse_json_strict

    try:
        return parse_json_strict(content.encode())
    except BadMessageError as exc:
        raise AgentctlError(
            f"CONTENT looks like JSON but is not ({exc}); use --text to send it as a string"
        ) from None


def _is_failure(content: Any) -> bool:
    return isinstance(content, dict) and content.get("verdict") == "escalate"

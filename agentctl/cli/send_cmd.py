"""`agentctl send`: a message from the `user` pseudo-agent; optionally wait for its reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agentctl.cli.options import (
    ConfigOpt,
    HeaderOpt,
    JsonOpt,
    KeywordsOpt,
    WorkspaceOpt,
    positive_seconds,
    ready_for_ctrl_c,
)
from agentctl.model.actor import cli_actor
from agentctl.model.priority import Priority

if TYPE_CHECKING:
    from agentctl.backends.base import Backend
    from agentctl.flow.send import SendResult

TargetArgs = Annotated[
    list[str],
    typer.Argument(
        metavar="[TO] CONTENT",
        help="The agent to send to (`pipeline:NAME` starts a pipeline run; none with "
        "--route/--fanout), then the content: text, a JSON object or array, '-' for stdin, "
        '@FILE (its text) or @FOLDER (sent as {"path": FOLDER}).',
        show_default=False,
    ),
]
PriorityOpt = Annotated[Priority, typer.Option("--priority", "-p")]
ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Join this thread id.")]
TextOpt = Annotated[
    bool, typer.Option("--text", help="Send CONTENT as a string even if it looks like JSON.")
]
RouteOpt = Annotated[
    bool, typer.Option("--route", help="Send to the agent that scores the keywords best.")
]
FanoutOpt = Annotated[
    bool, typer.Option("--fanout", help="Send to every agent scoring at least --threshold.")
]
ThresholdOpt = Annotated[
    float, typer.Option("--threshold", help="With --fanout: the lowest score that gets it.")
]
FloorOpt = Annotated[
    float, typer.Option("--floor", help="With --route: the lowest score that may win.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the reply and print it.")]
TimeoutOpt = Annotated[float, positive_seconds("With --wait, give up after this long.")]


def send(
    args: TargetArgs,
    keywords: KeywordsOpt = None,
    header: HeaderOpt = None,
    priority: PriorityOpt = Priority.NORMAL,
    thread: ThreadOpt = None,
    text: TextOpt = False,
    route: RouteOpt = False,
    fanout: FanoutOpt = False,
    threshold: ThresholdOpt = 0.5,
    floor: FloorOpt = 0.3,
    wait: WaitOpt = False,
    timeout_s: TimeoutOpt = 60.0,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Send CONTENT to agent TO (or route it); print the message id (or, with --wait, the reply)."""
    from agentctl.cli.options import keywords_of, opened_with_roster, read_content
    from agentctl.flow.send import PIPELINE_PREFIX, SendRequest, parse_headers, send_message

    routed = route or fanout
    if route and fanout:
        raise typer.BadParameter("give --route or --fanout, not both")
    if len(args) != (1 if routed else 2):
        raise typer.BadParameter(
            "expected CONTENT only with --route/--fanout" if routed else "expected TO and CONTENT"
        )
    request = SendRequest(
        read_content(args[-1], as_text=text), to=None if routed else args[0],
        keywords=keywords_of(keywords), priority=priority, thread_id=thread,
        fanout=fanout, threshold=threshold, floor=floor, headers=parse_headers(header or []),
        by=cli_actor(),
    )  # fmt: skip
    needs_roster = routed or args[0].startswith(PIPELINE_PREFIX)
    with opened_with_roster(config, workspace, required=needs_roster) as (roster, backend):
        result = send_message(backend, roster, request)
        if not wait:
            print_sent(result, json_out=json_out)
            return
        wait_and_print(backend, result, timeout_s=timeout_s, json_out=json_out)


def print_sent(result: SendResult, *, json_out: bool) -> None:
    """What was sent: ids (one a line), or JSON; a note if nothing will take it yet."""
    from agentctl.cli.render import print_json

    _note_waiting(result)
    if json_out:
        sent = result.to_json()
        print_json({"id": sent[0]["id"], "run": sent[0]["id"]} if result.run else
                   sent if result.fanout else sent[0])  # fmt: skip
    else:
        print("\n".join(message.id for message in result.messages))


def wait_and_print(
    backend: Backend, result: SendResult, *, timeout_s: float, json_out: bool
) -> None:
    """Wait for the replies to `result` and print them; exit 1 on a failure, 130 on Ctrl-C."""
    from agentctl.cli.render import print_note, print_replies
    from agentctl.flow.send import await_replies

    ready_for_ctrl_c("agentctl.flow.diagnose", "agentctl.protocol.watcher")
    try:  # from the first moment the message is ours to wait for
        _note_waiting(result)
        replies = await_replies(backend, result, timeout_s=timeout_s)
    except KeyboardInterrupt:
        for message in result.messages:
            print_note(
                f"stopped waiting; {message.id} is sent: `agentctl replay {message.id}` "
                "shows its reply when it comes"
            )
        raise typer.Exit(130) from None
    if not print_replies(
        replies, run=result.run is not None, json_out=json_out, fanout=result.fanout
    ):
        raise typer.Exit(1)


def _note_waiting(result: SendResult) -> None:
    from agentctl.cli.render import print_note

    if result.waiting_in is not None:
        what = "run" if result.run else "message"
        print_note(f"no supervisor is running; the {what} waits in {result.waiting_in}")

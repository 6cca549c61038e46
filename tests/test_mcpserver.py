"""The MCP server (agentctl/mcpserver) driven in-process by the SDK's own client: the tools it
lists and their annotations, untrusted input refused as tool errors (never a crash), actions
journaled `by: mcp` with the client's name, resources confined to the workspace, and the
bearer-token guard of the HTTP app. Real files in tmp_path; the subprocess and HTTP stories are
in tests/e2e/test_mcp.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

from agentctl.backends import open_backend
from agentctl.config.roster import load_roster
from agentctl.mcpserver.auth import BearerTokenMiddleware, check_bind
from agentctl.mcpserver.server import build_server
from agentctl.mcpserver.surface import Served, clean_client_name
from agentctl.model.errors import AgentctlError
from agentctl.model.loopback import is_loopback
from tests.conftest import REPO, write_roster

ECHO = "python: agentctl.agents.echo:EchoAgent"
READ_TOOLS = {"status", "tail", "replay", "verify", "route", "dead_letters", "escalations",
              "pipeline_runs"}  # fmt: skip
ACTION_TOOLS = {"send", "start_pipeline", "resolve_escalation", "requeue_dead", "halt", "resume"}


def _served(tmp_path: Path) -> Served:
    write_roster(tmp_path, f"- name: echo\n  {ECHO}\n  expertise: [echo, text]\n")
    (tmp_path / "agents.yaml").write_text(
        (tmp_path / "agents.yaml").read_text().replace("workspace: workspace",
                                                       f"workspace: {tmp_path / 'workspace'}")
    )  # fmt: skip
    roster = load_roster(tmp_path / "agents.yaml")
    return Served(roster, open_backend(roster))


def _drive(
    served: Served, story: Callable[[Client], Awaitable[Any]], *, read_only: bool = False
) -> Any:
    async def main() -> Any:
        server = build_server(served, read_only=read_only)
        info = Implementation(name="unit-client", version="1")
        async with Client(server, client_info=info) as client:
            return await story(client)

    return asyncio.run(main())


def _error(result: Any) -> str:
    assert result.is_error, result
    return str(result.content[0].text)


def test_tools_are_listed_with_honest_annotations(tmp_path: Path) -> None:
    async def story(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {t.name: t for t in _drive(_served(tmp_path), story)}
    assert set(tools) == READ_TOOLS | ACTION_TOOLS
    for name in READ_TOOLS:
        assert tools[name].annotations.read_only_hint is True, name
        assert tools[name].output_schema is not None, name  # structured output
    for name in ACTION_TOOLS:
        assert tools[name].annotations.read_only_hint is False, name
    # Blocking a run and halting the team cannot be undone by calling again: destructive.
    destructive = {n for n in ACTION_TOOLS if tools[n].annotations.destructive_hint}
    assert destructive == {"resolve_escalation", "halt"}
    assert all(len(t.description or "") > 40 for t in tools.values())


def test_read_only_serves_no_tool_that_acts(tmp_path: Path) -> None:
    async def story(client: Client) -> Any:
        names = {t.name for t in (await client.list_tools()).tools}
        sent = await client.call_tool("send", {"to": "echo", "content": "hi"})
        halted = await client.call_tool("halt", {"reason": "no"})
        return names, sent, halted

    served = _served(tmp_path)
    names, sent, halted = _drive(served, story, read_only=True)
    assert names == READ_TOOLS
    assert "unknown tool" in _error(sent).lower() and _error(halted)
    assert not (tmp_path / "workspace" / "echo" / "inbox").exists() or not any(
        (tmp_path / "workspace" / "echo" / "inbox" / "new").glob("*.json")
    )
    assert not served.backend.is_halted()


def test_actions_are_journaled_by_mcp_with_the_client_name(tmp_path: Path) -> None:
    async def story(client: Client) -> Any:
        sent = await client.call_tool("send", {"to": "echo", "content": {"text": "hi"}})
        await client.call_tool("halt", {"reason": "looking into it"})
        again = await client.call_tool("halt", {"reason": "twice"})
        await client.call_tool("resume", {})
        tail = await client.call_tool("tail", {"lines": 10})
        return sent.structured_content, again.structured_content, tail.structured_content

    sent, again, tail = _drive(_served(tmp_path), story)
    assert sent["sent"][0]["to"] == "echo" and "no supervisor" in sent["note"]
    assert again["changed"] is False and again["state"]["reason"] == "looking into it"
    events = {e["event"]: e for e in tail["events"]}
    for kind in ("sent", "halted", "resumed"):
        assert events[kind]["by"] == "mcp" and events[kind]["client"] == "unit-client", kind


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("send", {"to": "../etc", "content": "x"}, "invalid agent name"),
        ("send", {"to": "nobody", "content": "x"}, "nobody"),
        ("send", {"to": "echo", "content": "@/etc/passwd"}, "nothing is read from a path"),
        ("send", {"to": "echo", "content": "x", "thread_id": "../up"}, "invalid message id"),
        ("send", {"to": "echo", "content": "x", "headers": {"pipeline": "x"}}, "internal"),
        ("send", {"to": "echo", "content": "x", "wait": True, "timeout_s": 10_000}, "300"),
        ("send", {"to": "pipeline:x", "content": "x"}, "start_pipeline"),
        ("send", {"content": "x", "keywords": ["k" * 500]}, "keywords"),
        ("start_pipeline", {"pipeline": "nope", "content": "x"}, "nope"),
        ("replay", {"id": "../../etc/passwd"}, "invalid message id"),
        ("replay", {"id": "01NOSUCHTHREAD"}, "no thread or message"),
        ("tail", {"agent": "nobody"}, "unknown agent"),
        ("tail", {"kinds": ["exploded"]}, "unknown event kind"),
        ("tail", {"since": "yesterday-ish"}, "neither an ISO time"),
        ("tail", {"lines": 10**9}, "1000"),
        ("resolve_escalation", {"escalation_id": "../x", "verdict": "pass"}, "invalid"),
        ("resolve_escalation", {"escalation_id": "01NOPE", "verdict": "pass"}, "no open"),
        ("resolve_escalation", {"escalation_id": "01NOPE", "verdict": "maybe"}, "pass"),
        ("requeue_dead", {"message_id": "01NOPE"}, "no dead letter"),
        ("dead_letters", {"agent": "Bad Name"}, "invalid agent name"),
        ("route", {"keywords": []}, "no keywords"),
    ],
)
def test_bad_input_is_a_tool_error_not_a_crash(
    tmp_path: Path, tool: str, arguments: dict[str, Any], says: str
) -> None:
    async def story(client: Client) -> Any:
        result = await client.call_tool(tool, arguments)
        alive = await client.call_tool("status", {})  # the server is still there
        return result, alive

    result, alive = _drive(_served(tmp_path), story)
    assert says in _error(result)
    assert not alive.is_error


def test_resources_read_runs_threads_messages_and_reports_inside_the_workspace(
    tmp_path: Path,
) -> None:
    served = _served(tmp_path)
    reports = tmp_path / "workspace" / "reports"
    reports.mkdir(parents=True)
    (reports / "run1.md").write_text("# review of run1\n")
    (tmp_path / "secret.md").write_text("not yours\n")
    (reports / "escape.md").symlink_to(tmp_path / "secret.md")

    async def story(client: Client) -> Any:
        sent = await client.call_tool("send", {"to": "echo", "content": "hello"})
        message_id = sent.structured_content["sent"][0]["id"]
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
        message = await client.read_resource(f"agentctl://message/{message_id}")
        thread = await client.read_resource(f"agentctl://thread/{message_id}")
        report = await client.read_resource("agentctl://report/run1")
        refused = []
        for uri in ("agentctl://report/escape", "agentctl://run/01NORUN",
                    "agentctl://message/..%2F..%2Fetc"):  # fmt: skip
            try:
                await client.read_resource(uri)
            except MCPError as exc:
                refused.append(str(exc))
        return message_id, listed, message, thread, report, refused

    message_id, listed, message, thread, report, refused = _drive(served, story)
    assert f"agentctl://thread/{message_id}" in listed and "agentctl://report/run1" in listed
    assert json.loads(message.contents[0].text)["content"] == "hello"
    assert json.loads(thread.contents[0].text)["thread_id"] == message_id
    assert report.contents[0].text == "# review of run1\n"
    assert len(refused) == 3 and not any("not yours" in r for r in refused)


def test_client_names_are_kept_printable_and_short() -> None:
    assert clean_client_name("claude-code") == "claude-code"
    assert clean_client_name("evil\nby: cli\x1b[31m") == "evilby: cli[31m"
    assert clean_client_name("x" * 500) == "x" * 64
    assert clean_client_name("  ") is None and clean_client_name(None) is None


def test_a_bind_beyond_loopback_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "a-long-enough-token")
    with pytest.raises(AgentctlError, match="AGENTCTL_MCP_TOKEN"):
        check_bind("0.0.0.0", None)
    with pytest.raises(AgentctlError, match="at least 16"):
        check_bind("127.0.0.1", "short")


def test_the_token_guard_answers_401_without_the_exact_bearer_token() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = BearerTokenMiddleware(app, "s3cret-token-0123456789")

    def status_of(headers: list[tuple[bytes, bytes]]) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/mcp", "headers": headers}
        asyncio.run(guard(scope, None, send))
        return int(sent[0]["status"])

    assert status_of([]) == 401
    assert status_of([(b"authorization", b"Bearer wrong")]) == 401
    assert status_of([(b"authorization", b"Bearer s3cret-token-0123456789x")]) == 401
    assert status_of([(b"authorization", b"Bearer s3cret-token-0123456789")]) == 200
    assert reached == ["/mcp"]


def test_without_the_mcp_extra_one_error_line_names_it(tmp_path: Path) -> None:
    # Given a roster, and an interpreter where `import mcp` fails, as without the extra.
    write_roster(tmp_path, f"- name: echo\n  {ECHO}\n")
    hide = (
        "import sys; sys.modules['mcp'] = None; sys.argv = ['agentctl', 'mcp']; "
        "from agentctl.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the MCP server needs the mcp extra: pip install 'agentctl[mcp]'"
    ]


def test_a_wait_that_runs_out_says_what_holds_the_reply_and_that_it_was_sent(
    tmp_path: Path,
) -> None:
    # Given no supervisor: nothing will answer.
    async def story(client: Client) -> Any:
        return await client.call_tool(
            "send", {"to": "echo", "content": "anyone?", "wait": True, "timeout_s": 0.3}
        )

    served = _served(tmp_path)
    error = _error(_drive(served, story))
    [waiting] = list((tmp_path / "workspace" / "echo" / "inbox" / "new").glob("*.json"))
    message_id = json.loads(waiting.read_text())["id"]
    assert f"sent: {message_id}" in error and "no supervisor" in error, error


@pytest.mark.parametrize(
    ("tool", "arguments", "line"),
    [
        ("send", {"to": "echo", "content": "x", "timeout_s": -5},
         "timeout_s: must be greater than 0"),
        ("send", {"to": "echo", "content": "x", "priority": "ultra"},
         "priority: must be 'high', 'normal' or 'low'"),
        ("tail", {"lines": 0}, "lines: must be greater than or equal to 1"),
        ("send", {"to": "echo", "content": None},
         "content: must be text, a JSON object or an array (got null)"),
        ("send", {"to": "echo"}, "content: required"),
        ("send", {"to": "echo", "content": "x", "headers": {"a": 1}},
         "headers.a: must be a valid string (got number)"),
        ("halt", {"reason": ""}, "reason: must have at least 1 character"),
    ],
)
def test_a_bad_argument_is_one_line_naming_it(
    tmp_path: Path, tool: str, arguments: dict[str, Any], line: str
) -> None:
    async def story(client: Client) -> Any:
        return await client.call_tool(tool, arguments)

    result = _drive(_served(tmp_path), story)
    text = _error(result)
    assert line in text and "\n" not in text and "pydantic" not in text, text
    assert result.structured_content["error"] == text


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"to": "echo", "content": "x", "fanout": True}, "give `to` or `fanout`, not both"),
        ({"to": "echo", "content": ""}, "content: empty; nothing sent"),
        ({"to": "echo", "content": "  \n"}, "content: empty; nothing sent"),
    ],
)
def test_a_send_that_cannot_mean_what_it_says_is_refused_and_nothing_sent(
    tmp_path: Path, arguments: dict[str, Any], says: str
) -> None:
    async def story(client: Client) -> Any:
        return await client.call_tool("send", arguments)

    assert says in _error(_drive(_served(tmp_path), story))
    assert not list((tmp_path / "workspace").glob("*/inbox/new/*.json"))


def test_resume_says_what_it_lifted(tmp_path: Path) -> None:
    async def story(client: Client) -> Any:
        await client.call_tool("halt", {"reason": "looking into it"})
        lifted = await client.call_tool("resume", {})
        again = await client.call_tool("resume", {})
        return lifted.structured_content, again.structured_content

    lifted, again = _drive(_served(tmp_path), story)
    assert lifted["halted"] is False and lifted["changed"] is True and "state" not in lifted
    assert lifted["lifted"]["reason"] == "looking into it"
    assert lifted["lifted"]["by"] == "mcp:unit-client" and lifted["lifted"]["halted_at"]
    assert again == {"halted": False, "changed": False, "lifted": None}


def test_replay_takes_an_id_any_message_of_the_thread_names(tmp_path: Path) -> None:
    async def story(client: Client) -> Any:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        sent = await client.call_tool("send", {"to": "echo", "content": "hello"})
        message_id = sent.structured_content["sent"][0]["id"]
        replayed = await client.call_tool("replay", {"id": message_id})
        return tools["replay"].input_schema, message_id, replayed.structured_content

    schema, message_id, replayed = _drive(_served(tmp_path), story)
    assert schema["required"] == ["id"] and "thread id" in schema["properties"]["id"]["description"]
    assert replayed["thread_id"] == message_id

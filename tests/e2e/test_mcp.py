"""`agentctl mcp` end to end: a real `agentctl run`, a real `agentctl mcp` subprocess, driven by
the MCP SDK's own client over stdio and over streamable HTTP, on files and on NATS.

The story (issue 16): list the tools; send a task to a running agent and get its reply; start a
pipeline run whose one stage escalates; list the escalation and resolve it over MCP; the run
ends done; `verify` passes; the journal says the send and the resolve were `by: mcp` with the
client's name."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import Implementation

from tests.conftest import AGENTCTL, JUDGE, REPO, run_cli, wait_until, write_roster
from tests.natsfix import NatsServer, free_ports, nats_server  # noqa: F401

CLIENT = Implementation(name="e2e-client", version="1.0")
TOKEN = "e2e-token-0123456789abcdef"
AGENTS = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: judge
  python: judge:Judge
"""

Session = Callable[[], AbstractAsyncContextManager[Client]]


def _project(tmp_path: Path, **settings: object) -> None:
    (tmp_path / "judge.py").write_text(JUDGE)
    roster = write_roster(tmp_path, AGENTS, **settings)
    roster.write_text(roster.read_text() + "pipelines:\n  gate: [judge]\n")
    (tmp_path / "workspace").mkdir()  # as `agentctl init` makes it


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _stdio(tmp_path: Path, *args: str) -> Session:
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentctl", "mcp", *args],
                                   cwd=str(tmp_path), env=_env())  # fmt: skip

    def session() -> AbstractAsyncContextManager[Client]:
        return Client(params, client_info=CLIENT)

    return session


def _http(url: str, token: str | None) -> Session:
    @asynccontextmanager
    async def session() -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with create_mcp_http_client(headers=headers) as http:
            async with Client(streamable_http_client(url, http_client=http),
                              client_info=CLIENT) as client:  # fmt: skip
                yield client

    return session


async def _poll(call: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await call()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.2)


async def _story(session: Session) -> dict[str, Any]:
    """The issue's story over one MCP session; what the journal said, for the caller."""
    async with session() as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"send", "start_pipeline", "escalations", "resolve_escalation"} <= names

        sent = await client.call_tool(
            "send", {"to": "echo", "content": {"text": "hello"}, "wait": True, "timeout_s": 30}
        )
        assert not sent.is_error, sent.content
        [reply] = sent.structured_content["replies"]
        assert reply["from"] == "echo" and reply["content"]["echo"]["text"] == "hello"

        started = await client.call_tool(
            "start_pipeline", {"pipeline": "gate", "content": "please escalate"}
        )
        assert not started.is_error, started.content
        run = started.structured_content["run"]

        async def open_escalations() -> list[dict[str, Any]]:
            listed = await client.call_tool("escalations", {})
            return list(listed.structured_content["escalations"])

        [escalation] = await _poll(open_escalations)
        assert escalation["run"] == run and escalation["agents"] == ["judge"]
        resolved = await client.call_tool("resolve_escalation", {
            "escalation_id": escalation["id"], "verdict": "pass", "note": "looked at it",
        })  # fmt: skip
        assert not resolved.is_error, resolved.content

        async def run_status() -> str | None:
            read = await client.read_resource(f"agentctl://run/{run}")
            status = json.loads(read.contents[0].text)["status"]
            return status if status not in ("running", "escalated") else None

        assert await _poll(run_status) == "done"
        assert await open_escalations() == []
        verified = await client.call_tool("verify", {})
        assert verified.structured_content["ok"], verified.structured_content["problems"]
        tail = await client.call_tool("tail", {"lines": 1000, "kinds": ["sent", "resolved"]})
        return {"run": run, "events": tail.structured_content["events"]}


def _by_mcp(events: list[dict[str, Any]]) -> None:
    resolved = [e for e in events if e["event"] == "resolved"]
    sends = [e for e in events if e["event"] == "sent" and e.get("agent") == "user"]
    assert resolved and sends
    for event in [*resolved, *sends]:
        assert (event.get("by"), event.get("client")) == ("mcp", "e2e-client"), event


def test_the_story_over_stdio(tmp_path: Path, supervised: Any) -> None:
    _project(tmp_path)
    supervised(tmp_path).wait_ready(["echo", "judge", "pipeline"])
    found = asyncio.run(_story(_stdio(tmp_path)))
    _by_mcp(found["events"])
    # What the CLI reads agrees: the audit trail is intact, the run done.
    assert run_cli("verify", cwd=tmp_path).returncode == 0
    shown = run_cli("pipeline", "show", found["run"], "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["status"] == "done"


def test_the_story_over_streamable_http_with_a_token(tmp_path: Path, supervised: Any) -> None:
    _project(tmp_path)
    supervised(tmp_path).wait_ready(["echo", "judge", "pipeline"])
    [port] = free_ports(1)
    server = subprocess.Popen(
        [*AGENTCTL, "mcp", "--http", "--port", str(port)], cwd=tmp_path, env={
            **_env(), "AGENTCTL_MCP_TOKEN": TOKEN}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_until(lambda: _answers(url) or server.poll() is not None, timeout_s=30)
        assert server.poll() is None, server.communicate()
        # Without the token (or with a wrong one) every request is refused.
        assert _post_status(url, None) == 401
        assert _post_status(url, "Bearer " + TOKEN[:-1]) == 401
        found = asyncio.run(_story(_http(url, TOKEN)))
        _by_mcp(found["events"])
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert out == ""  # HTTP serves nothing on stdout either
    assert f"serving {tmp_path / 'workspace'} at {url}" in err


def _answers(url: str) -> bool:
    return _post_status(url, None) is not None


def _post_status(url: str, authorization: str | None) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        **({"Authorization": authorization} if authorization else {}),
    })  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # not listening yet


def test_a_bind_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    _project(tmp_path)
    result = run_cli("mcp", "--http", "--host", "0.0.0.0", cwd=tmp_path,
                     env={"AGENTCTL_MCP_TOKEN": ""})  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --host 0.0.0.0 is reachable from other machines")


def test_a_workspace_that_does_not_exist_is_refused_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    # Given a project, and a typo in --workspace
    _project(tmp_path)
    typo = tmp_path / "typo"
    result = run_cli("mcp", "-w", str(typo), cwd=tmp_path, input="")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: no workspace at {typo}: start the team with agentctl run, or give --workspace"
    ]
    assert not typo.exists()


def test_on_nats_a_workspace_not_here_yet_is_served(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    # Given a NATS roster: the messages are on the cluster, this machine's folder may not exist.
    _project(tmp_path, transport=f"{{kind: nats, servers: [{nats_server.url}]}}")
    elsewhere = tmp_path / "not-yet"
    # When a client starts the server and hangs up at once (stdin closed)
    result = run_cli("mcp", "-w", str(elsewhere), cwd=tmp_path, input="")
    assert result.returncode == 0, result.stderr
    assert f"serving {elsewhere} over stdio" in result.stderr


def test_a_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    _project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("mcp", "--http", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen")
    )


def test_stdout_carries_protocol_messages_only(tmp_path: Path) -> None:
    # Given a raw stdio session: initialize, a tool that works, one that fails, a bad resource.
    _project(tmp_path)
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "status", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "send", "arguments": {"to": "../x", "content": "x"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read",
         "params": {"uri": "agentctl://run/..%2F..%2Fetc"}},
    ]  # fmt: skip
    server = subprocess.Popen(
        [*AGENTCTL, "mcp"], cwd=tmp_path, env=_env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert server.stdin is not None and server.stdout is not None
        for request in requests:
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            if "id" in request:  # one answer per request, before the next
                lines.append(server.stdout.readline())
        server.stdin.close()
        lines += server.stdout.readlines()
        server.wait(timeout=30)
    finally:
        server.kill()
    err = server.stderr.read() if server.stderr else ""
    answers = [json.loads(line) for line in lines if line.strip()]  # every line is JSON-RPC
    assert [a.get("id") for a in answers] == [1, 2, 3, 4]
    assert all(a["jsonrpc"] == "2.0" for a in answers)
    assert answers[2]["result"]["isError"] is True and "error" in answers[3]
    assert "serving" in err and server.returncode == 0


def test_read_only_over_stdio_refuses_the_write_tools(tmp_path: Path) -> None:
    _project(tmp_path)

    async def story() -> tuple[set[str], Any]:
        async with _stdio(tmp_path, "--read-only")() as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            refused = await client.call_tool(
                "resolve_escalation", {"escalation_id": "x", "verdict": "block"}
            )
            return names, refused

    names, refused = asyncio.run(story())
    assert "status" in names and not names & {"send", "halt", "resolve_escalation"}
    assert refused.is_error


def test_the_story_on_nats(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _project(tmp_path, transport=f"{{kind: nats, servers: [{nats_server.url}]}}")
    supervised(tmp_path)

    def ready() -> bool:
        rows = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)["agents"]
        idle = {r["name"] for r in rows if r["state"] == "idle" and r["alive"]}
        return {"echo", "judge", "pipeline"} <= idle

    wait_until(ready, timeout_s=30, interval_s=0.3)
    found = asyncio.run(_story(_stdio(tmp_path)))
    _by_mcp(found["events"])
    tail = run_cli("tail", "-n", "1000", "--json", "--kind", "resolved", cwd=tmp_path)
    [resolved] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert resolved["by"] == "mcp" and resolved["client"] == "e2e-client"


def test_http_options_without_http_are_refused(tmp_path: Path) -> None:
    _project(tmp_path)
    for given in (["--host", "0.0.0.0"], ["--port", "9999"], ["--token", TOKEN]):
        result = run_cli("mcp", *given, cwd=tmp_path, input="")
        assert result.returncode == 2 and result.stdout == "", (given, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {given[0]} needs --http"), line
    # A token in the environment is for --http when it is given: stdio serves as ever.
    served = run_cli("mcp", cwd=tmp_path, input="", env={"AGENTCTL_MCP_TOKEN": TOKEN})
    assert served.returncode == 0 and "over stdio" in served.stderr, served.stderr


def test_port_0_is_any_free_port_and_the_start_line_names_it(tmp_path: Path) -> None:
    _project(tmp_path)
    server = subprocess.Popen(
        [*AGENTCTL, "mcp", "--http", "--port", "0"], cwd=tmp_path, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        start = server.stderr.readline()  # the start line, before anything is served
        assert "serving" in start and "at http://127.0.0.1:" in start, start
        port = int(start.split("at http://127.0.0.1:")[1].split("/")[0])
        assert port > 0
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/mcp") or server.poll() is not None,
                   timeout_s=30)  # fmt: skip
        assert server.poll() is None
    finally:
        server.terminate()
        server.communicate(timeout=30)

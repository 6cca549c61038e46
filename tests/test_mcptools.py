"""MCP tools for `llm:` agents (issue 16): real `agentctl run` processes, the scripted
OpenAI-compatible endpoint of test_llm.py asking for `tool_calls`, and a real MCP server
(tests/mcp_tools_server.py, built with the SDK) started by the agent over stdio, or over
streamable HTTP by the test.

Covered (on files; the journal and replay on NATS too): the tools offered as functions and
their answers fed back until the model answers, the `tool_call` journal events and `replay`;
tool errors, unknown functions and bad arguments fed back as errors; `max_tool_calls`; a budget
spent mid-loop (HALT); servers that die, cannot start or do not exist (the attempt fails, is
retried, then escalated); the server's environment (the LLM key withheld); an HTTP server with
a header from the environment; the roster's validation; the SDK missing.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl.config.roster import load_roster
from agentctl.model.errors import ConfigError, NonRetryableError
from tests import test_llm
from tests.conftest import REPO, run_cli, wait_until, write_roster
from tests.natsfix import NatsServer, nats_server  # noqa: F401 - the fixture
from tests.test_llm import FakeLlm, events, llm_agent, send, setup, wait_event

SERVER = str(REPO / "tests" / "mcp_tools_server.py")
STDIO = {"tools": {"command": [sys.executable, SERVER]}}


llm = test_llm.llm  # the fixture: the scripted endpoint, TEST_LLM_URL and TEST_LLM_KEY set


def tools_agent(name: str = "asker", *, servers: dict[str, Any] | None = None,
                env: dict[str, Any] | None = None, **options: Any) -> str:  # fmt: skip
    """An llm agent with MCP servers (the stdio test server unless given)."""
    options.setdefault("max_attempts", 1)
    options.setdefault("timeout_s", 60)  # a server starts in seconds on a loaded machine
    entry = llm_agent(name, api_key_env="TEST_LLM_KEY", mcp_servers=servers or STDIO, **options)
    return entry + (f"  env: {json.dumps(env)}\n" if env else "")


def request_messages(llm: FakeLlm, index: int) -> list[dict[str, Any]]:
    return llm.requests[index]["body"]["messages"]  # type: ignore[no-any-return]


# -- the loop ----------------------------------------------------------------------------------


def test_the_models_tool_calls_reach_the_server_and_their_answers_reach_the_model(
    tmp_path: Path, llm: FakeLlm, supervised, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MCP_VISIBLE", "passed-through")
    env = {"inherit": "none", "pass": ["TEST_MCP_VISIBLE"]}
    ws = setup(tmp_path, tools_agent(env=env, max_tool_calls=4))
    supervised(tmp_path).wait_ready(["asker"])

    llm.call_tools(("tools__add", {"a": 2, "b": 3}), total_tokens=10)
    llm.call_tools(("tools__env", {"name": "TEST_MCP_VISIBLE"}),
                   ("tools__env", {"name": "TEST_LLM_KEY"}), total_tokens=20)  # fmt: skip
    llm.answer("2 + 3 = 5", 30)
    code, reply = send(tmp_path, "asker", "what is 2 + 3?")
    assert code == 0, reply
    content = reply["content"]
    assert content["answer"] == "2 + 3 = 5"
    assert content["tool_calls"] == 3
    assert content["usage"] == {"prompt_tokens": 30, "completion_tokens": 30, "total_tokens": 60}
    mid = reply["in_reply_to"]
    handled = wait_event(ws, "handled", message_id=mid)
    assert handled["usage"]["total_tokens"] == 60

    # The tools were offered as functions, with the server's descriptions and schemas.
    first = llm.requests[0]["body"]
    functions = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert sorted(functions) == ["tools__add", "tools__die", "tools__env", "tools__lookup",
                                 "tools__whoami"]  # fmt: skip
    assert functions["tools__add"]["description"] == "Add two integers."
    assert functions["tools__add"]["parameters"]["required"] == ["a", "b"]
    assert all(t["type"] == "function" for t in first["tools"])
    # Each answer went back to the model after its own call, by id.
    second = request_messages(llm, 1)
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    call = second[2]["tool_calls"][0]
    assert call["function"]["name"] == "tools__add"
    assert second[3] == {"role": "tool", "tool_call_id": call["id"], "content": "5"}
    third = request_messages(llm, 2)
    assert [m["role"] for m in third[-3:]] == ["assistant", "tool", "tool"]
    # env: inherit none passes what it lists; the LLM key never reaches the server.
    assert [m["content"] for m in third[-2:]] == ["passed-through", "<unset>"]
    assert llm.count() == 3

    # Each call is journaled, with the ids OpenTelemetry would hang a span on.
    calls = events(ws, "tool_call", message_id=mid)
    assert [(c["call_index"], c["server"], c["tool"]) for c in calls] == [
        (1, "tools", "add"), (2, "tools", "env"), (3, "tools", "env")]  # fmt: skip
    arguments = json.dumps({"a": 2, "b": 3})
    first_call = calls[0]
    assert first_call["agent"] == "asker" and first_call["attempt"] == 1
    assert first_call["thread_id"] == reply["thread_id"]
    assert first_call["call_id"] == call["id"]
    assert first_call["arguments_bytes"] == len(arguments)
    assert first_call["arguments_sha256"] == hashlib.sha256(arguments.encode()).hexdigest()
    assert first_call["result_bytes"] == 1 and first_call.get("error") is None
    assert first_call["duration_ms"] >= 0
    assert calls[1]["result_bytes"] == len("passed-through")

    # replay shows them under the message, in the tree and in JSON.
    replayed = run_cli("replay", mid, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.count("tool_call by asker: tools/") == 3
    assert f"tools/add in {first_call['duration_ms']} ms, 16 B in, 1 B out" in replayed.stdout
    mermaid = run_cli("replay", mid, "--format", "mermaid", cwd=tmp_path).stdout
    assert mermaid.count("Note over asker: tool_call: tools/") == 3
    as_json = json.loads(run_cli("replay", mid, "--json", cwd=tmp_path).stdout)
    [request] = [m for m in as_json["messages"] if m["id"] == mid]
    assert [e["event"] for e in request["events"]].count("tool_call") == 3
    assert request["state"] == "done"


def test_tool_errors_unknown_functions_and_bad_arguments_go_back_to_the_model(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, tools_agent())
    supervised(tmp_path).wait_ready(["asker"])

    llm.call_tools(("tools__lookup", {"country": "Atlantis"}), ("tools__nope", {}),
                   ("tools__add", "{not json"), ("tools__add", {"a": "x", "b": 1}))  # fmt: skip
    llm.answer("I could not find it.")
    code, reply = send(tmp_path, "asker", "capital of Atlantis?")
    assert code == 0, reply
    assert reply["content"]["answer"] == "I could not find it."
    assert reply["content"]["tool_calls"] == 4
    answers = [m["content"] for m in request_messages(llm, 1)[-4:]]
    told = "Error executing tool lookup: no capital known for 'Atlantis'"  # the SDK's words
    assert answers[0] == f"error: {told}"
    assert answers[1].startswith("error: there is no tool 'tools__nope'; the tools: tools__add")
    assert answers[2] == "error: the arguments are not a JSON object"
    assert answers[3].startswith("error: Error executing tool add: 1 validation error")

    calls = events(ws, "tool_call", message_id=reply["in_reply_to"])
    assert [c.get("error") is not None for c in calls] == [True, True, True, True]
    assert calls[0]["error"] == told
    assert calls[1].get("server") is None and calls[1]["tool"] == "tools__nope"
    assert calls[2]["arguments_bytes"] == len("{not json")
    wait_event(ws, "handled", message_id=reply["in_reply_to"])


def test_a_model_calling_tools_past_max_tool_calls_fails_the_attempt(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, tools_agent("looper", max_tool_calls=2))
    supervised(tmp_path).wait_ready(["looper"])

    for _ in range(3):
        llm.call_tools(("tools__add", {"a": 1, "b": 1}))
    code, reply = send(tmp_path, "looper", "loop forever")
    assert code == 1, reply
    mid = reply["in_reply_to"]
    assert reply["content"]["verdict"] == "escalate"
    error = reply["content"]["error"]
    assert "more tool calls than max_tool_calls (2)" in error
    assert "(2 made, 1 more asked for)" in error
    dead = wait_event(ws, "dead", message_id=mid)
    assert dead["error_kind"] == "error"
    assert len(events(ws, "tool_call", message_id=mid)) == 2
    assert llm.count() == 3


def test_a_budget_spent_between_rounds_halts_without_asking_the_model_again(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, tools_agent("spender", budget={"tokens": 100}))
    supervised(tmp_path).wait_ready(["spender"])

    llm.call_tools(("tools__add", {"a": 1, "b": 2}), total_tokens=60)
    llm.call_tools(("tools__add", {"a": 3, "b": 4}), total_tokens=50)  # 110 %: spent
    llm.answer("never asked for")
    code, reply = send(tmp_path, "spender", "add things")
    content = reply["content"]
    assert content["verdict"] == "halt", reply
    assert content["reason"] == "budget exhausted after 2 tool call(s) (110/100 tokens)"
    assert content["tool_calls"] == 2 and content["usage"]["total_tokens"] == 110
    assert llm.count() == 2
    mid = reply["in_reply_to"]
    assert wait_event(ws, "handled", message_id=mid)["verdict"] == "halt"
    assert len(events(ws, "tool_call", message_id=mid)) == 2
    assert json.loads((ws / "spender" / "budget.json").read_text())["tokens"] == 110


# -- failing servers ---------------------------------------------------------------------------


def test_a_server_dying_mid_call_fails_the_attempt_and_the_retry_gets_a_fresh_one(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, tools_agent(max_attempts=2))
    supervised(tmp_path).wait_ready(["asker"])
    marker = str(tmp_path / "died")

    llm.call_tools(("tools__die", {"marker": marker}))  # attempt 1: the server exits
    llm.call_tools(("tools__die", {"marker": marker}))  # attempt 2: a new server
    llm.answer("it survived")
    code, reply = send(tmp_path, "asker", "try the dangerous tool")
    assert code == 0, reply
    assert reply["content"]["answer"] == "it survived"
    mid = reply["in_reply_to"]
    assert wait_event(ws, "handled", message_id=mid)["attempt"] == 2
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["attempt"] == 1 and failed["error_kind"] == "error"
    assert failed["error"].startswith("MCP server 'tools': closed the connection")
    assert "its stderr ends: tool server: dying on purpose" in failed["error"]
    calls = events(ws, "tool_call", message_id=mid)
    assert [(c["attempt"], c.get("error") is None) for c in calls] == [(1, False), (2, True)]
    assert "closed the connection" in calls[0]["error"]
    assert "dying on purpose" in (ws / "asker" / "agent.log").read_text()


def test_a_server_that_cannot_start_fails_every_attempt_then_escalates(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    crashing = {"tools": {"command": [sys.executable, SERVER, "--crash"]}}
    missing = {"tools": {"command": [str(tmp_path / "no-such-server")]}}
    agents = tools_agent("crasher", servers=crashing, max_attempts=2)
    ws = setup(tmp_path, agents + tools_agent("ghost", servers=missing))
    supervised(tmp_path).wait_ready(["crasher", "ghost"])

    code, reply = send(tmp_path, "crasher", "anything")
    assert code == 1, reply
    content = reply["content"]
    assert content["verdict"] == "escalate" and content["attempts"] == 2
    assert content["error"] == (
        "MCP server 'tools': closed the connection; its stderr ends: "
        "tool server: cannot start: no config here"
    )
    mid = reply["in_reply_to"]
    assert wait_event(ws, "dead", message_id=mid)["attempt"] == 2
    assert len(events(ws, "failed", message_id=mid)) == 2

    code, reply = send(tmp_path, "ghost", "anything")
    assert code == 1, reply
    assert reply["content"]["error"] == (
        "MCP server 'tools': cannot start or reach it: No such file or directory"
    )
    assert llm.count() == 0  # the model is not asked without its tools


# -- streamable HTTP ---------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """The test server over streamable HTTP on loopback; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "http-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, SERVER, "--http", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def listening() -> bool:
        with socket.socket() as client:
            return client.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, timeout_s=30)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_an_http_server_gets_its_header_from_the_environment(
    tmp_path: Path, llm: FakeLlm, supervised, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "mcp-token-4d1f7a2b9c"
    monkeypatch.setenv("TEST_MCP_TOKEN", token)
    web = {"web": {"url": http_server, "headers": {"Authorization": "Bearer ${TEST_MCP_TOKEN}"},
                   "tools": ["whoami", "add"]}}  # fmt: skip
    ws = setup(tmp_path, tools_agent(servers=web))
    supervised(tmp_path).wait_ready(["asker"])

    llm.call_tools(("web__whoami", {}))
    llm.answer("done")
    code, reply = send(tmp_path, "asker", "who am I?")
    assert code == 0 and reply["content"]["answer"] == "done", reply
    offered = [t["function"]["name"] for t in llm.requests[0]["body"]["tools"]]
    assert offered == ["web__whoami", "web__add"]  # only the listed tools, in their order
    assert request_messages(llm, 1)[-1]["content"] == f"Bearer {token}"
    [call] = events(ws, "tool_call", message_id=reply["in_reply_to"])
    assert (call["server"], call["tool"], call.get("error")) == ("web", "whoami", None)
    leaked = [p for p in ws.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert leaked == []


# -- NATS ----------------------------------------------------------------------------------------


def test_tool_calls_are_journaled_and_replayed_on_nats(
    tmp_path: Path,
    llm: FakeLlm,
    nats_server: NatsServer,  # noqa: F811 - the fixture imported above; before `supervised`,
    supervised,  # so the team stops before the server (the other order costs a ~25 s teardown)
) -> None:
    transport = f"{{kind: nats, servers: [{nats_server.url}]}}"
    write_roster(tmp_path, tools_agent(), transport=transport, poll_interval_s=0.1)
    supervised(tmp_path).wait_ready(["asker"])

    llm.call_tools(("tools__add", {"a": 20, "b": 22}))
    llm.answer("42")
    code, reply = send(tmp_path, "asker", "add 20 and 22")
    assert code == 0 and reply["content"]["answer"] == "42", reply
    assert reply["content"]["tool_calls"] == 1
    mid = reply["in_reply_to"]

    def tool_calls() -> list[dict[str, Any]]:
        tailed = run_cli("tail", "-n", "1000", "--json", "--kind", "tool_call", cwd=tmp_path)
        assert tailed.returncode == 0, tailed.stderr
        return [json.loads(line) for line in tailed.stdout.splitlines() if line.strip()]

    [call] = wait_until(tool_calls, timeout_s=30)
    assert (call["message_id"], call["server"], call["tool"]) == (mid, "tools", "add")
    assert call["result_bytes"] == 2 and call["attempt"] == 1
    replayed = run_cli("replay", mid, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "tool_call by asker: tools/add in " in replayed.stdout


# -- the roster --------------------------------------------------------------------------------


def roster_error(tmp_path: Path, agents: str) -> str:
    path = write_roster(tmp_path, agents)
    with pytest.raises(ConfigError) as info:
        load_roster(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("servers", "extra", "expected"),
    [
        ({"tools": {"command": ["x"], "colour": "red"}}, {},
         "llm.mcp_servers.tools.colour (agent 'asker'): unknown key"),
        ({"tools": {"command": ["x"], "url": "http://h/mcp"}}, {},
         "llm.mcp_servers.tools (agent 'asker'): give exactly one of command (stdio) or url"),
        ({"tools": {}}, {}, "give exactly one of command (stdio) or url"),
        ({"tools": {"command": ["x"], "headers": {"A": "b"}}}, {},
         "headers are for a url server"),
        ({"tools": {"url": "ftp://h/mcp"}}, {}, "'ftp://h/mcp' is not an http:// or https:// URL"),
        ({"tools": {"url": "http://h/mcp", "headers": {"Bad Name": "x"}}}, {},
         "'Bad Name' is not a header name"),
        ({"tools": {"url": "http://h/mcp", "headers": {"A": "Bearer ${1X}"}}}, {},
         "header A: a ${...} that is not ${VAR}"),
        ({"tools": {"command": "x", "tools": ["a b"]}}, {}, "'a b' is not an MCP tool name"),
        ({"tools": {"command": "x", "tools": ["a", "a"]}}, {}, "a tool is listed twice"),
        ({"tools": {"command": []}}, {}, "llm.mcp_servers.tools.command (agent 'asker')"),
        ({"my tools": {"command": ["x"]}}, {}, "MCP server name 'my tools' does not match"),
        ({"tools": {"command": ["x"]}}, {"max_tool_calls": 0},
         "llm.max_tool_calls (agent 'asker'): Input should be greater than or equal to 1"),
        ({"tools": "python server.py"}, {}, "llm.mcp_servers.tools (agent 'asker')"),
        ({}, {"max_tool_calls": 3}, "max_tool_calls limits the calls to mcp_servers' tools"),
    ],
)  # fmt: skip
def test_the_roster_refuses_bad_mcp_servers_naming_the_agent_and_the_field(
    tmp_path: Path, servers: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    spec = {"model": "m", "base_url": "http://127.0.0.1:9/v1", **extra}
    if servers:
        spec["mcp_servers"] = servers
    error = roster_error(tmp_path, f"- name: asker\n  llm: {json.dumps(spec)}\n")
    assert expected in error
    assert error.count("\n") == 0  # one problem, one line


def test_env_is_for_agents_that_start_programs(tmp_path: Path) -> None:
    base = {"model": "m", "base_url": "http://127.0.0.1:9/v1"}
    env = "  env: {inherit: none}\n"
    error = roster_error(tmp_path, f"- name: plain\n  llm: {json.dumps(base)}\n" + env)
    assert "env: is for exec: and command: agents, and llm: agents with a command" in error
    http = {**base, "mcp_servers": {"web": {"url": "http://127.0.0.1:9/mcp"}}}
    assert "env: is for" in roster_error(tmp_path, f"- name: w\n  llm: {json.dumps(http)}\n" + env)
    stdio = {**base, "mcp_servers": {"tools": {"command": "python server.py"}}}
    roster = load_roster(write_roster(tmp_path, f"- name: s\n  llm: {json.dumps(stdio)}\n" + env))
    spec = roster.agent("s")
    assert spec.llm is not None and spec.llm.mcp_servers["tools"].command == ["python", "server.py"]
    assert spec.llm.max_tool_calls == 16


def test_an_unset_header_variable_disables_the_agent_and_validate_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_MCP_UNSET", raising=False)
    monkeypatch.setenv("TEST_MCP_SET", "x")
    servers = {
        "fine": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "${TEST_MCP_SET}"}},
        "search": {"url": "http://127.0.0.1:9/mcp",
                   "headers": {"Authorization": "Bearer ${TEST_MCP_UNSET}"}},
    }  # fmt: skip
    spec = {"model": "m", "base_url": "http://127.0.0.1:9/v1", "mcp_servers": servers}
    write_roster(tmp_path, f"- name: searcher\n  llm: {json.dumps(spec)}\n")
    why = ("disabled: TEST_MCP_UNSET is not set (the Authorization header of MCP server "
           "'search')")  # fmt: skip
    validated = run_cli("validate", "--json", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["disabled"] == {"searcher": why}
    roster = load_roster(tmp_path / "agents.yaml")
    # The header variables are secrets too: no exec: program gets them unless it lists them.
    assert {"TEST_MCP_SET", "TEST_MCP_UNSET"} <= roster.withheld_env()
    # status (which reads the roster without validating it) sees the agent disabled too.
    status = run_cli("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    [row] = [a for a in json.loads(status.stdout)["agents"] if a["name"] == "searcher"]
    assert row["state"] == "disabled", row


def test_validate_finds_a_missing_server_program(tmp_path: Path) -> None:
    spec = {"model": "m", "base_url": "http://127.0.0.1:9/v1",
            "mcp_servers": {"tools": {"command": ["no-such-mcp-server-x"]}}}  # fmt: skip
    write_roster(tmp_path, f"- name: asker\n  llm: {json.dumps(spec)}\n")
    validated = run_cli("validate", cwd=tmp_path)
    assert validated.returncode == 1
    assert (
        "agent 'asker': MCP server 'tools': program 'no-such-mcp-server-x' not found"
        in validated.stderr
    )
    assert "Traceback" not in validated.stderr


def test_a_listed_tool_the_server_does_not_offer_fails_the_attempt() -> None:
    from agentctl.config.mcpspec import McpServerSpec
    from agentctl.runtime.handlers.mcptools import McpServerError, open_toolbox

    spec = McpServerSpec(command=[sys.executable, SERVER], tools=["add", "nope"])
    with (
        pytest.raises(McpServerError) as info,
        open_toolbox({"tools": spec}, env={}, remaining_s=lambda: 60.0, client_name="asker"),
    ):
        pass
    assert str(info.value) == (
        "MCP server 'tools': offers no tool 'nope' (its tools: add, die, env, lookup, whoami)"
    )


def test_without_the_mcp_sdk_an_attempt_fails_with_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentctl.runtime.handlers.mcptools import open_toolbox

    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` finds without the extra
    with (
        pytest.raises(NonRetryableError) as info,
        open_toolbox({}, env={}, remaining_s=lambda: 10.0, client_name="asker"),
    ):
        pass
    assert str(info.value) == "mcp_servers need the MCP SDK: pip install 'agentctl[mcp]'"

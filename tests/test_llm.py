"""`llm:` agents end to end (issue 6): real `agentctl run` processes talking to a small
OpenAI-compatible server started by the test on loopback, which answers /chat/completions from a
script (completions, tool calls, HTTP errors, or silence past the agent's timeout) and records
every request (test_mcptools.py drives MCP tools with it).

Covered: the request (system prompt from role and expertise, the task and the earlier stages'
results in the user message, model / temperature / max_tokens, the bearer key from api_key_env,
which never lands in a file), usage journaled, verdict mode (valid, fenced, invalid then valid,
always invalid), HTTP 500 / 429 retried, 401 not retried, timeouts, the per-agent budget (flag at
80 %, HALT without calling the model at 100 %), a pipeline run's budget (flag, then outcome
halted), and agents disabled while their endpoint's variable is unset.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentctl.runtime.handlers.llm import VERDICT_INSTRUCTIONS
from tests.conftest import REPO, run_cli, wait_until, write_roster

SECRET = "sk-agentctl-test-7f3a9c1e5b2d4068"  # the "API key": must never be written anywhere
RESULTS_HEADING = "\n\nResults of the earlier stages:\n"


# -- the scripted endpoint -----------------------------------------------------------------------


class FakeLlm:
    """An OpenAI-compatible chat-completions server in a thread of the test process.

    Each POST takes the next step of `script`: a completion, an HTTP error, or a stall (no answer
    until the test ends). With the script empty it answers HTTP 500 "unscripted", so a request the
    test did not expect shows up as a failure, not as a hang.
    """

    def __init__(self) -> None:
        self.script: deque[tuple[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake.lock:
                    fake.requests.append({
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": body,
                    })  # fmt: skip
                    step = fake.script.popleft() if fake.script else ("http", (500, "unscripted"))
                kind, value = step
                try:
                    if kind == "stall":
                        fake.closing.wait(value)  # the client gives up first
                        return
                    status, payload = (200, value) if kind == "ok" else value
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def answer(
        self, content: str, total_tokens: int = 12, *, model: str = "served-model", **usage: Any
    ) -> None:
        """Queue one completion."""
        message = {"role": "assistant", "content": content}
        self.script.append(("ok", self._completion(message, "stop", total_tokens, model, usage)))

    def call_tools(self, *calls: tuple[str, Any], total_tokens: int = 12) -> None:
        """Queue a completion asking for tool calls, each (function, arguments): a dict is sent
        as JSON, a string as it is."""
        tool_calls = [
            {"id": f"call_{len(self.script)}_{index}", "type": "function",
             "function": {"name": name,
                          "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for index, (name, args) in enumerate(calls)
        ]  # fmt: skip
        message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        body = self._completion(message, "tool_calls", total_tokens, "served-model", {})
        self.script.append(("ok", body))

    def _completion(
        self, message: dict[str, Any], finish_reason: str, total_tokens: int, model: str,
        usage: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        prompt = total_tokens // 2
        return {
            "id": f"chatcmpl-{len(self.script)}",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": total_tokens - prompt,
                "total_tokens": total_tokens,
                **usage,
            },
        }

    def verdict(self, verdict: str, reason: str, total_tokens: int = 12) -> None:
        """Queue a completion that is a JSON verdict."""
        self.answer(json.dumps({"verdict": verdict, "reason": reason, "findings": []}),
                    total_tokens)  # fmt: skip

    def fail(self, status: int, detail: str = "nope") -> None:
        """Queue an HTTP error."""
        self.script.append(("http", (status, {"error": {"message": detail}})))

    def stall(self, seconds: float = 60) -> None:
        """Queue a request that gets no answer (until the test ends)."""
        self.script.append(("stall", seconds))

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlm]:
    """The endpoint; TEST_LLM_URL and TEST_LLM_KEY are set for everything started afterwards."""
    server = FakeLlm()
    monkeypatch.setenv("TEST_LLM_URL", server.url)
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    yield server
    server.close()


# -- helpers -------------------------------------------------------------------------------------


def llm_agent(
    name: str,
    *,
    role: str = "",
    expertise: list[str] | None = None,
    max_attempts: int = 3,
    timeout_s: float = 20,
    budget: dict[str, Any] | None = None,
    **llm: Any,
) -> str:
    """One roster entry (JSON flow style, which YAML reads as is)."""
    spec = {"model": "test-model", "base_url": "${TEST_LLM_URL}", **llm}
    entry = (
        f"- name: {name}\n"
        f"  llm: {json.dumps(spec)}\n"
        f"  max_attempts: {max_attempts}\n"
        f"  timeout_s: {timeout_s}\n"
        "  retry: {backoff_s: 0}\n"
        "  restart_backoff: {initial_s: 0.1}\n"
    )
    if role:
        entry += f"  role: {json.dumps(role)}\n"
    if expertise:
        entry += f"  expertise: {json.dumps(expertise)}\n"
    if budget:
        entry += f"  budget: {json.dumps(budget)}\n"
    return entry


def setup(tmp_path: Path, agents: str, pipelines: str = "") -> Path:
    """Write the roster; returns the workspace path."""
    path = write_roster(tmp_path, agents, poll_interval_s=0.1)
    if pipelines:
        path.write_text(path.read_text() + pipelines)
    return tmp_path / "workspace"


def send(tmp_path: Path, to: str, content: str, *args: str) -> tuple[int, dict[str, Any]]:
    """`send TO CONTENT --wait --json`: the exit code and the reply (a pipeline's: the outcome)."""
    done = run_cli(
        "send", to, content, *args, "--wait", "--json", "--timeout-s", "90",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def journal(ws: Path) -> list[dict[str, Any]]:
    events = []
    for line in (ws / ".agentctl" / "journal" / "journal.jsonl").read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return events


def events(ws: Path, event: str, **match: object) -> list[dict[str, Any]]:
    return [
        e for e in journal(ws)
        if e["event"] == event and all(e.get(k) == v for k, v in match.items())
    ]  # fmt: skip


def wait_event(ws: Path, event: str, **match: object) -> dict[str, Any]:
    """The one `event` matching `match`, once journaled (it may follow the reply)."""
    found = wait_until(lambda: events(ws, event, **match), timeout_s=30)
    assert len(found) == 1, found
    return found[0]


def messages_of(request: dict[str, Any]) -> tuple[str, str]:
    """(system, user) of a recorded request."""
    system, user = request["body"]["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    return system["content"], user["content"]


def task_and_results(user: str) -> tuple[Any, Any]:
    """The task and the earlier stages' results a user message carries."""
    assert user.startswith("Task:\n"), user
    task, _, results = user.removeprefix("Task:\n").partition(RESULTS_HEADING)
    return json.loads(task), json.loads(results) if results else None


# -- one agent -----------------------------------------------------------------------------------


def test_an_answer_comes_back_with_its_usage_journaled_and_the_request_is_well_formed(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(
        tmp_path,
        llm_agent(
            "writer", role="Writes release notes", expertise=["writing", "changelogs"],
            api_key_env="TEST_LLM_KEY", temperature=0.7, max_tokens=321,
        )
        + llm_agent("plain", system_prompt="You only ever say hi."),
    )  # fmt: skip
    supervised(tmp_path).wait_ready(["writer", "plain"])

    llm.answer("Version 1.2 fixes three bugs.", 18, cost=0.0012, queue_time=0.5)
    code, reply = send(tmp_path, "writer", "summarise v1.2", "-k", "notes,release")
    assert code == 0, reply
    content = reply["content"]
    assert content == {
        "agent": "writer",
        "model": "served-model",  # the model the endpoint says answered
        "answer": "Version 1.2 fixes three bugs.",
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18, "cost": 0.0012},
    }
    handled = wait_event(ws, "handled", agent="writer", message_id=reply["in_reply_to"])
    assert handled["attempt"] == 1
    assert handled["usage"] == content["usage"]

    [request] = llm.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["content_type"] == "application/json"
    assert request["authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.7 and body["max_tokens"] == 321
    system, user = messages_of(request)
    assert system == (
        "You are writer, an agent in a team. Your role: Writes release notes. "
        "Your expertise: writing, changelogs."
    )
    assert "verdict" not in system  # not asked for one
    task, results = task_and_results(user)
    assert task == {"content": "summarise v1.2", "keywords": ["notes", "release"]}
    assert results is None

    # A given system prompt is used as is; no api_key_env, no Authorization; the defaults.
    llm.answer("hi")
    code, reply = send(tmp_path, "plain", '{"goal": "greet"}')
    assert code == 0 and reply["content"]["answer"] == "hi", reply
    second = llm.requests[1]
    assert second["authorization"] is None
    assert messages_of(second)[0] == "You only ever say hi."
    assert task_and_results(messages_of(second)[1])[0] == {"goal": "greet", "keywords": []}
    assert second["body"]["temperature"] == 0.2 and second["body"]["max_tokens"] == 1024
    wait_event(ws, "handled", agent="plain", message_id=reply["in_reply_to"])

    # The key lives in the environment only: not in the roster, the workspace or the log.
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "journal.jsonl" for p in files)
    leaked = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []
    assert "TEST_LLM_KEY" in (tmp_path / "agents.yaml").read_text()


def test_verdict_mode_validates_the_json_answer_retries_then_escalates(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, llm_agent("judge", role="Judges", verdict=True, max_attempts=3))
    supervised(tmp_path).wait_ready(["judge"])

    # A valid verdict (any case), with its reason and findings.
    llm.answer(json.dumps({"verdict": "FLAG", "reason": "too long", "findings": ["line 3"]}))
    code, reply = send(tmp_path, "judge", "review this")
    assert code == 0, reply
    content = reply["content"]
    assert content["verdict"] == "flag" and content["reason"] == "too long"
    assert content["findings"] == ["line 3"] and content["usage"]["total_tokens"] == 12
    handled = wait_event(ws, "handled", message_id=reply["in_reply_to"])
    assert handled["verdict"] == "flag" and handled["attempt"] == 1
    system, _ = messages_of(llm.requests[0])
    assert system.startswith("You are judge, an agent in a team. Your role: Judges.")
    assert system.endswith(VERDICT_INSTRUCTIONS)

    # A fenced ```json answer, as models like to give.
    llm.answer('```json\n{"verdict": "pass", "reason": "fine"}\n```')
    code, reply = send(tmp_path, "judge", "review that")
    assert code == 0, reply
    assert reply["content"]["verdict"] == "pass" and reply["content"]["reason"] == "fine"
    assert wait_event(ws, "handled", message_id=reply["in_reply_to"])["verdict"] == "pass"

    # Prose instead of JSON fails the attempt; the retry's valid answer is the result.
    llm.answer("Sure! My verdict: it should be blocked.")
    llm.verdict("block", "unsafe")
    code, reply = send(tmp_path, "judge", "review again")
    assert code == 0, reply
    mid = reply["in_reply_to"]
    assert reply["content"]["verdict"] == "block" and reply["content"]["reason"] == "unsafe"
    handled = wait_event(ws, "handled", message_id=mid)
    assert handled["attempt"] == 2 and handled["verdict"] == "block"
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["attempt"] == 1 and failed["error_kind"] == "error"
    assert "did not answer JSON" in failed["error"]
    assert llm.count() == 4

    # Never a valid answer: escalated after max_attempts (3), with the last problem.
    llm.answer("no idea")
    llm.answer("[1, 2]")
    llm.answer('{"verdict": "maybe", "reason": "?"}')
    code, reply = send(tmp_path, "judge", "one more")
    assert code == 1, reply
    mid = reply["in_reply_to"]
    content = reply["content"]
    assert content["verdict"] == "escalate" and content["attempts"] == 3
    assert "'maybe' is not one of" in content["error"]
    dead = wait_event(ws, "dead", message_id=mid)
    assert dead["attempt"] == 3 and dead["error_kind"] == "error"
    failures = events(ws, "failed", message_id=mid)
    assert [f["attempt"] for f in failures] == [1, 2, 3]
    assert "did not answer JSON" in failures[0]["error"]
    assert "not a JSON object" in failures[1]["error"]
    assert events(ws, "handled", message_id=mid) == []
    assert llm.count() == 7


def test_http_errors_5xx_and_429_are_retried_401_is_not(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, llm_agent("caller", max_attempts=3))
    supervised(tmp_path).wait_ready(["caller"])

    llm.fail(500, "overloaded")
    llm.answer("second time lucky")
    code, reply = send(tmp_path, "caller", "try")
    assert code == 0 and reply["content"]["answer"] == "second time lucky", reply
    mid = reply["in_reply_to"]
    assert wait_event(ws, "handled", message_id=mid)["attempt"] == 2
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["error_kind"] == "error"
    assert "HTTP 500" in failed["error"] and "overloaded" in failed["error"]
    assert len(events(ws, "retried", message_id=mid)) == 1

    llm.fail(429, "slow down")
    llm.answer("ok now")
    code, reply = send(tmp_path, "caller", "again")
    assert code == 0 and reply["content"]["answer"] == "ok now", reply
    mid = reply["in_reply_to"]
    assert wait_event(ws, "handled", message_id=mid)["attempt"] == 2
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["error_kind"] == "error" and "HTTP 429" in failed["error"]
    assert llm.count() == 4

    # A bad key will not get better: dead after one attempt, and the requester hears of it.
    llm.fail(401, "invalid api key")
    code, reply = send(tmp_path, "caller", "with a bad key")
    assert code == 1, reply
    mid = reply["in_reply_to"]
    content = reply["content"]
    assert content["verdict"] == "escalate" and content["attempts"] == 1
    assert "HTTP 401" in content["error"]
    dead = wait_event(ws, "dead", message_id=mid)
    assert dead["attempt"] == 1 and dead["error_kind"] == "non_retryable"
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["error_kind"] == "non_retryable"
    assert events(ws, "retried", message_id=mid) == []
    assert llm.count() == 5


def test_a_server_slower_than_timeout_s_fails_the_attempt_as_a_timeout(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, llm_agent("sleepy", max_attempts=2, timeout_s=1))
    supervised(tmp_path).wait_ready(["sleepy"])

    llm.stall()
    llm.answer("awake")
    code, reply = send(tmp_path, "sleepy", "wake up")
    assert code == 0 and reply["content"]["answer"] == "awake", reply
    mid = reply["in_reply_to"]
    assert wait_event(ws, "handled", message_id=mid)["attempt"] == 2
    [failed] = events(ws, "failed", message_id=mid)
    assert failed["attempt"] == 1 and failed["error_kind"] == "timeout"
    assert llm.count() == 2

    # Timeouts are retried until max_attempts, then escalated.
    llm.stall()
    llm.stall()
    code, reply = send(tmp_path, "sleepy", "wake up, really")
    assert code == 1, reply
    mid = reply["in_reply_to"]
    assert reply["content"]["verdict"] == "escalate" and reply["content"]["attempts"] == 2
    dead = wait_event(ws, "dead", message_id=mid)
    assert dead["attempt"] == 2 and dead["error_kind"] == "timeout"
    assert llm.count() == 4


def test_an_agents_budget_flags_at_80_percent_and_halts_without_calling_the_model(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    ws = setup(tmp_path, llm_agent("spender", budget={"tokens": 100}))
    supervised(tmp_path).wait_ready(["spender"])

    llm.answer("one", 50)  # 50 %
    code, reply = send(tmp_path, "spender", "first")
    assert code == 0 and reply["content"]["answer"] == "one", reply
    assert reply["content"].get("verdict") in (None, "pass")
    wait_event(ws, "handled", message_id=reply["in_reply_to"])

    llm.answer("two", 40)  # 90 %: flagged
    code, reply = send(tmp_path, "spender", "second")
    assert code == 0, reply
    content = reply["content"]
    assert content["answer"] == "two" and content["verdict"] == "flag"
    assert "budget" in content["reason"] and "90/100 tokens" in content["reason"]
    assert wait_event(ws, "handled", message_id=reply["in_reply_to"])["verdict"] == "flag"

    llm.answer("three", 30)  # under 100 % when asked, so asked: 120 % after
    code, reply = send(tmp_path, "spender", "third")
    assert code == 0, reply
    assert reply["content"]["answer"] == "three" and reply["content"]["verdict"] == "flag"
    wait_event(ws, "handled", message_id=reply["in_reply_to"])
    assert llm.count() == 3

    # Exhausted: HALT, and the model is not called.
    code, reply = send(tmp_path, "spender", "fourth")
    content = reply["content"]
    assert content["verdict"] == "halt", reply
    assert "budget exhausted" in content["reason"] and "120/100 tokens" in content["reason"]
    assert "answer" not in content
    assert wait_event(ws, "handled", message_id=reply["in_reply_to"])["verdict"] == "halt"
    assert llm.count() == 3
    spent = json.loads((ws / "spender" / "budget.json").read_text())
    assert spent["tokens"] == 120


# -- pipelines -----------------------------------------------------------------------------------


def test_a_pipeline_of_llm_stages_flags_then_halts_on_its_run_budget(
    tmp_path: Path, llm: FakeLlm, supervised
) -> None:
    stages = ["researcher", "architect", "implementer", "qa"]
    agents = "".join(llm_agent(name, role=f"The {name}", max_attempts=2) for name in stages)
    pipelines = "pipelines:\n  build:\n    stages: [researcher, architect, implementer, qa]\n"
    pipelines += "    budget: {tokens: 100}\n"
    ws = setup(tmp_path, agents, pipelines)
    supervised(tmp_path).wait_ready([*stages, "pipeline"])

    llm.verdict("pass", "researched", 45)  # 45 %
    llm.verdict("pass", "planned", 40)  # 85 %: the run is flagged
    llm.verdict("pass", "implemented", 30)  # 115 %: the run ends, halted
    code, outcome = send(tmp_path, "pipeline:build", "add a --dry-run flag")
    assert code == 1, outcome
    run = outcome["run"]
    assert outcome["outcome"] == "halted", outcome
    assert outcome["verdict"] == "halt"  # a run ended by its budget is a HALT, not a pass
    assert outcome["reason"].startswith("budget exhausted (115 tokens")
    [flag] = outcome["flags"]
    assert flag["budget"] is True and flag["stage"] == 1
    assert flag["reason"].startswith("budget 85% used (85 tokens")
    results = [s["results"] for s in outcome["stages"]]
    assert [r["researcher"]["reason"] for r in results[:1]] == ["researched"]
    assert results[1]["architect"]["usage"]["total_tokens"] == 40
    assert results[2]["implementer"]["reason"] == "implemented"
    assert results[3] == {}  # never dispatched

    # The qa stage never reached the endpoint, nor its inbox.
    assert llm.count() == 3
    assert not [p for p in (ws / "qa" / "inbox").rglob("*") if p.is_file()]
    [flagged] = events(ws, "flagged", run=run)
    assert flagged["reason"] == "budget 85% used"
    [budget] = events(ws, "budget", run=run)
    assert budget["tokens"] == 115
    [ended] = events(ws, "run_ended", run=run)
    assert ended["outcome"] == "halted"
    for agent, tokens in zip(stages[:3], (45, 40, 30), strict=True):
        handled = wait_event(ws, "handled", agent=agent)
        assert handled["usage"]["total_tokens"] == tokens

    # Each stage was asked for a verdict, with the task and the earlier stages' results.
    task = {"content": "add a --dry-run flag", "keywords": []}
    for index, request in enumerate(llm.requests):
        system, user = messages_of(request)
        assert system.startswith(f"You are {stages[index]}, an agent in a team.")
        assert system.endswith(VERDICT_INSTRUCTIONS)
        seen_task, earlier = task_and_results(user)
        assert seen_task == task
        assert sorted(earlier or {}) == sorted(stages[:index])
    _, user = messages_of(llm.requests[2])
    earlier = task_and_results(user)[1]
    assert earlier["researcher"]["reason"] == "researched"
    assert earlier["architect"]["verdict"] == "pass"
    assert earlier["architect"]["usage"]["total_tokens"] == 40


def test_an_llm_agent_without_its_endpoint_is_disabled_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, supervised
) -> None:
    monkeypatch.delenv("TEST_LLM_OFF", raising=False)
    thinker = llm_agent("thinker").replace("TEST_LLM_URL", "TEST_LLM_OFF")
    agents = "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n" + thinker
    ws = setup(tmp_path, agents, "pipelines:\n  think: [echo, thinker]\n")
    why = "disabled: TEST_LLM_OFF is not set (the endpoint's base URL)"

    validated = run_cli("validate", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert f"thinker: {why}; `agentctl run` leaves it out" in validated.stdout
    validated = run_cli("validate", "--json", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["disabled"] == {"thinker": why}

    sup = supervised(tmp_path)
    sup.wait_ready(["echo", "pipeline"])
    wait_until(lambda: f"thinker: {why}" in sup.log.read_text(), timeout_s=30)
    assert not (ws / "thinker" / "status.json").exists()
    assert sup.proc.poll() is None

    sent = run_cli("send", "pipeline:think", "ponder", "--wait", "--timeout-s", "10", cwd=tmp_path)
    assert sent.returncode == 1
    lines = sent.stderr.strip().splitlines()
    assert len(lines) == 1, sent.stderr
    assert lines[0] == (
        f"error: pipeline 'think' needs agents that cannot run here (thinker: {why})"
    )
    assert "Traceback" not in sent.stderr
    assert not [p for p in (ws / "pipeline" / "inbox").rglob("*") if p.is_file()]
    assert events(ws, "run_started") == []
    # Nor is a message sent to it directly: nobody would ever claim it.
    direct = run_cli("send", "thinker", "ponder", cwd=tmp_path)
    assert direct.returncode == 1 and direct.stderr.count("error:") == 1
    assert f"thinker: {why}; nothing sent" in direct.stderr
    assert not (ws / "thinker" / "inbox").exists() or not any(
        (ws / "thinker" / "inbox").rglob("*.json")
    )


def test_the_bundled_llm_agents_are_disabled_until_their_base_url_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "agents.yaml", tmp_path / "agents.yaml")
    llm_agents = ["researcher", "architect", "implementer", "reviewer", "qa"]
    monkeypatch.delenv("AGENTCTL_LLM_BASE_URL", raising=False)
    validated = run_cli("validate", "--json", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    disabled = json.loads(validated.stdout)["disabled"]
    assert sorted(disabled) == sorted(llm_agents)
    assert all("AGENTCTL_LLM_BASE_URL is not set" in why for why in disabled.values())
    sent = run_cli("send", "pipeline:build", "x", cwd=tmp_path)
    assert sent.returncode == 1
    assert len(sent.stderr.strip().splitlines()) == 1, sent.stderr
    assert "pipeline 'build' needs agents that cannot run here" in sent.stderr

    validated = run_cli(
        "validate", "--json", cwd=tmp_path,
        env={"AGENTCTL_LLM_BASE_URL": "http://127.0.0.1:9/v1"},
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)["disabled"] == {}

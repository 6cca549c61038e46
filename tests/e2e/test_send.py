"""`agentctl send`'s options as a user gives them: keywords, timeouts, routing, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

from tests.conftest import AGENTCTL, run_cli, wait_until, write_roster

ECHO = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
  expertise: [greeting]
"""


def _waiting(tmp_path: Path) -> list[dict]:
    new = tmp_path / "workspace" / "echo" / "inbox" / "new"
    return [json.loads(p.read_text()) for p in sorted(new.glob("*.json"))] if new.is_dir() else []


def test_repeated_keywords_are_all_kept(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    sent = run_cli("send", "echo", "hi", "-k", "a", "-k", "b,c", "--keywords", "d", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert [m["keywords"] for m in _waiting(tmp_path)] == [["a", "b", "c", "d"]]


def test_route_without_keywords_says_they_are_missing(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    for mode in ("--route", "--fanout"):
        result = run_cli("send", mode, "hello", cwd=tmp_path)
        assert result.returncode == 1, (mode, result.stdout)
        assert result.stderr.count("error:") == 1
        assert "keywords" in result.stderr and "-k" in result.stderr, result.stderr
        assert "{" not in result.stderr, result.stderr  # no Python dict of the task
    assert _waiting(tmp_path) == []


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    for value in ("0", "-1"):
        result = run_cli("send", "echo", "hi", "--wait", "--timeout-s", value, cwd=tmp_path)
        assert result.returncode == 2, (value, result.stderr)
        assert "--timeout-s" in result.stderr and "x>0" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert _waiting(tmp_path) == []


def test_ctrl_c_while_waiting_says_how_to_get_the_reply_later(tmp_path: Path) -> None:
    # Given a message sent with --wait and no supervisor to answer it
    write_roster(tmp_path, ECHO)
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "wb") as err_file:
        proc = subprocess.Popen(
            [*AGENTCTL, "send", "echo", "hi", "--wait"], cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=err_file,
        )  # fmt: skip
    try:
        # When the user presses Ctrl-C while it waits (its note says so, just before waiting)
        sent = wait_until(lambda: _waiting(tmp_path))
        wait_until(lambda: "no supervisor is running" in stderr.read_text())
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.read_text()
    # Then it exits 130 and names the message and the command that shows its reply
    message_id = sent[0]["id"]
    # 130, not death by the SIGINT: that is what CPython does at exit when a KeyboardInterrupt
    # landed in an import's generated code, even if caught (cli/options.ready_for_ctrl_c).
    assert proc.returncode == 130, (out, err)
    assert message_id in err and f"agentctl replay {message_id}" in err, err
    assert "Traceback" not in err


def test_disabled_agents_are_never_routed_to_and_route_says_why(
    tmp_path: Path, supervised
) -> None:
    # Given an LLM agent disabled for want of an endpoint, with the same expertise as echo
    write_roster(tmp_path, """\
        - name: echo
          python: agentctl.agents.echo:EchoAgent
          expertise: [testing]
        - name: qa
          expertise: [testing]
          llm: {model: m, base_url: "${AGENTCTL_TEST_UNSET_URL}"}
    """)
    env = {"AGENTCTL_TEST_UNSET_URL": ""}
    # When routing is explained
    routed = run_cli("route", "-k", "testing", "--json", cwd=tmp_path, env=env)
    explained = json.loads(routed.stdout)
    # Then qa is left out, with its reason, and only echo is picked
    assert [c["agent"] for c in explained["candidates"]] == ["echo"]
    assert "AGENTCTL_TEST_UNSET_URL" in explained["excluded"]["qa"]
    assert explained["fanout"] == ["echo"] and explained["route"] == "echo"
    shown = run_cli("route", "-k", "testing", cwd=tmp_path, env=env)
    assert "qa: never routed to" in shown.stdout
    # And a fanout gets echo's reply, without waiting for an agent that cannot answer
    supervised(tmp_path).wait_ready(["echo"])
    sent = run_cli("send", "--fanout", "-k", "testing", "hi", "--wait", "--timeout-s", "20",
                   cwd=tmp_path, env=env)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert list(json.loads(sent.stdout)) == ["echo"]


HEADERS_AGENT = """\
import asyncio
from agentctl.model.agent import BaseAgent

class Headers(BaseAgent):
    async def process(self, task, context):
        if task.get("content") == "sleep":
            await asyncio.sleep(30)  # ended by the message's timeout_s header
        return {"headers": context["message"]["headers"]}
"""


def _headers_roster(tmp_path: Path) -> None:
    write_roster(tmp_path, "- name: hdr\n  python: headers_agent:Headers\n  max_attempts: 1\n")
    (tmp_path / "headers_agent.py").write_text(HEADERS_AGENT)


def test_header_reaches_the_handler_and_its_timeout_is_honoured(tmp_path: Path, supervised) -> None:
    _headers_roster(tmp_path)
    supervised(tmp_path).wait_ready(["hdr"])
    shown = run_cli("send", "hdr", "show", "--header", "team=blue", "-H", "timeout_s=0.5",
                    "--wait", "--json", "--timeout-s", "30", cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    headers = json.loads(shown.stdout)["content"]["headers"]
    # The thread's trace context rides along (docs/TRACING.md).
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers.pop("traceparent"))
    assert headers == {"team": "blue", "timeout_s": "0.5"}
    # A handler that sleeps longer than the header's timeout (the roster's is 300 s) fails.
    slept = run_cli("send", "hdr", "sleep", "-H", "timeout_s=0.5", "--wait", "--timeout-s", "30",
                    cwd=tmp_path)  # fmt: skip
    assert slept.returncode == 1, (slept.stdout, slept.stderr)
    assert "timed out after 0.5 s" in slept.stdout + slept.stderr, (slept.stdout, slept.stderr)


def test_bad_or_internal_headers_are_refused(tmp_path: Path) -> None:
    _headers_roster(tmp_path)
    for bad, said in [("requeued=1", "internal"), ("not_before=2030-01-01", "internal"),
                      ("pipeline=x", "internal"), ("Bad Key=x", "KEY"), ("novalue", "KEY=VALUE"),
                      (f"traceparent=00-{'1' * 32}-{'2' * 16}-01", "internal"),
                      ("timeout_s=soon", "positive number")]:  # fmt: skip
        result = run_cli("send", "hdr", "hi", "--header", bad, cwd=tmp_path)
        assert result.returncode == 1, (bad, result.stdout, result.stderr)
        assert result.stderr.count("error:") == 1 and said in result.stderr, (bad, result.stderr)
        assert "Traceback" not in result.stderr
    assert not list((tmp_path / "workspace").glob("hdr/inbox/new/*.json"))

"""The agent runtime under crashes, timeouts and shutdown: real worker processes, real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentctl.backends import open_workspace
from agentctl.config.roster import load_roster
from agentctl.flow.router import WorkspaceRouter
from agentctl.model.agent import BaseAgent
from agentctl.model.clock import FakeClock
from agentctl.model.constants import HANDLER_OVERRUN_GRACE_S
from agentctl.model.errors import NonRetryableError
from agentctl.model.message import AgentMessage, parse_message
from agentctl.protocol.journal import content_digest
from agentctl.protocol.status import AgentState, iso_after, parse_iso
from agentctl.runtime.handlers import build_handler
from agentctl.runtime.worker import Worker
from tests.conftest import run_cli, wait_until, write_roster

# An agent that records each attempt and stalls on its first one, so a test can kill it there.
SLOW_AGENT = textwrap.dedent("""
    import asyncio, os
    from pathlib import Path
    from agentctl.model.agent import BaseAgent

    class SlowFirst(BaseAgent):
        def __init__(self, name, role, expertise):
            super().__init__(name, role, expertise)

        async def process(self, task, context):
            mark = Path(os.environ["MARKS"]) / f"{context['message']['id']}.{context['attempt']}"
            mark.write_text(str(os.getpid()))
            if context["attempt"] == 1 and task["content"] == "stall":
                await asyncio.sleep(60)
            return {"done": task["content"], "attempt": context["attempt"]}
""")


def _worker(cwd: Path, agent: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(cwd / "agents.yaml"),
         "--workspace", str(cwd / "workspace"), "--agent", agent],
        cwd=cwd, env={**os.environ, **(env or {})},
        stdout=open(cwd / f"{agent}.log", "ab"), stderr=subprocess.STDOUT,
    )


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _inbox(cwd: Path, agent: str, sub: str) -> list[str]:
    return [n for n in _files(cwd / "workspace" / agent / "inbox" / sub)
            if not n.startswith(".")]


def test_kill_9_mid_message_is_handled_once_after_restart(tmp_path: Path, supervised) -> None:
    (tmp_path / "slow_agent.py").write_text(SLOW_AGENT)
    (tmp_path / "marks").mkdir()
    write_roster(tmp_path, """\
        - name: slow
          python: slow_agent:SlowFirst
          max_attempts: 3
    """)
    os.environ["MARKS"] = str(tmp_path / "marks")  # inherited by `agentctl run` and its workers
    try:
        sup = supervised(tmp_path)
        sup.wait_ready(["slow"])
        router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
        request = AgentMessage(from_agent="user", to_agent="slow", content="stall")
        router.send(request)
        first = wait_until(lambda: list((tmp_path / "marks").glob(f"{request.id}.1")))[0]

        os.kill(int(first.read_text()), signal.SIGKILL)  # the worker, mid-handler

        reply = router.wait_for_reply(request, timeout_s=30)
        # The reply is published before the ack (so a crash between them cannot lose it).
        # ack = link into done/ then unlink from processing/: wait for both halves.
        wait_until(lambda: _inbox(tmp_path, "slow", "done") == [request.file_name]
                   and _inbox(tmp_path, "slow", "processing") == [])
    finally:
        del os.environ["MARKS"]
    assert reply.content == {"done": "stall", "attempt": 2}
    assert _inbox(tmp_path, "slow", "processing") == [] and _inbox(tmp_path, "slow", "dead") == []
    # Exactly one reply ever reached the requester.
    assert _files(tmp_path / "workspace" / "user" / "inbox" / "done") == [reply.file_name]
    assert _files(tmp_path / "workspace" / "user" / "inbox" / "new") == []


def test_kill_9_on_the_last_attempt_dead_letters(tmp_path: Path) -> None:
    (tmp_path / "slow_agent.py").write_text(SLOW_AGENT)
    (tmp_path / "marks").mkdir()
    write_roster(tmp_path, """\
        - name: slow
          python: slow_agent:SlowFirst
          max_attempts: 1
    """)
    env = {"MARKS": str(tmp_path / "marks")}
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="slow", content="stall")
    router.send(request)
    worker = _worker(tmp_path, "slow", env)
    wait_until(lambda: list((tmp_path / "marks").glob(f"{request.id}.1")))
    worker.kill()
    worker.wait()

    restarted = _worker(tmp_path, "slow", env)  # recovery counts the interrupted attempt
    reply = router.wait_for_reply(request, timeout_s=30)
    restarted.terminate()
    assert restarted.wait(timeout=10) == 0

    assert reply.content["verdict"] == "escalate"
    assert "worker died" in reply.content["error"]
    assert _inbox(tmp_path, "slow", "dead") == [request.file_name]
    error = json.loads((tmp_path / "workspace" / "slow" / "inbox" / "dead" / ".errors" /
                        request.file_name).read_text())
    assert error["error_kind"] == "interrupted" and error["attempts"] == 1
    assert len(list((tmp_path / "marks").iterdir())) == 1  # never handled a second time


def test_a_message_that_arrives_spent_is_dead_lettered_saying_so(tmp_path: Path) -> None:
    # Given: a message another program wrote with its attempts already used up.
    (tmp_path / "slow_agent.py").write_text(SLOW_AGENT)
    (tmp_path / "marks").mkdir()
    write_roster(tmp_path, """\
        - name: slow
          python: slow_agent:SlowFirst
          max_attempts: 2
    """)
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="slow", content="spent", attempt=2)
    router.send(request)

    worker = _worker(tmp_path, "slow", {"MARKS": str(tmp_path / "marks")})
    reply = router.wait_for_reply(request, timeout_s=30)
    worker.terminate()
    assert worker.wait(timeout=10) == 0

    # Then: it is not run, and the reason says what happened (no worker died).
    expected = "arrived with attempt 2 >= max_attempts 2; not run"
    assert reply.content["verdict"] == "escalate" and reply.content["error"] == expected
    error = json.loads((tmp_path / "workspace" / "slow" / "inbox" / "dead" / ".errors" /
                        request.file_name).read_text())
    assert error["error"] == expected
    assert list((tmp_path / "marks").iterdir()) == []


def test_a_crash_between_reply_and_ack_does_not_reply_twice(tmp_path: Path) -> None:
    # Given: the state a worker leaves when it dies after replying but before acking.
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="echo", content="once")
    router.send(request)
    inbox = tmp_path / "workspace" / "echo" / "inbox"
    os.link(inbox / "new" / request.file_name, inbox / "processing" / request.file_name)
    os.unlink(inbox / "new" / request.file_name)
    first_reply = request.reply({"first": True})
    router.send(first_reply)
    assert [m.id for m in router.receive("user")] == [first_reply.id]  # the user already read it

    # When: the worker restarts, recovers the request and handles it again.
    worker = _worker(tmp_path, "echo")
    wait_until(lambda: _inbox(tmp_path, "echo", "done") == [request.file_name])
    worker.terminate()
    assert worker.wait(timeout=10) == 0

    # Then: the second reply was suppressed; the user has exactly the one it read.
    assert _files(tmp_path / "workspace" / "user" / "inbox" / "new") == []
    assert _files(tmp_path / "workspace" / "user" / "inbox" / "done") == [first_reply.file_name]


def test_exec_timeout_kills_the_program_and_its_children(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, """\
        - name: sleepy
          exec: [sh, -c, "sleep 300 & echo $! > child.pid; wait"]
          timeout_s: 2
          max_attempts: 1
    """)
    supervised(tmp_path).wait_ready(["sleepy"])

    result = run_cli("send", "sleepy", "x", "--wait", cwd=tmp_path)

    assert result.returncode == 1
    assert "timed out after 2 s" in json.loads(result.stdout)["error"]
    child = int((tmp_path / "child.pid").read_text())
    wait_until(lambda: not Path(f"/proc/{child}").exists() or
               Path(f"/proc/{child}/stat").read_text().split(") ")[1].startswith("Z"))
    dead = tmp_path / "workspace" / "sleepy" / "inbox" / "dead"
    error_file = wait_until(lambda: list(dead.glob(".errors/*.json")))[0]  # after the reply
    assert json.loads(error_file.read_text())["error_kind"] == "timeout"


def test_python_async_timeout_is_cancelled_and_retried(tmp_path: Path, supervised) -> None:
    (tmp_path / "slow_agent.py").write_text(SLOW_AGENT)
    (tmp_path / "marks").mkdir()
    write_roster(tmp_path, """\
        - name: slow
          python: slow_agent:SlowFirst
          timeout_s: 0.5
          max_attempts: 2
    """)
    os.environ["MARKS"] = str(tmp_path / "marks")
    try:
        supervised(tmp_path).wait_ready(["slow"])
        result = run_cli("send", "slow", "stall", "--wait", cwd=tmp_path)
    finally:
        del os.environ["MARKS"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"done": "stall", "attempt": 2}
    status_path = tmp_path / "workspace" / "slow" / "status.json"
    status = wait_until(lambda: (s := json.loads(status_path.read_text()))["handled"] == 1 and s)
    assert status["failed"] == 1 and "timed out" in status["last_error"]


def test_sigterm_lets_the_message_in_hand_finish(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: napper
          exec: [sh, -c, "touch started; sleep 1; echo '\\"rested\\"'"]
    """)
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="napper", content="x")
    router.send(request)
    worker = _worker(tmp_path, "napper")
    wait_until(lambda: (tmp_path / "started").exists())

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=30) == 0
    assert _inbox(tmp_path, "napper", "done") == [request.file_name]
    assert router.wait_for_reply(request, timeout_s=1).content == "rested"
    status = json.loads((tmp_path / "workspace" / "napper" / "status.json").read_text())
    assert status["state"] == "stopped"


def test_a_second_worker_for_the_same_agent_is_refused(tmp_path: Path) -> None:
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    first = _worker(tmp_path, "echo")
    wait_until(lambda: (tmp_path / "workspace" / "echo" / "status.json").exists()
               and json.loads((tmp_path / "workspace" / "echo" / "status.json").read_text())
               ["state"] == "idle")
    second = _worker(tmp_path, "echo")
    assert second.wait(timeout=30) == 2
    assert "another worker is already running" in (tmp_path / "echo.log").read_text()
    first.terminate()
    assert first.wait(timeout=10) == 0


def test_a_handler_error_of_megabytes_is_dead_lettered_bounded_and_escalated(
    tmp_path: Path,
) -> None:
    # Given: an agent whose exception carries a 5 MB message, larger than any message may be.
    (tmp_path / "huge_error.py").write_text(textwrap.dedent("""
        from agentctl.model.agent import BaseAgent

        class Loud(BaseAgent):
            async def process(self, task, context):
                raise ValueError("x" * (5 * 1024 * 1024))
    """))
    write_roster(tmp_path, """\
        - name: loud
          python: huge_error:Loud
          max_attempts: 2
          retry: {backoff_s: 0}
    """)
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="loud", content="x")
    router.send(request)

    worker = _worker(tmp_path, "loud")
    try:
        reply = router.wait_for_reply(request, timeout_s=30)
        # Then: the worker carried on (it did not exit on the last attempt)...
        assert worker.poll() is None
    finally:
        worker.terminate()
    assert worker.wait(timeout=10) == 0

    # ... the sender got the escalation, with the real error's start and its length ...
    assert reply.content["verdict"] == "escalate" and reply.content["attempts"] == 2
    error = reply.content["error"]
    assert error.startswith("ValueError: xxxx") and len(error) < 10_000
    assert f"{len('ValueError: ') + 5 * 1024 * 1024} characters" in error
    # ... and the message is in dead/ with that same readable, bounded error.
    assert _inbox(tmp_path, "loud", "dead") == [request.file_name]
    dead = tmp_path / "workspace" / "loud" / "inbox" / "dead"
    record = json.loads((dead / ".errors" / request.file_name).read_text())
    assert record["error"] == error and record["error_kind"] == "error"
    assert record["attempts"] == 2
    status = json.loads((tmp_path / "workspace" / "loud" / "status.json").read_text())
    assert len(status["last_error"]) < 10_000


def test_a_restarted_worker_waits_for_a_pending_retry(tmp_path: Path) -> None:
    # Given: what a worker that failed attempt 1 and died leaves behind: the message back in
    # new/ with attempt 1 and a `not_before` 6 s ahead (on the fake clock).
    write_roster(tmp_path, """\
        - name: echo
          python: agentctl.agents.echo:EchoAgent
          max_attempts: 3
    """)
    roster = load_roster(tmp_path / "agents.yaml")
    ws, spec, clock = open_workspace(roster), roster.agent("echo"), FakeClock()
    router = WorkspaceRouter(ws.root, fsync=False)
    request = AgentMessage(from_agent="user", to_agent="echo", content="x", attempt=1,
                           headers={"not_before": iso_after(6, clock.now())})
    router.send(request)

    def worker() -> Worker:
        handler = build_handler(spec, max_output_bytes=roster.max_message_bytes,
                                withheld_env=roster.withheld_env())
        started = Worker(ws, spec, handler, poll_interval_s=0.5, clock=clock)
        started.inbox.open()
        return started

    def attempts_claimed() -> list[int]:
        journal = ws.root / ".agentctl" / "journal" / "journal.jsonl"
        records = [json.loads(line) for line in journal.read_bytes().splitlines()]
        return [r["attempt"] for r in records if r["event"] == "claimed"]

    # When/Then, replayed on the fake clock: (seconds since, a new worker?, claimed, in new/).
    table = [
        (0.0, True, [], True),  # seen early: put back untouched, no attempt counted
        (3.0, True, [], True),  # a worker restarted meanwhile waits it out too
        (2.9, False, [], True),  # 5.9 s: still early
        (0.1, False, [2], False),  # 6 s: due, handled as attempt 2
    ]
    current: Worker | None = None
    try:
        for advance_s, restart, claimed, waiting in table:
            clock.advance(advance_s)
            if restart:
                if current is not None:
                    current.inbox.close()
                current = worker()
            assert current is not None
            current.claim_and_handle()
            assert attempts_claimed() == claimed
            assert _inbox(tmp_path, "echo", "new") == ([request.file_name] if waiting else [])
    finally:
        if current is not None:
            current.inbox.close()
            current.overrun.close()
    assert _inbox(tmp_path, "echo", "done") == [request.file_name]
    reply = router.wait_for_reply(request, timeout_s=5)
    assert reply.attempt == 0 and reply.content is not None


# A worker that dies (SIGKILL, a real signal) right after the first of its two settling steps
# for a task: delivering the reply, or acking the request. Which comes first is what is tested.
DIE_AFTER_FIRST_SETTLING_STEP = textwrap.dedent("""
    import os, signal, sys
    from agentctl.backends.file.inbox import FileInbox
    from agentctl.backends.file.workspace import Workspace
    from agentctl.runtime import workermain

    def then_die(real):
        def step(*args, **kwargs):
            real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return step

    Workspace.deliver = then_die(Workspace.deliver)
    FileInbox.ack = then_die(FileInbox.ack)
    sys.exit(workermain.main(sys.argv[1:]))
""")


def test_the_reply_is_delivered_before_the_request_is_acked(tmp_path: Path) -> None:
    """A crash between the two steps must leave the reply delivered and the request in hand:
    acked first, the request would be done and its reply lost for good."""
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    router = WorkspaceRouter(tmp_path / "workspace", fsync=False)
    request = AgentMessage(from_agent="user", to_agent="echo", content="keep my reply")
    router.send(request)

    crashing = subprocess.Popen(
        [sys.executable, "-c", DIE_AFTER_FIRST_SETTLING_STEP, "--config",
         str(tmp_path / "agents.yaml"), "--workspace", str(tmp_path / "workspace"),
         "--agent", "echo"],
        cwd=tmp_path, stdout=open(tmp_path / "echo.log", "ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert crashing.wait(timeout=30) == -signal.SIGKILL

    reply_name = request.reply(None).file_name
    assert _inbox(tmp_path, "user", "new") == [reply_name]
    assert _inbox(tmp_path, "echo", "processing") == [request.file_name]
    assert _inbox(tmp_path, "echo", "done") == []

    # A new worker settles the request without a second reply.
    worker = _worker(tmp_path, "echo")
    wait_until(lambda: _inbox(tmp_path, "echo", "done") == [request.file_name]
               and _inbox(tmp_path, "echo", "processing") == [])
    worker.terminate()
    assert worker.wait(timeout=10) == 0
    assert _inbox(tmp_path, "user", "new") == [reply_name]


# -- one attempt at a time, in process: how each attempt ends (issue 20) --------------------------
# The tests above run real worker processes; these drive the same Worker class in the test's own
# process, on a fake clock, so that mutation testing (which cannot see inside a child) reaches
# the attempt, retry, reply-before-ack and dead-letter logic.


class Flaky(BaseAgent):
    """Answers, fails (retryable) or refuses (not retryable) by the task's content."""

    async def process(self, task: Any, context: Any) -> Any:
        if task["content"] == "fail":
            raise RuntimeError(f"boom on attempt {context['attempt']}")
        if task["content"] == "refuse":
            raise NonRetryableError("never this one")
        if task["content"] == "stall":
            await asyncio.sleep(30)  # cancelled at the message's timeout_s
        if task["content"] == "costly":  # what an llm: agent returns
            return {"text": "ok", "usage": {"input_tokens": 3, "output_tokens": 4}, "model": "m1"}
        if task["content"] in ("plain", "modelled"):  # no usage: a model alone is not journaled
            return "plain text" if task["content"] == "plain" else {"model": "m1"}
        if task["content"] == "huge":
            return {"blob": "x" * 1024 * 1024}  # over the roster's max_message_bytes as a reply
        return {"done": task["content"], "attempt": context["attempt"], "verdict": "flag"}


class InProcess:
    """One worker for agent `flaky`, in this process, on a fake clock."""

    def __init__(
        self,
        tmp_path: Path,
        max_attempts: int = 3,
        *,
        agent: str = "tests.test_worker:Flaky",
        workspace: Path | None = None,
        opened: bool = True,
        **worker: Any,
    ) -> None:
        write_roster(tmp_path, f"""\
            - name: flaky
              python: {agent}
              max_attempts: {max_attempts}
              retry: {{backoff_s: 10, factor: 2, max_s: 100}}
        """, workspace=workspace or tmp_path / "workspace")  # fmt: skip
        roster = load_roster(tmp_path / "agents.yaml")
        self.ws, spec, self.clock = open_workspace(roster), roster.agent("flaky"), FakeClock()
        handler = build_handler(spec, max_output_bytes=roster.max_message_bytes,
                                withheld_env=roster.withheld_env())  # fmt: skip
        self.worker = Worker(self.ws, spec, handler, poll_interval_s=0.5, clock=self.clock,
                             **worker)  # fmt: skip
        if opened:  # else run() opens it
            self.worker.inbox.open()
        self.root = tmp_path

    def send(self, content: str, **fields: Any) -> AgentMessage:
        request = AgentMessage(from_agent="user", to_agent="flaky", content=content, **fields)
        self.ws.deliver(request)
        return request

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        journal = self.ws.root / ".agentctl" / "journal" / "journal.jsonl"
        records = [json.loads(line) for line in journal.read_bytes().splitlines()]
        return [r for r in records if not kinds or r["event"] in kinds]

    def inbox(self, sub: str, agent: str = "flaky") -> list[str]:
        return [n for n in _files(self.ws.root / agent / "inbox" / sub) if not n.startswith(".")]

    def message(self, sub: str, name: str, agent: str = "flaky") -> AgentMessage:
        return parse_message((self.ws.root / agent / "inbox" / sub / name).read_bytes())

    def close(self) -> None:
        self.worker.inbox.close()
        self.worker.overrun.close()


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[InProcess]:
    worker = InProcess(tmp_path)
    yield worker
    worker.close()


def test_in_process_a_task_is_answered_then_acked_and_journaled(
    flaky: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = flaky.send("hi")
    steps: list[str] = []
    real_deliver, real_ack = flaky.ws.deliver, flaky.worker.inbox.ack
    monkeypatch.setattr(flaky.ws, "deliver", lambda m, **kw: (steps.append("reply"),
                                                              real_deliver(m, **kw))[1])
    monkeypatch.setattr(flaky.worker.inbox, "ack", lambda d: (steps.append("ack"), real_ack(d)))

    assert flaky.worker.claim_and_handle() == 1

    assert steps == ["reply", "ack"]  # a crash in between redelivers; acked first, it is lost
    assert flaky.inbox("done") == [request.file_name] and flaky.inbox("processing") == []
    reply = flaky.message("new", request.reply(None).file_name, "user")
    assert reply.content == {"done": "hi", "attempt": 1, "verdict": "flag"}
    assert reply.in_reply_to == request.id
    claimed, handled = flaky.events("claimed", "handled")
    assert claimed["attempt"] == 1 and claimed["file"] == request.file_name
    assert claimed["message_id"] == request.id
    assert claimed["sha256"] == content_digest(request.to_json_bytes())
    assert handled["attempt"] == 1 and handled["result_id"] == reply.id
    assert handled["verdict"] == "flag"
    assert handled["message_id"] == request.id and handled["file"] == request.file_name
    assert isinstance(handled["duration_ms"], float)
    status = flaky.worker.reporter.snapshot()
    assert (status.handled, status.failed, status.dead) == (1, 0, 0)
    assert flaky.worker.claim_and_handle() == 0  # nothing left


def test_in_process_a_failed_attempt_is_retried_after_its_delay_then_dead_lettered(
    flaky: InProcess,
) -> None:
    request = flaky.send("fail")
    # Attempt 1 fails: back in new/ with attempt 1 and its not_before, 10 s on.
    assert flaky.worker.claim_and_handle() == 1
    back = flaky.message("new", request.file_name)
    assert back.attempt == 1
    assert parse_iso(back.headers["not_before"]) == flaky.clock.now() + timedelta(seconds=10)
    [failed] = flaky.events("failed")
    assert failed["attempt"] == 1 and failed["max_attempts"] == 3
    assert failed["error"] == "RuntimeError: boom on attempt 1" and failed["error_kind"] == "error"
    [retried] = flaky.events("retried")
    assert retried["retry_in_s"] == 10 and retried["attempt"] == 1
    assert retried["file"] == request.file_name and retried["message_id"] == request.id
    assert retried["sha256"] == content_digest((flaky.root / "workspace" / "flaky" / "inbox" /
                                                "new" / request.file_name).read_bytes())
    # Not claimed before its delay is over; attempt 2 after 10 s, attempt 3 after 20 more.
    flaky.clock.advance(9.9)
    assert flaky.worker.claim_and_handle() == 0
    flaky.clock.advance(0.1)
    assert flaky.worker.claim_and_handle() == 1
    assert flaky.message("new", request.file_name).attempt == 2
    flaky.clock.advance(20)
    assert flaky.worker.claim_and_handle() == 1
    # The last attempt failed: dead, with its reason, and the requester is told.
    assert flaky.inbox("new") == [] and flaky.inbox("dead") == [request.file_name]
    reason = flaky.ws.mailbox("flaky").read_error(request.file_name)
    assert reason is not None and reason["attempts"] == 3 and reason["error_kind"] == "error"
    assert reason["error"] == "RuntimeError: boom on attempt 3"
    assert flaky.message("dead", request.file_name).attempt == 3
    escalation = flaky.message("new", request.reply(None).file_name, "user")
    assert escalation.content == {"agent": "flaky", "verdict": "escalate",
                                  "error": "RuntimeError: boom on attempt 3", "attempts": 3}
    [dead] = flaky.events("dead")
    assert dead["attempt"] == 3 and dead["file"] == request.file_name
    assert dead["message_id"] == request.id and dead["error_kind"] == "error"
    assert dead["error"] == "RuntimeError: boom on attempt 3"
    failures = flaky.events("failed")
    assert [f["message_id"] for f in failures] == [request.id] * 3
    assert all(isinstance(f["duration_ms"], float) for f in failures)
    status = flaky.worker.reporter.snapshot()
    assert (status.handled, status.failed, status.dead) == (0, 3, 1)
    assert status.last_error == f"{request.id}: RuntimeError: boom on attempt 3"
    assert dead["sha256"] == content_digest(
        (flaky.ws.root / "flaky" / "inbox" / "dead" / request.file_name).read_bytes())
    assert [e["attempt"] for e in flaky.events("claimed")] == [1, 2, 3]


def test_in_process_a_non_retryable_error_is_dead_at_once(flaky: InProcess) -> None:
    request = flaky.send("refuse")
    assert flaky.worker.claim_and_handle() == 1
    assert flaky.inbox("dead") == [request.file_name] and flaky.events("retried") == []
    reason = flaky.ws.mailbox("flaky").read_error(request.file_name)
    assert reason is not None and reason["error_kind"] == "non_retryable"
    assert reason["attempts"] == 1
    [failed] = flaky.events("failed")
    assert failed["error"] == "never this one" and isinstance(failed["duration_ms"], float)


def test_in_process_a_handler_past_its_timeout_is_a_timed_out_attempt(flaky: InProcess) -> None:
    request = flaky.send("stall", headers={"timeout_s": "0.05"})
    assert flaky.worker.claim_and_handle() == 1
    [failed] = flaky.events("failed")
    assert failed["error_kind"] == "timeout" and failed["error"] == "timed out after 0.05 s"
    assert failed["message_id"] == request.id and isinstance(failed["duration_ms"], float)
    assert flaky.message("new", request.file_name).attempt == 1  # retried


def test_in_process_a_retry_not_yet_due_goes_back_uncounted(flaky: InProcess) -> None:
    request = flaky.send("hi", attempt=1, headers={"not_before": iso_after(0.5, flaky.clock.now())})
    assert flaky.worker.claim_and_handle() == 1  # claimed, seen early, put back
    assert flaky.events("claimed") == [] and flaky.inbox("new") == [request.file_name]
    assert flaky.worker.claim_and_handle() == 0  # skipped until due
    flaky.clock.advance(0.5)
    assert flaky.worker.claim_and_handle() == 1
    assert [e["attempt"] for e in flaky.events("claimed")] == [2]


def test_in_process_recovery_of_an_overrun_fails_it_as_a_timeout(flaky: InProcess) -> None:
    from agentctl.protocol.overrunnote import write_note

    request = flaky.send("hi")
    assert flaky.ws.mailbox("flaky").claim(request.file_name) is not None
    write_note(flaky.ws.agent_dir("flaky"), file=request.file_name, message_id=request.id,
               error="timed out after 1 s (still running 5 s later)")  # fmt: skip
    flaky.worker.recover()
    [failed] = flaky.events("failed")
    assert failed["error_kind"] == "timeout"
    assert failed["error"] == "timed out after 1 s (still running 5 s later)"
    assert flaky.message("new", request.file_name).attempt == 1


def test_in_process_a_result_the_transport_refuses_is_a_failed_attempt(flaky: InProcess) -> None:
    request = flaky.send("huge")
    assert flaky.worker.claim_and_handle() == 1
    # Not acked, not answered: retried like any failed attempt, saying why.
    assert flaky.inbox("done") == [] and flaky.inbox("new", "user") == []
    assert flaky.message("new", request.file_name).attempt == 1
    assert flaky.events("handled") == []
    [failed] = flaky.events("failed")
    assert failed["error"].startswith(
        f"cannot deliver the result: message {request.reply(None).id} to user ")
    assert failed["error"].endswith("(max_message_bytes)")
    assert failed["error_kind"] == "error" and failed["message_id"] == request.id
    assert isinstance(failed["duration_ms"], float)
    status = flaky.worker.reporter.snapshot()
    assert (status.handled, status.failed, status.dead) == (0, 1, 0)


def test_in_process_a_request_redelivered_after_its_reply_is_not_answered_twice(
    flaky: InProcess,
) -> None:
    # Given: a worker died after replying but before acking, and the user read the reply.
    request = flaky.send("hi")
    assert flaky.ws.mailbox("flaky").claim(request.file_name) is not None
    first_reply = request.reply({"first": True})
    flaky.ws.deliver(first_reply)
    router = WorkspaceRouter(flaky.ws.root, fsync=False)
    assert [m.id for m in router.receive("user")] == [first_reply.id]
    # When: the request is recovered and handled again.
    flaky.worker.recover()
    flaky.clock.advance(10)  # the interrupted attempt's retry delay
    assert flaky.worker.claim_and_handle() == 1
    # Then: settled, and the second reply suppressed: the user has only the one it read.
    assert flaky.inbox("done") == [request.file_name]
    assert flaky.inbox("new", "user") == []
    assert flaky.inbox("done", "user") == [first_reply.file_name]
    [handled] = flaky.events("handled")
    assert handled["attempt"] == 2 and handled["result_id"] == first_reply.id


def test_in_process_the_handler_runs_busy_and_guarded_on_its_message(
    flaky: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = flaky.send("hi")
    seen: list[Any] = []
    real_handle, real_arm = flaky.worker.handler.handle, flaky.worker.overrun.arm
    monkeypatch.setattr(flaky.worker.overrun, "arm", lambda limit_s, delivery, message: (
        seen.append((limit_s, delivery.key, message.id, message.attempt)),
        real_arm(limit_s, delivery, message))[1])  # fmt: skip
    monkeypatch.setattr(flaky.worker.handler, "handle", lambda message, **kw: (
        seen.append(flaky.worker.reporter.snapshot()), real_handle(message, **kw))[1])  # fmt: skip
    assert flaky.worker.claim_and_handle() == 1
    # Armed for the message's timeout plus the grace, then the status says whose turn it is.
    guarded, status = seen
    assert guarded == (300 + HANDLER_OVERRUN_GRACE_S, request.file_name, request.id, 1)
    assert status.state == AgentState.BUSY and status.current_message_id == request.id


def test_in_process_a_handler_that_crashes_is_a_failed_attempt(
    flaky: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(message: AgentMessage, **kw: Any) -> Any:
        raise KeyError("a bug in the handler itself")

    request = flaky.send("hi")
    monkeypatch.setattr(flaky.worker.handler, "handle", crash)
    assert flaky.worker.claim_and_handle() == 1  # the worker goes on
    [failed] = flaky.events("failed")
    assert failed["error"] == "KeyError: 'a bug in the handler itself'"
    assert failed["error_kind"] == "error" and failed["message_id"] == request.id
    assert isinstance(failed["duration_ms"], float)
    assert flaky.message("new", request.file_name).attempt == 1  # retried


def test_in_process_the_handled_event_has_the_usage_and_model_of_an_llm_result(
    flaky: InProcess,
) -> None:
    for content in ("costly", "plain", "modelled"):
        flaky.send(content)
    assert flaky.worker.claim_and_handle() == 3
    costly, plain, modelled = flaky.events("handled")
    assert costly["usage"] == {"input_tokens": 3, "output_tokens": 4} and costly["model"] == "m1"
    assert "usage" not in plain and "model" not in plain
    assert "usage" not in modelled and "model" not in modelled
    assert {e["agent"] for e in flaky.events("claimed", "handled")} == {"flaky"}


def test_in_process_a_requeued_message_is_claimed_saying_how_often(flaky: InProcess) -> None:
    again = flaky.send("hi", headers={"requeued": "2"})  # brought back by `dead requeue` twice
    first = flaky.send("hi")
    assert flaky.worker.claim_and_handle() == 2
    claimed = {e["message_id"]: e for e in flaky.events("claimed")}
    assert claimed[again.id]["requeued"] == 2  # with the attempt, it names the trace span
    assert "requeued" not in claimed[first.id]


def test_in_process_a_notice_is_acked_without_a_reply(flaky: InProcess) -> None:
    request = flaky.send("fyi", kind="result")
    assert flaky.worker.claim_and_handle() == 1
    assert flaky.inbox("done") == [request.file_name] and flaky.inbox("new", "user") == []
    [handled] = flaky.events("handled")
    assert "result_id" not in handled and "verdict" not in handled  # None is not journaled


def test_in_process_a_bad_file_or_one_for_another_agent_is_dead_without_an_attempt(
    flaky: InProcess,
) -> None:
    new = flaky.ws.root / "flaky" / "inbox" / "new"
    (new / "1-garbage.json").write_bytes(b"\xff not json")
    stray = AgentMessage(from_agent="user", to_agent="other", content="x")
    (new / stray.file_name).write_bytes(stray.to_json_bytes())
    assert flaky.worker.claim_and_handle() == 2
    assert flaky.inbox("dead") == sorted(["1-garbage.json", stray.file_name])
    mailbox = flaky.ws.mailbox("flaky")
    for name in ("1-garbage.json", stray.file_name):
        reason = mailbox.read_error(name)
        assert reason is not None and reason["error_kind"] == "bad_message"
        assert reason["error"].startswith(f"{name}: ") and reason["attempts"] == 0
    assert "addressed to 'other', not 'flaky'" in mailbox.read_error(stray.file_name)["error"]
    assert (new.parent / "dead" / "1-garbage.json").read_bytes() == b"\xff not json"
    assert flaky.events("claimed") == [] and flaky.inbox("new", "user") == []
    dead = flaky.events("dead")
    assert {e["sha256"] for e in dead} == {
        content_digest(b"\xff not json"), content_digest(stray.to_json_bytes())}
    assert sorted(e["file"] for e in dead) == sorted(["1-garbage.json", stray.file_name])
    assert {e["error_kind"] for e in dead} == {"bad_message"}
    assert sorted(e["error"] for e in dead) == sorted(
        mailbox.read_error(n)["error"] for n in ("1-garbage.json", stray.file_name))
    status = flaky.worker.reporter.snapshot()
    assert (status.failed, status.dead) == (2, 2)
    assert status.last_error == mailbox.read_error("1-garbage.json")["error"]  # claimed last


def test_in_process_a_file_the_parser_chokes_on_is_dead_not_a_crash(
    flaky: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parser_bug(data: bytes) -> AgentMessage:
        raise RuntimeError("parser bug")

    request = flaky.send("hi")
    monkeypatch.setattr("agentctl.runtime.worker.parse_message", parser_bug)
    assert flaky.worker.claim_and_handle() == 1  # the worker goes on
    assert flaky.inbox("dead") == [request.file_name] and flaky.events("claimed") == []
    expected = f"{request.file_name}: unreadable: RuntimeError: parser bug"
    reason = flaky.ws.mailbox("flaky").read_error(request.file_name)
    assert reason is not None and reason["error"] == expected
    assert reason["error_kind"] == "bad_message"
    [dead] = flaky.events("dead")
    assert dead["file"] == request.file_name and dead["error"] == expected
    assert dead["sha256"] == content_digest(request.to_json_bytes())


def test_in_process_a_symlink_is_dead_unread_and_its_event_has_no_digest(
    flaky: InProcess, tmp_path: Path
) -> None:
    (tmp_path / "target.json").write_text("{}")
    os.symlink(tmp_path / "target.json", flaky.ws.root / "flaky" / "inbox" / "new" / "1-l.json")
    assert flaky.worker.claim_and_handle() == 1
    assert flaky.inbox("dead") == ["1-l.json"]
    [dead] = flaky.events("dead")
    assert dead["file"] == "1-l.json" and "sha256" not in dead  # its bytes were never read


def test_in_process_a_message_that_arrives_spent_is_dead_and_not_run(flaky: InProcess) -> None:
    request = flaky.send("hi", attempt=3)
    assert flaky.worker.claim_and_handle() == 1
    assert flaky.inbox("dead") == [request.file_name] and flaky.events("handled") == []
    reason = flaky.ws.mailbox("flaky").read_error(request.file_name)
    assert reason is not None and reason["error_kind"] == "interrupted"
    assert reason["error"] == "arrived with attempt 3 >= max_attempts 3; not run"


def test_in_process_recovery_counts_the_interrupted_attempt(flaky: InProcess) -> None:
    request = flaky.send("hi")
    mailbox = flaky.ws.mailbox("flaky")
    assert mailbox.claim(request.file_name) is not None  # a worker died holding it
    flaky.worker.recover()
    back = flaky.message("new", request.file_name)
    assert back.attempt == 1
    [failed] = flaky.events("failed")
    assert failed["error_kind"] == "interrupted"
    assert failed["error"] == "worker died while handling it"


def test_in_process_a_timeout_header_overrides_the_agents_timeout(flaky: InProcess) -> None:
    assert flaky.worker._timeout_s(AgentMessage(from_agent="u", to_agent="flaky")) == 300
    for value, expected in (("2.5", 2.5), ("soon", 300), ("", 300)):
        message = AgentMessage(from_agent="u", to_agent="flaky", headers={"timeout_s": value})
        assert flaky.worker._timeout_s(message) == expected

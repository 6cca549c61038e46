"""Fault tolerance end to end (issue 4): restart policies, backoff and `fatal`, per-message
timeouts, retries with backoff, non-retryable errors, escalation, stuck workers, kill -9 chaos
and graceful shutdown. Real processes and real files in tmp_path; only clocks are faked.

What tests/test_supervisor.py and tests/test_worker.py already cover is not repeated here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentctl.backends import open_workspace
from agentctl.config.roster import load_roster
from agentctl.flow.router import WorkspaceRouter
from agentctl.model.clock import FakeClock
from agentctl.model.message import AgentMessage
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import parse_iso
from agentctl.runtime.supervisor import ProcState, Supervisor
from tests.conftest import run_cli, wait_until, write_roster

# Agents used below. They run with the roster's directory as their working directory, and
# leave a mark `marks/<message id>.<attempt>` (holding their pid) for every attempt they start.
AGENTS = textwrap.dedent("""
    import asyncio, os, time
    from pathlib import Path
    from agentctl.model.agent import BaseAgent
    from agentctl.model.errors import NonRetryableError

    def mark(context, tag=""):
        marks = Path("marks")
        marks.mkdir(exist_ok=True)
        name = f"{context['message']['id']}.{context['attempt']}{tag}"
        (marks / name).write_text(str(os.getpid()))

    class SyncSleeper(BaseAgent):
        def process(self, task, context):  # synchronous: nothing can interrupt it in-process
            mark(context)
            time.sleep(float(task.get("sleep_s", 60)))
            return {"slept": True}

    class LoopBlocker(BaseAgent):
        async def process(self, task, context):  # async, but blocks its own event loop
            mark(context)
            time.sleep(float(task.get("sleep_s", 60)))
            return {"slept": True}

    class Cancellable(BaseAgent):
        async def process(self, task, context):
            mark(context)
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                mark(context, ".cancelled")
                raise
            return {"slept": True}

    class AlwaysFails(BaseAgent):
        async def process(self, task, context):
            mark(context)
            raise ValueError(f"nope, attempt {context['attempt']}")

    class FailsOnce(BaseAgent):
        async def process(self, task, context):
            mark(context)
            if context["attempt"] == 1:
                raise ValueError("transient")
            return {"attempt": context["attempt"]}

    class Refuser(BaseAgent):
        async def process(self, task, context):
            mark(context)
            raise NonRetryableError("refused: the input can never be valid")

    class Crasher(BaseAgent):
        async def process(self, task, context):
            mark(context)
            os._exit(1)

    class Napper(BaseAgent):
        async def process(self, task, context):
            mark(context)
            if context["attempt"] == 1:
                await asyncio.sleep(float(task.get("nap_s", 0)))
            return {"napped": task.get("nap_s", 0), "attempt": context["attempt"]}

    class Waiter(BaseAgent):
        async def process(self, task, context):  # until the test says go (at most 60 s)
            mark(context)
            go = Path("marks") / f"{context['message']['id']}.go"
            for _ in range(1200):
                if go.exists() or not task.get("wait"):
                    break
                await asyncio.sleep(0.05)
            return {"waited": bool(task.get("wait")), "attempt": context["attempt"]}

    class Steady(BaseAgent):
        async def process(self, task, context):
            await asyncio.sleep(0.005)
            return {"n": task["n"], "attempt": context["attempt"]}
""")


# -- helpers ----------------------------------------------------------------------------------


def _setup(tmp_path: Path, agents_yaml: str, **settings: object) -> Path:
    (tmp_path / "ft_agents.py").write_text(AGENTS)
    (tmp_path / "marks").mkdir(exist_ok=True)
    write_roster(tmp_path, agents_yaml, **settings)
    return tmp_path / "workspace"


def _fake_supervisor(
    tmp_path: Path, agents_yaml: str, **settings: object
) -> tuple[Supervisor, FakeClock, list[list[str]]]:
    """A supervisor over real child processes, with a fake clock and a recording spawn."""
    _setup(tmp_path, agents_yaml, **settings)
    roster = load_roster(tmp_path / "agents.yaml")
    clock = FakeClock()
    spawned: list[list[str]] = []

    def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        spawned.append(list(argv))
        return subprocess.Popen(argv, **kwargs)

    sup = Supervisor(roster, open_workspace(roster), clock=clock, spawn=spawn, grace_s=2.0)
    return sup, clock, spawned


def _wait_exit(sup: Supervisor, name: str) -> None:
    proc = sup.agents[name]
    assert proc.popen is not None
    proc.popen.wait(timeout=30)
    sup.tick()


def _worker(cwd: Path, agent: str) -> subprocess.Popen[bytes]:
    """One worker process, started by hand (no supervisor)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(cwd / "agents.yaml"),
         "--workspace", str(cwd / "workspace"), "--agent", agent],
        cwd=cwd, stdout=open(cwd / f"{agent}.log", "ab"), stderr=subprocess.STDOUT,
    )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _journal(ws: Path) -> list[dict[str, Any]]:
    path = ws / ".agentctl" / "journal" / "journal.jsonl"
    records = []
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return records


def _events(ws: Path, event: str, *, agent: str | None = None,
            message_id: str | None = None) -> list[dict[str, Any]]:
    return [r for r in _journal(ws) if r["event"] == event
            and (agent is None or r["agent"] == agent)
            and (message_id is None or r["message_id"] == message_id)]


def _tail_json(cwd: Path, agent: str) -> list[dict[str, Any]]:
    """The journal as `agentctl tail --json --agent NAME` prints it."""
    result = run_cli("tail", "--json", "-n", "1000", "--agent", agent, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _status_json(cwd: Path) -> dict[str, dict[str, Any]]:
    """`agentctl status --json`, by agent name."""
    result = run_cli("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)["agents"]}


def _status_file(ws: Path, agent: str) -> dict[str, Any]:
    try:
        return json.loads((ws / agent / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _names(directory: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        return []


def _box(ws: Path, agent: str, sub: str) -> list[str]:
    return _names(ws / agent / "inbox" / sub)


def _error_of(ws: Path, agent: str, request: AgentMessage) -> dict[str, Any]:
    dead = ws / agent / "inbox" / "dead"
    path = dead / ".errors" / request.file_name
    wait_until(lambda: path.exists() and (dead / request.file_name).exists(), timeout_s=30)
    return json.loads(path.read_text())


def _replies(ws: Path, request: AgentMessage) -> list[str]:
    """Every reply to `request` the user ever got (waiting or read)."""
    reply_file = request.reply(None).file_name
    return [n for sub in ("new", "done") for n in _names(ws / "user" / "inbox" / sub)
            if n == reply_file]


def _marks(tmp_path: Path, request: AgentMessage) -> dict[str, int]:
    return {p.name.removeprefix(request.id + "."): int(p.read_text())
            for p in (tmp_path / "marks").glob(f"{request.id}.*")}


def _send(ws: Path, to: str, content: Any, **fields: Any) -> tuple[WorkspaceRouter, AgentMessage]:
    router = WorkspaceRouter(ws, fsync=False)
    request = AgentMessage(from_agent="user", to_agent=to, content=content, **fields)
    router.send(request)
    return router, request


def _ts(record: dict[str, Any]) -> datetime:
    moment = parse_iso(record["ts"])
    assert moment is not None
    return moment


# -- supervision: restart policies, backoff, fatal ----------------------------------------------

ENDINGS = {
    # how the agent's process ends: (shell, as the supervisor describes it, returncode)
    "exit-0": ("exit 0", "exit 0", 0),
    "exit-1": ("exit 1", "exit 1", 1),
    "signal": ("kill -TERM $$", "signal SIGTERM", -signal.SIGTERM),
}


@pytest.mark.parametrize("policy", ["always", "on-failure", "never"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_restart_policy_journal_and_status(tmp_path: Path, policy: str, ending: str) -> None:
    command, exit_text, returncode = ENDINGS[ending]
    sup, clock, spawned = _fake_supervisor(tmp_path, f"""\
        - name: proc
          command: [sh, -c, {command!r}]
          restart: {policy}
    """)
    ws = sup.workspace.root
    restarts = policy == "always" or (policy == "on-failure" and returncode != 0)
    sup.start()
    try:
        _wait_exit(sup, "proc")
        proc = sup.agents["proc"]
        assert proc.last_exit == returncode

        ended = _events(ws, "crashed" if returncode else "exited", agent="proc")
        assert len(ended) == 1 and ended[0]["exit"] == exit_text
        status = _status_file(ws, "proc")
        assert status["exit_code"] == returncode
        assert status["state"] == ("crashed" if returncode else "stopped")
        if returncode:
            assert status["last_error"] == f"process {exit_text}"

        if restarts:
            assert proc.state is ProcState.BACKOFF
            assert ended[0]["restart_in_s"] == 0.5
            clock.advance_to(proc.restart_at - 0.01)
            sup.tick()
            assert proc.state is ProcState.BACKOFF and len(spawned) == 1  # not a moment early
            clock.advance_to(proc.restart_at)
            sup.tick()
            assert proc.state is ProcState.RUNNING and proc.restarts == 1
            assert len(spawned) == 2 and spawned[0] == spawned[1]
            [restarted] = _events(ws, "restarted", agent="proc")
            assert restarted["pid"] == proc.popen.pid and restarted["restarts"] == 1
        else:
            assert proc.state is ProcState.EXITED
            assert ended[0]["restart"] is False
            clock.advance(3600)
            sup.tick()
            assert proc.state is ProcState.EXITED and len(spawned) == 1  # stays down
            assert _events(ws, "restarted", agent="proc") == []
    finally:
        sup.stop()


def test_a_program_exiting_75_over_and_over_is_not_restarted_forever(tmp_path: Path) -> None:
    sup, clock, spawned = _fake_supervisor(tmp_path, """\
        - name: proc
          command: [sh, -c, "exit 75"]
          restart_backoff: {max_quick_failures: 3}
    """)
    sup.start()
    try:
        for _ in range(10):
            if sup.agents["proc"].state is not ProcState.RUNNING:
                break
            _wait_exit(sup, "proc")
        # No time passed on the clock: a bounded policy has backed off or given up by now.
        assert sup.agents["proc"].state in (ProcState.BACKOFF, ProcState.FATAL), spawned
    finally:
        sup.stop()


def test_custom_restart_backoff_then_fatal_with_reason_and_log_tail(tmp_path: Path) -> None:
    sup, clock, spawned = _fake_supervisor(tmp_path, """\
        - name: proc
          command: [sh, -c, 'echo "run $$ starting"; echo "boom: disk on fire" >&2; exit 3']
          restart_backoff: {initial_s: 0.2, factor: 3, max_s: 1, stable_s: 5, max_quick_failures: 4}
    """)
    ws = sup.workspace.root
    sup.start()
    proc = sup.agents["proc"]
    delays = []
    try:
        while proc.state is not ProcState.FATAL:
            _wait_exit(sup, "proc")
            if proc.state is ProcState.BACKOFF:
                delays.append(round(proc.restart_at - clock.monotonic(), 6))
                clock.advance_to(proc.restart_at - 0.001)
                sup.tick()
                assert proc.state is ProcState.BACKOFF
                clock.advance_to(proc.restart_at)
                sup.tick()
                assert proc.state is ProcState.RUNNING
        assert delays == [0.2, 0.6, 1.0]  # x3, capped at max_s
        assert len(spawned) == 4 and proc.quick_failures == 4

        clock.advance_to(proc.restart_at - 0.001)
        sup.tick()
        assert proc.state is ProcState.FATAL and len(spawned) == 4  # down for its cool-down
    finally:
        sup.stop()

    status = _status_file(ws, "proc")
    assert status["state"] == "fatal"
    assert "exit 3" in status["last_error"]
    assert "fatal after 4 quick failures" in status["last_error"]
    assert status["log_tail"][-1] == "boom: disk on fire"
    assert sum(line.startswith("run ") for line in status["log_tail"]) == 4

    row = _status_json(tmp_path)["proc"]
    assert row["state"] == "fatal" and row["alive"] is False
    assert row["last_error"] == status["last_error"]
    assert row["log_tail"] == status["log_tail"]

    events = _tail_json(tmp_path, "proc")
    crashed = [e for e in events if e["event"] == "crashed"]
    assert [e.get("restart_in_s") and round(e["restart_in_s"], 6) for e in crashed] == [
        0.2, 0.6, 1.0, None]
    assert all(e["exit"] == "exit 3" for e in crashed)
    [fatal] = [e for e in events if e["event"] == "fatal"]
    assert fatal["error"] == status["last_error"]
    assert [e["event"] for e in events if e["event"] in ("started", "restarted")] == [
        "started", "restarted", "restarted", "restarted"]


def test_a_run_longer_than_stable_s_resets_count_and_backoff(tmp_path: Path) -> None:
    sup, clock, spawned = _fake_supervisor(tmp_path, """\
        - name: proc
          command: [sh, -c, "exit 1"]
          restart_backoff:
            {initial_s: 0.2, factor: 3, max_s: 10, stable_s: 5, max_quick_failures: 3}
    """)
    sup.start()
    proc = sup.agents["proc"]
    # How long (on the fake clock) each run lasts before its exit is noticed.
    run_lengths = iter([0, 4.9, 5.0, 0, 0, 0])
    delays = []
    try:
        while proc.state is not ProcState.FATAL:
            assert proc.popen is not None
            proc.popen.wait(timeout=30)
            clock.advance(next(run_lengths))
            sup.tick()
            if proc.state is ProcState.BACKOFF:
                delays.append(round(proc.restart_at - clock.monotonic(), 6))
                clock.advance_to(proc.restart_at)
                sup.tick()
        # 4.9 s is still quick; 5 s is stable and starts afresh; then 3 quick ones are fatal.
        assert delays == [0.2, 0.6, 0.2, 0.2, 0.6]
        assert len(spawned) == 6
    finally:
        sup.stop()


def test_a_python_agent_that_cannot_start_is_shown_fatal(tmp_path: Path) -> None:
    (tmp_path / "broken_agent.py").write_text('raise RuntimeError("missing dependency: libfoo")\n')
    sup, clock, spawned = _fake_supervisor(tmp_path, """\
        - name: broken
          python: broken_agent:Broken
          restart_backoff: {initial_s: 0.1, max_quick_failures: 2}
    """)
    ws = sup.workspace.root
    sup.start()
    proc = sup.agents["broken"]
    try:
        while proc.state is not ProcState.FATAL:
            _wait_exit(sup, "broken")
            if proc.state is ProcState.BACKOFF:
                clock.advance_to(proc.restart_at)
                sup.tick()
    finally:
        sup.stop()
    status = _status_file(ws, "broken")
    assert status["state"] == "fatal"
    assert "fatal after 2 quick failures" in status["last_error"]
    assert status["log_tail"][-1] == "RuntimeError: missing dependency: libfoo"

    row = _status_json(tmp_path)["broken"]
    assert row["log_tail"] == status["log_tail"]
    assert row["state"] == "fatal"


# -- per-message timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize("agent_class", ["SyncSleeper", "LoopBlocker"])
def test_a_handler_that_cannot_be_interrupted_gets_its_worker_restarted(
    tmp_path: Path, supervised, agent_class: str
) -> None:
    ws = _setup(tmp_path, f"""\
        - name: slow
          python: ft_agents:{agent_class}
          timeout_s: 0.5
          max_attempts: 2
          retry: {{backoff_s: 0}}
    """)
    supervised(tmp_path).wait_ready(["slow"])
    router, request = _send(ws, "slow", {"sleep_s": 60})

    reply = router.wait_for_reply(request, timeout_s=90)

    assert reply.content["verdict"] == "escalate" and reply.content["attempts"] == 2
    assert "timed out after 0.5 s" in reply.content["error"]
    error = _error_of(ws, "slow", request)
    assert error["error_kind"] == "timeout" and error["attempts"] == 2
    assert _box(ws, "slow", "dead") == [request.file_name]
    assert _box(ws, "slow", "processing") == [] and _box(ws, "slow", "new") == []
    # Each attempt ran in its own worker: the one that overran was replaced.
    marks = _marks(tmp_path, request)
    assert set(marks) == {"1", "2"} and marks["1"] != marks["2"]
    # The worker asked for a restart (exit 75), which is not a crash.
    exits = _events(ws, "exited", agent="slow")
    assert [e["exit"] for e in exits] == ["exit 75", "exit 75"]
    assert _events(ws, "crashed", agent="slow") == [] and _events(ws, "fatal") == []
    failed = _events(ws, "failed", message_id=request.id)
    assert [(f["attempt"], f["error_kind"]) for f in failed] == [(1, "timeout"), (2, "timeout")]
    assert len(_events(ws, "retried", message_id=request.id)) == 1
    assert _replies(ws, request) == [reply.file_name]
    assert not (ws / "slow" / "interrupted.json").exists()  # the note was consumed
    wait_until(lambda: _status_file(ws, "slow").get("state") == "idle", timeout_s=30)


def test_an_async_handler_past_its_timeout_is_cancelled_in_the_same_worker(
    tmp_path: Path,
) -> None:
    ws = _setup(tmp_path, """\
        - name: patient
          python: ft_agents:Cancellable
          timeout_s: 0.5
          max_attempts: 1
    """)
    router, request = _send(ws, "patient", "wait")
    worker = _worker(tmp_path, "patient")
    try:
        reply = router.wait_for_reply(request, timeout_s=60)
        assert reply.content["verdict"] == "escalate"
        assert "timed out after 0.5 s" in reply.content["error"]
        assert _error_of(ws, "patient", request)["error_kind"] == "timeout"
        marks = _marks(tmp_path, request)
        assert set(marks) == {"1", "1.cancelled"}  # the coroutine saw its cancellation
        assert marks["1"] == worker.pid
        assert worker.poll() is None  # no restart was needed
    finally:
        _stop_worker(worker)
    assert worker.returncode == 0
    assert _events(ws, "exited", agent="patient") == []


def test_a_timeout_s_header_overrides_the_agents_timeout(tmp_path: Path) -> None:
    ws = _setup(tmp_path, """\
        - name: sleepy
          exec: [sh, -c, "sleep 30"]
          timeout_s: 300
          max_attempts: 1
    """)
    router, request = _send(ws, "sleepy", "x", headers={"timeout_s": "0.5"})
    worker = _worker(tmp_path, "sleepy")
    try:
        reply = router.wait_for_reply(request, timeout_s=60)
    finally:
        _stop_worker(worker)
    assert reply.content["verdict"] == "escalate"
    assert "timed out after 0.5 s" in reply.content["error"]
    assert _error_of(ws, "sleepy", request)["error_kind"] == "timeout"


# -- retries with backoff -----------------------------------------------------------------------


def test_retries_are_spaced_by_the_retry_backoff(tmp_path: Path) -> None:
    ws = _setup(tmp_path, """\
        - name: flaky
          python: ft_agents:AlwaysFails
          max_attempts: 3
          retry: {backoff_s: 1.0, factor: 2, max_s: 10}
    """)
    router, request = _send(ws, "flaky", "x")
    new = ws / "flaky" / "inbox" / "new"
    reply_path = ws / "user" / "inbox" / "new" / request.reply(None).file_name
    requeued: dict[int, dict[str, Any]] = {}  # attempt -> the file as it waited in new/

    def watch() -> bool:
        try:
            message = json.loads((new / request.file_name).read_bytes())
        except (OSError, ValueError):
            message = None
        if message and message["attempt"] >= 1:
            requeued.setdefault(message["attempt"], message)
        return reply_path.exists()

    worker = _worker(tmp_path, "flaky")
    try:
        wait_until(watch, timeout_s=60, interval_s=0.01)
        reply = router.wait_for_reply(request, timeout_s=5)
    finally:
        _stop_worker(worker)

    assert reply.content["verdict"] == "escalate" and reply.content["attempts"] == 3
    assert "nope, attempt 3" in reply.content["error"]
    retried = _events(ws, "retried", message_id=request.id)
    assert [(r["attempt"], r["retry_in_s"]) for r in retried] == [(1, 1.0), (2, 2.0)]
    failed = {r["attempt"]: r for r in _events(ws, "failed", message_id=request.id)}
    claimed = {r["attempt"]: r for r in _events(ws, "claimed", message_id=request.id)}
    assert sorted(failed) == sorted(claimed) == [1, 2, 3]
    assert sorted(requeued) == [1, 2]
    for attempt, delay_s in ((1, 1.0), (2, 2.0)):
        not_before = parse_iso(requeued[attempt]["headers"]["not_before"])
        assert not_before is not None
        # Set after the failure, `delay_s` ahead; the next attempt was claimed no earlier.
        assert not_before >= _ts(failed[attempt]) + timedelta(seconds=delay_s)
        assert _ts(claimed[attempt + 1]) >= not_before
    dead = json.loads((ws / "flaky" / "inbox" / "dead" / request.file_name).read_text())
    assert dead["attempt"] == 3
    assert len(_marks(tmp_path, request)) == 3


def test_a_non_retryable_error_goes_straight_to_dead(tmp_path: Path) -> None:
    ws = _setup(tmp_path, """\
        - name: strict
          python: ft_agents:Refuser
          max_attempts: 3
          retry: {backoff_s: 0}
    """)
    router, request = _send(ws, "strict", "x")
    worker = _worker(tmp_path, "strict")
    try:
        reply = router.wait_for_reply(request, timeout_s=60)
        error = _error_of(ws, "strict", request)
    finally:
        _stop_worker(worker)
    assert reply.content == {
        "agent": "strict", "verdict": "escalate", "attempts": 1,
        "error": "refused: the input can never be valid",
    }
    assert error["error_kind"] == "non_retryable" and error["attempts"] == 1
    assert _box(ws, "strict", "dead") == [request.file_name]
    assert set(_marks(tmp_path, request)) == {"1"}
    assert _events(ws, "retried", message_id=request.id) == []
    [dead] = _events(ws, "dead", message_id=request.id)
    assert dead["error_kind"] == "non_retryable"


def test_a_handler_that_kills_its_worker_every_time_ends_in_dead(
    tmp_path: Path, supervised
) -> None:
    ws = _setup(tmp_path, """\
        - name: crasher
          python: ft_agents:Crasher
          max_attempts: 3
          retry: {backoff_s: 0}
          restart_backoff: {initial_s: 0.1, factor: 1}
    """)
    supervised(tmp_path).wait_ready(["crasher"])
    router, request = _send(ws, "crasher", "x")

    reply = router.wait_for_reply(request, timeout_s=90)

    assert reply.content["verdict"] == "escalate" and reply.content["attempts"] == 3
    assert "worker died" in reply.content["error"]
    error = _error_of(ws, "crasher", request)
    assert error["error_kind"] == "interrupted" and error["attempts"] == 3
    assert _box(ws, "crasher", "dead") == [request.file_name]
    assert _box(ws, "crasher", "processing") == [] and _box(ws, "crasher", "new") == []
    marks = _marks(tmp_path, request)
    assert set(marks) == {"1", "2", "3"} and len(set(marks.values())) == 3
    assert _replies(ws, request) == [reply.file_name]  # exactly one escalation
    events = _tail_json(tmp_path, "crasher")
    assert [e["exit"] for e in events if e["event"] == "crashed"] == ["exit 1"] * 3
    assert not any(e["event"] == "fatal" for e in events)
    # The agent itself carries on.
    wait_until(lambda: _status_file(ws, "crasher").get("state") == "idle", timeout_s=30)
    assert len([e for e in _events(ws, "sent") if e["to"] == "user"]) == 1


# -- stuck workers --------------------------------------------------------------------------


def test_a_live_worker_with_an_old_heartbeat_is_shown_stuck(tmp_path: Path) -> None:
    # Given: a live process recorded as the worker, whose heartbeat is a minute old.
    ws = _setup(tmp_path, "- name: napper\n  python: ft_agents:Napper\n", stuck_after_s=2)
    silent = subprocess.Popen(["sleep", "60"])
    try:
        ref = ProcessRef.of(silent.pid)
        assert ref is not None
        (ws / "napper").mkdir(parents=True, exist_ok=True)
        minute_ago = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
        (ws / "napper" / "status.json").write_text(json.dumps({
            "agent": "napper", "state": "busy", "pid": silent.pid,
            "pid_start_ticks": ref.start_ticks, "heartbeat_at": minute_ago,
            "current_message_id": "m1", "stuck_after_s": 2}))

        row = _status_json(tmp_path)["napper"]  # When: `status` looks.
    finally:
        silent.kill()
        silent.wait()
    # Then: it says stuck, not busy.
    assert row["state"] == "stuck" and row["alive"] is True and row["pid"] == silent.pid
    assert row["current_message_id"] == "m1"


def test_a_worker_whose_heartbeat_stops_is_killed_and_replaced(
    tmp_path: Path,
) -> None:
    ws = _setup(tmp_path, """\
        - name: napper
          python: ft_agents:Napper
          retry: {backoff_s: 0}
    """, stuck_after_s=2)
    roster = load_roster(tmp_path / "agents.yaml")
    # The supervisor's time is a fake one that moves only when the test says: it kills nothing
    # behind the test's back, and the silence is replayed instead of waited for.
    clock = FakeClock()
    sup = Supervisor(roster, open_workspace(roster), clock=clock, grace_s=2.0)
    sup.start()
    stopped_pid: int | None = None
    stopped_ref: ProcessRef | None = None
    try:
        wait_until(lambda: _status_file(ws, "napper").get("state") == "idle", timeout_s=60)
        router, request = _send(ws, "napper", {"nap_s": 60})
        busy = wait_until(lambda: (s := _status_file(ws, "napper")).get("state") == "busy" and s,
                          timeout_s=60)
        assert busy["current_message_id"] == request.id
        # The heartbeat goes on while the handler is busy.
        wait_until(lambda: (s := _status_file(ws, "napper"))["heartbeat_at"]
                   != busy["heartbeat_at"] and s["state"] == "busy")
        stopped_pid = busy["pid"]
        assert sup.agents["napper"].popen.pid == stopped_pid
        stopped_ref = ProcessRef.of(stopped_pid)

        os.kill(stopped_pid, signal.SIGSTOP)

        last_beat = wait_until(lambda: parse_iso(_status_file(ws, "napper")["heartbeat_at"]))
        # The supervisor, on its clock: silent 1.5 s is left alone; silent 2.5 s is killed.
        proc = sup.agents["napper"]
        clock.advance((last_beat + timedelta(seconds=1.5) - clock.now()).total_seconds())
        sup.tick()
        assert proc.state is ProcState.RUNNING and proc.popen.pid == stopped_pid
        assert _events(ws, "killed", agent="napper") == []
        clock.advance(1.0)
        sup.tick()
        assert proc.popen.wait(timeout=30) == -signal.SIGKILL
        sup.tick()
        assert proc.state is ProcState.BACKOFF
        clock.advance_to(proc.restart_at)
        sup.tick()
        assert proc.state is ProcState.RUNNING and proc.popen.pid != stopped_pid
        reply_path = ws / "user" / "inbox" / "new" / request.reply(None).file_name
        wait_until(lambda: sup.tick() or reply_path.exists(), timeout_s=60, interval_s=0.05)
        reply = router.wait_for_reply(request, timeout_s=5)
    finally:
        if stopped_pid is not None:
            try:
                os.kill(stopped_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        sup.stop()

    assert reply.content == {"napped": 60, "attempt": 2}
    [killed] = _events(ws, "killed", agent="napper")
    assert "no heartbeat" in killed["error"]
    assert [e["exit"] for e in _events(ws, "crashed", agent="napper")] == ["signal SIGKILL"]
    failed = _events(ws, "failed", message_id=request.id)
    assert [(f["attempt"], f["error_kind"]) for f in failed] == [(1, "interrupted")]
    assert _box(ws, "napper", "done") == [request.file_name]
    assert _box(ws, "napper", "processing") == []
    assert stopped_ref is not None and not stopped_ref.is_alive()


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[1])


# -- chaos ------------------------------------------------------------------------------------


def test_kill_9_in_a_loop_while_500_messages_flow(tmp_path: Path, supervised) -> None:
    ws = _setup(tmp_path, """\
        - name: busy
          python: ft_agents:Steady
          max_attempts: 100
          retry: {backoff_s: 0}
          restart_backoff: {initial_s: 0.05, factor: 1, max_s: 0.05, max_quick_failures: 100000}
    """)
    sup = supervised(tmp_path)
    sup.wait_ready(["busy"])
    router = WorkspaceRouter(ws, fsync=False)
    requests: list[AgentMessage] = []

    def send(count: int) -> None:
        for _ in range(min(count, 500 - len(requests))):
            request = AgentMessage(from_agent="user", to_agent="busy",
                                   content={"n": len(requests)})
            router.send(request)
            requests.append(request)

    def finished() -> int:
        return len(_box(ws, "busy", "done")) + len(_box(ws, "busy", "dead"))

    send(200)
    killed: set[int] = set()
    first_seen: dict[int, float] = {}
    chaos_until = time.monotonic() + 20
    while time.monotonic() < chaos_until and finished() < 500:
        send(25)
        status = _status_file(ws, "busy")
        pid = status.get("pid") or 0
        if pid and pid not in killed and _ppid(pid) == sup.proc.pid and \
                ProcessRef(pid, status["pid_start_ticks"], pid).is_alive():
            if time.monotonic() - first_seen.setdefault(pid, time.monotonic()) >= 0.3:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.02)
    send(500)

    wait_until(lambda: finished() == 500 and not _box(ws, "busy", "processing")
               and not _box(ws, "busy", "new"), timeout_s=90, interval_s=0.1)
    assert sup.stop() == 0

    assert len(killed) >= 3, f"the chaos did not happen: {len(killed)} kill(s)"
    sent = {r.file_name for r in requests}
    done, dead = set(_box(ws, "busy", "done")), set(_box(ws, "busy", "dead"))
    assert done | dead == sent and not done & dead
    assert _box(ws, "busy", "new") == [] and _box(ws, "busy", "processing") == []
    replies = Counter(n for sub in ("new", "done") for n in _names(ws / "user" / "inbox" / sub))
    twice = [name for name, count in replies.items() if count > 1]
    assert twice == []
    assert set(replies) == {r.reply(None).file_name for r in requests}  # one reply each
    assert len(_events(ws, "crashed", agent="busy")) >= len(killed)
    verify = run_cli("verify", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# -- graceful shutdown ------------------------------------------------------------------------


def test_stop_lets_the_message_in_hand_finish_and_claims_no_more(
    tmp_path: Path, supervised
) -> None:
    ws = _setup(tmp_path, """\
        - name: waiter
          python: ft_agents:Waiter
    """)
    supervised(tmp_path).wait_ready(["waiter"])
    router, long = _send(ws, "waiter", {"wait": True})
    queued = [_send(ws, "waiter", {"wait": False})[1] for _ in range(2)]
    wait_until(lambda: (tmp_path / "marks" / f"{long.id}.1").exists(), timeout_s=60)

    stopping = subprocess.Popen([sys.executable, "-m", "agentctl", "stop"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        log = ws / "waiter" / "agent.log"
        wait_until(lambda: "received SIGTERM" in log.read_text(), timeout_s=60)
        (tmp_path / "marks" / f"{long.id}.go").touch()  # the handler finishes within the grace
        out, _ = stopping.communicate(timeout=60)
    finally:
        if stopping.poll() is None:
            stopping.kill()
            stopping.wait()
    assert stopping.returncode == 0, out

    assert _box(ws, "waiter", "done") == [long.file_name]
    assert router.wait_for_reply(long, timeout_s=1).content == {"waited": True, "attempt": 1}
    assert _box(ws, "waiter", "new") == sorted(q.file_name for q in queued)  # not claimed
    assert _box(ws, "waiter", "processing") == []
    assert _status_file(ws, "waiter")["state"] == "stopped"
    assert [e["exit"] for e in _events(ws, "stopped", agent="waiter")] == ["exit 0"]
    assert _events(ws, "killed", agent="waiter") == []

    supervised(tmp_path).wait_ready(["waiter"])  # the next run takes them
    for request in queued:
        assert router.wait_for_reply(request, timeout_s=60).content["attempt"] == 1
    assert _replies(ws, long) == [long.reply(None).file_name]


def test_stop_past_the_grace_period_puts_the_message_back_uncounted(
    tmp_path: Path, supervised
) -> None:
    # max_attempts 1: a stop that cost the message an attempt would dead-letter it.
    ws = _setup(tmp_path, """\
        - name: waiter
          python: ft_agents:Waiter
          max_attempts: 1
    """)
    supervised(tmp_path, "--grace-s", "1").wait_ready(["waiter"])
    router, long = _send(ws, "waiter", {"wait": True})
    _, queued = _send(ws, "waiter", {"wait": False})
    wait_until(lambda: (tmp_path / "marks" / f"{long.id}.1").exists(), timeout_s=60)

    assert run_cli("stop", cwd=tmp_path).returncode == 0

    assert _events(ws, "killed", agent="waiter")  # the grace ran out
    assert _box(ws, "waiter", "new") == sorted([long.file_name, queued.file_name])
    assert _box(ws, "waiter", "processing") == []
    assert _box(ws, "waiter", "done") == [] and _box(ws, "waiter", "dead") == []
    assert _replies(ws, long) == []

    (tmp_path / "marks" / f"{long.id}.go").touch()  # this time it finishes at once
    supervised(tmp_path).wait_ready(["waiter"])
    for request in (long, queued):
        reply = router.wait_for_reply(request, timeout_s=60)
        assert reply.content == {"waited": request is long, "attempt": 1}
        assert _replies(ws, request) == [reply.file_name]
    wait_until(lambda: _box(ws, "waiter", "done") == sorted([long.file_name, queued.file_name]))
    assert _box(ws, "waiter", "processing") == [] and _box(ws, "waiter", "dead") == []

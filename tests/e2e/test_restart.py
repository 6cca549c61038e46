"""A fatal agent and `agentctl restart`, end to end: real `run`, real workers, real kills."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from agentctl.backends.file.workspace import Workspace
from agentctl.flow.router import WorkspaceRouter, user_message
from tests.conftest import run_cli, wait_until, write_roster
from tests.test_pipelines import STAGE_AGENTS, agents_yaml, events, marks

# Three quick failures make it fatal; its cool-down is long, so only `restart` brings it back.
ECHO = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
  restart_backoff: {initial_s: 0.05, max_quick_failures: 3, cooldown_s: 3600}
"""


def _status(cwd: Path) -> dict:
    result = run_cli("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _echo(cwd: Path) -> dict:
    return next(a for a in _status(cwd)["agents"] if a["name"] == "echo")


def _kill_workers_until_fatal(status_path: Path) -> None:
    """SIGKILL each new echo worker as soon as it is up, until the supervisor gives up."""
    killed: set[int] = set()

    def fatal_yet() -> bool:
        status = json.loads(status_path.read_text())
        if status["state"] == "fatal":
            return True
        if status["state"] == "idle" and status["pid"] not in killed:
            killed.add(status["pid"])
            os.kill(status["pid"], signal.SIGKILL)
        return False

    wait_until(fatal_yet, timeout_s=30)


def test_a_fatal_agent_is_restarted_by_agentctl_restart_and_drains_its_backlog(
    tmp_path: Path, supervised
) -> None:
    # Given an echo agent made fatal by quick kills, and a backlog sent while it is down
    write_roster(tmp_path, ECHO)
    sup = supervised(tmp_path)
    sup.wait_ready(["echo"])
    _kill_workers_until_fatal(tmp_path / "workspace" / "echo" / "status.json")
    router = WorkspaceRouter.of(Workspace(tmp_path / "workspace", fsync=False))
    for n in range(50):
        router.send(user_message("echo", {"n": n}))
    echo = _echo(tmp_path)
    assert echo["state"] == "fatal" and echo["inbox"]["new"] == 50
    assert echo["next_try_at"]  # status says when the supervisor tries it again
    table = run_cli("status", cwd=tmp_path)
    assert "fatal, retry in" in table.stdout

    # When someone restarts it
    restarted = run_cli("restart", "echo", cwd=tmp_path)

    # Then it runs at once and drains the backlog: one reply each
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith("echo: restarted (pid ")
    echo = wait_until(lambda: (e := _echo(tmp_path))["handled"] >= 50 and e["inbox"]["new"] == 0
                      and e["inbox"]["processing"] == 0 and e)
    assert echo["state"] in ("idle", "busy") and echo["next_try_at"] is None
    replies = os.listdir(tmp_path / "workspace" / "user" / "inbox" / "new")
    assert len(replies) == 50
    journal = tmp_path / "workspace" / ".agentctl" / "journal" / "journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    restarted = [e for e in events if e["event"] == "restarted" and e["agent"] == "echo"]
    assert restarted[-1]["cause"] == "agentctl restart (fatal)"


def test_restart_errors_are_one_line(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)

    unknown = run_cli("restart", "nosuch", cwd=tmp_path)
    no_supervisor = run_cli("restart", "echo", cwd=tmp_path)

    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: ") and "nosuch" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1
    assert no_supervisor.returncode == 1
    assert no_supervisor.stderr.startswith("error: ")
    assert "no supervisor is running" in no_supervisor.stderr
    assert len(no_supervisor.stderr.splitlines()) == 1

    # An agent of the roster that this supervisor does not run: the supervisor says so
    write_roster(tmp_path, ECHO + "- name: other\n  python: agentctl.agents.echo:EchoAgent\n")
    sup = supervised(tmp_path, "--agent", "echo")
    sup.wait_ready(["echo"])
    other = run_cli("restart", "other", cwd=tmp_path)
    running = run_cli("restart", "echo", cwd=tmp_path)

    assert other.returncode == 1 and len(other.stderr.splitlines()) == 1
    assert "other: not run by this supervisor" in other.stderr
    assert running.returncode == 0 and running.stdout.startswith("echo: restarting (pid ")


def test_restart_of_a_running_agent_stops_it_gracefully_then_starts_it_again(
    tmp_path: Path, supervised
) -> None:
    # Given an agent at work on a message that waits for the file `go`
    write_roster(tmp_path, agents_yaml(["slow"]))
    (tmp_path / "stage_agents.py").write_text(STAGE_AGENTS)
    sup = supervised(tmp_path)
    sup.wait_ready(["slow"])
    ws = tmp_path / "workspace"
    status_path = ws / "slow" / "status.json"
    old_pid = json.loads(status_path.read_text())["pid"]
    router = WorkspaceRouter.of(Workspace(ws, fsync=False))
    in_hand = user_message("slow", {"plan": {"slow": {"wait_for": "go"}}})
    router.send(in_hand)
    wait_until(lambda: marks(tmp_path, in_hand.id, "start"))

    # When it is restarted, as `systemctl restart` would
    restarted = run_cli("restart", "slow", cwd=tmp_path)

    # Then it is asked to stop, finishes its message in hand, and runs again under a new pid
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith(f"slow: restarting (pid {old_pid}); it finishes its "
                                       "message in hand")
    (tmp_path / "go").touch()
    wait_until(lambda: (s := json.loads(status_path.read_text()))["state"] == "idle"
               and s["pid"] != old_pid)
    [handled] = events(ws, "handled", agent="slow", message_id=in_hand.id)
    assert handled["attempt"] == 1  # not interrupted: finished by the worker that had it
    assert [p.name for p in marks(tmp_path, in_hand.id, "end")] == [f"{in_hand.id}.1.end"]
    [again] = events(ws, "restarted", agent="slow")
    assert again["cause"] == "agentctl restart (running)" and again["pid"] != old_pid
    assert events(ws, "stopped", agent="slow")
    router.send(user_message("slow", {}))  # the new worker answers
    wait_until(lambda: len(os.listdir(ws / "user" / "inbox" / "new")) == 2)


def test_handled_counts_every_message_after_a_worker_is_killed(tmp_path: Path, supervised) -> None:
    # Given a backlog the echo worker is draining
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n")
    total = 600
    router = WorkspaceRouter.of(Workspace(tmp_path / "workspace", fsync=False))
    for n in range(total):
        router.send(user_message("echo", {"n": n}))
    inbox = tmp_path / "workspace" / "echo" / "inbox"
    status_path = tmp_path / "workspace" / "echo" / "status.json"
    sup = supervised(tmp_path)

    # When its worker is killed with SIGKILL in the middle of the burst (its last counts were
    # never written) and the supervisor restarts it
    wait_until(lambda: len(os.listdir(inbox / "done")) >= 100, interval_s=0.005)
    os.kill(json.loads(status_path.read_text())["pid"], signal.SIGKILL)
    wait_until(lambda: len(os.listdir(inbox / "done")) == total, timeout_s=60)
    assert run_cli("stop", cwd=tmp_path).returncode == 0
    assert sup.proc.wait(timeout=30) == 0

    # Then `handled` counts every message handled, as done/ does
    echo = _echo(tmp_path)
    assert echo["inbox"] == {"new": 0, "processing": 0, "dead": 0}
    assert echo["handled"] == total

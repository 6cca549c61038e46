"""A full disk: the team waits it out and resumes by itself; commands say so in one line.

Run on a small real tmpfs (needs root to mount one; `small_disk` in conftest.py): the disk fills
for real, every writer meets a real ENOSPC, and freeing space is deleting the ballast file.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentctl.audit.overview import collect_overview
from agentctl.backends.file.workspace import Workspace
from agentctl.config.roster import load_roster
from agentctl.flow.router import WorkspaceRouter
from agentctl.model.clock import FakeClock
from agentctl.model.message import AgentMessage
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import AgentState, AgentStatus, write_status
from agentctl.runtime.supervisor import ProcState, Supervisor
from tests.conftest import fill, run_cli, wait_until, write_roster

# A handler that holds its message until the test opens the gate (a file outside the small
# disk): the test fills the disk while the message is in hand, so the reply cannot be written.
GATED_AGENT = textwrap.dedent("""
    import asyncio, os
    from pathlib import Path
    from agentctl.model.agent import BaseAgent

    class Gated(BaseAgent):
        def __init__(self, name, role, expertise):
            super().__init__(name, role, expertise)

        async def process(self, task, context):
            while not Path(os.environ["GATE"]).exists():
                await asyncio.sleep(0.02)
            return {"done": task["content"], "attempt": context["attempt"]}
""")


def _status(ws: Path, names: tuple[str, ...] | list[str] = ("gated", "echo")) -> dict[str, dict]:
    # What `status --json` prints, computed in-process: the test polls it many times.
    overview = collect_overview(Workspace(ws), list(names))
    return {row.name: row.to_json() for row in overview.agents}


def _messages(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))  # .errors/ aside


def test_a_team_waits_out_a_full_disk_and_resumes_by_itself(
    tmp_path: Path, small_disk: Path, supervised
) -> None:
    (tmp_path / "gated_agent.py").write_text(GATED_AGENT)
    ws = small_disk / "workspace"
    write_roster(tmp_path, """\
        - name: gated
          python: gated_agent:Gated
          max_attempts: 2
        - name: echo
          python: agentctl.agents.echo:EchoAgent
    """, workspace=str(ws), stuck_after_s=2)
    os.environ["GATE"] = str(tmp_path / "gate")  # inherited by `agentctl run` and its workers
    try:
        sup = supervised(tmp_path)
        sup.wait_ready(["gated", "echo"], workspace=ws)
        pids = {name: row["pid"] for name, row in _status(ws).items()}
        router = WorkspaceRouter(ws, fsync=False)
        for n in range(3):
            router.send(AgentMessage(from_agent="user", to_agent="gated", content=f"task {n}"))
        # The first is in the handler; the other two wait in new/.
        wait_until(lambda: len(os.listdir(ws / "gated" / "inbox" / "processing")) == 1)

        # Given: the disk fills while a message is in hand and two wait.
        ballast = fill(small_disk)
        filled_at = datetime.now(UTC)
        (tmp_path / "gate").touch()  # the handler finishes; its reply cannot be written

        # Then: every agent stays up and says why it does not progress, past the point where a
        # silent heartbeat would have had it killed as stuck.
        def waiting_out_the_disk() -> bool:
            rows = _status(ws)
            for name in ("gated", "echo"):
                row = rows[name]
                beat = row["heartbeat_age_s"]
                if row["state"] != "disk full" or not row["alive"] or beat is None:
                    return False
                seen_s = (datetime.now(UTC) - filled_at).total_seconds() - beat
                if seen_s < 2 + 1:  # stuck_after_s, and a heartbeat more
                    return False
            return True

        wait_until(waiting_out_the_disk, timeout_s=10, interval_s=0.2)
        assert sup.proc.poll() is None, (tmp_path / "run.log").read_text()
        assert {name: row["pid"] for name, row in _status(ws).items()} == pids  # no restart
        shown = run_cli("status", "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        rows = {row["name"]: row for row in json.loads(shown.stdout)["agents"]}
        assert rows["gated"]["state"] == rows["echo"]["state"] == "disk full"
        assert "no space left on device" in rows["gated"]["write_error"]

        # When: space is back.
        ballast.unlink()

        # Then: every message is handled once, on its first attempt, with one reply each.
        done = ws / "gated" / "inbox" / "done"
        wait_until(lambda: len(_messages(done)) == 3, timeout_s=10)
        replies_dir = ws / "user" / "inbox" / "new"
        wait_until(lambda: len(_messages(replies_dir)) == 3, timeout_s=5)
        replies = [json.loads((replies_dir / n).read_text()) for n in _messages(replies_dir)]
        assert sorted(r["content"]["done"] for r in replies) == ["task 0", "task 1", "task 2"]
        assert all(r["content"]["attempt"] == 1 for r in replies)
        assert _messages(ws / "gated" / "inbox" / "dead") == []
        wait_until(lambda: all(row["state"] == "idle" and not row.get("write_error")
                               for row in _status(ws).values()), timeout_s=5)
        assert sup.proc.poll() is None
    finally:
        del os.environ["GATE"]
    sup.stop()
    verified = run_cli("verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_stopping_on_a_full_disk_puts_the_message_back_uncounted(
    tmp_path: Path, small_disk: Path, supervised
) -> None:
    (tmp_path / "gated_agent.py").write_text(GATED_AGENT)
    ws = small_disk / "workspace"
    write_roster(tmp_path, "- name: gated\n  python: gated_agent:Gated\n", workspace=str(ws))
    os.environ["GATE"] = str(tmp_path / "gate")
    try:
        sup = supervised(tmp_path)
        sup.wait_ready(["gated"], workspace=ws)
        request = AgentMessage(from_agent="user", to_agent="gated", content="in hand")
        WorkspaceRouter(ws, fsync=False).send(request)
        inbox = ws / "gated" / "inbox"
        wait_until(lambda: os.listdir(inbox / "processing") == [request.file_name])
        fill(small_disk)
        (tmp_path / "gate").touch()
        wait_until(lambda: Workspace(ws).mailbox("gated").depth().processing == 1
                   and _status(ws, ["gated"])["gated"]["state"] == "disk full")
    finally:
        del os.environ["GATE"]

    # When: the team is stopped while the reply cannot be written.
    exit_code = sup.stop()

    # Then: the supervisor stops cleanly, and the message waits in new/ with no attempt spent.
    assert exit_code == 0, (tmp_path / "run.log").read_text()
    assert os.listdir(inbox / "processing") == []
    assert os.listdir(inbox / "new") == [request.file_name]
    assert json.loads((inbox / "new" / request.file_name).read_text())["attempt"] == 0


def test_a_silent_worker_on_a_read_only_disk_is_not_killed_as_stuck(
    tmp_path: Path, small_disk: Path
) -> None:
    # Given: a worker process whose heartbeat is a minute old, on a disk that takes no write at
    # all (not even status.json in place).
    ws = Workspace(small_disk / "workspace", fsync=False)
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n",
                 workspace=str(ws.root))
    clock = FakeClock()
    sup = Supervisor(load_roster(tmp_path / "agents.yaml"), ws, clock=clock)
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        proc = sup.agents["echo"]
        proc.popen, proc.state = worker, ProcState.RUNNING
        ref = ProcessRef.of(worker.pid)
        assert ref is not None
        ws.ensure_agent("echo")
        minute_ago = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
        write_status(ws.status_path("echo"), AgentStatus(
            agent="echo", state=AgentState.IDLE, pid=worker.pid, pid_start_ticks=ref.start_ticks,
            heartbeat_at=minute_ago, stuck_after_s=2))
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        try:
            # When: the supervisor checks its liveness.
            sup.tick()
            # Then: it asks the disk, and leaves alone a worker that could not have written.
            assert worker.poll() is None
            assert any("the disk refuses writes (read-only file system" in event
                       for event in sup.drain_events())
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)

        # And: with the disk writable again, the same silence means stuck.
        clock.advance(2)
        sup.tick()
        assert worker.wait(timeout=10) == -9
    finally:
        worker.kill()
        worker.wait()


def test_send_on_a_full_disk_is_one_error_line(tmp_path: Path, small_disk: Path) -> None:
    ws = small_disk / "workspace"
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n",
                 workspace=str(ws))
    assert run_cli("send", "echo", "before", cwd=tmp_path).returncode == 0
    fill(small_disk)

    result = run_cli("send", "echo", "x" * 10000, cwd=tmp_path)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no space left on device: " + str(ws)), lines[0]
    assert "Traceback" not in result.stderr


def test_run_on_a_full_disk_is_one_error_line(tmp_path: Path, small_disk: Path) -> None:
    ws = small_disk / "workspace"
    write_roster(tmp_path, "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n",
                 workspace=str(ws))
    fill(small_disk)

    result = run_cli("run", cwd=tmp_path, timeout=30)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "no space left on device" in lines[0]

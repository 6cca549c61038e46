"""The everyday commands of a process manager: `--version`, `logs`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from importlib.metadata import version
from pathlib import Path

from tests.conftest import AGENTCTL, run_cli, wait_until, write_roster


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"agentctl {version('agentctl')}"


def test_logs_shows_and_follows_an_agents_output(tmp_path: Path, supervised) -> None:
    # Given a running agent that prints three lines at start-up
    write_roster(tmp_path, """\
        - name: talker
          command: [sh, -c, "echo one; echo two; echo three; exec sleep 60"]
    """)
    supervised(tmp_path)
    wait_until(lambda: "three" in run_cli("logs", "talker", cwd=tmp_path).stdout)
    # When its log is shown with -n 2
    shown = run_cli("logs", "talker", "-n", "2", cwd=tmp_path)
    # Then the last two lines are printed, in order
    assert shown.returncode == 0
    assert shown.stdout.splitlines() == ["two", "three"]

    # When it is followed and the agent writes more
    follower = subprocess.Popen(
        [*AGENTCTL, "logs", "talker", "-f", "-n", "0"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.rstrip("\n") for line in follower.stdout), daemon=True
    )
    reader.start()
    log = tmp_path / "workspace" / "talker" / "agent.log"
    try:
        def appended() -> bool:
            with open(log, "a") as f:  # what the agent's stdout does: append to agent.log
                f.write("four\n")
            return False

        # Then the new line appears (the follower may start after the first append)
        wait_until(lambda: appended() or "four" in lines, timeout_s=15, interval_s=0.3)
        assert "one" not in lines
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    assert follower.returncode == 0, follower.stderr.read()


def test_logs_of_an_unknown_agent_is_one_error_line(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: echo
          python: agentctl.agents.echo:EchoAgent
    """)
    result = run_cli("logs", "nosuch", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no agent 'nosuch'") and "agents: echo" in result.stderr
    bad = run_cli("logs", "../etc", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid agent name")
    assert not os.path.exists(tmp_path / "workspace" / "nosuch")


def test_commands_in_a_folder_without_roster_or_workspace_say_so(tmp_path: Path) -> None:
    for command in (["status"], ["verify"], ["tail"], ["dead", "list"]):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 1, command
        assert result.stderr.startswith("error: no roster and no workspace"), result.stderr
    assert list(tmp_path.iterdir()) == []  # and nothing was created
    (tmp_path / "workspace").mkdir()  # a workspace alone is enough to inspect by hand
    assert run_cli("verify", cwd=tmp_path).stdout.startswith("ok: 0 events")


def test_a_command_agent_without_a_status_of_its_own_shows_running_never_stuck(
    tmp_path: Path, supervised
) -> None:
    # Given a command: agent that never writes status.json (the docs' shell agents)
    write_roster(tmp_path, """\
        - name: quiet
          command: [sh, -c, "exec sleep 60"]
    """)
    supervised(tmp_path).wait_ready(["quiet"])
    # Then status shows what is known: its process runs, with no heartbeat to grow old
    status = json.loads((tmp_path / "workspace" / "quiet" / "status.json").read_text())
    assert status["state"] == "running" and status["heartbeat_at"] == ""
    [row] = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)["agents"]
    assert row["state"] == "running" and row["alive"] is True
    assert row["heartbeat_age_s"] is None

"""The everyday commands of a process manager against a real `agentctl run`: `stop AGENT`,
`start AGENT`, `reload` (and SIGHUP), shell completion."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from agentctl.backends.file.workspace import Workspace
from agentctl.flow.router import WorkspaceRouter, user_message
from tests.conftest import run_cli, wait_until, write_roster
from tests.test_pipelines import (
    PIPELINES,
    STAGES,
    agents_yaml,
    events,
    marks,
    run_file,
    setup,
    stage_ids,
    start,
)

TWO = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: other
  python: agentctl.agents.echo:EchoAgent
"""


def _states(cwd: Path) -> dict[str, str]:
    result = run_cli("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return {a["name"]: a["state"] for a in json.loads(result.stdout)["agents"]}


def _journal(cwd: Path) -> list[dict]:
    path = cwd / "workspace" / ".agentctl" / "journal" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stop_agent_keeps_it_down_until_start(tmp_path: Path, supervised) -> None:
    # Given a running team of two
    write_roster(tmp_path, TWO)
    sup = supervised(tmp_path)
    sup.wait_ready(["echo", "other"])
    pid = json.loads((tmp_path / "workspace" / "echo" / "status.json").read_text())["pid"]

    # When echo is stopped
    stopped = run_cli("stop", "echo", cwd=tmp_path)

    # Then it stops gracefully, stays down, and the rest of the team runs on
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"echo: stopping (pid {pid})")
    wait_until(lambda: _states(tmp_path)["echo"] == "stopped")
    assert _states(tmp_path)["other"] == "idle"
    assert sup.proc.poll() is None
    assert any(e["event"] == "stopped" and e["agent"] == "echo" for e in _journal(tmp_path))
    router = WorkspaceRouter.of(Workspace(tmp_path / "workspace", fsync=False))
    router.send(user_message("echo", {"n": 1}))
    again = run_cli("stop", "echo", cwd=tmp_path)
    assert again.returncode == 0 and "echo: already stopped" in again.stdout
    assert os.listdir(tmp_path / "workspace" / "echo" / "inbox" / "new")  # nobody took it

    # When it is started again, it runs and drains what waited
    started = run_cli("start", "echo", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("echo: started (pid ")
    wait_until(lambda: not os.listdir(tmp_path / "workspace" / "echo" / "inbox" / "new")
               and _states(tmp_path)["echo"] in ("idle", "busy"))
    running = run_cli("start", "echo", cwd=tmp_path)
    assert running.returncode == 0 and "echo: already running" in running.stdout

    # And `stop` without an agent still stops the supervisor
    assert run_cli("stop", cwd=tmp_path).returncode == 0
    assert sup.proc.wait(timeout=30) == 0


def test_stop_and_start_errors_are_one_line(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, TWO)
    for command in ("stop", "start"):
        unknown = run_cli(command, "nosuch", cwd=tmp_path)
        no_supervisor = run_cli(command, "echo", cwd=tmp_path)
        assert unknown.returncode == 1 and len(unknown.stderr.splitlines()) == 1
        assert unknown.stderr.startswith("error: ") and "nosuch" in unknown.stderr
        assert no_supervisor.returncode == 1 and len(no_supervisor.stderr.splitlines()) == 1
        assert "no supervisor is running" in no_supervisor.stderr

    sup = supervised(tmp_path, "--agent", "echo")
    sup.wait_ready(["echo"])
    for command in ("stop", "start"):
        other = run_cli(command, "other", cwd=tmp_path)
        assert other.returncode == 1 and len(other.stderr.splitlines()) == 1
        assert "other: not run by this supervisor" in other.stderr


def _pid(cwd: Path, name: str) -> int:
    return json.loads((cwd / "workspace" / name / "status.json").read_text())["pid"]


THREE = TWO + """\
- name: gone
  python: agentctl.agents.echo:EchoAgent
"""


def test_reload_starts_added_stops_removed_restarts_changed(tmp_path: Path, supervised) -> None:
    # Given a running team of three
    write_roster(tmp_path, THREE)
    sup = supervised(tmp_path)
    sup.wait_ready(["echo", "other", "gone"])
    echo_pid, other_pid = _pid(tmp_path, "echo"), _pid(tmp_path, "other")

    # When the roster drops `gone`, adds `new`, changes `echo` and keeps `other`, and is reloaded
    write_roster(tmp_path, """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
  expertise: [echoing]
- name: other
  python: agentctl.agents.echo:EchoAgent
- name: new
  python: agentctl.agents.echo:EchoAgent
""")
    reloaded = run_cli("reload", cwd=tmp_path)

    # Then each is treated by what changed
    assert reloaded.returncode == 0, reloaded.stderr
    assert "new: started (pid " in reloaded.stdout
    assert "gone: stopping (pid " in reloaded.stdout
    assert "echo: restarting (changed)" in reloaded.stdout
    assert "other" not in reloaded.stdout
    sup.wait_ready(["new"])
    gone = tmp_path / "workspace" / "gone" / "status.json"  # no roster entry: not in `status`
    wait_until(lambda: json.loads(gone.read_text())["state"] == "stopped")
    wait_until(lambda: _states(tmp_path)["echo"] == "idle" and _pid(tmp_path, "echo") != echo_pid)
    assert _pid(tmp_path, "other") == other_pid

    # When the roster is broken, neither `reload` nor SIGHUP changes anything, and both say why
    (tmp_path / "agents.yaml").write_text("agents: [\n")
    broken = run_cli("reload", cwd=tmp_path)
    assert broken.returncode == 1 and len(broken.stderr.splitlines()) == 1
    assert broken.stderr.startswith("error: ") and "agents.yaml" in broken.stderr
    sup.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload: error: " in sup.log.read_text())
    assert sup.proc.poll() is None
    new = tmp_path / "workspace" / "new" / "status.json"  # `status` cannot read the roster now
    assert _pid(tmp_path, "other") == other_pid and json.loads(new.read_text())["state"] == "idle"

    # When a good roster comes back on SIGHUP, it is applied
    write_roster(tmp_path, TWO)
    sup.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: json.loads(new.read_text())["state"] == "stopped")
    assert _pid(tmp_path, "other") == other_pid


def test_reload_gives_the_conductor_new_pipelines_and_a_run_in_progress_goes_on(
    tmp_path: Path, supervised
) -> None:
    # Given a run of `review` in progress, its first stage at work
    ws = setup(tmp_path)
    sup = supervised(tmp_path)
    sup.wait_ready([*STAGES, "pipeline"])
    conductor = _pid(tmp_path, "pipeline")
    review = start(tmp_path, {"plan": {"research": {"wait_for": "go-research"}}})
    wait_until(lambda: marks(tmp_path, stage_ids(review)["research"], "start"), timeout_s=60)

    # When the roster gains the agent `judge` and the pipeline `gate: [judge]`, is reloaded, and
    # a run of `gate` is sent at once
    roster = write_roster(tmp_path, agents_yaml([*STAGES, "judge"]), poll_interval_s=0.1)
    roster.write_text(roster.read_text() + PIPELINES + "  gate: [judge]\n")
    reloaded = run_cli("reload", cwd=tmp_path)
    assert reloaded.returncode == 0, reloaded.stderr
    sent = run_cli("send", "pipeline:gate", "X", "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    gate = json.loads(sent.stdout)["run"]

    # Then the conductor is restarted with the new pipelines and runs `gate` (nothing in dead/)
    dead = tmp_path / "workspace" / "pipeline" / "inbox" / "dead"

    def buried() -> list[str]:  # dead/.errors holds the reasons
        return [name for name in os.listdir(dead) if not name.startswith(".")]

    wait_until(lambda: (run_file(ws, gate) or {}).get("status") == "done" or buried(),
               timeout_s=60)
    assert not buried(), (tmp_path / "workspace" / "pipeline" / "agent.log").read_text()
    assert "pipeline: restarting (pipelines changed)" in reloaded.stdout
    assert "judge: started (pid " in reloaded.stdout
    assert _pid(tmp_path, "pipeline") != conductor

    # And the run in progress is taken up by the new conductor, each stage dispatched once
    (tmp_path / "go-research").touch()
    wait_until(lambda: (run_file(ws, review) or {}).get("status") == "done", timeout_s=60)
    for message_id in stage_ids(review).values():
        assert len(events(ws, "sent", message_id=message_id)) == 1, message_id
    assert len(events(ws, "run_started", run=review)) == 1


def test_show_completion_prints_a_bash_completion_script(tmp_path: Path) -> None:
    shown = run_cli("--show-completion", "bash", cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert "complete " in shown.stdout and "_COMPLETE" in shown.stdout
    assert "--install-completion" in run_cli("--help", cwd=tmp_path).stdout


def test_completion_completes_a_commands_options(tmp_path: Path) -> None:
    # As the shell asks (the variable's name comes from the program's name: `python -m agentctl`)
    env = {"_PYTHON _M AGENTCTL_COMPLETE": "complete_bash", "COMP_WORDS": "agentctl stop --",
           "COMP_CWORD": "2"}

    completed = run_cli(cwd=tmp_path, env=env)

    assert completed.returncode == 0, completed.stderr
    assert "--timeout-s" in completed.stdout.split()

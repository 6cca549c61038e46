"""The CLI end to end, as a user runs it: real `agentctl` processes in a temporary project."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli, wait_until, write_roster

ECHO = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: failing
  exec: [sh, -c, "echo boom >&2; exit 3"]
  max_attempts: 2
"""


def _status(cwd: Path) -> dict:
    result = run_cli("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _agent(status: dict, name: str) -> dict:
    return next(a for a in status["agents"] if a["name"] == name)


def test_init_writes_a_runnable_project_and_refuses_to_overwrite(tmp_path: Path) -> None:
    first = run_cli("init", str(tmp_path / "proj"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    roster = tmp_path / "proj" / "agents.yaml"
    original = roster.read_text()
    assert run_cli("validate", cwd=tmp_path / "proj").returncode == 0

    again = run_cli("init", str(tmp_path / "proj"), cwd=tmp_path)

    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert roster.read_text() == original


def test_run_send_wait_status_stop(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)
    sup = supervised(tmp_path)
    sup.wait_ready(["echo", "failing"])

    sent = run_cli("send", "echo", '{"question": 42}', "--keywords", "a,b", "--wait", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    reply = json.loads(sent.stdout)
    assert reply["echo"] == {"question": 42, "keywords": ["a", "b"]}
    assert reply["attempt"] == 1

    # Reply first, then ack, count and (coalesced, threaded) status write: wait for them.
    status = wait_until(lambda: (s := _status(tmp_path)) and _agent(s, "echo")["handled"] == 1
                        and _agent(s, "echo")["state"] == "idle"
                        and _agent(s, "echo")["inbox"]["processing"] == 0 and s)
    assert status["supervisor"]["running"] is True
    echo = _agent(status, "echo")
    assert echo["alive"] is True and echo["state"] == "idle"
    assert echo["handled"] == 1
    assert echo["inbox"] == {"new": 0, "processing": 0, "dead": 0}

    stopped = run_cli("stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert sup.proc.wait(timeout=30) == 0
    after = _status(tmp_path)
    assert after["supervisor"]["running"] is False
    assert all(a["alive"] is False and a["state"] == "stopped" for a in after["agents"])


def test_send_without_wait_prints_the_id_and_the_message_is_on_disk(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    result = run_cli("send", "echo", "hello", "--priority", "high", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip()
    path = tmp_path / "workspace" / "echo" / "inbox" / "new" / f"0-{message_id}.json"
    data = json.loads(path.read_text())
    assert data["content"] == "hello" and data["from_agent"] == "user"
    assert "no supervisor is running" in result.stderr  # a note, not an error
    assert (tmp_path / "workspace" / "user" / "outbox" / path.name).exists()


def test_send_reads_stdin_and_files(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    (tmp_path / "task.json").write_text('{"from": "file"}')
    from_file = run_cli("send", "echo", "@task.json", "--json", cwd=tmp_path)
    from_stdin = run_cli("send", "echo", "-", "--text", cwd=tmp_path, input="{not json")
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_file.stderr
    file_path = Path(json.loads(from_file.stdout)["path"])
    assert json.loads(file_path.read_text())["content"] == {"from": "file"}
    new = tmp_path / "workspace" / "echo" / "inbox" / "new"
    contents = sorted(json.loads(p.read_text())["content"].__repr__() for p in new.iterdir())
    assert "'{not json'" in contents


def test_send_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    write_roster(tmp_path, ECHO)
    cases = [
        (("send", "nobody", "hi"), "no agent named 'nobody'"),
        (("send", "../etc", "hi"), "invalid agent name"),
        (("send", "echo", "{broken"), "looks like JSON"),
        (("send", "echo", "@missing.txt"), "cannot read"),
    ]
    for args, expected in cases:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1, args
        assert expected in result.stderr, (args, result.stderr)
        assert result.stderr.count("error:") == 1
    assert not (tmp_path / "workspace" / "echo" / "inbox" / "new").exists() or not list(
        (tmp_path / "workspace" / "echo" / "inbox" / "new").iterdir()
    )
    assert not (tmp_path / "etc").exists() and not (tmp_path / "workspace" / "nobody").exists()


def test_a_failing_agent_escalates_and_dead_letters(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)
    supervised(tmp_path).wait_ready(["echo", "failing"])

    result = run_cli("send", "failing", "x", "--wait", "--timeout-s", "30", cwd=tmp_path)

    assert result.returncode == 1
    reply = json.loads(result.stdout)
    assert reply["verdict"] == "escalate" and reply["attempts"] == 2
    assert "exited with status 3: boom" in reply["error"]
    dead = tmp_path / "workspace" / "failing" / "inbox" / "dead"
    # The escalation reply is published before the message is buried: wait for dead/.
    wait_until(lambda: len(list(dead.glob("*.json"))) == 1)
    errors = list(dead.glob(".errors/*.json"))
    assert len(errors) == 1
    assert json.loads(errors[0].read_text())["attempts"] == 2
    assert _agent(_status(tmp_path), "failing")["inbox"]["dead"] == 1


def test_one_supervisor_per_workspace(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)
    supervised(tmp_path).wait_ready(["echo"])

    second = run_cli("run", cwd=tmp_path, timeout=30)

    assert second.returncode == 1
    assert "already running" in second.stderr


def test_run_after_kill_9_of_the_supervisor_needs_no_cleanup(tmp_path: Path, supervised) -> None:
    write_roster(tmp_path, ECHO)
    first = supervised(tmp_path)
    first.wait_ready(["echo", "failing"])
    old_pids = {a["name"]: a["pid"] for a in _status(tmp_path)["agents"]}

    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    # Its agents die with it (the kernel signals them), so none is left running.
    wait_until(lambda: not any(a["alive"] for a in _status(tmp_path)["agents"]))

    second = supervised(tmp_path)
    wait_until(lambda: all(a["alive"] and a["pid"] != old_pids[a["name"]]
                           for a in _status(tmp_path)["agents"]))
    sent = run_cli("send", "echo", "again", "--wait", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert second.stop() == 0


def test_workspace_and_config_from_options_and_environment(tmp_path: Path, supervised) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_roster(project, ECHO, workspace="elsewhere")
    env = {"AGENTCTL_CONFIG": str(project / "agents.yaml")}
    result = run_cli("send", "echo", "hi", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert len(list((project / "elsewhere" / "echo" / "inbox" / "new").iterdir())) == 1

    other = tmp_path / "other-ws"
    result = run_cli("send", "echo", "hi", "--workspace", str(other), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert len(list((other / "echo" / "inbox" / "new").iterdir())) == 1

    env["AGENTCTL_WORKSPACE"] = str(other)
    status = run_cli("status", "--json", cwd=tmp_path, env=env)
    assert json.loads(status.stdout)["workspace"] == str(other)
    assert _agent(json.loads(status.stdout), "echo")["inbox"]["new"] == 1


def test_errors_are_one_red_line_and_exit_1(tmp_path: Path) -> None:
    roster = "agents:\n  - name: x\n    colour: red\n    exec: [cat]\n"
    (tmp_path / "agents.yaml").write_text(roster)
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'agents.yaml'}:3: agents[0].colour " \
        "(agent 'x'): " \
        "unknown key (check the spelling; see docs/ROSTER.md)"
    missing = run_cli("run", "--config", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 1 and "nope.yaml: no such roster file" in missing.stderr


@pytest.mark.parametrize("which", ["message", "status"])
def test_schema_prints_json_schema(tmp_path: Path, which: str) -> None:
    result = run_cli("schema", which, cwd=tmp_path)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert ("from_agent" if which == "message" else "heartbeat_at") in schema["properties"]


def test_status_fits_the_terminal(tmp_path: Path) -> None:
    write_roster(tmp_path, """\
        - name: a_rather_long_agent_name
          python: agentctl.agents.echo:EchoAgent
    """)
    narrow = run_cli("status", cwd=tmp_path, env={"COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    table = narrow.stdout.splitlines()[1:]  # after the title, which names the workspace path
    assert all(len(line) <= 80 for line in table), narrow.stdout
    assert any("a_rather_long_agent_name" in line and "absent" in line for line in table)
    wide = run_cli("status", cwd=tmp_path, env={"COLUMNS": "160"})
    assert "last error" in wide.stdout and "alive" in wide.stdout


@pytest.mark.parametrize(
    ("args", "says", "command"),
    [
        (["send", "--priority", "ultra", "echo", "hi"], "'ultra' is not one of", "agentctl send"),
        (["trace", "export", "--bogus"], "no such option: --bogus", "agentctl trace export"),
        (["bogus"], "no such command 'bogus'", "agentctl"),
        (["send"], "missing argument", "agentctl send"),
        (["dead", "list", "--json", "--bogus"], "no such option", "agentctl dead list"),
    ],
)
def test_a_usage_error_is_one_error_line_and_exit_2(
    tmp_path: Path, args: list[str], says: str, command: str
) -> None:
    write_roster(tmp_path, ECHO)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and says in line.lower(), line
    assert line.endswith(f"(see {command} --help)"), line


def test_help_and_version_still_exit_0(tmp_path: Path) -> None:
    helped = run_cli("send", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--priority" in helped.stdout, helped.stderr
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("agentctl "), version.stderr
    bare = run_cli(cwd=tmp_path)  # no command: the list of commands, as before
    assert bare.returncode == 2 and "send" in bare.stderr and "error:" not in bare.stderr

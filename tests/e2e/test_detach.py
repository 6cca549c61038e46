"""`agentctl run --detach`: the supervisor as a daemon, returned from once every agent is up."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentctl.backends.file.workspace import Workspace
from agentctl.flow.router import WorkspaceRouter, user_message
from agentctl.protocol.proc import ProcessRef
from tests.conftest import run_cli, wait_until, write_roster
from tests.natsfix import NatsServer, nats_server  # noqa: F401

TEAM = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: other
  python: agentctl.agents.echo:EchoAgent
- name: shell
  command: [sh, -c, "sleep 600"]
- name: offline
  llm: {model: m, base_url: "${DETACH_TEST_UNSET_URL}"}
"""


def _status(cwd: Path) -> dict:
    result = run_cli("status", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_detach_returns_with_every_agent_up_and_stop_ends_it(tmp_path: Path) -> None:
    # Given a roster of two Python agents, a `command:` one and a disabled one
    write_roster(tmp_path, TEAM)

    # When run --detach returns
    detached = run_cli("run", "--detach", "--timeout-s", "30", cwd=tmp_path)
    pid = _status(tmp_path)["supervisor"]["pid"]
    ref = ProcessRef.of(pid) if pid else None
    try:
        # Then every enabled agent is up already, and the supervisor runs on in the background
        assert detached.returncode == 0, detached.stderr
        assert f"pid {pid}" in detached.stdout
        overview = _status(tmp_path)
        assert overview["supervisor"]["running"] is True
        states = {a["name"]: a["state"] for a in overview["agents"]}
        assert states["echo"] == "idle" and states["other"] == "idle"
        assert states["shell"] not in ("crashed", "fatal", "absent", "stopped")
        assert states.get("offline") != "idle"
        assert "supervisor: running" in run_cli("status", cwd=tmp_path).stdout
        # What `run` prints goes to the workspace's log
        log = tmp_path / "workspace" / ".agentctl" / "run.log"
        wait_until(lambda: "echo: started" in log.read_text())

        # And a message is handled
        router = WorkspaceRouter.of(Workspace(tmp_path / "workspace", fsync=False))
        router.send(user_message("echo", {"n": 1}))
        done = tmp_path / "workspace" / "echo" / "inbox" / "done"
        wait_until(lambda: done.is_dir() and os.listdir(done))

        # And a second detach is refused with the existing one-line error
        again = run_cli("run", "--detach", "--timeout-s", "30", cwd=tmp_path)
        assert again.returncode == 1, again.stdout
        assert again.stderr.startswith("error: ") and len(again.stderr.splitlines()) == 1
        assert "already running" in again.stderr

        # When stopped, the daemon is gone
        stopped = run_cli("stop", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert ref is not None
        wait_until(lambda: not ref.is_alive())
        assert _status(tmp_path)["supervisor"]["running"] is False
        assert "stopped" in log.read_text().splitlines()[-1]
    finally:
        if ref is not None and ref.is_alive():
            os.kill(pid, 15)


def test_detach_fails_when_an_agent_cannot_start(tmp_path: Path) -> None:
    # Given a roster whose only agent exits at once and is never restarted
    write_roster(tmp_path, """\
- name: broken
  command: [sh, -c, "exit 3"]
  restart: never
""")

    # When run --detach is asked for it with a short timeout
    result = run_cli("run", "--detach", "--timeout-s", "2", cwd=tmp_path)
    if result.returncode == 0:  # wrongly up: leave no daemon behind a failing test
        run_cli("stop", cwd=tmp_path)

    # Then it fails with one error line naming the agent, and leaves no supervisor behind
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "broken" in result.stderr
    assert _status(tmp_path)["supervisor"]["running"] is False


def test_detach_on_nats_returns_with_the_agent_up_and_a_send_is_answered(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    # Given a roster whose transport is a real nats-server
    write_roster(
        tmp_path,
        "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n",
        transport=f"{{kind: nats, servers: [{nats_server.url}]}}",
    )

    # When run --detach returns
    detached = run_cli("run", "--detach", "--timeout-s", "30", cwd=tmp_path)
    pid = _status(tmp_path)["supervisor"]["pid"]
    ref = ProcessRef.of(pid) if pid else None
    try:
        # Then the worker is up on NATS already: a send is answered through the cluster
        assert detached.returncode == 0, detached.stderr
        (row,) = _status(tmp_path)["agents"]
        assert row["state"] == "idle"
        sent = run_cli("send", "echo", '{"n": 1}', "--wait", "--timeout-s", "20", cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert '"n": 1' in sent.stdout or '"n":1' in sent.stdout

        # And stop ends the daemon
        assert run_cli("stop", cwd=tmp_path).returncode == 0
        assert ref is not None
        wait_until(lambda: not ref.is_alive())
    finally:
        if ref is not None and ref.is_alive():
            os.kill(pid, 15)

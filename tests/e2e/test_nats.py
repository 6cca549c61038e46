"""The NATS transport end to end: the same roster, agents and commands on a real nats-server
(and a real three-node JetStream cluster), by changing one line of agents.yaml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import AGENTCTL, JUDGE, run_cli, wait_until, write_roster
from tests.natsfix import NatsCluster, NatsServer, nats_cluster, nats_server  # noqa: F401

ECHO = "python: agentctl.agents.echo:EchoAgent"


def _roster(tmp: Path, servers: list[str], agents: str, **settings: object) -> Path:
    transport = (
        "{kind: nats, servers: ["
        + ", ".join(servers)
        + "]"
        + (
            f", replicas: {settings.pop('stream_replicas')}"
            if "stream_replicas" in settings
            else ""
        )
        + "}"
    )
    return write_roster(tmp, agents, transport=transport, **settings)


def _status(tmp: Path) -> dict[str, Any]:
    result = run_cli("status", "--json", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _ready(tmp: Path, workers: int, agent: str = "echo") -> None:
    def idle() -> bool:
        rows = [r for r in _status(tmp)["agents"] if r["name"] == agent]
        return sum(1 for r in rows if r["state"] == "idle" and r["alive"]) == workers

    wait_until(idle, timeout_s=30, interval_s=0.3)


def _events(tmp: Path) -> list[dict[str, Any]]:
    result = run_cli("tail", "-n", "100000", "--json", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


class Client:
    """The Python API on the same cluster: many sends without a process each."""

    def __init__(self, tmp: Path, servers: list[str], *, replicas: int = 1) -> None:
        from agentctl.backends.file.workspace import Workspace
        from agentctl.backends.nats.backend import NatsBackend
        from agentctl.backends.nats.reader import StreamReader

        self.transport = NatsBackend.connect(
            Workspace(tmp / "client"), servers, stream="AGENTCTL", replicas=replicas
        )
        self.reader = StreamReader(self.transport)

    def send(self, to: str, content: str) -> str:
        from agentctl.flow.router import user_message

        message = user_message(to, content)
        self.transport.deliver(message)
        return message.id

    def count(self, event: str) -> Counter[str]:
        from agentctl.model.errors import AgentctlError

        try:
            return self._count(event)
        except AgentctlError:  # the cluster is electing a leader: ask again later
            return Counter()

    def _count(self, event: str) -> Counter[str]:
        return Counter(str(e["message_id"]) for e in self.reader.events() if e["event"] == event)

    def settled(self, agent: str) -> bool:
        """Nothing waiting for or held by the agent's consumer."""
        from agentctl.model.errors import AgentctlError

        try:
            depth = self.reader.depth([agent])[agent]
        except AgentctlError:  # the cluster is electing a leader: ask again later
            return False
        return depth.new == 0 and depth.processing == 0

    def replies(self) -> Counter[str]:
        """How many times each message id is stored on the user's inbox subject."""
        return Counter(
            m.headers.get("Nats-Msg-Id", "")
            for m in self.reader.messages("agents.user.inbox", headers_only=True)
        )

    def close(self) -> None:
        self.transport.close()


def test_send_wait_status_tail_replay_with_two_replicas(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(tmp_path, [nats_server.url], f"- name: echo\n  {ECHO}\n  replicas: 2\n")
    sup = supervised(tmp_path)
    _ready(tmp_path, workers=2)

    followed = tmp_path / "tail-f.jsonl"
    tail = subprocess.Popen(
        [*AGENTCTL, "tail", "-f", "-n", "5", "--json", "--kind", "handled"],
        cwd=tmp_path, stdout=open(followed, "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        sent = run_cli(
            "send", "echo", "hello over nats", "--wait", "--timeout-s", "30", cwd=tmp_path
        )
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["echo"]["content"] == "hello over nats"
        # Once its first line is out, `tail -f` has read what was stored: the next lines can
        # only come from following the stream.
        wait_until(lambda: followed.read_text().strip(), timeout_s=15)

        client = Client(tmp_path, [nats_server.url])
        ids = [client.send("echo", f"m{i}") for i in range(20)]
        client.close()
        wait_until(
            lambda: sum(r["handled"] for r in _status(tmp_path)["agents"]) == 21, interval_s=0.3
        )
        wait_until(lambda: len(followed.read_text().splitlines()) == 21, timeout_s=15)
    finally:
        tail.terminate()
        tail.wait(timeout=10)
    lines = [json.loads(line) for line in followed.read_text().splitlines()]
    assert {e["event"] for e in lines} == {"handled"}
    assert {e["message_id"] for e in lines[1:]} == set(ids)
    rows = _status(tmp_path)["agents"]
    assert sorted(r["replica"] for r in rows) == [0, 1]
    assert all(r["inbox"] == {"new": 0, "processing": 0, "dead": 0} for r in rows)

    events = _events(tmp_path)
    handled = Counter(e["message_id"] for e in events if e["event"] == "handled")
    assert all(handled[i] == 1 for i in ids), handled  # each handled once, by one replica
    assert {e["event"] for e in events} >= {"sent", "claimed", "handled", "started"}

    replay = run_cli("replay", ids[0], "--json", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    thread = json.loads(replay.stdout)
    request = next(m for m in thread["messages"] if m["id"] == ids[0])
    assert request["state"] == "done" and request["content"] == "m0"
    resent = run_cli("replay", ids[0], "--resend", "--wait", "--json", cwd=tmp_path)
    assert resent.returncode == 0, resent.stderr
    compared = json.loads(resent.stdout)
    assert compared["original"] == ids[0] and compared["id"] != ids[0]
    assert compared["recorded"]["echo"]["content"] == "m0"  # read back from the stream
    assert compared["result"]["echo"]["content"] == "m0"  # answered again, over NATS
    verify = run_cli("verify", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok: ")
    # A message deleted from the stream behind agentctl's back is found.
    client = Client(tmp_path, [nats_server.url])
    js, stream = client.transport.js, client.transport.stream
    first = next(client.reader.messages("agents.echo.inbox"))
    client.transport.call(lambda: js.delete_msg(stream, first.seq), "delete")
    client.close()
    verify = run_cli("verify", "--json", cwd=tmp_path)
    assert verify.returncode == 1
    [problem] = json.loads(verify.stdout)["problems"]
    assert "journaled as sent" in problem and "not in the stream" in problem
    assert sup.stop() == 0
    # Stopped, both replicas say so; scaled down to one replica, the bucket still holds
    # replica 1's record (for a day), but status shows only what the roster runs.
    assert [r["state"] for r in _status(tmp_path)["agents"]] == ["stopped", "stopped"]
    _roster(tmp_path, [nats_server.url], f"- name: echo\n  {ECHO}\n")
    rows = _status(tmp_path)["agents"]
    assert [(r["replica"], r["state"]) for r in rows] == [(0, "stopped")]


def test_retries_then_dead_letter_then_requeue(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(
        tmp_path,
        [nats_server.url],
        """\
        - name: flaky
          exec: [python3, -c, "import sys; sys.exit(3)"]
          max_attempts: 3
          retry: {backoff_s: 0.1}
        """,
    )
    supervised(tmp_path)
    _ready(tmp_path, workers=1, agent="flaky")
    waited = run_cli("send", "flaky", "boom", "--wait", "--timeout-s", "30", cwd=tmp_path)
    assert waited.returncode == 1  # the escalation reply says it failed
    assert json.loads(waited.stdout)["verdict"] == "escalate"

    listed = run_cli("dead", "list", "--json", cwd=tmp_path)
    letters = json.loads(listed.stdout)
    assert len(letters) == 1 and letters[0]["attempts"] == 3, listed.stdout
    message_id = letters[0]["message_id"]
    attempts = [e["attempt"] for e in _events(tmp_path) if e["event"] == "claimed"]
    assert attempts == [1, 2, 3]

    requeued = run_cli("dead", "requeue", message_id, cwd=tmp_path)
    assert requeued.returncode == 0, requeued.stderr
    # Requeued, it gets three fresh attempts and dies again: one dead letter, not two.
    wait_until(
        lambda: sum(1 for e in _events(tmp_path) if e["event"] == "dead") == 2, interval_s=0.3
    )
    letters = json.loads(run_cli("dead", "list", "--json", cwd=tmp_path).stdout)
    assert [letter["message_id"] for letter in letters] == [message_id]


def test_halt_stops_claims_on_every_worker_until_resume(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(tmp_path, [nats_server.url], f"- name: echo\n  {ECHO}\n  replicas: 2\n")
    supervised(tmp_path)
    _ready(tmp_path, workers=2)
    assert run_cli("halt", "--reason", "budget spent", cwd=tmp_path).returncode == 0
    assert _status(tmp_path)["halted"]["reason"] == "budget spent"
    client = Client(tmp_path, [nats_server.url])
    ids = [client.send("echo", f"h{i}") for i in range(5)]
    time.sleep(2)  # long enough for a worker to claim, were it allowed to
    assert client.reader.depth(["echo"])["echo"].new == 5
    assert run_cli("resume", cwd=tmp_path).returncode == 0
    wait_until(lambda: client.settled("echo"), interval_s=0.3)
    assert all(client.replies()[f"{i}-reply"] == 1 for i in ids)
    client.close()


def test_a_pipeline_runs_over_nats(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    roster = _roster(
        tmp_path,
        [nats_server.url],
        f"- name: first\n  {ECHO}\n- name: second\n  {ECHO}\n",
    )
    roster.write_text(roster.read_text() + "pipelines:\n  two: [first, second]\n")
    supervised(tmp_path)
    _ready(tmp_path, workers=1, agent="second")
    _ready(tmp_path, workers=1, agent="pipeline")
    result = run_cli(
        "send", "pipeline:two", "review me", "--wait", "--json", "--timeout-s", "60", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["outcome"] == "done"
    assert [stage["agents"] for stage in outcome["stages"]] == [["first"], ["second"]]


def test_an_escalation_waits_for_a_person_on_nats(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    (tmp_path / "judge.py").write_text(JUDGE)
    roster = _roster(tmp_path, [nats_server.url], "- name: judge\n  python: judge:Judge\n")
    roster.write_text(roster.read_text() + "pipelines:\n  gate: [judge]\n")
    supervised(tmp_path)
    _ready(tmp_path, workers=1, agent="pipeline")
    waiter = subprocess.Popen(
        [*AGENTCTL, "send", "pipeline:gate", "please escalate", "--wait", "--json",
         "--timeout-s", "60"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def listed() -> list[dict[str, Any]]:
            return list(json.loads(run_cli("escalations", "--json", cwd=tmp_path).stdout))

        [escalation] = wait_until(listed, timeout_s=30, interval_s=0.3)
        assert escalation["pipeline"] == "gate" and escalation["agents"] == ["judge"]
        assert _status(tmp_path)["escalations"]["open"] == 1
        resolved = run_cli("resolve", escalation["id"], "--verdict", "pass", cwd=tmp_path)
        assert resolved.returncode == 0, resolved.stderr
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, out + err
        assert json.loads(out)["outcome"] == "done"
        assert listed() == [] and _status(tmp_path)["escalations"]["open"] == 0
    finally:
        waiter.kill()


def test_one_conductor_per_cluster(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    machines = [tmp_path / "a", tmp_path / "b"]  # two workspaces: two "machines"
    for directory in machines:
        directory.mkdir()
        roster = _roster(directory, [nats_server.url], f"- name: first\n  {ECHO}\n")
        roster.write_text(roster.read_text() + "pipelines:\n  one: [first]\n")
    supervised(machines[0])
    _ready(machines[0], workers=1, agent="pipeline")
    supervised(machines[1])
    log = machines[1] / "workspace" / "pipeline" / "agent.log"
    wait_until(lambda: log.exists() and "another conductor runs on" in log.read_text())
    # The first conductor keeps working; the second never took a run.
    result = run_cli("send", "pipeline:one", "x", "--wait", "--json", cwd=machines[1])
    assert result.returncode == 0 and json.loads(result.stdout)["outcome"] == "done"
    runs = [m / "workspace" / "pipeline" / "runs" for m in machines]
    assert len(list(runs[0].glob("*.json"))) == 1 and not list(runs[1].glob("*.json"))


def test_a_worker_killed_mid_stream_loses_nothing(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(
        tmp_path,
        [nats_server.url],
        f"- name: echo\n  {ECHO}\n  replicas: 2\n  timeout_s: 2\n  max_attempts: 5\n",
    )
    supervised(tmp_path)
    _ready(tmp_path, workers=2)
    client = Client(tmp_path, [nats_server.url])
    pids = [r["pid"] for r in _status(tmp_path)["agents"]]
    ids: list[str] = []
    for i in range(300):
        ids.append(client.send("echo", f"n{i}"))
        if i == 150:
            for pid in pids:  # both workers at once, mid-stream; the supervisor restarts them
                os.kill(pid, signal.SIGKILL)
    # Done on NATS means acked: nothing waits or is held, and each request has one reply.
    wait_until(lambda: client.settled("echo"), timeout_s=60, interval_s=0.5)
    replies = client.replies()
    assert all(replies[f"{i}-reply"] == 1 for i in ids), {
        i: replies[f"{i}-reply"] for i in ids if replies[f"{i}-reply"] != 1
    }
    # A worker killed between its ack and its `handled` event leaves that event out (the
    # message is done all the same); none is ever recorded twice.
    assert max(client.count("handled").values()) == 1
    client.close()


def test_the_server_restarted_under_a_running_agent(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(tmp_path, [nats_server.url], f"- name: echo\n  {ECHO}\n")
    supervised(tmp_path)
    _ready(tmp_path, workers=1)
    nats_server.stop()
    status_file = tmp_path / "workspace" / "echo" / "status.json"
    wait_until(lambda: json.loads(status_file.read_text())["state"] == "disconnected")
    # `status` cannot reach the cluster: it says so, and shows this machine's own view.
    down = run_cli("status", "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "cannot connect to NATS" in down.stderr and "this machine" in down.stderr
    local = json.loads(down.stdout)
    assert local["transport"] == {"kind": "nats", "servers": [nats_server.url], "reachable": False}
    assert [(r["name"], r["state"]) for r in local["agents"]] == [("echo", "disconnected")]
    nats_server.restart()
    wait_until(lambda: json.loads(status_file.read_text())["state"] == "idle", timeout_s=30)
    result = run_cli("send", "echo", "after restart", "--wait", "--timeout-s", "30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"]["content"] == "after restart"


def test_a_result_the_server_refuses_is_a_failed_attempt_not_a_stuck_worker(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    supervised: Any,
) -> None:
    # Within agentctl's limit, over the server's (1 MB max_payload): refused for ever, so
    # retrying cannot help; the attempt fails and the worker goes on.
    _roster(
        tmp_path,
        [nats_server.url],
        """\
        - name: big
          exec: [python3, -c, "print('\\"' + 'x' * 1500000 + '\\"')"]
          max_attempts: 1
        - name: echo
          python: agentctl.agents.echo:EchoAgent
        """,
        max_message_bytes=4000000,
    )
    supervised(tmp_path)
    _ready(tmp_path, workers=1, agent="big")
    result = run_cli("send", "big", "go", "--wait", "--timeout-s", "30", cwd=tmp_path)
    assert result.returncode == 1 and json.loads(result.stdout)["verdict"] == "escalate"
    [letter] = json.loads(run_cli("dead", "list", "--json", cwd=tmp_path).stdout)
    assert "cannot deliver the result" in letter["error"] and "payload" in letter["error"]


def test_a_missing_server_is_one_clear_line(tmp_path: Path) -> None:
    _roster(tmp_path, ["nats://127.0.0.1:9"], f"- name: echo\n  {ECHO}\n")
    for args in (["send", "echo", "hi"], ["run"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "nats://127.0.0.1:9: cannot connect to NATS" in lines[0]
    assert not (tmp_path / "workspace" / ".agentctl" / "supervisor.pid").exists()


def test_a_cluster_node_killed_while_messages_flow(
    tmp_path: Path,
    nats_cluster: NatsCluster,  # noqa: F811
    supervised: Any,
) -> None:
    _roster(
        tmp_path,
        nats_cluster.urls,
        f"- name: echo\n  {ECHO}\n  replicas: 2\n  max_attempts: 5\n",
        stream_replicas=3,
    )
    supervised(tmp_path)
    _ready(tmp_path, workers=2)
    client = Client(tmp_path, nats_cluster.urls[1:], replicas=3)
    ids: list[str] = []
    for i in range(200):
        if i == 50:
            nats_cluster.kill(0)  # whatever it led, the other two elect a new leader
        ids.append(client.send("echo", f"c{i}"))  # retried by the client during the election
    wait_until(lambda: client.settled("echo"), timeout_s=60, interval_s=0.5)
    replies = client.replies()
    assert all(replies[f"{i}-reply"] == 1 for i in ids), {
        i: replies[f"{i}-reply"] for i in ids if replies[f"{i}-reply"] != 1
    }
    # `handled` is journaled just after the ack: under load its event may land a moment later.
    wait_until(lambda: all(client.count("handled")[i] for i in ids), timeout_s=30, interval_s=0.5)
    handled = client.count("handled")
    assert all(handled[i] == 1 for i in ids), {i: handled[i] for i in ids if handled[i] != 1}
    client.close()


def test_without_nats_py_the_error_names_the_extra(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "nats"
    shadow.mkdir(parents=True)  # a `nats` package that cannot be imported, as if not installed
    (shadow / "__init__.py").write_text("raise ImportError('No module named nats')\n")
    _roster(tmp_path, ["nats://127.0.0.1:4222"], f"- name: echo\n  {ECHO}\n")
    for args in (["send", "echo", "hi"], ["status"]):
        result = run_cli(*args, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow")})
        assert result.returncode == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert lines == ["error: NATS support needs the nats extra: pip install 'agentctl[nats]'"]

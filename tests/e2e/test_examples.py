"""The agents in examples/, run for real: `agentctl run` on a copy of examples/agents.yaml.

Each test copies examples/ into a temporary project (durability none, fast polling), runs one
agent with `agentctl run --agent NAME`, and talks to it with `agentctl send`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli, wait_until

EXAMPLES = REPO / "examples"
PROTOCOL = REPO / "docs" / "PROTOCOL.md"

needs_jq = pytest.mark.skipif(
    shutil.which("jq") is None, reason="jq is not installed (the sh and jq example agents use it)"
)
needs_node = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (examples/node_agent.js needs it)"
)


def _project(tmp_path: Path) -> Path:
    """A copy of examples/ whose roster is set up for tests; returns its directory."""
    project = tmp_path / "examples"
    shutil.copytree(EXAMPLES, project, ignore=shutil.ignore_patterns("workspace"))
    roster = yaml.safe_load((project / "agents.yaml").read_text())
    roster.update(workspace="workspace", durability="none", poll_interval_s=0.1)
    (project / "agents.yaml").write_text(yaml.safe_dump(roster, sort_keys=False))
    return project


def _start(supervised, project: Path, agent: str):
    sup = supervised(project, "--agent", agent)
    sup.wait_ready([agent])
    return sup


def _check_clean_stop(sup, project: Path, agent: str) -> None:
    """SIGTERM (agentctl stop) makes the agent exit 0: recorded as stopped, not crashed."""
    assert sup.stop() == 0, sup.log.read_text()
    final = json.loads((project / "workspace" / agent / "status.json").read_text())
    assert (final["state"], final["exit_code"]) == ("stopped", 0), final


def _send(project: Path, agent: str, content: str, *extra: str):
    return run_cli("send", agent, content, "--json", "--wait", "--timeout-s", "30", *extra,
                   cwd=project)


def _status(project: Path, agent: str) -> dict:
    result = run_cli("status", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    return next(a for a in json.loads(result.stdout)["agents"] if a["name"] == agent)


def _inbox(project: Path, agent: str, sub: str) -> Path:
    return project / "workspace" / agent / "inbox" / sub


def _files(directory: Path) -> list[str]:
    """The names in `directory`, dot names (dead/.errors/, hidden by the protocol) aside."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def _moved(src: Path, dst: Path) -> bool:
    """A move done by link + unlink has finished: dst exists and src is gone."""
    return dst.exists() and not src.exists()


def _user_files(project: Path, request_id: str) -> list[Path]:
    """Files of `request_id` in the user's inbox, tmp/ aside (a writer's private names)."""
    inbox = project / "workspace" / "user" / "inbox"
    return sorted(p.relative_to(inbox) for sub in ("new", "processing", "done", "dead")
                  for p in (inbox / sub).glob(f"*{request_id}*"))


def _check_handled(project: Path, agent: str, reply: dict, rank: int = 1) -> dict:
    """The protocol's footprint of one handled task: request in done/, one reply, copies."""
    request_id = reply["in_reply_to"]
    name = f"{rank}-{request_id}.json"
    reply_name = f"{rank}-{request_id}-reply.json"
    assert reply["id"] == f"{request_id}-reply"
    assert reply["kind"] == "result"
    assert reply["from_agent"] == agent and reply["to_agent"] == "user"
    assert reply["thread_id"] == request_id
    # The reply is published before the request is acked, so the ack may come a moment later.
    done = _inbox(project, agent, "done") / name
    wait_until(lambda: _moved(_inbox(project, agent, "processing") / name, done))
    request = json.loads(done.read_text())
    assert request["id"] == request_id and request["to_agent"] == agent
    for sub in ("new", "processing"):
        assert _files(_inbox(project, agent, sub)) == [], sub
    assert not [n for n in _files(_inbox(project, agent, "dead")) if request_id in n]
    user_inbox = project / "workspace" / "user" / "inbox"
    # Exactly one reply, claimed by send --wait.
    assert _user_files(project, request_id) == [Path("done") / reply_name]
    outbox_copy = project / "workspace" / agent / "outbox" / reply_name
    copy = json.loads(outbox_copy.read_text())  # the same file (a hard link to the reply)
    assert (copy["id"], copy["content"]) == (reply["id"], reply["content"])
    assert outbox_copy.samefile(user_inbox / "done" / reply_name)
    for path in (done, user_inbox / "done" / reply_name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    return request


def _check_escalated(project: Path, agent: str, result, attempts: int) -> dict:
    assert result.returncode == 1, result.stderr
    reply = json.loads(result.stdout)
    assert reply["content"]["verdict"] == "escalate"
    assert reply["content"]["attempts"] == attempts
    request_id = reply["in_reply_to"]
    dead = _inbox(project, agent, "dead")
    name = f"1-{request_id}.json"
    wait_until(lambda: _moved(_inbox(project, agent, "processing") / name, dead / name))
    error = json.loads((dead / ".errors" / name).read_text())  # every agent: dead/.errors/N
    assert error["message_id"] == request_id
    assert error["attempts"] == attempts and error["error_kind"] == "error"
    assert json.loads((dead / f"1-{request_id}.json").read_text())["attempt"] == attempts
    return error


def _bad_file_goes_to_dead(project: Path, agent: str) -> dict:
    tmp = _inbox(project, agent, "tmp") / "1-not-json.json.test.tmp"
    tmp.write_text("{this is not json")
    os.link(tmp, _inbox(project, agent, "new") / "1-not-json.json")  # delivered as the protocol
    tmp.unlink()                                                      # says: never half a file
    dead = _inbox(project, agent, "dead")
    wait_until(lambda: _moved(_inbox(project, agent, "processing") / "1-not-json.json",
                              dead / "1-not-json.json"))
    assert (dead / "1-not-json.json").read_text() == "{this is not json"  # exact bytes kept
    error = json.loads((dead / ".errors" / "1-not-json.json").read_text())
    assert error["message_id"] is None and error["error_kind"] == "bad_message"
    assert error["attempts"] == 0 and error["dead_at"]
    return error


def _deliver_by_hand(project: Path, agent: str, message: dict) -> None:
    """Deliver as docs/PROTOCOL.md says: write in tmp/, link into new/."""
    name = f"1-{message['id']}.json"
    tmp = _inbox(project, agent, "tmp") / f"{name}.test.tmp"
    tmp.write_text(json.dumps(message))
    os.link(tmp, _inbox(project, agent, "new") / name)
    tmp.unlink()


def _simulate_crash_after_reply(project: Path, agent: str) -> tuple[str, Path]:
    """Before the agent starts, leave a request in its processing/ whose reply was already
    delivered and consumed, as if the agent had died between replying and acking. The files
    are written by hand, following docs/PROTOCOL.md. Returns the request id and the reply."""
    workspace = project / "workspace"
    for name in (agent, "user"):
        for sub in ("inbox/tmp", "inbox/new", "inbox/processing", "inbox/done", "inbox/dead",
                    "outbox"):
            (workspace / name / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    request_id = "01CRASHED0REQUEST000000000"
    request = {
        "id": request_id, "thread_id": request_id, "in_reply_to": None, "kind": "task",
        "from_agent": "user", "to_agent": agent, "priority": "normal",
        "timestamp": "2026-01-02T03:04:05.000000Z", "attempt": 0, "keywords": [], "headers": {},
        "content": "before the crash",
    }
    (_inbox(project, agent, "processing") / f"1-{request_id}.json").write_text(json.dumps(request))
    earlier = workspace / "user" / "inbox" / "done" / f"1-{request_id}-reply.json"
    earlier.write_text(json.dumps({
        "id": f"{request_id}-reply", "thread_id": request_id, "in_reply_to": request_id,
        "kind": "result", "from_agent": agent, "to_agent": "user", "content": "the earlier reply",
    }))
    return request_id, earlier


def _check_no_second_reply(project: Path, agent: str, request_id: str, earlier: Path) -> dict:
    name = f"1-{request_id}.json"
    done = _inbox(project, agent, "done") / name
    wait_until(lambda: _moved(_inbox(project, agent, "processing") / name, done))
    for sub in ("new", "processing", "dead"):
        assert _files(_inbox(project, agent, sub)) == [], sub
    assert _user_files(project, request_id) == [Path("done") / earlier.name]
    assert json.loads(earlier.read_text())["content"] == "the earlier reply"
    return json.loads(done.read_text())


# -- the shell agent -------------------------------------------------------------------------


@needs_jq
def test_shell_agent(tmp_path: Path, supervised) -> None:
    project = _project(tmp_path)
    crashed_id, earlier = _simulate_crash_after_reply(project, "listener")
    sup = _start(supervised, project, "listener")

    # Recovery: processing/ goes back to new/, is handled again, and is not answered twice.
    request = _check_no_second_reply(project, "listener", crashed_id, earlier)
    assert request["content"] == "before the crash"

    error = _bad_file_goes_to_dead(project, "listener")
    assert error["error"].startswith("1-not-json.json: ")

    result = _send(project, "listener", '{"question": [42, "x"]}')  # the agent went on
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["content"] == {"agent": "listener", "echo": {"question": [42, "x"]}}
    _check_handled(project, "listener", reply)

    # A task brought back from dead/ twice answers under its own reply id.
    _deliver_by_hand(project, "listener", {
        "id": "01REQUEUED0TWICE0000000000", "from_agent": "user", "to_agent": "listener",
        "headers": {"requeued": "2"}, "content": "again",
    })
    again = project / "workspace" / "user" / "inbox" / "new" / (
        "1-01REQUEUED0TWICE0000000000-reply.r2.json")
    wait_until(again.exists)
    assert json.loads(again.read_text())["id"] == "01REQUEUED0TWICE0000000000-reply.r2"

    high = _send(project, "listener", "urgent", "--priority", "high")
    assert high.returncode == 0, high.stderr
    reply = json.loads(high.stdout)
    assert reply["priority"] == "high" and reply["content"]["echo"] == "urgent"
    _check_handled(project, "listener", reply, rank=0)

    status = _status(project, "listener")
    assert status["alive"] is True and status["state"] == "running"
    assert status["inbox"] == {"new": 0, "processing": 0, "dead": 1}
    _check_clean_stop(sup, project, "listener")


def test_the_sh_agents_in_protocol_md_are_the_example_files() -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```$", PROTOCOL.read_text(), re.MULTILINE | re.DOTALL)
    agents = [b for b in blocks if b.startswith("#!/bin/sh\n")]
    scripts = [(EXAMPLES / name).read_text() for name in ("mini_agent.sh", "shell_agent.sh")]
    assert agents == scripts, "docs/PROTOCOL.md and examples/*_agent.sh have drifted"


@needs_jq
def test_the_smallest_agent(tmp_path: Path, supervised) -> None:
    project = _project(tmp_path)
    sup = _start(supervised, project, "shouter")

    result = _send(project, "shouter", "make it loud")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["content"] == "MAKE IT LOUD"
    _check_handled(project, "shouter", reply)

    result = _send(project, "shouter", '{"not": "text"}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["content"] == {"not": "text"}

    error = _bad_file_goes_to_dead(project, "shouter")
    assert error["error_kind"] == "bad_message"
    # An event is acked without a reply.
    _deliver_by_hand(project, "shouter", {
        "id": "01EVENT0000000000000000000", "kind": "event", "from_agent": "user",
        "to_agent": "shouter", "content": "fyi",
    })
    done = _inbox(project, "shouter", "done") / "1-01EVENT0000000000000000000.json"
    wait_until(done.exists)
    assert not list((project / "workspace" / "user" / "inbox").glob("*/*01EVENT*"))
    assert sup.stop() == 0, sup.log.read_text()


# -- the jq exec agent -----------------------------------------------------------------------


@needs_jq
def test_jq_exec_agent_answers_text_and_escalates_the_rest(tmp_path: Path, supervised) -> None:
    project = _project(tmp_path)
    _start(supervised, project, "words")

    result = _send(project, "words", "hello big  world")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["content"] == {
        "agent": "words", "message_id": reply["in_reply_to"], "attempt": 1,
        "words": 3, "upper": "HELLO BIG  WORLD",
    }
    _check_handled(project, "words", reply)

    failed = _send(project, "words", '{"not": "text"}')
    error = _check_escalated(project, "words", failed, attempts=2)
    assert "exited with status 5" in error["error"]
    assert "expected text, got object" in error["error"]

    status_file = project / "workspace" / "words" / "status.json"
    wait_until(lambda: json.loads(status_file.read_text())["failed"] == 2)
    status = _status(project, "words")
    assert status["alive"] is True and status["handled"] == 1 and status["failed"] == 2
    assert status["inbox"] == {"new": 0, "processing": 0, "dead": 1}


# -- the Node.js agent -----------------------------------------------------------------------


@needs_node
def test_node_agent(tmp_path: Path, supervised) -> None:
    project = _project(tmp_path)
    crashed_id, earlier = _simulate_crash_after_reply(project, "reverser")
    sup = _start(supervised, project, "reverser")

    # Recovery counts the interrupted attempt, handles it again, and does not answer twice.
    request = _check_no_second_reply(project, "reverser", crashed_id, earlier)
    assert request["attempt"] == 1

    result = _send(project, "reverser", "héllo, wörld", "--keywords", "a,b")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["content"] == {"agent": "reverser", "reversed": "dlröw ,olléh", "attempt": 1}
    request = _check_handled(project, "reverser", reply)
    assert request["keywords"] == ["a", "b"]

    failed = _send(project, "reverser", '{"fail": true}')
    error = _check_escalated(project, "reverser", failed, attempts=2)
    assert error["error"] == "Error: asked to fail (attempt 2)"

    # `agentctl dead requeue` brings it back; it fails twice more and answers as its 2nd life.
    request_id = json.loads(failed.stdout)["in_reply_to"]
    requeued = run_cli("dead", "requeue", request_id, cwd=project)
    assert requeued.returncode == 0, requeued.stderr
    second = project / "workspace" / "user" / "inbox" / "new" / f"1-{request_id}-reply.r1.json"
    # Two more attempts, each a Node start-up, with a retry delay between: 15 s was seen
    # to run out on a loaded machine.
    wait_until(second.exists, timeout_s=45)
    assert json.loads(second.read_text())["content"]["verdict"] == "escalate"
    dead = _inbox(project, "reverser", "dead") / f"1-{request_id}.json"
    wait_until(lambda: _moved(_inbox(project, "reverser", "processing") / dead.name, dead)
               and json.loads(dead.read_text())["headers"].get("requeued") == "1", timeout_s=45)
    # A requeued message keeps its trace context (docs/TRACING.md).
    assert set(json.loads(dead.read_text())["headers"]) == {"requeued", "traceparent"}

    _bad_file_goes_to_dead(project, "reverser")

    # The agent writes its own status.json: counters and a heartbeat.
    status_file = project / "workspace" / "reverser" / "status.json"
    failed = 1 + 2 + 2 + 1  # the crash, two attempts, two after the requeue, the bad file
    wait_until(lambda: json.loads(status_file.read_text())["failed"] == failed, timeout_s=45)
    status = _status(project, "reverser")
    assert status["alive"] is True and status["state"] == "idle"
    assert status["handled"] == 2 and status["heartbeat_age_s"] is not None
    assert status["inbox"] == {"new": 0, "processing": 0, "dead": 2}
    assert json.loads(status_file.read_text())["dead"] == 3  # one of them twice
    _check_clean_stop(sup, project, "reverser")


# -- the roster ------------------------------------------------------------------------------


@needs_node
def test_examples_roster_validates(tmp_path: Path) -> None:
    result = run_cli("validate", "--json", "--config", str(EXAMPLES / "agents.yaml"),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    roster = json.loads(result.stdout)
    kinds = {a["name"]: [k for k in ("python", "exec", "command") if a[k]][0]
             for a in roster["agents"]}
    assert kinds == {"listener": "command", "shouter": "command", "words": "exec",
                     "reverser": "command"}
    assert roster["workspace_path"] == str(EXAMPLES / "workspace")


# -- a protocol rule the examples rely on ----------------------------------------------------


def test_every_valid_request_id_has_a_valid_reply_id() -> None:
    from pydantic import ValidationError

    from agentctl.model.message import AgentMessage

    try:
        request = AgentMessage(id="A" * 128, from_agent="user", to_agent="echo")
    except ValidationError:
        return  # fixed by refusing ids that leave no room for "-reply"
    assert request.reply("ok").id == "A" * 128 + "-reply"


def test_a_requeued_header_never_breaks_the_reply() -> None:
    from agentctl.model.message import AgentMessage

    request = AgentMessage(from_agent="user", to_agent="echo", headers={"requeued": "²"})
    assert request.reply("ok").id.startswith(request.id + "-reply")

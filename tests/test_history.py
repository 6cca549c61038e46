"""Replay's reconstruction of a thread: states come from the files where the journal is silent,
and a filter hides events without changing what happened."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from agentctl.audit.history import MessageTrace
from agentctl.backends.file.history import FileHistory
from agentctl.backends.file.workspace import Workspace
from agentctl.model.message import AgentMessage
from agentctl.model.priority import Priority
from tests.conftest import run_cli, write_roster

# Folders listed by this process while `_LISTING` holds a list (an audit hook cannot be removed).
_LISTING: list[list[str]] = []


def _note_listing(event: str, args: tuple[Any, ...]) -> None:
    if _LISTING and event in ("os.listdir", "os.scandir"):
        _LISTING[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_note_listing)


def _replay(project: Path, ident: str, *extra: str) -> dict:
    result = run_cli("replay", ident, "--format", "json", *extra, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _by_id(thread: dict) -> dict[str, dict]:
    return {m["id"]: m for m in thread["messages"]}


def test_replay_takes_states_from_the_files_for_a_foreign_agents_work(tmp_path: Path) -> None:
    # Given a foreign (command:) agent, which follows the file protocol but writes no journal
    write_roster(tmp_path, """\
        - name: perl
          command: [perl, agent.pl]
    """)
    sent = run_cli("send", "perl", "hello", "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    task_id = json.loads(sent.stdout)["id"]
    ws = tmp_path / "workspace"
    inbox = ws / "perl" / "inbox"
    (name,) = os.listdir(inbox / "new")
    # When it claims the task, delivers a reply to the user and acks, as PROTOCOL.md says
    os.link(inbox / "new" / name, inbox / "processing" / name)
    os.unlink(inbox / "new" / name)
    task = json.loads((inbox / "processing" / name).read_text())
    reply = {**task, "id": f"{task_id}-reply", "from_agent": "perl", "to_agent": "user",
             "kind": "result", "in_reply_to": task_id, "content": "HELLO"}
    user_new = ws / "user" / "inbox" / "new"
    user_new.mkdir(parents=True, exist_ok=True)
    tmp = ws / "user" / "inbox" / "tmp" / "reply.json"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(reply))
    os.link(tmp, user_new / f"1-{task_id}-reply.json")
    os.unlink(tmp)
    os.link(inbox / "processing" / name, inbox / "done" / name)
    os.unlink(inbox / "processing" / name)
    # Then replay shows the task done and the reply nobody has read yet, waiting in new/
    messages = _by_id(_replay(tmp_path, task_id))
    assert messages[task_id]["state"] == "done"
    assert messages[f"{task_id}-reply"]["state"] == "waiting"
    assert messages[f"{task_id}-reply"]["content"] == "HELLO"
    assert messages[f"{task_id}-reply"]["in_reply_to"] == task_id
    for fmt in ("tree", "mermaid"):
        drawn = run_cli("replay", task_id, "--format", fmt, cwd=tmp_path)
        assert drawn.returncode == 0 and "perl" in drawn.stdout, drawn.stderr
    assert "HELLO" in run_cli("replay", task_id, cwd=tmp_path).stdout


def test_a_filter_hides_events_but_never_changes_a_messages_state(
    tmp_path: Path, supervised
) -> None:
    write_roster(tmp_path, """\
        - name: echo
          python: agentctl.agents.echo:EchoAgent
    """)
    supervised(tmp_path).wait_ready(["echo"])
    sent = run_cli("send", "echo", "hi", "--wait", "--json", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    task_id = json.loads(sent.stdout)["in_reply_to"]
    everything = _by_id(_replay(tmp_path, task_id))
    only_echo = _replay(tmp_path, task_id, "--agent", "echo")
    # The reply was received by the user: done, with or without the filter
    assert everything[f"{task_id}-reply"]["state"] == "done"
    assert _by_id(only_echo)[f"{task_id}-reply"]["state"] == "done"
    assert all(e["agent"] == "echo" or e.get("to") == "echo" for e in only_echo["events"])
    received = [e for m in only_echo["messages"] for e in m["events"] if e["event"] == "received"]
    assert received == []  # the user's event is hidden, not forgotten


def test_tail_refuses_an_unknown_event_kind_or_agent_and_names_the_valid_ones(
    tmp_path: Path,
) -> None:
    # Given a roster of one agent and a workspace with one event in its journal
    write_roster(tmp_path, """\
        - name: echo
          python: agentctl.agents.echo:EchoAgent
    """)
    assert run_cli("send", "echo", "hi", cwd=tmp_path).returncode == 0
    # When `tail` is asked for an event no one writes, or an agent not on the roster
    bogus = run_cli("tail", "--kind", "sent,bogus", cwd=tmp_path)
    nosuch = run_cli("tail", "--agent", "nosuch", cwd=tmp_path)
    # Then each is one `error:` line naming what is valid, exit 1, and no traceback
    for result in (bogus, nosuch):
        assert result.returncode == 1, result
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert bogus.stderr.startswith("error: unknown event kind 'bogus'; the events: ")
    assert "sent, discarded, claimed, handled" in bogus.stderr and "run_ended" in bogus.stderr
    assert nosuch.stderr.startswith("error: unknown agent 'nosuch'; the agents: ")
    assert "echo" in nosuch.stderr and "user" in nosuch.stderr
    # And the names that are valid still filter as before
    sent = run_cli("tail", "--json", "--kind", "sent", "--agent", "user", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert [json.loads(line)["event"] for line in sent.stdout.splitlines()] == ["sent"]


def test_replies_the_journal_lacks_are_found_by_name_without_listing_the_senders_folders(
    tmp_path: Path,
) -> None:
    # Given a high-priority task brought back twice from dead/, answered in its first and its
    # third life, both replies already read by the user (the journal knows neither)
    ws = Workspace(tmp_path / "ws", fsync=False)
    task = AgentMessage(from_agent="user", to_agent="perl", content="hi", priority=Priority.HIGH,
                        headers={"requeued": "2"})  # fmt: skip
    ws.deliver(task)
    done = ws.agent_dir("user") / "inbox" / "done"
    done.mkdir(parents=True, exist_ok=True)
    replies = [task.model_copy(update={"headers": {}}).reply("first"), task.reply("third")]
    for reply in replies:
        (done / reply.file_name).write_bytes(reply.to_json_bytes())
    trace = MessageTrace(id=task.id, from_agent="user", to_agent="perl", kind="task",
                         file=task.file_name)  # fmt: skip

    _LISTING.append([])
    try:
        found = FileHistory(ws).unjournaled_replies(trace)
    finally:
        listed = _LISTING.pop()

    # Then both are found, by the names the protocol gives them, and no folder was listed
    assert [(r["id"], r["_file"]) for r in found] == [
        (f"{task.id}-reply", f"0-{task.id}-reply.json"),
        (f"{task.id}-reply.r2", f"0-{task.id}-reply.r2.json"),
    ]
    assert listed == []

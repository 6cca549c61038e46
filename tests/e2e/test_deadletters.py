"""Dead letters whose ids end in `.error` (issue 13, item 1): each keeps its own bytes and its
own reason, and `dead list`, `status`, `dead requeue` and `verify` all see it. Real `agentctl
run`, real exec agents, real files; and a workspace laid out as agentctl wrote it before."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from agentctl.backends.file.workspace import Workspace
from agentctl.model.message import AgentMessage, parse_message
from agentctl.protocol.journalreader import read_all
from tests.conftest import run_cli, wait_until, write_roster

# Fails (exit 3) until a file named `fixed` exists beside the roster; one attempt only.
FAILING = """\
- name: {name}
  exec: [sh, -c, "test -f fixed && echo '\\"fixed\\"' && exit 0; exit 3"]
  max_attempts: 1
"""


def _ok(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def _events(project: Path, event: str, **match: object) -> list[dict]:
    entries = read_all(project / "workspace" / ".agentctl" / "journal")
    records = [e.record for e in entries if e.record is not None and e.record["event"] == event]
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _dead_ids(project: Path) -> list[str]:
    return [r["message_id"] for r in _events(project, "dead")]


def _send(project: Path, message_id: str, to: str = "failing") -> AgentMessage:
    message = AgentMessage(id=message_id, from_agent="user", to_agent=to, content=message_id)
    Workspace(project / "workspace", fsync=False).deliver(message)
    return message


def _letters(project: Path) -> dict[str, dict]:
    letters = json.loads(_ok("dead", "list", "--json", cwd=project).stdout)
    return {letter["message_id"]: letter for letter in letters}


def _dead_count(project: Path, agent: str) -> int:
    overview = json.loads(_ok("status", "--json", cwd=project).stdout)
    (row,) = [a for a in overview["agents"] if a["name"] == agent]
    return int(row["inbox"]["dead"])


def _requeue_and_see_done(project: Path, agent: str, letters: dict[str, dict]) -> None:
    """Fix the agent, requeue every letter, and wait for each to be handled."""
    (project / "fixed").touch()
    done = project / "workspace" / agent / "inbox" / "done"
    for message_id, letter in letters.items():
        assert _ok("dead", "requeue", message_id, cwd=project).stdout.strip() == message_id
        wait_until(lambda name=letter["file"]: (done / name).exists(), timeout_s=30)
    assert _letters(project) == {}
    assert _dead_count(project, agent) == 0
    wait_until(lambda: len(_events(project, "handled", agent=agent)) == len(letters), timeout_s=30)
    assert _ok("verify", cwd=project).stdout.startswith("ok:")


def test_an_id_ending_in_error_does_not_overwrite_another_dead_letter(
    tmp_path: Path, supervised
) -> None:
    # Given an agent that always fails, with one attempt
    write_roster(tmp_path, FAILING.format(name="failing"))
    supervised(tmp_path).wait_ready(["failing"])
    dead = tmp_path / "workspace" / "failing" / "inbox" / "dead"

    # When `T1.error` dies, then `T1` (whose reason was once named like T1.error's file)
    first = _send(tmp_path, "T1.error")
    wait_until(lambda: _dead_ids(tmp_path) == ["T1.error"], timeout_s=30)
    second = _send(tmp_path, "T1")
    wait_until(lambda: _dead_ids(tmp_path) == ["T1.error", "T1"], timeout_s=30)

    # Then both messages are intact in dead/, each with its own reason
    for message in (first, second):
        kept = parse_message((dead / message.file_name).read_bytes())
        assert (kept.id, kept.content, kept.attempt) == (message.id, message.content, 1)
    letters = _letters(tmp_path)
    assert sorted(letters) == ["T1", "T1.error"]
    for message in (first, second):
        letter = letters[message.id]
        assert letter["file"] == message.file_name
        assert (letter["attempts"], letter["error_kind"]) == (1, "error")
        assert "status 3" in letter["error"]
    assert _dead_count(tmp_path, "failing") == 2
    assert _ok("verify", cwd=tmp_path).stdout.startswith("ok:")
    _requeue_and_see_done(tmp_path, "failing", letters)


def test_the_dead_letters_of_an_agent_named_error_in_a_pipeline_are_seen(
    tmp_path: Path, supervised
) -> None:
    # Given a pipeline whose one stage is an agent named `error`: its tasks are `<run>.s1.error`
    roster = write_roster(tmp_path, FAILING.format(name="error"))
    roster.write_text(roster.read_text() + "pipelines:\n  check: [error]\n")
    supervised(tmp_path).wait_ready(["error", "pipeline"])

    # When the stage fails for good
    _ok("send", "pipeline:check", "hello", cwd=tmp_path)
    wait_until(lambda: _dead_ids(tmp_path), timeout_s=30)

    # Then its dead letter is listed, counted, requeued and verified like any other
    (task_id,) = _dead_ids(tmp_path)
    assert task_id.endswith(".error")
    letters = _letters(tmp_path)
    assert list(letters) == [task_id]
    assert letters[task_id]["file"] == f"1-{task_id}.json"
    assert "status 3" in letters[task_id]["error"]
    assert _dead_count(tmp_path, "error") == 1
    assert _ok("verify", cwd=tmp_path).stdout.startswith("ok:")
    _requeue_and_see_done(tmp_path, "error", letters)


def test_a_workspace_with_the_old_error_file_names_keeps_working(
    tmp_path: Path, supervised
) -> None:
    # Given dead letters laid out as agentctl wrote them before: `<stem>.error.json` beside
    # each, one of them the message `T2.error` (a name the old records also had)
    write_roster(tmp_path, FAILING.format(name="failing"))
    sup = supervised(tmp_path)
    sup.wait_ready(["failing"])
    _send(tmp_path, "T2.error")
    _send(tmp_path, "T3")
    wait_until(lambda: sorted(_dead_ids(tmp_path)) == ["T2.error", "T3"], timeout_s=30)
    assert sup.stop() == 0
    dead = tmp_path / "workspace" / "failing" / "inbox" / "dead"
    records = dead / ".errors"
    for name in os.listdir(records):
        os.rename(records / name, dead / name.replace(".json", ".error.json"))
    os.rmdir(records)
    assert sorted(os.listdir(dead)) == [
        "1-T2.error.error.json", "1-T2.error.json", "1-T3.error.json", "1-T3.json",
    ]  # fmt: skip

    # Then each letter is read with its reason, counted once, verified and requeued
    letters = _letters(tmp_path)
    assert sorted(letters) == ["T2.error", "T3"]
    for letter in letters.values():
        assert (letter["attempts"], letter["error_kind"]) == (1, "error")
    assert _dead_count(tmp_path, "failing") == 2
    assert _ok("verify", cwd=tmp_path).stdout.startswith("ok:")
    supervised(tmp_path).wait_ready(["failing"])
    _requeue_and_see_done(tmp_path, "failing", letters)
    assert [n for n in os.listdir(dead) if not n.startswith(".")] == []  # records went too

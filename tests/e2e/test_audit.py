"""The audit trail from the command line: `tail`, `replay`, `verify` and `dead`, as a user runs
them against a workspace that real agents (started by `agentctl run`) have worked in."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentctl.backends.file.workspace import Workspace
from agentctl.protocol.journalreader import read_all
from tests.conftest import AGENTCTL, Supervised, run_cli, wait_until, write_roster

# `failing` fails (exit 3, "boom" on stderr) until a file named `fixed` exists beside the roster.
ROSTER = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: mirror
  python: agentctl.agents.echo:EchoAgent
- name: failing
  exec: [sh, -c, "test -f fixed && echo '\\"fixed\\"' && exit 0; echo boom >&2; exit 3"]
  max_attempts: 2
"""
BOOM = "sh exited with status 3: boom"


def _records(project: Path) -> list[dict]:
    entries = list(read_all(project / "workspace" / ".agentctl" / "journal"))
    assert all(e.record is not None for e in entries)
    return [e.record for e in entries if e.record is not None]


def _events(project: Path, **match: object) -> list[dict]:
    return [r for r in _records(project) if all(r.get(k) == v for k, v in match.items())]


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _ok(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def _one_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]


def _sent_by_user(project: Path, to: str) -> str:
    """The id of the last message the user sent to `to`."""
    return _events(project, event="sent", agent="user", to=to)[-1]["message_id"]


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- a finished workspace, read back ----------------------------------------------------------


@dataclass(frozen=True)
class History:
    project: Path
    echo_id: str  # a task echoed on the first attempt
    fail_id: str  # a task that failed, was retried, failed again and was dead-lettered


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    project = tmp_path_factory.mktemp("history")
    write_roster(project, ROSTER)
    sup = Supervised(project, "--agent", "echo", "--agent", "failing")
    try:
        sup.wait_ready(["echo", "failing"])
        _ok("send", "echo", "hello", "--wait", cwd=project)
        failed = run_cli("send", "failing", "x", "--wait", "--timeout-s", "30", cwd=project)
        assert failed.returncode == 1 and json.loads(failed.stdout)["verdict"] == "escalate"
        # The escalation reply is published before the dead letter is buried and journaled.
        wait_until(lambda: _events(project, event="dead"), timeout_s=30)
    finally:
        assert sup.stop() == 0
    return History(project, _sent_by_user(project, "echo"), _sent_by_user(project, "failing"))


def test_tail_shows_the_last_events_and_filters_them(history: History) -> None:
    project, records = history.project, _records(history.project)

    last = _json_lines(_ok("tail", "-n", "4", "--json", cwd=project).stdout)
    assert [r["seq"] for r in last] == [r["seq"] for r in records[-4:]]
    assert _ok("tail", "-n", "0", "--json", cwd=project).stdout == ""

    by_agent = _json_lines(_ok("tail", "-n", "1000", "--json", "--agent", "failing",
                               cwd=project).stdout)
    assert by_agent == [r for r in records if "failing" in (r["agent"], r.get("to"))]
    assert {"started", "claimed", "failed", "dead"} <= {r["event"] for r in by_agent}
    assert any(r["agent"] == "user" for r in by_agent)  # what was sent to it counts

    kinds = _ok("tail", "-n", "1000", "--json", "--kind", "failed", "--kind", "dead", cwd=project)
    comma = _ok("tail", "-n", "1000", "--json", "--kind", "failed,dead", cwd=project)
    assert kinds.stdout == comma.stdout
    assert [r["event"] for r in _json_lines(kinds.stdout)] == ["failed", "failed", "dead"]

    thread = _json_lines(_ok("tail", "-n", "1000", "--json", "--thread", history.fail_id,
                             cwd=project).stdout)
    assert thread == [r for r in records if r["thread_id"] == history.fail_id]
    assert [r["event"] for r in thread if r["message_id"] == history.fail_id] == [
        "sent", "claimed", "failed", "retried", "claimed", "failed", "dead"]

    both = _json_lines(_ok("tail", "-n", "1000", "--json", "--thread", history.echo_id,
                           "--kind", "handled", cwd=project).stdout)
    assert [(r["event"], r["message_id"]) for r in both] == [("handled", history.echo_id)]
    assert _json_lines(_ok("tail", "-n", "2", "--json", "--thread", history.fail_id,
                           cwd=project).stdout) == thread[-2:]

    text = _ok("tail", "-n", "1000", "--thread", history.fail_id, cwd=project).stdout
    assert len(text.splitlines()) == len(thread)
    assert "retried" in text and "attempt 2/2" in text and BOOM in text


def test_replay_tree_shows_the_failures_the_retry_and_the_dead_letter(history: History) -> None:
    tree = _ok("replay", history.fail_id, cwd=history.project).stdout
    assert tree.startswith(f"thread {history.fail_id}  2 message(s), 1 dead")
    for expected in (f"user -> failing task {history.fail_id} dead",
                     f"failing -> user result {history.fail_id}-reply done",
                     "claimed by failing: attempt 1", "failed by failing: attempt 1/2",
                     "retried by failing", "failed by failing: attempt 2/2",
                     f"dead by failing: error: {BOOM}", "content: x", "escalate"):
        assert expected in tree, (expected, tree)
    assert tree.index("failed by failing: attempt 1/2") < tree.index("retried") < tree.index(
        "failed by failing: attempt 2/2")


def test_replay_json_has_each_message_with_state_attempts_and_error(history: History) -> None:
    as_json = _ok("replay", history.fail_id, "--json", cwd=history.project).stdout
    assert _ok("replay", history.fail_id, "--format", "json", cwd=history.project).stdout == (
        as_json)
    thread = json.loads(as_json)
    assert thread["thread_id"] == history.fail_id
    messages = {m["id"]: m for m in thread["messages"]}
    assert list(messages) == [history.fail_id, f"{history.fail_id}-reply"]
    task, reply = messages[history.fail_id], messages[f"{history.fail_id}-reply"]
    assert (task["from"], task["to"], task["kind"], task["content"]) == (
        "user", "failing", "task", "x")
    assert (task["state"], task["attempts"], task["error"]) == ("dead", 2, BOOM)
    assert [e["event"] for e in task["events"]] == [
        "sent", "claimed", "failed", "retried", "claimed", "failed", "dead"]
    assert (reply["in_reply_to"], reply["state"], reply["from"], reply["to"]) == (
        history.fail_id, "done", "failing", "user")
    assert reply["content"] == {"agent": "failing", "verdict": "escalate", "error": BOOM,
                                "attempts": 2}
    assert thread["events"] == [r for r in _records(history.project)
                                if r["thread_id"] == history.fail_id]
    assert thread["started"] == thread["events"][0]["ts"]

    echoed = json.loads(_ok("replay", history.echo_id, "--json", cwd=history.project).stdout)
    (task,) = [m for m in echoed["messages"] if m["id"] == history.echo_id]
    assert (task["state"], task["attempts"], task["error"]) == ("done", 1, None)
    assert task["result_id"] == f"{history.echo_id}-reply"


def test_replay_mermaid_is_a_sequence_diagram(history: History) -> None:
    diagram = _ok("replay", history.fail_id, "--format", "mermaid", cwd=history.project).stdout
    lines = diagram.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert lines[1:3] == ["    participant user", "    participant failing"]
    assert f"    user->>failing: task {history.fail_id}: x" in lines
    assert any(line.startswith(f"    failing-->>user: result {history.fail_id}-reply: ")
               for line in lines)
    notes = [line for line in lines if line.startswith("    Note over failing: ")]
    assert [n.split(": ")[1] for n in notes] == ["failed", "failed", "dead"]


def test_replay_by_a_message_id_finds_its_thread(history: History) -> None:
    project = history.project
    by_thread = _ok("replay", history.fail_id, "--json", cwd=project).stdout
    by_reply = _ok("replay", f"{history.fail_id}-reply", "--json", cwd=project).stdout
    assert by_reply == by_thread
    echo_tree = _ok("replay", f"{history.echo_id}-reply", cwd=project).stdout
    assert echo_tree.startswith(f"thread {history.echo_id}  2 message(s)")


def test_replay_of_an_unknown_id_is_one_error_line(history: History) -> None:
    unknown = run_cli("replay", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", cwd=history.project)
    _one_error_line(unknown, "01ZZZZZZZZZZZZZZZZZZZZZZZZ: no thread or message with this id")
    assert unknown.stdout == ""
    _one_error_line(run_cli("replay", "../etc", cwd=history.project), "invalid message id")


def test_replay_since_and_until_keep_the_events_in_the_window(history: History) -> None:
    project = history.project
    events = json.loads(_ok("replay", history.fail_id, "--json", cwd=project).stdout)["events"]
    dead_ts = next(e["ts"] for e in events if e["event"] == "dead")
    first_failed_ts = next(e["ts"] for e in events if e["event"] == "failed")

    def window(*args: str) -> dict:
        return json.loads(_ok("replay", history.fail_id, "--json", *args, cwd=project).stdout)

    since = window("--since", dead_ts)
    assert since["events"] == [e for e in events if e["ts"] >= dead_ts]
    assert "dead" in [e["event"] for e in since["events"]] and since["started"] == dead_ts
    until = window("--until", first_failed_ts)
    assert until["events"] == [e for e in events if e["ts"] <= first_failed_ts]
    assert [e["event"] for e in until["events"]][-1] == "failed"
    (task,) = until["messages"]
    assert (task["state"], task["attempts"], task["error"]) == ("in hand", 1, BOOM)
    between = window("--since", first_failed_ts, "--until", dead_ts)
    assert between["events"] == [e for e in events if first_failed_ts <= e["ts"] <= dead_ts]
    assert window("--since", "1d")["events"] == events  # durations count back from now
    long_ago = window("--until", "1d")
    assert long_ago["events"] == [] and long_ago["messages"] == []
    assert window("--since", "2099-01-01T00:00:00Z")["events"] == []

    bad = run_cli("replay", history.fail_id, "--since", "yesterday", cwd=project)
    _one_error_line(bad, "--since: 'yesterday' is neither an ISO time")


def test_verify_passes_on_a_workspace_real_agents_worked_in(history: History) -> None:
    result = _ok("verify", "--json", cwd=history.project)
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["events"] == len(_records(history.project)) == report["head"]["seq"]


# -- live ------------------------------------------------------------------------------------


class _Tail:
    """`agentctl tail -f` in the background, its stdout collected line by line."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*AGENTCTL, "tail", "-f", *args], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # As from a shell: Ctrl-C must reach it even if our own SIGINT is ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines)]

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_tail_follow_sees_what_other_processes_write_and_stops_on_ctrl_c(
    tmp_path: Path, supervised
) -> None:
    write_roster(tmp_path, ROSTER)
    supervised(tmp_path, "--agent", "echo").wait_ready(["echo"])
    ws = Workspace(tmp_path / "workspace")
    tail = _Tail(tmp_path, "--json", "-n", "0")
    try:
        # Following has begun once a line written after the start shows up.
        wait_until(lambda: tail.lines or ws.record("probe", None, "user"),
                   timeout_s=30, interval_s=0.2)
        _ok("send", "echo", "followed", "--wait", cwd=tmp_path)
        sent = _sent_by_user(tmp_path, "echo")
        wait_until(lambda: [r["event"] for r in tail.records() if r["thread_id"] == sent] == [
            "sent", "claimed", "sent", "handled", "received"], timeout_s=30)
    finally:
        code, stderr = tail.interrupt()
    assert code == 0 and "Traceback" not in stderr, stderr
    # The lines are the journal's own, byte for byte, in order, each once.
    journal = {e.record["seq"]: e.raw.decode() for e in read_all(ws.journal_dir) if e.record}
    seqs = [r["seq"] for r in tail.records()]
    assert seqs == sorted(set(seqs))
    assert tail.lines == [journal[seq] for seq in seqs]
    assert _ok("verify", cwd=tmp_path).stdout.startswith("ok:")


# -- doing it again --------------------------------------------------------------------------


def test_replay_resend_delivers_a_new_message_and_compares_results(
    tmp_path: Path, supervised
) -> None:
    write_roster(tmp_path, ROSTER)
    supervised(tmp_path, "--agent", "echo", "--agent", "mirror").wait_ready(["echo", "mirror"])
    _ok("send", "echo", '{"q": 1}', "--wait", cwd=tmp_path)
    original = _sent_by_user(tmp_path, "echo")
    recorded = {"agent": "echo", "echo": {"q": 1, "keywords": []}, "attempt": 1}

    again = json.loads(_ok("replay", original, "--resend", "--wait", "--json",
                           cwd=tmp_path).stdout)

    assert (again["original"], again["to"]) == (original, "echo") and again["id"] != original
    assert again["recorded"] == again["result"] == recorded
    done = tmp_path / "workspace" / "echo" / "inbox" / "done" / f"1-{again['id']}.json"
    wait_until(done.exists)
    message = json.loads(done.read_text())
    assert message["headers"]["resent_from"] == original and message["content"] == {"q": 1}
    (sent,) = _events(tmp_path, event="sent", message_id=again["id"])
    assert sent["resent_from"] == original and sent["to"] == "echo"

    other = json.loads(_ok("replay", original, "--resend", "--wait", "--to", "mirror", "--json",
                           cwd=tmp_path).stdout)
    assert other["to"] == "mirror" and other["recorded"] == recorded
    assert other["result"] == {**recorded, "agent": "mirror"}
    (sent,) = _events(tmp_path, event="sent", message_id=other["id"])
    assert (sent["to"], sent["resent_from"]) == ("mirror", original)

    table = _ok("replay", original, "--resend", "--wait", cwd=tmp_path).stdout
    assert f"recorded ({original})" in table and "now (" in table and '"q": 1' in table

    plain = _ok("replay", original, "--resend", cwd=tmp_path).stdout.strip()
    assert plain != original and _events(tmp_path, event="sent", message_id=plain)

    nobody = run_cli("replay", original, "--resend", "--to", "nobody", cwd=tmp_path)
    _one_error_line(nobody, "nobody")


def test_dead_letters_are_listed_and_requeued_until_handled(
    tmp_path: Path, supervised
) -> None:
    write_roster(tmp_path, ROSTER)
    supervised(tmp_path, "--agent", "failing").wait_ready(["failing"])
    first = _ok("send", "failing", "a", cwd=tmp_path).stdout.strip()
    second = _ok("send", "failing", "b", cwd=tmp_path).stdout.strip()
    wait_until(lambda: len(_events(tmp_path, event="dead")) == 2, timeout_s=30)

    letters = json.loads(_ok("dead", "list", "--json", cwd=tmp_path).stdout)
    assert sorted(letter["message_id"] for letter in letters) == sorted([first, second])
    for letter in letters:
        assert letter["agent"] == "failing" and letter["file"] == f"1-{letter['message_id']}.json"
        assert (letter["attempts"], letter["error_kind"], letter["error"]) == (2, "error", BOOM)
        assert letter["dead_at"]
    table = _ok("dead", "list", cwd=tmp_path).stdout
    assert "2 dead letter(s)" in table and first in table and second in table
    assert json.loads(_ok("dead", "list", "--agent", "failing", "--json",
                          cwd=tmp_path).stdout) == letters

    _one_error_line(run_cli("dead", "requeue", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", cwd=tmp_path),
                    "no dead letter with this id")
    _one_error_line(run_cli("dead", "requeue", cwd=tmp_path), "give one dead message ID, or --all")
    assert len(_files(tmp_path / "workspace" / "failing" / "inbox" / "dead" / ".errors")) == 2

    (tmp_path / "fixed").touch()  # the agent is fixed: what comes back now succeeds
    inbox = tmp_path / "workspace" / "failing" / "inbox"
    user_new = tmp_path / "workspace" / "user" / "inbox" / "new"

    assert _ok("dead", "requeue", first, cwd=tmp_path).stdout.strip() == first
    wait_until(lambda: f"1-{first}.json" in _files(inbox / "done"), timeout_s=30)
    reply = user_new / f"1-{first}-reply.r1.json"  # a new reply, beside the escalation
    wait_until(reply.exists)
    assert json.loads(reply.read_text())["content"] == "fixed"
    assert [letter["message_id"] for letter in json.loads(
        _ok("dead", "list", "--json", cwd=tmp_path).stdout)] == [second]

    assert _ok("dead", "requeue", "--all", cwd=tmp_path).stdout.split() == [second]
    wait_until(lambda: f"1-{second}.json" in _files(inbox / "done"), timeout_s=30)
    wait_until((user_new / f"1-{second}-reply.r1.json").exists)
    assert json.loads(_ok("dead", "list", "--json", cwd=tmp_path).stdout) == []
    assert _files(inbox / "dead") == [".errors"] and _files(inbox / "new") == []

    requeued = _events(tmp_path, event="requeued")
    assert [r["message_id"] for r in requeued] == [first, second]
    assert all(r["previous_error"] == BOOM and r["previous_attempts"] == 2 for r in requeued)
    wait_until(lambda: len(_events(tmp_path, event="handled")) == 2, timeout_s=30)
    thread = json.loads(_ok("replay", first, "--json", cwd=tmp_path).stdout)
    task = next(m for m in thread["messages"] if m["id"] == first)
    events = [e["event"] for e in task["events"]]
    assert events.count("dead") == 1 and events.count("handled") == 1
    assert events[events.index("dead") + 1:] == ["requeued", "claimed", "handled"]
    assert task["state"] == "done"
    assert f"{first}-reply.r1" in [m["id"] for m in thread["messages"]]
    assert _ok("verify", cwd=tmp_path).stdout.startswith("ok:")


def _worker(project: Path, agent: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(project / "agents.yaml"),
         "--workspace", str(project / "workspace"), "--agent", agent],
        cwd=project, stdout=open(project / f"{agent}.log", "ab"), stderr=subprocess.STDOUT,
    )


def test_resend_wait_of_a_message_that_was_requeued(tmp_path: Path) -> None:
    write_roster(tmp_path, ROSTER.replace("max_attempts: 2", "max_attempts: 1"))
    worker = _worker(tmp_path, "failing")
    try:
        original = _ok("send", "failing", "again", cwd=tmp_path).stdout.strip()
        wait_until(lambda: _events(tmp_path, event="dead"), timeout_s=30)
        (tmp_path / "fixed").touch()
        _ok("dead", "requeue", original, cwd=tmp_path)
        wait_until(lambda: _events(tmp_path, event="handled"), timeout_s=30)

        resent = run_cli("replay", original, "--resend", "--wait", "--timeout-s", "5",
                         "--json", cwd=tmp_path)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert resent.returncode == 0, resent.stderr
    assert json.loads(resent.stdout)["result"] == "fixed"


def _dead_letter(project: Path, content: str) -> str:
    """A task that died in `failing`'s inbox (one attempt), its worker stopped again."""
    write_roster(project, ROSTER.replace("max_attempts: 2", "max_attempts: 1"))
    worker = _worker(project, "failing")
    try:
        message_id = _ok("send", "failing", content, cwd=project).stdout.strip()
        wait_until(lambda: _events(project, event="dead", message_id=message_id), timeout_s=30)
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    return message_id


def _waiting_for_lock(pid: int) -> bool:
    # A blocked flock() shows in /proc/locks as "N: -> FLOCK ADVISORY WRITE <pid> ...".
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "->" and parts[5] == str(pid):
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_a_requeued_message_is_journaled_before_it_can_be_claimed(tmp_path: Path) -> None:
    message_id = _dead_letter(tmp_path, "late")
    ws = Workspace(tmp_path / "workspace")
    visible = ws.root / "failing" / "inbox" / "new" / f"1-{message_id}.json"
    # Hold the journal's lock, as an appender in the middle of a write does.
    lock = os.open(ws.journal_dir / "journal.lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    requeue = subprocess.Popen([*AGENTCTL, "dead", "requeue", message_id], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: visible.exists() or _waiting_for_lock(requeue.pid), timeout_s=30)
        claimable_before_journaled = visible.exists()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        out, err = requeue.communicate(timeout=30)
    assert requeue.returncode == 0 and out.strip() == message_id, err
    assert _events(tmp_path, event="requeued", message_id=message_id)
    assert not claimable_before_journaled

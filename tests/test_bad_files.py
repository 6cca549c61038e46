"""Bad files dropped into a live agent's inbox: each goes to dead/ with its reason, and the
agent keeps running. Real `agentctl run`, real worker process, real files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from agentctl.model.message import AgentMessage
from tests.conftest import run_cli, wait_until, write_roster

ECHO = "- name: echo\n  python: agentctl.agents.echo:EchoAgent\n"
SECRET = "TOP-SECRET-4f1c"


def ls(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def status(ws: Path) -> dict:
    return json.loads((ws / "echo" / "status.json").read_text())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def drop(staging: Path, new: Path, name: str, data: bytes | None = None) -> None:
    """Put a file into new/ in one step (rename), as a careless writer's finished file."""
    if data is not None:
        (staging / name).write_bytes(data)
    os.rename(staging / name, new / name)


def good(**fields: object) -> bytes:
    return AgentMessage(
        **{"from_agent": "user", "to_agent": "echo", "content": "ok", **fields}  # type: ignore[arg-type]
    ).to_json_bytes()


def edited(**fields: object) -> bytes:
    """A good message's JSON with fields overwritten, bypassing validation."""
    return json.dumps({**json.loads(good()), **fields}).encode()


def start_echo(tmp_path: Path, supervised, **settings: object) -> tuple[Path, int]:
    write_roster(tmp_path, ECHO, **settings)
    sup = supervised(tmp_path)
    sup.wait_ready(["echo"])
    ws = tmp_path / "workspace"
    return ws, status(ws)["pid"]


def test_bad_files_go_to_dead_and_the_agent_keeps_running(tmp_path: Path, supervised) -> None:
    ws, pid = start_echo(tmp_path, supervised, max_message_bytes=2048)
    inbox = ws / "echo" / "inbox"
    staging = tmp_path / "staging"
    staging.mkdir()

    outside = tmp_path / "outside.json"
    outside_bytes = json.dumps(
        {"from_agent": "user", "to_agent": "echo", "content": SECRET}
    ).encode()
    outside.write_bytes(outside_bytes)
    outside_stat = os.stat(outside)

    head = b'{"from_agent": "user", "to_agent": "echo", "content": '
    expected = {
        # stem: (bytes or None for special files, what the error must say)
        "1-bad-utf8": (head + b'"\xff"}', "not UTF-8"),
        "1-bad-json": (b'{"from_agent": "user", "to_agent": ', "invalid JSON"),
        "1-nan": (head + b"NaN}", "NaN"),
        "1-huge-number": (head + b"1e999}", "overflows"),
        "1-schema": (good().replace(b'"normal"', b'"urgent"'), "priority: Input should be"),
        "1-not-object": (b"[1, 2, 3]", "must be a JSON object"),
        "1-empty": (b"", "invalid JSON"),
        "1-oversize": (good(content="x" * 4000), "over the limit of 2048"),
        "1-symlink": (None, "symlink"),
        "1-fifo": (None, "not a regular file"),
        "1-misaddressed": (good(to_agent="other"), "addressed to 'other', not 'echo'"),
        # Valid as an id, but its reply id would not be: refused, not a crash-looping worker.
        "1-long-id": (edited(id="A" * 125), "too long to be answered"),
        # Readers that keep the first value would see another recipient.
        "1-duplicate-key": (head + b'1, "to_agent": "admin"}', "duplicate key 'to_agent'"),
    }  # fmt: skip
    assert len(good(content="x" * 4000)) > 4000
    os.symlink(outside, staging / "1-symlink.json")
    os.mkfifo(staging / "1-fifo.json")
    for stem, (data, _) in expected.items():
        drop(staging, inbox / "new", stem + ".json", data)
    (inbox / "new" / "1-a-directory.json").mkdir()  # not a message: neither claimed nor counted

    reply = run_cli("send", "echo", "hi", "--wait", "--timeout-s", "30", cwd=tmp_path)

    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout) == {
        "agent": "echo", "echo": {"content": "hi", "keywords": []}, "attempt": 1,
    }  # fmt: skip
    # The reply precedes the ack of "hi", and every move links before it unlinks: wait for all.
    wait_until(lambda: len(ls(inbox / "dead" / ".errors")) == len(expected)
               and len(ls(inbox / "dead")) == len(expected) + 1
               and ls(inbox / "new") == ["1-a-directory.json"] and ls(inbox / "processing") == [])
    for stem, (data, reason) in expected.items():
        record = json.loads((inbox / "dead" / ".errors" / f"{stem}.json").read_text())
        assert record["error"].startswith(f"{stem}.json: "), record
        assert reason in record["error"], record
        assert record["error_kind"] == "bad_message"
        assert record["message_id"] is None
        dead = inbox / "dead" / f"{stem}.json"
        if data is not None:
            assert dead.read_bytes() == data  # kept exactly as it came, for inspection
    assert (inbox / "dead" / "1-symlink.json").is_symlink()
    assert stat.S_ISFIFO(os.lstat(inbox / "dead" / "1-fifo.json").st_mode)

    # The symlink's target was neither changed nor read into the workspace.
    assert outside.read_bytes() == outside_bytes
    after = os.stat(outside)
    assert (after.st_mtime_ns, after.st_ino, after.st_nlink) == (
        outside_stat.st_mtime_ns, outside_stat.st_ino, outside_stat.st_nlink,
    )  # fmt: skip
    for dirpath, _, filenames in os.walk(ws):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():  # not the symlink, not the FIFO
                assert SECRET.encode() not in path.read_bytes(), path
    assert not (ws / "other").exists()  # nothing was answered for the misaddressed one

    # The same worker did all of it: the agent never stopped.
    # Status writes are coalesced and the reply is sent before the ack: wait for the counts.
    wait_until(lambda: (status(ws)["dead"], status(ws)["handled"]) == (len(expected), 1))
    now = status(ws)
    overview = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    (row,) = [a for a in overview["agents"] if a["name"] == "echo"]
    assert row["inbox"] == {"new": 0, "processing": 0, "dead": len(expected)}
    assert now["pid"] == pid and pid_alive(pid)
    assert now["state"] in ("idle", "busy")
    assert now["handled"] == 1
    assert now["failed"] == len(expected)


def wait_settled_or_crashed(ws: Path, pid: int, stem: str) -> None:
    """Wait until the bad file is dead-lettered, or the worker that should handle it is gone."""
    dead = ws / "echo" / "inbox" / "dead" / ".errors" / f"{stem}.json"

    def settled() -> bool:
        return dead.exists() or not pid_alive(pid) or status(ws)["pid"] != pid

    wait_until(settled, timeout_s=30)


def test_deeply_nested_json_does_not_kill_the_agent(tmp_path: Path, supervised) -> None:
    ws, pid = start_echo(tmp_path, supervised)
    staging = tmp_path / "staging"
    staging.mkdir()
    nested = b'{"from_agent": "user", "to_agent": "echo", "content": '
    nested += b"[" * 5000 + b"]" * 5000 + b"}"
    drop(staging, ws / "echo" / "inbox" / "new", "1-nested.json", nested)

    wait_settled_or_crashed(ws, pid, "1-nested")

    assert status(ws)["pid"] == pid and pid_alive(pid)
    assert (ws / "echo" / "inbox" / "dead" / ".errors" / "1-nested.json").exists()


def test_lone_surrogate_content_does_not_kill_the_agent(tmp_path: Path, supervised) -> None:
    ws, pid = start_echo(tmp_path, supervised)
    staging = tmp_path / "staging"
    staging.mkdir()
    data = b'{"from_agent": "user", "to_agent": "echo", "content": "a\\ud800b"}'
    drop(staging, ws / "echo" / "inbox" / "new", "1-surrogate.json", data)

    def handled() -> bool:
        inbox = ws / "echo" / "inbox"
        gone = not (inbox / "new" / "1-surrogate.json").exists()
        settled = gone and not (inbox / "processing" / "1-surrogate.json").exists()
        return settled or not pid_alive(pid) or status(ws)["pid"] != pid

    wait_until(handled, timeout_s=30)

    assert status(ws)["pid"] == pid and pid_alive(pid)
    inbox = ws / "echo" / "inbox"
    assert ls(inbox / "new") == [] and ls(inbox / "processing") == []

"""verify: the journal's hash chain and the done/ and dead/ files checked against it.

Tampering with a workspace that saw real traffic is tested in test_journal.py; these build the
journal and the files with the same calls the worker makes, so that each rule of verify has a
test that names it.
"""

from __future__ import annotations

from pathlib import Path

from agentctl.backends.file.verify import verify_workspace
from agentctl.backends.file.workspace import Workspace
from agentctl.model.message import AgentMessage
from agentctl.protocol.journal import ACTIVE_NAME, content_digest


def _workspace(root: Path) -> Workspace:
    return Workspace(root, fsync=False)


def _dead_letter(ws: Workspace, agent: str = "failing", content: str = "doomed") -> Path:
    """A task sent to `agent`, claimed and dead-lettered, journaled as the worker does it."""
    request = AgentMessage(from_agent="user", to_agent=agent, content=content)
    ws.deliver(request)
    mailbox = ws.mailbox(agent)
    assert mailbox.claim(request.file_name) is not None
    spent = request.model_copy(update={"attempt": 1})
    ws.record("claimed", spent, agent, attempt=1, file=request.file_name,
              sha256=content_digest(request.to_json_bytes()))  # fmt: skip
    buried = mailbox.bury(request.file_name, {"error": "boom"}, spent)
    assert buried is not None
    ws.record("dead", spent, agent, attempt=1, file=request.file_name, error="boom",
              sha256=content_digest(buried))  # fmt: skip
    return mailbox.dead / request.file_name


def _journal_lines(ws: Workspace) -> list[bytes]:
    return (ws.journal_dir / ACTIVE_NAME).read_bytes().splitlines(keepends=True)


# -- the files the journal names ---------------------------------------------------------------


def test_a_removed_dead_letter_is_reported(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    assert verify_workspace(ws).ok, verify_workspace(ws).problems

    dead.unlink()

    report = verify_workspace(ws)
    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: removed: the journal (seq 3) says it is dead"
    ]


def test_a_file_longer_than_one_read_is_hashed_whole(tmp_path: Path) -> None:
    # Given a dead letter of ~300 KB (verify reads files 64 KiB at a time)
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws, content="x" * 300_000)
    assert verify_workspace(ws).ok, verify_workspace(ws).problems

    # When only its last byte changes
    data = dead.read_bytes()
    dead.write_bytes(data[:-1] + (b" " if data[-1:] != b" " else b"\n"))

    report = verify_workspace(ws)
    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: edited after the journal recorded it (seq 3)"
    ]


def test_a_file_that_cannot_be_read_is_reported_unreadable(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    dead.unlink()
    dead.mkdir()  # the name the journal recorded, now a folder

    report = verify_workspace(ws)

    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: unreadable: Is a directory"
    ]


# -- the chain -----------------------------------------------------------------------------------


def test_a_journal_spliced_from_two_chains_is_reported_where_they_meet(tmp_path: Path) -> None:
    """Every line is well formed and numbered in order; only the `prev` link tells the splice."""
    ours, theirs = _workspace(tmp_path / "ours"), _workspace(tmp_path / "theirs")
    for ws in (ours, theirs):
        for n in range(4):
            ws.journal.append("tick", agent=ws.root.name, n=n)
    spliced = _journal_lines(ours)[:2] + _journal_lines(theirs)[2:]
    (ours.journal_dir / ACTIVE_NAME).write_bytes(b"".join(spliced))

    report = verify_workspace(ours)

    assert [str(p) for p in report.problems] == [
        f".agentctl/journal/{ACTIVE_NAME} seq 3: chain broken: the line before it was edited, "
        "or this one inserted"
    ]
    assert report.events == 4


def test_a_line_nested_too_deep_to_parse_is_reported_not_a_crash(tmp_path: Path) -> None:
    # Given a journal with a line that is valid JSON nested deeper than the parser's stack
    ws = _workspace(tmp_path / "ws")
    ws.journal.append("tick", agent="a")
    active = ws.journal_dir / ACTIVE_NAME
    offset = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    ws.journal.append("tick", agent="a")

    report = verify_workspace(ws)

    assert [str(p) for p in report.problems] == [
        f".agentctl/journal/{ACTIVE_NAME}@{offset}: not a journal line (edited or inserted)"
    ]

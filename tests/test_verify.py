"""verify: the journal's hash chain and the done/ and dead/ files checked against it.

Tampering with a workspace that saw real traffic is tested in test_journal.py; these build the
journal and the files with the same calls the worker makes, so that each rule of verify has a
test that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentctl.backends.file.verify import Report, verify_workspace
from agentctl.backends.file.workspace import Workspace
from agentctl.model.message import AgentMessage
from agentctl.protocol.journal import ACTIVE_NAME, content_digest, segment_paths

Verify = Callable[[Workspace], Report]


@pytest.fixture(params=[1, 2], ids=["one process", "two processes"])
def verify(request: pytest.FixtureRequest) -> Verify:
    """verify_workspace in one process, and split over two (which must say the same)."""
    workers: int = request.param
    return lambda ws: verify_workspace(ws, workers=workers)


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


def test_a_removed_dead_letter_is_reported(tmp_path: Path, verify: Verify) -> None:
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    assert verify(ws).ok, verify(ws).problems

    dead.unlink()

    report = verify(ws)
    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: removed: the journal (seq 3) says it is dead"
    ]


def test_a_file_longer_than_one_read_is_hashed_whole(tmp_path: Path, verify: Verify) -> None:
    # Given a dead letter of ~300 KB (verify reads files 64 KiB at a time)
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws, content="x" * 300_000)
    assert verify(ws).ok, verify(ws).problems

    # When only its last byte changes
    data = dead.read_bytes()
    dead.write_bytes(data[:-1] + (b" " if data[-1:] != b" " else b"\n"))

    report = verify(ws)
    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: edited after the journal recorded it (seq 3)"
    ]


def test_a_file_that_cannot_be_read_is_reported_unreadable(tmp_path: Path, verify: Verify) -> None:
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    dead.unlink()
    dead.mkdir()  # the name the journal recorded, now a folder

    report = verify(ws)

    assert [str(p) for p in report.problems] == [
        f"failing/inbox/dead/{dead.name}: unreadable: Is a directory"
    ]


# -- the chain -----------------------------------------------------------------------------------


def test_a_journal_spliced_from_two_chains_is_reported_where_they_meet(
    tmp_path: Path, verify: Verify
) -> None:
    """Every line is well formed and numbered in order; only the `prev` link tells the splice."""
    ours, theirs = _workspace(tmp_path / "ours"), _workspace(tmp_path / "theirs")
    for ws in (ours, theirs):
        for n in range(4):
            ws.journal.append("tick", agent=ws.root.name, n=n)
    spliced = _journal_lines(ours)[:2] + _journal_lines(theirs)[2:]
    (ours.journal_dir / ACTIVE_NAME).write_bytes(b"".join(spliced))

    report = verify(ours)

    assert [str(p) for p in report.problems] == [
        f".agentctl/journal/{ACTIVE_NAME} seq 3: chain broken: the line before it was edited, "
        "or this one inserted"
    ]
    assert report.events == 4


def test_a_line_nested_too_deep_to_parse_is_reported_not_a_crash(
    tmp_path: Path, verify: Verify
) -> None:
    # Given a journal with a line that is valid JSON nested deeper than the parser's stack
    ws = _workspace(tmp_path / "ws")
    ws.journal.append("tick", agent="a")
    active = ws.journal_dir / ACTIVE_NAME
    offset = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    ws.journal.append("tick", agent="a")

    report = verify(ws)

    assert [str(p) for p in report.problems] == [
        f".agentctl/journal/{ACTIVE_NAME}@{offset}: not a journal line (edited or inserted)"
    ]


# -- a journal split between processes at its segments -------------------------------------------


def _rotated(root: Path) -> Workspace:
    """Six dead letters whose journal rotates every ~1.5 KB: a dozen segments or so."""
    ws = Workspace(root, fsync=False, journal_max_bytes=1500)
    for n in range(6):
        _dead_letter(ws, content=f"doomed {n}")
    assert len(segment_paths(ws.journal_dir)) >= 4
    return ws


def _edit_segments(ws: Workspace, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Apply `edit` to the lines of every segment but the first: whichever way the segments are
    split between processes, a boundary is edited."""
    for path in segment_paths(ws.journal_dir)[1:]:
        path.write_bytes(b"".join(edit(path.read_bytes().splitlines(keepends=True))))


def _prev_edited(lines: list[bytes]) -> list[bytes]:
    return [lines[0].replace(b'"prev":"', b'"prev":"0'), *lines[1:]]


_TAMPERED: dict[str, Callable[[Workspace], None]] = {
    "intact": lambda ws: None,
    "first line of each segment removed": lambda ws: _edit_segments(ws, lambda ls: ls[1:]),
    "first line's prev edited": lambda ws: _edit_segments(ws, _prev_edited),
    "a line inserted first": lambda ws: _edit_segments(ws, lambda ls: [b"junk\n", *ls]),
    "a segment of junk only": lambda ws: _edit_segments(ws, lambda ls: [b"junk\n"] * len(ls)),
    "a line moved into the segment before": lambda ws: _move_first_line_back(ws),
    "the first segment removed": lambda ws: segment_paths(ws.journal_dir)[0].unlink(),
    "a segment's lines reversed": lambda ws: _edit_segments(ws, lambda ls: ls[::-1]),
}


def _move_first_line_back(ws: Workspace) -> None:
    """The chain intact, only its cut between two segments moved."""
    first, second = segment_paths(ws.journal_dir)[1:3]
    lines = second.read_bytes().splitlines(keepends=True)
    with open(first, "ab") as f:
        f.write(lines[0])
    second.write_bytes(b"".join(lines[1:]))


@pytest.mark.parametrize("tamper", list(_TAMPERED))
def test_two_processes_report_exactly_what_one_does(tmp_path: Path, tamper: str) -> None:
    # Given a journal of many segments, tampered with where the processes' runs meet
    ws = _rotated(tmp_path / "ws")
    _TAMPERED[tamper](ws)

    one = verify_workspace(ws, workers=1)
    two = verify_workspace(ws, workers=2)

    # Then the split verify says exactly what one pass says, in the same order
    assert two.to_json() == one.to_json()
    assert one.ok == (tamper in ("intact", "a line moved into the segment before"))
    assert one.events > 0 and one.files == 6

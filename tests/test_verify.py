"""verify: the journal's hash chain and the done/ and dead/ files checked against it.

Tampering with a workspace that saw real traffic is tested in test_journal.py; these build the
journal and the files with the same calls the worker makes, so that each rule of verify has a
test that names it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.backends.file.verify import Report, verify_files, verify_workspace
from agentctl.backends.file.verifychain import record_of
from agentctl.backends.file.verifyfiles import Expectations, open_folder
from agentctl.backends.file.verifysplit import split_worth
from agentctl.backends.file.workspace import Workspace
from agentctl.model.message import AgentMessage
from agentctl.protocol.journal import (
    ACTIVE_NAME,
    Head,
    content_digest,
    line_hash,
    parse_line,
    segment_paths,
)

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


def test_a_message_is_kept_in_the_folder_the_journal_settled_it_in(
    tmp_path: Path, verify: Verify
) -> None:
    # Given a dead letter, then a copy of it in done/ too, then its dead/ copy edited, then gone
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    shutil.copyfile(dead, dead.parent.parent / "done" / dead.name)
    wrong = f"failing/inbox/done/{dead.name}: in done/, but the journal (seq 3) says it is dead"
    assert [str(p) for p in verify(ws).problems] == [wrong]
    dead.write_bytes(dead.read_bytes().replace(b"doomed", b"spared"))
    edited = f"failing/inbox/dead/{dead.name}: edited after the journal recorded it (seq 3)"
    assert [str(p) for p in verify(ws).problems] == [wrong, edited]
    dead.unlink()
    assert [str(p) for p in verify(ws).problems] == [wrong]
    # A foreign agent's message, which the journal leaves `waiting`, may be anywhere
    foreign = AgentMessage(from_agent="user", to_agent="perl", content="hi")
    ws.deliver(foreign)
    inbox = ws.root / "perl" / "inbox"
    os.rename(inbox / "new" / foreign.file_name, inbox / "done" / foreign.file_name)
    assert [str(p) for p in verify(ws).problems] == [wrong]


def test_messages_still_waiting_or_in_hand_are_not_missing(tmp_path: Path, verify: Verify) -> None:
    # Only what the journal settled (done, dead) must be in done/ or dead/.
    ws = _workspace(tmp_path / "ws")
    waiting = AgentMessage(from_agent="user", to_agent="echo", content="later")
    in_hand = AgentMessage(from_agent="user", to_agent="echo", content="now")
    ws.deliver(waiting)
    ws.deliver(in_hand)
    assert ws.mailbox("echo").claim(in_hand.file_name) is not None
    ws.record("claimed", in_hand, "echo", attempt=1, file=in_hand.file_name)
    report = verify(ws)
    assert report.ok and report.problems == [] and report.files == 0


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
# -- every kind of tampering, on traffic made in process (issue 20) ------------------------------
# test_journal.py tampers with a workspace that real workers filled; these make the same files
# and events with the calls the worker and `receive` make, so a mutation test reaches them.


def _traffic(root: Path) -> Workspace:
    """Three tasks echoed and their replies received, and one dead letter."""
    from agentctl.backends.file.replies import take

    ws = _workspace(root)
    for i in range(3):
        request = AgentMessage(from_agent="user", to_agent="echo", content=f"hello {i}")
        ws.deliver(request)
        inbox = ws.mailbox("echo")
        assert inbox.claim(request.file_name) is not None
        ws.record("claimed", request, "echo", attempt=0, file=request.file_name,
                  sha256=content_digest(request.to_json_bytes()))  # fmt: skip
        reply = request.reply(f"echo: hello {i}")
        ws.deliver(reply, dedupe=True)
        inbox.ack(request.file_name)
        ws.record("handled", request, "echo", attempt=0, file=request.file_name)
        path = ws.mailbox("user").claim(reply.file_name)
        assert path is not None
        take(ws, "user", reply.file_name, path)
    _dead_letter(ws)
    return ws


def _lines_of(ws: Workspace) -> list[bytes]:
    return _journal_lines(ws)


def _write(ws: Workspace, lines: list[bytes]) -> None:
    (ws.journal_dir / ACTIVE_NAME).write_bytes(b"".join(lines))


def _nth(lines: list[bytes], event: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(lines) if json.loads(line)["event"] == event][nth]


def _seq_of(line: bytes) -> int:
    return int(json.loads(line)["seq"])


def _done(ws: Workspace, agent: str = "echo", nth: int = 1) -> Path:
    return sorted((ws.root / agent / "inbox" / "done").iterdir())[nth]


def _last_seq_naming(ws: Workspace, name: str) -> int:
    """The seq of the last event about file `name` (what verify says the journal last said)."""
    return max(_seq_of(line) for line in _lines_of(ws) if json.loads(line).get("file") == name)


J = f".agentctl/journal/{ACTIVE_NAME}"


def _edited_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 1)
    lines[i] = lines[i].replace(b'"attempt":0,', b'"attempt":7,')
    _write(ws, lines)
    return [f"{J} seq {_seq_of(lines[i])}: edited: the line does not match its hash"]


def _first_line_edited_second_removed(ws: Workspace) -> list[str]:
    # After an edited first line the chain has started: a gap after it is a removal, not a
    # journal that starts late.
    lines = _lines_of(ws)
    lines[0] = lines[0].replace(b'"event":"sent"', b'"event":"SENT"')
    del lines[1]
    _write(ws, lines)
    return [f"{J} seq 1: edited: the line does not match its hash",
            f"{J} seq 3: removed: 1 line(s) missing before this one"]  # fmt: skip


def _removed_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "claimed", 1)
    del lines[i]
    _write(ws, lines)
    return [f"{J} seq {_seq_of(lines[i])}: removed: 1 line(s) missing before this one"]


def _removed_lines(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "claimed", 1)
    del lines[i : i + 3]
    _write(ws, lines)
    return [f"{J} seq {_seq_of(lines[i])}: removed: 3 line(s) missing before this one"]


def _removed_first_lines(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)[2:]
    _write(ws, lines)
    return [f"{J} seq 3: the journal starts at seq 3: lines 1-2 are missing"]


def _removed_first_line(ws: Workspace) -> list[str]:
    _write(ws, _lines_of(ws)[1:])
    return [f"{J} seq 2: the journal starts at seq 2: lines 1-1 are missing"]


def _repeated_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 1)
    lines.insert(i + 1, lines[i])  # a line written twice in a row
    _write(ws, lines)
    seq = _seq_of(lines[i])
    return [f"{J} seq {seq}: inserted or reordered: seq {seq} after seq {seq}"]


def _copied_first_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 1) + 1
    lines.insert(i, lines[0])  # seq 1 replayed: the chain goes on from the line before it
    _write(ws, lines)
    return [f"{J} seq 1: inserted or reordered: seq 1 after seq {_seq_of(lines[i - 1])}"]


def _replaced_line(ws: Workspace) -> list[str]:
    # A second version of a line, right after it, hashed afresh: only one problem, and the
    # chain goes on from the original.
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 1)
    record = json.loads(lines[i])
    record["attempt"] = 7
    del record["hash"]
    body = json.dumps(record, separators=(",", ":"))[:-1].encode()
    lines.insert(i + 1, body + f',"hash":"{line_hash(body)}"}}\n'.encode())
    _write(ws, lines)
    seq = record["seq"]
    return [f"{J} seq {seq}: inserted or reordered: seq {seq} after seq {seq}"]


def _edited_and_removed(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 0)
    lines[i] = lines[i].replace(b'"attempt":0,', b'"attempt":7,')
    j = _nth(lines, "claimed", 2)
    del lines[j]
    _write(ws, lines)
    return [f"{J} seq {_seq_of(lines[i])}: edited: the line does not match its hash",
            f"{J} seq {_seq_of(lines[j])}: removed: 1 line(s) missing before this one"]


def _forged_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 0) + 1
    offset = len(b"".join(lines[:i]))
    lines.insert(i, b'{"event":"handled","agent":"echo","note":"by hand"}\n')
    _write(ws, lines)
    return [f"{J}@{offset}: not a journal line (edited or inserted)"]


def _forged_last_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    offset = len(b"".join(lines))
    _write(ws, [*lines, b'{"seq":"x"}\n'])
    return [f"{J}@{offset}: not a journal line (edited or inserted)"]


def _copied_line(ws: Workspace) -> list[str]:
    lines = _lines_of(ws)
    i = _nth(lines, "handled", 1) + 1
    lines.insert(i, lines[1])
    _write(ws, lines)
    return [f"{J} seq 2: inserted or reordered: seq 2 after seq {_seq_of(lines[i - 1])}"]


def _edited_done_file(ws: Workspace) -> list[str]:
    path = _done(ws)
    path.write_bytes(path.read_bytes().replace(b'"hello 1"', b'"HELLO 1"'))
    return [f"echo/inbox/done/{path.name}: edited after the journal recorded it "
            f"(seq {_last_seq_naming(ws, path.name)})"]  # fmt: skip


def _removed_done_file(ws: Workspace) -> list[str]:
    path = _done(ws)
    path.unlink()
    seq = _last_seq_naming(ws, path.name)
    return [f"echo/inbox/done/{path.name}: removed: the journal (seq {seq}) says it is done"]


def _inserted_done_file(ws: Workspace) -> list[str]:
    forged = AgentMessage(from_agent="user", to_agent="echo", content="never sent")
    (ws.root / "echo" / "inbox" / "done" / forged.file_name).write_bytes(forged.to_json_bytes())
    return [f"echo/inbox/done/{forged.file_name}: not in the journal (inserted?)"]


def _edited_dead_file(ws: Workspace) -> list[str]:
    [name] = ws.mailbox("failing").dead_names()
    path = ws.root / "failing" / "inbox" / "dead" / name
    path.write_bytes(path.read_bytes().replace(b'"doomed"', b'"spared"'))
    return [f"failing/inbox/dead/{name}: edited after the journal recorded it "
            f"(seq {_last_seq_naming(ws, name)})"]  # fmt: skip


def _removed_received_reply(ws: Workspace) -> list[str]:
    path = _done(ws, "user", 0)
    path.unlink()
    seq = _last_seq_naming(ws, path.name)
    return [f"user/inbox/done/{path.name}: removed: the journal (seq {seq}) says it is done"]


def _done_file_moved_to_dead(ws: Workspace) -> list[str]:
    path = _done(ws)
    path.rename(ws.root / "echo" / "inbox" / "dead" / path.name)
    seq = _last_seq_naming(ws, path.name)
    return [f"echo/inbox/dead/{path.name}: in dead/, but the journal (seq {seq}) says it is done"]


def _dead_letter_also_in_done(ws: Workspace) -> list[str]:
    [name] = ws.mailbox("failing").dead_names()
    inbox = ws.root / "failing" / "inbox"
    os.link(inbox / "dead" / name, inbox / "done" / name)
    seq = _last_seq_naming(ws, name)
    return [f"failing/inbox/done/{name}: in done/, but the journal (seq {seq}) says it is dead"]


TAMPERING = {
    "edited line": _edited_line,
    "removed line": _removed_line,
    "first line edited, second removed": _first_line_edited_second_removed,
    "removed lines": _removed_lines,
    "removed first lines": _removed_first_lines,
    "removed first line": _removed_first_line,
    "repeated line": _repeated_line,
    "copied first line": _copied_first_line,
    "replaced line": _replaced_line,
    "edited and removed": _edited_and_removed,
    "forged line": _forged_line,
    "forged last line": _forged_last_line,
    "copied line": _copied_line,
    "edited done file": _edited_done_file,
    "removed done file": _removed_done_file,
    "inserted done file": _inserted_done_file,
    "edited dead file": _edited_dead_file,
    "removed received reply": _removed_received_reply,
    "done file moved to dead": _done_file_moved_to_dead,
    "dead letter also in done": _dead_letter_also_in_done,
}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _traffic(tmp_path_factory.mktemp("traffic") / "ws").root


def _copy_of(traffic: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(traffic, tmp_path / "ws", symlinks=True)
    return _workspace(tmp_path / "ws")


def test_untouched_traffic_verifies_and_says_what_it_checked(traffic: Path, tmp_path: Path) -> None:
    ws = _copy_of(traffic, tmp_path)
    report = verify_workspace(ws)
    lines = _lines_of(ws)
    assert report.ok and report.problems == [] and report.warnings == []
    assert report.events == len(lines) and report.segments == 1
    assert report.files == 3 + 3 + 1  # echo's done/, user's done/, failing's dead/
    last = json.loads(lines[-1])
    assert report.head == Head(last["seq"], last["hash"])
    verification = verify_files(ws)
    assert verification.problems == [] and verification.warnings == []
    assert verification.summary == (
        f"{len(lines)} events in 1 journal file(s), 7 message files in done/ and dead/; "
        f"head seq {last['seq']} hash {last['hash']}"
    )
    assert verification.doc == {
        "ok": True, "events": len(lines), "segments": 1, "files_checked": 7,
        "head": {"seq": last["seq"], "hash": last["hash"]}, "problems": [], "warnings": [],
    }  # fmt: skip


@pytest.mark.parametrize("tamper", list(TAMPERING))
def test_each_kind_of_tampering_is_reported_once_where_it_is(
    traffic: Path, tmp_path: Path, tamper: str
) -> None:
    ws = _copy_of(traffic, tmp_path)
    expected = TAMPERING[tamper](ws)
    report = verify_workspace(ws)
    assert not report.ok
    assert [str(p) for p in report.problems] == expected
    verification = verify_files(ws)
    assert verification.problems == expected
    details = verification.doc
    assert details["ok"] is False and [
        f"{p['where']}: {p['what']}" for p in details["problems"]
    ] == expected


def test_an_empty_workspace_verifies(tmp_path: Path) -> None:
    report = verify_workspace(_workspace(tmp_path / "ws"))
    assert report.ok and report.events == 0 and report.segments == 0 and report.files == 0
    assert verify_files(_workspace(tmp_path / "ws")).summary.endswith("head seq 0 hash -")


def test_the_chain_goes_on_across_rotated_segments(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False, journal_max_bytes=2048)
    for n in range(40):
        ws.journal.append("tick", agent="a", n=n)
    segments = len(list(ws.journal_dir.glob("journal*.jsonl")))
    assert segments > 2
    report = verify_workspace(ws)
    assert report.ok, report.problems
    assert report.segments == segments and report.events == 40 and report.head.seq == 40


def test_a_line_with_trailing_spaces_is_read_as_every_reader_reads_it(tmp_path: Path) -> None:
    ws = _traffic(tmp_path / "ws")
    lines = _lines_of(ws)
    lines[2] = lines[2].rstrip(b"\n") + b"  \n"  # the hash covers the text before it
    _write(ws, lines)
    report = verify_workspace(ws)
    assert report.ok and report.events == len(lines), report.problems


def test_a_sha256_that_is_not_a_digest_never_matches(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    request = AgentMessage(from_agent="user", to_agent="echo", content="x")
    ws.deliver(request)
    inbox = ws.mailbox("echo")
    inbox.claim(request.file_name)
    inbox.ack(request.file_name)
    ws.record("handled", request, "echo", file=request.file_name, sha256=12345)
    assert [str(p) for p in verify_workspace(ws).problems] == [
        f"echo/inbox/done/{request.file_name}: edited after the journal recorded it (seq 2)"
    ]


def test_dot_files_in_done_are_not_messages(tmp_path: Path) -> None:
    ws = _traffic(tmp_path / "ws")
    (ws.root / "echo" / "inbox" / "done" / ".nfs0001").write_text("a lingering handle")
    report = verify_workspace(ws)
    assert report.ok and report.files == 7, report.problems


# -- record_of: the split's workers read the first record of a run as the chain parses it ------

JOURNAL_LINE = (
    b'{"seq":7,"ts":"2026-12-02T05:00:00.000000Z","event":"sent","agent":"a",'
    b'"prev":"' + b"0" * 64 + b'","hash":"' + b"1" * 64 + b'"}'
)
LINE_VARIANTS = st.sampled_from([
    JOURNAL_LINE,
    b" " + JOURNAL_LINE,  # spaces around: the scanner refuses, parse_line strips
    JOURNAL_LINE + b"  ",
    JOURNAL_LINE.replace(b'"seq":7', b'"seq":"7"'),  # seq not an int
    JOURNAL_LINE.replace(b'"seq":7', b'"seq":7.0'),
    JOURNAL_LINE.replace(b'"hash":"', b'"hush":"'),  # no hash
    JOURNAL_LINE.replace(b'"1111', b"1111").replace(b'111"}', b"111}"),  # hash not a string
    JOURNAL_LINE[:-9],  # cut short
    b"[1, 2]",
    b'"a string"',
    b"",
    b"   ",
    b"\xff\xfe not UTF-8",
    JOURNAL_LINE + b"{}",  # two documents
])


@settings(max_examples=200, deadline=None)
@given(raw=LINE_VARIANTS | st.binary(max_size=40))
def test_record_of_reads_any_line_as_every_reader_parses_it(raw: bytes) -> None:
    # The fast path (the JSON scanner without strip) is only a shortcut: whatever the bytes,
    # it gives what parse_line gives, a record or None.
    assert record_of(raw) == parse_line(raw)


def test_record_of_takes_a_journal_line_and_refuses_what_is_not_one() -> None:
    record = record_of(JOURNAL_LINE)
    assert record is not None and record["seq"] == 7 and record["hash"] == "1" * 64
    assert record_of(b" " + JOURNAL_LINE + b" ") == record
    for raw in (b"[1, 2]", JOURNAL_LINE.replace(b'"seq":7', b'"seq":"7"'), JOURNAL_LINE[:-9],
                JOURNAL_LINE.replace(b'"hash":"', b'"hush":"'), b"\xff"):  # fmt: skip
        assert record_of(raw) is None


def test_a_folder_verify_opens_is_not_inherited_by_programs_started_meanwhile(
    tmp_path: Path,
) -> None:
    # The dashboard and the MCP server run verify on a thread while others may start programs.
    fd = open_folder(tmp_path)
    assert isinstance(fd, int)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)
    (tmp_path / "file").write_text("x")
    assert isinstance(open_folder(tmp_path / "file"), NotADirectoryError)
    assert isinstance(open_folder(tmp_path / "missing"), FileNotFoundError)


def test_an_event_whose_field_holds_a_key_named_hash_verifies(
    tmp_path: Path, verify: Verify
) -> None:
    # A line's own hash is its last field: an object inside it (an LLM's usage, a tool's
    # arguments) may have a `hash` key too, and must not be taken for it.
    ws = _workspace(tmp_path / "ws")
    ws.journal.append("note", agent="llm", usage={"tokens": 3, "hash": "not the line's"})
    ws.journal.append("note", agent="llm", usage={"hash": "first key"})
    report = verify(ws)
    assert report.ok and report.events == 2, report.problems


TRACKED_EVENT = st.fixed_dictionaries({
    "event": st.sampled_from(["sent", "claimed", "handled", "retried", "dead", "received"]),
    "agent": st.sampled_from(["a", "b"]),
    "to": st.sampled_from(["a", "b"]),
    "file": st.sampled_from(["1-X.json", "1-Y.json", "0-Z.json"]),
    "sha256": st.none() | st.sampled_from(["0" * 64, "f" * 64, "no digest"]),
})


@settings(max_examples=200, deadline=None)
@given(events=st.lists(TRACKED_EVENT, max_size=12), cut=st.integers(min_value=0, max_value=12))
def test_expectations_merged_from_two_runs_equal_one_pass(
    events: list[dict[str, object]], cut: int
) -> None:
    # The split hands each worker a run of segments; the parent merges what they expect of
    # each file. Merged in order, that must be what one pass over every event expects.
    records = [{**event, "seq": seq} for seq, event in enumerate(events, 1)]
    whole, first, later = Expectations(), Expectations(), Expectations()
    for record in records:
        whole.track(record)
    for record in records[:cut]:
        first.track(record)
    for record in records[cut:]:
        later.track(record)
    first.merge(later.packed)
    assert list(first.packed.items()) == list(whole.packed.items())  # the order too


def test_left_to_choose_verify_checks_a_small_journal_in_this_process(tmp_path: Path) -> None:
    # workers=None: split only when it pays off (a journal over _SPLIT_MIN_BYTES).
    ws = _workspace(tmp_path / "ws")
    dead = _dead_letter(ws)
    assert split_worth(segment_paths(ws.journal_dir)) == 1
    chosen, one = verify_workspace(ws, workers=None), verify_workspace(ws, workers=1)
    assert chosen.ok and chosen.to_json() == one.to_json() and chosen.files == 1
    dead.unlink()
    assert [str(p) for p in verify_workspace(ws, workers=None).problems] == [
        f"failing/inbox/dead/{dead.name}: removed: the journal (seq 3) says it is dead"
    ]

"""The journal and `verify`: real appender processes, real rotations, real traffic, real files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentctl.audit.history import HistoryError, event_filter, parse_when
from agentctl.backends.file.verify import verify_workspace
from agentctl.backends.file.workspace import Workspace
from agentctl.flow.router import WorkspaceRouter
from agentctl.model.message import AgentMessage
from agentctl.protocol.eventlimits import MAX_LINE_BYTES
from agentctl.protocol.journal import (
    ACTIVE_NAME,
    Head,
    Journal,
    format_line,
    line_hash,
    segment_paths,
)
from agentctl.protocol.journalreader import Entry, follow, read_all, read_last
from tests.conftest import REPO, run_cli, wait_until, write_roster
from tests.natsfix import nats_server  # noqa: F401 (a fixture)

HASH_MARK = b',"hash":"'

# One appender process: announces itself, waits for the starting gun, appends COUNT events.
GATED_WRITER = """
import os, sys, time
from pathlib import Path
from agentctl.protocol.journal import Journal
directory, name, count, max_bytes, gate = sys.argv[1:6]
journal = Journal(Path(directory), max_bytes=int(max_bytes))
Path(gate + "." + name).touch()
while not os.path.exists(gate):
    time.sleep(0.001)
for i in range(int(count)):
    journal.append("sent", agent=name, message_id=f"{name}-{i}", thread_id=name, n=i)
"""

# An appender process driven from stdin: each line is a number of events to append now.
STEP_WRITER = """
import sys
from pathlib import Path
from agentctl.protocol.journal import Journal
journal = Journal(Path(sys.argv[1]), max_bytes=int(sys.argv[2]))
for line in sys.stdin:
    for i in range(int(line)):
        journal.append("step", agent="writer", n=i, pad="x" * 40)
    print("ok", flush=True)
"""


def _python(code: str, *args: object, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], cwd=REPO, text=True, **kwargs
    )


def _records(directory: Path) -> list[dict]:
    entries = list(read_all(directory))
    assert all(e.record is not None for e in entries), [e.raw for e in entries if not e.record]
    return [e.record for e in entries if e.record is not None]


def _assert_chain(entries: list[Entry]) -> None:
    """Every line whole and parsed, seqs 1..N, each hash right and each prev the line before."""
    previous = ""
    for expected_seq, entry in enumerate(entries, start=1):
        assert entry.raw.endswith(b"\n") and entry.record is not None, entry
        record = entry.record
        assert record["seq"] == expected_seq, (entry.path.name, entry.offset)
        assert record["prev"] == previous, record
        body = entry.raw.rstrip(b"\n")
        assert line_hash(body[: body.rfind(HASH_MARK)]) == record["hash"]
        previous = record["hash"]


# -- many appenders, rotating ----------------------------------------------------------------


def test_concurrent_appenders_keep_one_unbroken_chain_across_rotations(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    writers, per_writer, max_bytes = 4, 5000, 256 * 1024
    gate = tmp_path / "go"
    procs = [
        _python(GATED_WRITER, ws.journal_dir, f"w{i}", per_writer, max_bytes, gate)
        for i in range(writers)
    ]
    try:
        # Every writer is up and waiting before any writes: they really append together.
        wait_until(lambda: all(Path(f"{gate}.w{i}").exists() for i in range(writers)), 30)
        gate.touch()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    total = writers * per_writer
    entries = list(read_all(ws.journal_dir))
    assert len(entries) == total
    _assert_chain(entries)
    # Each writer's events are in the order it appended them.
    for i in range(writers):
        mine = [e.record["n"] for e in entries if e.record and e.record["agent"] == f"w{i}"]
        assert mine == list(range(per_writer))
    # Rotated several times; each rotated segment was cut at the first append past max_bytes.
    segments = segment_paths(ws.journal_dir)
    assert len(segments) >= 5 and segments[-1].name == ACTIVE_NAME
    for segment in segments[:-1]:
        assert max_bytes <= segment.stat().st_size < max_bytes + 1024, segment
    report = verify_workspace(ws)
    assert report.ok, report.problems
    assert report.events == total and report.segments == len(segments)
    assert report.head.seq == total and report.head.hash == entries[-1].record["hash"]


# -- a writer that died half-way through a line ------------------------------------------------


def test_a_torn_last_line_is_tolerated_and_its_recovery_is_recorded_and_accepted(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1024 * 1024)
    for i in range(5):
        journal.append("sent", agent="user", message_id=f"m{i}", thread_id="t", n=i)
    active = ws.journal_dir / ACTIVE_NAME
    torn_at = active.stat().st_size
    fragment = b'{"seq":6,"ts":"2026-11-25T10:00:00Z","event":"sent","agent":"us'
    with open(active, "ab") as f:  # what a writer killed in the middle of its write() leaves
        f.write(fragment)

    entries = list(read_all(ws.journal_dir))
    assert [e.record["seq"] for e in entries if e.record] == [1, 2, 3, 4, 5]
    assert entries[-1].torn and entries[-1].record is None and entries[-1].offset == torn_at
    assert [r["seq"] for r in read_last(ws.journal_dir, 3)] == [3, 4, 5]
    tail = run_cli("tail", "-n", "2", "--json", "--workspace", str(ws.root), cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [4, 5]
    # Not yet recovered: a warning, not a problem (it is what a crash leaves).
    report = verify_workspace(ws)
    assert report.ok, report.problems
    assert report.warnings == [f"torn line at .agentctl/journal/{ACTIVE_NAME}:6 (a writer died "
                               "half-way through it; the next append records its recovery)"]
    good_head = report.head

    # The next append, from another process, ends the fragment, records that it did (seq 6),
    # and continues the chain.
    appender = _python(
        "import sys; from pathlib import Path; from agentctl.protocol.journal import Journal; "
        "print(Journal(Path(sys.argv[1]), max_bytes=1 << 20).append('sent', agent='user'))",
        ws.journal_dir, stdout=subprocess.PIPE,
    )
    out, _ = appender.communicate(timeout=30)
    assert appender.returncode == 0 and out.strip() == "7"
    seq = journal.append("handled", agent="echo")  # an appender whose cached head is stale
    assert seq == 8

    entries = list(read_all(ws.journal_dir))
    assert all(e.raw.endswith(b"\n") for e in entries)
    torn = [e for e in entries if e.record is None]
    assert len(torn) == 1 and torn[0].offset == torn_at and torn[0].raw == fragment + b"\n"
    good = [e.record for e in entries if e.record]
    assert [r["seq"] for r in good] == [1, 2, 3, 4, 5, 6, 7, 8]
    recovered = good[5]
    assert recovered["event"] == "recovered" and recovered["prev"] == good_head.hash
    assert recovered["offset"] == torn_at and recovered["bytes"] == len(fragment)
    assert recovered["sha256"] == hashlib.sha256(fragment).hexdigest()
    assert good[6]["prev"] == recovered["hash"] and good[7]["prev"] == good[6]["hash"]
    report = verify_workspace(ws)
    assert report.ok, report.problems
    assert report.warnings == [
        f"recovered torn line at .agentctl/journal/{ACTIVE_NAME}:6 ({len(fragment)} bytes, "
        "recorded by seq 6)"
    ]
    assert report.events == 8 and report.head.seq == 8
    cli = run_cli("verify", "--workspace", str(ws.root), cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.count("warning:") == 1 and "recovered torn line at" in cli.stdout
    assert json.loads(run_cli("verify", "--json", "--workspace", str(ws.root),
                              cwd=tmp_path).stdout)["warnings"] == report.warnings


def test_a_garbage_tail_from_a_disk_error_is_recovered_like_a_torn_line(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1 << 20)
    journal.append("sent", agent="user")
    with open(ws.journal_dir / ACTIVE_NAME, "ab") as f:
        f.write(b"\0" * 4096)  # blocks the file system allocated but never wrote
    assert Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user") == 3
    report = verify_workspace(ws)
    assert report.ok, report.problems
    assert [w.split(" (")[0] for w in report.warnings] == [
        f"recovered torn line at .agentctl/journal/{ACTIVE_NAME}:2"
    ]


def test_lines_with_fields_of_the_wrong_type_are_reported_not_fatal(tmp_path: Path) -> None:
    """A hand-made line whose seq, hash or sha256 is not what the journal writes: verify says
    so, and an appender after it continues the chain."""
    from agentctl.protocol.journal import format_line

    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1 << 20)
    journal.append("sent", agent="user")
    head = verify_workspace(ws).head
    forged, _ = format_line({"event": "sent", "to": "a", "file": "1-x.json", "sha256": "zz" * 32,
                             "agent": "user"}, head)  # fmt: skip
    with open(ws.journal_dir / ACTIVE_NAME, "ab") as f:
        f.write(forged + b'{"seq":"3","hash":"h"}\n{"seq":3,"hash":7}\n')
    assert Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user") == 3
    (ws.root / "a" / "inbox" / "done").mkdir(parents=True)
    (ws.root / "a" / "inbox" / "done" / "1-x.json").write_bytes(b"{}")

    report = verify_workspace(ws)

    whats = [p.what.split(" (")[0] for p in report.problems]
    assert whats == ["not a journal line", "not a journal line", "edited after the journal "
                     "recorded it"], report.problems  # fmt: skip


def _forge_recovery(ws: Workspace, index: int, garbage: bytes) -> None:
    """Replace line `index` by `garbage` and a well-formed `recovered` record for it, chained
    to the line before: an edit dressed up as a crash."""
    from agentctl.protocol.journal import Head, format_line

    lines = _journal_lines(ws)
    before = json.loads(lines[index - 1])
    offset = len(b"".join(lines[:index]))
    record = {"seq": 0, "ts": "2026-11-25T10:00:00Z", "event": "recovered", "agent": "echo",
              "message_id": None, "thread_id": None, "offset": offset, "bytes": len(garbage),
              "sha256": hashlib.sha256(garbage).hexdigest()}
    line, _ = format_line(record, Head(before["seq"], before["hash"]))
    lines[index : index + 1] = [garbage + b"\n", line]
    _write_lines(ws, lines)


def test_an_edit_dressed_up_as_a_recovered_torn_line_is_still_reported(
    traffic: Path, tmp_path: Path
) -> None:
    ws = _copy(traffic, tmp_path)
    lines = _journal_lines(ws)
    index = _index(lines, "handled", 1)
    _forge_recovery(ws, index, b'{"seq":' + str(_seq(lines[index])).encode() + b',"ts":"20')

    report = verify_workspace(ws)

    # The record matches its fragment, but the line after it was chained to the original.
    assert [p.what.split(":")[0] for p in report.problems] == ["chain broken"], report.problems
    check = run_cli("verify", cwd=tmp_path)
    assert check.returncode == 1


def test_a_recovered_torn_line_edited_afterwards_is_reported(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1 << 20)
    journal.append("sent", agent="user")
    active = ws.journal_dir / ACTIVE_NAME
    torn_at = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b'{"seq":2,"ts":"2026-11')
    Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user")
    assert verify_workspace(ws).ok
    data = active.read_bytes()
    active.write_bytes(data[:torn_at] + data[torn_at:].replace(b'"2026-11', b'"2027-11', 1))

    report = verify_workspace(ws)

    assert [p.where for p in report.problems] == [f".agentctl/journal/{ACTIVE_NAME}@{torn_at}"]
    assert report.problems[0].what == "not a journal line (edited or inserted)"


def test_garbage_inserted_with_a_copied_recovery_record_is_reported(
    traffic: Path, tmp_path: Path
) -> None:
    ws = _copy(traffic, tmp_path)
    lines = _journal_lines(ws)
    index = _index(lines, "handled", 1)
    # Insert (not replace): garbage and a recovered record chained to the line before.
    lines.insert(index, b"garbage\n")
    _write_lines(ws, lines)
    _forge_recovery(ws, index, b"garbage")

    report = verify_workspace(ws)

    assert not report.ok
    assert report.problems[0].what.startswith("inserted or reordered"), report.problems


def test_appenders_take_the_head_from_a_long_or_damaged_line_another_one_wrote(
    tmp_path: Path,
) -> None:
    """An appender whose cached head is stale reads the last line another appender wrote: one
    longer than its first read, or one that no longer parses, still continues the chain."""
    ws = Workspace(tmp_path / "ws", fsync=False)
    first, second = (Journal(ws.journal_dir, max_bytes=1 << 20) for _ in range(2))
    for i in range(10):
        # Three fields cut at 2,000 characters each: a line over 6 KB.
        first.append("sent", agent="a", n=i, error="e" * 3000, summary="s" * 3000, note="n" * 3000)
        second.append("handled", agent="b", n=i)
    entries = list(read_all(ws.journal_dir))
    assert max(len(e.raw) for e in entries) > 6000
    _assert_chain(entries)

    # Given a whole last line that is not a journal line (edited by hand, say),
    active = ws.journal_dir / ACTIVE_NAME
    damaged_at = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b'{"seq":21,"event":"edited by hand"}\n')
    # when another appender writes, it continues from the last good line.
    assert first.append("sent", agent="a") == 21
    good = [e.record for e in read_all(ws.journal_dir) if e.record and "hash" in e.record]
    assert [r["seq"] for r in good] == list(range(1, 22))
    assert good[-1]["prev"] == good[-2]["hash"]
    report = verify_workspace(ws)
    assert [p.where for p in report.problems] == [f".agentctl/journal/{ACTIVE_NAME}@{damaged_at}"]


# -- verify against real traffic ---------------------------------------------------------------

TRAFFIC_ROSTER = """\
- name: echo
  python: agentctl.agents.echo:EchoAgent
- name: failing
  exec: [sh, -c, "echo boom >&2; exit 3"]
  max_attempts: 1
"""


def _worker(project: Path, agent: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentctl.runtime.worker", "--config", str(project / "agents.yaml"),
         "--workspace", str(project / "workspace"), "--agent", agent],
        cwd=project, stdout=open(project / f"{agent}.log", "ab"), stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose workspace saw real traffic: 3 tasks echoed, 1 dead letter, replies read."""
    project = tmp_path_factory.mktemp("traffic")
    write_roster(project, TRAFFIC_ROSTER)
    router = WorkspaceRouter(project / "workspace", fsync=False)
    requests = [AgentMessage(from_agent="user", to_agent="echo", content=f"hello {i}")
                for i in range(3)]
    requests.append(AgentMessage(from_agent="user", to_agent="failing", content="doomed"))
    for request in requests:
        router.send(request)
    workers = [_worker(project, "echo"), _worker(project, "failing")]
    try:
        for request in requests:
            router.wait_for_reply(request, timeout_s=60)
        ws = Workspace(project / "workspace")
        wait_until(lambda: len(read_last(ws.journal_dir, 10, event_filter(
            kinds=["handled", "dead"]))) == 4, 30)  # acked after the reply
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            assert worker.wait(timeout=30) == 0
    return project


def _copy(traffic: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(traffic / "workspace", tmp_path / "workspace", symlinks=True)
    return Workspace(tmp_path / "workspace")


def _journal_lines(ws: Workspace) -> list[bytes]:
    return (ws.journal_dir / ACTIVE_NAME).read_bytes().splitlines(keepends=True)


def _write_lines(ws: Workspace, lines: list[bytes]) -> None:
    (ws.journal_dir / ACTIVE_NAME).write_bytes(b"".join(lines))


def _index(lines: list[bytes], event: str, nth: int = 0) -> int:
    found = [i for i, line in enumerate(lines) if json.loads(line)["event"] == event]
    return found[nth]


def _seq(line: bytes) -> int:
    return int(json.loads(line)["seq"])


def _done_file(ws: Workspace, agent: str = "echo", nth: int = 1) -> Path:
    return sorted((ws.root / agent / "inbox" / "done").iterdir())[nth]


def test_verify_is_ok_on_untouched_real_traffic(traffic: Path, tmp_path: Path) -> None:
    ws = _copy(traffic, tmp_path)
    report = verify_workspace(ws)
    assert report.ok, report.problems
    events = _records(ws.journal_dir)
    assert report.events == len(events) and report.head.seq == len(events)
    # 3 echo tasks and 3 replies in done/, 1 dead letter and its escalation reply.
    assert report.files == 8
    kinds = [r["event"] for r in events]
    assert kinds.count("handled") == 3 and kinds.count("dead") == 1
    assert kinds.count("received") == 4
    _assert_chain(list(read_all(ws.journal_dir)))
    cli = run_cli("verify", cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("ok:") and f"head seq {len(events)}" in cli.stdout


def _edit_a_line(ws: Workspace) -> tuple[str, str]:
    lines = _journal_lines(ws)
    i = _index(lines, "handled", 1)
    assert b'"attempt":1,' in lines[i]
    lines[i] = lines[i].replace(b'"attempt":1,', b'"attempt":7,')
    _write_lines(ws, lines)
    return f"journal.jsonl seq {_seq(lines[i])}", "edited: the line does not match its hash"


def _remove_a_line(ws: Workspace) -> tuple[str, str]:
    lines = _journal_lines(ws)
    i = _index(lines, "claimed", 1)
    del lines[i]
    _write_lines(ws, lines)
    return f"journal.jsonl seq {_seq(lines[i])}", "removed: 1 line(s) missing before this one"


def _insert_a_forged_line(ws: Workspace) -> tuple[str, str]:
    lines = _journal_lines(ws)
    i = _index(lines, "handled", 0) + 1
    offset = len(b"".join(lines[:i]))
    lines.insert(i, b'{"event":"handled","agent":"echo","note":"by hand"}\n')
    _write_lines(ws, lines)
    return f"journal.jsonl@{offset}", "not a journal line (edited or inserted)"


def _insert_a_copied_line(ws: Workspace) -> tuple[str, str]:
    lines = _journal_lines(ws)
    i = _index(lines, "handled", 1) + 1
    lines.insert(i, lines[1])  # a genuine line, replayed further down
    _write_lines(ws, lines)
    return f"journal.jsonl seq {_seq(lines[1])}", (
        f"inserted or reordered: seq {_seq(lines[1])} after seq {_seq(lines[i - 1])}"
    )


def _edit_a_done_file(ws: Workspace) -> tuple[str, str]:
    path = _done_file(ws)
    data = path.read_bytes()
    assert b'"hello 1"' in data
    path.write_bytes(data.replace(b'"hello 1"', b'"HELLO 1"'))
    return f"echo/inbox/done/{path.name}", "edited after the journal recorded it"


def _remove_a_done_file(ws: Workspace) -> tuple[str, str]:
    path = _done_file(ws)
    path.unlink()
    return f"echo/inbox/done/{path.name}", "removed: the journal"


def _insert_a_done_file(ws: Workspace) -> tuple[str, str]:
    forged = AgentMessage(from_agent="user", to_agent="echo", content="never sent")
    path = ws.root / "echo" / "inbox" / "done" / forged.file_name
    path.write_bytes(forged.to_json_bytes())
    return f"echo/inbox/done/{path.name}", "not in the journal (inserted?)"


def _edit_a_dead_file(ws: Workspace) -> tuple[str, str]:
    path = next(p for p in (ws.root / "failing" / "inbox" / "dead").iterdir()
                if p.is_file())
    path.write_bytes(path.read_bytes().replace(b'"doomed"', b'"spared"'))
    return f"failing/inbox/dead/{path.name}", "edited after the journal recorded it"


def _remove_a_received_reply(ws: Workspace) -> tuple[str, str]:
    path = _done_file(ws, "user", 0)
    path.unlink()
    return f"user/inbox/done/{path.name}", "removed: the journal"


TAMPERING: dict[str, Callable[[Workspace], tuple[str, str]]] = {
    "edited line": _edit_a_line,
    "removed line": _remove_a_line,
    "inserted forged line": _insert_a_forged_line,
    "inserted copied line": _insert_a_copied_line,
    "edited done file": _edit_a_done_file,
    "removed done file": _remove_a_done_file,
    "inserted done file": _insert_a_done_file,
    "edited dead file": _edit_a_dead_file,
    "removed received reply": _remove_a_received_reply,
}


@pytest.mark.parametrize("tamper", list(TAMPERING))
def test_verify_finds_each_kind_of_tampering(traffic: Path, tmp_path: Path, tamper: str) -> None:
    ws = _copy(traffic, tmp_path)
    where, what = TAMPERING[tamper](ws)

    report = verify_workspace(ws)

    assert not report.ok
    first = report.problems[0]
    assert first.where.endswith(where) and first.what.startswith(what), report.problems
    assert len(report.problems) == 1, report.problems


def test_verify_reports_an_inserted_copy_of_a_line_once(traffic: Path, tmp_path: Path) -> None:
    ws = _copy(traffic, tmp_path)
    _insert_a_copied_line(ws)
    report = verify_workspace(ws)
    assert len(report.problems) == 1, report.problems


def test_verify_cli_exits_1_and_names_each_problem(traffic: Path, tmp_path: Path) -> None:
    ws = _copy(traffic, tmp_path)
    _edit_a_done_file(ws)
    _remove_a_line(ws)

    text = run_cli("verify", cwd=tmp_path)
    as_json = run_cli("verify", "--json", cwd=tmp_path)

    assert text.returncode == 1 and as_json.returncode == 1
    assert text.stdout.count("problem:") == 2 and "2 problem(s)" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    whats = sorted(p["what"].split(" (")[0].split(":")[0] for p in report["problems"])
    assert whats == ["edited after the journal recorded it", "removed"]


# -- bounded events, and the head whatever the last line's size (issue 13, item 4) -------------


def test_an_event_with_huge_fields_is_cut_to_the_line_limit_and_says_so(tmp_path: Path) -> None:
    from agentctl.protocol.eventlimits import MAX_LINE_BYTES

    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1 << 20)
    journal.append("sent", agent="user", message_id="m0", thread_id="t")
    keywords = [f"kw{i:05d}" for i in range(12_000)]
    journal.append(
        "handled", agent="exec", message_id="m0", thread_id="t", attempt=1,
        usage={"total_tokens": 12, "note": "n" * 70_000}, keywords=keywords,
        error="é" * 5000, verdict="pass",
    )  # fmt: skip
    # Given another process appending next (a fresh appender: no cached head),
    assert Journal(ws.journal_dir, max_bytes=1 << 20).append("handled", agent="b") == 3

    entries = list(read_all(ws.journal_dir))
    _assert_chain(entries)
    assert max(len(e.raw) for e in entries) <= MAX_LINE_BYTES
    big = entries[1].record
    assert big is not None
    # What was cut says so, with each field's original size (bytes of its JSON).
    assert set(big["truncated"]) == {"usage", "keywords", "error"}
    assert big["truncated"]["usage"] > 70_000 and big["truncated"]["keywords"] > 12_000 * 8
    assert big["truncated"]["error"] == len(json.dumps("é" * 5000, ensure_ascii=False).encode())
    # What fits is kept as it was: small fields, the first keywords, the usage's small keys.
    assert big["attempt"] == 1 and big["verdict"] == "pass"
    assert big["usage"]["total_tokens"] == 12 and "note" not in big["usage"]
    assert big["keywords"] == keywords[: len(big["keywords"])] and big["keywords"]
    assert verify_workspace(ws).ok


def _old_style_line(seq: int, prev: str, **fields: object) -> tuple[bytes, str]:
    """A journal line as today's appender wrote it, fields of any size (no limit)."""
    body = json.dumps(
        {"seq": seq, "ts": "2026-11-25T10:00:00Z", "event": "handled", "agent": "a", **fields,
         "prev": prev}, separators=(",", ":"), ensure_ascii=False,
    )[:-1].encode()  # fmt: skip
    digest = line_hash(body)
    return body + HASH_MARK + digest.encode() + b'"}\n', digest


@pytest.mark.parametrize("torn", [False, True])
def test_an_appender_finds_the_head_after_a_last_line_of_any_size(
    tmp_path: Path, torn: bool
) -> None:
    """A workspace written by earlier versions may end in a line over 64 KiB, whole or torn."""
    ws = Workspace(tmp_path / "ws", fsync=False)
    first, h1 = _old_style_line(1, "", note="small")
    second, _ = _old_style_line(2, h1, usage={"note": "n" * 200_000})
    last = second[: len(second) // 2] if torn else second  # a writer killed half-way
    ws.journal_dir.mkdir(parents=True)
    (ws.journal_dir / ACTIVE_NAME).write_bytes(first + last)

    seq = Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user")

    assert seq == 3  # after the whole line; or after the torn line's `recovered` event
    good = [e.record for e in read_all(ws.journal_dir) if e.record]
    assert [r["seq"] for r in good] == [1, 2, 3]
    assert [r["event"] for r in good] == ["handled", "recovered" if torn else "handled", "sent"]
    assert good[1]["prev"] == good[0]["hash"] and good[2]["prev"] == good[1]["hash"]


def test_an_active_file_holding_only_a_torn_line_continues_the_rotated_chain(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=512)
    while len(segment_paths(ws.journal_dir)) < 4:  # the newest of three rotated, not the 2nd
        journal.append("tick", agent="a", pad="x" * 100)
    journal.close()
    # A crash during the first append after the rotation: the new file holds only its start.
    (ws.journal_dir / ACTIVE_NAME).write_bytes(b'{"seq":')
    before = len(list(e for e in read_all(ws.journal_dir) if e.record))

    assert Journal(ws.journal_dir, max_bytes=512).append("tick", agent="b") == before + 2
    report = verify_workspace(ws)
    assert report.ok, report.problems


EXEC_BIG_USAGE = """\
import json, sys
sys.stdin.read()
print(json.dumps({"usage": {"note": "n" * 70_000}}))
"""


def test_a_result_with_a_huge_usage_keeps_the_chain_and_verify_passes(tmp_path: Path) -> None:
    """The issue's repro: an exec agent prints a 70,000-character usage; the worker journals
    `handled`, then another process (send --wait, journaling `received`) appends."""
    (tmp_path / "big.py").write_text(EXEC_BIG_USAGE)
    write_roster(tmp_path, f"""\
        - name: big
          exec: [{sys.executable}, {tmp_path / "big.py"}]
        """)  # fmt: skip
    worker = _worker(tmp_path, "big")
    try:
        sent = run_cli("send", "big", "go", "--wait", "--timeout-s", "30", cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        again = run_cli("send", "big", "again", "--wait", "--timeout-s", "30", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    ws = Workspace(tmp_path / "workspace")
    entries = list(read_all(ws.journal_dir))
    _assert_chain(entries)  # seq 1..N, no restart
    handled = [e.record for e in entries if e.record and e.record["event"] == "handled"]
    assert len(handled) == 2 and all("usage" in h["truncated"] for h in handled)
    check = run_cli("verify", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


ROUTING_ROSTER = """\
- name: security
  expertise: [authentication, injection]
  python: agentctl.agents.echo:EchoAgent
- name: perf
  expertise: [latency, caching]
  python: agentctl.agents.echo:EchoAgent
"""


def test_a_routing_decision_is_journaled_only_with_its_send(tmp_path: Path) -> None:
    """`send --route` with 12,000 keywords: over max_message_bytes nothing is journaled;
    a send that goes is journaled with its decision, cut to the line limit."""
    write_roster(tmp_path, ROUTING_ROSTER)
    keywords = ",".join(["caching", *(f"kw{i:05d}" for i in range(12_000))])
    (tmp_path / "big.txt").write_text("x" * 1_100_000)

    refused = run_cli("send", "--route", "-k", keywords, "@big.txt", cwd=tmp_path)

    assert refused.returncode == 1 and refused.stderr.count("error:") == 1, refused.stderr
    assert "max_message_bytes" in refused.stderr
    ws = Workspace(tmp_path / "workspace")
    assert [r["event"] for r in _journal_records(ws)] == []
    for mode in ("--route", "--fanout"):
        sent = run_cli("send", mode, "--threshold", "0.5", "-k", keywords, "small", cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
    events = _journal_records(ws)
    assert [r["event"] for r in events] == ["routed", "sent", "routed", "sent"]
    assert all(r["chosen"] == ["perf"] for r in events if r["event"] == "routed")
    assert all("keywords" in r["truncated"] for r in events if r["event"] == "routed")
    assert [r["seq"] for r in events] == [1, 2, 3, 4]
    assert verify_workspace(ws).ok


def _journal_records(ws: Workspace) -> list[dict]:
    return [e.record for e in read_all(ws.journal_dir) if e.record]


# -- reading back across segments --------------------------------------------------------------


def test_read_last_with_a_filter_reaches_back_across_rotated_segments(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, max_bytes=2048)
    for i in range(200):
        journal.append("sent", agent="rare" if i % 37 == 0 else "common", n=i)
    segment_of = {e.record["n"]: e.path for e in read_all(directory) if e.record}
    assert len(segment_paths(directory)) >= 8
    rare = [0, 37, 74, 111, 148, 185]
    assert len({segment_of[n] for n in rare}) == len(rare)  # each in a segment of its own
    keep = event_filter(agent="rare")

    assert [r["n"] for r in read_last(directory, 3, keep)] == [111, 148, 185]
    assert [r["n"] for r in read_last(directory, 100, keep)] == rare  # back to the first file
    assert [r["n"] for r in read_last(directory, 5)] == [195, 196, 197, 198, 199]
    assert read_last(directory, 0, keep) == []
    only_first = event_filter(kinds=["sent"])  # a journal event: kinds are checked
    assert [r["seq"] for r in read_last(directory, 200, only_first)] == list(range(1, 201))
    assert read_last(directory, 10, event_filter(agent="nobody")) == []


class _Follower:
    """follow() consumed by a thread, as `tail -f` does; can hold still after an entry."""

    def __init__(self, directory: Path, *, pause_after: int | None = None) -> None:
        self.entries: list[Entry] = []
        self.stop = threading.Event()
        self.go = threading.Event()
        self.pause_after = pause_after
        self.thread = threading.Thread(target=self._run, args=(directory,), daemon=True)
        self.thread.start()

    def _run(self, directory: Path) -> None:
        for entry in follow(directory, stop=self.stop, poll_interval_s=0.05):
            self.entries.append(entry)
            if len(self.entries) == self.pause_after:
                self.go.wait()

    def seqs(self) -> list[int]:
        return [e.record["seq"] for e in list(self.entries) if e.record]

    def wait_following(self, journal: Journal) -> None:
        """Append probes until one is seen: from then on the follower misses nothing."""
        wait_until(lambda: self.entries or journal.append("probe", agent="test") < 0,
                   timeout_s=30, interval_s=0.2)

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def step_writer(tmp_path: Path) -> Iterator[Callable[[Path, int], Callable[[int], int]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(directory: Path, max_bytes: int) -> Callable[[int], int]:
        proc = _python(STEP_WRITER, directory, max_bytes,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)

        def write(count: int) -> int:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{count}\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ok\n"
            return read_last(directory, 1)[0]["seq"]

        return write

    yield start
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_follow_across_rotations_by_another_process_misses_and_repeats_nothing(
    tmp_path: Path, step_writer
) -> None:
    directory = tmp_path / "journal"
    max_bytes = 8192
    journal = Journal(directory, max_bytes=max_bytes)
    journal.append("before", agent="test")
    follower = _Follower(directory)
    try:
        follower.wait_following(journal)
        write = step_writer(directory, max_bytes)
        rotations_before = len(segment_paths(directory))
        for _ in range(8):  # each step is less than a segment: at most one rotation in it
            last = write(30)
            wait_until(lambda last=last: follower.seqs()[-1:] == [last], timeout_s=30)
        assert len(segment_paths(directory)) - rotations_before >= 3
    finally:
        follower.close()
    seqs = follower.seqs()
    assert all(e.record is not None and e.raw.endswith(b"\n") for e in follower.entries)
    assert seqs == list(range(seqs[0], last + 1))
    _assert_chain(list(read_all(directory)))  # the two appender processes kept one chain


def test_follow_misses_nothing_when_several_rotations_happen_while_it_is_behind(
    tmp_path: Path, step_writer
) -> None:
    directory = tmp_path / "journal"
    max_bytes = 4096
    journal = Journal(directory, max_bytes=max_bytes)
    journal.append("before", agent="test")
    follower = _Follower(directory, pause_after=1)
    try:
        follower.wait_following(journal)  # it now holds still after its first entry
        segments_before = len(segment_paths(directory))
        last = step_writer(directory, max_bytes)(120)
        assert len(segment_paths(directory)) - segments_before >= 3
        follower.go.set()
        wait_until(lambda: follower.seqs()[-1:] == [last], timeout_s=30)
    finally:
        follower.close()
    seqs = follower.seqs()
    assert seqs == list(range(seqs[0], last + 1))


# -- times for --since and --until -------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", NOW - timedelta(seconds=30)),
    ("10m", NOW - timedelta(minutes=10)),
    ("2h", NOW - timedelta(hours=2)),
    ("1d", NOW - timedelta(days=1)),
    ("1.5h", NOW - timedelta(minutes=90)),
    ("250ms", NOW - timedelta(milliseconds=250)),
    (" 5m ", NOW - timedelta(minutes=5)),
    ("0s", NOW),
    ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
    ("2026-11-25T10:00:00.123456+00:00", datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2026-11-25T10:00:00", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),  # no zone: UTC
    ("2026-11-25T12:00:00+02:00", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
    ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),
])
def test_parse_when_takes_durations_ago_and_iso_times(text: str, expected: datetime) -> None:
    when = parse_when(text, now=NOW)
    assert when == expected and when.tzinfo is not None


@pytest.mark.parametrize("text", ["yesterday", "10", "5M", "-5m", "10 m", "1e3s", "", "2026-13-01"])
def test_parse_when_refuses_bad_values_with_a_clear_error(text: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_when(text, now=NOW, option="--until")
    message = str(caught.value)
    assert message.startswith(f"--until: {text!r} is neither an ISO time")
    assert "duration like 30s, 10m, 2h, 1d" in message and "\n" not in message


def test_parse_when_refuses_a_duration_too_far_back() -> None:
    with pytest.raises(HistoryError, match="--since"):
        parse_when("9999999d", now=NOW)


def test_event_filter_times_are_inclusive_and_need_a_timestamp() -> None:
    at = {"seq": 1, "ts": "2026-11-25T10:00:00.000001Z", "event": "sent", "agent": "user"}
    since = parse_when("2026-11-25T10:00:00.000001Z")
    assert event_filter(since=since)(at) and event_filter(until=since)(at)
    assert not event_filter(since=since + timedelta(microseconds=1))(at)
    assert not event_filter(until=since - timedelta(microseconds=1))(at)
    assert not event_filter(since=since)({**at, "ts": "garbage"})
    assert event_filter(agent="echo")({**at, "to": "echo"})  # the recipient counts too
    assert not event_filter(agent="echo")(at)


def test_read_segment_cuts_lines_right_whatever_the_chunk_size(tmp_path: Path, monkeypatch) -> None:
    """The chunked reader (no joined chunks) against a plain split, on random lines and cuts."""
    import random

    from agentctl.protocol import journalreader

    rng = random.Random(1)
    path = tmp_path / "segment"
    for _ in range(300):
        lines = [
            "".join(rng.choice('abcXYZ"{}:,') for _ in range(rng.randint(0, 40))).encode() + b"\n"
            for _ in range(rng.randint(0, 30))
        ]
        data = b"".join(lines) + (b"torn" if rng.random() < 0.3 else b"")
        path.write_bytes(data)
        monkeypatch.setattr(journalreader, "_CHUNK_BYTES", rng.randint(1, 50))
        needle = rng.choice([None, b"a", b"XY", b'"{', b"torn"])
        expected, offset = [], 0
        for raw in data.splitlines(keepends=True):
            if needle is None or needle in raw:
                expected.append((offset, raw))
            offset += len(raw)
        got = [(e.offset, e.raw) for e in journalreader.read_segment(path, needle=needle)]
        assert got == expected


def test_events_on_nats_are_cut_to_the_same_limit(
    tmp_path: Path, nats_server  # noqa: F811 (the fixture)
) -> None:
    """A server refuses a message over its max_payload (1 MB): an unbounded event would fail
    the worker's settle; it is cut as on files, and says so."""
    pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
    from agentctl.backends.nats.reader import StreamReader
    from agentctl.backends.nats.transport import NatsTransport
    from agentctl.protocol.eventlimits import MAX_LINE_BYTES

    transport = NatsTransport.connect(
        Workspace(tmp_path / "ws"), [nats_server.url], stream="AGENTCTL", replicas=1
    )
    try:
        transport.journal.append("handled", agent="big", usage={"note": "n" * 2_000_000}, attempt=1)
        transport.confirm_events()
        [stored] = list(StreamReader(transport).messages("agents.big.events"))
        record = json.loads(stored.data)
    finally:
        transport.close()
    assert len(stored.data) <= MAX_LINE_BYTES
    assert record["truncated"]["usage"] > 2_000_000 and record["attempt"] == 1


# -- long text fields (issue 20) -----------------------------------------------------------------


def test_a_long_text_field_is_cut_even_when_the_line_would_fit(tmp_path: Path) -> None:
    """A text field over MAX_TEXT_CHARS is cut on its own, not only when the line is too long."""
    from agentctl.protocol.eventlimits import MAX_LINE_BYTES, MAX_TEXT_CHARS

    ws = Workspace(tmp_path / "ws", fsync=False)
    journal = Journal(ws.journal_dir, max_bytes=1 << 20)
    long_error = "e" * (MAX_TEXT_CHARS + 1)
    assert len(long_error) * 2 < MAX_LINE_BYTES  # the line limit alone would keep it whole

    journal.append("failed", agent="a", error=long_error, note="n" * MAX_TEXT_CHARS)

    [record] = _records(ws.journal_dir)
    assert record["error"] == "e" * MAX_TEXT_CHARS + "…"
    assert record["truncated"] == {"error": len(long_error) + 2}  # its JSON: the quotes too
    assert record["note"] == "n" * MAX_TEXT_CHARS  # at the limit: kept whole
    assert verify_workspace(ws).ok


# -- in process, what the tests above check through other processes (issue 20) -----------------


def test_a_torn_line_is_recovered_in_process_with_a_journal_line_of_its_own(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user", n=1)
    active = ws.journal_dir / ACTIVE_NAME
    torn_at = active.stat().st_size
    fragment = b'{"seq":2,"ts":"2026-11-25T10:00:00Z","ev'
    with open(active, "ab") as f:
        f.write(fragment)
    assert verify_workspace(ws).warnings == [
        f"torn line at .agentctl/journal/{ACTIVE_NAME}:2 (a writer died half-way through it; "
        "the next append records its recovery)"
    ]

    assert Journal(ws.journal_dir, max_bytes=1 << 20).append("handled", agent="echo") == 3

    lines = active.read_bytes().splitlines(keepends=True)
    assert lines[1] == fragment + b"\n"
    recovered = json.loads(lines[2])
    assert list(recovered) == ["seq", "ts", "event", "agent", "message_id", "thread_id",
                               "offset", "bytes", "sha256", "prev", "hash"]  # fmt: skip
    assert recovered["seq"] == 2 and recovered["event"] == "recovered"
    assert recovered["agent"] == "echo" and recovered["ts"].endswith("Z")
    assert recovered["message_id"] is None and recovered["thread_id"] is None
    assert recovered["offset"] == torn_at and recovered["bytes"] == len(fragment)
    assert recovered["sha256"] == hashlib.sha256(fragment).hexdigest()
    report = verify_workspace(ws)
    assert report.ok and report.events == 3, report.problems
    assert report.warnings == [f"recovered torn line at .agentctl/journal/{ACTIVE_NAME}:2 "
                               f"({len(fragment)} bytes, recorded by seq 2)"]  # fmt: skip


def test_a_whole_last_line_without_its_newline_only_gets_the_newline(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", fsync=False)
    Journal(ws.journal_dir, max_bytes=1 << 20).append("sent", agent="user")
    active = ws.journal_dir / ACTIVE_NAME
    active.write_bytes(active.read_bytes().rstrip(b"\n"))  # killed just before the newline

    assert Journal(ws.journal_dir, max_bytes=1 << 20).append("handled", agent="echo") == 2

    lines = active.read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["event"] for line in lines] == ["sent", "handled"]
    report = verify_workspace(ws)
    assert report.ok and report.warnings == [], report.problems


def test_rotated_segments_are_numbered_from_1_without_gaps(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=600)
    for n in range(12):
        journal.append("tick", agent="a", pad="x" * 100, n=n)
    names = [p.name for p in segment_paths(journal_dir)]
    rotated = len(names) - 1
    assert rotated >= 3
    assert names == [f"journal.{i:06d}.jsonl" for i in range(1, rotated + 1)] + [ACTIVE_NAME]


def test_close_releases_the_descriptors_and_appending_again_reopens(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    assert journal.append("tick", agent="a") == 1
    fds = [journal._fd, journal._lock_fd]
    journal.close()
    for fd in fds:
        assert fd is not None
        with pytest.raises(OSError):
            os.fstat(fd)  # closed (and not yet reused: nothing opened since)
    assert journal.append("tick", agent="a") == 2
    journal.close()
    journal.close()  # twice is harmless


def test_an_appended_line_has_its_keys_in_order_and_drops_none_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    seq = journal.append("sent", agent="a", message_id="m1", thread_id="t1", to="b", skip=None)
    journal.close()
    [line] = (tmp_path / "journal" / ACTIVE_NAME).read_bytes().splitlines()
    record = json.loads(line)
    assert list(record) == ["seq", "ts", "event", "agent", "message_id", "thread_id", "to",
                            "prev", "hash"]  # fmt: skip
    assert (seq, record["seq"], record["event"], record["agent"]) == (1, 1, "sent", "a")
    assert (record["message_id"], record["thread_id"], record["to"]) == ("m1", "t1", "b")
    assert record["ts"].endswith("Z") and record["prev"] == ""
    assert record["hash"] == line_hash(line[: line.index(b',"hash":')])


def test_the_journal_rotates_when_it_reaches_max_bytes_exactly(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    Journal(journal_dir, max_bytes=1 << 20).append("tick", agent="a")
    full = (journal_dir / ACTIVE_NAME).stat().st_size
    assert Journal(journal_dir, max_bytes=full).append("tock", agent="a") == 2
    assert [p.name for p in segment_paths(journal_dir)] == ["journal.000001.jsonl", ACTIVE_NAME]


def test_the_recovery_of_a_torn_line_counts_toward_rotation(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    Journal(journal_dir, max_bytes=1 << 20).append("tick", agent="a", pad="x" * 1000)
    active = journal_dir / ACTIVE_NAME
    with open(active, "ab") as f:
        f.write(b'{"seq":2,"ts":"2026')  # a writer died here
    # Below the limit with the fragment; past it once the fragment's recovery is journaled.
    limit = active.stat().st_size + 100
    assert Journal(journal_dir, max_bytes=limit).append("tock", agent="a") == 3
    rotated, _ = segment_paths(journal_dir)
    events = [json.loads(line)["event"] for line in rotated.read_bytes().splitlines()[::2]]
    assert events == ["tick", "recovered"]
    assert [json.loads(line)["event"] for line in active.read_bytes().splitlines()] == ["tock"]


@contextlib.contextmanager
def _files_limited_to(size_bytes: int) -> Iterator[None]:
    """A real disk error in process: this process may not grow a file past `size_bytes`.

    The kernel writes what fits and refuses the rest with EFBIG, as a disk that fills up
    half-way through a line does (Python ignores SIGXFSZ, so the write fails instead).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_line_the_disk_cuts_short_is_cut_back_and_the_error_names_the_journal(
    tmp_path: Path,
) -> None:
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=1 << 20)
    journal.append("tick", agent="a")
    active = journal_dir / ACTIVE_NAME
    before = active.read_bytes()

    with _files_limited_to(len(before) + 20), pytest.raises(OSError) as failed:
        journal.append("tock", agent="a", pad="x" * 100)  # 20 bytes go in, then EFBIG

    assert failed.value.errno == errno.EFBIG
    assert failed.value.filename == str(active)
    assert active.read_bytes() == before  # no torn line left behind
    assert journal.append("tock", agent="a") == 2  # the caller simply tries again
    _assert_chain(list(read_all(journal_dir)))


def test_a_line_the_disk_cuts_short_right_after_a_rotation_leaves_the_new_segment_empty(
    tmp_path: Path,
) -> None:
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=100)
    journal.append("tick", agent="a", pad="x" * 100)  # past max_bytes: the next one rotates

    with _files_limited_to(10), pytest.raises(OSError):
        journal.append("tock", agent="a")

    assert [p.name for p in segment_paths(journal_dir)] == ["journal.000001.jsonl", ACTIVE_NAME]
    assert (journal_dir / ACTIVE_NAME).read_bytes() == b""
    assert journal.append("tock", agent="a") == 2
    _assert_chain(list(read_all(journal_dir)))


def test_two_appenders_in_one_process_continue_each_others_chain_across_rotations(
    tmp_path: Path,
) -> None:
    """What test_concurrent_appenders checks across processes, in process: each appender sees
    the other's lines and rotations (a new active file) and writes into the right file."""
    journal_dir = tmp_path / "journal"
    first, second = (Journal(journal_dir, max_bytes=700) for _ in range(2))
    seqs = []
    for n in range(30):
        seqs.append(first.append("tick", agent="a", n=n, pad="x" * (n % 7) * 20))
        if n % 3:
            seqs.append(second.append("tock", agent="b", n=n))
    assert seqs == list(range(1, len(seqs) + 1))
    paths = segment_paths(journal_dir)
    assert len(paths) >= 5
    assert all(path.stat().st_size < 700 + 400 for path in paths)  # each one rotated in time
    _assert_chain(list(read_all(journal_dir)))
    first.close()
    second.close()


def test_segments_are_ordered_by_number_past_six_digits(tmp_path: Path) -> None:
    assert segment_paths(tmp_path / "missing") == []
    for name in ("journal.1000000.jsonl", ACTIVE_NAME, "journal.999999.jsonl", "journal.lock",
                 "journal.12.jsonl", "notes.txt"):
        (tmp_path / name).touch()
    assert [p.name for p in segment_paths(tmp_path)] == [
        "journal.999999.jsonl", "journal.1000000.jsonl", ACTIVE_NAME]


def test_the_journal_and_its_lock_are_private_to_their_owner(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=1 << 20)
    journal.append("tick", agent="a")
    journal.close()
    for name in (ACTIVE_NAME, "journal.lock"):
        assert stat.S_IMODE((journal_dir / name).stat().st_mode) == 0o600, name


def test_an_active_file_that_is_a_symbolic_link_is_refused_not_followed(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"")
    (journal_dir / ACTIVE_NAME).symlink_to(elsewhere)

    with pytest.raises(OSError) as refused:
        Journal(journal_dir, max_bytes=1 << 20).append("tick", agent="a")

    assert refused.value.errno == errno.ELOOP
    assert elsewhere.read_bytes() == b""


def test_an_active_file_that_cannot_be_opened_leaves_no_descriptor_to_close_twice(
    tmp_path: Path,
) -> None:
    # Given: an appender that has the active file open, then finds it gone and cannot open the
    # new one (a dangling symbolic link in its place)
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=1 << 20)
    journal.append("tick", agent="a")
    (journal_dir / ACTIVE_NAME).rename(tmp_path / "moved.jsonl")
    (journal_dir / ACTIVE_NAME).symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError):
        journal.append("tick", agent="a")
    (journal_dir / ACTIVE_NAME).unlink()
    # When: the process opens another file (it gets the lowest free descriptor: the one the
    # journal closed) and the journal appends again
    other = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT)
    try:
        journal.append("tock", agent="a")
        # Then: the other file's descriptor is still its own (not closed, nor reused by the
        # journal for its new active file)
        assert os.fstat(other).st_ino == (tmp_path / "other").stat().st_ino
    finally:
        journal.close()
        os.close(other)
    assert [json.loads(line)["event"] for line in
            (journal_dir / ACTIVE_NAME).read_bytes().splitlines()] == ["tock"]  # fmt: skip


def test_a_line_of_max_line_bytes_is_kept_whole_and_one_byte_more_is_cut(tmp_path: Path) -> None:
    def line_with(pad_chars: int) -> bytes:
        record = {"seq": 0, "ts": "2026-12-02T10:00:00.000000Z", "event": "tick", "agent": "a",
                  "message_id": None, "thread_id": None, "pad": "x" * pad_chars}  # fmt: skip
        line, _ = format_line(record, Head(7, "0" * 32))
        return line

    whole = MAX_LINE_BYTES - len(line_with(0))
    assert len(line_with(whole)) == MAX_LINE_BYTES
    assert json.loads(line_with(whole))["pad"] == "x" * whole

    cut = json.loads(line_with(whole + 1))

    assert len(line_with(whole + 1)) <= MAX_LINE_BYTES
    assert cut["truncated"] == {"pad": whole + 1 + 2}  # its JSON size, quotes included
    assert cut["pad"].startswith("xxx") and cut["pad"].endswith("…")
    assert (cut["seq"], cut["prev"]) == (8, "0" * 32)


def test_a_journal_holding_one_torn_byte_is_recovered_from_its_start(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    (journal_dir / ACTIVE_NAME).write_bytes(b"{")  # the first writer died after one byte

    assert Journal(journal_dir, max_bytes=1 << 20).append("tick", agent="a") == 2

    first, *rest = (journal_dir / ACTIVE_NAME).read_bytes().splitlines(keepends=True)
    assert first == b"{\n"
    recovered, tick = (json.loads(line) for line in rest)
    assert (recovered["event"], recovered["offset"], recovered["bytes"]) == ("recovered", 0, 1)
    assert (tick["seq"], tick["prev"]) == (2, recovered["hash"])


@pytest.mark.parametrize("lines", [1, 2])
def test_a_line_ending_at_a_read_block_boundary_is_found_whole(tmp_path: Path, lines: int) -> None:
    """The appender reads back by 64 KiB blocks: here the newline ending the first line is the
    first byte of the last block (found by the first search of a block, or by the next one)."""
    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, max_bytes=1 << 20)
    for n in range(lines):
        journal.append("tick", agent="a", n=n)
    active = journal_dir / ACTIVE_NAME
    written = active.read_bytes().splitlines(keepends=True)
    fragment_bytes = 64 * 1024 - 1 - sum(len(line) for line in written[1:])
    fragment = b'{"seq":9,"pad":"' + b"x" * (fragment_bytes - 16)
    with open(active, "ab") as f:
        f.write(fragment)

    assert Journal(journal_dir, max_bytes=1 << 20).append("tock", agent="a") == lines + 2

    recovered = json.loads(active.read_bytes().splitlines()[lines + 1])
    assert recovered["offset"] == len(b"".join(written))
    assert recovered["bytes"] == len(fragment)
    assert recovered["prev"] == json.loads(written[-1])["hash"]

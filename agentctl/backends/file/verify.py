"""`agentctl verify` on the file backend: is the audit trail intact?

Two checks. The journal's hash chain: every line's hash matches its text and names the line
before it, and sequence numbers have no gaps, so an edited, removed or inserted line is found.
The message files in every done/ and dead/: each must be the file the journal last recorded for
it (same SHA-256), and every file the journal says is done or dead must still be there.

The chain is tamper-evident, not tamper-proof: someone who rewrites the journal from a point on
and recomputes every hash after it is only caught by comparing the head (printed here) with a
copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl.backends.file.workspace import Workspace
from agentctl.backends.records import STATE_AFTER, Verification
from agentctl.model.constants import DEAD, DONE, INBOX_DIR
from agentctl.model.vocab import Event
from agentctl.protocol.journal import (
    HASH_HEX_CHARS,
    RECOVERED,
    Head,
    content_digest,
    parse_line,
    segment_paths,
)
from agentctl.protocol.journalreader import line_batches

_HASH_MARK = b',"hash":"'
# What JSONDecoder.raw_decode runs (the C scanner), called without raw_decode's Python frame.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Problem:
    """One thing that is not as the journal says: where, and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    """What verify checked and what it found."""

    events: int = 0
    segments: int = 0
    files: int = 0
    head: Head = field(default_factory=Head)
    problems: list[Problem] = field(default_factory=list)
    # What a crash leaves (torn lines, recovered or not): said, but not a problem.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form of `verify --json`."""
        return {
            "ok": self.ok,
            "events": self.events,
            "segments": self.segments,
            "files_checked": self.files,
            "head": {"seq": self.head.seq, "hash": self.head.hash},
            "problems": [{"where": p.where, "what": p.what} for p in self.problems],
            "warnings": self.warnings,
        }


@dataclass
class _Expected:
    """What the journal last said about one message file."""

    sha256: str | None
    state: str
    seq: int


def verify_workspace(ws: Workspace) -> Report:
    """Check the journal's chain and the done/ and dead/ files against it."""
    report = Report()
    expected = _Expectations()
    chain = _Chain(report, expected)
    for path in segment_paths(ws.journal_dir):
        if chain.check_segment(path, _relative(path, ws.root)):
            report.segments += 1
    report.head = chain.head
    _check_files(ws, expected, report)
    return report


class _Chain:
    """Checks the journal line by line, in one pass, holding no line after it is checked."""

    def __init__(self, report: Report, expected: _Expectations) -> None:
        self.report = report
        self.expected = expected
        self.head = Head()
        self.started = False
        # A line that is not a journal line, kept until the next line says whether it is a
        # torn line an appender recovered: (where, line number, offset, bytes).
        self.pending: tuple[str, int, int, bytes] | None = None

    def check_segment(self, path: Path, name: str) -> bool:
        """Check one segment file; False if it vanished (rotated away meanwhile)."""
        found = False
        number = 0
        scan, sha256, mark_of = _SCAN, hashlib.sha256, _HASH_MARK
        track, tracked = self.expected.track, _TRACKED
        head_seq, head_hash = self.head.seq, self.head.hash  # locals: this loop is the cost
        events = 0
        for offset, lines, torn in line_batches(path):
            found = True
            for raw in lines:
                number += 1
                try:
                    text = raw.decode()
                    record, end = scan(text, 0)
                    if end != len(text):
                        record = None
                except (ValueError, StopIteration, RecursionError):
                    record = None
                if type(record) is not dict or type(record.get("seq")) is not int:
                    record = parse_line(raw)  # as every reader parses it (spaces around, ...)
                elif not isinstance(record.get("hash"), str):
                    record = None
                if record is None:
                    self._not_a_line(name, number, offset, raw, torn=torn)
                else:
                    # The fast path: a line whose hash, seq and prev are as they should be.
                    mark = raw.rfind(mark_of)
                    digest = sha256(raw[:mark]).hexdigest()[:HASH_HEX_CHARS] if mark > 0 else ""
                    seq = record["seq"]
                    if (
                        digest == record["hash"]
                        and seq == head_seq + 1
                        and record.get("prev") == head_hash
                        and self.pending is None
                    ):
                        head_seq, head_hash = seq, digest
                        self.started = True
                    else:
                        self.head = Head(head_seq, head_hash)
                        self._check_slowly(record, digest, name)
                        head_seq, head_hash = self.head.seq, self.head.hash
                    events += 1
                    if record.get("event") in tracked:
                        track(record)
                offset += len(raw) + 1
        self.head = Head(head_seq, head_hash)
        self.report.events += events
        self._flush_pending()
        return found

    def _not_a_line(self, name: str, number: int, offset: int, raw: bytes, *, torn: bool) -> None:
        self._flush_pending()
        if torn:
            # Only the end of a file can lack its newline: what a writer killed mid-line (or
            # a disk error) leaves, and the next append recovers it.
            self.report.warnings.append(
                f"torn line at {name}:{number} (a writer died half-way through it; the next "
                "append records its recovery)"
            )
        elif raw.strip():
            self.pending = (name, number, offset, raw)

    def _flush_pending(self) -> None:
        if self.pending is not None:
            name, _, offset, _ = self.pending
            self.report.problems.append(Problem(f"{name}@{offset}", _NOT_A_LINE))
            self.pending = None

    def _check_slowly(self, record: dict[str, Any], digest: str, name: str) -> None:
        """Say what is wrong with a line the fast path did not accept, and go on."""
        seq = record["seq"]
        where = f"{name} seq {seq}"
        problems = self.report.problems
        count = len(problems)
        if digest != record.get("hash"):
            problems.append(Problem(where, "edited: the line does not match its hash"))
        elif not self.started and seq != 1:
            problems.append(
                Problem(where, f"the journal starts at seq {seq}: lines 1-{seq - 1} are missing")
            )
        elif self.started and seq > self.head.seq + 1:
            missing = seq - self.head.seq - 1
            problems.append(Problem(where, f"removed: {missing} line(s) missing before this one"))
        elif self.started and seq <= self.head.seq:
            problems.append(
                Problem(where, f"inserted or reordered: seq {seq} after seq {self.head.seq}")
            )
        elif record.get("prev") != self.head.hash:
            problems.append(
                Problem(where, "chain broken: the line before it was edited, or this one inserted")
            )
        if self.pending is not None:
            if len(problems) == count and _records_recovery(record, self.pending):
                torn_name, number, _, raw = self.pending
                self.report.warnings.append(
                    f"recovered torn line at {torn_name}:{number} ({len(raw)} bytes, recorded "
                    f"by seq {seq})"
                )
                self.pending = None
            else:
                # Reported before this line's own problem, in the journal's order.
                pending_problem = Problem(f"{self.pending[0]}@{self.pending[2]}", _NOT_A_LINE)
                problems.insert(count, pending_problem)
                self.pending = None
        if self.started and 0 < seq <= self.head.seq:
            return  # inserted or reordered: the chain goes on from the line before it
        self.started = True
        self.head = Head(seq, str(record.get("hash")))


_NOT_A_LINE = "not a journal line (edited or inserted)"


def _records_recovery(record: dict[str, Any], pending: tuple[str, int, int, bytes]) -> bool:
    """Whether `record` is the `recovered` event an appender wrote right after this fragment."""
    _, _, offset, raw = pending
    return (
        record.get("event") == RECOVERED
        and record.get("offset") == offset
        and record.get("bytes") == len(raw)
        and record.get("sha256") == content_digest(raw)
    )


# A recorded sha256 that is not one: unpacks to 65 hex digits, which no file's digest equals.
_UNMATCHABLE = (1 << 256) << 1 | 1
_READ_BYTES = 64 * 1024


_STATES = ("waiting", "in hand", "done", "dead")
_TRACKED = frozenset(str(event) for event in STATE_AFTER)  # plain str: a cheaper lookup


class _Expectations:
    """What the journal last said about each message file, packed into one int per file: a
    million-event journal names a few hundred thousand files, and objects per file cost
    ~350 bytes where a packed int costs ~60. The packing, low bits first: the state (2 bits),
    whether the file was found on disk (1 bit), the seq (40 bits), the digest (the SHA-256
    shifted left once with the low bit set; 0 when the journal gave none)."""

    _CODE_AFTER = {str(event): _STATES.index(state) for event, state in STATE_AFTER.items()}
    _SEEN = 4
    _SEQ_SHIFT = 3
    _SEQ_MASK = (1 << 40) - 1
    _DIGEST_SHIFT = _SEQ_SHIFT + 40

    def __init__(self) -> None:
        self._packed: dict[str, int] = {}

    def track(self, record: dict[str, Any]) -> None:
        """Take in an event that moves a message file."""
        event = record["event"]
        name = record.get("file")
        if not name:
            return
        owner = record.get("to") if event == Event.SENT else record.get("agent")
        if not owner:
            return
        key = f"{owner}/{name}"
        sha = record.get("sha256")
        if sha:
            digest = _UNMATCHABLE
            if isinstance(sha, str) and len(sha) == 64:
                try:
                    digest = int(sha, 16) << 1 | 1
                except ValueError:
                    pass
        else:
            previous = self._packed.get(key)
            digest = previous >> self._DIGEST_SHIFT if previous is not None else 0
        seq = record["seq"] & self._SEQ_MASK
        self._packed[key] = (
            digest << self._DIGEST_SHIFT | seq << self._SEQ_SHIFT | (self._CODE_AFTER[event])
        )

    def check(self, owner: str, name: str) -> _Expected | None:
        """What the journal last said about the file `name` of `owner`, if anything; the file
        counts as found on disk from now on."""
        key = f"{owner}/{name}"
        packed = self._packed.get(key)
        if packed is None:
            return None
        self._packed[key] = packed | self._SEEN
        return self._unpack(packed)

    def missing(self) -> Iterator[tuple[str, str, _Expected]]:
        """(owner, name, expectation) of each file the journal says is done or dead and that
        `check` was not asked about: files removed from disk."""
        for key, packed in self._packed.items():
            if packed & self._SEEN or packed & 3 < 2:
                continue
            owner, _, name = key.partition("/")
            yield owner, name, self._unpack(packed)

    def _unpack(self, packed: int) -> _Expected:
        state = _STATES[packed & 3]
        seq = (packed >> self._SEQ_SHIFT) & self._SEQ_MASK
        digest = packed >> self._DIGEST_SHIFT
        sha = f"{digest >> 1:064x}" if digest & 1 else None
        return _Expected(sha, state, seq)


def _check_files(ws: Workspace, expected: _Expectations, report: Report) -> None:
    # One buffer for every read, and each file opened relative to its folder (openat): the
    # cost is then the three system calls and the hash, a third of open()/read_bytes().
    buffer = bytearray(_READ_BYTES)
    for agent in ws.agent_names():
        inbox = ws.root / agent / INBOX_DIR
        for sub in (DONE, DEAD):
            names = _message_files(ws, agent, sub)
            if not names:
                continue
            try:
                folder_fd: int | OSError = os.open(
                    inbox / sub, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
            except OSError as exc:
                folder_fd = exc  # every file of it is then unreadable, and said so
            try:
                for name in names:
                    report.files += 1
                    _check_file(agent, sub, name, folder_fd, buffer, expected, report)
            finally:
                if isinstance(folder_fd, int):
                    os.close(folder_fd)
    for agent, name, known in expected.missing():
        sub = DONE if known.state == "done" else DEAD
        report.problems.append(
            Problem(
                f"{agent}/{INBOX_DIR}/{sub}/{name}",
                f"removed: the journal (seq {known.seq}) says it is {known.state}",
            )
        )


def _check_file(
    agent: str,
    sub: str,
    name: str,
    folder_fd: int | OSError,
    buffer: bytearray,
    expected: _Expectations,
    report: Report,
) -> None:
    known = expected.check(agent, name)
    if known is None:
        report.problems.append(
            Problem(f"{agent}/{INBOX_DIR}/{sub}/{name}", "not in the journal (inserted?)")
        )
        return
    if known.sha256 is None:
        return  # e.g. an oversize bad file: its bytes were never read
    try:
        if isinstance(folder_fd, OSError):
            raise folder_fd
        digest = _file_digest(name, folder_fd, buffer)
    except OSError as exc:
        report.problems.append(
            Problem(f"{agent}/{INBOX_DIR}/{sub}/{name}", f"unreadable: {exc.strerror}")
        )
        return
    if digest != known.sha256:
        report.problems.append(
            Problem(
                f"{agent}/{INBOX_DIR}/{sub}/{name}",
                f"edited after the journal recorded it (seq {known.seq})",
            )
        )


def _file_digest(name: str, folder_fd: int, buffer: bytearray) -> str:
    """The SHA-256 (hex) of the file `name` in the open folder, read through `buffer`."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder_fd)
    try:
        sha = hashlib.sha256()
        view = memoryview(buffer)
        while count := os.readv(fd, [buffer]):
            sha.update(view[:count])
    finally:
        os.close(fd)
    return sha.hexdigest()


def _message_files(ws: Workspace, agent: str, sub: str) -> list[str]:
    # Every file in done/ is a message, whatever its name (an id may end in `.error`); dead/
    # also holds reasons written beside their letters before dead/.errors/, which are not.
    if sub == DEAD:
        return ws.mailbox(agent).dead_names()
    try:
        names = os.listdir(ws.root / agent / INBOX_DIR / sub)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith("."))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def verify_files(ws: Workspace) -> Verification:
    """`verify` on the file backend, in the form every backend reports."""
    report = verify_workspace(ws)
    return Verification(
        [str(problem) for problem in report.problems],
        report.warnings,
        f"{report.events} events in {report.segments} journal file(s), {report.files} "
        f"message files in done/ and dead/; head seq {report.head.seq} hash "
        f"{report.head.hash or '-'}",
        report.to_json(),
    )

"""The checks of `agentctl verify`, each over a part of the workspace: the journal's chain over
a run of segments (`Chain`), what the journal says of each message file (`Expectations`), and one
message file against it (`check_file`). `verify` runs them in one process; `verifysplit` runs them
in several and stitches the results.
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
from agentctl.backends.records import STATE_AFTER
from agentctl.model.constants import DEAD, DONE, INBOX_DIR
from agentctl.model.vocab import Event
from agentctl.protocol.journal import (
    HASH_HEX_CHARS,
    RECOVERED,
    Head,
    content_digest,
    parse_line,
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


class Chain:
    """Checks the journal line by line, in one pass, holding no line after it is checked."""

    def __init__(self, report: Report, expected: Expectations) -> None:
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


def record_of(raw: bytes) -> dict[str, Any] | None:
    """A line's record as `Chain.check_segment` parses it (which inlines this: it is the cost)."""
    try:
        text = raw.decode()
        record, end = _SCAN(text, 0)
        if end != len(text):
            record = None
    except (ValueError, StopIteration, RecursionError):
        record = None
    if type(record) is not dict or type(record.get("seq")) is not int:
        return parse_line(raw)
    return record if isinstance(record.get("hash"), str) else None


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
READ_BYTES = 64 * 1024  # one read of a message file


_STATES = ("waiting", "in hand", "done", "dead")
_FOLDER_OF = {"done": DONE, "dead": DEAD}  # where a message the journal settled is kept
_TRACKED = frozenset(str(event) for event in STATE_AFTER)  # plain str: a cheaper lookup


class Expectations:
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

    def merge(self, later: dict[str, int]) -> None:
        """Take in `later`, the `packed` of the events that follow those taken in here, as if
        they had been taken in here: a file none of whose later events gave a digest keeps the
        digest known here."""
        packed, shift = self._packed, self._DIGEST_SHIFT
        for key, value in later.items():
            if not value >> shift and (previous := packed.get(key)) is not None:
                value |= previous >> shift << shift
            packed[key] = value

    @property
    def packed(self) -> dict[str, int]:
        """Each file's packed expectation, in the order the journal first named it."""
        return self._packed

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


def check_file(
    agent: str,
    sub: str,
    name: str,
    digest_of: Callable[[], str],
    expected: Expectations,
    report: Report,
) -> None:
    """Check the file `name` in `agent`'s `sub` folder against the journal; `digest_of` gives
    its SHA-256 (hex) or raises OSError, and is called only when the journal recorded one."""
    known = expected.check(agent, name)
    where = f"{agent}/{INBOX_DIR}/{sub}/{name}"
    if known is None:
        report.problems.append(Problem(where, "not in the journal (inserted?)"))
        return
    settled_in = _FOLDER_OF.get(known.state)
    if settled_in is not None and settled_in != sub:
        # A message ends in one of done/ and dead/: this is the other one (moved by hand, or
        # copied there). A foreign agent's files, which the journal leaves `waiting`, and a
        # crash between ack and `handled` (`in hand`) are not settled in the journal: no claim.
        report.problems.append(
            Problem(where, f"in {sub}/, but the journal (seq {known.seq}) says it is {known.state}")
        )
    if known.sha256 is None:
        return  # e.g. an oversize bad file: its bytes were never read
    try:
        digest = digest_of()
    except OSError as exc:
        report.problems.append(Problem(where, f"unreadable: {exc.strerror}"))
        return
    if digest != known.sha256:
        report.problems.append(
            Problem(where, f"edited after the journal recorded it (seq {known.seq})")
        )


def report_missing(expected: Expectations, report: Report) -> None:
    """A problem for each file the journal says is done or dead that no folder held."""
    for agent, name, known in expected.missing():
        sub = _FOLDER_OF[known.state]
        report.problems.append(
            Problem(
                f"{agent}/{INBOX_DIR}/{sub}/{name}",
                f"removed: the journal (seq {known.seq}) says it is {known.state}",
            )
        )


def open_folder(path: Path) -> int | OSError:
    """A descriptor of the folder, or the error that every file of it then reports."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return exc


def file_digest(name: str, folder_fd: int | OSError, buffer: bytearray) -> str:
    """The SHA-256 (hex) of the file `name` in the open folder, read through `buffer`."""
    if isinstance(folder_fd, OSError):
        raise folder_fd
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder_fd)
    try:
        sha = hashlib.sha256()
        view = memoryview(buffer)
        while count := os.readv(fd, [buffer]):
            sha.update(view[:count])
    finally:
        os.close(fd)
    return sha.hexdigest()


def message_files(ws: Workspace, agent: str, sub: str) -> list[str]:
    # Every file in done/ is a message, whatever its name (an id may end in `.error`); dead/
    # also holds reasons written beside their letters before dead/.errors/, which are not.
    if sub == DEAD:
        return ws.mailbox(agent).dead_names()
    try:
        names = os.listdir(ws.root / agent / INBOX_DIR / sub)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith("."))


def relative_name(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)

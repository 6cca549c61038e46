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
from collections.abc import Iterator
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
_DECODER = json.JSONDecoder()


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
        decode, sha256, mark_of = _DECODER.raw_decode, hashlib.sha256, _HASH_MARK
        track, tracked = self.expected.track, STATE_AFTER
        head_seq, head_hash = self.head.seq, self.head.hash  # locals: this loop is the cost
        for offset, lines, torn in line_batches(path):
            found = True
            for raw in lines:
                number += 1
                try:
                    text = raw.decode()
                    record, end = decode(text)
                    if end != len(text):
                        record = None
                except ValueError:
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
                    self.report.events += 1
                    if record.get("event") in tracked:
                        track(record)
                offset += len(raw) + 1
        self.head = Head(head_seq, head_hash)
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


class _Expectations:
    """What the journal last said about each message file, packed into one int per file: a
    million-event journal names a few hundred thousand files, and objects per file cost
    ~350 bytes where a packed int costs ~60."""

    _STATES = ("waiting", "in hand", "done", "dead")
    _CODES = {state: code for code, state in enumerate(_STATES)}
    _SEQ_BITS = 40

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
            digest = previous >> (self._SEQ_BITS + 2) if previous is not None else 0
        state = self._CODES[STATE_AFTER[event]]
        seq = record["seq"] & ((1 << self._SEQ_BITS) - 1)
        self._packed[key] = (digest << self._SEQ_BITS | seq) << 2 | state

    def get(self, key: tuple[str, str]) -> _Expected | None:
        """What the journal last said about (owner, file name), if anything."""
        packed = self._packed.get(f"{key[0]}/{key[1]}")
        return None if packed is None else self._unpack(packed)

    def items(self) -> Iterator[tuple[tuple[str, str], _Expected]]:
        """Every file the journal names, with what it last said about it."""
        for key, packed in self._packed.items():
            owner, _, name = key.partition("/")
            yield (owner, name), self._unpack(packed)

    def _unpack(self, packed: int) -> _Expected:
        state = self._STATES[packed & 3]
        seq = (packed >> 2) & ((1 << self._SEQ_BITS) - 1)
        digest = packed >> (self._SEQ_BITS + 2)
        sha = f"{digest >> 1:064x}" if digest & 1 else None
        return _Expected(sha, state, seq)


def _check_files(ws: Workspace, expected: _Expectations, report: Report) -> None:
    seen: set[tuple[str, str]] = set()
    for agent in ws.agent_names():
        inbox = ws.root / agent / INBOX_DIR
        for sub in (DONE, DEAD):
            for name in _message_files(ws, agent, sub):
                report.files += 1
                key = (agent, name)
                seen.add(key)
                where = f"{agent}/{INBOX_DIR}/{sub}/{name}"
                known = expected.get(key)
                if known is None:
                    report.problems.append(Problem(where, "not in the journal (inserted?)"))
                    continue
                if known.sha256 is None:
                    continue  # e.g. an oversize bad file: its bytes were never read
                try:
                    digest = content_digest((inbox / sub / name).read_bytes())
                except OSError as exc:
                    report.problems.append(Problem(where, f"unreadable: {exc.strerror}"))
                    continue
                if digest != known.sha256:
                    report.problems.append(
                        Problem(where, f"edited after the journal recorded it (seq {known.seq})")
                    )
    for (agent, name), known in expected.items():
        if known.state in ("done", "dead") and (agent, name) not in seen:
            sub = DONE if known.state == "done" else DEAD
            report.problems.append(
                Problem(
                    f"{agent}/{INBOX_DIR}/{sub}/{name}",
                    f"removed: the journal (seq {known.seq}) says it is {known.state}",
                )
            )


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

"""`agentctl verify`'s check of the journal: its hash chain, line by line over a run of segments
(`Chain`), passing each event that moves a message file on to the file checks (verifyfiles).
`verify` runs it over every segment in one process; `verifysplit` over runs of them in several.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.backends.records import STATE_AFTER
from agentctl.protocol.journal import (
    HASH_HEX_CHARS,
    RECOVERED,
    Head,
    content_digest,
    parse_line,
)
from agentctl.protocol.journalreader import line_batches

if TYPE_CHECKING:
    from agentctl.backends.file.verifyfiles import Expectations

_HASH_MARK = b',"hash":"'
# What JSONDecoder.raw_decode runs (the C scanner), called without raw_decode's Python frame.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# The events that move a message file, which the file checks take in.
_TRACKED = frozenset(str(event) for event in STATE_AFTER)  # plain str: a cheaper lookup


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

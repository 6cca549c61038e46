"""`agentctl verify`: is the audit trail intact?

Two checks. The journal's hash chain: every line's hash matches its text and names the line
before it, and sequence numbers have no gaps, so an edited, removed or inserted line is found.
The message files in every done/ and dead/: each must be the file the journal last recorded for
it (same SHA-256), and every file the journal says is done or dead must still be there.

The chain is tamper-evident, not tamper-proof: someone who rewrites the journal from a point on
and recomputes every hash after it is only caught by comparing the head (printed here) with a
copy kept elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentctl.constants import DEAD, DONE, INBOX_DIR
from agentctl.history import STATE_AFTER
from agentctl.journal import Head, content_digest, line_hash
from agentctl.journalreader import Entry, read_all
from agentctl.workspace import Workspace

_HASH_MARK = b',"hash":"'


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
    expected: dict[tuple[str, str], _Expected] = {}
    chain = _Chain(report)
    paths: set[Path] = set()
    for entry in read_all(ws.journal_dir):
        paths.add(entry.path)
        record = chain.check(entry, ws.root)
        if record is not None:
            _track(expected, record)
    report.segments = len(paths)
    report.head = chain.head
    _check_files(ws, expected, report)
    return report


class _Chain:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.head = Head()
        self.started = False

    def check(self, entry: Entry, root: Path) -> dict[str, Any] | None:
        where = f"{_relative(entry.path, root)}@{entry.offset}"
        record = entry.record
        if record is None:
            what = (
                "torn last line (a writer died half-way through it)"
                if entry.torn
                else "not a journal line (edited or inserted)"
            )
            self.report.problems.append(Problem(where, what))
            return None
        self.report.events += 1
        seq = int(record.get("seq", 0))
        where = f"{_relative(entry.path, root)} seq {seq}"
        raw = entry.raw.rstrip(b"\n")
        mark = raw.rfind(_HASH_MARK)
        if mark < 0 or line_hash(raw[:mark]) != record.get("hash"):
            self.report.problems.append(Problem(where, "edited: the line does not match its hash"))
        elif not self.started and seq != 1:
            self.report.problems.append(
                Problem(where, f"the journal starts at seq {seq}: lines 1-{seq - 1} are missing")
            )
        elif self.started and seq > self.head.seq + 1:
            missing = seq - self.head.seq - 1
            self.report.problems.append(
                Problem(where, f"removed: {missing} line(s) missing before this one")
            )
        elif self.started and seq <= self.head.seq:
            self.report.problems.append(
                Problem(where, f"inserted or reordered: seq {seq} after seq {self.head.seq}")
            )
            return record  # the chain goes on from the line before it
        elif record.get("prev") != self.head.hash:
            self.report.problems.append(
                Problem(where, "chain broken: the line before it was edited, or this one inserted")
            )
        self.started = True
        self.head = Head(seq, str(record.get("hash")))
        return record


def _track(expected: dict[tuple[str, str], _Expected], record: dict[str, Any]) -> None:
    event = record.get("event")
    state = STATE_AFTER.get(str(event))
    name = record.get("file")
    if state is None or not name:
        return
    owner = record.get("to") if event == "sent" else record.get("agent")
    if not owner:
        return
    key = (str(owner), str(name))
    previous = expected.get(key)
    sha = record.get("sha256") or (previous.sha256 if previous else None)
    expected[key] = _Expected(sha, state, int(record["seq"]))


def _check_files(ws: Workspace, expected: dict[tuple[str, str], _Expected], report: Report) -> None:
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

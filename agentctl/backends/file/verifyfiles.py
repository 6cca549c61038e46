"""`agentctl verify`'s check of the message files: what the journal last said of each file in
done/ and dead/ (`Expectations`, fed by the chain check), and each file on disk against it
(`check_file`, `report_missing`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentctl.backends.file.verifychain import Problem, Report
from agentctl.backends.file.workspace import Workspace
from agentctl.backends.records import STATE_AFTER
from agentctl.model.constants import DEAD, DONE, INBOX_DIR
from agentctl.model.vocab import Event


@dataclass
class _Expected:
    """What the journal last said about one message file."""

    sha256: str | None
    state: str
    seq: int


# A recorded sha256 that is not one: unpacks to 65 hex digits, which no file's digest equals.
_UNMATCHABLE = (1 << 256) << 1 | 1
READ_BYTES = 64 * 1024  # one read of a message file
_STATES = ("waiting", "in hand", "done", "dead")
_FOLDER_OF = {"done": DONE, "dead": DEAD}  # where a message the journal settled is kept


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

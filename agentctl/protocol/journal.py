"""The journal: one JSON line per life-cycle event, append-only, hash-chained, rotated by size.

    <workspace>/.agentctl/journal/journal.jsonl           the active segment
    <workspace>/.agentctl/journal/journal.000001.jsonl    rotated segments, oldest first
    <workspace>/.agentctl/journal/journal.lock            serialises appenders

A line is a flat JSON object whose first key is `seq` and whose last two are `prev` (the hash
of the line before it, across segments) and `hash`: the first 32 hex digits of the SHA-256 of
the line's text up to, not including, `,"hash":`. Editing, removing or inserting a line breaks
the chain at that point, which `agentctl verify` reports.

Appenders from many processes take an flock on journal.lock, learn the chain's head (cached
while nobody else wrote), and append the whole line with one write() on an O_APPEND descriptor,
so lines never interleave. A line is at most MAX_LINE_BYTES (see `eventlimits`), but the head
is found after a last line of any size (earlier versions wrote unbounded ones).

A writer killed half-way (or a disk error) leaves a torn last line. Readers skip it and say so;
the next appender ends it with a newline and, when it is not a journal line, journals a
`recovered` event carrying its offset, length and SHA-256, so that `verify` can accept that one
fragment as a crash's trace and still report any other line that is not a journal line.

This module holds the line format and the appender; `journalreader` reads the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentctl.model.constants import FILE_MODE
from agentctl.model.vocab import Event
from agentctl.protocol.eventlimits import ENCODER, MAX_LINE_BYTES, cut_long_text, fit_record
from agentctl.protocol.fsutil import ensure_dir
from agentctl.protocol.status import iso_now

ACTIVE_NAME = "journal.jsonl"
LOCK_NAME = "journal.lock"
_SEGMENT_RE = re.compile(r"^journal\.(\d{6,})\.jsonl$")
HASH_HEX_CHARS = 32
_HASH_MARK = b',"hash":"'
# What follows a line's JSON body (less its closing brace): the hash mark, the hash, `"}\n`.
_LINE_TAIL_BYTES = len(_HASH_MARK) + HASH_HEX_CHARS + 3
_BACKWARDS_BLOCK_BYTES = 64 * 1024
_LAST_LINE_BYTES = 4096  # holds a whole journal line, but for ones with very long fields
RECOVERED = Event.RECOVERED  # the event an appender journals after ending a torn line


def line_hash(body: bytes) -> str:
    """The chain hash of a line's body (its text up to `,"hash":`)."""
    return hashlib.sha256(body).hexdigest()[:HASH_HEX_CHARS]


def content_digest(data: bytes) -> str:
    """The digest of a message file recorded in the journal (full SHA-256, hex)."""
    return hashlib.sha256(data).hexdigest()


def segment_paths(directory: Path) -> list[Path]:
    """The journal's files in order: rotated segments by number, then the active one."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    rotated = sorted((int(m.group(1)), name) for name in names if (m := _SEGMENT_RE.match(name)))
    paths = [directory / name for _, name in rotated]
    if ACTIVE_NAME in names:
        paths.append(directory / ACTIVE_NAME)
    return paths


@dataclass(frozen=True)
class Head:
    """The last line of the chain: its sequence number and hash."""

    seq: int = 0
    hash: str = ""


class Journal:
    """Appends events to a workspace's journal; safe across threads and processes."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._active_path = str(directory / ACTIVE_NAME)  # a str: stat() on it is hot
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._ino = 0
        # What this process last wrote: valid while the file still ends where we left it.
        self._cached_size = -1
        self._cached_head = Head()

    def append(
        self,
        event: str,
        *,
        agent: str | None,
        message_id: str | None = None,
        thread_id: str | None = None,
        **fields: Any,
    ) -> int:
        """Record one event; return its sequence number."""
        record: dict[str, Any] = {
            "seq": 0,
            "ts": "",
            "event": event,
            "agent": agent,
            "message_id": message_id,
            "thread_id": thread_id,
        }
        for key, value in fields.items():
            if value is not None:
                cut_long_text(record, key, value)  # runs for every field: kept cheap
        with self._lock:
            lock_fd = self._lock_fd
            if lock_fd is None:
                lock_fd = self._open_lock()
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                return self._append_locked(record)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _append_locked(self, record: dict[str, Any]) -> int:
        fd, size = self._open_active()
        head, torn = self._head(fd, size)
        if torn is not None:
            # End the fragment a crashed writer left (in this file, before any rotation, so
            # that verify finds the record right after the fragment it describes).
            healing, head = _recovery(torn, head, record["agent"])
            _write_all(fd, healing)
            size += len(healing)
        if size >= self.max_bytes:
            fd = self._rotate(head)
            size = 0
        record["ts"] = iso_now()  # taken under the lock, so time order matches seq order
        line, new_head = format_line(record, head)
        try:
            _write_all(fd, line)
        except OSError as exc:
            # A full disk can take part of a line: cut it off (the lock makes the end ours), so
            # a write that failed leaves no torn line, and the caller can simply try again.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            self._cached_size = -1
            exc.filename = exc.filename or self._active_path
            raise
        self._cached_size = size + len(line)
        self._cached_head = new_head
        return new_head.seq

    def _open_lock(self) -> int:
        if self._lock_fd is None:
            ensure_dir(self.directory)
            self._lock_fd = os.open(
                self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
            )
        return self._lock_fd

    def _open_active(self) -> tuple[int, int]:
        """The descriptor of the active file and its size (called under the lock)."""
        # Another process may have rotated the active file since we opened it. When the path
        # still names the file we have open, its stat is that file's: no fstat is needed.
        path = self._active_path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if self._fd is not None and st is not None and st.st_ino == self._ino:
            return self._fd, st.st_size
        if self._fd is not None:
            # Forgotten before closing: if the open below fails, the next call must not close
            # this number again (by then it may be another file's descriptor).
            fd, self._fd = self._fd, None
            os.close(fd)
        # Read-write so that _head can pread the last line through the same descriptor.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(path, flags, FILE_MODE)
        st = os.fstat(self._fd)
        self._ino = st.st_ino
        self._cached_size = -1
        return self._fd, st.st_size

    def _head(self, fd: int, size: int) -> tuple[Head, Torn | None]:
        """The chain's head, and the torn line the active file ends in (if it does)."""
        if size == self._cached_size:
            return self._cached_head, None
        if size > 0:
            # Another process appended since our last line (the usual case when several
            # agents and commands share a workspace): its last line is the head. Read just
            # that line (a few hundred bytes) rather than a window: 177 -> ~60 us per append.
            tail = os.pread(fd, min(size, _LAST_LINE_BYTES), size - min(size, _LAST_LINE_BYTES))
            if tail.endswith(b"\n"):
                start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
                if start > 0 or len(tail) == size:  # the window holds the whole line
                    record = parse_line(tail[start:])
                    if record is not None:
                        return _head_of(record), None
        # A torn or damaged end, a longer line, or no line at all: search back as far as it
        # takes, into the segment before if this one holds no journal line.
        head, torn = _search_back(fd, size)
        if head is None:
            rotated = [p for p in segment_paths(self.directory) if p.name != ACTIVE_NAME]
            head = last_head(rotated[-1]) if rotated else Head()
        return head, torn

    def _rotate(self, head: Head) -> int:
        # Called under the lock with the head already read, so the chain continues into the
        # new segment and no appender can write between the rename and the re-open.
        existing = [p for p in segment_paths(self.directory) if p.name != ACTIVE_NAME]
        number = int(_SEGMENT_RE.match(existing[-1].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        os.rename(self.directory / ACTIVE_NAME, self.directory / f"journal.{number:06d}.jsonl")
        fd, _ = self._open_active()
        self._cached_size, self._cached_head = 0, head
        return fd

    def close(self) -> None:
        """Close the descriptors (appending again re-opens them)."""
        with self._lock:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None
            self._cached_size = -1


@dataclass(frozen=True)
class Torn:
    """The end of a file after its last newline: a line a writer did not finish."""

    offset: int
    data: bytes


def format_line(record: dict[str, Any], head: Head) -> tuple[bytes, Head]:
    """The journal line for `record` after `head` (sets its seq and prev), and the new head.

    A line over MAX_LINE_BYTES has its largest fields cut (see `eventlimits`).
    """
    record["seq"] = head.seq + 1
    record["prev"] = head.hash
    body_bytes = ENCODER.encode(record)[:-1].encode()  # the hash goes before the last brace
    if len(body_bytes) + _LINE_TAIL_BYTES > MAX_LINE_BYTES:
        record = fit_record(record, overhead_bytes=_LINE_TAIL_BYTES - 1)
        body_bytes = ENCODER.encode(record)[:-1].encode()
    digest = line_hash(body_bytes)
    return body_bytes + _HASH_MARK + digest.encode() + b'"}\n', Head(head.seq + 1, digest)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _recovery(torn: Torn, head: Head, agent: str | None) -> tuple[bytes, Head]:
    """What ends a torn line: a newline, and the `recovered` event unless the fragment is a
    whole journal line that only lacks its newline (then it is the head already)."""
    if parse_line(torn.data) is not None:
        return b"\n", head
    record: dict[str, Any] = {
        "seq": 0,
        "ts": iso_now(),
        "event": RECOVERED,
        "agent": agent,
        "message_id": None,
        "thread_id": None,
        "offset": torn.offset,
        "bytes": len(torn.data),
        "sha256": content_digest(torn.data),
    }
    line, head = format_line(record, head)
    return b"\n" + line, head


def _head_of(record: dict[str, Any]) -> Head:
    return Head(int(record["seq"]), str(record["hash"]))


def _search_back(fd: int, size: int) -> tuple[Head | None, Torn | None]:
    """The last journal line's head (None if the file holds none) and the torn end, if any.

    A torn or damaged line is skipped so the chain continues from the last good one (verify
    reports the damage); a torn line that is a whole journal line but for its newline is the
    head, and still needs its newline.
    """
    torn = None
    for offset, raw in _lines_backwards(fd, size):
        if offset + len(raw) == size:  # what follows the last newline
            if raw:
                torn = Torn(offset, raw)
            else:
                continue
        record = parse_line(raw)
        if record is not None:
            return _head_of(record), torn
    return None, torn


def _lines_backwards(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """The lines of a file, last first, as (offset, bytes without the newline); the first is
    what follows the last newline (empty when the file ends with one). Lines of any length."""
    parts: list[bytes] = []  # the pieces of the line being collected, last piece first
    position = size
    while position > 0:
        step = min(_BACKWARDS_BLOCK_BYTES, position)
        position -= step
        block = os.pread(fd, step, position)
        stop = len(block)
        newline = block.rfind(b"\n", 0, stop)
        while newline != -1:
            parts.append(block[newline + 1 : stop])
            yield position + newline + 1, b"".join(reversed(parts))
            parts = []
            stop = newline
            newline = block.rfind(b"\n", 0, stop)
        parts.append(block[:stop])
    yield 0, b"".join(reversed(parts))


def last_head(path: Path) -> Head:
    """The head of the chain at the end of one segment file (a line of any length)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Head()
    try:
        head, _ = _search_back(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return head or Head()


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """A journal line's record, or None when the line is empty, torn or not a journal line."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the C stack allows
        return None
    if not isinstance(record, dict) or type(record.get("seq")) is not int:
        return None
    if not isinstance(record.get("hash"), str):
        return None
    return record

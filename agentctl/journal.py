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
so lines never interleave. A writer killed half-way leaves a torn last line: readers skip it
and say so, and the next appender starts on a fresh line.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentctl.constants import FILE_MODE
from agentctl.fsutil import ensure_dir
from agentctl.status import iso_now

ACTIVE_NAME = "journal.jsonl"
LOCK_NAME = "journal.lock"
_SEGMENT_RE = re.compile(r"^journal\.(\d{6,})\.jsonl$")
HASH_HEX_CHARS = 32
_HASH_MARK = b',"hash":"'
_TAIL_WINDOW_BYTES = 64 * 1024
_LAST_LINE_BYTES = 4096  # holds a whole journal line, but for ones with very long fields
# Long free text (errors, summaries) is cut so one event stays one modest line.
MAX_TEXT_CHARS = 2000
# json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str), without building
# a new encoder for every line.
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


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
                # Cut long text, so one event stays one modest line (runs for every field).
                if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
                    value = value[:MAX_TEXT_CHARS] + "…"
                record[key] = value
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
        if size >= self.max_bytes:
            fd = self._rotate()
            size, torn = 0, False
        record["ts"] = iso_now()  # taken under the lock, so time order matches seq order
        line, new_head = format_line(record, head)
        if torn:
            line = b"\n" + line  # end the torn fragment a crashed writer left
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
            os.close(self._fd)
        # Read-write so that _head can pread the last line through the same descriptor.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(path, flags, FILE_MODE)
        st = os.fstat(self._fd)
        self._ino = st.st_ino
        self._cached_size = -1
        return self._fd, st.st_size

    def _head(self, fd: int, size: int) -> tuple[Head, bool]:
        """The chain's head and whether the active file ends in a torn line."""
        if size == self._cached_size:
            return self._cached_head, False
        if size == 0:
            segments = segment_paths(self.directory)
            rotated = [p for p in segments if p.name != ACTIVE_NAME]
            return (last_head(rotated[-1]) if rotated else Head()), False
        # Another process appended since our last line (the usual case when several agents
        # and commands share a workspace): its last line is the head. Read just that line
        # (a few hundred bytes) rather than the whole window: 177 -> ~60 us per append.
        tail = os.pread(fd, min(size, _LAST_LINE_BYTES), size - min(size, _LAST_LINE_BYTES))
        if tail.endswith(b"\n"):
            start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
            if start > 0 or len(tail) == size:  # the window holds the whole line
                record = parse_line(tail[start:])
                if record is not None:
                    return Head(int(record["seq"]), str(record["hash"])), False
        # A torn or damaged end, or a line longer than that: search the wider window.
        start = max(0, size - _TAIL_WINDOW_BYTES)
        tail = os.pread(fd, size - start, start)
        return _head_of_tail(tail), not tail.endswith(b"\n")

    def _rotate(self) -> int:
        # Called under the lock with the head already read, so the chain continues into the
        # new segment and no appender can write between the rename and the re-open.
        existing = [p for p in segment_paths(self.directory) if p.name != ACTIVE_NAME]
        number = int(_SEGMENT_RE.match(existing[-1].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        os.rename(self.directory / ACTIVE_NAME, self.directory / f"journal.{number:06d}.jsonl")
        head = self._cached_head
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


def format_line(record: dict[str, Any], head: Head) -> tuple[bytes, Head]:
    """The journal line for `record` after `head` (sets its seq and prev), and the new head."""
    record["seq"] = head.seq + 1
    record["prev"] = head.hash
    body = _LINE_ENCODER.encode(record)
    body_bytes = body[:-1].encode()  # without the closing brace: the hash goes before it
    digest = line_hash(body_bytes)
    return body_bytes + _HASH_MARK + digest.encode() + b'"}\n', Head(head.seq + 1, digest)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_tail(f: Any, size: int) -> bytes:
    start = max(0, size - _TAIL_WINDOW_BYTES)
    f.seek(start)
    return bytes(f.read(size - start))


def _head_of_tail(tail: bytes) -> Head:
    # The last line that parses as a journal line; a torn or damaged line is skipped so the
    # chain continues from the last good one (verify reports the damage).
    for raw in reversed(tail.split(b"\n")):
        record = parse_line(raw)
        if record is not None:
            return Head(int(record["seq"]), str(record["hash"]))
    return Head()


def last_head(path: Path) -> Head:
    """The head of the chain at the end of one segment file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _head_of_tail(_read_tail(f, size))
    except FileNotFoundError:
        return Head()


def parse_line(raw: bytes) -> dict[str, Any] | None:
    """A journal line's record, or None when the line is empty, torn or not a journal line."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or "seq" not in record or "hash" not in record:
        return None
    return record

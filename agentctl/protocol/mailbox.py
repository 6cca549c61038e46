"""One agent's inbox on disk, with Maildir semantics.

    inbox/tmp/         being written; never read by consumers
    inbox/new/         delivered, waiting; file names sort in processing order
    inbox/processing/  claimed by a worker (exactly one claimer wins)
    inbox/done/        handled; kept as the audit trail
    inbox/dead/        given up on, each with its reason in dead/.errors/ under the same name

Every transition is a link into the next directory followed by an unlink from the last, so a
message is always in at least one directory; a crash between the two leaves it in both, which
`recover()` settles. The worker decides *what* to do with a message; this module only knows
how to move it without losing or duplicating it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.model.constants import (
    DEAD,
    DEAD_ERRORS_DIR,
    DONE,
    ERROR_SUFFIX,
    INBOX_SUBDIRS,
    MESSAGE_SUFFIX,
    NEW,
    PROCESSING,
    REWRITE_HEADROOM_BYTES,
    TMP,
)
from agentctl.model.errors import BadMessageError, DeliveryError
from agentctl.protocol.fsutil import (
    StrPath,
    ensure_dir,
    fsync_dir,
    link_noreplace,
    move_settle,
    read_limited,
    unique_tmp_name,
    unlink_quietly,
    write_atomic,
    write_new_file,
)

if TYPE_CHECKING:
    from agentctl.model.message import AgentMessage

# A reason is a few hundred bytes; anything far larger in its place is not one.
MAX_ERROR_RECORD_BYTES = 1 << 20


@dataclass(frozen=True)
class Depth:
    """How many messages wait, are in hand, and were given up on."""

    new: int
    processing: int
    dead: int


class Mailbox:
    """The inbox of one agent: deliver, claim, ack, requeue, bury, recover."""

    def __init__(self, inbox_dir: Path, *, fsync: bool, max_message_bytes: int) -> None:
        self.path = inbox_dir
        self.fsync = fsync
        self.max_message_bytes = max_message_bytes
        self.tmp = inbox_dir / TMP
        self.new = inbox_dir / NEW
        self.processing = inbox_dir / PROCESSING
        self.done = inbox_dir / DONE
        self.dead = inbox_dir / DEAD
        self.errors = self.dead / DEAD_ERRORS_DIR
        # The same directories as strings with a trailing "/": per-message paths are built by
        # concatenation (a pathlib join costs several microseconds, and there are many).
        base = os.fspath(inbox_dir)
        self._tmp_s = os.path.join(base, TMP, "")
        self._new_s = os.path.join(base, NEW, "")
        self._processing_s = os.path.join(base, PROCESSING, "")
        self._done_s = os.path.join(base, DONE, "")
        self._dead_s = os.path.join(base, DEAD, "")
        self._errors_s = os.path.join(base, DEAD, DEAD_ERRORS_DIR, "")
        # locate() checks these in life-cycle order.
        self._located = (
            (NEW, self._new_s),
            (PROCESSING, self._processing_s),
            (DONE, self._done_s),
            (DEAD, self._dead_s),
        )

    def ensure(self) -> Mailbox:
        """Create the directories (0700); refuse symlinks anywhere in the inbox."""
        ensure_dir(self.path)
        for sub in INBOX_SUBDIRS:
            ensure_dir(self.path / sub)
        ensure_dir(self.errors)
        return self

    # -- delivering --------------------------------------------------------------------------

    def deliver(
        self,
        message: AgentMessage,
        *,
        data: bytes | None = None,
        copies: tuple[StrPath, ...] = (),
        dedupe: bool = False,
        announce: Callable[[], object] | None = None,
    ) -> Path | None:
        """Publish `message` into new/ atomically; never replaces an existing file.

        `copies` are extra hard links made before publishing (the sender's outbox), so the copy
        exists whenever the message does. With `dedupe`, a message whose file is already
        anywhere in this inbox (waiting, in hand, done or dead) is not delivered again and None
        is returned; this is how a redelivered request cannot produce a second reply. `data` is
        the message's serialised form when the caller already has it. `announce` runs just
        before the message becomes visible (the journal's `sent`, so it precedes any `claimed`).
        """
        name = message.file_name
        if dedupe and self.locate(name) is not None:
            return None
        tmp = self._tmp_s + unique_tmp_name(name)
        target = self._new_s + name
        write_new_file(tmp, data or message.to_json_bytes(), fsync=self.fsync)
        try:
            for copy in copies:
                link_noreplace(tmp, copy)
            if announce is not None:
                announce()
            published = link_noreplace(tmp, target)
        finally:
            unlink_quietly(tmp)
        if not published:
            if dedupe:
                return None
            raise DeliveryError(f"{target}: a message with id {message.id} is waiting")
        if self.fsync:
            fsync_dir(self.new)
            for parent in {os.path.dirname(copy) for copy in copies}:
                fsync_dir(parent)
        return self.new / name

    def locate(self, name: str) -> str | None:
        """Which of new/processing/done/dead holds `name`, checked in life-cycle order.

        Files only move forward between these checks (except a requeue), and every move
        links before it unlinks, so a file that exists is found.
        """
        for sub, directory in self._located:
            try:
                os.lstat(directory + name)
            except (OSError, ValueError):  # as os.path.lexists: any failure is "not there"
                continue
            if sub == DEAD and self._is_old_error_file(name):
                continue  # the reason of another dead letter, not this message
            return sub
        return None

    # -- consuming ---------------------------------------------------------------------------

    def list_new(self) -> list[str]:
        """Names waiting in new/, in processing order. Dot files and directories are skipped."""
        names = _waiting(self.new)
        names.sort()
        return names

    def claim(self, name: str) -> Path | None:
        """Move new/name into processing/. Returns its new path, or None if another claimer won.

        The winner is the claimer whose unlink of new/name succeeds, not whose link does:
        link() resolves its source before it creates the target, so a claimer that paused in
        between can create processing/name after the real winner has already acked the file.
        Such a loser removes the link it made.
        """
        src, dst = self._new_s + name, self._processing_s + name
        try:
            if not link_noreplace(src, dst):
                return None  # in processing/ already: someone else is half-way through
        except FileNotFoundError:
            return None
        try:
            os.unlink(src)
        except FileNotFoundError:
            unlink_quietly(dst)
            return None
        return self.processing / name

    def read(self, path: Path) -> bytes:
        """The bytes of a claimed file (size-limited, symlinks refused: BadMessageError).

        The limit leaves room for agentctl's own retry headers, so a message sent within
        max_message_bytes is never turned into a bad file by its retry rewrite.
        """
        return read_limited(path, self.max_message_bytes, headroom_bytes=REWRITE_HEADROOM_BYTES)

    def ack(self, name: str) -> None:
        """processing/ -> done/: handled. done/ is kept: it is the audit trail."""
        move_settle(self._processing_s + name, self._done_s + name)

    def release(self, name: str) -> None:
        """processing/ -> new/ without counting an attempt (shutdown before the handler ran)."""
        move_settle(self._processing_s + name, self._new_s + name)

    def requeue(self, name: str, message: AgentMessage) -> bytes:
        """Put a failed message back in new/ with its updated attempt count; the bytes written."""
        data = message.to_json_bytes()
        self._rewrite_into(self.new, name, data)
        unlink_quietly(self._processing_s + name)
        return data

    def bury(
        self, name: str, error: dict[str, Any], message: AgentMessage | None = None
    ) -> bytes | None:
        """processing/ -> dead/, with `dead/.errors/<name>` saying why.

        The error file is written first, so a dead message always has its reason; `message`
        (with its final attempt count) replaces the file's content when given, otherwise the
        file is moved as it is (a bad file keeps its exact bytes for inspection). Returns the
        bytes written when `message` is given.

        The reasons have their own folder so that no name can be both a dead letter and a
        reason: they once shared dead/ as `<stem>.error.json`, which is also the file of a
        message whose id ends in `.error`. Nothing from new/ can become `.errors` (dot names
        are never claimed).
        """
        error_bytes = json.dumps(error, indent=2, default=str).encode() + b"\n"
        ensure_dir(self.errors)  # absent from inboxes made before it existed
        write_atomic(self.errors / name, error_bytes, fsync=self.fsync)
        if message is None:
            move_settle(self._processing_s + name, self._dead_s + name)
            return None
        data = message.to_json_bytes()
        self._rewrite_into(self.dead, name, data)
        unlink_quietly(self.processing / name)
        return data

    def revive(self, name: str, message: AgentMessage) -> bytes:
        """dead/ -> new/ with `message` (its attempts reset), dropping the error file.

        new/ gets the message before dead/ loses it; a crash in between leaves both, and the
        next `recover()` drops the dead copy.
        """
        data = message.to_json_bytes()
        self._rewrite_into(self.new, name, data)
        self._drop_dead(name)
        return data

    def _drop_dead(self, name: str) -> None:
        old_error = self._old_error_file_of(name)
        unlink_quietly(self._dead_s + name)
        unlink_quietly(self._errors_s + name)
        if old_error is not None:
            unlink_quietly(self._dead_s + old_error)
        if self.fsync:
            fsync_dir(self.dead)

    # -- reasons -------------------------------------------------------------------------------

    def read_error(self, name: str) -> dict[str, Any] | None:
        """The reason recorded for dead/`name`, or None if it has none (or it is unreadable)."""
        record = _load_object(self._errors_s + name)
        if record is None:
            old_error = self._old_error_file_of(name)
            if old_error is not None:
                record = _load_object(self._dead_s + old_error)
        return record

    def _old_error_file_of(self, name: str) -> str | None:
        """`<stem>.error.json` in dead/, if it is `name`'s reason as written before .errors/."""
        stem = name[: -len(MESSAGE_SUFFIX)] if name.endswith(MESSAGE_SUFFIX) else name
        old_error = stem + ERROR_SUFFIX
        return old_error if self._is_old_error_file(old_error) else None

    def _is_old_error_file(self, name: str) -> bool:
        """Whether dead/`name` is a reason written beside its letter (before .errors/ existed,
        or by an agent written against that layout) rather than a dead letter itself.

        The name alone cannot tell: `1-T1.error.json` is the reason of `1-T1.json` and also
        the file of a message with id `T1.error`. The content can: a reason is an object with
        an `error` field, and every message has a `from_agent`.
        """
        if not name.endswith(ERROR_SUFFIX):
            return False
        record = _load_object(self._dead_s + name)
        return record is not None and "error" in record and "from_agent" not in record

    def _is_dead_letter(self, name: str) -> bool:
        return os.path.lexists(self._dead_s + name) and not self._is_old_error_file(name)

    def _rewrite_into(self, directory: Path, name: str, data: bytes) -> None:
        # Replacing is right here: a copy already in `directory` is this same message, left by
        # an earlier move that crashed half-way.
        tmp = self._tmp_s + unique_tmp_name(name)
        write_new_file(tmp, data, fsync=self.fsync)
        os.replace(tmp, os.path.join(directory, name))
        if self.fsync:
            fsync_dir(directory)

    # -- recovery and inspection --------------------------------------------------------------

    def recover(self) -> list[str]:
        """Settle what a dead worker left in processing/; return the names it was handling.

        A file also present in new/, done/ or dead/ is the leftover of a move that crashed
        between link and unlink: the move already happened, so the copy in processing/ goes.
        The rest were in a handler when the worker died: the caller counts that attempt.
        """
        for name in _names(self.new):
            if self._is_dead_letter(name):
                self._drop_dead(name)  # a revive that crashed half-way: new/ has it
        interrupted = []
        for name in sorted(os.listdir(self.processing)):
            moved = any(os.path.lexists(self.path / sub / name) for sub in (NEW, DONE))
            if moved or self._is_dead_letter(name):
                unlink_quietly(self.processing / name)
            else:
                interrupted.append(name)
        return interrupted

    def clean_tmp(self, max_age_s: float) -> int:
        """Remove tmp/ files older than max_age_s (their writers died); return how many."""
        cutoff = time.time() - max_age_s
        removed = 0
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue  # not ours to remove
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        unlink_quietly(Path(entry.path))
                        removed += 1
                except FileNotFoundError:
                    continue  # published (linked to new/ and unlinked) while we looked
        return removed

    def depth(self) -> Depth:
        """Counts of new/, processing/ and dead/ (reasons not counted)."""
        return Depth(
            new=len(_waiting(self.new)),
            processing=len(_names(self.processing)),
            dead=len(self._dead_letters()),
        )

    def dead_names(self) -> list[str]:
        """Names of the dead messages (without their reasons), oldest first."""
        return sorted(self._dead_letters())

    def _dead_letters(self) -> list[str]:
        return [n for n in _names(self.dead) if not self._is_old_error_file(n)]


def _names(directory: Path) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def _waiting(directory: Path) -> list[str]:
    # A directory is never a message, and no worker claims one (it cannot be linked): left
    # where it is, it is not counted as waiting either.
    try:
        with os.scandir(directory) as entries:
            return [
                e.name
                for e in entries
                if not e.name.startswith(".") and not e.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


def _load_object(path: str) -> dict[str, Any] | None:
    """The JSON object in the regular file `path`, or None (missing, unreadable, not one)."""
    try:
        loaded = json.loads(read_limited(path, MAX_ERROR_RECORD_BYTES))
    except (OSError, ValueError, RecursionError, BadMessageError):
        return None
    return loaded if isinstance(loaded, dict) else None

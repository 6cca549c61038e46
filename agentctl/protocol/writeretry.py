"""Writes the disk refuses (full, over quota, read-only, failing): wait and retry, never die.

A full disk is an outage of the machine, not a fault of the message in hand: a worker that cannot
write its reply, ack or journal line keeps the message where it is and tries the same step again
with a growing pause, counting nothing twice; once space is back it carries on by itself. Every
step it retries this way is idempotent (a reply is delivered with dedupe, a move that already
happened is settled, a journal line is written whole or not at all).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# The errors that say "the disk", not "this message": retrying the same write later can succeed.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_LABELS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "disk I/O error",
}
RETRY_INITIAL_S = 0.05
RETRY_MAX_S = 2.0


def is_disk_error(exc: BaseException) -> bool:
    """Whether `exc` is a write the disk refused (rather than a bad path or a bug)."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def disk_error_line(exc: OSError) -> str:
    """`no space left on device: <path>`: the OS's words, then the file (when known)."""
    reason = (exc.strerror or os.strerror(exc.errno or 0)).lower()
    return f"{reason}: {exc.filename}" if exc.filename else reason


def describe_disk_error(exc: OSError) -> str:
    """What `status` shows: `disk full: no space left on device: <path>`."""
    return f"{_LABELS.get(exc.errno or 0, 'write failed')}: {disk_error_line(exc)}"


def disk_error_label(write_error: str) -> str:
    """The short state `status` shows for a recorded write error (`disk full`)."""
    return write_error.partition(":")[0]


def probe_write(directory: Path) -> OSError | None:
    """Whether the disk under `directory` refuses a small new file: the error, or None."""
    from agentctl.protocol.fsutil import unique_tmp_name, unlink_quietly, write_new_file

    probe = directory / unique_tmp_name(".write-probe")
    try:
        write_new_file(probe, b"probe\n", fsync=False)
    except OSError as exc:
        return exc if is_disk_error(exc) else None
    unlink_quietly(probe)
    return None


class WritesAbandoned(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised instead of retrying when the worker is asked to stop during an outage."""


class WriteRetry:
    """Runs a step that writes; while the disk refuses it, waits (with backoff) and retries."""

    def __init__(
        self,
        stopping: threading.Event,
        on_change: Callable[[str | None], None],
        *,
        initial_s: float = RETRY_INITIAL_S,
        max_s: float = RETRY_MAX_S,
    ) -> None:
        self.stopping = stopping
        self.on_change = on_change  # told the error when writes start failing, None when back
        self.initial_s = initial_s
        self.max_s = max_s
        self.blocked = False

    def run(self, step: Callable[[], T]) -> T:
        """`step()`, again and again until the disk accepts it (WritesAbandoned on stop)."""
        pause_s = self.initial_s
        while True:
            try:
                result = step()
            except OSError as exc:
                if not is_disk_error(exc):
                    raise
                if self.stopping.is_set():
                    raise WritesAbandoned(disk_error_line(exc)) from exc
                self.wait(exc, pause_s)
                pause_s = min(pause_s * 2, self.max_s)
                continue
            self.recovered()
            return result

    def wait(self, exc: OSError, pause_s: float) -> None:
        """Say the disk refused a write (once per outage) and pause, waking early on stop."""
        if not self.blocked:
            self.blocked = True
            log.error("%s; retrying until it can be written", describe_disk_error(exc))
            self.on_change(describe_disk_error(exc))
        self.stopping.wait(pause_s)

    def recovered(self) -> None:
        """A write went through: the outage, if any, is over."""
        if self.blocked:
            self.blocked = False
            log.info("writes go through again")
            self.on_change(None)

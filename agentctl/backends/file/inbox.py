"""FileInbox: an agent's consuming end on the file workspace (the Maildir protocol).

One worker per agent, enforced with a lock file: recovery assumes that whatever is in
processing/ when a worker starts was left there by a dead one. Claims go in file-name order
(priority, then time); a watchdog event only wakes the loop, which rescans new/ at start and
every poll interval too (events can be lost; the rescan cannot).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentctl.backends.transport import Delivery
from agentctl.model.constants import (
    CLAIM_BATCH,
    INTERRUPTED_NOTE_FILE,
    NOT_BEFORE_HEADER,
    STALE_TMP_AGE_S,
    WORKER_LOCK_FILE,
)
from agentctl.model.errors import AgentctlError
from agentctl.protocol.interrupted import take_note
from agentctl.protocol.status import iso_after
from agentctl.protocol.watcher import DirectoryWatcher

if TYPE_CHECKING:
    from agentctl.model.message import AgentMessage
    from agentctl.protocol.mailbox import Mailbox

import logging

log = logging.getLogger(__name__)


class FileInbox:
    """Claims from `inbox/new/` by rename; settles into done/, dead/ or back into new/."""

    def __init__(self, mailbox: Mailbox, agent_dir: Path, *, poll_interval_s: float) -> None:
        self.mailbox = mailbox
        self.agent_dir = agent_dir
        self.poll_interval_s = poll_interval_s
        self.watcher = DirectoryWatcher(mailbox.new)
        # name -> time.monotonic() before which a retried message is not claimed again.
        self._delayed: dict[str, float] = {}
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Take the agent's worker lock, clean tmp/ and start watching new/."""
        self._lock_fd = _acquire_worker_lock(self.agent_dir)
        self.mailbox.clean_tmp(STALE_TMP_AGE_S)
        self.watcher.start()
        if not self.watcher.native:
            log.warning("watching %s by polling every %s s", self.mailbox.new, self.poll_interval_s)

    def close(self) -> None:
        """Stop watching and release the lock (what is in processing/ stays for recovery)."""
        self.watcher.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> list[Delivery]:
        """What a dead worker left in processing/: each has spent an attempt.

        If the last worker left a note (it gave up on a handler that overran its timeout), the
        message it names carries the note as its reason.
        """
        note = take_note(self.agent_dir / INTERRUPTED_NOTE_FILE)
        found = []
        for name in self.mailbox.recover():
            log.warning("recovering %s, interrupted when its worker died", name)
            reason = note if note and note.get("file") == name else None
            found.append(
                Delivery(
                    name, interrupted=True, reason=reason, handle=self.mailbox.processing / name
                )
            )
        return found

    def claim(self, may_claim: Callable[[], bool]) -> Iterator[Delivery]:
        """Claim what new/ holds, in order (up to CLAIM_BATCH, then re-list for priorities)."""
        # Clear before listing, so an event between the listing and the next wait still wakes.
        self.watcher.clear()
        for name in self._due(self.mailbox.list_new())[:CLAIM_BATCH]:
            if not may_claim():
                return
            path = self.mailbox.claim(name)
            if path is not None:  # None: another claimer won, not an error
                yield Delivery(name, handle=path)

    def _due(self, names: list[str]) -> list[str]:
        # Messages waiting out a retry delay stay in new/ (visible, in order) but are skipped.
        if not self._delayed:
            return names
        now = time.monotonic()
        present = set(names)
        for name in [n for n in self._delayed if n not in present]:
            del self._delayed[name]  # claimed by someone else, or requeued by hand
        return [n for n in names if self._delayed.get(n, 0.0) <= now]

    def wait(self, timeout_s: float) -> None:
        """Until a file lands in new/, the next retry is due, or `timeout_s`."""
        if self._delayed:
            until_due_s = min(self._delayed.values()) - time.monotonic()
            timeout_s = max(0.0, min(timeout_s, until_due_s))
        self.watcher.wait(timeout_s)

    def wake(self) -> None:
        """End a wait now."""
        self.watcher.wake.set()

    def read(self, delivery: Delivery) -> bytes:
        """The claimed file's bytes (size-limited, symlinks refused)."""
        path: Path = delivery.handle
        return self.mailbox.read(path)

    def ack(self, delivery: Delivery) -> None:
        """processing/ -> done/."""
        self.mailbox.ack(delivery.key)

    def release(self, delivery: Delivery, wait_s: float) -> None:
        """processing/ -> new/ untouched; skipped for `wait_s`."""
        self.mailbox.release(delivery.key)
        if wait_s > 0:
            self._delayed[delivery.key] = time.monotonic() + wait_s

    def retry(self, delivery: Delivery, message: AgentMessage, delay_s: float) -> bytes:
        """Rewrite into new/ with its attempt count (and `not_before` when delayed)."""
        if delay_s > 0:
            # On disk too: a worker restarted meanwhile still waits the delay out.
            headers = {**message.headers, NOT_BEFORE_HEADER: iso_after(delay_s)}
            message = message.model_copy(update={"headers": headers})
            self._delayed[delivery.key] = time.monotonic() + delay_s
        return self.mailbox.requeue(delivery.key, message)

    def bury(
        self, delivery: Delivery, error: dict[str, Any], message: AgentMessage | None
    ) -> bytes | None:
        """processing/ -> dead/ with `<stem>.error.json` beside it."""
        return self.mailbox.bury(delivery.key, error, message)


def _acquire_worker_lock(agent_dir: Path) -> int:
    fd = os.open(agent_dir / WORKER_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentctlError(
            f"{agent_dir.name}: another worker is already running for this agent"
        ) from None
    return fd

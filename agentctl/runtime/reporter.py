"""StatusReporter: keeps status.json current from a thread, off the message hot path; and the
status a worker starts from.

The worker changes the in-memory status freely; the reporter writes it STATUS_MIN_INTERVAL_S after
it changed (so a burst costs a few writes, not one per message, and no write competes with the
handler a change announces) and at least every HEARTBEAT_INTERVAL_S, which is the heartbeat.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentctl.model.constants import HEARTBEAT_INTERVAL_S, STATUS_MIN_INTERVAL_S
from agentctl.protocol.proc import ProcessRef
from agentctl.protocol.status import AgentState, AgentStatus, iso_now, read_status, write_status

log = logging.getLogger(__name__)


class StatusReporter:
    """Writes an AgentStatus to disk periodically and on change."""

    def __init__(
        self,
        path: Path,
        status: AgentStatus,
        *,
        publish: Callable[[AgentStatus], None] | None = None,
        heartbeat_s: float = HEARTBEAT_INTERVAL_S,
        min_interval_s: float = STATUS_MIN_INTERVAL_S,
    ) -> None:
        self.path = path
        self._status = status
        self._publish = publish
        self._heartbeat_s = heartbeat_s
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        """Write the first status and start the heartbeat thread."""
        self._write()
        self._thread.start()

    def update(self, **changes: Any) -> None:
        """Set fields (state, current_message_id, ...); written soon, not now."""
        changed = False
        with self._lock:
            for key, value in changes.items():
                if getattr(self._status, key) != value:
                    setattr(self._status, key, value)
                    changed = True
        if changed:
            self._signal()

    def count(
        self, *, handled: int = 0, failed: int = 0, dead: int = 0, last_error: str | None = None
    ) -> None:
        """Add to the counters (and record the last error)."""
        with self._lock:
            self._status.handled += handled
            self._status.failed += failed
            self._status.dead += dead
            if last_error is not None:
                self._status.last_error = last_error
        self._signal()

    def _signal(self) -> None:
        # Called twice per message in a burst: Event.set() takes a lock and notifies, while
        # the flag is usually still set from the last change (the thread writes at most every
        # STATUS_MIN_INTERVAL_S). The thread clears it before it copies the status, so a
        # change made after the clear sets it again and is written next time.
        if not self._changed.is_set():
            self._changed.set()

    def snapshot(self) -> AgentStatus:
        """A copy of the current status."""
        with self._lock:
            return dataclasses.replace(self._status)

    def close(self, final_state: AgentState) -> None:
        """Stop the thread and write the final state synchronously."""
        self._closed.set()
        self._changed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with self._lock:
            self._status.state = final_state
            self._status.current_message_id = None
        self._write()

    def _run(self) -> None:
        while not self._closed.is_set():
            if self._changed.wait(self._heartbeat_s):
                # A change: write it a little later, not now. The change is usually a message
                # going busy, and a write now (a file creation) would compete with its handler
                # starting; later, it also takes in the changes that follow (a burst, the
                # message's own `idle`).
                self._closed.wait(self._min_interval_s)
            self._changed.clear()
            if self._closed.is_set():
                return
            self._write()

    def _write(self) -> None:
        with self._lock:
            self._status.heartbeat_at = iso_now()
            data = dataclasses.replace(self._status)
        try:
            write_status(self.path, data)
        except OSError as exc:  # a full disk must not kill the agent; say so in the log
            log.error("cannot write %s: %s", self.path, exc)
        if self._publish is not None:
            self._publish(data)  # e.g. into the NATS status bucket (it never raises)


def initial_status(path: Path, agent: str, replica: int, *, stuck_after_s: float) -> AgentStatus:
    """The status a worker starts with: `starting`, this process, the previous worker's counts."""
    # Counters carry over from the previous worker, so `status` shows lifetime totals.
    previous = read_status(path)
    me = ProcessRef.of(os.getpid())
    return AgentStatus(
        agent=agent,
        replica=replica,
        state=AgentState.STARTING,
        pid=os.getpid(),
        pid_start_ticks=me.start_ticks if me else 0,
        started_at=iso_now(),
        handled=previous.handled if previous else 0,
        failed=previous.failed if previous else 0,
        dead=previous.dead if previous else 0,
        stuck_after_s=stuck_after_s,
    )

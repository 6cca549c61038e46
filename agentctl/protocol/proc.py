"""Process identity: a pid plus its start time, so a reused pid is never taken for ours."""

from __future__ import annotations

import functools
import os
import signal
from dataclasses import dataclass
from typing import Any

_PR_SET_PDEATHSIG = 1


def process_start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":  # a zombie is not alive
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process as recorded on disk: pid, start ticks, and process group id."""

    pid: int
    start_ticks: int
    pgid: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The reference of a running process, or None if it is gone."""
        ticks = process_start_ticks(pid)
        if ticks is None:
            return None
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return cls(pid=pid, start_ticks=ticks, pgid=pgid)

    def is_alive(self) -> bool:
        """True only if this pid is running and is the very process we recorded."""
        return self.pid > 0 and process_start_ticks(self.pid) == self.start_ticks

    def signal_group(self, signum: int) -> bool:
        """Signal the whole process group, if the recorded leader is still ours."""
        if not self.is_alive():
            return False
        try:
            os.killpg(self.pgid, signum)
            return True
        except ProcessLookupError:
            return False


@functools.cache
def _prctl() -> Any:
    import ctypes  # only processes that start children pay for ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def prepare_die_with_parent() -> None:
    """Load libc's prctl in the parent, so a forked child only makes the call (no dlopen)."""
    _prctl()


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send `signum` to this process when its parent dies (no-op elsewhere).

    Called in children of the supervisor and of workers, so a `kill -9` of a parent leaves
    no orphans behind.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

"""An agent's log (`<workspace>/<agent>/agent.log`, its stdout and stderr): the last lines, and
new lines as they are written, for `agentctl logs`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

_WINDOW_BYTES = 64 * 1024
# A line without an end (a program mid-print) is held back, but not beyond this: a program
# that never prints a newline still shows up.
_MAX_CARRY_BYTES = 64 * 1024


def last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of the log, reading only as much of its end as they need."""
    if count <= 0:
        return []
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with f:
        end = os.fstat(f.fileno()).st_size
        start = end
        data = b""
        while start > 0 and data.count(b"\n") <= count:
            start = max(0, start - _WINDOW_BYTES)
            f.seek(start)
            data = f.read(end - start)
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first one is cut
    return lines[-count:]


def follow_log(path: Path, *, stop: threading.Event, poll_interval_s: float = 1.0) -> Iterator[str]:
    """Lines written to the log from now on, until `stop`; a truncated or replaced log is read
    again from its start."""
    from agentctl.protocol.watcher import DirectoryWatcher  # only following pays for watchdog

    path.parent.mkdir(parents=True, exist_ok=True)
    offset = path.stat().st_size if path.exists() else 0
    inode = path.stat().st_ino if path.exists() else None
    carry = b""
    with DirectoryWatcher(path.parent, modifications=True) as watcher:
        while not stop.is_set():
            watcher.clear()
            try:
                with open(path, "rb") as f:
                    info = os.fstat(f.fileno())
                    if info.st_ino != inode or info.st_size < offset:
                        inode, offset, carry = info.st_ino, 0, b""
                    f.seek(offset)
                    data = carry + f.read()
                    offset = f.tell()
            except FileNotFoundError:
                data = carry
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) > _MAX_CARRY_BYTES:
                cut = len(data)
            carry = data[cut:]
            yield from data[:cut].decode("utf-8", "replace").splitlines()
            watcher.wait(poll_interval_s)

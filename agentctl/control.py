"""The workspace's control directory: the one-supervisor lock and the supervisor's pid record.

Standard library only: `status` and `stop` read these and must start fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass

from agentctl.constants import SUPERVISOR_LOCK_FILE, SUPERVISOR_PID_FILE
from agentctl.errors import SupervisorError
from agentctl.fsutil import write_atomic
from agentctl.proc import ProcessRef
from agentctl.status import iso_now
from agentctl.workspace import Workspace


@dataclass(frozen=True)
class SupervisorInfo:
    """Whether a supervisor runs on a workspace, and which."""

    running: bool
    pid: int | None
    started_at: str | None


def take_supervisor_lock(workspace: Workspace, config: str) -> int:
    """Take the workspace's lock and record our pid; the lock fd (keep it open while running).

    The kernel drops the lock when the process dies, however it dies, so a `kill -9` of a
    supervisor never blocks the next `agentctl run`.
    """
    control = workspace.ensure_control_dir()
    fd = os.open(control / SUPERVISOR_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = read_supervisor_ref(workspace)
        who = f" (pid {other.pid})" if other is not None and other.is_alive() else ""
        raise SupervisorError(
            f"{workspace.root}: a supervisor is already running{who}; stop it with `agentctl stop`"
        ) from None
    me = ProcessRef.of(os.getpid())
    record = {
        "pid": os.getpid(),
        "start_ticks": me.start_ticks if me else 0,
        "started_at": iso_now(),
        "config": config,
    }
    write_atomic(control / SUPERVISOR_PID_FILE, (json.dumps(record) + "\n").encode(), fsync=False)
    return fd


def release_supervisor_lock(workspace: Workspace, fd: int) -> None:
    """Forget our pid record and drop the lock."""
    (workspace.control_dir / SUPERVISOR_PID_FILE).unlink(missing_ok=True)
    os.close(fd)


def read_supervisor_ref(workspace: Workspace) -> ProcessRef | None:
    """The recorded supervisor process of a workspace, if any (it may be dead)."""
    try:
        data = json.loads((workspace.control_dir / SUPERVISOR_PID_FILE).read_text())
        return ProcessRef(int(data["pid"]), int(data["start_ticks"]), int(data["pid"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def supervisor_is_running(workspace: Workspace) -> bool:
    """Whether some process holds the workspace's supervisor lock."""
    try:
        fd = os.open(workspace.control_dir / SUPERVISOR_LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also drops the lock if we just took it
    return False


def supervisor_info(workspace: Workspace) -> SupervisorInfo:
    """Running or not (by the lock, not the pid file), with its pid and start time."""
    running = supervisor_is_running(workspace)
    ref = read_supervisor_ref(workspace) if running else None
    started_at = None
    if ref is not None:
        try:
            started_at = json.loads((workspace.control_dir / SUPERVISOR_PID_FILE).read_text()).get(
                "started_at"
            )
        except (OSError, ValueError):
            started_at = None
    return SupervisorInfo(running=running, pid=ref.pid if ref else None, started_at=started_at)


def stop_supervisor(workspace: Workspace, *, timeout_s: float) -> int:
    """SIGTERM the workspace's supervisor and wait until it has released its lock; its pid."""
    ref = read_supervisor_ref(workspace)
    if not supervisor_is_running(workspace) or ref is None or not ref.is_alive():
        raise SupervisorError(f"{workspace.root}: no supervisor is running")
    os.kill(ref.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while supervisor_is_running(workspace):
        if time.monotonic() > deadline:
            raise SupervisorError(f"supervisor (pid {ref.pid}) did not stop within {timeout_s:g} s")
        time.sleep(0.05)
    return ref.pid

"""One agent process as the supervisor tracks it: its state, restart backoff and signals."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from agentctl.config.agentspec import AgentSpec
from agentctl.protocol.proc import ProcessRef


class ProcState(StrEnum):
    """The supervisor's view of one agent process."""

    RUNNING = "running"
    BACKOFF = "backoff"  # exited; waiting to restart
    EXITED = "exited"  # exited; the restart policy says stay down
    FATAL = "fatal"  # failed quickly too many times in a row; down for a cool-down
    STOPPING = "stopping"  # `agentctl stop AGENT`: finishing its message in hand
    STOPPED = "stopped"  # stopped, and left down until started again


@dataclass
class AgentProcess:
    """One agent as the supervisor tracks it."""

    spec: AgentSpec
    replica: int = 0  # which of the agent's workers (`replicas: N`)
    state: ProcState = ProcState.STOPPED
    popen: subprocess.Popen[bytes] | None = None
    ref: ProcessRef | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    backoff_s: float = -1.0  # set from the spec's restart_backoff on the first restart
    quick_failures: int = 0
    times_fatal: int = 0  # in a row, without a stable run between: how long the cool-down is
    restarts: int = 0
    last_exit: int | None = None
    next_liveness_check: float = 0.0
    stop_by: float = 0.0  # while stopping: when the grace ends and it is killed
    retired: bool = False  # `agentctl reload` dropped or changed it: forgotten once stopped
    restart_when_stopped: bool = False  # `agentctl restart` of a running one: start once stopped
    spared: bool = False  # silent, but because the disk refuses writes: left running
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def schedule_restart(self, now_s: float, *, quick: bool) -> None:
        """Set `restart_at` by the spec's restart backoff: it grows with each quick failure in a
        row; a run longer than `stable_s` starts the count, the backoff and the cool-down afresh."""
        policy = self.spec.restart_backoff
        if self.backoff_s < 0:
            self.backoff_s = policy.initial_s
        if quick:
            self.quick_failures += 1
            if self.quick_failures > 1:
                self.backoff_s = min(self.backoff_s * policy.factor, policy.max_s)
        else:
            self.quick_failures = 0
            self.times_fatal = 0
            self.backoff_s = policy.initial_s
        self.restart_at = now_s + self.backoff_s

    def forget_failures(self, *, times_fatal: int) -> None:
        """A whole new burst of quick restarts, as after a stable run; `times_fatal` sets the
        cool-down should the agent turn fatal again (0: the first one)."""
        self.quick_failures = 0
        self.backoff_s = -1.0
        self.times_fatal = times_fatal

    @property
    def pid(self) -> int | None:
        """The running process's pid, if any."""
        return (
            self.popen.pid if self.popen is not None and self.state is ProcState.RUNNING else None
        )


def describe_exit(returncode: int) -> str:
    """`exit 1` or `signal SIGKILL`."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log file (reading only its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def signal_group(proc: AgentProcess, signum: int) -> None:
    """Send `signum` to the agent's whole process group (gone already: nothing to do)."""
    assert proc.popen is not None
    try:
        os.killpg(proc.popen.pid, signum)  # process_group=0 made the pid the group id
    except (ProcessLookupError, PermissionError):
        pass
